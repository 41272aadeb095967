"""Plain-PyTorch versions of the fused kernels in ``ops`` (same signatures, any device).

They compute what the unfused ``trtllm_ext`` layers compute (LayerNorm in float32, then the product in the
weight dtype, GELU and the residual add after the rounding of each op), so they serve as the kernels'
parity oracle and as the engine's CPU / no-Triton backend.

``weight_only_linear`` takes a weight-only quantized weight (int8 / packed int4 + scales) in place of a float one;
``self_attention_int8`` / ``cross_attention_int8`` take an int8 K/V cache with its float32 scales (one per row,
head and position, ``quantization.quantize_kv``): new K/V quantized on write, the cache dequantized on read.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from ..quantization import dequantize_kv, dequantize_weight, quantize_kv
from . import cpu_int8


def causal_mask(input_pos: torch.Tensor, max_len: int) -> torch.Tensor:
    """Boolean mask: a query at position p may see cache positions <= p.

    ``input_pos [t]`` -> ``[t, max_len]``; ``input_pos [b, t]`` (per row) -> ``[b, 1, t, max_len]`` (broadcasts
    over the heads of attention scores ``[b, heads, t, max_len]``).
    """
    if input_pos.dim() not in (1, 2):
        raise ValueError(f"causal_mask: input_pos must have shape [t] or [b, t], got {tuple(input_pos.shape)}")
    keys = torch.arange(max_len, device=input_pos.device)
    if input_pos.dim() == 1:
        return keys[None, :] <= input_pos[:, None]
    return keys <= input_pos[:, None, :, None]


def grouped_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """q [a*g, H, t, Dh] over k, v [a, H, s, Dh] -> [a*g, H, t, Dh]: query row i reads K/V row i // g.

    Each audio's g rows are folded into its query length (cross-attention has no mask), so K/V are never copied."""
    a, g = k.shape[0], q.shape[0] // k.shape[0]
    if g == 1:
        return F.scaled_dot_product_attention(q, k, v)
    _, h, t, dh = q.shape
    q = q.reshape(a, g, h, t, dh).transpose(1, 2).reshape(a, h, g * t, dh)
    o = F.scaled_dot_product_attention(q, k, v)
    return o.reshape(a, h, g, t, dh).transpose(1, 2).reshape(a * g, h, t, dh)


def write_kv(k_cache: torch.Tensor, v_cache: torch.Tensor, pos: torch.Tensor, k: torch.Tensor,
             v: torch.Tensor) -> None:
    """Write k, v [b, H, t, D] into rows 0..b-1 of caches [maxB, H, L, D] at pos [t] (shared) or [b, t] (per
    row; distinct within a row), cast to the caches' dtype."""
    b, t = k.shape[0], k.shape[2]
    pos = pos.expand(b, t) if pos.dim() == 1 else pos[:b]
    rows = torch.arange(b, device=pos.device)[:, None]
    k_cache[rows, :, pos] = k.transpose(1, 2).to(k_cache.dtype)  # [b, t, H, D] at (row, position)
    v_cache[rows, :, pos] = v.transpose(1, 2).to(v_cache.dtype)


def _finish(y: torch.Tensor, out: torch.Tensor | None) -> torch.Tensor:
    if out is None:
        return y
    out.copy_(y)
    return out


def fused_linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None, *,
                 ln: tuple[torch.Tensor, torch.Tensor, float] | None = None, gelu: bool = False,
                 residual: torch.Tensor | None = None, out: torch.Tensor | None = None,
                 out_dtype: torch.dtype | None = None, pdl: bool = False, config=None,
                 workspace=None) -> torch.Tensor:
    """x [M, K] -> act(LN?(x) @ weight[N, K]^T + bias) (+ residual [M, N]) -> [M, N] (out_dtype or x's)."""
    y = F.linear(_prologue(x, ln, weight.dtype), weight, bias)
    return _epilogue(y, x, gelu=gelu, residual=residual, out=out, out_dtype=out_dtype)


