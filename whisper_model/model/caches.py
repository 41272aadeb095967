"""The decoder's preallocated self and cross K/V caches, written by index; owned by whoever runs the decoder.

    caches = DecoderCaches(n_layer, heads, head_dim, n_ctx, n_audio_ctx, rows=8, dtype=..., device=...)
    caches.set_audio(xa, kv_projections)           # xa [a, n_audio_ctx, d]: cross K/V of audio rows 0..a-1
    k, v = caches.self_kv(i)                       # layer i: [rows, heads, n_ctx, head_dim] each
    k, v = caches.cross_kv(i)                      # layer i: [rows, heads, n_audio_ctx, head_dim] (strided views)

Layout: self K/V ``[n_layer, 2, rows, heads, n_ctx, head_dim]``; cross K/V ``[n_layer, rows, n_audio_ctx, 2, heads,
head_dim]``, so one product per layer writes an audio's K and V in place (``set_audio``). Decoder row i reads audio
row ``i // group`` (``step_group``): the beams or samples of an audio sit on consecutive rows.

``kv_dtype=torch.int8``: the same layouts in int8, with float32 scales of the same shapes but a last dimension of
1 (one per row, head and position: ``trtllm_ext.quantization.quantize_kv``); ``self_kv`` / ``cross_kv`` then give
``QuantizedKV`` views, which the op-set's attention quantizes into (self K/V, each step) and dequantizes on read.
The cross K/V are quantized once per audio in ``set_audio``; ``reorder`` moves the scales with the values.
"""
from __future__ import annotations

from typing import Optional, Sequence

import torch

from trtllm_ext import check_input_pos
from trtllm_ext.kernels import reference
from trtllm_ext.quantization import QuantizedKV, QuantizedWeight, quantize_kv

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
            self.self, self.cross = (torch.zeros(shape, **kw) for shape in shapes)
            self.self_scale = self.cross_scale = None
            if self.int8:
                self.self_scale, self.cross_scale = (torch.zeros(shape[:-1] + (1,), dtype=torch.float32,
                                                                 device=device) for shape in shapes)
        self.rows, self.n_ctx, self.n_audio_ctx = rows, n_ctx, n_audio_ctx
        self.audio_rows = 0  # rows of ``cross`` holding the current audios' K/V
        self.last_pos: Optional[torch.Tensor] = None  # positions of the latest step (bounds ``reorder``)

    @property
    def kv_dtype(self) -> Optional[torch.dtype]:
        return torch.int8 if self.int8 else None

    def fits(self, rows: int, dtype: torch.dtype, device, kv_dtype: Optional[torch.dtype] = None) -> bool:
        return (rows <= self.rows and self.dtype == dtype and self.self.device == torch.device(device)
                and self.int8 == (kv_dtype == torch.int8))

    def self_kv(self, layer: int):
        """Layer ``layer``'s self K and V ``[rows, heads, n_ctx, head_dim]`` (``QuantizedKV`` when int8)."""
        if not self.int8:
            return self.self[layer, 0], self.self[layer, 1]
        return (QuantizedKV(self.self[layer, 0], self.self_scale[layer, 0]),
                QuantizedKV(self.self[layer, 1], self.self_scale[layer, 1]))

    def cross_kv(self, layer: int):
        """Layer ``layer``'s cross K and V ``[rows, heads, n_audio_ctx, head_dim]`` (strided views; ``QuantizedKV``
        when int8)."""
        kv = self.cross[layer].permute(2, 0, 3, 1, 4)  # [2, rows, heads, S, hd]
        if not self.int8:
            return kv[0], kv[1]
        s = self.cross_scale[layer].permute(2, 0, 3, 1, 4)
        return QuantizedKV(kv[0], s[0]), QuantizedKV(kv[1], s[1])

    def cross_keys(self, layer: int, rows: int) -> torch.Tensor:
        """The cross keys of audio rows 0..rows-1 as a float tensor ``[rows, heads, S, hd]`` (word alignment)."""
        k = self.cross_kv(layer)[0]
        if not self.int8:
            return k[:rows]
        return QuantizedKV(k.values[:rows], k.scales[:rows]).dequantize(self.dtype)

    @torch.no_grad()
    def set_audio(self, xa: torch.Tensor, kv_projections: Sequence[tuple]) -> None:
        """xa [a, n_audio_ctx, d] -> every layer's cross K/V of rows 0..a-1: one product per layer, written in
        place (int8: quantized once here). ``kv_projections``: per layer the fused K/V projection (weight [2*d, d],
        a float tensor or a ``QuantizedWeight``, multiplied by ``reference.weight_only_linear``; bias [2*d])."""
        if xa.dim() != 3 or xa.shape[0] > self.rows or xa.shape[1] != self.n_audio_ctx:
            raise ValueError(f"set_audio: audio states of shape {tuple(xa.shape)} do not fit {self.rows} rows x "
                             f"{self.n_audio_ctx} positions")
        a, s, d = xa.shape
        x2 = xa.to(self.dtype).reshape(a * s, d)
        for layer, (weight, bias) in enumerate(kv_projections):
            if isinstance(weight, QuantizedWeight):
                kv = reference.weight_only_linear(x2, weight.qweight, weight.scales, bias, mode=weight.mode.value,
                                                  group_size=weight.group_size, out_dtype=self.dtype)
            elif not self.int8:
                torch.addmm(bias, x2, weight.to(self.dtype).t(), out=self.cross[layer, :a].view(a * s, -1))
                continue
            else:
                kv = torch.addmm(bias, x2, weight.to(self.dtype).t())
            if not self.int8:
                self.cross[layer, :a].view(a * s, -1).copy_(kv)
                continue
            q, scale = quantize_kv(kv.view(a, s, *self.cross.shape[3:]))  # [a, S, 2, H, hd]
            self.cross[layer, :a].copy_(q)
            self.cross_scale[layer, :a].copy_(scale)
        self.audio_rows = a

    def step_group(self, owner: str, tokens: torch.Tensor, input_pos: torch.Tensor) -> int:
        """Check a step's tokens [b, t] and positions ([t] or [b, t], int64); the rows per audio row."""
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
        return max(1, b // self.audio_rows)

    @torch.no_grad()
    def reorder(self, index: torch.Tensor) -> None:
        """Beam search: self-cache row i of every layer becomes old row index[i], over the positions written so far
        (reads the latest positions' maximum: one host sync, as beam search syncs each step anyway); an int8
        cache's scales move with its values."""
        index = torch.as_tensor(index, device=self.self.device).long()
        n = index.shape[0]
        length = self.n_ctx if self.last_pos is None else int(self.last_pos.max()) + 1
        for kv in (self.self, self.self_scale) if self.int8 else (self.self,):
            kv[:, :, :n, :, :length] = kv[:, :, index, :, :length]

    def release(self) -> None:
        """Forget the audios; rows are rewritten by position before any query reads them, so nothing is cleared."""
        self.audio_rows, self.last_pos = 0, None
