"""Linear layers in TensorRT-LLM's layout: weight [out_features, in_features] (``y = x @ W^T + b``, transB).

Tensor parallelism follows TensorRT-LLM: ``ColumnLinear`` splits the output features (weight dim 0, bias
dim 0) across ``tp_size`` ranks, ``RowLinear`` splits the input features (weight dim 1; the bias is added
once, after the all-reduce). With ``tp_size == 1`` (the default) both are plain ``Linear`` layers.
"""
from __future__ import annotations

from typing import Mapping

import torch
import torch.nn.functional as F

from .module import ArrayLike, Module, check_input, declare, positive, to_tensor


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


class Linear(Module):
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

    def forward_local(self, x: torch.Tensor) -> torch.Tensor:
        """This rank's part, before any collective (equal to ``forward`` when tp_size == 1)."""
        self._check(x)
        return F.linear(x, self.weight, self.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_local(x)

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

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.forward_local(x)
        if self.tp_size == 1 or not self.gather_output:
            return y
        return gather_columns("ColumnLinear", y, self.tp_size, self.tp_group)


class RowLinear(Linear):
    """Input features split across ranks; partial products are summed (all-reduce), then the bias added once."""

    tp_split_dims = {"weight": 1, "bias": None}

    def __init__(self, in_features: int, out_features: int, bias: bool = True, **kw):
        tp_size = positive("tp_size", kw.get("tp_size", 1))
        if in_features % tp_size:
            raise ValueError(f"RowLinear: in_features={in_features} is not divisible by tp_size={tp_size}")
        super().__init__(in_features, out_features, bias, **kw)

    def _local_shape(self, in_features, out_features, tp_size):
        return out_features, in_features // tp_size

    def forward_local(self, x: torch.Tensor) -> torch.Tensor:
        """The partial product of this rank's input slice, without the bias (it belongs after the reduce)."""
        self._check(x)
        return F.linear(x, self.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.tp_size == 1:
            self._check(x)
            return F.linear(x, self.weight, self.bias)
        y = self.forward_local(x)
        return reduce_rows("RowLinear", y, self.bias, self.tp_group)
