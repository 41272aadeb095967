"""Fused GPU kernels (Triton) for small-batch inference, with plain-PyTorch references.

Nothing here is imported by ``trtllm_ext`` itself: CPU-only installs and CI never need Triton. Each
kernel module imports Triton at import time, so import them only after ``available()`` says yes:

    from trtllm_ext import kernels
    if kernels.available(device):
        from trtllm_ext.kernels import ops          # Triton launchers
    from trtllm_ext.kernels import reference        # same functions in plain PyTorch (any device)

Kernels (shapes in each module's docstrings):
* ``linear.fused_linear``: y = act(LN?(x) @ W^T + b) (+ residual) for M <= 64 rows, weights streamed once;
* ``norm.add_layer_norm`` / ``norm.layer_norm``: residual add + LayerNorm (fp32 statistics) in one pass;
* ``attention.self_attention_decode``: writes new K/V into a static cache and attends over it;
* ``attention.cross_attention_decode``: split-S flash-decoding over a fixed cross cache, rows grouped by beam.
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


def interpret_mode() -> bool:
    """True under ``TRITON_INTERPRET=1`` (kernels run on the CPU, for debugging)."""
    return os.environ.get("TRITON_INTERPRET", "") not in ("", "0")
