"""Cross-attention scores of chosen heads, collected during one decoder pass (word alignment).

    scores = CrossScores([(layer, head), ...])
    decoder.compute(ops, caches, tokens, pos, 1, scores=scores)   # rows = audio rows (group 1)
    scores.stacked()                                              # [rows, n_heads, t, n_audio_ctx] float32

The scores are the attention logits before the softmax, q.k / sqrt(head_dim), in float32 whatever the model's
dtype (the alignment normalises them; a half-precision product would add rounding the fp32 model does not have).
"""
from __future__ import annotations

from typing import Sequence

import torch


class CrossScores:
    """``heads``: (layer, head) pairs; ``record`` is called by ``WhisperDecoder.compute`` once per layer."""

    def __init__(self, heads: Sequence[tuple[int, int]]):
        self.heads = [(int(layer), int(head)) for layer, head in heads]
        if not self.heads:
            raise ValueError("CrossScores: no alignment heads given")
        self.by_layer: dict[int, list[int]] = {}
        for layer, head in self.heads:
            self.by_layer.setdefault(layer, []).append(head)
        self.found: dict[tuple[int, int], torch.Tensor] = {}

    def record(self, layer: int, q: torch.Tensor, k: torch.Tensor, t: int) -> None:
        """q [b*t, heads*hd] (the layer's cross-attention queries), k [a >= b, heads, S, hd] (row i over audio i)."""
        wanted = self.by_layer.get(layer)
        if not wanted:
            return
        n_head, hd = k.shape[1], k.shape[3]
        if max(wanted) >= n_head:
            raise ValueError(f"alignment head ({layer}, {max(wanted)}) does not exist: layer {layer} has {n_head} heads")
        b = q.shape[0] // t
        index = torch.tensor(wanted, device=q.device)
        qh = q.view(b, t, n_head, hd).index_select(2, index).transpose(1, 2).float()  # [b, h, t, hd]
        kh = k[:b].index_select(1, index).float()  # [b, h, S, hd]
        s = torch.matmul(qh, kh.transpose(-1, -2)) * hd ** -0.5  # [b, h, t, S]
        for j, head in enumerate(wanted):
            self.found[(layer, head)] = s[:, j]

    def stacked(self) -> torch.Tensor:
        """[b, n_heads, t, S] in the order of ``heads``."""
        missing = [h for h in self.heads if h not in self.found]
        if missing:
            raise ValueError(f"alignment heads {missing} name layers the decoder does not have")
        return torch.stack([self.found[h] for h in self.heads], dim=1)


__all__ = ["CrossScores"]
