"""Weight-only quantized Linear / ColumnLinear / RowLinear (int8 per channel, int4 group-wise) against float64.

Weights are non-symmetric (a mean offset, a square case), so a transposed layout or a wrong group axis fails;
inputs include non-contiguous views. The quantization bound: RTN gives ``|w - w'| <= |scale| / 2`` element-wise
(int4 values clipped to 7, beyond 7.5 steps on the side opposite the group's peak: ``|w| - 7 |scale|``), so
``|x @ (w - w')^T| <= |x| @ bound^T`` (``element_bound``, [N, K]).

The layers' products here are the weight-only ones (dequantize, then a float product): the CPU's int8 x int8
product of float32 rows (``kernels.cpu_int8``, which quantizes the activations too) is switched off, and tested
with its own bound in test_quant_cpu_int8.py.
"""
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from trtllm_ext import (
    WeightOnlyQuantColumnLinear,
    WeightOnlyQuantLinear,
    WeightOnlyQuantRowLinear,
    dequantize_weight,
    init_random_,
    pack_int4,
    quantize_weight,
    unpack_int4,
)
from trtllm_ext.kernels import cpu_int8, reference

from ._helpers import assert_rel_close, randn, ref_linear, rel_err

@pytest.fixture(autouse=True)
def weight_only_products(monkeypatch):
    monkeypatch.setattr(cpu_int8, "kernel", None)


CLASSES = [WeightOnlyQuantLinear, WeightOnlyQuantColumnLinear, WeightOnlyQuantRowLinear]
MODES = ["int8", "int4"]


