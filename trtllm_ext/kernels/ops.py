"""Launchers for the Triton kernels, with the same signatures as ``reference`` (CUDA tensors only).

``self_attention_int8`` / ``cross_attention_int8`` launch the attention kernels on an int8 K/V cache with its
float32 scales (``KV_INT8``): one launcher helper per kernel serves both cache kinds.

Every launcher takes ``pdl``: launch with programmatic dependent launch (Hopper+), for chains of these kernels
inside a CUDA graph: 0/False off; 1/True each kernel lets the next one launch once it has passed its own
dependency wait; 2 lets it launch at once (the next kernel's weight prefetch then overlaps the whole of this
one; every kernel still waits for its predecessor before touching activations). ``out`` buffers are written in
place (static buffers of a captured graph)."""
from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, replace

import torch
import triton

from ..quantization import check_quantized
from . import reference
from .attention import cross_attention_combine_kernel, cross_attention_kernel, self_attention_kernel
from .linear import (
    dequantize_weight_kernel,
    embed_kernel,
    fused_linear_kernel,
    fused_linear_loop_kernel,
    layer_norm_kernel,
)
from .quantize import quantize_kv_kernel

MAX_M = 32  # fused_linear keeps all M rows of a program in registers


@dataclass(frozen=True)
class LinearConfig:
    block_m: int
    block_n: int
    use_dot: bool
    split_k: int = 1
    num_warps: int = 4
    loop_k: int = 0  # > 0: the K-loop kernel with [block_n, loop_k] tiles (rows >= 16, tensor cores)
    num_stages: int = 1


#: tuned choices, keyed by (M bucket, N, K, has_ln, weight bits: 0 float, 8 int8, 4 int4); filled by
#: ``set_linear_config`` (bench/tuning)
LINEAR_CONFIGS: dict[tuple[int, int, int, bool, int], LinearConfig] = {}


def _m_bucket(m: int) -> int:
    """Row bucket of the tuned configs: 1, 16 or 32 (``MAX_M``)."""
    if m > MAX_M:
        raise ValueError(f"fused_linear handles at most {MAX_M} rows, got {m}")
    return 1 if m == 1 else 16 if m <= 16 else 32


def k_chunks(k: int) -> tuple[int, int, int]:
    """Power-of-two chunk sizes covering k: the two largest powers of two in k, the rest padded (masked)."""
    k1 = 1 << (k.bit_length() - 1)
    rest = k - k1
    k2 = 1 << (rest.bit_length() - 1) if rest else 0
    rest -= k2
    k3 = max(16, triton.next_power_of_2(rest)) if rest else 0
    return max(k1, 16), k2 if k2 >= 16 or not k2 else 16, k3


