"""Weight-only quantized Linear layers: int8 per output channel, int4 group-wise (``quantization`` has the format).

Storage, per rank (``N``, ``K``: this rank's out / in features), in the Linear family's [out, in] layout (transB):

* ``qweight``: int8 ``[N, K]`` (``quant_mode="int8"``) or uint8 ``[N, K // 2]`` (``"int4"``, low nibble = even k);
* ``scales``: ``[N]`` (int8) or ``[N, K // group_size]`` (int4), in the activation ``dtype``; NaN until loaded;
* ``bias``: ``[N]`` in the activation dtype (optional).

``forward`` is the Linear family's (``linear.LinearForward``): the product on an op backend, whose ``linear`` takes
the ``QuantizedWeight`` that this layer's weight handling ``op_weight()`` gives (views of qweight / scales) in place
of a float weight. The plain-PyTorch backend dequantizes and multiplies, or (int8, float32 on the CPU) runs an
int8 x int8 product of dynamically quantized rows (``kernels.cpu_int8``); ``dequantized_weight()`` is the float
weight the layer stands for.

``load_weights`` keeps ``Linear``'s contract (declared shapes, everything checked before anything is written,
values copied into owned storage) and takes *either* a float ``weight [N, K]`` (any float dtype, torch or numpy;
quantized at load, round-to-nearest, from its own precision; ``layout="in_out"`` means the caller holds ``W^T``)
*or* the pre-quantized ``qweight`` + ``scales`` (stored layout only), plus ``bias``.

Tensor parallelism as for ``ColumnLinear`` / ``RowLinear``: the column variant splits N (qweight, scales and bias
dim 0); the row variant splits K (qweight dim 1; int4 scales dim 1, so K / tp_size must be a multiple of
group_size; int8 scales and the bias are replicated, the bias added once after the all-reduce).
``shard_weights`` quantizes full float weights *before* splitting them, so the ranks recombine to exactly the
unsplit quantized layer.
"""
from __future__ import annotations

from typing import Mapping

import numpy as np
import torch
from torch import nn

from .linear import ColumnLinear, LinearForward, RowLinear
from .module import LAYOUTS, ArrayLike, Module, check_input, declare, positive, to_tensor
from .quantization import (
    DEFAULT_GROUP_SIZE,
    INT4_MAX,
    INT8_MAX,
    QuantizedWeight,
    QuantMode,
    as_quant_mode,
    check_group,
    dequantize_weight,
    pack_int4,
    quantize_weight,
    qweight_dtype,
    qweight_shape,
    scales_shape,
)

_QUANT_KEYS = ("qweight", "scales")


def _int_tensor(name: str, value) -> torch.Tensor:
    """An owned torch copy of an integer tensor / numpy array (pre-quantized weights)."""
    if isinstance(value, np.ndarray):
        value = torch.from_numpy(np.array(value, copy=True))
    elif not isinstance(value, torch.Tensor):
        raise ValueError(f"weight {name!r}: expected a torch.Tensor or numpy.ndarray, got {type(value).__name__}")
    return value


def _narrow(tensor: torch.Tensor, rank: int, world: int, dim: int) -> torch.Tensor:
    if tensor.shape[dim] % world:
        raise ValueError(f"dimension {dim} of shape {tuple(tensor.shape)} is not divisible by tp size {world}")
    size = tensor.shape[dim] // world
    return tensor.narrow(dim, rank * size, size).contiguous().clone()


