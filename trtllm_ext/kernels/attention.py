"""Decode-time attention kernels over static caches (flash-decoding style, online softmax in fp32).

Self-attention: ``qkv [B*T, 3*H*D]`` (rows b*T + t; columns q | k | v, each head-major) holds the T new tokens
of every row; ``pos`` their absolute positions ([T] shared by all rows, or [B, T] per row: ``stride_pb``).
One program per (row, head) stores the new K/V into the caches ``k_cache, v_cache [max_B, H, L, D]`` at
``pos``, then attends its T queries over cache positions ``<= pos[t]`` -> ``o [B*T, H*D]``.

Cross-attention: ``q [B*T, H*D]``; caches ``[A, H, S, D]`` (any strides, last dim contiguous) hold one row per
audio, shared by ``GROUP`` consecutive decoder rows (beam search): program (a, h, c) reads K/V of audio ``a``
once for all ``GROUP*T`` queries of that audio, over chunk c of the S positions (one tile, loaded before the
PDL wait), and writes a partial (max, sum, acc) to a float32 workspace; the chunks are merged either by the
last program to finish (``INLINE_COMBINE``: an atomic counter per (a, h), reset after use) or by
``cross_attention_combine_kernel``."""
from __future__ import annotations

import triton
import triton.language as tl

from .linear import pdl_trigger, pdl_wait


@triton.jit
def self_attention_kernel(
    qkv_ptr, kc_ptr, vc_ptr, pos_ptr, o_ptr,
    T, stride_pb, stride_qkv, stride_kb, stride_kh, stride_kl, stride_vb, stride_vh, stride_vl, stride_o, scale,
    H: tl.constexpr, D: tl.constexpr, BLOCK_T: tl.constexpr, BLOCK_S: tl.constexpr, PDL: tl.constexpr,
):
    pdl_trigger(PDL)
    pid = tl.program_id(0)
    b = pid // H
    h = pid % H
    offs_t = tl.arange(0, BLOCK_T)
    offs_d = tl.arange(0, D)
    offs_s = tl.arange(0, BLOCK_S)
    mask_t = offs_t < T
    pdl_wait(PDL)
    pos = tl.load(pos_ptr + b * stride_pb + offs_t, mask=mask_t, other=0)
    rows = (b * T + offs_t)[:, None] * stride_qkv
    k_new = tl.load(qkv_ptr + rows + (H + h) * D + offs_d[None, :], mask=mask_t[:, None], other=0.0)
    v_new = tl.load(qkv_ptr + rows + (2 * H + h) * D + offs_d[None, :], mask=mask_t[:, None], other=0.0)
    kc = kc_ptr + b * stride_kb + h * stride_kh
    vc = vc_ptr + b * stride_vb + h * stride_vh
    tl.store(kc + pos[:, None] * stride_kl + offs_d[None, :], k_new, mask=mask_t[:, None])
    tl.store(vc + pos[:, None] * stride_vl + offs_d[None, :], v_new, mask=mask_t[:, None])
    tl.debug_barrier()  # this program's own cache writes are read back below

    q = tl.load(qkv_ptr + rows + h * D + offs_d[None, :], mask=mask_t[:, None], other=0.0)
    n_keys = tl.max(pos, axis=0) + 1
    m_i = tl.full([BLOCK_T], float("-inf"), dtype=tl.float32)
    l_i = tl.zeros([BLOCK_T], dtype=tl.float32)
    acc = tl.zeros([BLOCK_T, D], dtype=tl.float32)
    for s0 in range(0, n_keys, BLOCK_S):
        s = s0 + offs_s
        k = tl.load(kc + s[:, None] * stride_kl + offs_d[None, :], mask=(s < n_keys)[:, None], other=0.0)
        v = tl.load(vc + s[:, None] * stride_vl + offs_d[None, :], mask=(s < n_keys)[:, None], other=0.0)
        sc = tl.dot(q, tl.trans(k)) * scale
        sc = tl.where(s[None, :] <= pos[:, None], sc, float("-inf"))
        m_new = tl.maximum(m_i, tl.max(sc, axis=1))
        p = tl.exp(sc - m_new[:, None])
        alpha = tl.exp(m_i - m_new)
        l_i = l_i * alpha + tl.sum(p, axis=1)
        acc = acc * alpha[:, None] + tl.dot(p.to(v.dtype), v)
        m_i = m_new
    out = acc / l_i[:, None]
    tl.store(o_ptr + (b * T + offs_t)[:, None] * stride_o + h * D + offs_d[None, :],
             out.to(o_ptr.dtype.element_ty), mask=mask_t[:, None])


