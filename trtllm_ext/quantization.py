"""Symmetric round-to-nearest quantization of weights (int8 per output channel, int4 group-wise) and of K/V (int8).

Weights ``w [N, K]`` (the Linear family's [out, in] layout):

* ``"int8"``: one scale per output channel, ``scales [N] = amax(|w[n, :]|) / 127``; ``qweight`` int8 ``[N, K]``,
  values in [-127, 127];
* ``"int4"``: one scale per (row, group of ``group_size`` consecutive k), ``scales [N, K // group_size] =
  -sign(peak) * amax / 8`` where ``peak`` is the group's value of largest magnitude: all 16 levels [-8, 7] are used,
  the peak lands exactly on -8 and the scale's sign carries its sign (a positive-only amax / 7 grid leaves -8 unused
  and is 8/7 coarser); ``qweight`` uint8 ``[N, K // 2]``, two's-complement nibbles packed along K: byte ``j`` holds
  ``k = 2j`` in its low nibble and ``k = 2j + 1`` in its high nibble. ``K`` must be a multiple of ``group_size``
  (even).

Dequantized, ``w'[n, k] = q[n, k] * scale(n, k)``. Scales are amax / qmax (int4: amax / 8) rounded to nearest in
their storage dtype (one ulp up where a coarse subnormal float16 scale would clip more), so ``|w - w'| <= |scale| /
2`` holds element-wise for the stored scale (``w'`` in float64), except for int4 values of the peak's opposite sign
beyond 7.5 steps: they clip to 7, off by ``|w| - 7 |scale|`` (at most the group's amax - 7 |scale|, about one step).
An all-zero row or group gets scale 1 and zeros. Rounding is torch.round (half to even).

K/V ``x [..., L, head_dim]`` (int8): one float32 scale per (..., position), i.e. per token and head of a cache
``[b, heads, L, head_dim]``: ``scales [..., L, 1] = amax over head_dim / 127``; or a given (e.g. per-head) scale.

``QuantizedWeight`` and ``QuantizedKV`` are what an op-set is handed in place of a float weight or a float K/V
cache: small frozen views of the stored tensors (no copy) that say how to read them; ``dequantized(x)`` gives the
float tensor of either (and a float tensor as it is).
"""
from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

import torch

INT8_MAX, INT4_MAX = 127, 7
INT4_PEAK = 8  # |q| of an int4 group's largest-magnitude value (-8: all 16 levels)
DEFAULT_GROUP_SIZE = 128


class QuantMode(str, Enum):
    """Weight-only quantization mode; compares equal to its string (``QuantMode.INT8 == "int8"``)."""

    INT8 = "int8"
    INT4 = "int4"


def as_quant_mode(mode) -> QuantMode:
    """``mode`` ("int8" / "int4" / a QuantMode) as a QuantMode; ValueError otherwise."""
    try:
        return QuantMode(mode)
    except ValueError:
        raise ValueError(f"quant_mode must be one of {[m.value for m in QuantMode]}, got {mode!r}") from None


def qweight_dtype(mode) -> torch.dtype:
    """int8 for "int8", uint8 (two packed nibbles) for "int4"."""
    return torch.int8 if as_quant_mode(mode) is QuantMode.INT8 else torch.uint8


def check_group(k: int, mode, group_size: int | None = DEFAULT_GROUP_SIZE, owner: str = "quantize") -> int | None:
    """The group size an ``[N, k]`` weight is quantized with: None for int8 (per channel; ``group_size`` is
    ignored), ``group_size`` for int4, after checking it is a positive even integer that divides ``k``."""
    if as_quant_mode(mode) is QuantMode.INT8:
        return None
    if not isinstance(group_size, int) or isinstance(group_size, bool) or group_size <= 0 or group_size % 2:
        raise ValueError(f"{owner}: int4 group_size must be a positive even integer, got {group_size!r}")
    if k % group_size:
        raise ValueError(f"{owner}: int4 needs K (in features) to be a multiple of group_size={group_size}, got K={k}")
    return group_size


