"""Cross-attention scores of chosen heads, collected during one decoder pass (word alignment).

    scores = CrossScores([(layer, head), ...])
    decoder.compute(backend, caches, tokens, pos, 1, scores=scores)   # rows = audio rows (group 1)
    scores.stacked()                                              # [rows, n_heads, t, n_audio_ctx] float32

The scores are the attention logits before the softmax, q.k / sqrt(head_dim), in float32 whatever the model's
dtype (the alignment normalises them; a half-precision product would add rounding the fp32 model does not have):
each layer's ``CrossAttention`` computes them for the heads ``heads_of(layer)`` names (``score_heads``).
"""
from __future__ import annotations

from typing import Sequence

import torch


class CrossScores:
    """``heads``: (layer, head) pairs; ``WhisperDecoder.compute`` asks ``heads_of`` each layer and ``record``s what its cross-attention gives."""

    def __init__(self, heads: Sequence[tuple[int, int]]):
        self.heads = [(int(layer), int(head)) for layer, head in heads]
        if not self.heads:
            raise ValueError("CrossScores: no alignment heads given")
        self.by_layer: dict[int, list[int]] = {}
        for layer, head in self.heads:
            self.by_layer.setdefault(layer, []).append(head)
        self.found: dict[tuple[int, int], torch.Tensor] = {}

    def heads_of(self, layer: int) -> list[int] | None:
        """The heads of ``layer`` wanted (None: none)."""
        return self.by_layer.get(layer)

    def record(self, layer: int, scores: torch.Tensor) -> None:
        """scores [b, len(heads_of(layer)), t, S]: that layer's logits of its wanted heads, in their order."""
        for j, head in enumerate(self.by_layer[layer]):
            self.found[(layer, head)] = scores[:, j]

    def stacked(self) -> torch.Tensor:
        """[b, n_heads, t, S] in the order of ``heads``."""
        missing = [h for h in self.heads if h not in self.found]
        if missing:
            raise ValueError(f"alignment heads {missing} name layers the decoder does not have")
        return torch.stack([self.found[h] for h in self.heads], dim=1)


__all__ = ["CrossScores"]