class WeightOnlyQuantLinear(LinearForward, Module):
    """``x [..., in_features] -> [..., out_features]`` with a weight held quantized (see the module docstring)."""

    def __init__(self, in_features: int, out_features: int, bias: bool = True, *, quant_mode,
                 group_size: int = DEFAULT_GROUP_SIZE, dtype: torch.dtype = torch.float32, device=None,
                 tp_size: int = 1, tp_rank: int = 0, tp_group=None):
        super().__init__()
        positive("in_features", in_features)
        positive("out_features", out_features)
        positive("tp_size", tp_size)
        if not 0 <= tp_rank < tp_size:
            raise ValueError(f"tp_rank must be in [0, {tp_size}), got {tp_rank}")
        if type(self) is WeightOnlyQuantLinear and tp_size != 1:
            raise ValueError("WeightOnlyQuantLinear is not split across ranks; use WeightOnlyQuantColumnLinear or "
                             "WeightOnlyQuantRowLinear for tp_size > 1")
        self.quant_mode = as_quant_mode(quant_mode)
        self.in_features, self.out_features = in_features, out_features
        self.tp_size, self.tp_rank, self.tp_group = tp_size, tp_rank, tp_group
        n, k = self._local_shape(in_features, out_features, tp_size)
        per_rank = f" (in_features={in_features} / tp_size={tp_size})" if k != in_features else ""
        #: int4: K's group size; None for int8 (one scale per output channel)
        self.group_size = check_group(k, self.quant_mode, group_size, f"{type(self).__name__}{per_rank}")
        self.qweight = nn.Parameter(torch.zeros(qweight_shape(n, k, self.quant_mode), device=device,
                                                dtype=qweight_dtype(self.quant_mode)), requires_grad=False)
        self.scales = declare(*scales_shape(n, k, self.quant_mode, self.group_size), dtype=dtype, device=device)
        self.bias = declare(self._local_bias(out_features, tp_size), dtype=dtype, device=device) if bias else None

    def _local_shape(self, in_features: int, out_features: int, tp_size: int) -> tuple[int, int]:
        return out_features, in_features

    def _local_bias(self, out_features: int, tp_size: int) -> int:
        return out_features

    def _split_dims(self) -> dict[str, int | None]:
        """Which dim of each stored tensor a tensor-parallel split cuts; None: replicated."""
        return {"qweight": None, "scales": None, "bias": None}

    @property
    def dtype(self) -> torch.dtype:
        """The activation dtype (inputs, outputs, scales, bias)."""
        return self.scales.dtype

    @property
    def local_shape(self) -> tuple[int, int]:
        """This rank's (N, K) of the dequantized weight."""
        return self._local_shape(self.in_features, self.out_features, self.tp_size)

    @property
    def weight(self) -> QuantizedWeight:
        """``op_weight()``: what stands where a float Linear holds its weight (``.dtype``, ``.shape``, ``.device``)."""
        return self.op_weight()

    def op_weight(self) -> QuantizedWeight:
        """The weight handling (``LinearForward``): this rank's weight as the op backend takes it in place of a
        float one (views of the storage, no copy; ``.dtype`` / ``.device`` / ``.shape`` as the float weight's)."""
        return QuantizedWeight(self.qweight, self.scales, self.quant_mode, self.group_size, self.local_shape[1])

    def dequantized_weight(self, dtype: torch.dtype | None = None) -> torch.Tensor:
        """This rank's weight ``[N, K]`` = q * scale, in ``dtype`` (default: the activation dtype)."""
        return dequantize_weight(self.qweight, self.scales, self.quant_mode, self.local_shape[1],
                                 group_size=self.group_size, dtype=dtype or self.dtype)

    # ------------------------------------------------------------------------------------------ loading

    def stage_weights(self, weights: Mapping[str, ArrayLike], *, layout: str = "out_in",
                      strict: bool = True) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Check either {``weight``, ``bias``} (float weight quantized here) or {``qweight``, ``scales``,
        ``bias``}: the (target, value) pairs ``load_weights`` writes. ValueError naming the key on an unknown,
        missing (with ``strict``; ``qweight`` and ``scales`` always come together) or mixed name, a wrong dtype or
        shape, or non-finite values (``Module.load_weights`` of a model holding this layer stages it this way, so
        nothing is written unless every value of the model is valid)."""
        if layout not in LAYOUTS:
            raise ValueError(f"layout must be one of {LAYOUTS}, got {layout!r}")
        self._check_names(weights, strict)
        staged = []
        if "weight" in weights:
            q, s = self._quantize_full(weights["weight"], layout, self.local_shape)
            staged += [(self.qweight, q), (self.scales, s)]
        elif "qweight" in weights:
            staged += self._check_prequantized(weights["qweight"], weights["scales"], layout)
        if "bias" in weights:
            staged.append((self.bias, self._float_value("bias", weights["bias"], tuple(self.bias.shape))))
        return staged

    def _check_names(self, weights: Mapping, strict: bool) -> None:
        name, keys = type(self).__name__, set(weights)
        allowed = {"weight", *_QUANT_KEYS} | ({"bias"} if self.bias is not None else set())
        unknown = sorted(keys - allowed)
        if unknown:
            raise ValueError(f"{name}: unknown weight names {unknown}; expected a float 'weight' (quantized at "
                             f"load) or 'qweight' + 'scales'{' and bias' if self.bias is not None else ''}")
        if "weight" in keys and keys & set(_QUANT_KEYS):
            raise ValueError(f"{name}: give either a float 'weight' (quantized at load) or 'qweight' + 'scales', "
                             f"not both (got {sorted(keys)})")
        if len(keys & set(_QUANT_KEYS)) == 1:
            (lacking,) = set(_QUANT_KEYS) - keys
            raise ValueError(f"{name}: 'qweight' and 'scales' are loaded together; missing {lacking!r}")
        missing = [] if keys & {"weight", "qweight"} else ["'weight' (or 'qweight' + 'scales')"]
        missing += ["'bias'"] if self.bias is not None and "bias" not in keys else []
        if strict and missing:
            raise ValueError(f"{name}: missing weights {', '.join(missing)}")

    def _float_value(self, key: str, value, shape: tuple[int, ...], layout: str | None = None) -> torch.Tensor:
        tensor = to_tensor(key, value)
        if layout == "in_out":
            if tensor.dim() != 2:
                raise ValueError(f"{type(self).__name__}: weight {key!r} must be 2-D, got shape {tuple(tensor.shape)}")
            tensor = tensor.t()
        if tuple(tensor.shape) != shape:
            where = f" (layout={layout!r})" if layout else ""
            raise ValueError(f"{type(self).__name__}: weight {key!r} has shape {tuple(tensor.shape)}, "
                             f"expected {shape}{where}")
        return tensor.to(self.scales.device).clone()

    def _quantize_full(self, value, layout: str, shape: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
        """A float weight of ``shape`` (after ``layout``) -> (qweight, scales) on this layer's device."""
        w = self._float_value("weight", value, shape, layout)
        try:
            return quantize_weight(w, self.quant_mode, self.group_size, scale_dtype=self.dtype)
        except ValueError as e:
            raise ValueError(f"{type(self).__name__}: weight 'weight': {e}") from None

    def _check_prequantized(self, qweight, scales, layout: str) -> list[tuple[torch.Tensor, torch.Tensor]]:
        name = type(self).__name__
        if layout != "out_in":
            raise ValueError(f"{name}: layout={layout!r} applies to a float 'weight'; 'qweight' and 'scales' are "
                             f"taken in the stored layout {tuple(self.qweight.shape)} / {tuple(self.scales.shape)}")
        q = _int_tensor("qweight", qweight)
        if q.dtype != self.qweight.dtype:
            raise ValueError(f"{name}: weight 'qweight' must be {self.qweight.dtype} for quant_mode "
                             f"{self.quant_mode.value!r}, got {q.dtype}")
        if tuple(q.shape) != tuple(self.qweight.shape):
            raise ValueError(f"{name}: weight 'qweight' has shape {tuple(q.shape)}, expected "
                             f"{tuple(self.qweight.shape)}")
        s = self._float_value("scales", scales, tuple(self.scales.shape))
        signed = self.quant_mode is QuantMode.INT4  # an int4 group's scale carries the sign of its peak
        if not torch.isfinite(s).all() or (not signed and (s < 0).any()):
            raise ValueError(f"{name}: weight 'scales' must be finite" + ("" if signed else " and non-negative"))
        return [(self.qweight, q.to(self.qweight.device).clone()), (self.scales, s)]

    def shard_weights(self, full: Mapping[str, ArrayLike], *, layout: str = "out_in") -> dict[str, torch.Tensor]:
        """This rank's slice of full (unsplit) weights: {weight?, bias?} or {qweight, scales, bias?} ->
        {qweight, scales, bias?} (a float weight is quantized whole first, then split)."""
        full = dict(full)
        if "weight" in full:
            if set(full) & set(_QUANT_KEYS):
                raise ValueError(f"{type(self).__name__}: give either a float 'weight' or 'qweight' + 'scales'")
            q, s = self._quantize_full(full.pop("weight"), layout, (self.out_features, self.in_features))
            full.update(qweight=q, scales=s)
        elif layout != "out_in" and set(full) & set(_QUANT_KEYS):
            raise ValueError(f"{type(self).__name__}: layout={layout!r} applies to a float 'weight' only")
        dims = self._split_dims()
        out = {}
        for key, value in full.items():
            if key not in dims:
                raise ValueError(f"{type(self).__name__}: unknown weight name {key!r}; expected {sorted(dims)}")
            tensor = _int_tensor(key, value) if key == "qweight" else to_tensor(key, value)
            dim = dims[key]
            out[key] = tensor if dim is None or self.tp_size == 1 else _narrow(tensor, self.tp_rank, self.tp_size, dim)
        return out

    def _random_values(self, local_name: str, noise: torch.Tensor) -> torch.Tensor:
        """init_random_: integers over the whole range, scales making the weights about N(0, std) in size."""
        qmax = INT8_MAX if self.quant_mode is QuantMode.INT8 else INT4_MAX
        if local_name == "scales":
            return noise.abs() * (3.0 / qmax)
        if local_name != "qweight":
            return noise
        q = torch.round(noise / noise.abs().amax().clamp_min(1e-30) * qmax)
        if self.quant_mode is QuantMode.INT8:
            return q
        return pack_int4(torch.stack((q, -q.roll(1, dims=-1)), dim=-1).flatten(-2).to(torch.int8))

    # ------------------------------------------------------------------------------------------ forward

    def _check(self, x: torch.Tensor) -> None:
        check_input(type(self).__name__, x, ndim=None, last=self.local_shape[1], dtype=self.dtype)

    def extra_repr(self) -> str:
        tp = f", tp={self.tp_rank}/{self.tp_size}" if self.tp_size > 1 else ""
        group = f", group_size={self.group_size}" if self.group_size else ""
        return (f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}, "
                f"quant_mode={self.quant_mode.value!r}{group}{tp}")


