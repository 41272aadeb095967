"""Dynamic time warping and the median filter of the word-timestamp alignment, vectorised in numpy.

``dtw(x)`` gives the same path as openai-whisper's CPU DTW (its numba-compiled ``dtw_cpu``), bit for bit: the
cumulative cost is a float64 table (numba types ``np.ones(..., float32) * np.inf`` as float64; the same function
run by plain numpy would keep float32 sums, and openai's CUDA kernel does: paths can differ where float32 sums
tie), the predecessor is the diagonal one only when it is strictly below both others, the one above only when
strictly below both others, and the one to the left in every other case (all ties included, also a tie of diagonal
and above below the left one); the path is traced back from the bottom-right corner, the first row always moving
left and the first column up.

``dtw_many`` computes all cells of one anti-diagonal ``d = i + j`` at once, for every matrix of the batch: the
tables are stored skewed, ``table[d, b, i] = cost_b[i, d - i]``, so one anti-diagonal is one contiguous row and
its three predecessors are slices of the two rows before it. Matrices of different sizes share the table; the
cells outside a matrix never feed the cells inside it (a cell only depends on cells above and to its left).
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F

# trace codes, as openai-whisper's: 0 diagonal, 1 up (text index moves), 2 left (time index moves)
DIAGONAL, UP, LEFT = 0, 1, 2
GROUP = 16  # matrices per table in dtw_many: bounds its memory; past ~16 the per-step overhead is amortised


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
    lead = x.shape[:-1]
    flat = F.pad(x.reshape(-1, 1, x.shape[-1]), (pad, pad), mode="reflect")  # [rows, 1, F + 2 pad]
    result = flat.unfold(-1, width, 1).sort(dim=-1).values[..., pad]  # [rows, 1, F]
    return result.reshape(*lead, x.shape[-1])


def _skew(x: np.ndarray) -> np.ndarray:
    """x [n, m] -> a view [n, n + m] with ``out[i, k] = x[i, k - i]`` (+inf where k - i is outside 0..m-1)."""
    n, m = x.shape
    padded = np.full((n, 2 * n + m), np.inf, dtype=np.float64)
    padded[:, n:n + m] = x
    step = padded.itemsize
    return np.lib.stride_tricks.as_strided(padded.reshape(-1)[n:], shape=(n, n + m),
                                           strides=((2 * n + m - 1) * step, step), writeable=False)


def _skewed_costs(xs: Sequence[np.ndarray]) -> np.ndarray:
    """The batch's cost matrices skewed: [L, B, W] float64 with ``X[d, b, i] = xs[b][i - 1, d - i - 1]`` and +inf
    outside each matrix (L = max(N + M) + 1 anti-diagonals, W = max(N) + 1 text rows incl. the boundary row 0)."""
    length = max(x.shape[0] + x.shape[1] for x in xs) + 1
    skewed = np.full((length, len(xs), max(x.shape[0] for x in xs) + 1), np.inf, dtype=np.float64)
    for b, x in enumerate(xs):
        n, m = x.shape
        skewed[2:n + m + 1, b, 1:n + 1] = _skew(x)[:, :n + m - 1].T  # anti-diagonal d = 2 + column of the view
    return skewed


def _forward(cost: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Turn the skewed costs (``_skewed_costs``) into the cumulative cost table, in place, one anti-diagonal at a
    time: cost [L, B, W] float64 -> (diagonal [L, B, W - 1] bool, up [L, B, W - 1] bool), whether cell (d, b, i)
    came from its diagonal / upper predecessor (else from the left one)."""
    length, batch, width = cost.shape
    cost[0, :, 0] = 0.0  # the corner; the rest of rows d < 2 and of column i = 0 stay +inf (the boundary)
    diagonal = np.zeros((length, batch, width - 1), dtype=bool)
    up = np.zeros((length, batch, width - 1), dtype=bool)
    low = np.empty((batch, width - 1), dtype=np.float64)
    with np.errstate(invalid="ignore"):
        for d in range(2, length):
            c0, c1, c2 = cost[d - 2, :, :-1], cost[d - 1, :, :-1], cost[d - 1, :, 1:]  # diagonal, up, left
            np.minimum(c1, c2, out=low)
            np.less(c0, low, out=diagonal[d])  # c0 < c1 and c0 < c2 (false with any NaN, as the scalar test)
            np.minimum(c0, c2, out=low)
            np.less(c1, low, out=up[d])
            here = cost[d, :, 1:]
            np.add(here, np.where(diagonal[d], c0, np.where(up[d], c1, c2)), out=here)
    return diagonal, up


