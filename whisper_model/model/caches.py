"""The decoder's preallocated self and cross K/V caches, written by index; owned by whoever runs the decoder.

    caches = DecoderCaches(n_layer, heads, head_dim, n_ctx, n_audio_ctx, rows=8, dtype=..., device=...)
    decoder.set_audio_on(caches, xa)              # each layer's CrossAttention.compute_kv into caches.cross[i]
    caches.self[i], caches.cross[i]               # layer i's trtllm_ext KVCache (views of one storage each)

One storage per kind, so a beam reorder is one copy for all layers: self K/V ``[n_layer, 2, rows, heads, n_ctx,
head_dim]``; cross K/V ``[n_layer, rows, n_audio_ctx, 2, heads, head_dim]``, so one product per layer writes an
audio's K and V in place. Each layer's caches are ``trtllm_ext.KVCache`` views of them (the attention layers'
one cache type). Decoder row i reads audio row ``i // group`` (``begin_step``): the beams or samples of an audio
sit on consecutive rows.

``kv_dtype=torch.int8``: the same layouts in int8, with float32 scales, one per row, head and position
(``trtllm_ext.quantization.quantize_kv``): self ``[n_layer, 2, rows, heads, n_ctx, 1]``, cross ``[n_layer, rows, 2,
heads, n_audio_ctx, 1]`` (positions contiguous: an attention program reads a chunk's scales in one sweep), as
``trtllm_ext.Int8KVCache`` views:
the attention ops quantize into them (self K/V, each step) and dequantize on read; the cross K/V are quantized
once per audio; ``reorder`` moves the scales with the values.
"""
from __future__ import annotations

from typing import Optional

import torch

from trtllm_ext import Int8KVCache, KVCache, check_input_pos

KV_DTYPES = (None, torch.int8)  # None: the activation dtype


