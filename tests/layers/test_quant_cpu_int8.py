"""The CPU int8 x int8 product of weight-only int8 layers (``trtllm_ext.kernels.cpu_int8``), both kernels.

Reference: float64 ``x @ dequantized(W)^T``. The only approximation is the activation rounding: each x[m, k] is
moved by at most one quantization step, ``step_m <= 2 * amax(|x[m]|) / 127`` (packed: 7-bit asymmetric range
including 0; int_mm: symmetric amax / 127, half that), so per element

    |y[m, n] - ref[m, n]| <= step_m * sum_k |W[n, k]|   (+ float32 rounding, 1e-5 relative to that sum)

Data is non-symmetric (mean offset, one large row), the weight square, the input non-contiguous.
"""
from __future__ import annotations

import pytest
import torch

from trtllm_ext import Embedding, WeightOnlyQuantLinear
from trtllm_ext.kernels import cpu_int8, reference
from trtllm_ext.quantization import dequantize_weight

from ._helpers import randn, rel_err


@pytest.fixture(params=cpu_int8.KERNELS)
def kernel(request, monkeypatch):
    monkeypatch.setattr(cpu_int8, "kernel", request.param)
    return request.param


def _layer(n: int, k: int) -> WeightOnlyQuantLinear:
    layer = WeightOnlyQuantLinear(k, n, quant_mode="int8")
    w = randn(n, k, seed=60, scale=k ** -0.5) + 0.03
    w[n // 3] *= 10
    layer.load_weights({"weight": w, "bias": randn(n, seed=61)})
    return layer


def _bound(x: torch.Tensor, w64: torch.Tensor) -> torch.Tensor:
    """[M, N] per-element bound of the activation rounding (module docstring)."""
    step = 2 * x.double().abs().amax(dim=1, keepdim=True) / 127
    l1 = w64.abs().sum(dim=1)[None, :]
    return step * l1 * (1 + 1e-5) + 1e-5 * l1 * x.double().abs().amax(dim=1, keepdim=True)


@pytest.mark.parametrize("m", [1, 5, 33])
def test_int8_product_within_activation_rounding_bound(kernel, m):
    k = n = 256
    layer = _layer(n, k)
    w64 = dequantize_weight(layer.qweight, layer.scales, "int8", dtype=torch.float64)
    x = (randn(k, 2 * m, seed=62) + 0.5).float().t()[::2]  # [m, k], non-contiguous, non-symmetric
    assert not x.is_contiguous()
    y = cpu_int8.int8_linear(x, layer.qweight, layer.scales)
    err = (y.double() - x.double() @ w64.t()).abs()
    assert (err <= _bound(x, w64)).all(), f"max excess {(err - _bound(x, w64)).max():.3e}"
    assert rel_err(y, x.double() @ w64.t()) <= 2e-2
    deq = reference.fused_linear(x, layer.dequantized_weight(), layer.bias)  # the dequantize-then-fp32 path
    full = reference.weight_only_linear(x, layer.qweight, layer.scales, layer.bias, mode="int8")
    assert ((full.double() - deq.double()).abs() <= _bound(x, w64) + 1e-5 * deq.double().abs()).all()
    torch.testing.assert_close(layer(x), full, rtol=0, atol=0)  # the layer runs this product


def test_fused_epilogue_matches_float_path(kernel):
    """LN before, bias + GELU + residual after, out / out_dtype: the same shared code as ``fused_linear``."""
    n = k = 128
    layer = _layer(n, k)
    x = randn(4, k, seed=63).float() + 0.2
    ln = (1 + randn(k, seed=64, scale=0.1).float(), randn(k, seed=65, scale=0.1).float(), 1e-5)
    res = randn(4, n, seed=66).float()
    h = torch.nn.functional.layer_norm(x, (k,), ln[0], ln[1], 1e-5)
    want = res + torch.nn.functional.gelu(cpu_int8.int8_linear(h, layer.qweight, layer.scales) + layer.bias)
    got = reference.weight_only_linear(x, layer.qweight, layer.scales, layer.bias, mode="int8", ln=ln, gelu=True,
                                       residual=res)
    assert torch.allclose(got, want, rtol=1e-6, atol=1e-6)
    out = torch.empty(4, n, dtype=torch.float64)
    assert reference.weight_only_linear(x, layer.qweight, layer.scales, mode="int8", out=out) is out


def test_repacked_after_in_place_load_and_not_applied_elsewhere():
    layer = _layer(64, 64)
    x = randn(3, 64, seed=67).float()
    y0 = cpu_int8.int8_linear(x, layer.qweight, layer.scales)
    layer.load_weights({"weight": -2 * layer.dequantized_weight(), "bias": layer.bias})
    w64 = dequantize_weight(layer.qweight, layer.scales, "int8", dtype=torch.float64)
    y1 = cpu_int8.int8_linear(x, layer.qweight, layer.scales)
    assert rel_err(y1, x.double() @ w64.t()) <= 2e-2 and not torch.allclose(y0, y1)
    assert cpu_int8.int8_linear(x.double(), layer.qweight, layer.scales) is None


def test_rows_are_independent_of_the_batch(kernel):
    """Per-row activation scales: in any batch of two or more rows a row's result is the same, beside a 1000x
    larger row or beside itself; alone (one-row call, the packed kernel's own range) within the rounding bound."""
    layer = _layer(96, 64)
    w64 = dequantize_weight(layer.qweight, layer.scales, "int8", dtype=torch.float64)
    x = randn(4, 64, seed=68).float() + 0.1
    x[2] *= 1000
    y = cpu_int8.int8_linear(x, layer.qweight, layer.scales)
    for i in range(4):
        pair = cpu_int8.int8_linear(x[[i, i]], layer.qweight, layer.scales)
        assert torch.equal(y[i], pair[0]) and torch.equal(y[i], pair[1])
        alone = cpu_int8.int8_linear(x[i:i + 1], layer.qweight, layer.scales)
        err = (alone.double() - x[i:i + 1].double() @ w64.t()).abs()
        assert (err <= _bound(x[i:i + 1], w64)).all()
        if kernel == "int_mm":
            assert torch.equal(y[i:i + 1], alone)  # symmetric amax / 127 rows: the same grid alone


def test_one_row_is_handed_to_the_packed_kernel_as_it_is(monkeypatch):
    """One row: a single kernel call on the row itself (no normalizing ops, no appended row); two: one call on
    the normalized rows plus the span row."""
    monkeypatch.setattr(cpu_int8, "kernel", "packed")
    layer = _layer(32, 48)
    seen, call = [], torch.ops.quantized.linear_dynamic
    monkeypatch.setattr(torch.ops.quantized, "linear_dynamic", lambda x, *a: seen.append(x.clone()) or call(x, *a))
    x = randn(2, 48, seed=70).float() + 0.2
    one = cpu_int8.int8_linear(x[:1], layer.qweight, layer.scales)
    assert len(seen) == 1 and torch.equal(seen[0], x[:1])
    assert torch.equal(one, call(x[:1].contiguous(), cpu_int8.packed_weight(layer.qweight, layer.scales), True))
    cpu_int8.int8_linear(x, layer.qweight, layer.scales)
    assert len(seen) == 2 and seen[1].shape == (3, 48) and torch.equal(seen[1][2], cpu_int8.span_row(48)[0])


def test_the_span_row_is_made_once_and_serves_every_mode():
    """``packed``'s appended row is cached per K: made under inference_mode, it still serves calls outside it."""
    cpu_int8.span_row.cache_clear()
    layer = _layer(32, 48)
    x = randn(2, 48, seed=69).float() + 0.1
    with torch.inference_mode():
        y = cpu_int8.int8_linear(x, layer.qweight, layer.scales)
    assert torch.equal(cpu_int8.int8_linear(x, layer.qweight, layer.scales), y)
    span = cpu_int8.span_row(48)
    assert span is cpu_int8.span_row(48) and not span.is_inference()
    assert span.tolist() == [[1.0, -1.0] + [0.0] * 46]


def test_the_int8_logits_copy_made_under_inference_mode_serves_every_mode():
    """``Embedding(int8_logits=True)``: its int8 copy, first made under inference_mode (as a decode loop may run),
    is a normal tensor, so the packed kernel's cache (keyed on version counters) takes it in and out of the mode."""
    emb = Embedding(40, 32, int8_logits=True)
    emb.load_weights({"weight": randn(40, 32, seed=70)})
    x = randn(3, 32, seed=71).float()
    with torch.inference_mode():
        y = emb.logits(x)
    assert not emb.logits_weight().qweight.is_inference()
    assert torch.equal(emb.logits(x), y)