@triton.jit
def _combine(ws_ml_ptr, ws_acc_ptr, o_ptr, q_rows, mask_q, h, stride_o,
             H: tl.constexpr, D: tl.constexpr, NUM_CHUNKS: tl.constexpr, BLOCK_Q: tl.constexpr):
    """Merge the NUM_CHUNKS partials of queries ``q_rows`` [BLOCK_Q], head h, into o."""
    offs_d = tl.arange(0, D)
    base = (q_rows * H + h) * NUM_CHUNKS  # [BLOCK_Q]
    m_all = tl.full([BLOCK_Q], float("-inf"), dtype=tl.float32)
    for c in range(NUM_CHUNKS):
        m_c = tl.load(ws_ml_ptr + (base + c) * 2, mask=mask_q, other=float("-inf"), cache_modifier=".cg")
        m_all = tl.maximum(m_all, m_c)
    m_all = tl.where(mask_q, m_all, 0.0)
    l_all = tl.zeros([BLOCK_Q], dtype=tl.float32)
    acc = tl.zeros([BLOCK_Q, D], dtype=tl.float32)
    for c in range(NUM_CHUNKS):
        m_c = tl.load(ws_ml_ptr + (base + c) * 2, mask=mask_q, other=float("-inf"), cache_modifier=".cg")
        l_c = tl.load(ws_ml_ptr + (base + c) * 2 + 1, mask=mask_q, other=0.0, cache_modifier=".cg")
        a_c = tl.load(ws_acc_ptr + (base + c)[:, None] * D + offs_d[None, :], mask=mask_q[:, None], other=0.0,
                      cache_modifier=".cg")
        f = tl.exp(m_c - m_all)
        l_all += f * l_c
        acc += f[:, None] * a_c
    out = acc / tl.where(mask_q, l_all, 1.0)[:, None]
    tl.store(o_ptr + q_rows[:, None] * stride_o + h * D + offs_d[None, :], out.to(o_ptr.dtype.element_ty),
             mask=mask_q[:, None])


@triton.jit
def cross_attention_kernel(
    q_ptr, k_ptr, v_ptr, o_ptr, ws_ml_ptr, ws_acc_ptr, cnt_ptr,
    M, QB, S, stride_q, stride_kb, stride_kh, stride_ks, stride_vb, stride_vh, stride_vs, stride_o, scale,
    H: tl.constexpr, D: tl.constexpr, BLOCK_Q: tl.constexpr, CHUNK: tl.constexpr,
    NUM_CHUNKS: tl.constexpr, INLINE_COMBINE: tl.constexpr, PDL: tl.constexpr,
):
    """Program (a*H + h, c): the GROUP*T queries of audio a, head h, over positions [c*CHUNK, (c+1)*CHUNK)."""
    pdl_trigger(PDL)
    pid = tl.program_id(0)
    a = pid // H
    h = pid % H
    c = tl.program_id(1)
    offs_d = tl.arange(0, D)
    q_rows = a * QB + tl.arange(0, BLOCK_Q)
    mask_q = (tl.arange(0, BLOCK_Q) < QB) & (q_rows < M)

    # the cross cache is constant during a decode step: the chunk's K/V are fetched before the dependency wait
    s = c * CHUNK + tl.arange(0, CHUNK)
    mask_s = s < S
    k = tl.load(k_ptr + a * stride_kb + h * stride_kh + s[:, None] * stride_ks + offs_d[None, :],
                mask=mask_s[:, None], other=0.0)
    v = tl.load(v_ptr + a * stride_vb + h * stride_vh + s[:, None] * stride_vs + offs_d[None, :],
                mask=mask_s[:, None], other=0.0)
    pdl_wait(PDL)
    q = tl.load(q_ptr + q_rows[:, None] * stride_q + h * D + offs_d[None, :], mask=mask_q[:, None], other=0.0)

    sc = tl.dot(q, tl.trans(k)) * scale
    sc = tl.where(mask_s[None, :], sc, float("-inf"))
    m_i = tl.max(sc, axis=1)
    p = tl.exp(sc - m_i[:, None])
    l_i = tl.sum(p, axis=1)
    acc = tl.dot(p.to(v.dtype), v)

    if NUM_CHUNKS == 1:
        out = acc / tl.where(mask_q, l_i, 1.0)[:, None]
        tl.store(o_ptr + q_rows[:, None] * stride_o + h * D + offs_d[None, :], out.to(o_ptr.dtype.element_ty),
                 mask=mask_q[:, None])
    else:
        base = (q_rows * H + h) * NUM_CHUNKS + c
        tl.store(ws_ml_ptr + base * 2, m_i, mask=mask_q)
        tl.store(ws_ml_ptr + base * 2 + 1, l_i, mask=mask_q)
        tl.store(ws_acc_ptr + base[:, None] * D + offs_d[None, :], acc, mask=mask_q[:, None])
        if INLINE_COMBINE:
            tl.debug_barrier()  # every thread's partial is stored before the release below
            done = tl.atomic_add(cnt_ptr + pid, 1, sem="acq_rel", scope="gpu")
            if done == NUM_CHUNKS - 1:  # the last chunk of (a, h) to finish merges them
                _combine(ws_ml_ptr, ws_acc_ptr, o_ptr, q_rows, mask_q, h, stride_o, H, D, NUM_CHUNKS, BLOCK_Q)
                tl.atomic_xchg(cnt_ptr + pid, 0, sem="relaxed", scope="gpu")


@triton.jit
def cross_attention_combine_kernel(
    ws_ml_ptr, ws_acc_ptr, o_ptr, M, QB, stride_o,
    H: tl.constexpr, D: tl.constexpr, NUM_CHUNKS: tl.constexpr, BLOCK_Q: tl.constexpr, PDL: tl.constexpr,
):
    pdl_trigger(PDL)
    pid = tl.program_id(0)
    a = pid // H
    h = pid % H
    q_rows = a * QB + tl.arange(0, BLOCK_Q)
    mask_q = (tl.arange(0, BLOCK_Q) < QB) & (q_rows < M)
    pdl_wait(PDL)
    _combine(ws_ml_ptr, ws_acc_ptr, o_ptr, q_rows, mask_q, h, stride_o, H, D, NUM_CHUNKS, BLOCK_Q)

