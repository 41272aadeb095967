"""Decode-time attention kernels over static caches (flash-decoding style, online softmax in fp32).

Self-attention: ``qkv [B*T, 3*H*D]`` (rows b*T + t; columns q | k | v, each head-major) holds the T new tokens
of every row; ``pos`` their absolute positions ([T] shared by all rows, or [B, T] per row: ``stride_pb``).
One program per (row, head) stores the new K/V into the caches ``k_cache, v_cache [max_B, H, L, D]`` at
``pos`` and attends its T queries over cache positions ``<= pos[t]`` -> ``o [B*T, H*D]``; a one-token step
fetches its first cache tile before the PDL wait and puts the new K/V into it from registers.

Cross-attention: ``q [B*T, H*D]``; caches ``[A, H, S, D]`` (any strides, last dim contiguous) hold one row per
audio, shared by ``GROUP`` consecutive decoder rows (beam search): program (a, h, c) reads K/V of audio ``a``
once for all ``GROUP*T`` queries of that audio, over chunk c of the S positions (one tile, loaded before the
PDL wait), and writes a partial (max, sum, acc) to a float32 workspace; the chunks are merged either by the
last program to finish (``INLINE_COMBINE``: an atomic counter per (a, h), reset after use) or by
``cross_attention_combine_kernel``.

``KV_INT8`` (both kernels): the caches hold int8 values with float32 scales ``[.., H, L or S, 1]`` (``ks_ptr``,
``vs_ptr``; their own strides), one per (row, head, position) as ``quantization.quantize_kv`` makes them. The
self-attention kernel quantizes each new K/V token-head in registers by ``quantize.quantize_rows`` (the
arithmetic of ``quantize_kv``, in float32: values and scales bit-identical to its own) and stores them at ``pos``.
Both kernels read int8 tiles as they are (half the bytes and registers of a float tile) and fold the
dequantization into the products: a key's scale multiplies its column of scores, a value's scale its softmax
weight (``_scores``, ``_weighted``); the int8 values themselves are exact in the queries' dtype. With ``KV_INT8``
off the scale pointers and strides are unused and the kernels compile to the float kernels' instructions.

The query tile (``BLOCK_T`` / ``BLOCK_Q``) may be one row where a program has one query (a greedy decoding step:
``T = 1``, ``GROUP = 1``): its products then run on the CUDA cores in float32 (``_scores``, ``_weighted``; the
launchers choose where that is faster, ``ops._query_block``); otherwise the queries fill a tile of at least 16
rows for the tensor cores."""
from __future__ import annotations

import triton
import triton.language as tl

from .linear import pdl_trigger, pdl_wait
from .quantize import quantize_rows


@triton.jit
def _store_kv(c_ptr, s_ptr, pos, x, offs_d, mask_t, stride_l, stride_sl, KV_INT8: tl.constexpr):
    """Store new K or V ``x [BLOCK_T, D]`` at cache positions ``pos [BLOCK_T]`` (rows ``mask_t``); ``KV_INT8``:
    quantized per row as ``quantize_kv`` (float64: the same values and scales), scales stored at ``s_ptr``.
    Returns what was stored as ``_load_kv`` would read it back: (values, float32 scales [BLOCK_T])."""
    if KV_INT8:
        x, sc = quantize_rows(x)
        tl.store(s_ptr + pos * stride_sl, sc, mask=mask_t)
    else:
        sc = tl.full(pos.shape, 1.0, tl.float32)
    tl.store(c_ptr + pos[:, None] * stride_l + offs_d[None, :], x, mask=mask_t[:, None])
    return x, sc


