"""Small-M fused linear (GEMV-like) kernel for decode steps.

``y[M, N] = act(LN(x)[M, K] @ W[N, K]^T + b[N]) (+ r[M, N])`` with M <= 32 rows (batch x new tokens).

At decode time a step's cost is streaming the weights: each program owns ``BLOCK_N`` output features and a
K slice, loads that whole ``[BLOCK_N, K-slice]`` weight block at once (power-of-two chunks, e.g. 1280 =
1024 + 256, so no lane is masked off), multiplies it into all M rows and is done: nothing waits on a loop.

Fusions:

* ``LN`` (optional): LayerNorm of the input rows, statistics in float32 from the same registers (mean, then
  the centred sum of squares), rounded to the weight dtype before the product as an unfused
  ``LayerNorm -> Linear`` would;
* ``bias``, exact (erf) ``gelu``, and a residual ``r`` added in float32 before the single rounding of ``y``
  (``y`` may alias ``r``: each element is read then written by the same program). ``r`` is loaded with the
  activations, right after the dependency wait, so its round trip overlaps theirs instead of following the sums.

Products: ``USE_DOT=False`` multiplies on the CUDA cores (one row); ``USE_DOT=True`` uses the tensor cores
with ``BLOCK_M >= 16`` rows (padding rows are masked, costing no memory traffic).

Weight-only quantized weights (``QUANT``; ``trtllm_ext.quantization``'s layouts): 8 = int8 ``[N, K]`` with one
scale per output channel, 4 = packed int4 ``[N, K // 2]`` (low nibble = even k) with one scale per ``GROUP`` k
of a channel (a program's K chunks start at multiples of GROUP: ``ops`` picks such configs). The stored block is
loaded before the dependency wait (half or a quarter of the float bytes) and dequantized in registers: int8
values enter the product as they are and the float32 result is multiplied by the channel's scale; int4 nibbles
are multiplied by their group's scale in the activation dtype (one rounding, the very weights of
``dequantize_weight``).

Programmatic dependent launch (``PDL=True``, launched with ``launch_pdl=True``): the weights, LayerNorm
parameters and bias are loaded first (they never depend on the previous kernel), then the program waits for
the previous kernel (``griddepcontrol.wait``) before touching activations, so launch latency and the weight
fetch overlap the previous kernel. Nothing is written before the wait.
"""
from __future__ import annotations

import triton
import triton.language as tl


@triton.jit
def pdl_trigger(PDL: tl.constexpr):
    """PDL level 2: let the next kernel launch now (called first thing in every kernel)."""
    if PDL == 2:
        tl.extra.cuda.gdc_launch_dependents()


@triton.jit
def tile(M, N, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr):
    """The output tile of program (n, m, k) of a fused linear: its ids, row / column offsets and their masks."""
    pid_n = tl.program_id(0)
    pid_m = tl.program_id(1)
    pid_k = tl.program_id(2)
    offs_n = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    offs_m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    return pid_n, pid_m, pid_k, offs_n, offs_m, offs_n < N, offs_m < M


@triton.jit
def pdl_wait(PDL: tl.constexpr):
    """Wait for the previous kernel (its writes are visible after this); level 1 then lets the next launch."""
    if PDL:
        tl.extra.cuda.gdc_wait()
    if PDL == 1:
        tl.extra.cuda.gdc_launch_dependents()


@triton.jit
def _load_w(w_rows, k0, mask_n, K, KC: tl.constexpr, QUANT: tl.constexpr):
    """The stored weight block of k in [k0, k0 + KC) (lanes past K read 0): float or int8 values [BN, KC], or the
    packed int4 bytes [BN, KC // 2]."""
    if QUANT == 4:
        ob = k0 // 2 + tl.arange(0, KC // 2)
        return tl.load(w_rows + ob[None, :], mask=mask_n[:, None] & (ob * 2 < K)[None, :], other=0)
    else:
        o = k0 + tl.arange(0, KC)
        return tl.load(w_rows + o[None, :], mask=mask_n[:, None] & (o < K)[None, :], other=0)


