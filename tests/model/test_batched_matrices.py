"""The GPU's path to the alignment matrices (``decode.batched_matrices``): all windows at once, equal to
``timing.alignment_matrix`` per window up to float32 summation order; its median of 7 equal to the sort's."""
import pytest
import torch

from whisper_model.decode import batched_matrices as B
from whisper_model.decode.dtw import median_filter
from whisper_model.decode.timing import alignment_matrix

DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA"))]


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("sort_bytes", [2**29, 1])
def test_batched_matrices_equal_the_per_row_ones(monkeypatch, sort_bytes, device):
    """Rows of different lengths, sot lengths and frame counts (a window too short for the median filter among
    them), masked instead of sliced, in one chunk or one row at a time."""
    monkeypatch.setattr(B, "SORT_BYTES", sort_bytes)
    g = torch.Generator().manual_seed(4)
    lengths, frames, n_sots = [9, 23, 23, 5, 40, 12], [3000, 3000, 1234, 12, 777, 4], [3, 4, 3, 1, 3, 3]
    scores = (torch.randn(len(lengths), 6, 42, 1500, generator=g) * 3).to(device)
    got = B.batched_alignment_matrices(scores, lengths, frames, n_sots, 7)
    for r, (length, num_frames, n_sot) in enumerate(zip(lengths, frames, n_sots)):
        want = alignment_matrix(scores[r, :, :length], num_frames, n_sot, 7)
        assert got[r].shape == want.shape == (length - n_sot - 1, num_frames // 2)
        torch.testing.assert_close(got[r], want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("n", [3, 4, 5, 8, 1500])
def test_the_median_network_is_the_sorts_median(n, device):
    """Bit for bit, with ties, and at lengths around the filter's half width (3: returned as is)."""
    g = torch.Generator().manual_seed(n)
    x = torch.randn(2, 3, 4, n, generator=g)
    x[0, 0, 0, : min(n, 6)] = 0.25
    x[1, 2] = x[1, 2].round()
    x = x.to(device)
    assert torch.equal(B._median(x, 7), median_filter(x, 7))
    assert torch.equal(B._median(x, 5), median_filter(x, 5))
