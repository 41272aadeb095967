"""Token embedding that doubles as the tied output projection, on an op backend (``backend.py``)."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from .backend import TORCH_BACKEND, OpBackend
from .kernels import cpu_int8
from .module import Module, check_input, declare, positive
from .quantization import QuantizedWeight, as_quant_mode, quantize_weight


class Embedding(Module):
    """``ids [...] (int) -> [..., dim]``; ``logits(x [..., dim]) -> [..., num_embeddings]`` = x @ weight^T.

    ``int8_logits``: the logits' weight handling (``logits_weight``) projects float32 CPU activations through an
    int8 copy of the table, quantized per row on first use and again after the table changes (not saved; the
    table itself stays float), so a vocabulary product runs on the CPU's int8 kernel (``kernels.cpu_int8``)."""

    def __init__(self, num_embeddings: int, embedding_dim: int, *, dtype: torch.dtype = torch.float32, device=None,
                 int8_logits: bool = False):
        super().__init__()
        positive("num_embeddings", num_embeddings)
        positive("embedding_dim", embedding_dim)
        self.num_embeddings, self.embedding_dim = num_embeddings, embedding_dim
        self.weight = declare(num_embeddings, embedding_dim, dtype=dtype, device=device)
        self.int8_logits = int8_logits
        self._int8: tuple | None = None  # (table version, QuantizedWeight)

    def forward(self, ids: torch.Tensor, positions: torch.Tensor | None = None,
                position_table: torch.Tensor | None = None, *, backend: OpBackend = TORCH_BACKEND) -> torch.Tensor:
        """ids [...] -> weight[ids] [..., dim]; with ``positions`` ([t] shared, or [b, t]) for ids [b, t], plus
        ``position_table[positions]`` ([n_pos, dim]) in one op -> [b, t, dim]."""
        if not isinstance(ids, torch.Tensor) or ids.dtype not in (torch.int32, torch.int64):
            raise ValueError(f"Embedding: ids must be an int32/int64 tensor, got "
                             f"{getattr(ids, 'dtype', type(ids).__name__)}")
        if positions is None:
            return F.embedding(ids, self.weight)
        if ids.dim() != 2 or position_table is None or position_table.shape[-1] != self.embedding_dim:
            raise ValueError(f"Embedding: positions need ids [batch, length] and a position_table [n, "
                             f"{self.embedding_dim}]; got ids {tuple(ids.shape)}, table "
                             f"{tuple(getattr(position_table, 'shape', ()))}")
        return backend.embed(ids, positions, self.weight, position_table).view(*ids.shape, self.embedding_dim)

    def logits_weight(self):
        """The logits' weight [num_embeddings, dim]: the table, or its int8 copy (see the class docstring)."""
        w = self.weight
        if not (self.int8_logits and cpu_int8.kernel and w.device.type == "cpu" and w.dtype == torch.float32):
            return w
        version = (w._version, w.data_ptr())
        if self._int8 is None or self._int8[0] != version:
            with torch.inference_mode(False):  # a normal tensor whatever mode the first caller is in: cpu_int8's
                qweight, scales = quantize_weight(w.detach(), "int8")  # cache reads its version counter
            self._int8 = (version, QuantizedWeight(qweight, scales, as_quant_mode("int8"), None, w.shape[1]))
        return self._int8[1]

    def logits(self, x: torch.Tensor, *, ln=None, out_dtype: torch.dtype | None = None,
               backend: OpBackend = TORCH_BACKEND) -> torch.Tensor:
        """Tied output projection: LN?(x) [..., dim] -> [..., num_embeddings] in ``out_dtype`` (default: x's)."""
        check_input("Embedding.logits", x, ndim=None, last=self.embedding_dim, dtype=self.weight.dtype)
        y = backend.linear(x.reshape(-1, self.embedding_dim), self.logits_weight(), None, ln=ln, out_dtype=out_dtype)
        return y.view(*x.shape[:-1], self.num_embeddings)

    def extra_repr(self) -> str:
        return f"{self.num_embeddings}, {self.embedding_dim}"
