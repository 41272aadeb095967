"""The op backend every layer computes through: one implementation of each op, chosen in one place.

A layer's ``forward`` (``Linear``, ``LayerNorm``, ``MLP``, ``Embedding``, ``Attention``, ``CrossAttention``) takes
``backend=`` (default ``TORCH_BACKEND``) and calls the ops below; a model passes one backend to every layer it
calls. ``TORCH_BACKEND`` is plain PyTorch (``kernels.reference``): LayerNorm statistics in float32, then the product
in the weight dtype, GELU and the residual add after the rounding of each op. ``KernelBackend(kernels.ops, ...)``
runs the same calls on the fused Triton kernels (LayerNorm in the product's prologue, GELU and the residual in its
epilogue, attention over the static caches), which a caller may capture in CUDA graphs; products of more rows than
the kernels' ``MAX_M`` (prompts, an encoder) go to ``reference``.

Activations are row-major ``[m, d]`` with ``m = batch * tokens``.

Quantized layers and caches use the same ops: a weight-only quantized Linear's weight handling
(``op_weight()``) gives a ``QuantizedWeight`` and an int8 cache hands out ``QuantizedKV``s; ``KernelBackend``
routes those to the kernel module's ``weight_only_linear`` / ``self_attention_int8`` / ``cross_attention_int8``
(``reference``'s where the module has none). ``ops`` has all three: the linear dequantizes the weight block it
streams, the attention ops quantize the new K/V and dequantize the tiles they read, all in registers, so no step
dequantizes a whole weight or cache.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Optional, Protocol

import torch
import torch.nn.functional as F

from .kernels import reference
from .quantization import QuantizedKV, QuantizedWeight

if TYPE_CHECKING:
    from .normalization import LayerNorm


class OpBackend(Protocol):
    """What a layer's forward may call. Shapes: x [m, k], weight [n, k] (``Linear``'s [out, in]; a float tensor or
    a ``QuantizedWeight``), caches as noted (float tensors, or ``QuantizedKV`` of an int8 cache)."""

    def linear(self, x: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor] = None, *,
               ln: Optional["LayerNorm"] = None, gelu: bool = False, residual: Optional[torch.Tensor] = None,
               out_dtype: Optional[torch.dtype] = None) -> torch.Tensor:
        """act(LN?(x) @ weight^T + bias) (+ residual [m, n]) -> [m, n]."""

    def add_layer_norm(self, y: torch.Tensor, x: Optional[torch.Tensor],
                       ln: "LayerNorm") -> tuple[torch.Tensor, torch.Tensor]:
        """Residual stream step: ``x' = x + y`` (``y`` alone when x is None) -> ``(LN(x') [m, d], x')``."""

    def embed(self, tokens: torch.Tensor, pos: torch.Tensor, emb: torch.Tensor, pemb: torch.Tensor) -> torch.Tensor:
        """tokens [b, t], pos [t] or [b, t] -> emb[tokens] + pemb[pos] as [b*t, d]."""

    def attention(self, qkv: torch.Tensor, b: int, heads: int, causal: bool = False) -> torch.Tensor:
        """Attention within each of ``b`` sequences (no cache; ``causal`` masks the future): qkv [b*s, 3*d] ->
        [b*s, d]."""

    def self_attention(self, qkv: torch.Tensor, k_cache: torch.Tensor, v_cache: torch.Tensor, pos: torch.Tensor,
                       t: int) -> torch.Tensor:
        """qkv [b*t, 3*d]; caches [rows, heads, L, hd] (new K/V written at ``pos`` first) -> [b*t, d]."""

    def cross_attention(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, t: int,
                        group: int) -> torch.Tensor:
        """q [b*t, d] over k/v [a, heads, S, hd]; audio a serves rows a*group .. a*group+group-1 -> [b*t, d]."""


def _ln(norm: Optional["LayerNorm"]):
    return None if norm is None else (norm.weight, norm.bias, norm.eps)


class KernelBackend:
    """``OpBackend`` on a kernel module with ``reference``'s signatures (``reference`` itself, or the Triton
    ``trtllm_ext.kernels.ops``). ``pdl``: programmatic dependent launch level for the Triton launchers;
    ``workspace``: the split-K / flash-decoding partials and counters, kept per captured step shape;
    products of more rows than the module's ``MAX_M`` (prompts, the encoder) go through ``reference``."""

    def __init__(self, kernels=reference, *, pdl: int = 0, cross_chunk: int = 128,
                 workspace: Optional[dict] = None):
        self.kernels, self.pdl, self.cross_chunk = kernels, pdl, cross_chunk
        self.max_rows = getattr(kernels, "MAX_M", None)
        self.workspace = {} if workspace is None else workspace

    def _kernel(self, name: str, m: int = 0):
        fused = self.max_rows is None or m <= self.max_rows
        return getattr(self.kernels if fused else reference, name, None) or getattr(reference, name)

    def linear(self, x, weight, bias=None, *, ln=None, gelu=False, residual=None, out_dtype=None):
        kw = dict(ln=_ln(ln), gelu=gelu, residual=residual, out_dtype=out_dtype, pdl=self.pdl, workspace=self.workspace)
        if isinstance(weight, QuantizedWeight):
            fn = self._kernel("weight_only_linear")  # any row count: ops dequantizes once beyond MAX_M rows
            return fn(x, weight.qweight, weight.scales, bias, mode=weight.mode.value, group_size=weight.group_size,
                      **kw)
        return self._kernel("fused_linear", x.shape[0])(x, weight, bias, **kw)

    def add_layer_norm(self, y, x, ln):
        if x is None:
            return self.kernels.layer_norm(y, *_ln(ln), pdl=self.pdl), y
        h = self.kernels.layer_norm(y, *_ln(ln), residual=x, x_out=x, pdl=self.pdl)  # x updated in place
        return h, x

    def embed(self, tokens, pos, emb, pemb):
        return self.kernels.embed(tokens, pos, emb, pemb, pdl=self.pdl)

    def attention(self, qkv, b, heads, causal=False):
        m, d = qkv.shape[0], qkv.shape[1] // 3
        q, k, v = qkv.view(b, m // b, 3, heads, d // heads).permute(2, 0, 3, 1, 4)
        return F.scaled_dot_product_attention(q, k, v, is_causal=causal).transpose(1, 2).reshape(m, d)

    def self_attention(self, qkv, k_cache, v_cache, pos, t):
        if isinstance(k_cache, QuantizedKV):
            return self._kernel("self_attention_int8")(qkv, k_cache.values, v_cache.values, pos, t,
                                                       k_scale=k_cache.scales, v_scale=v_cache.scales, pdl=self.pdl)
        return self.kernels.self_attention(qkv, k_cache, v_cache, pos, t, pdl=self.pdl)

    def cross_attention(self, q, k, v, t, group):
        kw = dict(pdl=self.pdl, chunk=self.cross_chunk, workspace=self.workspace)
        if isinstance(k, QuantizedKV):
            return self._kernel("cross_attention_int8")(q, k.values, v.values, t, group, k_scale=k.scales,
                                                        v_scale=v.scales, **kw)
        return self.kernels.cross_attention(q, k, v, t, group, **kw)


TORCH_BACKEND = KernelBackend(reference)