def _prologue(x: torch.Tensor, ln, dtype: torch.dtype) -> torch.Tensor:
    """x [M, K] -> LN?(x) (float32 statistics) in ``dtype``."""
    if ln is None:
        return x.to(dtype)
    w, b, eps = ln
    return F.layer_norm(x.float(), (x.shape[-1],), w.float(), b.float(), eps).to(dtype)


def _epilogue(y: torch.Tensor, x: torch.Tensor, *, gelu: bool, residual: torch.Tensor | None,
              out: torch.Tensor | None, out_dtype: torch.dtype | None) -> torch.Tensor:
    """y [M, N] (the product + bias) -> act(y) (+ residual) in out_dtype (else out's, else x's), into ``out``."""
    if gelu:
        y = F.gelu(y)
    if residual is not None:
        y = residual + y
    return _finish(y.to(out_dtype or (out.dtype if out is not None else x.dtype)), out)


def weight_only_linear(x: torch.Tensor, qweight: torch.Tensor, scales: torch.Tensor,
                       bias: torch.Tensor | None = None, *, mode: str, group_size: int | None = None,
                       ln: tuple[torch.Tensor, torch.Tensor, float] | None = None, gelu: bool = False,
                       residual: torch.Tensor | None = None, out: torch.Tensor | None = None,
                       out_dtype: torch.dtype | None = None, pdl: bool = False, config=None,
                       workspace=None) -> torch.Tensor:
    """``fused_linear`` with a weight-only quantized weight: x [M, K]; ``mode`` "int8": qweight int8 [N, K],
    scales [N]; "int4": qweight uint8 [N, K // 2] (low nibble = even k), scales [N, K // group_size]
    (``group_size`` checked when given). int8 with float32 CPU tensors: an int8 x int8 product of the rows quantized
    on the fly (``cpu_int8``); otherwise the weight is dequantized to scales' dtype, then ``fused_linear``."""
    if mode == "int8" and cpu_int8.applies(x, qweight):  # checks the pair once per packing (its inner loop)
        y = cpu_int8.int8_linear(_prologue(x, ln, torch.float32), qweight, scales)
        y = y if bias is None else y.add_(bias)  # y: the product's own new tensor
        return _epilogue(y, x, gelu=gelu, residual=residual, out=out, out_dtype=out_dtype)
    weight = dequantize_weight(qweight, scales, mode, x.shape[-1], group_size=group_size, dtype=scales.dtype)
    return fused_linear(x, weight, bias, ln=ln, gelu=gelu, residual=residual, out=out, out_dtype=out_dtype)


def layer_norm(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, eps: float, *,
               residual: torch.Tensor | None = None, x_out: torch.Tensor | None = None,
               out: torch.Tensor | None = None, pdl: bool = False) -> torch.Tensor:
    """y = LN(x (+ residual)) [M, N] in x's dtype; with ``residual`` the sum is also written to ``x_out``."""
    if residual is not None:
        x = x + residual
        if x_out is not None:
            x_out.copy_(x)
    y = F.layer_norm(x.float(), (x.shape[-1],), weight.float(), bias.float(), eps).to(x.dtype)
    return _finish(y, out)


def embed(tokens: torch.Tensor, pos: torch.Tensor, emb: torch.Tensor, pemb: torch.Tensor, *,
          out: torch.Tensor | None = None, pdl: bool = False) -> torch.Tensor:
    """tokens [B, T], pos [T] (shared) or [B, T] (per row) -> emb[tokens] + pemb[pos], flattened to [B*T, N]."""
    y = (F.embedding(tokens, emb) + pemb[pos]).reshape(-1, emb.shape[1])
    return _finish(y, out)


def _heads(x: torch.Tensor, b: int, t: int, h: int) -> torch.Tensor:
    """[b*t, h*d] -> [b, h, t, d]."""
    return x.reshape(b, t, h, -1).transpose(1, 2)