def default_linear_config(m: int, n: int, k: int, has_ln: bool, bits: int = 0) -> LinearConfig:
    """Measured on an H100 (``bench/bench_layers.py --tune``, bench/NOTES.md), large-v3 decode shapes; ``bits`` 4
    (packed int4 weights) at one row: 8 output features a program where K <= 1536 (``bench/bench_quant_layers.py
    --tune``: the unpacked slice is twice the registers of int8's).

    One row: CUDA cores, the whole weight slice (~20K weights) per program. 2..32 rows: tensor cores; with a
    LayerNorm a pipelined K loop (128-wide tiles, 3 stages); without, the whole slice split over 2 programs
    (K <= 2048) or a K loop split over K/1280 programs reduced by the last one.
    """
    if m == 1:
        bn = (8 if bits == 4 else 16) if k <= 1536 else max(1, 1 << ((10240 // k).bit_length() - 1))
        return LinearConfig(1, bn, False, 1, 4)
    bm = _m_bucket(m)
    if has_ln:
        bn = 16 if n <= 2048 else 32 if n <= 4096 else 64 if n <= 8192 else 32
        return LinearConfig(bm, bn, True, 1, 4, loop_k=128, num_stages=3)
    if k <= 2048:
        return LinearConfig(bm, 32, True, 2, 4)
    return LinearConfig(bm, 16, True, triton.cdiv(k, 1280), 4, loop_k=128, num_stages=3)


def linear_config(m: int, n: int, k: int, has_ln: bool, bits: int = 0) -> LinearConfig:
    return LINEAR_CONFIGS.get((_m_bucket(m), n, k, has_ln, bits)) or default_linear_config(m, n, k, has_ln, bits)


def set_linear_config(m: int, n: int, k: int, has_ln: bool, cfg: LinearConfig, bits: int = 0) -> None:
    LINEAR_CONFIGS[(_m_bucket(m), n, k, has_ln, bits)] = cfg


def save_linear_configs(path) -> None:
    rows = [dict(m=m, n=n, k=k, has_ln=ln, bits=bits, config=asdict(c))
            for (m, n, k, ln, bits), c in LINEAR_CONFIGS.items()]
    with open(path, "w", encoding="utf-8") as f:
        json.dump(rows, f, indent=1)


def load_linear_configs(path) -> None:
    """Read configs written by ``save_linear_configs`` (``bench/bench_layers.py --tune --emit_configs``)."""
    with open(path, encoding="utf-8") as f:
        for r in json.load(f):
            set_linear_config(r["m"], r["n"], r["k"], r["has_ln"], LinearConfig(**r["config"]), r.get("bits", 0))


if os.environ.get("TRTLLM_EXT_LINEAR_CONFIGS"):
    load_linear_configs(os.environ["TRTLLM_EXT_LINEAR_CONFIGS"])


def _check_rows(name: str, t: torch.Tensor) -> None:
    if t.dim() != 2 or t.stride(1) != 1:
        raise ValueError(f"{name}: expected a 2-D tensor with contiguous rows, got shape {tuple(t.shape)} "
                         f"strides {t.stride()}")


def _check_pos(pos, b: int, t: int) -> None:
    if pos.dtype != torch.long or not (pos.shape == (t,) or (pos.dim() == 2 and pos.shape[0] >= b
                                                              and pos.shape[1] == t and pos.stride(1) == 1)):
        raise ValueError(f"positions must be int64 of shape [{t}] or [{b}, {t}] (rows contiguous), got "
                         f"{pos.dtype} {tuple(pos.shape)}")


def _pos_row_stride(pos) -> int:
    """0 when all rows share the positions [T], else the row stride of [B, T]."""
    return 0 if pos.dim() == 1 else pos.stride(0)


def fused_linear(x, weight, bias=None, *, ln=None, gelu=False, residual=None, out=None, out_dtype=None,
                 pdl=False, config: LinearConfig | None = None, workspace: dict | None = None):
    """x [M, K] (M <= 32) -> act(LN?(x) @ weight[N, K]^T + bias) (+ residual [M, N]) -> [M, N].

    ``workspace`` (a dict, kept by the caller) holds the split-K partials and counters between calls.
    """
    _check_rows("fused_linear weight", weight)
    return _linear(x, weight, None, weight.shape[1], bias, ln, gelu, residual, out, out_dtype, pdl, config,
                   workspace)


def weight_only_linear(x, qweight, scales, bias=None, *, mode: str, group_size: int | None = None, ln=None,
                       gelu=False, residual=None, out=None, out_dtype=None, pdl=False,
                       config: LinearConfig | None = None, workspace: dict | None = None):
    """``fused_linear`` with a weight-only quantized weight, dequantized in registers: ``mode`` "int8": qweight
    int8 [N, K], scales [N]; "int4": qweight uint8 [N, K // 2] (low nibble = even k), scales [N, K // group]
    (``group_size`` checked when given). Scales in the activation dtype (``quantize_weight``'s). More than
    ``MAX_M`` rows (the encoder, prompts): the weight dequantized in one pass (``dequantize_weight``), then
    ``reference.fused_linear`` (one cuBLAS product)."""
    if x.dim() == 2 and x.shape[0] > MAX_M:  # prompts, the encoder: one dequantizing pass, then a GEMM
        weight = dequantize_weight(qweight, scales, mode, x.shape[1], group_size=group_size)
        return reference.fused_linear(x, weight, bias, ln=ln, gelu=gelu, residual=residual, out=out,
                                      out_dtype=out_dtype)
    kk, group = _check_quantized("weight_only_linear", qweight, scales, mode, x.shape[1], group_size)
    quant = (8 if group is None else 4, scales, group or 0)
    return _linear(x, qweight, quant, kk, bias, ln, gelu, residual, out, out_dtype, pdl, config, workspace)


def dequantize_weight(qweight, scales, mode: str, k: int | None = None, *, group_size: int | None = None,
                      block_n: int = 32, block_k: int = 128):
    """The float weight [N, K] (scales' dtype) of int8 qweight [N, K] + scales [N] or packed int4 qweight
    [N, K // 2] + scales [N, K // group]: ``quantization.dequantize_weight``'s values bit for bit, one pass."""
    kk, group = _check_quantized("dequantize_weight", qweight, scales, mode, k, group_size)
    n = qweight.shape[0]
    if group is not None and block_k % group:
        block_k = group * triton.cdiv(block_k, group)
    out = torch.empty((n, kk), device=qweight.device, dtype=scales.dtype)
    dequantize_weight_kernel[(triton.cdiv(n, block_n), triton.cdiv(kk, block_k))](
        qweight, scales, out, n, kk, qweight.stride(0), scales.stride(0), out.stride(0), BLOCK_N=block_n,
        BLOCK_K=block_k, QUANT=8 if group is None else 4, GROUP=group or 0, num_warps=4)
    return out


def _check_quantized(owner: str, qweight, scales, mode: str, k, group_size) -> tuple[int, int | None]:
    """``check_quantized`` plus the kernels' row layout of both tensors -> (K, int4 group or None)."""
    kk, group = check_quantized(qweight, scales, mode, k, group_size, owner=owner)
    _check_rows(f"{owner} qweight", qweight)
    _check_rows(f"{owner} scales", scales.view(scales.shape[0], -1))
    return kk, group


def _split_workspace(workspace, split, m, n, tiles, device):
    """The split-K partials [split * m * n] float32 and per-tile counters, kept in ``workspace`` by shape."""
    wsd = workspace if workspace is not None else {}
    key = ("linear", split, m, n, tiles)
    if key not in wsd:
        wsd[key] = (torch.empty(split * m * n, device=device, dtype=torch.float32),
                    torch.zeros(tiles, device=device, dtype=torch.int32))
    return wsd[key]


def _group_aligned(cfg: LinearConfig, k: int, split: int, group: int) -> LinearConfig:
    """``cfg``, or the K-loop kernel instead, so that every K chunk of a program starts at a multiple of the int4
    group and covers whole groups."""
    if cfg.loop_k:
        return cfg if cfg.loop_k % group == 0 else replace(cfg, loop_k=group * triton.cdiv(cfg.loop_k, group))
    if all(c % group == 0 for c in k_chunks(triton.cdiv(k, split))):
        return cfg
    return LinearConfig(max(16, cfg.block_m), cfg.block_n, True, split, cfg.num_warps, loop_k=max(128, group),
                        num_stages=3)


def _linear(x, weight, quant, k, bias, ln, gelu, residual, out, out_dtype, pdl, config, workspace):
    """Launch the fused linear on a float weight [N, K] (``quant`` None) or a stored quantized one (``quant`` =
    (bits, scales, group))."""
    _check_rows("fused_linear x", x)
    m, n = x.shape[0], weight.shape[0]
    if x.shape[1] != k or m > MAX_M:
        raise ValueError(f"fused_linear: x {tuple(x.shape)} / weight {tuple(weight.shape)} (M <= {MAX_M})")
    if out is None:
        out = torch.empty((m, n), device=x.device, dtype=out_dtype or x.dtype)
    _check_rows("fused_linear out", out)
    if residual is not None:
        _check_rows("fused_linear residual", residual)
    bits, scales, group = quant or (0, weight, 0)
    cfg = config or linear_config(m, n, k, ln is not None, bits)
    split = 1 if ln is not None else cfg.split_k
    if bits == 4:
        cfg = _group_aligned(cfg, k, split, group)
    lnw, lnb, eps = ln if ln is not None else (weight, weight, 0.0)
    grid = (triton.cdiv(n, cfg.block_n), triton.cdiv(m, cfg.block_m), split)
    ws, cnt = (out, out) if split == 1 else _split_workspace(workspace, split, m, n, grid[0] * grid[1], x.device)
    r = residual if residual is not None else out
    args = (x, weight, scales, bias if bias is not None else out, lnw, lnb, r, out, ws, cnt, m, n, k)
    flags = dict(SPLIT_K=split, HAS_BIAS=bias is not None, HAS_LN=ln is not None, HAS_RES=residual is not None,
                 ACT_GELU=bool(gelu), BLOCK_M=cfg.block_m, BLOCK_N=cfg.block_n, PDL=int(pdl), QUANT=bits,
                 GROUP=group, num_warps=cfg.num_warps, num_stages=cfg.num_stages, launch_pdl=bool(pdl))
    strides = (x.stride(0), weight.stride(0), scales.stride(0) if bits else 0, r.stride(0), out.stride(0),
               float(eps))
    if cfg.loop_k:
        per_split = triton.cdiv(triton.cdiv(k, split), cfg.loop_k) * cfg.loop_k
        fused_linear_loop_kernel[grid](*args, per_split, *strides, BLOCK_K=cfg.loop_k, **flags)
    else:
        k1, k2, k3 = k_chunks(triton.cdiv(k, split))
        fused_linear_kernel[grid](*args, *strides, K1=k1, K2=k2, K3=k3, USE_DOT=cfg.use_dot, **flags)
    return out


def layer_norm(x, weight, bias, eps, *, residual=None, x_out=None, out=None, pdl=False):
    """y = LN(x (+ residual)) [M, N]; with ``residual`` the rounded sum is also written to ``x_out``."""
    _check_rows("layer_norm x", x)
    m, n = x.shape
    if out is None:
        out = torch.empty_like(x)
    if residual is not None and x_out is None:
        x_out = torch.empty_like(x)
    block = triton.next_power_of_2(n)
    r = residual if residual is not None else x
    xo = x_out if x_out is not None else out
    layer_norm_kernel[(m,)](x, r, weight, bias, xo, out, n, x.stride(0), r.stride(0), xo.stride(0), out.stride(0),
                            float(eps), HAS_RES=residual is not None, BLOCK_N=block, PDL=int(pdl),
                            num_warps=4 if block <= 2048 else 8, launch_pdl=bool(pdl))
    return out


def embed(tokens, pos, emb, pemb, *, out=None, pdl=False):
    """tokens [B, T], pos [T] (shared) or [B, T] (per row) -> emb[tokens] + pemb[pos] as [B*T, N]."""
    b, t = tokens.shape
    _check_pos(pos, b, t)
    n = emb.shape[1]
    if out is None:
        out = torch.empty((b * t, n), device=emb.device, dtype=emb.dtype)
    tokens = tokens.contiguous()
    embed_kernel[(b * t,)](tokens, pos, emb, pemb, out, t, n, out.stride(0), _pos_row_stride(pos),
                           BLOCK_N=triton.next_power_of_2(n), PDL=int(pdl), num_warps=4, launch_pdl=bool(pdl))
    return out


def _kv_scales(name: str, caches: tuple, scales: tuple | None) -> tuple[tuple, tuple]:
    """The scale tensors and their (row, head, position) strides for the kernels' ``KV_INT8`` (caches int8
    ``[rows, H, L, D]``, scales float32 ``[rows, H, L, 1]``); without scales the caches stand in, strides 0."""
    if scales is None:
        return caches, (0,) * 6
    for c, sc in zip(caches, scales):
        if c.dtype != torch.int8 or sc.dtype != torch.float32 or tuple(sc.shape) != tuple(c.shape[:3]) + (1,):
            raise ValueError(f"{name}: expected int8 K/V [rows, H, L, D] with float32 scales [rows, H, L, 1], got "
                             f"{c.dtype} {tuple(c.shape)} and {sc.dtype} {tuple(sc.shape)}")
    return scales, (*scales[0].stride()[:3], *scales[1].stride()[:3])


def _query_block(n: int, cuda_cores: bool = True) -> int:
    """The attention kernels' tile of ``n`` queries: one query alone (a greedy decoding step) is multiplied on the
    CUDA cores where ``cuda_cores``; more fill a tensor-core tile of at least 16 rows. Measured on an H100
    (large-v3, per launch): the int8 cross-attention at 16 rows x 1 query 50.2 -> 35.0 us, at 1 row 9.5 -> 6.9;
    the float one 9.5 -> 9.1 (1 row), 50.3 -> 50.5 (16); the int8 self-attention 4.35 -> 3.96 (1 row), 5.94 ->
    5.36 (16), but the float self-attention 3.22 -> 3.98 and 5.28 -> 5.93: it keeps the tensor cores."""
    return 1 if n == 1 and cuda_cores else max(16, triton.next_power_of_2(n))


#: registers of a one-token self-attention step, float / int8 cache: holding the early tile across the PDL wait
#: takes 124 / 202 unbounded (``bench/offline_kernels.py``, sm_90a), fewer programs an SM than the kernel held
#: before it (5 / 3, the 320 and 640 (row, head) programs of 16 and 32 rows in one wave); at these caps, no spills
ONE_TOKEN_MAXNREG = {False: 96, True: 168}


def _self_attention(qkv, k_cache, v_cache, pos, t, scales, out, pdl):
    """``self_attention`` (``scales`` None) or ``self_attention_int8`` (``scales = (k_scale, v_scale)``)."""
    _check_rows("self_attention qkv", qkv)
    h, d = k_cache.shape[1], k_cache.shape[3]
    m = qkv.shape[0]
    b = m // t
    _check_pos(pos, b, t)
    (ks, vs), s_strides = _kv_scales("self_attention_int8", (k_cache, v_cache), scales)
    if out is None:
        out = torch.empty((m, h * d), device=qkv.device, dtype=qkv.dtype)
    self_attention_kernel[(b * h,)](
        qkv, k_cache, v_cache, ks, vs, pos, out, t, _pos_row_stride(pos), qkv.stride(0), *k_cache.stride()[:3],
        *v_cache.stride()[:3], *s_strides, out.stride(0), d ** -0.5, H=h, D=d,
        BLOCK_T=_query_block(t, cuda_cores=scales is not None), BLOCK_S=64, ONE_NEW=t == 1,
        KV_INT8=scales is not None, PDL=int(pdl), num_warps=4,
        maxnreg=ONE_TOKEN_MAXNREG[scales is not None] if t == 1 else None, launch_pdl=bool(pdl))
    return out


def self_attention(qkv, k_cache, v_cache, pos, t, *, out=None, pdl=False):
    """qkv [B*T, 3*H*D], caches [maxB, H, L, D], pos [T] (shared) or [B, T] (per row) -> o [B*T, H*D];
    writes the new K/V at ``pos`` first, then each query attends the positions <= its own."""
    return _self_attention(qkv, k_cache, v_cache, pos, t, None, out, pdl)


def self_attention_int8(qkv, k_cache, v_cache, pos, t, *, k_scale, v_scale, out=None, pdl=False):
    """``self_attention`` over int8 caches [maxB, H, L, D] (last dim contiguous) with float32 scales [maxB, H, L, 1]:
    the new K/V are quantized as ``quantization.quantize_kv`` into values and scales at ``pos``, the tiles read
    are dequantized to qkv's dtype in registers."""
    return _self_attention(qkv, k_cache, v_cache, pos, t, (k_scale, v_scale), out, pdl)


def _cross_workspace(ws: dict, m: int, h: int, d: int, num_chunks: int, n_audio: int, device) -> dict:
    """The float32 partials (max, sum; acc) of ``m * h * num_chunks`` (query, head, chunk)s and the per
    (audio, head) counters, reallocated when the shape changes."""
    need = (m * h * num_chunks, n_audio * h)
    if ws.get("shape") != need:
        ws.update(shape=need, ml=torch.empty(need[0] * 2, device=device, dtype=torch.float32),
                  acc=torch.empty(need[0] * d, device=device, dtype=torch.float32),
                  cnt=torch.zeros(need[1], device=device, dtype=torch.int32))
    return ws


def _cross_attention(q, k, v, t, group, scales, out, pdl, chunk, inline_combine, workspace):
    """``cross_attention`` (``scales`` None) or ``cross_attention_int8`` (``scales = (k_scale, v_scale)``)."""
    _check_rows("cross_attention q", q)
    h, s, d = k.shape[1], k.shape[2], k.shape[3]
    m = q.shape[0]
    qb = group * t
    n_audio = triton.cdiv(m, qb)
    chunk = max(16, min(chunk, triton.next_power_of_2(s)))
    num_chunks = triton.cdiv(s, chunk)
    (ks, vs), s_strides = _kv_scales("cross_attention_int8", (k, v), scales)
    if out is None:
        out = torch.empty((m, h * d), device=q.device, dtype=q.dtype)
    ws = _cross_workspace(workspace if workspace is not None else {}, m, h, d, num_chunks, n_audio, q.device)
    block_q = _query_block(qb)
    cross_attention_kernel[(n_audio * h, num_chunks)](
        q, k, v, ks, vs, out, ws["ml"], ws["acc"], ws["cnt"], m, qb, s, q.stride(0), *k.stride()[:3],
        *v.stride()[:3], *s_strides, out.stride(0), d ** -0.5, H=h, D=d, BLOCK_Q=block_q, CHUNK=chunk,
        NUM_CHUNKS=num_chunks, INLINE_COMBINE=inline_combine, KV_INT8=scales is not None, PDL=int(pdl),
        num_warps=4, launch_pdl=bool(pdl))
    if num_chunks > 1 and not inline_combine:
        cross_attention_combine_kernel[(n_audio * h,)](
            ws["ml"], ws["acc"], out, m, qb, out.stride(0), H=h, D=d, NUM_CHUNKS=num_chunks, BLOCK_Q=block_q,
            PDL=int(pdl), num_warps=4, launch_pdl=bool(pdl))
    return out


def cross_attention(q, k, v, t, group=1, *, out=None, pdl=False, chunk: int = 128,
                    inline_combine: bool = True, workspace: dict | None = None):
    """q [B*T, H*D], k/v [A, H, S, D] (audio a serves decoder rows a*group ..) -> o [B*T, H*D].

    ``workspace`` (optional dict) keeps the float32 partials and the counters between calls (a captured
    graph allocates them once).
    """
    return _cross_attention(q, k, v, t, group, None, out, pdl, chunk, inline_combine, workspace)


def cross_attention_int8(q, k, v, t, group=1, *, k_scale, v_scale, out=None, pdl=False, chunk: int = 128,
                         inline_combine: bool = True, workspace: dict | None = None):
    """``cross_attention`` over int8 k/v [A, H, S, D] (last dim contiguous) with float32 scales [A, H, S, 1]
    (any strides, e.g. views of the engine's ``[rows, 2, H, S, 1]``): each program fetches its int8 chunk and the
    chunk's scales before the PDL wait, as the float chunk is, and folds the scales into its products."""
    return _cross_attention(q, k, v, t, group, (k_scale, v_scale), out, pdl, chunk, inline_combine, workspace)


def quantize_kv(x, q_out, scales_out, *, block_rows: int = 32):
    """x [A, H, S, D] (float, D contiguous) -> int8 ``q_out`` [A, H, S, D] and float32 ``scales_out`` [A, H, S, 1]
    in place (views of a cache's storage, any strides): ``quantization.quantize_kv``'s values, bit for bit."""
    if x.dim() != 4 or x.stride(3) != 1 or q_out.shape != x.shape or scales_out.shape != x.shape[:3] + (1,):
        raise ValueError(f"quantize_kv: x {tuple(x.shape)} (last dim contiguous), q {tuple(q_out.shape)}, "
                         f"scales {tuple(scales_out.shape)} must be [A, H, S, D] / [A, H, S, 1]")
    a, h, s, d = x.shape
    rows = a * h * s
    quantize_kv_kernel[(triton.cdiv(rows, block_rows),)](
        x, q_out, scales_out, rows, h, s, *x.stride()[:3], *q_out.stride()[:3], *scales_out.stride()[:3],
        D=d, BLOCK_R=block_rows, num_warps=4)
    return q_out, scales_out
