"""Preallocated key/value caches written by position index (never grown by concatenation)."""
from __future__ import annotations

import torch
from torch import nn

from .module import positive


class KVCache(nn.Module):
    """Keys and values of shape [max_batch, num_heads, max_len, head_dim], written in place.

    A step with ``b <= max_batch`` rows writes ``k, v [b, heads, t, head_dim]`` at positions ``input_pos [t]``
    (shared by all rows) or ``input_pos [b, t]`` (row i's token j at ``input_pos[i, j]``) and reads back the
    first ``b`` rows over all ``max_len`` positions (the caller masks unwritten ones).
    The buffers are non-persistent: they are state, not weights.
    """

    def __init__(self, max_batch: int, num_heads: int, max_len: int, head_dim: int, *,
                 dtype: torch.dtype = torch.float32, device=None):
        super().__init__()
        for name, v in (("max_batch", max_batch), ("num_heads", num_heads), ("max_len", max_len),
                        ("head_dim", head_dim)):
            positive(name, v)
        shape = (max_batch, num_heads, max_len, head_dim)
        self.register_buffer("k", torch.zeros(shape, dtype=dtype, device=device), persistent=False)
        self.register_buffer("v", torch.zeros(shape, dtype=dtype, device=device), persistent=False)

    @property
    def max_batch(self) -> int:
        return self.k.shape[0]

    @property
    def max_len(self) -> int:
        return self.k.shape[2]

    def _check_rows(self, b: int) -> None:
        if b > self.max_batch:
            raise ValueError(f"KVCache: batch {b} exceeds the cache's max_batch {self.max_batch}")

    def update(self, input_pos: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Write ``k, v [b, H, t, Dh]`` at ``input_pos`` int64 ``[t]`` or ``[b, t]`` (positions distinct within a
        row, in any order); return the cache rows ``[b, H, max_len, Dh]`` (views, no copy)."""
        b, t = k.shape[0], k.shape[2]
        self._check_rows(b)
        if k.shape[1:2] + k.shape[3:] != self.k.shape[1:2] + self.k.shape[3:] or k.shape != v.shape:
            raise ValueError(f"KVCache: k/v of shape {tuple(k.shape)}/{tuple(v.shape)} do not fit cache "
                             f"{tuple(self.k.shape)}")
        if input_pos.dtype != torch.long:
            raise ValueError(f"KVCache: input_pos must be int64, got {input_pos.dtype}")
        if tuple(input_pos.shape) not in ((t,), (b, t)):
            raise ValueError(f"KVCache: input_pos must have shape [{t}] or [{b}, {t}], got {tuple(input_pos.shape)}")
        k_rows, v_rows = self.k[:b], self.v[:b]
        if input_pos.dim() == 1:
            k_rows.index_copy_(2, input_pos, k.to(self.k.dtype))
            v_rows.index_copy_(2, input_pos, v.to(self.v.dtype))
        else:  # per row: scatter along the position dim, index [b, H, t, Dh]
            index = input_pos[:, None, :, None].expand(k.shape)
            k_rows.scatter_(2, index, k.to(self.k.dtype))
            v_rows.scatter_(2, index, v.to(self.v.dtype))
        return k_rows, v_rows

    def write(self, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Overwrite positions [0, t) of the first ``b`` rows with ``k, v [b, H, t, Dh]`` (cross attention)."""
        b, t = k.shape[0], k.shape[2]
        self._check_rows(b)
        if t > self.max_len:
            raise ValueError(f"KVCache: {t} positions exceed the cache's max_len {self.max_len}")
        self.k[:b, :, :t].copy_(k)
        self.v[:b, :, :t].copy_(v)
        return self.k[:b, :, :t], self.v[:b, :, :t]

    def reorder(self, index: torch.Tensor) -> None:
        """Row ``i`` becomes old row ``index[i]`` for ``i < len(index)`` (beam search), in place."""
        n = index.shape[0]
        self._check_rows(n)
        self.k[:n].copy_(self.k.index_select(0, index))
        self.v[:n].copy_(self.v.index_select(0, index))

    def reset(self) -> None:
        self.k.zero_()
        self.v.zero_()