@triton.jit
def _load_s(s_rows, k0, mask_n, K, KC: tl.constexpr, QUANT: tl.constexpr, GROUP: tl.constexpr):
    """Scales: int8, each channel's [BN]; int4, the groups of the block at k0 (a multiple of GROUP <= KC)
    [BN, KC // GROUP]. ``s_rows`` [BN] points at each channel's first scale."""
    if QUANT == 4:
        og = k0 // GROUP + tl.arange(0, KC // GROUP)
        return tl.load(s_rows[:, None] + og[None, :], mask=mask_n[:, None] & (og * GROUP < K)[None, :], other=0.0)
    else:
        return tl.load(s_rows, mask=mask_n, other=0.0)


@triton.jit
def _dequant(w, s, QUANT: tl.constexpr, GROUP: tl.constexpr):
    """A stored block -> weights [BN, KC] in the scales' dtype: int8 values as they are (exact; the channel scale
    multiplies the product instead); int4 nibbles (low = even k) times their group's scale, one rounding, as
    ``dequantize_weight``."""
    if QUANT == 4:
        lo = (w & 0xF).to(tl.int8)
        hi = (w >> 4).to(tl.int8)
        q = tl.join((lo ^ 8) - 8, (hi ^ 8) - 8)  # [BN, KC // 2, 2], two's complement nibbles
        bn: tl.constexpr = w.shape[0]
        kc: tl.constexpr = w.shape[1] * 2
        q = tl.reshape(q, (bn, kc // GROUP, GROUP))
        return tl.reshape(q.to(s.dtype) * s[:, :, None], (bn, kc))
    else:
        return w.to(s.dtype)


@triton.jit
def _mac(x, w, USE_DOT: tl.constexpr):
    """x [BM, KC] @ w [BN, KC]^T -> [BM, BN] float32 (tensor cores, or CUDA-core products). One row is broadcast
    over the weight block in the block's own layout (two dimensions): the three-dimensional product moved the block
    into another layout first (sm_90a PTX of the attention-out projection: 33 block-wide barriers against 8)."""
    if USE_DOT:
        return tl.dot(x, tl.trans(w))
    elif x.shape[0] == 1:
        kc: tl.constexpr = x.shape[1]
        return tl.sum(w.to(tl.float32) * tl.reshape(x, (kc,)).to(tl.float32)[None, :], axis=1)[None, :]
    else:
        return tl.sum(x.to(tl.float32)[:, None, :] * w.to(tl.float32)[None, :, :], axis=2)


@triton.jit
def _load_res(r_ptr, offs_m, offs_n, mask_m, mask_n, stride_rm, HAS_RES: tl.constexpr, BLOCK_M: tl.constexpr,
              BLOCK_N: tl.constexpr):
    """The residual tile [BLOCK_M, BLOCK_N] in float32 (zeros without one), loaded right after the dependency wait
    beside the activations so that its round trip is not one more step of the epilogue; ``y`` may alias ``r``:
    only the program that writes a tile's outputs uses what it read."""
    if HAS_RES:
        return tl.load(r_ptr + offs_m[:, None] * stride_rm + offs_n[None, :], mask=mask_m[:, None] & mask_n[None, :],
                       other=0.0).to(tl.float32)
    else:
        return tl.zeros([BLOCK_M, BLOCK_N], dtype=tl.float32)


@triton.jit
def _finish(acc, bias, res, offs_m, offs_n, mask_m, mask_n, y_ptr, stride_ym, ACT_GELU: tl.constexpr):
    acc += bias[None, :]
    if ACT_GELU:
        acc = 0.5 * acc * (1.0 + tl.math.erf(acc * 0.7071067811865476))
    acc += res
    tl.store(y_ptr + offs_m[:, None] * stride_ym + offs_n[None, :], acc.to(y_ptr.dtype.element_ty),
             mask=mask_m[:, None] & mask_n[None, :])


@triton.jit
def _epilogue(acc, bias, res, offs_m, offs_n, mask_m, mask_n, M, N, pid_m, pid_n, pid_k, ws_ptr, cnt_ptr, y_ptr,
              stride_ym, SPLIT_K: tl.constexpr, ACT_GELU: tl.constexpr):
    """Write the tile (plus the residual ``res``, from ``_load_res``); with split K, store this slice's partial
    and let the last slice to finish reduce all."""
    if SPLIT_K == 1:
        _finish(acc, bias, res, offs_m, offs_n, mask_m, mask_n, y_ptr, stride_ym, ACT_GELU)
    else:
        mask = mask_m[:, None] & mask_n[None, :]
        tile = offs_m[:, None] * N + offs_n[None, :]
        tl.store(ws_ptr + pid_k * M * N + tile, acc, mask=mask)
        tl.debug_barrier()  # every thread's partial is stored before the release below
        counter = cnt_ptr + pid_m * tl.num_programs(0) + pid_n
        done = tl.atomic_add(counter, 1, sem="acq_rel", scope="gpu")
        if done == SPLIT_K - 1:  # the last K slice of this tile to finish reduces all of them
            acc = tl.zeros_like(acc)
            for i in range(SPLIT_K):
                acc += tl.load(ws_ptr + i * M * N + tile, mask=mask, other=0.0, cache_modifier=".cg")
            _finish(acc, bias, res, offs_m, offs_n, mask_m, mask_n, y_ptr, stride_ym, ACT_GELU)
            tl.atomic_xchg(counter, 0, sem="relaxed", scope="gpu")


@triton.jit
def fused_linear_kernel(
    x_ptr, w_ptr, s_ptr, b_ptr, lnw_ptr, lnb_ptr, r_ptr, y_ptr, ws_ptr, cnt_ptr,
    M, N, K, stride_xm, stride_wn, stride_sn, stride_rm, stride_ym, eps,
    K1: tl.constexpr, K2: tl.constexpr, K3: tl.constexpr, SPLIT_K: tl.constexpr,
    HAS_BIAS: tl.constexpr, HAS_LN: tl.constexpr, HAS_RES: tl.constexpr, ACT_GELU: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, USE_DOT: tl.constexpr, PDL: tl.constexpr,
    QUANT: tl.constexpr = 0, GROUP: tl.constexpr = 0,
):
    """Program (n, m, k): outputs [BLOCK_M, BLOCK_N] over the K slice [k*KS, (k+1)*KS), KS = K1+K2+K3
    (power-of-two chunks; K2/K3 may be 0; lanes past K are masked). SPLIT_K > 1 (no LN): partial sums go to
    ``ws [SPLIT_K, M, N]`` and the last program of each output tile (atomic counter) reduces them. ``QUANT``:
    ``w`` int8 / packed int4 with scales ``s`` (row stride ``stride_sn``), dequantized after the wait."""
    pdl_trigger(PDL)
    pid_n, pid_m, pid_k, offs_n, offs_m, mask_n, mask_m = tile(M, N, BLOCK_M, BLOCK_N)
    k0 = pid_k * (K1 + K2 + K3)
    w_rows = w_ptr + offs_n[:, None] * stride_wn
    x_rows = x_ptr + offs_m[:, None] * stride_xm
    s_rows = s_ptr + offs_n * stride_sn

    # everything that does not depend on the previous kernel, before the dependency wait:
    # the program's whole weight slice (and its scales), the LayerNorm parameters and the bias
    o1 = k0 + tl.arange(0, K1)
    w1 = _load_w(w_rows, k0, mask_n, K, K1, QUANT)
    if QUANT:  # int8: the channels' scales; int4: each chunk's group scales
        s1 = _load_s(s_rows, k0, mask_n, K, K1, QUANT, GROUP)
    if K2 > 0:
        o2 = k0 + K1 + tl.arange(0, K2)
        w2 = _load_w(w_rows, k0 + K1, mask_n, K, K2, QUANT)
        if QUANT == 4:
            s2 = _load_s(s_rows, k0 + K1, mask_n, K, K2, QUANT, GROUP)
        elif QUANT == 8:
            s2 = s1
    if K3 > 0:
        o3 = k0 + K1 + K2 + tl.arange(0, K3)
        w3 = _load_w(w_rows, k0 + K1 + K2, mask_n, K, K3, QUANT)
        if QUANT == 4:
            s3 = _load_s(s_rows, k0 + K1 + K2, mask_n, K, K3, QUANT, GROUP)
        elif QUANT == 8:
            s3 = s1
    if HAS_LN:
        g1 = tl.load(lnw_ptr + o1, mask=o1 < K, other=0.0).to(tl.float32)
        c1 = tl.load(lnb_ptr + o1, mask=o1 < K, other=0.0).to(tl.float32)
        if K2 > 0:
            g2 = tl.load(lnw_ptr + o2, mask=o2 < K, other=0.0).to(tl.float32)
            c2 = tl.load(lnb_ptr + o2, mask=o2 < K, other=0.0).to(tl.float32)
        if K3 > 0:
            g3 = tl.load(lnw_ptr + o3, mask=o3 < K, other=0.0).to(tl.float32)
            c3 = tl.load(lnb_ptr + o3, mask=o3 < K, other=0.0).to(tl.float32)
    if HAS_BIAS:
        bias = tl.load(b_ptr + offs_n, mask=mask_n, other=0.0).to(tl.float32)
    else:
        bias = tl.zeros([BLOCK_N], dtype=tl.float32)
    pdl_wait(PDL)
    if QUANT:
        w1 = _dequant(w1, s1, QUANT, GROUP)
        if K2 > 0:
            w2 = _dequant(w2, s2, QUANT, GROUP)
        if K3 > 0:
            w3 = _dequant(w3, s3, QUANT, GROUP)

    x1 = tl.load(x_rows + o1[None, :], mask=mask_m[:, None] & (o1 < K)[None, :], other=0.0)
    if K2 > 0:
        x2 = tl.load(x_rows + o2[None, :], mask=mask_m[:, None] & (o2 < K)[None, :], other=0.0)
    if K3 > 0:
        x3 = tl.load(x_rows + o3[None, :], mask=mask_m[:, None] & (o3 < K)[None, :], other=0.0)
    res = _load_res(r_ptr, offs_m, offs_n, mask_m, mask_n, stride_rm, HAS_RES, BLOCK_M, BLOCK_N)
    if HAS_LN:  # statistics in float32 from the registers: mean, then the centred sum of squares
        s = tl.sum(x1.to(tl.float32), axis=1)
        if K2 > 0:
            s += tl.sum(x2.to(tl.float32), axis=1)
        if K3 > 0:
            s += tl.sum(x3.to(tl.float32), axis=1)
        mean = s / K
        d1 = tl.where((o1 < K)[None, :], x1.to(tl.float32) - mean[:, None], 0.0)
        v = tl.sum(d1 * d1, axis=1)
        if K2 > 0:
            d2 = tl.where((o2 < K)[None, :], x2.to(tl.float32) - mean[:, None], 0.0)
            v += tl.sum(d2 * d2, axis=1)
        if K3 > 0:
            d3 = tl.where((o3 < K)[None, :], x3.to(tl.float32) - mean[:, None], 0.0)
            v += tl.sum(d3 * d3, axis=1)
        rstd = 1.0 / tl.sqrt(v / K + eps)
        x1 = (d1 * rstd[:, None] * g1[None, :] + c1[None, :]).to(w1.dtype)
        if K2 > 0:
            x2 = (d2 * rstd[:, None] * g2[None, :] + c2[None, :]).to(w1.dtype)
        if K3 > 0:
            x3 = (d3 * rstd[:, None] * g3[None, :] + c3[None, :]).to(w1.dtype)

    acc = _mac(x1.to(w1.dtype), w1, USE_DOT)
    if K2 > 0:
        acc += _mac(x2.to(w1.dtype), w2, USE_DOT)
    if K3 > 0:
        acc += _mac(x3.to(w1.dtype), w3, USE_DOT)
    if QUANT == 8:
        acc = acc * s1.to(tl.float32)[None, :]

    _epilogue(acc, bias, res, offs_m, offs_n, mask_m, mask_n, M, N, pid_m, pid_n, pid_k, ws_ptr, cnt_ptr, y_ptr,
              stride_ym, SPLIT_K, ACT_GELU)


@triton.jit
def fused_linear_loop_kernel(
    x_ptr, w_ptr, s_ptr, b_ptr, lnw_ptr, lnb_ptr, r_ptr, y_ptr, ws_ptr, cnt_ptr,
    M, N, K, K_PER_SPLIT, stride_xm, stride_wn, stride_sn, stride_rm, stride_ym, eps,
    SPLIT_K: tl.constexpr, HAS_BIAS: tl.constexpr, HAS_LN: tl.constexpr, HAS_RES: tl.constexpr,
    ACT_GELU: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr,
    PDL: tl.constexpr, QUANT: tl.constexpr = 0, GROUP: tl.constexpr = 0,
):
    """Same function as ``fused_linear_kernel`` for several rows on the tensor cores: a K loop of
    [BLOCK_N, BLOCK_K] tiles (software-pipelined by Triton, ``num_stages``), for when a program's whole
    slice would not fit in registers. LN statistics take one extra pass over the (L2-resident) rows."""
    pdl_trigger(PDL)
    pid_n, pid_m, pid_k, offs_n, offs_m, mask_n, mask_m = tile(M, N, BLOCK_M, BLOCK_N)
    offs_k = tl.arange(0, BLOCK_K)
    x_rows = x_ptr + offs_m[:, None] * stride_xm
    w_rows = w_ptr + offs_n[:, None] * stride_wn
    s_rows = s_ptr + offs_n * stride_sn
    if HAS_BIAS:
        bias = tl.load(b_ptr + offs_n, mask=mask_n, other=0.0).to(tl.float32)
    else:
        bias = tl.zeros([BLOCK_N], dtype=tl.float32)
    if QUANT == 8:
        sc = _load_s(s_rows, 0, mask_n, K, BLOCK_K, QUANT, GROUP)
    pdl_wait(PDL)
    res = _load_res(r_ptr, offs_m, offs_n, mask_m, mask_n, stride_rm, HAS_RES, BLOCK_M, BLOCK_N)
    if HAS_LN:  # shifted sums (shift = the row's first element) keep E[x^2] - E[x]^2 well conditioned
        shift = tl.load(x_rows, mask=mask_m[:, None], other=0.0).to(tl.float32)
        s1 = tl.zeros([BLOCK_M], dtype=tl.float32)
        s2 = tl.zeros([BLOCK_M], dtype=tl.float32)
        for k0 in range(0, K, BLOCK_K):
            kk = k0 + offs_k
            xt = tl.load(x_rows + kk[None, :], mask=mask_m[:, None] & (kk < K)[None, :], other=0.0).to(tl.float32)
            dv = tl.where((kk < K)[None, :], xt - shift, 0.0)
            s1 += tl.sum(dv, axis=1)
            s2 += tl.sum(dv * dv, axis=1)
        mean_s = s1 / K
        mean = tl.reshape(shift, [BLOCK_M]) + mean_s
        rstd = 1.0 / tl.sqrt(tl.maximum(s2 / K - mean_s * mean_s, 0.0) + eps)
    acc = tl.zeros([BLOCK_M, BLOCK_N], dtype=tl.float32)
    k_begin = pid_k * K_PER_SPLIT
    k_end = tl.minimum(k_begin + K_PER_SPLIT, K)
    for k0 in range(k_begin, k_end, BLOCK_K):
        kk = k0 + offs_k
        mk = kk < k_end
        w = _load_w(w_rows, k0, mask_n, k_end, BLOCK_K, QUANT)
        if QUANT == 8:
            w = _dequant(w, sc, QUANT, GROUP)
        if QUANT == 4:
            w = _dequant(w, _load_s(s_rows, k0, mask_n, k_end, BLOCK_K, QUANT, GROUP), QUANT, GROUP)
        xt = tl.load(x_rows + kk[None, :], mask=mask_m[:, None] & mk[None, :], other=0.0)
        if HAS_LN:
            g = tl.load(lnw_ptr + kk, mask=mk, other=0.0).to(tl.float32)
            c = tl.load(lnb_ptr + kk, mask=mk, other=0.0).to(tl.float32)
            xn = (xt.to(tl.float32) - mean[:, None]) * rstd[:, None] * g[None, :] + c[None, :]
            xt = tl.where(mk[None, :], xn, 0.0)
        acc += tl.dot(xt.to(w.dtype), tl.trans(w))
    if QUANT == 8:
        acc = acc * sc.to(tl.float32)[None, :]
    _epilogue(acc, bias, res, offs_m, offs_n, mask_m, mask_n, M, N, pid_m, pid_n, pid_k, ws_ptr, cnt_ptr, y_ptr,
              stride_ym, SPLIT_K, ACT_GELU)


@triton.jit
def dequantize_weight_kernel(q_ptr, s_ptr, w_ptr, N, K, stride_qn, stride_sn, stride_wn,
                             BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr, QUANT: tl.constexpr, GROUP: tl.constexpr):
    """Program (n, k): the float weights [BLOCK_N, BLOCK_K] at (n * BLOCK_N, k * BLOCK_K) of a stored int8 /
    packed int4 weight, written to ``w`` in its dtype as ``quantization.dequantize_weight`` makes them (the
    float32 product, one rounding); int4: BLOCK_K a multiple of GROUP."""
    offs_n = tl.program_id(0) * BLOCK_N + tl.arange(0, BLOCK_N)
    k0 = tl.program_id(1) * BLOCK_K
    mask_n = offs_n < N
    q = _load_w(q_ptr + offs_n[:, None] * stride_qn, k0, mask_n, K, BLOCK_K, QUANT)
    s = _load_s(s_ptr + offs_n * stride_sn, k0, mask_n, K, BLOCK_K, QUANT, GROUP).to(tl.float32)
    w = _dequant(q, s, QUANT, GROUP)  # int4: times the group scales; int8: the values
    if QUANT == 8:
        w = w * s[:, None]
    offs_k = k0 + tl.arange(0, BLOCK_K)
    tl.store(w_ptr + offs_n[:, None] * stride_wn + offs_k[None, :], w.to(w_ptr.dtype.element_ty),
             mask=mask_n[:, None] & (offs_k < K)[None, :])


@triton.jit
def layer_norm_kernel(
    x_ptr, r_ptr, w_ptr, b_ptr, xout_ptr, y_ptr,
    N, stride_x, stride_r, stride_xo, stride_y, eps,
    HAS_RES: tl.constexpr, BLOCK_N: tl.constexpr, PDL: tl.constexpr,
):
    """One row per program: ``s = x (+ r)``; ``xout = s`` (when HAS_RES); ``y = LN(s)``. N <= BLOCK_N.

    The sum is rounded to x's dtype before the statistics, as ``x = x + r; LayerNorm(x)`` would do.
    """
    pdl_trigger(PDL)
    row = tl.program_id(0)
    offs = tl.arange(0, BLOCK_N)
    mask = offs < N
    w = tl.load(w_ptr + offs, mask=mask, other=0.0).to(tl.float32)
    b = tl.load(b_ptr + offs, mask=mask, other=0.0).to(tl.float32)
    pdl_wait(PDL)
    x = tl.load(x_ptr + row * stride_x + offs, mask=mask, other=0.0)
    if HAS_RES:
        r = tl.load(r_ptr + row * stride_r + offs, mask=mask, other=0.0)
        x = (x.to(tl.float32) + r.to(tl.float32)).to(x.dtype)
        tl.store(xout_ptr + row * stride_xo + offs, x, mask=mask)
    xf = x.to(tl.float32)
    mean = tl.sum(xf, axis=0) / N
    d = tl.where(mask, xf - mean, 0.0)
    rstd = 1.0 / tl.sqrt(tl.sum(d * d, axis=0) / N + eps)
    tl.store(y_ptr + row * stride_y + offs, (d * rstd * w + b).to(y_ptr.dtype.element_ty), mask=mask)


@triton.jit
def embed_kernel(
    tok_ptr, pos_ptr, emb_ptr, pemb_ptr, y_ptr, T, N, stride_y, stride_pb,
    BLOCK_N: tl.constexpr, PDL: tl.constexpr,
):
    """Row m of ``tokens [B, T]`` (flattened): ``y[m] = emb[tokens[m]] + pemb[pos[m // T, m % T]]`` (summed in
    fp32); ``stride_pb`` = 0 when all rows share the positions."""
    pdl_trigger(PDL)
    m = tl.program_id(0)
    pdl_wait(PDL)
    tok = tl.load(tok_ptr + m)
    pos = tl.load(pos_ptr + (m // T) * stride_pb + m % T)
    offs = tl.arange(0, BLOCK_N)
    mask = offs < N
    e = tl.load(emb_ptr + tok * N + offs, mask=mask, other=0.0).to(tl.float32)
    p = tl.load(pemb_ptr + pos * N + offs, mask=mask, other=0.0).to(tl.float32)
    tl.store(y_ptr + m * stride_y + offs, (e + p).to(y_ptr.dtype.element_ty), mask=mask)
