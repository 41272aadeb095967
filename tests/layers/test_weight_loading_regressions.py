"""Regression tests named after the two historical weight-loading bugs.

(1) the attention output projection (``Attention.dense``, a RowLinear) silently produced wrong outputs when
    its weight did not arrive as a plain contiguous tensor, or when the caller's buffer was freed or reused
    after loading: the layer must own a copy and honour strides.
(2) transB: RowLinear stores W as [out, in] and computes x @ W^T + b; a caller holding W^T must say
    ``layout="in_out"``. A layout mistake must give a visibly different output, never the right one by luck,
    and a forgotten load must show up as NaN.
"""
import gc

import numpy as np
import pytest
import torch

from trtllm_ext import Attention, RowLinear

from ._helpers import assert_rel_close, local_forward, randn, random_weights, ref_attention, ref_linear

HIDDEN, HEADS = 24, 4


def _sources(w: torch.Tensor):
    """(name, make) pairs: ``make()`` returns (value to load, layout, buffer to clobber after loading)."""
    def contiguous():
        buf = w.clone()
        return buf, "out_in", buf

    def transpose_of_stored_transpose():  # a non-contiguous view: .t() of a stored W^T
        stored = w.t().contiguous()
        return stored.t(), "out_in", stored

    def strided_slice():  # every other row of a bigger tensor
        big = torch.empty(2 * w.shape[0], w.shape[1], dtype=w.dtype)
        big[::2] = w
        big[1::2] = float("nan")
        return big[::2], "out_in", big

    def column_slice():  # a slice along the inner dim: row stride != in_features
        big = torch.full((w.shape[0], w.shape[1] + 5), float("nan"), dtype=w.dtype)
        big[:, 2:2 + w.shape[1]] = w
        return big[:, 2:2 + w.shape[1]], "out_in", big

    # w.numpy() shares w's memory: copy first so that clobbering the buffer never touches the reference
    def numpy_fortran():
        arr = np.asfortranarray(w.numpy().copy())
        return arr, "out_in", arr

    def numpy_ascontiguous():
        arr = np.ascontiguousarray(w.numpy().copy().T.T)
        return arr, "out_in", arr

    def numpy_negative_strides():
        arr = np.ascontiguousarray(w.numpy().copy()[::-1, ::-1])
        return arr[::-1, ::-1], "out_in", arr

    def float64_source():  # a cast on the way in
        buf = w.double().clone()
        return buf, "out_in", buf

    def in_out_view():  # the caller holds W^T as a view of its W
        buf = w.clone()
        return buf.t(), "in_out", buf

    def in_out_contiguous():
        buf = w.t().contiguous()
        return buf, "in_out", buf

    def in_out_numpy_fortran():  # W^T in F order: the memory of W, strides of W^T
        arr = np.asfortranarray(w.numpy().copy().T)
        return arr, "in_out", arr

    return [(f.__name__, f) for f in (contiguous, transpose_of_stored_transpose, strided_slice, column_slice,
                                      numpy_fortran, numpy_ascontiguous, numpy_negative_strides, float64_source,
                                      in_out_view, in_out_contiguous, in_out_numpy_fortran)]


def _clobber(buf) -> None:
    if isinstance(buf, np.ndarray):
        buf[...] = np.nan
    else:
        buf.fill_(float("nan"))


SOURCE_NAMES = [name for name, _ in _sources(torch.zeros(1, 1))]


@pytest.mark.parametrize("after", ["keep", "overwrite", "free"])
@pytest.mark.parametrize("source", SOURCE_NAMES)
def test_contiguous_weight_output_projection(source, after):
    attn = Attention(HIDDEN, HEADS)
    # sources in the layer's dtype (float32), as a checkpoint usually arrives: a cast would hide aliasing
    w = {k: v.float() for k, v in random_weights(attn, 1234 + SOURCE_NAMES.index(source)).items()}
    assert not torch.equal(w["dense.weight"], w["dense.weight"].T)
    value, layout, buf = dict(_sources(w["dense.weight"]))[source]()
    if layout == "out_in":
        attn.load_weights(w)
        attn.dense.load_weights({"weight": value}, layout=layout, strict=False)
    else:  # load everything in the caller's layout
        w_in_out = {k: (v.T if v.dim() == 2 else v) for k, v in w.items()}
        attn.load_weights({**w_in_out, "dense.weight": value}, layout="in_out")
    x = randn(2, 5, HIDDEN, seed=77).float()
    expected = ref_attention(x, w, HEADS)
    dense_in = randn(3, HIDDEN, seed=78).float()
    expected_dense = ref_linear(dense_in, w["dense.weight"], w["dense.bias"])

    if after == "overwrite":  # the caller reuses its buffer right after loading
        _clobber(buf)
        del value
    elif after == "free":  # the caller drops its buffer; new allocations may reuse the memory
        del value, buf  # freed by refcount; a young-generation pass collects any cycle (a full gc costs ~0.4 s)
        gc.collect(0)
        junk = [torch.full((2 * HIDDEN, HIDDEN), float("nan")) for _ in range(8)]
        junk += [np.full((HIDDEN, HIDDEN), np.nan) for _ in range(8)]
        assert len(junk) == 16  # a local: these allocations stay alive while the layer runs below

    torch.testing.assert_close(attn.dense.weight, w["dense.weight"], rtol=0, atol=0)
    assert attn.dense.weight.is_contiguous()
    assert_rel_close(attn(x), expected)
    assert_rel_close(attn.dense(dense_in), expected_dense)


