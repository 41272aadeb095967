"""Token embedding that doubles as the tied output projection."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from .module import Module, check_input, declare, positive


class Embedding(Module):
    """``ids [...] (int) -> [..., dim]``; ``logits(x [..., dim]) -> [..., num_embeddings]`` = x @ weight^T."""

    def __init__(self, num_embeddings: int, embedding_dim: int, *, dtype: torch.dtype = torch.float32, device=None):
        super().__init__()
        positive("num_embeddings", num_embeddings)
        positive("embedding_dim", embedding_dim)
        self.num_embeddings, self.embedding_dim = num_embeddings, embedding_dim
        self.weight = declare(num_embeddings, embedding_dim, dtype=dtype, device=device)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        if not isinstance(ids, torch.Tensor) or ids.dtype not in (torch.int32, torch.int64):
            raise ValueError(f"Embedding: ids must be an int32/int64 tensor, got "
                             f"{getattr(ids, 'dtype', type(ids).__name__)}")
        return F.embedding(ids, self.weight)

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """Tied output projection in the activation dtype: [..., dim] -> [..., num_embeddings]."""
        check_input("Embedding.logits", x, ndim=None, last=self.embedding_dim, dtype=self.weight.dtype)
        return F.linear(x, self.weight)

    def extra_repr(self) -> str:
        return f"{self.num_embeddings}, {self.embedding_dim}"
