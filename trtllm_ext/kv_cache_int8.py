"""An int8 static key/value cache: quantized on write, dequantized on read, in ``KVCache``'s interface.

Storage per cache ``[max_batch, heads, max_len, head_dim]``: ``k`` / ``v`` int8 values and
``k_scale`` / ``v_scale`` float32 ``[max_batch, heads, max_len, 1]``, one scale per (row, head, position)
(``quantization.quantize_kv``: amax over head_dim / 127, round-to-nearest, so ``|x - x'| <= scale / 2``).
Unwritten positions hold scale 0 and read back as zeros, as in ``KVCache``.

``kv()`` / ``written()`` / ``write()`` give ``QuantizedKV`` views, which the op backend's attention ops quantize
into and dequantize from (``self_attention_int8`` / ``cross_attention_int8``); ``write`` quantizes on the GPU in
one Triton kernel (``kernels.ops.quantize_kv``). ``update`` / ``read`` return dequantized copies in ``dtype`` (for
callers outside an attention op).
"""
from __future__ import annotations

import torch

from . import kernels
from .kernels.reference import write_kv
from .kv_cache import KVCache, check_cache_step
from .quantization import QuantizedKV, dequantize_kv, quantize_kv


class Int8KVCache(KVCache):
    """Keys and values ``[max_batch, num_heads, max_len, head_dim]`` held as int8 + per token-head float32 scales.

    ``storage=(k, v, k_scale, v_scale)``: views to use instead of new zeros. The K/V written must be
    floating point (they are quantized here). The buffers are non-persistent (state).
    """

    def __init__(self, max_batch: int, num_heads: int, max_len: int, head_dim: int, *,
                 dtype: torch.dtype = torch.float32, device=None, storage: tuple | None = None):
        if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
            raise ValueError(f"Int8KVCache: dtype (what reads dequantize to) must be floating point, got {dtype}")
        shape = (max_batch, num_heads, max_len, head_dim)
        if storage is None:
            storage = (torch.zeros(shape, dtype=torch.int8, device=device),
                       torch.zeros(shape, dtype=torch.int8, device=device),
                       *(torch.zeros(shape[:3] + (1,), dtype=torch.float32, device=device) for _ in range(2)))
        elif len(storage) != 4 or tuple(storage[2].shape) != shape[:3] + (1,) or storage[2].shape != storage[3].shape:
            raise ValueError("Int8KVCache: storage must be (k, v, k_scale, v_scale) with scales of shape "
                             f"{shape[:3] + (1,)}")
        super().__init__(max_batch, num_heads, max_len, head_dim, storage=storage[:2])
        self.dtype = dtype
        self.register_buffer("k_scale", storage[2], persistent=False)
        self.register_buffer("v_scale", storage[3], persistent=False)

    def kv(self) -> tuple[QuantizedKV, QuantizedKV]:
        return QuantizedKV(self.k, self.k_scale), QuantizedKV(self.v, self.v_scale)

    def written(self) -> tuple[QuantizedKV, QuantizedKV]:
        if self.length == 0:
            raise RuntimeError("Int8KVCache: nothing written; call write(k, v) first")
        sl = (slice(0, self.rows), slice(None), slice(0, self.length))
        return QuantizedKV(self.k[sl], self.k_scale[sl]), QuantizedKV(self.v[sl], self.v_scale[sl])

    def read(self, rows: int, length: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Rows ``[0, rows)`` over positions ``[0, length)`` (default: all), dequantized ``[rows, H, length, Dh]``."""
        self._check_rows(rows)
        length = self.max_len if length is None else length
        if not 0 < length <= self.max_len:
            raise ValueError(f"Int8KVCache: length {length} must be in [1, {self.max_len}]")
        sl = (slice(0, rows), slice(None), slice(0, length))
        return (dequantize_kv(self.k[sl], self.k_scale[sl], self.dtype),
                dequantize_kv(self.v[sl], self.v_scale[sl], self.dtype))

    def _check_float(self, k: torch.Tensor, v: torch.Tensor) -> None:
        for name, x in (("k", k), ("v", v)):
            if not isinstance(x, torch.Tensor) or not x.dtype.is_floating_point:
                got = x.dtype if isinstance(x, torch.Tensor) else type(x).__name__
                raise ValueError(f"Int8KVCache: {name} must be floating point (quantized on write), got {got}; "
                                 f"int8 K/V without their float scales cannot be stored")

    def update(self, input_pos: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Quantize and write ``k, v [b, H, t, Dh]`` at ``input_pos`` int64 ``[t]`` or ``[b, t]`` (positions
        distinct within a row); return the cache rows dequantized ``[b, H, max_len, Dh]``."""
        self._check_float(k, v)
        check_cache_step("Int8KVCache", input_pos, k, v, tuple(self.k.shape))
        (qk, sk), (qv, sv) = quantize_kv(k), quantize_kv(v)
        write_kv(self.k, self.v, input_pos, qk, qv)
        write_kv(self.k_scale, self.v_scale, input_pos, sk, sv)
        return self.read(k.shape[0])

    def write(self, k: torch.Tensor, v: torch.Tensor) -> tuple[QuantizedKV, QuantizedKV]:
        """Quantize ``k, v [b, H, t, Dh]`` into positions [0, t) of the first ``b`` rows (cross attention: once
        per audio); return them as ``written()`` does (views, no copy)."""
        self._check_float(k, v)
        b, t = self._check_write(k, v)
        for values, scales, x in ((self.k, self.k_scale, k), (self.v, self.v_scale, v)):
            _quantize_into(x, values[:b, :, :t], scales[:b, :, :t])
        self.rows, self.length = b, t
        return self.written()


def _quantize_into(x: torch.Tensor, values: torch.Tensor, scales: torch.Tensor) -> None:
    """``quantize_kv(x)`` into the cache views: on a CUDA GPU with Triton one kernel (the same numbers, bit for bit,
    without float64 copies of the whole tensor), else the reference."""
    if x.dim() == 4 and x.stride(3) == 1 and kernels.available(x.device):
        from .kernels import ops

        ops.quantize_kv(x, values, scales)
        return
    q, s = quantize_kv(x)
    values.copy_(q)
    scales.copy_(s)
