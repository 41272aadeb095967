"""The alignment matrices of many windows in a few tensor operations: the path on a GPU, where one
``timing.alignment_matrix`` call per window costs a dozen kernel launches per window.

    matrices = batched_alignment_matrices(scores, lengths, num_frames, n_sots, medfilt_width)

The computation of ``alignment_matrix`` for each row, with each row's tokens and frames masked instead of sliced: the
softmax over the row's first num_frames // 2 audio positions (the others at -inf), the mean and standard deviation
over its first ``lengths`` tokens, the median filter over its own frames (rows grouped by their frame count, so that
the reflection at the edges is the row's own), the mean over the heads. Equal to the per-row results up to the order
of float32 sums, not bit for bit: on the CPU, where the results are compared with openai-whisper's, the per-row calls
stay (``timing.alignment_matrices``).
"""
from __future__ import annotations

from typing import Sequence

import torch

from .dtw import median_filter, reflect_padded

SORT_BYTES = 2**29  # the median filter's buffers [rows, heads, tokens, frames, width] per call, at most


def batched_alignment_matrices(scores: torch.Tensor, lengths: Sequence[int], num_frames: Sequence[int],
                               n_sots: Sequence[int], medfilt_width: int = 7) -> list[torch.Tensor]:
    """scores [n, H, T, n_audio_ctx] float32 (row r: its first lengths[r] tokens, of which n_sots[r] sot tokens,
    within num_frames[r] mel frames) -> per row [lengths[r] - n_sots[r] - 1, num_frames[r] // 2] float32 on the
    scores' device."""
    n = scores.shape[0]
    frames = [f // 2 for f in num_frames]
    longest, widest = max(lengths), max(frames)
    device = scores.device
    x = scores[:, :, :longest, :widest]
    frame_mask = torch.arange(widest, device=device) < torch.tensor(frames, device=device)[:, None]  # [n, F]
    weights = x.masked_fill(~frame_mask[:, None, None, :], float("-inf")).softmax(dim=-1)
    count = torch.tensor(lengths, device=device)
    token_mask = (torch.arange(longest, device=device) < count[:, None])[:, None, :, None]  # [n, 1, T, 1]
    count = count.to(weights.dtype)[:, None, None, None]
    mean = (weights * token_mask).sum(dim=2, keepdim=True) / count
    std = (((weights - mean) ** 2 * token_mask).sum(dim=2, keepdim=True) / count).sqrt()
    weights = (weights - mean) / std
    out: list[torch.Tensor | None] = [None] * n
    for f in sorted(set(frames)):
        rows = [r for r in range(n) if frames[r] == f]
        per_row = weights[0, :, :, :f].numel() * medfilt_width * 4
        step = max(1, SORT_BYTES // per_row)
        for k in range(0, len(rows), step):
            chunk = rows[k:k + step]
            index = torch.tensor(chunk, device=device)
            filtered = _median(weights.index_select(0, index)[..., :f], medfilt_width).mean(dim=1)
            for j, r in enumerate(chunk):
                out[r] = filtered[j, n_sots[r]:lengths[r] - 1]
    return out


# the median of 7 in 13 compare-exchanges (Devillard's opt_med7 network): the middle value itself, as a sort gives
# it, in elementwise min / max over whole tensors where sorting 7-value windows was most of this module's GPU time
MED7 = ((0, 5), (0, 3), (1, 6), (2, 4), (0, 1), (3, 5), (2, 6), (2, 3), (3, 6), (4, 5), (1, 4), (1, 3), (3, 4))


def _median(x: torch.Tensor, width: int) -> torch.Tensor:
    """``dtw.median_filter(x, width)``; for width 7 by the compare-exchange network (the same values unless x holds
    NaN, which min / max spread where a sort puts it last)."""
    pad = width // 2
    if width != 7 or x.shape[-1] <= pad:
        return median_filter(x, width)
    n = x.shape[-1]
    padded = reflect_padded(x, width)
    v = [padded[..., i:i + n] for i in range(width)]
    for a, b in MED7:
        v[a], v[b] = torch.minimum(v[a], v[b]), torch.maximum(v[a], v[b])
    return v[3]


__all__ = ["batched_alignment_matrices"]
