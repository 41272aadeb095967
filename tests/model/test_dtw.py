"""decode/dtw.py against openai-whisper's own DTW (``whisper.timing.dtw_cpu``, numba) and median filter."""
from __future__ import annotations

import time

import numpy as np
import pytest
import torch

from whisper_model.decode.dtw import dtw, dtw_many, median_filter

from _requires import openai_whisper

reference = openai_whisper("whisper.timing")


def reference_dtw(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    text_indices, time_indices = reference.dtw_cpu(np.ascontiguousarray(x, dtype=np.float64))
    return text_indices, time_indices


def assert_same_path(got, x):
    want = reference_dtw(x)
    assert len(got) == 2
    for ours, theirs in zip(got, want):
        assert ours.dtype == theirs.dtype == np.int64
        np.testing.assert_array_equal(ours, theirs)


def cases(seed: int) -> list[np.ndarray]:
    """Random and tie-heavy matrices of many shapes: 1xM, Nx1, N > M, N < M, square."""
    rng = np.random.default_rng(seed)
    shapes = [(1, 1), (1, 2), (2, 1), (1, 37), (37, 1), (2, 2), (3, 9), (9, 3), (30, 10), (10, 30), (17, 17),
              (24, 300)]
    out = []
    for n, m in shapes:
        out.append(rng.standard_normal((n, m)))
        out.append(rng.integers(-1, 2, (n, m)).astype(np.float64))  # many exact ties
        out.append(rng.integers(0, 2, (n, m)).astype(np.float64))
        out.append(np.zeros((n, m)))  # all ties
        out.append(rng.standard_normal((n, m)).astype(np.float32).astype(np.float64) * 1e6 + 0.1)
        out.append(1e3 + 1e-3 * rng.standard_normal((n, m)))  # differences below float32 precision of the sums
    return out


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_dtw_is_openai_dtw_cpu(seed):
    for x in cases(seed):
        assert_same_path(dtw(x), x)


def test_ties_of_diagonal_and_up_go_left():
    """c0 == c1 < c2 picks the larger left predecessor (openai's tie rule), visible in the path."""
    x = np.array([[0.0, 5.0, 5.0], [0.0, 0.0, 5.0], [5.0, 0.0, 0.0]])
    assert_same_path(dtw(x), x)
    for x in (np.ones((4, 6)), np.ones((6, 4)), -np.ones((5, 5))):
        assert_same_path(dtw(x), x)


@pytest.mark.parametrize("seed", [3, 4])
def test_dtw_many_mixed_batch(seed):
    rng = np.random.default_rng(seed)
    xs = cases(seed)
    rng.shuffle(xs)
    xs += [rng.integers(-2, 3, (int(rng.integers(1, 40)), int(rng.integers(1, 120)))).astype(np.float64)
           for _ in range(20)]
    got = dtw_many(xs)
    assert len(got) == len(xs)
    for path, x in zip(got, xs):
        assert_same_path(path, x)
    assert dtw_many([]) == []


def test_dtw_many_dtypes_and_bad_shapes():
    x = np.random.default_rng(5).standard_normal((6, 11)).astype(np.float32)
    assert_same_path(dtw_many([x])[0], x.astype(np.float64))
    with pytest.raises(ValueError):
        dtw(np.zeros((0, 4)))
    with pytest.raises(ValueError):
        dtw(np.zeros(4))


def test_float64_cost_table_as_numba_types_it():
    """openai's jitted dtw_cpu sums in float64 (numba types its float32 ``ones * inf`` as float64); the same code
    run by numpy keeps float32 sums, which tie where float64 ones do not: here the paths differ."""
    x = 1e3 + 1e-3 * np.random.default_rng(9).standard_normal((20, 60))
    assert_same_path(dtw(x), x)
    float32_path = reference.dtw_cpu.py_func(x)
    assert not np.array_equal(np.stack(dtw(x)), float32_path)


def test_dtw_with_nan_and_inf_like_openai():
    x = np.random.default_rng(6).standard_normal((8, 20))
    x[3, 5] = np.nan
    x[5, 11] = np.inf
    assert_same_path(dtw(x), x)
    y = np.random.default_rng(7).standard_normal((5, 9))
    y[0, 0] = np.nan  # the path runs up the first column
    assert_same_path(dtw(y), y)
    for path, m in zip(dtw_many([x, y]), [x, y]):  # a NaN in one matrix does not reach the others
        assert_same_path(path, m)


@pytest.mark.parametrize("shape", [(3, 20, 50), (2, 5, 16, 40), (4, 7, 3), (1, 1, 1, 9)])
@pytest.mark.parametrize("width", [1, 3, 7])
def test_median_filter_is_openai(shape, width):
    x = torch.randn(shape, generator=torch.Generator().manual_seed(sum(shape) + width))
    if width == 3:
        x = torch.round(x)  # ties inside windows
    want = reference.median_filter(x.clone(), width)
    got = median_filter(x, width)
    assert got.shape == want.shape and got.dtype == want.dtype == torch.float32
    assert torch.equal(got, want)


def test_median_filter_short_and_bad_width():
    x = torch.randn(2, 3, 3)
    assert torch.equal(median_filter(x, 7), reference.median_filter(x, 7))  # too short: returned unchanged
    for low in (torch.randn(30), torch.randn(4, 30)):  # openai lifts these to 3-D and back
        assert torch.equal(median_filter(low, 7), reference.median_filter(low, 7))
    x5 = torch.randn(2, 2, 2, 3, 12)  # more leading dims than openai's F.pad supports: per last-dim row
    assert torch.equal(median_filter(x5, 5)[1, 0], reference.median_filter(x5[1, 0], 5))
    with pytest.raises(ValueError):
        median_filter(torch.randn(2, 3, 20), 4)


def test_timing_printed():
    """Not asserted: the numbers for the report (run with -s)."""
    rng = np.random.default_rng(8)
    one = rng.standard_normal((100, 1500))
    batch = [rng.standard_normal((100, 1500)) for _ in range(16)]
    reference_dtw(one)  # jit warm-up
    for label, fn in [("dtw 100x1500", lambda: dtw(one)), ("dtw_many 16x(100x1500)", lambda: dtw_many(batch)),
                      ("openai dtw_cpu (numba) 100x1500", lambda: reference_dtw(one))]:
        best = min(_seconds(fn) for _ in range(3))
        print(f"\n{label}: {best * 1e3:.1f} ms")


def _seconds(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start
