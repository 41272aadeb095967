"""Quantize K or V into an int8 cache on the GPU: ``quantization.quantize_kv``'s numbers in one pass.

``x [A, H, S, D]`` (any strides, D contiguous) -> int8 ``q [A, H, S, D]`` and float32 ``scales [A, H, S, 1]``
(written in place, e.g. views of a cache's storage): per row (a, h, s), ``scale = amax / 127`` rounded to float32,
one ulp up where ``amax`` would exceed 127.5 scales, 1.0 where ``amax`` is 0; ``q = round_half_even(x / scale)``
clamped to +-127; the arithmetic in float32 with correctly rounded division as the reference's (float16 / bfloat16
/ float32 inputs), so the results are the same bit for bit.
"""
from __future__ import annotations

import triton
import triton.language as tl

ROUND = tl.constexpr(12582912.0)  # 1.5 * 2**23: (v + ROUND) - ROUND rounds a float32 |v| < 2**22 half to even


@triton.jit
def quantize_rows(x):
    """Float rows ``x [R, D]`` -> (int8 ``[R, D]``, float32 scales ``[R]``) as ``quantize_kv`` makes them, in
    float32 (also the self-attention kernel's new K/V): ``div_rn`` is the reference's correctly rounded quotient;
    the one-ulp test ``scale * 127.5 < amax`` is exact as the sign of one fused multiply-add."""
    xf = x.to(tl.float32)
    amax = tl.max(tl.abs(xf), axis=1)
    stored = tl.math.div_rn(amax, tl.full(amax.shape, 127.0, tl.float32))
    up = tl.math.fma(stored, tl.full(amax.shape, 127.5, tl.float32), -amax) < 0.0  # coarse subnormal scales
    stored = tl.where(up, (stored.to(tl.int32, bitcast=True) + 1).to(tl.float32, bitcast=True), stored)
    stored = tl.where(stored == 0.0, 1.0, stored)
    v = tl.math.div_rn(xf, tl.broadcast_to(stored[:, None], xf.shape))
    q = tl.minimum(tl.maximum((v + ROUND) - ROUND, -127.0), 127.0)
    return q.to(tl.int8), stored


@triton.jit
def quantize_kv_kernel(
    x_ptr, q_ptr, s_ptr, R, H, S,
    sx_a, sx_h, sx_s, sq_a, sq_h, sq_s, ss_a, ss_h, ss_s,
    D: tl.constexpr, BLOCK_R: tl.constexpr,
):
    """Program i: rows [i*BLOCK_R, (i+1)*BLOCK_R) of the R = A*H*S rows, row r = (a*H + h)*S + s."""
    r = tl.program_id(0) * BLOCK_R + tl.arange(0, BLOCK_R)
    mask = r < R
    a, h, s = r // (H * S), (r // S) % H, r % S
    offs_d = tl.arange(0, D)
    x = tl.load(x_ptr + (a * sx_a + h * sx_h + s * sx_s)[:, None] + offs_d[None, :], mask=mask[:, None], other=0.0)
    q, stored = quantize_rows(x)
    tl.store(q_ptr + (a * sq_a + h * sq_h + s * sq_s)[:, None] + offs_d[None, :], q, mask=mask[:, None])
    tl.store(s_ptr + a * ss_a + h * ss_h + s * ss_s, stored, mask=mask)
