"""Preallocated key/value caches written by position index (never grown by concatenation).

The one cache type of the attention layers: ``Attention`` writes a step's K/V through the op backend's
``self_attention`` (which writes, then reads, ``kv()``); ``CrossAttention.compute_kv`` fills a prefix once per
audio (``write``) and reads ``written()``. A cache owns its storage, or views of a caller's (``storage=``): a
model keeps every layer's cache in one tensor that way and reorders all of them with one copy.
``Int8KVCache`` (``kv_cache_int8.py``) is the same cache held as int8 + scales.
"""
from __future__ import annotations

import torch
from torch import nn

from .kernels.reference import write_kv
from .module import positive


def check_input_pos(owner: str, input_pos, b: int, t: int) -> None:
    """Raise ValueError unless ``input_pos`` is an int64 tensor of shape ``[t]`` (shared by all ``b`` rows) or
    ``[b, t]`` (row i's token j at ``input_pos[i, j]``)."""
    if not isinstance(input_pos, torch.Tensor) or input_pos.dtype != torch.long:
        got = input_pos.dtype if isinstance(input_pos, torch.Tensor) else type(input_pos).__name__
        raise ValueError(f"{owner}: input_pos must be int64, got {got}")
    if tuple(input_pos.shape) not in ((t,), (b, t)):
        raise ValueError(f"{owner}: input_pos must have shape [{t}] or [{b}, {t}], got {tuple(input_pos.shape)}")


def check_cache_step(owner: str, input_pos, k: torch.Tensor, v: torch.Tensor, shape: tuple) -> None:
    """Raise ValueError unless k, v [b <= max_batch, H, t, Dh] fit a cache of ``shape`` and ``input_pos`` is int64
    ``[t]`` or ``[b, t]``."""
    _check_kv_shape(owner, k, v, shape)
    if k.shape[0] > shape[0]:
        raise ValueError(f"{owner}: batch {k.shape[0]} exceeds the cache's max_batch {shape[0]}")
    check_input_pos(owner, input_pos, k.shape[0], k.shape[2])


def _check_kv_shape(owner: str, k: torch.Tensor, v: torch.Tensor, shape: tuple) -> None:
    if k.dim() != 4 or k.shape[1] != shape[1] or k.shape[3] != shape[3] or k.shape != v.shape:
        raise ValueError(f"{owner}: k/v of shape {tuple(k.shape)}/{tuple(v.shape)} do not fit cache {shape}")


class KVCache(nn.Module):
    """Keys and values of shape [max_batch, num_heads, max_len, head_dim], written in place.

    ``kv()``: the whole cache as the backend's attention ops take it; ``update(input_pos, k, v)``: write
    ``k, v [b, H, t, Dh]`` at positions ``[t]`` (shared) or ``[b, t]`` (per row) and read back rows ``[0, b)``;
    ``write(k, v)``: positions ``[0, t)`` of rows ``[0, b)`` (cross attention), remembered as ``rows`` /
    ``length`` until ``forget()`` or ``reset()``. ``storage=(k, v)``: views to use instead of new zeros (e.g.
    slices of one tensor for all layers). The buffers are non-persistent: they are state, not weights.
    """

    def __init__(self, max_batch: int, num_heads: int, max_len: int, head_dim: int, *,
                 dtype: torch.dtype = torch.float32, device=None, storage: tuple | None = None):
        super().__init__()
        for name, n in (("max_batch", max_batch), ("num_heads", num_heads), ("max_len", max_len),
                        ("head_dim", head_dim)):
            positive(name, n)
        shape = (max_batch, num_heads, max_len, head_dim)
        if storage is None:
            storage = tuple(torch.zeros(shape, dtype=dtype, device=device) for _ in range(2))
        elif any(tuple(s.shape) != shape for s in storage):
            raise ValueError(f"KVCache: storage of shapes {[tuple(s.shape) for s in storage]}, expected {shape}")
        self.register_buffer("k", storage[0], persistent=False)
        self.register_buffer("v", storage[1], persistent=False)
        self.rows = self.length = 0  # what ``write`` filled

    @property
    def max_batch(self) -> int:
        return self.k.shape[0]

    @property
    def max_len(self) -> int:
        return self.k.shape[2]

    def kv(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(k, v) [max_batch, H, max_len, Dh]: views, as the op backend's self-attention writes and reads them."""
        return self.k, self.v

    def written(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(k, v) of what ``write`` filled, [rows, H, length, Dh] (views)."""
        if self.length == 0:
            raise RuntimeError("KVCache: nothing written; call write(k, v) first")
        return self.k[: self.rows, :, : self.length], self.v[: self.rows, :, : self.length]

    def update(self, input_pos: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Write ``k, v [b, H, t, Dh]`` at ``input_pos`` int64 ``[t]`` or ``[b, t]`` (positions distinct within a
        row, in any order); return the cache rows ``[b, H, max_len, Dh]`` (views, no copy)."""
        check_cache_step("KVCache", input_pos, k, v, tuple(self.k.shape))
        write_kv(self.k, self.v, input_pos, k, v)
        return self.k[: k.shape[0]], self.v[: k.shape[0]]

    def write(self, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Overwrite positions [0, t) of the first ``b`` rows with ``k, v [b, H, t, Dh]`` (cross attention)."""
        b, t = self._check_write(k, v)
        self.k[:b, :, :t].copy_(k)
        self.v[:b, :, :t].copy_(v)
        self.rows, self.length = b, t
        return self.written()

    def _check_write(self, k: torch.Tensor, v: torch.Tensor) -> tuple[int, int]:
        _check_kv_shape(type(self).__name__, k, v, tuple(self.k.shape))
        b, t = k.shape[0], k.shape[2]
        self._check_rows(b)
        if t > self.max_len:
            raise ValueError(f"{type(self).__name__}: {t} positions exceed the cache's max_len {self.max_len}")
        return b, t

    def _check_rows(self, b: int) -> None:
        if b > self.max_batch:
            raise ValueError(f"{type(self).__name__}: batch {b} exceeds the cache's max_batch {self.max_batch}")

    def reorder(self, index: torch.Tensor) -> None:
        """Row ``i`` becomes old row ``index[i]`` for ``i < len(index)`` (beam search), in place."""
        n = index.shape[0]
        self._check_rows(n)
        for buf in self.buffers():
            buf[:n].copy_(buf.index_select(0, index))

    def forget(self) -> None:
        """Forget what ``write`` filled (nothing is cleared: positions are rewritten before they are read)."""
        self.rows = self.length = 0

    def recall(self, rows: int, length: int) -> None:
        """Take back what ``forget`` dropped: the first ``rows`` rows up to ``length`` hold what ``write`` wrote
        there (the caller knows that nothing has been written over them since)."""
        self._check_rows(rows)
        if not 0 <= length <= self.max_len:
            raise ValueError(f"{type(self).__name__}: length {length} outside [0, {self.max_len}]")
        self.rows, self.length = rows, length

    def reset(self) -> None:
        for buf in self.buffers():
            buf.zero_()
        self.forget()
