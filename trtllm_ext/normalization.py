"""LayerNorm that always computes in float32, whatever the activation dtype (Whisper's numerics)."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from .module import Module, check_input, declare, positive


class LayerNorm(Module):
    """``x [..., normalized_shape] -> same shape and dtype``; statistics, scale and shift in float32.

    The parameters are stored in float32 by default (``param_dtype``): they are tiny and fp16 storage would
    round them before the fp32 arithmetic.
    """

    def __init__(self, normalized_shape: int, eps: float = 1e-5, *, dtype: torch.dtype = torch.float32,
                 param_dtype: torch.dtype = torch.float32, device=None):
        super().__init__()
        positive("normalized_shape", normalized_shape)
        if not eps > 0:
            raise ValueError(f"eps must be positive, got {eps!r}")
        self.normalized_shape, self.eps, self.dtype = normalized_shape, float(eps), dtype
        self.weight = declare(normalized_shape, dtype=param_dtype, device=device)
        self.bias = declare(normalized_shape, dtype=param_dtype, device=device)

    def _random_values(self, local_name: str, noise: torch.Tensor) -> torch.Tensor:
        return noise + 1.0 if local_name == "weight" else noise

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_input("LayerNorm", x, ndim=None, last=self.normalized_shape, dtype=self.dtype)
        y = F.layer_norm(x.float(), (self.normalized_shape,), self.weight.float(), self.bias.float(), self.eps)
        return y.to(x.dtype)

    def extra_repr(self) -> str:
        return f"{self.normalized_shape}, eps={self.eps}, dtype={self.dtype}"