@triton.jit
def _load_kv(c_ptr, s_ptr, rows, offs_d, mask, stride_l, stride_sl, KV_INT8: tl.constexpr):
    """The cache tile at positions ``rows [R]`` (``mask``: the others read 0) -> (values ``[R, D]`` as stored,
    float32 scales ``[R]``: ``KV_INT8``'s, 1 for a float cache)."""
    x = tl.load(c_ptr + rows[:, None] * stride_l + offs_d[None, :], mask=mask[:, None], other=0.0)
    if KV_INT8:
        sc = tl.load(s_ptr + rows * stride_sl, mask=mask, other=0.0)
    else:
        sc = tl.full(rows.shape, 1.0, tl.float32)
    return x, sc


@triton.jit
def _scores(q, k, k_scale, scale, KV_INT8: tl.constexpr, DOT: tl.constexpr):
    """q [Q, D] . k [R, D] -> float32 [Q, R] times ``scale``; int8 k: its values (exact in q's dtype) enter the
    product and each position's scale multiplies its column (dequantization folded into the scores). ``DOT``:
    on the tensor cores (Q >= 16); else (one query) on the CUDA cores in float32: products and a sum over D, no
    padding of the query to 16 rows, no conversion of the tile into tensor-core operands."""
    if DOT:
        if KV_INT8:
            sc = tl.dot(q, tl.trans(k.to(q.dtype)))
        else:
            sc = tl.dot(q, tl.trans(k))
    else:
        sc = tl.sum(k.to(tl.float32) * q.to(tl.float32), axis=1)[None, :]  # q [1, D] broadcast over k's rows
    if KV_INT8:
        sc = sc * (k_scale * scale)[None, :]
    else:
        sc = sc * scale
    return sc


@triton.jit
def _weighted(p, v, v_scale, DTYPE: tl.constexpr, KV_INT8: tl.constexpr, DOT: tl.constexpr):
    """Softmax weights p [Q, R] (float32) . v [R, D] -> float32 [Q, D]. ``DOT`` (tensor cores): the weights
    rounded to ``DTYPE`` (the queries'); int8 v: each weight times its position's scale over the tile's largest
    (<= 1: the rounding is p's own), the values as they are (exact in DTYPE), the product times that largest
    scale. Else (CUDA cores, one query): float32 throughout, int8 v's scale on its weight."""
    if DOT:
        if KV_INT8:
            top = tl.maximum(tl.max(v_scale, axis=0), 1e-30)  # unwritten positions have scale 0
            acc = tl.dot((p * (v_scale / top)[None, :]).to(DTYPE), v.to(DTYPE)) * top
        else:
            acc = tl.dot(p.to(DTYPE), v)
    else:
        if KV_INT8:
            p = p * v_scale[None, :]
        acc = tl.sum(v.to(tl.float32) * tl.sum(p, axis=0)[:, None], axis=0)[None, :]  # p [1, R] as a column
    return acc


@triton.jit
def _attend(q, k, k_sc, v, v_sc, valid, m_i, l_i, acc, scale, KV_INT8: tl.constexpr, DOT: tl.constexpr):
    """One key tile of an online softmax: queries q [Q, D] over keys k / values v [R, D] (with their scales) where
    ``valid [Q, R]`` (every query has a valid key in the first tile) -> the updated running (max [Q], sum [Q],
    acc [Q, D])."""
    sc = tl.where(valid, _scores(q, k, k_sc, scale, KV_INT8, DOT), float("-inf"))
    m_new = tl.maximum(m_i, tl.max(sc, axis=1))
    p = tl.exp(sc - m_new[:, None])
    alpha = tl.exp(m_i - m_new)
    l_i = l_i * alpha + tl.sum(p, axis=1)
    acc = acc * alpha[:, None] + _weighted(p, v, v_sc, q.dtype, KV_INT8, DOT)
    return m_new, l_i, acc


