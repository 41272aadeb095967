"""Dynamic time warping and the median filter of the word-timestamp alignment.

``dtw(x)`` gives the same path as openai-whisper's CPU DTW, bit for bit: one pass over the cost matrix in float64
(the cumulative cost of each cell is its cost plus the least of its three predecessors), the predecessor being the
diagonal one only when it is strictly below both others, the one above only when strictly below both others, and
the one to the left in every other case (all ties included, also a tie of diagonal and above below the left one);
the path is traced back from the bottom-right corner, the first row always moving left and the first column up.

The loops are compiled by numba on first use (a few hundred cells per microsecond: a window's 100 tokens x 1500
audio positions take about half a millisecond, where a pass of numpy operations per anti-diagonal took tens); the
windows of one ``dtw_many`` run on threads (the compiled loops release the GIL).
"""
from __future__ import annotations

import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from functools import cache

import numpy as np
import torch
import torch.nn.functional as F

# trace codes, as openai-whisper's: 0 diagonal, 1 up (text index moves), 2 left (time index moves)
DIAGONAL, UP, LEFT = 0, 1, 2


def median_filter(x: torch.Tensor, width: int) -> torch.Tensor:
    """Median over windows of ``width`` (odd) along the last dim, reflect-padded by ``width // 2`` at both ends.

    x [..., F] -> [..., F]; returned unchanged when F <= width // 2 (too short to reflect), as openai-whisper's.
    The median is one of the window's values (the middle one after sorting), so results are exact on any device.
    """
    pad = width // 2
    if x.shape[-1] <= pad:
        return x
    if width <= 0 or width % 2 != 1:
        raise ValueError(f"median filter width must be a positive odd number, got {width}")
    return reflect_padded(x, width).unfold(-1, width, 1).sort(dim=-1).values[..., pad]  # [..., F]


def reflect_padded(x: torch.Tensor, width: int) -> torch.Tensor:
    """x [..., F] reflect-padded by ``width // 2`` at both ends -> [..., F + 2 * (width // 2)] (F > width // 2)."""
    pad, n = width // 2, x.shape[-1]
    return F.pad(x.reshape(-1, 1, n), (pad, pad), mode="reflect").reshape(*x.shape[:-1], n + 2 * pad)


@cache
def _compiled():
    """The numba-compiled ``(forward, backtrace)`` (compiled once per process, cached on disk where numba can)."""
    import numba

    @numba.njit(cache=True, nogil=True)
    def forward(x):  # x [n, m] float64 -> trace [n + 1, m + 1] uint8 (row and column 0: the boundary)
        n, m = x.shape
        cost = np.full((n + 1, m + 1), np.inf)
        trace = np.full((n + 1, m + 1), LEFT, dtype=np.uint8)
        cost[0, 0] = 0.0
        for i in range(1, n + 1):  # row by row (contiguous); each cell needs only cells of rows <= i, columns <= j
            for j in range(1, m + 1):
                c0, c1, c2 = cost[i - 1, j - 1], cost[i - 1, j], cost[i, j - 1]
                diagonal = (c0 < c1) & (c0 < c2)  # false with any NaN, as openai's
                up = (c1 < c0) & (c1 < c2)  # never with diagonal; selects, not branches (noisy costs mispredict)
                c = c0 if diagonal else (c1 if up else c2)  # its own statement: inlined in the sum, it compiled slower
                cost[i, j] = x[i - 1, j - 1] + c
                trace[i, j] = DIAGONAL if diagonal else UP if up else LEFT
        return trace

    @numba.njit(cache=True, nogil=True)
    def backtrace(trace):  # -> (text_indices, time_indices) int64, from (0, 0) to (n - 1, m - 1)
        i, j = trace.shape[0] - 1, trace.shape[1] - 1
        rows = np.empty(i + j, dtype=np.int64)
        cols = np.empty(i + j, dtype=np.int64)
        k = 0
        while i > 0 or j > 0:
            rows[k], cols[k] = i - 1, j - 1
            k += 1
            code = LEFT if i == 0 else UP if j == 0 else trace[i, j]
            if code == DIAGONAL:
                i, j = i - 1, j - 1
            elif code == UP:
                i -= 1
            else:
                j -= 1
        return rows[:k][::-1].copy(), cols[:k][::-1].copy()

    return forward, backtrace


def dtw_many(xs: Sequence[np.ndarray]) -> list[tuple[np.ndarray, np.ndarray]]:
    """DTW of several cost matrices: xs[b] [N_b, M_b] (float64; other dtypes are converted) -> per matrix
    (text_indices [K_b] int64, time_indices [K_b] int64), the monotone path from (0, 0) to (N_b - 1, M_b - 1) of
    least cumulative cost (``dtw`` of each)."""
    xs = [np.ascontiguousarray(x, dtype=np.float64) for x in xs]
    for x in xs:
        if x.ndim != 2 or x.shape[0] < 1 or x.shape[1] < 1:
            raise ValueError(f"dtw needs non-empty 2-D cost matrices, got shape {x.shape}")
    if not xs:
        return []
    forward, backtrace = _compiled()
    if len(xs) == 1:
        return [backtrace(forward(xs[0]))]
    return list(_pool().map(lambda x: backtrace(forward(x)), xs))  # the compiled loops release the GIL


@cache
def _pool() -> ThreadPoolExecutor:
    """Threads for the windows of one ``dtw_many`` (one per core, at most 16)."""
    return ThreadPoolExecutor(min(16, os.cpu_count() or 1), thread_name_prefix="dtw")


def dtw(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """x [N, M] cost (float64) -> (text_indices [K] int64, time_indices [K] int64): openai-whisper's DTW path."""
    return dtw_many([x])[0]


__all__ = ["dtw", "dtw_many", "median_filter"]