class WeightOnlyQuantColumnLinear(WeightOnlyQuantLinear):
    """Output features split across ranks; ``gather_output`` concatenates the shards after the matmul."""

    parallel = "column"

    def __init__(self, in_features: int, out_features: int, bias: bool = True, *, gather_output: bool = True, **kw):
        tp_size = positive("tp_size", kw.get("tp_size", 1))
        if out_features % tp_size:
            raise ValueError(f"WeightOnlyQuantColumnLinear: out_features={out_features} is not divisible by "
                             f"tp_size={tp_size}")
        super().__init__(in_features, out_features, bias, **kw)
        self.gather_output = gather_output

    def _local_shape(self, in_features, out_features, tp_size):
        return out_features // tp_size, in_features

    def _local_bias(self, out_features, tp_size):
        return out_features // tp_size

    def _split_dims(self):
        return {"qweight": 0, "scales": 0, "bias": 0}



class WeightOnlyQuantRowLinear(WeightOnlyQuantLinear):
    """Input features split across ranks; partial products are summed (all-reduce), then the bias added once."""

    parallel = "row"

    def __init__(self, in_features: int, out_features: int, bias: bool = True, **kw):
        tp_size = positive("tp_size", kw.get("tp_size", 1))
        if in_features % tp_size:
            raise ValueError(f"WeightOnlyQuantRowLinear: in_features={in_features} is not divisible by "
                             f"tp_size={tp_size}")
        super().__init__(in_features, out_features, bias, **kw)

    def _local_shape(self, in_features, out_features, tp_size):
        return out_features, in_features // tp_size

    def _split_dims(self):
        return {"qweight": 1, "scales": None if self.quant_mode is QuantMode.INT8 else 1, "bias": None}



