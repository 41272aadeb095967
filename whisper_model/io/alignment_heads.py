"""A checkpoint's alignment heads: the decoder cross-attention heads (layer, head) whose attention follows the
audio in time, which word timestamps align with.

Where each format keeps them: CTranslate2 ``config.json`` ``alignment_heads`` (pairs), Hugging Face
``generation_config.json`` ``alignment_heads`` (pairs), an openai-whisper ``.pt`` dict's ``alignment_heads``
(pairs, or a boolean mask [n_text_layer, n_text_head]). None when the checkpoint has none (openai-whisper's own
``.pt`` files do not: it keeps them in a table by model name).
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import torch

from ..config import ModelDimensions
from ..errors import CheckpointError
from .torchfile import peek_torch_file
from .weights import Source, locate

Heads = tuple[tuple[int, int], ...]
SIDECARS = {"ct2": "config.json", "hf": "generation_config.json"}


def parse_heads(value, dims: ModelDimensions, where: str) -> Heads:
    """``value``: [[layer, head], ...] or a boolean mask [n_text_layer, n_text_head] -> sorted (layer, head) pairs,
    each inside the decoder; ``CheckpointError`` naming ``where`` otherwise."""
    if isinstance(value, torch.Tensor) and value.dtype == torch.bool:
        if tuple(value.shape) != (dims.n_text_layer, dims.n_text_head):
            raise CheckpointError(f"{where}: alignment_heads mask has shape {tuple(value.shape)}, expected "
                                  f"[{dims.n_text_layer}, {dims.n_text_head}]")
        value = value.nonzero().tolist()
    ok = isinstance(value, (list, tuple)) and value and all(
        isinstance(p, (list, tuple)) and len(p) == 2 and all(isinstance(x, int) and not isinstance(x, bool)
                                                             for x in p) for p in value)
    if not ok:
        raise CheckpointError(f"{where}: alignment_heads must be a non-empty list of [layer, head] pairs, got "
                              f"{str(value)[:80]}")
    bad = [p for p in value if not (0 <= p[0] < dims.n_text_layer and 0 <= p[1] < dims.n_text_head)]
    if bad:
        raise CheckpointError(f"{where}: alignment head {list(bad[0])} is outside the decoder's "
                              f"{dims.n_text_layer} layers x {dims.n_text_head} heads")
    return tuple(sorted({(int(a), int(b)) for a, b in value}))


def default_heads(dims: ModelDimensions) -> Heads:
    """openai-whisper's choice for a model without known heads: every head of the last half of the layers."""
    return tuple((layer, head) for layer in range(dims.n_text_layer // 2, dims.n_text_layer)
                 for head in range(dims.n_text_head))


def read_alignment_heads(source: Source, dims: ModelDimensions) -> Optional[Heads]:
    """The alignment heads ``source`` (anything ``load_checkpoint`` takes) records, or None."""
    fmt, where = locate(source)
    if fmt == "openai":
        ckpt = peek_torch_file(where)
        value = ckpt.get("alignment_heads") if isinstance(ckpt, dict) else None
        return None if value is None else parse_heads(value, dims, str(where))
    sidecar = (where[0].parent if fmt == "ct2" else Path(where)) / SIDECARS[fmt]
    if not sidecar.is_file():
        return None
    try:
        value = json.loads(sidecar.read_text(encoding="utf-8")).get("alignment_heads")
    except (OSError, ValueError, AttributeError) as e:
        raise CheckpointError(f"{sidecar}: cannot read alignment_heads ({e})") from e
    return None if value is None else parse_heads(value, dims, str(sidecar))


__all__ = ["Heads", "default_heads", "parse_heads", "read_alignment_heads"]