@triton.jit
def self_attention_kernel(
    qkv_ptr, kc_ptr, vc_ptr, ks_ptr, vs_ptr, pos_ptr, o_ptr,
    T, stride_pb, stride_qkv, stride_kb, stride_kh, stride_kl, stride_vb, stride_vh, stride_vl,
    stride_ksb, stride_ksh, stride_ksl, stride_vsb, stride_vsh, stride_vsl, stride_o, scale,
    H: tl.constexpr, D: tl.constexpr, BLOCK_T: tl.constexpr, BLOCK_S: tl.constexpr, ONE_NEW: tl.constexpr,
    KV_INT8: tl.constexpr, PDL: tl.constexpr,
):
    """Program b*H + h: the T new tokens' K/V are stored at their positions (the int8 cache quantizes them), then
    their queries, a tile of BLOCK_T rows (1 at T = 1: CUDA-core products; else >= 16, the tensor cores'), attend
    the cache positions <= their own, BLOCK_S at a time.

    A one-token step (``ONE_NEW``: T = 1) at PDL level 1 fetches the first BLOCK_S cached positions before the
    dependency wait (earlier steps wrote them, and at level 1 every kernel before the previous one has finished;
    the positions are an input of the step, never a kernel's output); the new token's K/V, stored after the wait,
    are put into that tile from registers where their position falls in it: the very values at the very place
    the tile would read back, so the outputs are those of reading it after the store. At level 2 the next kernel
    may start before earlier ones finish, so everything waits."""
    EARLY: tl.constexpr = ONE_NEW and PDL != 2
    DOT: tl.constexpr = BLOCK_T >= 16
    NEW: tl.constexpr = 1 if ONE_NEW else BLOCK_T  # the rows of new K/V: one (the int8 cache quantizes only it)
    pdl_trigger(PDL)
    if not EARLY:
        pdl_wait(PDL)
    pid = tl.program_id(0)
    b = pid // H
    h = pid % H
    offs_t = tl.arange(0, BLOCK_T)
    offs_d = tl.arange(0, D)
    offs_s = tl.arange(0, BLOCK_S)
    mask_t = offs_t < T
    kc = kc_ptr + b * stride_kb + h * stride_kh
    vc = vc_ptr + b * stride_vb + h * stride_vh
    ks = ks_ptr + b * stride_ksb + h * stride_ksh
    vs = vs_ptr + b * stride_vsb + h * stride_vsh
    pos = tl.load(pos_ptr + b * stride_pb + offs_t, mask=mask_t, other=0)
    n_keys = tl.max(pos, axis=0) + 1
    if EARLY:  # the positions before the new one; it reads 0 until put in below
        k, k_sc = _load_kv(kc, ks, offs_s, offs_d, offs_s < n_keys - 1, stride_kl, stride_ksl, KV_INT8)
        v, v_sc = _load_kv(vc, vs, offs_s, offs_d, offs_s < n_keys - 1, stride_vl, stride_vsl, KV_INT8)
        pdl_wait(PDL)
    if NEW == BLOCK_T:  # the query tile's rows and positions
        offs_n, mask_n, pos_n = offs_t, mask_t, pos
    else:
        offs_n = tl.arange(0, NEW)
        mask_n = offs_n < T
        pos_n = tl.load(pos_ptr + b * stride_pb + offs_n, mask=mask_n, other=0)
    rows_n = qkv_ptr + (b * T + offs_n)[:, None] * stride_qkv + offs_d[None, :]
    k_new, k_new_sc = _store_kv(kc, ks, pos_n, tl.load(rows_n + (H + h) * D, mask=mask_n[:, None], other=0.0),
                                offs_d, mask_n, stride_kl, stride_ksl, KV_INT8)
    v_new, v_new_sc = _store_kv(vc, vs, pos_n, tl.load(rows_n + (2 * H + h) * D, mask=mask_n[:, None], other=0.0),
                                offs_d, mask_n, stride_vl, stride_vsl, KV_INT8)
    tl.debug_barrier()  # this program's own cache writes are read back below
    if EARLY:  # the new row [1, D] into the tile at its position (no change where that is past the tile); as a
        # [D] vector broadcast in the tile's layout, so that the tile keeps its loads' layout
        at = offs_s == n_keys - 1
        k = tl.where(at[:, None], tl.reshape(k_new, (D,))[None, :], k)
        v = tl.where(at[:, None], tl.reshape(v_new, (D,))[None, :], v)
        k_sc = tl.where(at, tl.max(k_new_sc, axis=0), k_sc)  # the one row's scale (1.0 for a float cache)
        v_sc = tl.where(at, tl.max(v_new_sc, axis=0), v_sc)
    else:
        k, k_sc = _load_kv(kc, ks, offs_s, offs_d, offs_s < n_keys, stride_kl, stride_ksl, KV_INT8)
        v, v_sc = _load_kv(vc, vs, offs_s, offs_d, offs_s < n_keys, stride_vl, stride_vsl, KV_INT8)
    q = tl.load(qkv_ptr + (b * T + offs_t)[:, None] * stride_qkv + h * D + offs_d[None, :], mask=mask_t[:, None],
                other=0.0)

    m_i = tl.full([BLOCK_T], float("-inf"), dtype=tl.float32)
    l_i = tl.zeros([BLOCK_T], dtype=tl.float32)
    acc = tl.zeros([BLOCK_T, D], dtype=tl.float32)
    m_i, l_i, acc = _attend(q, k, k_sc, v, v_sc, offs_s[None, :] <= pos[:, None], m_i, l_i, acc, scale, KV_INT8,
                            DOT)
    for s0 in range(BLOCK_S, n_keys, BLOCK_S):
        s = s0 + offs_s
        k, k_sc = _load_kv(kc, ks, s, offs_d, s < n_keys, stride_kl, stride_ksl, KV_INT8)
        v, v_sc = _load_kv(vc, vs, s, offs_d, s < n_keys, stride_vl, stride_vsl, KV_INT8)
        m_i, l_i, acc = _attend(q, k, k_sc, v, v_sc, s[None, :] <= pos[:, None], m_i, l_i, acc, scale, KV_INT8, DOT)
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
    q_ptr, k_ptr, v_ptr, ks_ptr, vs_ptr, o_ptr, ws_ml_ptr, ws_acc_ptr, cnt_ptr,
    M, QB, S, stride_q, stride_kb, stride_kh, stride_ks, stride_vb, stride_vh, stride_vs,
    stride_ksb, stride_ksh, stride_kss, stride_vsb, stride_vsh, stride_vss, stride_o, scale,
    H: tl.constexpr, D: tl.constexpr, BLOCK_Q: tl.constexpr, CHUNK: tl.constexpr,
    NUM_CHUNKS: tl.constexpr, INLINE_COMBINE: tl.constexpr, KV_INT8: tl.constexpr, PDL: tl.constexpr,
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
    k, k_sc = _load_kv(k_ptr + a * stride_kb + h * stride_kh, ks_ptr + a * stride_ksb + h * stride_ksh, s, offs_d,
                       mask_s, stride_ks, stride_kss, KV_INT8)
    v, v_sc = _load_kv(v_ptr + a * stride_vb + h * stride_vh, vs_ptr + a * stride_vsb + h * stride_vsh, s, offs_d,
                       mask_s, stride_vs, stride_vss, KV_INT8)
    pdl_wait(PDL)
    q = tl.load(q_ptr + q_rows[:, None] * stride_q + h * D + offs_d[None, :], mask=mask_q[:, None], other=0.0)

    sc = _scores(q, k, k_sc, scale, KV_INT8, BLOCK_Q >= 16)
    sc = tl.where(mask_s[None, :], sc, float("-inf"))
    m_i = tl.max(sc, axis=1)
    p = tl.exp(sc - m_i[:, None])
    l_i = tl.sum(p, axis=1)
    acc = _weighted(p, v, v_sc, q.dtype, KV_INT8, BLOCK_Q >= 16)

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