def column_linear(in_features: int, out_features: int, bias: bool = True, *, quant_mode=None,
                  group_size: int = DEFAULT_GROUP_SIZE, **kw) -> Module:
    """A ``ColumnLinear``, or with ``quant_mode`` ("int8" / "int4") a ``WeightOnlyQuantColumnLinear``."""
    if quant_mode is None:
        return ColumnLinear(in_features, out_features, bias, **kw)
    return WeightOnlyQuantColumnLinear(in_features, out_features, bias, quant_mode=quant_mode,
                                       group_size=group_size, **kw)


def row_linear(in_features: int, out_features: int, bias: bool = True, *, quant_mode=None,
               group_size: int = DEFAULT_GROUP_SIZE, **kw) -> Module:
    """A ``RowLinear``, or with ``quant_mode`` ("int8" / "int4") a ``WeightOnlyQuantRowLinear``."""
    if quant_mode is None:
        return RowLinear(in_features, out_features, bias, **kw)
    return WeightOnlyQuantRowLinear(in_features, out_features, bias, quant_mode=quant_mode, group_size=group_size,
                                    **kw)


__all__ = ["WeightOnlyQuantColumnLinear", "WeightOnlyQuantLinear", "WeightOnlyQuantRowLinear", "column_linear",
           "row_linear"]