def self_attention(qkv: torch.Tensor, k_cache: torch.Tensor, v_cache: torch.Tensor, pos: torch.Tensor, t: int, *,
                   out: torch.Tensor | None = None, pdl: bool = False) -> torch.Tensor:
    """qkv [B*T, 3*H*D], caches [maxB, H, L, D], pos [T] (shared) or [B, T] (per row) -> o [B*T, H*D].

    Writes every new K/V at its position first; a query then sees the cache positions <= its own."""
    h, d = k_cache.shape[1], k_cache.shape[3]
    b = qkv.shape[0] // t
    q, k, v = (_heads(p, b, t, h) for p in qkv.split(h * d, dim=1))
    write_kv(k_cache, v_cache, pos, k, v)
    pos = pos.expand(b, t) if pos.dim() == 1 else pos[:b]
    # on the CPU only the written prefix is read (the length costs no sync there; a GPU graph needs a fixed shape)
    n = int(pos.max()) + 1 if k_cache.device.type == "cpu" else k_cache.shape[2]
    o = F.scaled_dot_product_attention(q, k_cache[:b, :, :n], v_cache[:b, :, :n], attn_mask=causal_mask(pos, n))
    return _finish(o.transpose(1, 2).reshape(b * t, h * d), out)


def cross_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, t: int, group: int = 1, *,
                    out: torch.Tensor | None = None, pdl: bool = False, **_) -> torch.Tensor:
    """q [B*T, H*D], k/v [A, H, S, D] (audio a serves rows a*group .. a*group+group-1) -> o [B*T, H*D]."""
    h, d = k.shape[1], k.shape[3]
    b = q.shape[0] // t
    a = -(-b // group)  # a last audio with fewer rows than group (a captured step's row bucket) is padded
    qh = F.pad(_heads(q, b, t, h), (0, 0, 0, 0, 0, 0, 0, a * group - b))
    o = grouped_attention(qh, k[:a], v[:a])[:b]
    return _finish(o.transpose(1, 2).reshape(b * t, h * d), out)


def self_attention_int8(qkv: torch.Tensor, k_cache: torch.Tensor, v_cache: torch.Tensor, pos: torch.Tensor, t: int,
                        *, k_scale: torch.Tensor, v_scale: torch.Tensor, out: torch.Tensor | None = None,
                        pdl: bool = False) -> torch.Tensor:
    """``self_attention`` over an int8 cache: caches int8 [maxB, H, L, D] with float32 scales [maxB, H, L, 1].

    Each new K/V token-head is quantized (amax / 127) into the cache at its position first; the rows read are
    then dequantized to qkv's dtype, and a query sees the cache positions <= its own."""
    h, d = k_cache.shape[1], k_cache.shape[3]
    b = qkv.shape[0] // t
    q, k, v = (_heads(p, b, t, h) for p in qkv.split(h * d, dim=1))
    (qk, sk), (qv, sv) = quantize_kv(k), quantize_kv(v)  # [b, H, t, D], [b, H, t, 1]
    write_kv(k_cache, v_cache, pos, qk, qv)
    write_kv(k_scale, v_scale, pos, sk, sv)
    pos = pos.expand(b, t) if pos.dim() == 1 else pos[:b]
    n = int(pos.max()) + 1 if k_cache.device.type == "cpu" else k_cache.shape[2]
    kd = dequantize_kv(k_cache[:b, :, :n], k_scale[:b, :, :n], q.dtype)
    vd = dequantize_kv(v_cache[:b, :, :n], v_scale[:b, :, :n], q.dtype)
    o = F.scaled_dot_product_attention(q, kd, vd, attn_mask=causal_mask(pos, n))
    return _finish(o.transpose(1, 2).reshape(b * t, h * d), out)


def cross_attention_int8(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, t: int, group: int = 1, *,
                         k_scale: torch.Tensor, v_scale: torch.Tensor, out: torch.Tensor | None = None,
                         pdl: bool = False, **_) -> torch.Tensor:
    """``cross_attention`` over int8 k/v [A, H, S, D] with float32 scales [A, H, S, 1] (dequantized to q's
    dtype for the audios the rows read)."""
    a = -(-(q.shape[0] // t) // group)
    kd = dequantize_kv(k[:a], k_scale[:a], q.dtype)
    vd = dequantize_kv(v[:a], v_scale[:a], q.dtype)
    return cross_attention(q, kd, vd, t, group, out=out)
