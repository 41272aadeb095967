"""GPTQ (``trtllm_ext.gptq``): the stored format of round to nearest, its exact result where the inputs are
uncorrelated, smaller output errors than round to nearest on correlated inputs (on the calibration rows and on
fresh rows of the same distribution), and the input statistics gathered through an op backend."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from trtllm_ext import LayerNorm, Linear, dequantize_weight, quantize_weight, unpack_int4
from trtllm_ext.backend import TORCH_BACKEND
from trtllm_ext.gptq import InputStatistics, gptq_quantize_weight
from trtllm_ext.module import init_random_

from ._helpers import randn

MODES = ["int8", "int4"]


def correlated_rows(rows: int, k: int, seed: int) -> torch.Tensor:
    """float64 [rows, k]: few latent factors mixed into k channels (strongly correlated, as activations are)."""
    z = randn(rows, k // 8, seed=seed)
    mix = randn(k // 8, k, seed=99)  # the same mixing for every call: one distribution
    return z @ mix + 0.1 * randn(rows, k, seed=seed + 1)


def output_error(x, w, q, s, mode):
    return (x @ (w.double() - dequantize_weight(q, s, mode, dtype=torch.float64)).T).norm().item()


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("scale_dtype", [torch.float32, torch.float16])
def test_a_diagonal_hessian_gives_round_to_nearest_bit_for_bit(mode, scale_dtype):
    w = randn(24, 256, seed=1).float()
    h = torch.diag(torch.rand(256, generator=torch.Generator().manual_seed(2), dtype=torch.float64) + 0.1)
    q, s = gptq_quantize_weight(w, h, mode, 128, scale_dtype=scale_dtype)
    rq, rs = quantize_weight(w, mode, 128, scale_dtype=scale_dtype)
    assert q.dtype == rq.dtype and s.dtype == rs.dtype and q.shape == rq.shape and s.shape == rs.shape
    assert torch.equal(q, rq) and torch.equal(s, rs)


@pytest.mark.parametrize("mode", MODES)
def test_gptq_beats_round_to_nearest_on_correlated_inputs(mode):
    k, n = 256, 48
    w = randn(n, k, seed=3).float()
    calib, fresh = correlated_rows(2048, k, seed=4), correlated_rows(1024, k, seed=5)
    q, s = gptq_quantize_weight(w, calib.T @ calib / calib.shape[0], mode, 128, damp=0.01)
    rq, rs = quantize_weight(w, mode, 128)
    for x in (calib, fresh):
        assert output_error(x, w, q, s, mode) < 0.7 * output_error(x, w, rq, rs, mode)
    levels = q if mode == "int8" else unpack_int4(q)
    assert levels.min() >= (-127 if mode == "int8" else -8) and levels.max() <= (127 if mode == "int8" else 7)


def test_unseen_inputs_are_rounded_alone_and_stay_finite():
    w = randn(8, 128, seed=6).float()
    x = correlated_rows(512, 128, seed=7)
    x[:, 5] = 0.0  # an input channel the calibration never exercised
    q, s = gptq_quantize_weight(w, x.T @ x / 512, "int8")
    rq, rs = quantize_weight(w, "int8")
    assert torch.equal(s, rs) and torch.isfinite(s).all()  # int8: the row's scale, from the weights as given
    assert torch.equal(q[:, 5], rq[:, 5])  # no error handed to or from the unseen channel


def test_bad_gptq_input_names_the_problem():
    w, h = randn(4, 128, seed=8).float(), torch.eye(128, dtype=torch.float64)
    with pytest.raises(ValueError, match=r"hessian must have shape \(128, 128\) .* got \(64, 64\)"):
        gptq_quantize_weight(w, torch.eye(64), "int4")
    with pytest.raises(ValueError, match="non-finite"):
        gptq_quantize_weight(w, torch.full((128, 128), float("nan")), "int4")
    with pytest.raises(ValueError, match="damp must be a positive number, got 0"):
        gptq_quantize_weight(w, h, "int4", damp=0)
    with pytest.raises(ValueError, match="multiple of group_size=96"):
        gptq_quantize_weight(w, h, "int4", 96)
    with pytest.raises(ValueError, match="quant_mode must be one of"):
        gptq_quantize_weight(w, h, "int2")


def test_input_statistics_gather_the_layernormed_inputs_and_change_no_output():
    ln, fc, plain = LayerNorm(64), Linear(64, 32), Linear(32, 16)
    for i, m in enumerate((ln, fc, plain)):
        init_random_(m, seed=i, std=0.5)
    stats = InputStatistics(TORCH_BACKEND, {"fc": fc.weight, "plain": plain.weight})
    xs = [randn(2, 5, 64, seed=10).float() + 1.0, randn(3, 64, seed=11).float()]
    for x in xs:
        h = fc(x, ln=ln, backend=stats)
        assert torch.equal(h, fc(x, ln=ln))  # the wrapped backend's own result
        assert torch.equal(plain(h, backend=stats), plain(h))
    rows = torch.cat([F.layer_norm(x.double().reshape(-1, 64), (64,), ln.weight.double(), ln.bias.double(), ln.eps)
                      for x in xs])
    assert stats.rows("fc") == 13 and stats.rows("unseen") == 0
    want = rows.T @ rows / 13
    assert (stats.hessian("fc") - want).abs().max() <= 1e-5 * want.abs().max()
    assert stats.hessian("plain").shape == (32, 32) and stats.hessian("plain").dtype == torch.float64
    with pytest.raises(KeyError, match="'unseen' saw no inputs"):
        stats.hessian("unseen")
