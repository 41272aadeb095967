"""Linear layers in TensorRT-LLM's layout: weight [out_features, in_features] (``y = x @ W^T + b``, transB).

Tensor parallelism follows TensorRT-LLM: ``ColumnLinear`` splits the output features (weight dim 0, bias
dim 0) across ``tp_size`` ranks, ``RowLinear`` splits the input features (weight dim 1; the bias is added
once, after the all-reduce). With ``tp_size == 1`` (the default) both are plain ``Linear`` layers.

The product runs on an op backend (``backend.py``; plain PyTorch by default) with the fusions it offers: a
LayerNorm prologue (``ln=``), a GELU and a residual add in the epilogue, another output dtype. What the backend
multiplies by is the layer's weight handling, ``op_weight()``: the float weight here; a weight-only quantized
layer (``quant_linear``) overrides it and shares this forward (``LinearForward``).
"""
from __future__ import annotations

from typing import Mapping

import torch
import torch.nn.functional as F

from .backend import TORCH_BACKEND, OpBackend
from .module import ArrayLike, Module, check_input, declare, positive, to_tensor


class LinearForward:
    """The forward of the float and the weight-only quantized Linear families: ``x [..., K] -> [..., N]`` =
    act(LN?(x) @ op_weight()^T + bias) (+ residual [..., N]), on ``backend``, then tensor parallelism's collective
    (``parallel``: None, "column" or "row"). Needs ``_check``, ``op_weight``, ``bias``, ``tp_size``, ``tp_group``
    (and ``gather_output`` for "column") from the layer."""

    parallel: str | None = None

    def op_weight(self):
        """What the backend multiplies by (the weight handling): the float weight ``[N, K]``."""
        return self.weight

    def forward(self, x: torch.Tensor, *, ln=None, gelu: bool = False, residual: torch.Tensor | None = None,
                out_dtype: torch.dtype | None = None, backend: OpBackend = TORCH_BACKEND) -> torch.Tensor:
        self._check(x)
        x2 = x.reshape(-1, x.shape[-1])
        r2 = None if residual is None else residual.reshape(x2.shape[0], -1)
        fused = dict(ln=ln, gelu=gelu, out_dtype=out_dtype)
        if self.tp_size == 1 or (self.parallel == "column" and not self.gather_output):
            y = backend.linear(x2, self.op_weight(), self.bias, residual=r2, **fused)
        elif self.parallel == "column":
            y = gather_columns(type(self).__name__, backend.linear(x2, self.op_weight(), self.bias, **fused),
                               self.tp_size, self.tp_group)
            y = y if r2 is None else r2 + y
        else:
            y = self._row_parallel(backend, x2, r2, **fused)
        return y.view(*x.shape[:-1], y.shape[-1])

    def _row_parallel(self, backend: OpBackend, x2, r2, *, ln, gelu, out_dtype) -> torch.Tensor:
        if ln is not None:
            raise ValueError(f"{type(self).__name__}: a LayerNorm prologue needs the whole input, not a "
                             f"1/{self.tp_size} slice")
        y = reduce_rows(type(self).__name__, backend.linear(x2, self.op_weight(), None, out_dtype=out_dtype),
                        self.bias, self.tp_group)
        y = F.gelu(y) if gelu else y
        return y if r2 is None else r2 + y

    def forward_local(self, x: torch.Tensor, *, backend: OpBackend = TORCH_BACKEND) -> torch.Tensor:
        """This rank's part, before any collective: a row-parallel layer's partial product has no bias (it belongs
        after the all-reduce); otherwise equal to ``forward`` when tp_size == 1."""
        self._check(x)
        bias = None if self.parallel == "row" else self.bias
        y = backend.linear(x.reshape(-1, x.shape[-1]), self.op_weight(), bias)
        return y.view(*x.shape[:-1], y.shape[-1])


def tp_shard(value: ArrayLike, rank: int, world: int, dim: int) -> torch.Tensor:
    """The ``rank``-th of ``world`` equal slices of ``value`` along ``dim``, as an owned contiguous tensor."""
    tensor = to_tensor("shard", value)
    positive("tp world size", world)
    if not 0 <= rank < world:
        raise ValueError(f"tp rank must be in [0, {world}), got {rank}")
    if tensor.shape[dim] % world:
        raise ValueError(f"dimension {dim} of shape {tuple(tensor.shape)} is not divisible by tp size {world}")
    size = tensor.shape[dim] // world
    return tensor.narrow(dim, rank * size, size).contiguous().clone()


