"""Rows with different numbers of initial tokens in one decoding batch: right-aligned, with per-row positions.

Row i's ``n0_i`` initial tokens (``[<|startofprev|> prompt...] sot_sequence [prefix...]``) fill columns
``pad_i .. sample_begin - 1`` of the shared token matrix, where ``sample_begin = max n0`` and
``pad_i = sample_begin - n0_i``; the ``pad_i`` leading columns are padding. Every row then samples from the same
column on, so the logit filters, token decoders and ranker work on the matrix unchanged.

Decoder positions (the decoder's ``input_pos [rows, t]``): column ``c >= pad_i`` of row i is at position
``c - pad_i``. Pad columns take the positions ``n0_i .. sample_begin - 1``, beyond the row's real tokens, so in
the prefill (positions of each row: a permutation of ``0 .. sample_begin - 1``) no real token attends to a pad
(a query sees cache positions <= its own), and the pad's cache slots are overwritten by the row's sampled tokens
(positions ``n0_i, n0_i + 1, ...``) before any query can see them. Row i's text context ends ``pad_i`` columns
later than an unpadded row's: its ``limit`` (most tokens it may hold, as a length of the matrix) is
``n_ctx + pad_i``.
"""
from __future__ import annotations

from typing import Sequence

import torch


class RowLayout:
    """Right-aligned layout of ``initial`` token rows ``[n_rows][n0_i]`` (each non-empty)."""

    def __init__(self, initial: Sequence[Sequence[int]]):
        if not initial or any(len(row) == 0 for row in initial):
            raise ValueError("RowLayout: every row needs at least one initial token")
        self.initial = [tuple(int(t) for t in row) for row in initial]
        self.sample_begin = max(len(row) for row in self.initial)
        self.pads = [self.sample_begin - len(row) for row in self.initial]

    @property
    def aligned(self) -> bool:
        """True when every row has the same number of initial tokens (no padding)."""
        return not any(self.pads)

    def tokens(self, n_cols: int, fill: int) -> torch.Tensor:
        """[n_rows, n_cols] int64: row i's initial tokens at columns ``pad_i .. sample_begin - 1``, ``fill``
        elsewhere."""
        if n_cols < self.sample_begin:
            raise ValueError(f"RowLayout: {n_cols} columns cannot hold {self.sample_begin} initial tokens")
        out = torch.full((len(self.initial), n_cols), fill, dtype=torch.long)
        for i, (pad, row) in enumerate(zip(self.pads, self.initial)):
            out[i, pad: self.sample_begin] = torch.tensor(row)
        return out

    def columns_of(self, token: int) -> list[int]:
        """Per row, the column of the first occurrence of ``token`` among its initial tokens."""
        return [pad + row.index(token) for pad, row in zip(self.pads, self.initial)]

    def limits(self, n_ctx: int) -> list[int]:
        """Per row, the longest the matrix may get while the row stays within its text context of n_ctx."""
        return [n_ctx + pad for pad in self.pads]

    def positions(self, n_cols: int, n_ctx: int, *, group: int = 1, device=None) -> torch.Tensor:
        """Decoder positions of the columns, clamped to ``n_ctx - 1``: ``[n_cols]`` (column c at position c)
        when aligned, else ``[n_rows * group, n_cols]`` (each row repeated ``group`` times, consecutively).

        Clamping only touches columns past a row's ``limit``, fed after the row has stopped."""
        cols = torch.arange(n_cols)
        if self.aligned:
            return cols.clamp(max=n_ctx - 1).to(device)
        pos = cols[None, :] - torch.tensor(self.pads)[:, None]
        pos = torch.where(pos < 0, pos + self.sample_begin, pos).clamp(max=n_ctx - 1)
        return pos.repeat_interleave(group, dim=0).to(device)