def test_contiguous_weight_output_projection_tensor_parallel_shard():
    """The same through shard_weights: a rank's dense slice is a column slice (non-contiguous) of W."""
    full = Attention(HIDDEN, HEADS)
    w = random_weights(full, 99)
    full.load_weights(w)
    x = randn(2, 4, HIDDEN, seed=98).float()
    total = w["dense.bias"].float()
    for r in range(2):
        a = Attention(HIDDEN, HEADS, tp_size=2, tp_rank=r)
        src = {k: v.clone() for k, v in w.items()}
        shard = a.shard_weights(src)
        a.load_weights(shard)
        for v in [*src.values(), *shard.values()]:  # the caller reuses every buffer after loading
            v.fill_(float("nan"))
        local_forward(a.dense)
        total = total + a(x)
    assert_rel_close(total, ref_attention(x, w, HEADS))


def test_rowlinear_transB():
    n = 16
    w = randn(n, n, seed=2024)
    b = randn(n, seed=2025)
    assert (w - w.T).abs().max() > 0.5  # square and far from symmetric
    x = randn(3, 5, n, seed=2026)
    expected = x @ w.T + b  # TensorRT-LLM's transB convention

    out_in = RowLinear(n, n)
    out_in.load_weights({"weight": w, "bias": b}, layout="out_in")
    in_out = RowLinear(n, n)
    in_out.load_weights({"weight": w.T, "bias": b}, layout="in_out")
    torch.testing.assert_close(in_out.weight, out_in.weight, rtol=0, atol=0)
    y1, y2 = out_in(x.float()), in_out(x.float())
    torch.testing.assert_close(y1, y2, rtol=0, atol=0)
    assert_rel_close(y1, expected)

    # default layout is out_in
    default = RowLinear(n, n)
    default.load_weights({"weight": w, "bias": b})
    torch.testing.assert_close(default(x.float()), y1, rtol=0, atol=0)

    # a layout mistake: W given where W^T was meant (and vice versa) must change the output by a lot
    for value, layout in ((w, "in_out"), (w.T, "out_in")):
        wrong = RowLinear(n, n)
        wrong.load_weights({"weight": value, "bias": b}, layout=layout)
        y = wrong(x.float()).double()
        rel = ((y - expected).norm() / expected.norm()).item()
        assert rel > 0.5, f"layout mistake ({layout}) went unnoticed: relative difference {rel:.3e}"

    # a non-square weight in the wrong layout cannot even load
    rect = RowLinear(8, 6)
    with pytest.raises(ValueError, match=r"'weight' has shape \(8, 6\), expected \(6, 8\)"):
        rect.load_weights({"weight": torch.randn(8, 6), "bias": torch.randn(6)}, layout="out_in")

    # a forgotten load is visible: NaN everywhere
    unloaded = RowLinear(n, n)
    assert torch.isnan(unloaded.weight).all() and torch.isnan(unloaded.bias).all()
    assert torch.isnan(unloaded(x.float())).all()
    half = RowLinear(n, n)
    half.load_weights({"weight": w}, strict=False)  # the bias forgotten
    assert torch.isnan(half(x.float())).all()


@pytest.mark.parametrize("world", [2, 4])
def test_rowlinear_transB_tensor_parallel(world):
    """Each rank's slice of W^T given in in_out layout matches the out_in slice, and recombines to x @ W^T + b."""
    n = 16
    w, b, x = randn(n, n, seed=31), randn(n, seed=32), randn(2, n, seed=33)
    total = b.float()
    for r in range(world):
        a, c = RowLinear(n, n, tp_size=world, tp_rank=r), RowLinear(n, n, tp_size=world, tp_rank=r)
        a.load_weights(a.shard_weights({"weight": w, "bias": b}))
        c.load_weights(c.shard_weights({"weight": w.T.numpy(), "bias": b}, layout="in_out"))
        xs = x.float()[:, r * n // world:(r + 1) * n // world]
        torch.testing.assert_close(a.forward_local(xs), c.forward_local(xs), rtol=0, atol=0)
        total = total + a.forward_local(xs)
    assert_rel_close(total, x @ w.T + b)