class DecoderCaches:
    def __init__(self, n_layer: int, heads: int, head_dim: int, n_ctx: int, n_audio_ctx: int, *, rows: int,
                 dtype: torch.dtype, device, kv_dtype: Optional[torch.dtype] = None):
        if rows < 1:
            raise ValueError(f"DecoderCaches: rows must be >= 1, got {rows}")
        if kv_dtype not in KV_DTYPES and kv_dtype != dtype:
            raise ValueError(f"DecoderCaches: kv_dtype must be None (the activation dtype) or torch.int8, "
                             f"got {kv_dtype}")
        self.dtype, self.int8 = dtype, kv_dtype == torch.int8
        kw = dict(dtype=torch.int8 if self.int8 else dtype, device=device)
        shapes = (n_layer, 2, rows, heads, n_ctx, head_dim), (n_layer, rows, n_audio_ctx, 2, heads, head_dim)
        with torch.inference_mode(False):  # written in place later, whatever mode the caller is in
            self.self_store, self.cross_store = (torch.zeros(shape, **kw) for shape in shapes)
            self.self_scale = self.cross_scale = None
            if self.int8:
                scale_shapes = (n_layer, 2, rows, heads, n_ctx, 1), (n_layer, rows, 2, heads, n_audio_ctx, 1)
                self.self_scale, self.cross_scale = (torch.zeros(shape, dtype=torch.float32, device=device)
                                                     for shape in scale_shapes)
        self.rows, self.n_ctx, self.n_audio_ctx = rows, n_ctx, n_audio_ctx
        self.self = [self._cache(self._self_views(i)) for i in range(n_layer)]
        self.cross = [self._cache(self._cross_views(i)) for i in range(n_layer)]
        self.last_pos: Optional[torch.Tensor] = None  # positions of the latest step (bounds ``reorder``)
        self._audio: Optional[tuple[torch.Tensor, int, int]] = None  # (source, rows, length) of the cross K/V

    def _self_views(self, layer: int) -> tuple:
        views = (self.self_store[layer, 0], self.self_store[layer, 1])
        if self.int8:
            views += (self.self_scale[layer, 0], self.self_scale[layer, 1])
        return views

    def _cross_views(self, layer: int) -> tuple:
        kv = self.cross_store[layer].permute(2, 0, 3, 1, 4)  # [2, rows, heads, S, hd]
        views = (kv[0], kv[1])
        if self.int8:
            s = self.cross_scale[layer].transpose(0, 1)  # [2, rows, heads, S, 1]
            views += (s[0], s[1])
        return views

    def _cache(self, views: tuple) -> KVCache:
        rows, heads, length, head_dim = views[0].shape
        kind = Int8KVCache if self.int8 else KVCache
        return kind(rows, heads, length, head_dim, dtype=self.dtype, storage=views)

    @property
    def kv_dtype(self) -> Optional[torch.dtype]:
        return torch.int8 if self.int8 else None

    @property
    def audio_rows(self) -> int:
        """Rows of the cross caches holding the current audios' K/V (0: none)."""
        return self.cross[0].rows

    def fits(self, rows: int, dtype: torch.dtype, device, kv_dtype: Optional[torch.dtype] = None) -> bool:
        return (rows <= self.rows and self.dtype == dtype and self.self_store.device == torch.device(device)
                and self.int8 == (kv_dtype == torch.int8))

    def check_audio(self, xa: torch.Tensor) -> None:
        """Raise ValueError unless audio states xa [a <= rows, n_audio_ctx, d] fit the cross caches."""
        if xa.dim() != 3 or xa.shape[0] > self.rows or xa.shape[1] != self.n_audio_ctx:
            raise ValueError(f"set_audio: audio states of shape {tuple(xa.shape)} do not fit {self.rows} rows x "
                             f"{self.n_audio_ctx} positions")

    def begin_step(self, owner: str, tokens: torch.Tensor, input_pos: torch.Tensor) -> int:
        """Check a step's tokens [b, t] and positions ([t] or [b, t], int64), remember the positions (they bound
        ``reorder``); the rows per audio row."""
        if not isinstance(tokens, torch.Tensor) or tokens.dim() != 2:
            raise ValueError(f"{owner}: tokens must have shape [batch, length], got "
                             f"{tuple(getattr(tokens, 'shape', ()))}")
        b, t = tokens.shape
        if self.audio_rows == 0:
            raise RuntimeError(f"{owner}: no audio; call set_audio(features) first")
        if b > self.rows:
            raise ValueError(f"{owner}: batch {b} exceeds the {self.rows} cache rows; call reserve({b})")
        check_input_pos(owner, input_pos, b, t)
        if b % self.audio_rows and b > self.audio_rows:
            raise ValueError(f"{owner}: {b} rows do not divide among {self.audio_rows} audio rows "
                             f"(row i reads audio i // group)")
        self.last_pos = input_pos
        return max(1, b // self.audio_rows)

    @torch.no_grad()
    def reorder(self, index: torch.Tensor) -> None:
        """Beam search: self-cache row i of every layer becomes old row index[i], over the positions written so far
        (reads the latest positions' maximum: one host sync, as beam search syncs each step anyway); an int8
        cache's scales move with its values."""
        index = torch.as_tensor(index, device=self.self_store.device).long()
        n = index.shape[0]
        length = self.n_ctx if self.last_pos is None else int(self.last_pos.max()) + 1
        for kv in (self.self_store, self.self_scale) if self.int8 else (self.self_store,):
            kv[:, :, :n, :, :length] = kv[:, :, index, :, :length]

    def audio_written(self, xa: torch.Tensor) -> None:
        """The cross caches now hold the K/V of ``xa`` (``set_audio_on``): ``recall_audio(xa)`` may take them back
        after a ``release`` (``xa`` is kept until the next audio)."""
        cache = self.cross[0]
        self._audio = (xa, cache.rows, cache.length)

    def recall_audio(self, xa: torch.Tensor) -> bool:
        """If the cross caches still hold the K/V of this very tensor (the last audio written, nothing written
        since; the caller vouches it was not modified in place), make them current again and return True."""
        if self._audio is None or self._audio[0] is not xa:
            return False
        for cache in self.cross:
            cache.recall(*self._audio[1:])
        return True

    def release(self) -> None:
        """Forget the audios; rows are rewritten by position before any query reads them, so nothing is cleared
        (the cross K/V stay in place for ``recall_audio``)."""
        for cache in self.cross:
            cache.forget()
        self.last_pos = None