def weight(n, k, seed):
    """Non-symmetric [N, K] weight: N(0.03, 1/K) with one row 10x larger, so per-row scales differ."""
    w = randn(n, k, seed=seed, scale=k ** -0.5) + 0.03
    w[n // 2] *= 10
    return w


def expanded_scales(scales, mode, k):
    """Scales [N] or [N, K // g] -> [N, K] float64 (the scale each weight element was quantized with)."""
    s = scales.double()
    return s[:, None].expand(-1, k) if mode == "int8" else s.repeat_interleave(k // s.shape[1], dim=1)


def element_bound(w, scales, mode, k):
    """The quantizer's error bound per element [N, K] float64: |scale| / 2, or for an int4 value clipped to 7 (more
    than 7.5 steps, on the side opposite its group's peak) its distance to 7 steps."""
    s = expanded_scales(scales, mode, k)
    if mode == "int8":
        return s.abs() / 2
    return torch.where(w.double() / s > 7.5, w.double().abs() - 7 * s.abs(), s.abs() / 2)


def dequant64(layer):
    return dequantize_weight(layer.qweight, layer.scales, layer.quant_mode, dtype=torch.float64)


# --------------------------------------------------------------------------------------- quantize / dequantize

@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16, torch.float64])
def test_quantize_dequantize_error_is_at_most_half_a_scale(mode, dtype):
    n, k = 6, 256
    w = weight(n, k, seed=1)
    w[1] = 0.0  # an all-zero row: scale 1, zeros
    w[2] *= 1e-6  # tiny scales (subnormal in float16): never clipped by more than half a scale
    w[3, :128] = 0.0  # an all-zero int4 group
    q, s = quantize_weight(w, mode, 128, scale_dtype=dtype)
    assert s.dtype == dtype
    assert q.dtype == (torch.int8 if mode == "int8" else torch.uint8)
    assert q.shape == ((n, k) if mode == "int8" else (n, k // 2))
    assert s.shape == ((n,) if mode == "int8" else (n, k // 128))
    ints = q if mode == "int8" else unpack_int4(q)
    lo, hi, peak_q = (-127, 127, 127) if mode == "int8" else (-8, 7, 8)
    assert ints.min() >= lo and ints.max() <= hi
    err = (w - dequantize_weight(q, s, mode, k, dtype=torch.float64)).abs()
    bound = element_bound(w, s, mode, k)
    assert (err <= bound * (1 + 1e-12)).all(), f"max err/bound {(err / bound).max().item():.4f} > 1"
    steps = expanded_scales(s, mode, k).abs()
    assert (bound <= 1.5 * steps).all()  # a clipped int4 value is never off by more than 1.5 steps
    g = k if mode == "int8" else 128
    blocks, ints_b = w.reshape(n, k // g, g), ints.reshape(n, k // g, g)
    amax = blocks.abs().amax(-1)
    normal = amax / peak_q >= torch.finfo(dtype).smallest_normal
    if mode == "int8":  # every block whose scale is a normal number reaches its extreme integer
        assert (ints_b.abs().amax(-1)[normal] == 127).all()
    else:  # the group's peak (largest magnitude) lands on -8, the scale carrying its sign: all 16 levels in use
        at = blocks.abs().argmax(-1, keepdim=True)
        assert (torch.gather(ints_b, -1, at)[..., 0][normal] == -8).all()
        peak = torch.gather(blocks, -1, at)[..., 0]
        assert (s.reshape(n, k // g).double() * peak < 0)[amax > 0].all()
        assert (ints == 7).any() and (ints == -8).any()
    assert not ints[1].any() and (s[1] == 1).all()
    # |scale| is amax / 127 (int8) or amax / 8 (int4) rounded to nearest in its dtype (up, where a coarse subnormal
    # would clip)
    s = s.reshape(n, k // g).double().abs()
    exact = amax / peak_q
    fi = torch.finfo(dtype)
    assert ((s - exact).abs() <= fi.eps * exact + fi.smallest_normal * fi.eps)[amax > 0].all()
    assert (s * (peak_q + 0.5) >= amax).all()


def test_int4_nibble_order_and_round_trip():
    q = torch.tensor([[1, -2, 7, -8], [0, 3, -1, 5]], dtype=torch.int8)
    packed = pack_int4(q)
    # byte j = q[2j] in the low nibble | q[2j+1] in the high nibble (two's complement)
    assert packed.dtype == torch.uint8 and packed.tolist() == [[0xE1, 0x87], [0x30, 0x5F]]
    assert torch.equal(unpack_int4(packed), q)
    every_byte = torch.arange(256, dtype=torch.uint8).reshape(4, 64)
    assert torch.equal(pack_int4(unpack_int4(every_byte)), every_byte)
    rnd = torch.randint(-8, 8, (5, 32), generator=torch.Generator().manual_seed(3), dtype=torch.int8)
    assert torch.equal(unpack_int4(pack_int4(rnd)), rnd)


def test_int4_groups_run_along_k():
    """One group's scale covers 128 consecutive k of one row: a large value in group 1 of row 0 raises only
    that scale."""
    w = weight(3, 384, seed=5)
    w[0, 200] = 50.0
    _, s = quantize_weight(w, "int4")
    assert s.shape == (3, 3)
    assert s[0, 1] == pytest.approx(-50.0 / 8, rel=1e-6)  # a positive peak: a negative scale
    assert s[0, 0].abs() < 1 and s[0, 2].abs() < 1 and (s[1:].abs() < 1).all()


# --------------------------------------------------------------------------------------- the layers

# (leading dims, in, out, bias, mode); square weights so a transposed layout cannot pass on shape alone
SHAPES = [
    ((3,), 64, 64, True, "int8"),
    ((2, 5), 48, 20, False, "int8"),
    ((), 16, 7, True, "int8"),
    ((4,), 256, 256, True, "int4"),
    ((2, 3), 384, 40, True, "int4"),
    ((1,), 128, 3, False, "int4"),
]
CASES = [(cls, *s) for cls in CLASSES for s in SHAPES]


@pytest.mark.parametrize("cls,lead,fin,fout,bias,mode", CASES)
def test_quant_layer_matches_float64_reference(cls, lead, fin, fout, bias, mode):
    seed = hash((cls.__name__, lead, fin, fout, mode)) % 10_000
    layer = cls(fin, fout, bias=bias, quant_mode=mode)
    w = weight(fout, fin, seed)
    b = randn(fout, seed=seed + 1, scale=0.1)
    layer.load_weights({"weight": w, "bias": b} if bias else {"weight": w})
    wq = dequant64(layer)
    assert torch.equal(layer.dequantized_weight(), wq.float())
    x = randn(*lead, fin, seed=seed + 2) + 0.2
    ref = ref_linear(x, wq, b.float() if bias else None)
    out = layer(x.float())
    assert out.dtype == torch.float32 and out.shape == (*lead, fout)
    assert_rel_close(out, ref)
    if fin == fout:  # the transposed weight gives a clearly different answer (the test can see a layout error)
        assert (ref_linear(x, wq.T) - ref_linear(x, wq)).norm() > 0.3 * ref_linear(x, wq).norm()
    # within the quantization bound of the float layer
    float_ref = ref_linear(x, w, b if bias else None)
    bound = x.abs() @ element_bound(w, layer.scales, mode, fin).T
    assert ((out.double() - float_ref).abs() <= bound + 1e-5 * (1 + float_ref.abs())).all()


@pytest.mark.parametrize("cls", CLASSES)
@pytest.mark.parametrize("mode", MODES)
def test_non_contiguous_inputs(cls, mode):
    fin, fout = 256, 24
    layer = cls(fin, fout, quant_mode=mode)
    layer.load_weights({"weight": weight(fout, fin, 7), "bias": randn(fout, seed=8)})
    wq, b = dequant64(layer), layer.bias.double()
    base = randn(fin, 6, seed=9).float()
    views = [base.T, randn(5, 2 * fin, seed=10).float()[:, ::2], randn(3, 4, fin, seed=11).float().transpose(0, 1)]
    for x in views:
        assert not x.is_contiguous()
        assert_rel_close(layer(x), ref_linear(x, wq, b))
        assert_rel_close(layer(x), layer(x.contiguous()), tol=1e-6)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_low_precision_layer(mode, dtype):
    fin, fout = 256, 32
    layer = WeightOnlyQuantLinear(fin, fout, quant_mode=mode, dtype=dtype)
    layer.load_weights({"weight": weight(fout, fin, 12), "bias": randn(fout, seed=13, scale=0.1)})
    assert layer.scales.dtype == dtype and layer.bias.dtype == dtype
    x = randn(4, fin, seed=14)
    out = layer(x.to(dtype))
    assert out.dtype == dtype
    tol = {torch.float16: 2e-3, torch.bfloat16: 1.5e-2}[dtype]
    assert_rel_close(out, ref_linear(x.to(dtype), dequant64(layer), layer.bias), tol=tol)


@pytest.mark.parametrize("cls", CLASSES)
@pytest.mark.parametrize("mode", MODES)
def test_prequantized_load_equals_quantize_at_load(cls, mode):
    fin, fout = 256, 16
    w, b = weight(fout, fin, 15), randn(fout, seed=16)
    a = cls(fin, fout, quant_mode=mode)
    a.load_weights({"weight": w, "bias": b})
    q, s = quantize_weight(w, mode, scale_dtype=torch.float32)
    x = randn(3, fin, seed=17).float()
    for qw, sc in ((q, s), (q.numpy(), s.numpy()), (a.qweight, a.scales)):
        c = cls(fin, fout, quant_mode=mode)
        c.load_weights({"qweight": qw, "scales": sc, "bias": b})
        assert torch.equal(c.qweight, a.qweight) and torch.equal(c.scales, a.scales)
        assert torch.equal(c(x), a(x))
    # the float weight given as W^T (torch, numpy, Fortran order), and as float32 / a strided view
    for wt in (w.T, w.T.numpy(), np.asfortranarray(w.T.numpy())):
        d = cls(fin, fout, quant_mode=mode)
        d.load_weights({"weight": wt, "bias": b}, layout="in_out")
        assert torch.equal(d.qweight, a.qweight) and torch.equal(d.scales, a.scales)
    e = cls(fin, fout, quant_mode=mode)
    e.load_weights({"weight": torch.stack([w, w * 0], -1)[..., 0], "bias": b})  # a strided view
    assert torch.equal(e.qweight, a.qweight)
    # torch's load_state_dict copies into the same storage
    f = cls(fin, fout, quant_mode=mode)
    f.load_state_dict(a.state_dict())
    assert torch.equal(f(x), a(x))


def test_loaded_values_are_owned_copies():
    w = weight(8, 128, 18)
    q, s = quantize_weight(w, "int4", scale_dtype=torch.float32)
    layer = WeightOnlyQuantLinear(128, 8, bias=False, quant_mode="int4")
    layer.load_weights({"qweight": q, "scales": s})
    before = layer.dequantized_weight().clone()
    q.zero_()
    s.fill_(-1)
    assert torch.equal(layer.dequantized_weight(), before)
    assert layer.qweight.data_ptr() != q.data_ptr()


# --------------------------------------------------------------------------------------- tensor parallel

@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("world", [2, 4])
@pytest.mark.parametrize("prequantized", [False, True])
def test_column_shards_concatenate_to_full(mode, world, prequantized):
    fin, fout = 256, 16
    w, b = weight(fout, fin, 20 + world), randn(fout, seed=21)
    full = WeightOnlyQuantLinear(fin, fout, quant_mode=mode)
    full.load_weights({"weight": w, "bias": b})
    given = {"qweight": full.qweight, "scales": full.scales, "bias": b} if prequantized else {"weight": w, "bias": b}
    x = randn(2, 3, fin, seed=22).float()
    parts = []
    for r in range(world):
        col = WeightOnlyQuantColumnLinear(fin, fout, quant_mode=mode, tp_size=world, tp_rank=r, gather_output=False)
        shards = col.shard_weights(given)
        assert sorted(shards) == ["bias", "qweight", "scales"]
        col.load_weights(shards)
        assert torch.equal(col.qweight, full.qweight.chunk(world, 0)[r])
        assert torch.equal(col.scales, full.scales.chunk(world, 0)[r])
        parts.append(col.forward_local(x))
        assert torch.equal(col(x), parts[-1])
    assert_rel_close(torch.cat(parts, dim=-1), full(x), tol=1e-6)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("world", [2, 4])
@pytest.mark.parametrize("prequantized", [False, True])
def test_row_partial_sums_plus_bias_equal_full(mode, world, prequantized):
    fin, fout = 512, 12
    w, b = weight(fout, fin, 30 + world), randn(fout, seed=31)
    full = WeightOnlyQuantLinear(fin, fout, quant_mode=mode)
    full.load_weights({"weight": w, "bias": b})
    given = {"qweight": full.qweight, "scales": full.scales, "bias": b} if prequantized else {"weight": w, "bias": b}
    x = randn(3, fin, seed=32).float()
    total = 0
    for r in range(world):
        row = WeightOnlyQuantRowLinear(fin, fout, quant_mode=mode, tp_size=world, tp_rank=r)
        shards = row.shard_weights(given)
        row.load_weights(shards)
        assert torch.equal(row.qweight, full.qweight.chunk(world, 1)[r])
        # int8: the per-channel scales of the whole row, replicated; int4: this rank's groups
        want = full.scales if mode == "int8" else full.scales.chunk(world, 1)[r]
        assert torch.equal(row.scales, want) and torch.equal(row.bias, full.bias)
        total = total + row.forward_local(x.chunk(world, -1)[r])
    assert_rel_close(total + full.bias, full(x), tol=1e-6)


def test_column_row_tp1_are_plain_layers():
    for cls in (WeightOnlyQuantColumnLinear, WeightOnlyQuantRowLinear):
        layer = cls(128, 8, quant_mode="int4")
        layer.load_weights({"weight": weight(8, 128, 40), "bias": randn(8, seed=41)})
        x = randn(2, 128, seed=42).float()
        assert_rel_close(layer(x), ref_linear(x, dequant64(layer), layer.bias))


# --------------------------------------------------------------------------------------- init, reference kernel

@pytest.mark.parametrize("mode", MODES)
def test_init_random_gives_finite_weights_of_about_std(mode):
    layer = init_random_(WeightOnlyQuantLinear(256, 64, quant_mode=mode), seed=3, std=0.02)
    wq = layer.dequantized_weight()
    assert torch.isfinite(wq).all() and 0.002 < wq.std().item() < 0.1
    x = randn(2, 256, seed=4).float()
    assert_rel_close(layer(x), ref_linear(x, dequant64(layer), layer.bias))


@pytest.mark.parametrize("mode", MODES)
def test_reference_weight_only_linear_is_dequantize_then_fused_linear(mode):
    fin, fout = 256, 256
    layer = WeightOnlyQuantLinear(fin, fout, quant_mode=mode)
    layer.load_weights({"weight": weight(fout, fin, 50), "bias": randn(fout, seed=51)})
    x = randn(5, fin, seed=52).float()
    args = (layer.qweight, layer.scales, layer.bias)
    # int8 on the CPU quantizes the activation rows (test_quant_cpu_int8.py bounds that per element): 2e-2 here
    tol = 2e-2 if mode == "int8" else 1e-5
    y = reference.weight_only_linear(x, *args, mode=mode, group_size=layer.group_size)
    assert_rel_close(y, ref_linear(x, dequant64(layer), layer.bias), tol)
    assert torch.equal(y, layer(x)) if mode == "int4" else rel_err(y, layer(x)) <= tol
    ln = (1 + randn(fin, seed=53, scale=0.1).float(), randn(fin, seed=54, scale=0.1).float(), 1e-5)
    res = randn(5, fout, seed=55).float()
    fused = reference.weight_only_linear(x, *args, mode=mode, ln=ln, gelu=True, residual=res)
    want = res.double() + F.gelu(ref_linear(F.layer_norm(x.double(), (fin,), ln[0].double(), ln[1].double(), 1e-5),
                                            dequant64(layer), layer.bias))
    assert_rel_close(fused, want, tol)
    out = torch.empty(5, fout, dtype=torch.float64)
    assert reference.weight_only_linear(x, *args, mode=mode, out=out) is out
    assert_rel_close(out, y, tol=1e-7)
    if mode == "int4":
        with pytest.raises(ValueError, match=r"give group size 128, expected 64"):
            reference.weight_only_linear(x, *args, mode=mode, group_size=64)