class Linear(LinearForward, Module):
    """``x [..., in_features] -> [..., out_features]``; weight [out, in], bias [out]."""

    #: which dim of (weight, bias) a tensor-parallel split cuts; None: replicated
    tp_split_dims: dict[str, int | None] = {"weight": None, "bias": None}

    def __init__(self, in_features: int, out_features: int, bias: bool = True, *,
                 dtype: torch.dtype = torch.float32, device=None, tp_size: int = 1, tp_rank: int = 0, tp_group=None):
        super().__init__()
        positive("in_features", in_features)
        positive("out_features", out_features)
        positive("tp_size", tp_size)
        if not 0 <= tp_rank < tp_size:
            raise ValueError(f"tp_rank must be in [0, {tp_size}), got {tp_rank}")
        if type(self) is Linear and tp_size != 1:
            raise ValueError("Linear is not split across ranks; use ColumnLinear or RowLinear for tp_size > 1")
        self.in_features, self.out_features = in_features, out_features
        self.tp_size, self.tp_rank, self.tp_group = tp_size, tp_rank, tp_group
        local_out, local_in = self._local_shape(in_features, out_features, tp_size)
        self.weight = declare(local_out, local_in, dtype=dtype, device=device)
        self.bias = declare(self._local_bias(out_features, tp_size), dtype=dtype, device=device) if bias else None

    def _local_shape(self, in_features: int, out_features: int, tp_size: int) -> tuple[int, int]:
        return out_features, in_features

    def _local_bias(self, out_features: int, tp_size: int) -> int:
        return out_features

    def _transform_weight(self, local_name: str, value: torch.Tensor, layout: str) -> torch.Tensor:
        if local_name == "weight" and layout == "in_out":
            if value.dim() != 2:
                raise ValueError(f"{type(self).__name__}: weight must be 2-D, got shape {tuple(value.shape)}")
            return value.t()
        return value

    def shard_weights(self, full: Mapping[str, ArrayLike], *, layout: str = "out_in") -> dict[str, torch.Tensor]:
        """This rank's slice of full (unsplit) weights, in the stored [out, in] layout."""
        out = {}
        for name, value in full.items():
            tensor = self._transform_weight(name, to_tensor(name, value), layout)
            dim = self.tp_split_dims.get(name)
            out[name] = tensor if dim is None or self.tp_size == 1 else tp_shard(tensor, self.tp_rank, self.tp_size, dim)
        return out

    def _check(self, x: torch.Tensor) -> None:
        check_input(type(self).__name__, x, ndim=None, last=self.weight.shape[1], dtype=self.weight.dtype)

    def extra_repr(self) -> str:
        tp = f", tp={self.tp_rank}/{self.tp_size}" if self.tp_size > 1 else ""
        return f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}{tp}"


def _require_dist(layer: str):
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()):
        raise RuntimeError(f"{layer} with tp_size > 1 needs torch.distributed to be initialized")
    return dist


def gather_columns(layer: str, y: torch.Tensor, tp_size: int, group) -> torch.Tensor:
    """Column parallelism's collective: every rank's output shard [..., N / tp] -> [..., N] (all-gather)."""
    parts = [torch.empty_like(y) for _ in range(tp_size)]
    _require_dist(layer).all_gather(parts, y.contiguous(), group=group)
    return torch.cat(parts, dim=-1)


def reduce_rows(layer: str, y: torch.Tensor, bias, group) -> torch.Tensor:
    """Row parallelism's collective: the ranks' partial products summed in place (all-reduce), the bias added once."""
    _require_dist(layer).all_reduce(y, group=group)
    return y if bias is None else y + bias


class ColumnLinear(Linear):
    """Output features split across ranks; ``gather_output`` concatenates the shards after the matmul."""

    tp_split_dims = {"weight": 0, "bias": 0}
    parallel = "column"

    def __init__(self, in_features: int, out_features: int, bias: bool = True, *, gather_output: bool = True, **kw):
        tp_size = positive("tp_size", kw.get("tp_size", 1))
        if out_features % tp_size:
            raise ValueError(f"ColumnLinear: out_features={out_features} is not divisible by tp_size={tp_size}")
        super().__init__(in_features, out_features, bias, **kw)
        self.gather_output = gather_output

    def _local_shape(self, in_features, out_features, tp_size):
        return out_features // tp_size, in_features

    def _local_bias(self, out_features, tp_size):
        return out_features // tp_size


class RowLinear(Linear):
    """Input features split across ranks; partial products are summed (all-reduce), then the bias added once."""

    tp_split_dims = {"weight": 1, "bias": None}
    parallel = "row"

    def __init__(self, in_features: int, out_features: int, bias: bool = True, **kw):
        tp_size = positive("tp_size", kw.get("tp_size", 1))
        if in_features % tp_size:
            raise ValueError(f"RowLinear: in_features={in_features} is not divisible by tp_size={tp_size}")
        super().__init__(in_features, out_features, bias, **kw)

    def _local_shape(self, in_features, out_features, tp_size):
        return out_features, in_features // tp_size
