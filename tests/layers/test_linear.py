"""Linear / ColumnLinear / RowLinear (tp_size 1) parity with x @ W^T + b in float64."""
import numpy as np
import torch
from parameterized import parameterized

from trtllm_ext import ColumnLinear, Linear, RowLinear, init_random_

from ._helpers import assert_rel_close, load_random, randn, ref_linear

CLASSES = [("linear", Linear), ("column", ColumnLinear), ("row", RowLinear)]
# (input shape without the feature dim, in_features, out_features, bias)
SHAPES = [
    ((1,), 1, 1, True),
    ((1,), 7, 5, True),
    ((3,), 16, 33, False),
    ((2, 5), 13, 9, True),
    ((4, 1), 8, 8, True),
    ((2, 3, 4), 5, 6, True),
    ((), 6, 4, True),  # a single vector [in]
]
CASES = [(f"{cname}_{i}", cls, *s) for cname, cls in CLASSES for i, s in enumerate(SHAPES)]


@parameterized.expand(CASES)
def test_linear_matches_float64_reference(_, cls, lead, fin, fout, bias):
    seed = hash((cls.__name__, lead, fin, fout)) % 10_000
    layer = cls(fin, fout, bias=bias)
    w = load_random(layer, seed)
    x = randn(*lead, fin, seed=seed + 1)
    ref = ref_linear(x, w["weight"], w.get("bias"))
    out = layer(x.float())
    assert out.dtype == torch.float32
    assert_rel_close(out, ref)
    # with tp_size == 1, the rank-local path plus the bias is the whole layer
    local = layer.forward_local(x.float())
    if cls is RowLinear and bias:
        local = local + layer.bias
    assert_rel_close(local, ref)


@parameterized.expand([(c[0], c[1]) for c in CLASSES])
def test_linear_in_out_layout(_, cls):
    """layout='in_out' takes W^T (torch or numpy, any strides) and stores W."""
    w = randn(6, 4, seed=21)  # [out, in]
    b = randn(6, seed=22)
    x = randn(3, 4, seed=23)
    ref = ref_linear(x, w, b)
    for wt in (w.T, w.T.contiguous(), w.T.numpy(), np.asfortranarray(w.T.numpy())):
        layer = cls(4, 6)
        layer.load_weights({"weight": wt, "bias": b}, layout="in_out")
        assert layer.weight.shape == (6, 4)
        torch.testing.assert_close(layer.weight, w.float(), rtol=0, atol=0)
        assert_rel_close(layer(x.float()), ref)


@parameterized.expand([(c[0], c[1]) for c in CLASSES])
def test_linear_init_random(_, cls):
    layer = init_random_(cls(9, 7), seed=4)
    x = randn(2, 9, seed=5)
    assert_rel_close(layer(x.float()), ref_linear(x, layer.weight, layer.bias))


def test_linear_double_dtype_layer():
    layer = Linear(5, 3, dtype=torch.float64)
    w = load_random(layer, 8)
    x = randn(2, 5, seed=9)
    out = layer(x)
    assert out.dtype == torch.float64
    assert_rel_close(out, ref_linear(x, w["weight"], w["bias"]), tol=1e-12)
