"""LayerNorm that always computes in float32, whatever the activation dtype (Whisper's numerics)."""
from __future__ import annotations

import torch

from .backend import TORCH_BACKEND, OpBackend
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

    def forward(self, x: torch.Tensor, residual: torch.Tensor | None = None, *,
                backend: OpBackend = TORCH_BACKEND):
        """``LN(x)``; with ``residual`` (the residual stream, same shape, contiguous) the add is fused:
        ``residual += x`` in place, and ``(LN(residual), residual)`` is returned."""
        check_input("LayerNorm", x, ndim=None, last=self.normalized_shape, dtype=self.dtype)
        x2 = x.reshape(-1, self.normalized_shape)
        if residual is None:
            return backend.add_layer_norm(x2, None, self)[0].view(x.shape)
        if residual.shape != x.shape or not residual.is_contiguous():
            raise ValueError(f"LayerNorm: residual must be a contiguous tensor of x's shape {tuple(x.shape)}, got "
                             f"{tuple(residual.shape)}")
        h, _ = backend.add_layer_norm(x2, residual.view(-1, self.normalized_shape), self)
        return h.view(x.shape), residual

    def extra_repr(self) -> str:
        return f"{self.normalized_shape}, eps={self.eps}, dtype={self.dtype}"
