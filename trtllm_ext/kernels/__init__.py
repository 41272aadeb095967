"""Fused GPU kernels (Triton) for small-batch inference, with plain-PyTorch references.

Nothing here is imported by ``trtllm_ext`` itself: CPU-only installs and CI never need Triton. Each
kernel module imports Triton at import time, so import them only after ``available()`` says yes:

    from trtllm_ext import kernels
    if kernels.available(device):
        from trtllm_ext.kernels import ops          # Triton launchers
    from trtllm_ext.kernels import reference        # same functions in plain PyTorch (any device)

Modules (shapes in their docstrings; ``ops`` launches each kernel under the name ``reference`` uses):
* ``linear``: ``fused_linear_kernel`` / ``fused_linear_loop_kernel``: y = act(LN?(x) @ W^T + b) (+ residual) for
  M <= ``ops.MAX_M`` (32) rows, weights streamed once (``ops.fused_linear``); ``layer_norm_kernel``: residual add
  + LayerNorm (fp32 statistics) in one pass (``ops.layer_norm``); ``embed_kernel``: token + positional
  embedding (``ops.embed``);
* ``attention``: ``self_attention_kernel`` writes new K/V into a static cache and attends over it
  (``ops.self_attention``); ``cross_attention_kernel`` (+ ``cross_attention_combine_kernel``): split-S
  flash-decoding over a fixed cross cache, rows grouped by beam (``ops.cross_attention``); both also on an int8
  cache with per token-head float32 scales, quantized on write and dequantized in registers
  (``ops.self_attention_int8`` / ``ops.cross_attention_int8``).
"""
from __future__ import annotations

import importlib.util
import os

import torch


def available(device: torch.device | str | None = None) -> bool:
    """True when Triton is importable and ``device`` (default: the current CUDA device) is a CUDA GPU."""
    if os.environ.get("TRTLLM_EXT_DISABLE_TRITON", "") not in ("", "0"):
        return False
    if importlib.util.find_spec("triton") is None:
        return False
    if device is not None and torch.device(device).type != "cuda":
        return False
    return torch.cuda.is_available()

