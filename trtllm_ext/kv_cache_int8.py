"""An int8 static key/value cache: quantized on write, dequantized on read, in ``KVCache``'s interface.

Storage per cache ``[max_batch, heads, max_len, head_dim]``: ``k_int8`` / ``v_int8`` int8 values and
``k_scale`` / ``v_scale`` float32 ``[max_batch, heads, max_len, 1]``, one scale per (row, head, position)
(``quantization.quantize_kv``: amax over head_dim / 127, round-to-nearest, so ``|x - x'| <= scale / 2``).
Unwritten positions hold scale 0 and read back as zeros, as in ``KVCache``.

Reads (``update``, ``write``, ``read``, ``k``, ``v``) return dequantized copies in ``dtype``, not views: the CPU
reference path of an int8 cache (a kernel would dequantize inside the attention). ``k`` / ``v`` are the whole
cache dequantized, so attention layers that read ``kv_cache.k`` directly (``CrossAttention``) take this cache in
place of a ``KVCache``; writing into them changes nothing. A cross cache is quantized once, by ``write``.
"""
from __future__ import annotations

import torch
from torch import nn

from .module import positive
from .quantization import dequantize_kv, quantize_kv


class Int8KVCache(nn.Module):
    """Keys and values ``[max_batch, num_heads, max_len, head_dim]`` held as int8 + per token-head float32 scales.

    ``update(input_pos, k, v)`` / ``write(k, v)`` / ``reorder(index)`` / ``reset()`` as in ``KVCache``; the K/V
    written must be floating point (they are quantized here). The buffers are non-persistent (state).
    """

    def __init__(self, max_batch: int, num_heads: int, max_len: int, head_dim: int, *,
                 dtype: torch.dtype = torch.float32, device=None):
        super().__init__()
        for name, n in (("max_batch", max_batch), ("num_heads", num_heads), ("max_len", max_len),
                        ("head_dim", head_dim)):
            positive(name, n)
        if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
            raise ValueError(f"Int8KVCache: dtype (what reads dequantize to) must be floating point, got {dtype}")
        self.dtype = dtype
        shape = (max_batch, num_heads, max_len, head_dim)
        for name in ("k", "v"):
            self.register_buffer(f"{name}_int8", torch.zeros(shape, dtype=torch.int8, device=device), persistent=False)
            self.register_buffer(f"{name}_scale", torch.zeros(shape[:3] + (1,), dtype=torch.float32, device=device),
                                 persistent=False)

    @property
    def max_batch(self) -> int:
        return self.k_int8.shape[0]

    @property
    def max_len(self) -> int:
        return self.k_int8.shape[2]

    @property
    def k(self) -> torch.Tensor:
        """All keys, dequantized ``[max_batch, H, max_len, Dh]`` (a copy)."""
        return dequantize_kv(self.k_int8, self.k_scale, self.dtype)

    @property
    def v(self) -> torch.Tensor:
        """All values, dequantized ``[max_batch, H, max_len, Dh]`` (a copy)."""
        return dequantize_kv(self.v_int8, self.v_scale, self.dtype)

    def read(self, rows: int, length: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Rows ``[0, rows)`` over positions ``[0, length)`` (default: all), dequantized ``[rows, H, length, Dh]``."""
        self._check_rows(rows)
        length = self.max_len if length is None else length
        if not 0 < length <= self.max_len:
            raise ValueError(f"Int8KVCache: length {length} must be in [1, {self.max_len}]")
        sl = (slice(0, rows), slice(None), slice(0, length))
        return (dequantize_kv(self.k_int8[sl], self.k_scale[sl], self.dtype),
                dequantize_kv(self.v_int8[sl], self.v_scale[sl], self.dtype))

    def _check_rows(self, b: int) -> None:
        if b > self.max_batch:
            raise ValueError(f"Int8KVCache: batch {b} exceeds the cache's max_batch {self.max_batch}")

    def _check_kv(self, k: torch.Tensor, v: torch.Tensor) -> None:
        for name, x in (("k", k), ("v", v)):
            if not isinstance(x, torch.Tensor) or not x.dtype.is_floating_point:
                got = x.dtype if isinstance(x, torch.Tensor) else type(x).__name__
                raise ValueError(f"Int8KVCache: {name} must be floating point (quantized on write), got {got}; "
                                 f"int8 K/V without their float scales cannot be stored")
        shape = tuple(self.k_int8.shape)
        if k.dim() != 4 or k.shape[1] != shape[1] or k.shape[3] != shape[3] or k.shape != v.shape:
            raise ValueError(f"Int8KVCache: k/v of shape {tuple(k.shape)}/{tuple(v.shape)} do not fit cache {shape}")
        self._check_rows(k.shape[0])

    def update(self, input_pos: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Quantize and write ``k, v [b, H, t, Dh]`` at ``input_pos`` int64 ``[t]`` or ``[b, t]`` (positions
        distinct within a row); return the cache rows dequantized ``[b, H, max_len, Dh]``."""
        self._check_kv(k, v)
        b, t = k.shape[0], k.shape[2]
        if not isinstance(input_pos, torch.Tensor) or input_pos.dtype != torch.long:
            raise ValueError(f"Int8KVCache: input_pos must be int64, got {getattr(input_pos, 'dtype', input_pos)}")
        if tuple(input_pos.shape) not in ((t,), (b, t)):
            raise ValueError(f"Int8KVCache: input_pos must have shape [{t}] or [{b}, {t}], "
                             f"got {tuple(input_pos.shape)}")
        for name, x in (("k", k), ("v", v)):
            q, s = quantize_kv(x)
            for store, value in ((getattr(self, f"{name}_int8"), q), (getattr(self, f"{name}_scale"), s)):
                rows = store[:b]
                if input_pos.dim() == 1:
                    rows.index_copy_(2, input_pos, value)
                else:  # per row: scatter along the position dim
                    rows.scatter_(2, input_pos[:, None, :, None].expand(value.shape), value)
        return self.read(b)

    def write(self, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Quantize ``k, v [b, H, t, Dh]`` into positions [0, t) of the first ``b`` rows (cross attention: once
        per audio); return them dequantized ``[b, H, t, Dh]``."""
        self._check_kv(k, v)
        b, t = k.shape[0], k.shape[2]
        if t > self.max_len:
            raise ValueError(f"Int8KVCache: {t} positions exceed the cache's max_len {self.max_len}")
        for name, x in (("k", k), ("v", v)):
            q, s = quantize_kv(x)
            getattr(self, f"{name}_int8")[:b, :, :t].copy_(q)
            getattr(self, f"{name}_scale")[:b, :, :t].copy_(s)
        return self.read(b, t)

    def reorder(self, index: torch.Tensor) -> None:
        """Row ``i`` becomes old row ``index[i]`` for ``i < len(index)`` (beam search), in place."""
        n = index.shape[0]
        self._check_rows(n)
        for buf in (self.k_int8, self.v_int8, self.k_scale, self.v_scale):
            buf[:n].copy_(buf.index_select(0, index))

    def reset(self) -> None:
        for buf in (self.k_int8, self.v_int8, self.k_scale, self.v_scale):
            buf.zero_()
