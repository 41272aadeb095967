"""Feed-forward block: ColumnLinear -> GELU -> RowLinear (names ``fc`` and ``proj`` as in TensorRT-LLM), on an op
backend (``backend.py``)."""
from __future__ import annotations

from typing import Mapping

import torch
import torch.nn.functional as F

from .backend import TORCH_BACKEND, OpBackend
from .module import ArrayLike, Module, positive
from .quant_linear import column_linear, row_linear
from .quantization import DEFAULT_GROUP_SIZE

_ACTIVATIONS = {"gelu": F.gelu, "gelu_tanh": lambda x: F.gelu(x, approximate="tanh"), "relu": F.relu}


class MLP(Module):
    """``x [..., hidden] -> [..., hidden]`` through ``ffn_hidden`` features; exact (erf) GELU by default;
    ``quant_mode`` ("int8" / "int4", with ``group_size``): both projections weight-only quantized."""

    def __init__(self, hidden_size: int, ffn_hidden_size: int, activation: str = "gelu", bias: bool = True, *,
                 dtype: torch.dtype = torch.float32, device=None, tp_size: int = 1, tp_rank: int = 0, tp_group=None,
                 quant_mode=None, group_size: int = DEFAULT_GROUP_SIZE):
        super().__init__()
        positive("hidden_size", hidden_size)
        positive("ffn_hidden_size", ffn_hidden_size)
        if activation not in _ACTIVATIONS:
            raise ValueError(f"activation must be one of {sorted(_ACTIVATIONS)}, got {activation!r}")
        tp = dict(dtype=dtype, device=device, tp_size=tp_size, tp_rank=tp_rank, tp_group=tp_group,
                  quant_mode=quant_mode, group_size=group_size)
        self.activation = activation
        self.fc = column_linear(hidden_size, ffn_hidden_size, bias, gather_output=False, **tp)
        self.proj = row_linear(ffn_hidden_size, hidden_size, bias, **tp)

    def shard_weights(self, full: Mapping[str, ArrayLike], *, layout: str = "out_in") -> dict[str, torch.Tensor]:
        """This rank's slice of full weights: fc split by output features, proj by input features."""
        out = {}
        for name, value in full.items():
            module_name, _, local = name.partition(".")
            if module_name not in ("fc", "proj"):
                raise ValueError(f"MLP: unknown weight name {name!r}")
            layer = getattr(self, module_name)
            out.update({f"{module_name}.{k}": v for k, v in layer.shard_weights({local: value}, layout=layout).items()})
        return out

    def forward(self, x: torch.Tensor, *, ln=None, residual: torch.Tensor | None = None,
                backend: OpBackend = TORCH_BACKEND) -> torch.Tensor:
        """proj(act(fc(LN?(x)))) (+ residual): a LayerNorm ``ln`` fused into fc's prologue, exact GELU into its
        epilogue (other activations run after it), the residual add into proj's epilogue."""
        fused = self.activation == "gelu"
        h = self.fc(x, ln=ln, gelu=fused, backend=backend)
        return self.proj(h if fused else _ACTIVATIONS[self.activation](h), residual=residual, backend=backend)
