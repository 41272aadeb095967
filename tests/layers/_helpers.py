"""Float64 references and random-weight helpers shared by the layer tests (no dependency on whisper_model)."""
from __future__ import annotations

import math

import torch

import trtllm_ext
from trtllm_ext import LayerNorm

FP32_TOL = 1e-5
LOWP_TOL = {torch.float16: 1e-3, torch.bfloat16: 1e-2}


def gen(seed: int) -> torch.Generator:
    return torch.Generator(device="cpu").manual_seed(seed)


def randn(*shape: int, seed: int, scale: float = 1.0) -> torch.Tensor:
    """float64 N(0, scale^2) from a fresh generator (every case gets its own seed)."""
    return torch.randn(shape, generator=gen(seed), dtype=torch.float64) * scale


def rel_err(out: torch.Tensor, ref: torch.Tensor) -> float:
    out, ref = out.detach().double().cpu(), ref.detach().double().cpu()
    return ((out - ref).norm() / ref.norm()).item()


def assert_rel_close(out: torch.Tensor, ref: torch.Tensor, tol: float = FP32_TOL) -> None:
    assert tuple(out.shape) == tuple(ref.shape), f"shape {tuple(out.shape)} != reference {tuple(ref.shape)}"
    assert torch.isfinite(out).all(), "output has non-finite values"
    err = rel_err(out, ref)
    assert err <= tol, f"relative error {err:.3e} > {tol:.1e}"


def random_weights(layer: torch.nn.Module, seed: int) -> dict[str, torch.Tensor]:
    """Fresh float64 values for every entry of ``layer.state_dict()`` (declared, i.e. rank-local, shapes).

    Matrices ~ N(0, 1/fan_in) (non-symmetric with probability 1), biases ~ N(0, 0.1^2), LayerNorm scales
    ~ 1 + N(0, 0.1^2). Each entry draws from its own generator derived from ``seed``.
    """
    modules = dict(layer.named_modules())
    out = {}
    for i, (name, p) in enumerate(layer.state_dict().items()):
        owner = modules[name.rpartition(".")[0]]
        g = gen(seed * 1000 + i)
        noise = torch.randn(tuple(p.shape), generator=g, dtype=torch.float64)
        if isinstance(owner, LayerNorm):
            value = 1.0 + 0.1 * noise if name.endswith("weight") else 0.1 * noise
        elif p.dim() >= 2:
            fan_in = math.prod(p.shape[1:])
            value = noise / math.sqrt(fan_in)
        else:
            value = 0.1 * noise
        out[name] = value
    return out


def load_random(layer: torch.nn.Module, seed: int) -> dict[str, torch.Tensor]:
    """Load fresh random weights into ``layer`` (through ``load_weights``) and return their float64 values."""
    weights = random_weights(layer, seed)
    layer.load_weights(weights)
    # the float64 reference must use exactly what the layer holds (values rounded to its dtype)
    return {k: v.detach().double().cpu() for k, v in layer.state_dict().items()}


# ----------------------------------------------------------------------------------------------------------
# float64 references
# ----------------------------------------------------------------------------------------------------------

def ref_linear(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None = None) -> torch.Tensor:
    y = x.double() @ w.double().T
    return y if b is None else y + b.double()


def ref_layernorm(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    x = x.double()
    mean = x.mean(-1, keepdim=True)
    var = ((x - mean) ** 2).mean(-1, keepdim=True)
    return (x - mean) / torch.sqrt(var + eps) * w.double() + b.double()


def ref_activation(x: torch.Tensor, name: str) -> torch.Tensor:
    if name == "gelu":
        return 0.5 * x * (1.0 + torch.erf(x / math.sqrt(2.0)))
    if name == "gelu_tanh":
        return 0.5 * x * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x ** 3)))
    if name == "relu":
        return x.clamp_min(0)
    raise AssertionError(name)


