"""LayerNorm: float64 parity in fp32, and fp32 arithmetic (rounded once) for fp16/bf16 activations."""
import torch
import torch.nn.functional as F
from parameterized import parameterized

from trtllm_ext import LayerNorm, init_random_

from ._helpers import assert_rel_close, load_random, randn, ref_layernorm


@parameterized.expand([
    ((1, 1), 1),
    ((1, 7), 7),
    ((3, 5), 16),
    ((2, 3), 33),
    ((4,), 384),
])
def test_layernorm_fp32_matches_float64_reference(lead, n):
    ln = LayerNorm(n)
    w = load_random(ln, n)
    x = randn(*lead, n, seed=n + 1, scale=3.0) + 0.5
    out = ln(x.float())
    assert out.dtype == torch.float32
    ref = ref_layernorm(x, w["weight"], w["bias"])
    if n == 1:  # a single feature normalises to 0: the output is the bias
        torch.testing.assert_close(out, w["bias"].float().expand_as(out))
    else:
        assert_rel_close(out, ref)


def test_layernorm_custom_eps():
    ln = LayerNorm(8, eps=0.5)
    w = load_random(ln, 3)
    x = randn(2, 8, seed=4, scale=0.3)
    assert_rel_close(ln(x.float()), ref_layernorm(x, w["weight"], w["bias"], eps=0.5))


def _ulp(x: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """The spacing of ``dtype`` numbers at |x| (float64)."""
    info = torch.finfo(dtype)
    exp = torch.floor(torch.log2(x.abs().clamp_min(info.tiny)))
    return torch.pow(2.0, exp - (info.bits - 1 - (5 if dtype == torch.float16 else 8)))


@parameterized.expand([("fp16", torch.float16), ("bf16", torch.bfloat16)])
def test_layernorm_lowp_input_computes_in_fp32_rounded_once(_, dtype):
    n = 64
    ln = LayerNorm(n, dtype=dtype)
    assert ln.weight.dtype == torch.float32  # parameters stay fp32 by default
    w = load_random(ln, 17)
    x = (randn(3, 5, n, seed=18, scale=2.0) + 1.0).to(dtype)
    out = ln(x)
    assert out.dtype == dtype
    # exactly the float32 computation, rounded once to the activation dtype
    fp32 = F.layer_norm(x.float(), (n,), ln.weight, ln.bias, ln.eps)
    assert torch.equal(out, fp32.to(dtype))
    # hence within half an ulp (plus fp32 noise) of the exact result computed on the same fp16 input
    ref = ref_layernorm(x.double(), w["weight"], w["bias"])
    err = (out.double() - ref).abs()
    assert (err <= 0.5 * _ulp(ref, dtype) * (1 + 1e-3) + 1e-6 * ref.abs()).all(), err.max()


def test_layernorm_fp16_large_inputs_do_not_overflow():
    """Variance 1e6 does not fit in fp16 (max 65504): a float16 computation would give inf/NaN."""
    n = 32
    ln = LayerNorm(n, dtype=torch.float16)
    w = load_random(ln, 5)
    x = (randn(2, n, seed=6) * 1000.0).half()
    assert torch.isinf((x.float() ** 2).half()).any()  # the squares overflow fp16
    out = ln(x)
    ref = ref_layernorm(x.double(), w["weight"], w["bias"])
    assert torch.isfinite(out).all()
    assert_rel_close(out, ref, tol=1e-3)


def test_layernorm_fp16_params():
    ln = LayerNorm(24, dtype=torch.float16, param_dtype=torch.float16)
    w = load_random(ln, 9)
    assert ln.weight.dtype == torch.float16
    x = randn(4, 24, seed=10).half()
    assert_rel_close(ln(x), ref_layernorm(x.double(), w["weight"], w["bias"]), tol=1e-3)


def test_layernorm_init_random_scale_near_one():
    ln = init_random_(LayerNorm(1000), seed=1)
    assert abs(ln.weight.mean().item() - 1.0) < 0.01
    assert abs(ln.bias.mean().item()) < 0.01