def _backtrace(codes: bytes, strides: tuple[int, int], b: int, n: int, m: int) -> tuple[np.ndarray, np.ndarray]:
    """The path of matrix b from (n, m) back to (0, 0), in forward order, as (text_indices, time_indices) int64.

    codes: the skewed trace table [L, B, W - 1] as bytes (cell (d, b, i) of text row i >= 1 at
    ``d * strides[0] + b * strides[1] + i - 1``)."""
    stride_d, stride_b = strides
    i, j = n, m
    rows, cols = [], []
    while i > 0 or j > 0:
        rows.append(i - 1)
        cols.append(j - 1)
        if i == 0:
            code = LEFT
        elif j == 0:
            code = UP
        else:
            code = codes[(i + j) * stride_d + b * stride_b + i - 1]
        if code == DIAGONAL:
            i, j = i - 1, j - 1
        elif code == UP:
            i -= 1
        else:
            j -= 1
    return np.array(rows[::-1], dtype=np.int64), np.array(cols[::-1], dtype=np.int64)


def _dtw_group(xs: list[np.ndarray]) -> list[tuple[np.ndarray, np.ndarray]]:
    """DTW paths of a group of float64 matrices computed together (one table for the group)."""
    diagonal, up = _forward(_skewed_costs(xs))
    codes = (LEFT - (LEFT - DIAGONAL) * diagonal.view(np.uint8) - (LEFT - UP) * up.view(np.uint8)).astype(np.uint8)
    flat = codes.tobytes()
    strides = (codes.shape[1] * codes.shape[2], codes.shape[2])
    return [_backtrace(flat, strides, b, *x.shape) for b, x in enumerate(xs)]


def dtw_many(xs: Sequence[np.ndarray]) -> list[tuple[np.ndarray, np.ndarray]]:
    """DTW of several cost matrices at once: xs[b] [N_b, M_b] (float64; other dtypes are converted) ->
    per matrix (text_indices [K_b] int64, time_indices [K_b] int64), the monotone path from (0, 0) to
    (N_b - 1, M_b - 1) of least cumulative cost, identical to ``dtw(xs[b])``.

    Matrices are taken by size, GROUP at a time; each group is one pass over its max(N_b + M_b) anti-diagonals
    (its table: GROUP x (max N + 1) x (max(N + M) + 1) float64, 50 MB for 16 windows of 224 x 1500)."""
    xs = [np.asarray(x, dtype=np.float64) for x in xs]
    for x in xs:
        if x.ndim != 2 or x.shape[0] < 1 or x.shape[1] < 1:
            raise ValueError(f"dtw needs non-empty 2-D cost matrices, got shape {x.shape}")
    order = sorted(range(len(xs)), key=lambda k: (xs[k].shape[0] + xs[k].shape[1], xs[k].shape[0]))
    out: list = [None] * len(xs)
    for start in range(0, len(order), GROUP):
        group = order[start:start + GROUP]
        for k, path in zip(group, _dtw_group([xs[k] for k in group])):
            out[k] = path
    return out


def dtw(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """x [N, M] cost (float64) -> (text_indices [K] int64, time_indices [K] int64): openai-whisper's DTW path."""
    return dtw_many([x])[0]


__all__ = ["dtw", "dtw_many", "median_filter"]
