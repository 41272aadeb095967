"""int8 x int8 products on the CPU for weight-only int8 weights (``reference.weight_only_linear``'s CPU path).

The activation rows are quantized on the fly (dynamic, one scale per row), multiplied by the int8 weight with
int32 accumulation and scaled back to float32: ``y[m, n] ~= x[m, :] @ (qweight[n, :] * scales[n])``. Two kernels:

* ``packed``: fbgemm / oneDNN's dynamic quantized linear (``torch.ops.quantized.linear_dynamic``) over the weight
  prepacked once per ``qweight`` tensor (cached by tensor identity). That kernel picks one activation scale for the
  whole tensor, over its [min, max] (0 included). One row (a greedy decoding step) is handed over as it is: that
  scale is the row's own. Several rows are made independent of each other: every row is divided by its amax and one
  row ``[1, -1, 0, ...]`` is appended, so the tensor's range is always [-1, 1]; the rows of the result are
  multiplied back by their amax (a row's result is then the same beside any other rows of a batch of two or more;
  alone, its finer grid over its own [min, max] may round it differently, within the same bound). Activations
  become uint8 with a zero point, ``reduce_range`` (7-bit) so the u8 x s8 pair sums of the x86 kernels cannot
  saturate: the rounding error is at most half a step, ``amax(|x_row|) / 127`` per element (measured the fastest
  at 1 to 1500 rows on a 2-core x86 CPU; at one row the normalizing ops around the call cost more than the call);
* ``int_mm``: ``torch._int_mm`` (symmetric int8 rows, ``amax / 127``), used where the packed kernel is missing
  (builds without a quantized engine, or a torch that removed quantized tensors).

``int8_linear`` returns None where neither applies (not CPU, not float32): the caller then dequantizes.
"""
from __future__ import annotations

import functools
import warnings

import torch
from torch.utils.weak import WeakTensorKeyDictionary

from ..quantization import check_quantized

OWNER = "weight_only_linear"  # the op named in errors
_PACKED: WeakTensorKeyDictionary = WeakTensorKeyDictionary()  # qweight -> (versions, packed params or False)
KERNELS = ("packed", "int_mm")
kernel = "packed"  # which one to try first ("int_mm" forces the fallback; None: dequantize instead, as before)


def applies(x: torch.Tensor, qweight: torch.Tensor) -> bool:
    """True for a float32 CPU activation and an int8 [N, K] CPU weight (and ``kernel`` not None)."""
    return (kernel in KERNELS and x.device.type == "cpu" and qweight.device.type == "cpu" and x.dtype == torch.float32
            and qweight.dtype == torch.int8 and qweight.dim() == 2)


def _prepack(qweight: torch.Tensor, scales: torch.Tensor):
    """qweight int8 [N, K], scales [N] -> the quantized engine's packed weight (no bias), or False."""
    try:
        with warnings.catch_warnings():  # quantized tensors are deprecated; only the packing makes one, once
            warnings.simplefilter("ignore")
            zeros = torch.zeros(qweight.shape[0], dtype=torch.long)
            q = torch._make_per_channel_quantized_tensor(qweight, scales.double(), zeros, 0)
            return torch.ops.quantized.linear_prepack(q, None)
    except (RuntimeError, AttributeError, NotImplementedError):
        return False


def packed_weight(qweight: torch.Tensor, scales: torch.Tensor):
    """The cached packed weight of ``qweight`` (packed on first use and after an in-place change of qweight or
    scales), or False where packing fails. The pair is checked when packed (ValueError naming the problem), not
    on every call that reuses the packing."""
    version = (qweight._version, scales._version, scales.data_ptr())
    cached = _PACKED.get(qweight)
    if cached is None or cached[0] != version:
        check_quantized(qweight, scales, "int8", owner=OWNER)
        cached = _PACKED[qweight] = (version, _prepack(qweight, scales))
    return cached[1]


def quantize_rows(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """x float32 [M, K] -> (int8 [M, K], float32 scales [M, 1]): symmetric, amax / 127 per row."""
    scale = x.abs().amax(dim=1, keepdim=True).clamp_min(1e-30) / 127
    return torch.round(x / scale).clamp_(-127, 127).to(torch.int8), scale


def int_mm_linear(x: torch.Tensor, qweight: torch.Tensor, scales: torch.Tensor) -> torch.Tensor:
    """x float32 [M, K] @ (qweight int8 [N, K] * scales [N])^T -> float32 [M, N] by ``torch._int_mm``."""
    qx, sx = quantize_rows(x)
    acc = torch._int_mm(qx, qweight.t())  # int32 [M, N]
    return acc.float() * sx * scales.float()


def int8_linear(x: torch.Tensor, qweight: torch.Tensor, scales: torch.Tensor) -> torch.Tensor | None:
    """x float32 [M, K] (any strides) @ dequantized(qweight [N, K], scales [N])^T -> float32 [M, N] by an int8
    product, or None where no int8 CPU kernel applies; ValueError for an x of another K or a bad pair. No gradient
    (the quantized kernels have none; x is detached, so ``packed_linear`` may write into its buffer with ``out=``)."""
    if not applies(x, qweight):
        return None
    if x.dim() != 2 or x.shape[1] != qweight.shape[1]:
        raise ValueError(f"{OWNER}: x must be [M, {qweight.shape[1]}] for qweight of shape {tuple(qweight.shape)}, "
                         f"got {tuple(x.shape)}")
    x = x.detach().contiguous()
    if kernel == "packed":
        packed = packed_weight(qweight, scales)
        if packed is not False:
            return packed_linear(x, packed)
    check_quantized(qweight, scales, "int8", owner=OWNER)
    return int_mm_linear(x, qweight, scales)


def packed_linear(x: torch.Tensor, packed) -> torch.Tensor:
    """x float32 [M, K] (contiguous) by the packed kernel, per-row activation scales (module docstring) -> [M, N]
    (one row: the kernel's result; more: the first M rows of the kernel's [M + 1, N] result, rescaled in place)."""
    m, k = x.shape
    if m == 1:
        return torch.ops.quantized.linear_dynamic(x, packed, True)
    rows = torch.empty(m + 1, k)  # the kernel's input, written in place: one buffer (no |x| temporary, no cat)
    amax = torch.abs(x, out=rows[:m]).amax(dim=1, keepdim=True).clamp_min_(1e-30)  # [M, 1]
    torch.div(x, amax, out=rows[:m])
    rows[m:] = span_row(k)
    y = torch.ops.quantized.linear_dynamic(rows, packed, True)
    return y[:-1].mul_(amax)


@functools.lru_cache(maxsize=None)
def span_row(k: int) -> torch.Tensor:
    """The appended row [1, -1, 0, ...] float32 [1, k], made once per k (a normal tensor, whatever mode the first
    caller is in); read-only."""
    with torch.inference_mode(False):
        span = torch.zeros(1, k)
        span[0, :2] = torch.tensor([1.0, -1.0])
    return span


__all__ = ["KERNELS", "applies", "int8_linear", "int_mm_linear", "packed_weight", "quantize_rows"]