def qweight_shape(n: int, k: int, mode) -> tuple[int, int]:
    """``[N, K]`` (int8) or ``[N, K // 2]`` (int4)."""
    return (n, k) if as_quant_mode(mode) is QuantMode.INT8 else (n, k // 2)


def scales_shape(n: int, k: int, mode, group_size: int | None = DEFAULT_GROUP_SIZE) -> tuple[int, ...]:
    """``[N]`` (int8) or ``[N, K // group_size]`` (int4)."""
    return (n,) if as_quant_mode(mode) is QuantMode.INT8 else (n, k // group_size)


def pack_int4(q: torch.Tensor) -> torch.Tensor:
    """Integers in [-8, 7] ``[..., K]`` (K even) -> uint8 ``[..., K // 2]``: low nibble = even k, high = odd k."""
    if q.dtype.is_floating_point or q.dtype == torch.bool:
        raise ValueError(f"pack_int4: expected an integer tensor, got {q.dtype}")
    if q.dim() == 0 or q.shape[-1] % 2:
        raise ValueError(f"pack_int4: the last dimension must be even, got shape {tuple(q.shape)}")
    if q.numel() and (q.min() < -8 or q.max() > 7):
        raise ValueError(f"pack_int4: values must lie in [-8, 7], got [{int(q.min())}, {int(q.max())}]")
    nib = q.to(torch.int16) & 0xF
    return (nib[..., 0::2] | (nib[..., 1::2] << 4)).to(torch.uint8)


def unpack_int4(packed: torch.Tensor) -> torch.Tensor:
    """uint8 ``[..., K // 2]`` -> int8 ``[..., K]`` in [-8, 7] (the inverse of ``pack_int4``)."""
    if packed.dtype != torch.uint8:
        raise ValueError(f"unpack_int4: packed int4 weights must be uint8, got {packed.dtype}")
    p = packed.to(torch.int16)
    nib = torch.stack((p & 0xF, p >> 4), dim=-1).flatten(-2)
    return (nib - ((nib & 0x8) << 1)).to(torch.int8)  # two's complement of a nibble


def _store_scale(amax: torch.Tensor, qmax: int, dtype: torch.dtype) -> torch.Tensor:
    """``amax / qmax`` rounded to nearest in ``dtype``, one ulp up where that would put ``amax`` beyond
    ``(qmax + 1/2) * scale`` (coarse subnormal scales), so clipping never costs more than half a scale. The
    quotient is formed in float64 (a float32 one on CUDA is amax * (1 / qmax), not correctly rounded): for qmax 127
    it is never near a float32 tie (its bits repeat with period 7), so it rounds as the correctly rounded float32
    quotient of the K/V kernels (``div_rn``) does; for qmax 8 it is exact."""
    stored = (amax.to(torch.float64) / qmax).to(dtype)
    low = stored.to(torch.float64) * (qmax + 0.5) < amax
    stored = torch.where(low, torch.nextafter(stored, torch.full_like(stored, float("inf"))), stored)
    return torch.where(stored == 0, torch.ones_like(stored), stored)


def _symmetric(x: torch.Tensor, amax: torch.Tensor, qmax: int, scale_dtype: torch.dtype):
    """Per-block round-to-nearest: ``x`` float64 (or float32: the K/V cache), ``amax`` broadcastable to it ->
    (int8 q, scales); the quotient x / scale correctly rounded in x's dtype, then rounded half to even."""
    scale = _store_scale(amax, qmax, scale_dtype)
    q = torch.round(x / scale.to(x.dtype)).clamp_(-qmax, qmax).to(torch.int8)
    return q, scale


def weight_scales(x: torch.Tensor, mode, scale_dtype: torch.dtype) -> torch.Tensor:
    """The stored scales of weight blocks ``x`` float64 ``[..., block]`` (int8: a channel's row; int4: a group) ->
    ``[..., 1]``: int8 amax / 127; int4 amax / 8, signed so that the block's peak (largest magnitude, first of ties)
    lands on -8 (all 16 levels; values of the other sign beyond 7.5 steps clip to 7)."""
    amax = x.abs().amax(dim=-1, keepdim=True)
    if as_quant_mode(mode) is QuantMode.INT8:
        return _store_scale(amax, INT8_MAX, scale_dtype)
    peak = torch.gather(x, -1, x.abs().argmax(dim=-1, keepdim=True))
    scale = _store_scale(amax, INT4_PEAK, scale_dtype)
    return torch.where(peak > 0, -scale, scale)


def round_weight(x: torch.Tensor, scale: torch.Tensor, mode) -> torch.Tensor:
    """Weights ``x`` float64 over their stored ``scale`` (broadcast) -> int8 levels ([-127, 127] or [-8, 7]):
    the quotient correctly rounded in float64, then rounded half to even and clipped."""
    lo, hi = (-INT8_MAX, INT8_MAX) if as_quant_mode(mode) is QuantMode.INT8 else (-INT4_PEAK, INT4_MAX)
    return torch.round(x / scale.to(x.dtype)).clamp_(lo, hi).to(torch.int8)


def check_float(owner: str, name: str, x, ndim: int | None = None) -> None:
    if not isinstance(x, torch.Tensor):
        raise ValueError(f"{owner}: {name} must be a torch.Tensor, got {type(x).__name__}")
    if not x.dtype.is_floating_point:
        raise ValueError(f"{owner}: {name} must be floating point, got {x.dtype}")
    if ndim is not None and x.dim() != ndim:
        raise ValueError(f"{owner}: {name} must be {ndim}-D, got shape {tuple(x.shape)}")


def quantize_weight(w: torch.Tensor, mode, group_size: int | None = DEFAULT_GROUP_SIZE, *,
                    scale_dtype: torch.dtype | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Float ``w [N, K]`` -> ``(qweight, scales)``: int8 ``[N, K]`` + ``[N]``, or uint8 ``[N, K // 2]`` +
    ``[N, K // group_size]`` (int4); scales in ``scale_dtype`` (default: w's dtype), on w's device.

    ValueError on a non-2-D or non-floating ``w``, non-finite values, or (int4) a K that is not a multiple of an
    even ``group_size``."""
    mode = as_quant_mode(mode)
    check_float("quantize_weight", "w [N, K]", w, ndim=2)
    scale_dtype = scale_dtype or w.dtype
    if not scale_dtype.is_floating_point:
        raise ValueError(f"quantize_weight: scale_dtype must be floating point, got {scale_dtype}")
    if not torch.isfinite(w).all():
        raise ValueError(f"quantize_weight: weight of shape {tuple(w.shape)} has non-finite values")
    n, k = w.shape
    group = check_group(k, mode, group_size, "quantize_weight")
    blocks = w.detach().to(torch.float64).reshape(n, k // (group or k), group or k)
    scale = weight_scales(blocks, mode, scale_dtype)
    q = round_weight(blocks, scale, mode).reshape(n, k)
    if mode is QuantMode.INT8:
        return q, scale.reshape(n)
    return pack_int4(q), scale.reshape(n, k // group)


def check_quantized(qweight: torch.Tensor, scales: torch.Tensor, mode, k: int | None = None,
                    group_size: int | None = None, owner: str = "dequantize_weight") -> tuple[int, int | None]:
    """Check a ``(qweight, scales)`` pair against ``mode`` (and ``k`` / ``group_size`` when given); return
    ``(K, group_size)`` (group_size None for int8). ValueError naming the shape or dtype problem."""
    mode = as_quant_mode(mode)
    want = qweight_dtype(mode)
    if not isinstance(qweight, torch.Tensor) or qweight.dtype != want or qweight.dim() != 2:
        got = f"{qweight.dtype} {tuple(qweight.shape)}" if isinstance(qweight, torch.Tensor) else type(qweight)
        raise ValueError(f"{owner}: {mode.value} qweight must be a 2-D {want} tensor, got {got}")
    if not isinstance(scales, torch.Tensor) or not scales.dtype.is_floating_point:
        got = scales.dtype if isinstance(scales, torch.Tensor) else type(scales).__name__
        raise ValueError(f"{owner}: scales must be a floating-point tensor, got {got}")
    n = qweight.shape[0]
    kk = qweight.shape[1] * (1 if mode is QuantMode.INT8 else 2)
    if k is not None and k != kk:
        raise ValueError(f"{owner}: qweight of shape {tuple(qweight.shape)} holds K={kk}, expected K={k}")
    if mode is QuantMode.INT8:
        if tuple(scales.shape) != (n,):
            raise ValueError(f"{owner}: int8 scales must have shape ({n},) (one per output channel), "
                             f"got {tuple(scales.shape)}")
        return kk, None
    if scales.dim() != 2 or scales.shape[0] != n or kk % scales.shape[1]:
        raise ValueError(f"{owner}: int4 scales must have shape ({n}, K // group_size) with K={kk}, "
                         f"got {tuple(scales.shape)}")
    group = kk // scales.shape[1]
    if group_size is not None and group != group_size:
        raise ValueError(f"{owner}: int4 scales of shape {tuple(scales.shape)} give group size {group}, "
                         f"expected {group_size} (shape ({n}, {kk // group_size}))")
    return kk, group


def dequantize_weight(qweight: torch.Tensor, scales: torch.Tensor, mode, k: int | None = None, *,
                      group_size: int | None = None, dtype: torch.dtype | None = None) -> torch.Tensor:
    """``(qweight, scales)`` as made by ``quantize_weight`` -> float ``[N, K]`` in ``dtype`` (default: scales').

    The product is formed in float64 when ``dtype`` is float64, else in float32, then cast once."""
    kk, group = check_quantized(qweight, scales, mode, k, group_size)
    dtype = dtype or scales.dtype
    work = torch.float64 if dtype == torch.float64 else torch.float32
    q = qweight if group is None else unpack_int4(qweight)
    s = scales.to(work)
    if group is None:
        return (q.to(work) * s[:, None]).to(dtype)
    n = q.shape[0]
    w = q.to(work).reshape(n, kk // group, group) * s[:, :, None]
    return w.reshape(n, kk).to(dtype)


def _broadcasts_to(shape, target) -> bool:
    try:
        return tuple(torch.broadcast_shapes(shape, target)) == tuple(target)
    except RuntimeError:
        return False


def quantize_kv(x: torch.Tensor, scale: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Float K or V ``x [..., L, head_dim]`` -> (int8 ``[..., L, head_dim]``, float32 scales).

    Without ``scale``: one scale per (..., position), ``[..., L, 1]`` = amax over head_dim / 127 (per token-head
    for a cache ``[b, heads, L, head_dim]``). With ``scale`` (float, positive, broadcastable to ``[..., L, 1]``,
    e.g. per head ``[heads, 1, 1]``): that static scale, values beyond +-127 * scale clipped; returned as given."""
    check_float("quantize_kv", "x [..., L, head_dim]", x)
    if x.dim() < 2:
        raise ValueError(f"quantize_kv: x must be [..., L, head_dim], got shape {tuple(x.shape)}")
    work = torch.float64 if x.dtype == torch.float64 else torch.float32  # exact for every narrower input
    xd = x.detach().to(work)
    if scale is None:
        return _symmetric(xd, xd.abs().amax(dim=-1, keepdim=True), INT8_MAX, torch.float32)
    check_float("quantize_kv", "scale", scale)
    if not _broadcasts_to(scale.shape, x.shape[:-1] + (1,)):
        raise ValueError(f"quantize_kv: scale of shape {tuple(scale.shape)} does not broadcast to "
                         f"{tuple(x.shape[:-1]) + (1,)}")
    if not (scale > 0).all():
        raise ValueError("quantize_kv: a given scale must be positive")
    q = torch.round(xd / scale.to(work)).clamp_(-INT8_MAX, INT8_MAX).to(torch.int8)
    return q, scale


def dequantize_kv(q: torch.Tensor, scales: torch.Tensor | None, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """int8 ``q [..., L, head_dim]`` times float ``scales`` (broadcastable, e.g. ``[..., L, 1]``) -> ``dtype``."""
    if not isinstance(q, torch.Tensor) or q.dtype != torch.int8:
        got = q.dtype if isinstance(q, torch.Tensor) else type(q).__name__
        raise ValueError(f"dequantize_kv: q must be an int8 tensor, got {got}")
    if scales is None:
        raise ValueError(f"dequantize_kv: int8 K/V of shape {tuple(q.shape)} need their float scales, got None")
    check_float("dequantize_kv", "scales", scales)
    if not _broadcasts_to(scales.shape, q.shape):
        raise ValueError(f"dequantize_kv: scales of shape {tuple(scales.shape)} do not broadcast to {tuple(q.shape)}")
    work = torch.float64 if dtype == torch.float64 else torch.float32
    return (q.to(work) * scales.to(work)).to(dtype)


@dataclass(frozen=True, eq=False)
class QuantizedWeight:
    """A weight-only quantized ``[N, K]`` weight, as ``ops.linear`` takes it in place of a float weight: ``qweight``
    / ``scales`` as ``quantize_weight`` makes them (views of a layer's storage), ``group_size`` None for int8.
    ``dtype`` / ``device`` / ``shape`` are those of the float weight it stands for (the activation dtype)."""

    qweight: torch.Tensor
    scales: torch.Tensor
    mode: QuantMode
    group_size: int | None
    k: int

    @property
    def dtype(self) -> torch.dtype:
        return self.scales.dtype

    @property
    def device(self) -> torch.device:
        return self.qweight.device

    @property
    def shape(self) -> torch.Size:
        return torch.Size((self.qweight.shape[0], self.k))

    def dequantize(self, dtype: torch.dtype | None = None) -> torch.Tensor:
        """The float weight ``[N, K]`` (default: in the activation dtype)."""
        return dequantize_weight(self.qweight, self.scales, self.mode, self.k, group_size=self.group_size,
                                 dtype=dtype or self.dtype)


@dataclass(frozen=True, eq=False)
class QuantizedKV:
    """An int8 K or V cache ``values [..., L, head_dim]`` with its float32 ``scales [..., L, 1]`` (views of a
    cache's storage), as the attention ops take it in place of a float cache."""

    values: torch.Tensor
    scales: torch.Tensor

    @property
    def shape(self) -> torch.Size:
        return self.values.shape

    @property
    def device(self) -> torch.device:
        return self.values.device

    def dequantize(self, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        return dequantize_kv(self.values, self.scales, dtype)


def dequantized(x, dtype: torch.dtype | None = None) -> torch.Tensor:
    """``x`` as a float tensor: a ``QuantizedWeight`` / ``QuantizedKV`` dequantized (to ``dtype``, default the
    weight's activation dtype / float32), a tensor as it is (cast to ``dtype`` when given)."""
    if isinstance(x, QuantizedWeight):
        return x.dequantize(dtype)
    if isinstance(x, QuantizedKV):
        return x.dequantize(dtype or torch.float32)
    return x if dtype is None else x.to(dtype)
