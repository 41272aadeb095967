"""Conv1d with TensorRT-LLM's declared layout: weight (out, in/groups, k), bias (out)."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from .module import Module, check_input, declare, positive


class Conv1d(Module):
    """1-D convolution over ``x`` of shape [batch, in_channels, length] -> [batch, out_channels, length'].

    length' = floor((length + 2*padding - dilation*(kernel_size-1) - 1) / stride) + 1.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1, padding: int = 0,
                 dilation: int = 1, groups: int = 1, bias: bool = True, *, dtype: torch.dtype = torch.float32,
                 device=None):
        super().__init__()
        for name, value in (("in_channels", in_channels), ("out_channels", out_channels),
                            ("kernel_size", kernel_size), ("stride", stride), ("dilation", dilation),
                            ("groups", groups)):
            positive(name, value)
        if not isinstance(padding, int) or isinstance(padding, bool) or padding < 0:
            raise ValueError(f"padding must be a non-negative integer, got {padding!r}")
        if in_channels % groups or out_channels % groups:
            raise ValueError(f"groups={groups} must divide in_channels={in_channels} and out_channels={out_channels}")
        self.in_channels, self.out_channels, self.kernel_size = in_channels, out_channels, kernel_size
        self.stride, self.padding, self.dilation, self.groups = stride, padding, dilation, groups
        self.weight = declare(out_channels, in_channels // groups, kernel_size, dtype=dtype, device=device)
        self.bias = declare(out_channels, dtype=dtype, device=device) if bias else None

    def output_length(self, length: int) -> int:
        return (length + 2 * self.padding - self.dilation * (self.kernel_size - 1) - 1) // self.stride + 1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_input("Conv1d", x, ndim=3, last=None, dtype=self.weight.dtype)
        if x.shape[1] != self.in_channels:
            raise ValueError(f"Conv1d: expected {self.in_channels} input channels, got shape {tuple(x.shape)}")
        if self.output_length(x.shape[2]) <= 0:
            raise ValueError(f"Conv1d: input length {x.shape[2]} is too short for kernel {self.kernel_size}, "
                             f"dilation {self.dilation}, padding {self.padding}")
        return F.conv1d(x, self.weight, self.bias, self.stride, self.padding, self.dilation, self.groups)

    def extra_repr(self) -> str:
        return (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}, "
                f"padding={self.padding}, dilation={self.dilation}, groups={self.groups}, bias={self.bias is not None}")