def ref_mlp(x: torch.Tensor, w: dict, activation: str = "gelu", prefix: str = "") -> torch.Tensor:
    h = ref_activation(ref_linear(x, w[prefix + "fc.weight"], w.get(prefix + "fc.bias")), activation)
    return ref_linear(h, w[prefix + "proj.weight"], w.get(prefix + "proj.bias"))


def ref_sdpa(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, causal: bool = False) -> torch.Tensor:
    """q [b, h, t, d], k/v [b, h, s, d] in float64; causal aligns query i with key i (t == s)."""
    scores = q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1])
    if causal:
        t, s = scores.shape[-2:]
        keep = torch.ones(t, s, dtype=torch.bool).tril()
        scores = scores.masked_fill(~keep, float("-inf"))
    return torch.softmax(scores, dim=-1) @ v


def _split_heads(y: torch.Tensor, heads: int) -> torch.Tensor:
    b, t, n = y.shape
    return y.reshape(b, t, heads, n // heads).transpose(1, 2)


def _merge_heads(o: torch.Tensor) -> torch.Tensor:
    b, h, t, d = o.shape
    return o.transpose(1, 2).reshape(b, t, h * d)


def ref_mha(x, kv_in, wq, bq, wk, bk, wv, bv, wo, bo, heads: int, causal: bool = False) -> torch.Tensor:
    """Plain multi-head attention in float64 with separate q/k/v/out projections."""
    q = _split_heads(ref_linear(x, wq, bq), heads)
    k = _split_heads(ref_linear(kv_in, wk, bk), heads)
    v = _split_heads(ref_linear(kv_in, wv, bv), heads)
    return ref_linear(_merge_heads(ref_sdpa(q, k, v, causal)), wo, bo)


def ref_attention(x: torch.Tensor, w: dict, heads: int, causal: bool = False, prefix: str = "") -> torch.Tensor:
    """Self-attention with a fused qkv ([q; k; v] rows) and a dense output projection."""
    n = w[prefix + "qkv.weight"].shape[0] // 3
    wq, wk, wv = w[prefix + "qkv.weight"].split(n)
    bq = bk = bv = None
    if prefix + "qkv.bias" in w:
        bq, bk, bv = w[prefix + "qkv.bias"].split(n)
    return ref_mha(x.double(), x.double(), wq, bq, wk, bk, wv, bv, w[prefix + "dense.weight"],
                   w.get(prefix + "dense.bias"), heads, causal)


def ref_cross_attention(x: torch.Tensor, xa: torch.Tensor, w: dict, heads: int, prefix: str = "") -> torch.Tensor:
    """Cross-attention with ``query``, fused ``kv`` ([k; v] rows) and ``dense``."""
    n = w[prefix + "query.weight"].shape[0]
    wk, wv = w[prefix + "kv.weight"].split(n)
    bk = bv = None
    if prefix + "kv.bias" in w:
        bk, bv = w[prefix + "kv.bias"].split(n)
    return ref_mha(x.double(), xa.double(), w[prefix + "query.weight"], w.get(prefix + "query.bias"), wk, bk, wv,
                   bv, w[prefix + "dense.weight"], w.get(prefix + "dense.bias"), heads)


def rank_local(layer: torch.nn.Module) -> torch.nn.Module:
    """Make every RowLinear inside ``layer`` return its rank-local partial product (no all-reduce, no bias).

    With this, a tensor-parallel Attention / CrossAttention / MLP built for (tp_size, tp_rank) can be run
    without torch.distributed: the sum over ranks plus the (replicated) bias is the full output.
    """
    for m in layer.modules():
        if isinstance(m, trtllm_ext.RowLinear):
            local_forward(m)
    return layer


def local_forward(m: torch.nn.Module) -> None:
    """``m``'s forward becomes its rank-local part (``forward_local``); no residual may be asked of it."""
    def forward(x, *, residual=None, backend=trtllm_ext.TORCH_BACKEND):
        assert residual is None, "a rank-local partial product takes no residual"
        return m.forward_local(x, backend=backend)

    m.forward = forward
