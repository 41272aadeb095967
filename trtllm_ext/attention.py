"""Self-attention over a static KV cache, and cross-attention whose K/V are computed once per audio.

Both use fused input projections in TensorRT-LLM's style (self: ``qkv`` [3*hidden, hidden], rows q, k, v;
cross: ``query`` [hidden, hidden] and ``kv`` [2*hidden, kv_hidden], rows k, v) and a ``RowLinear`` output
projection ``dense``. Models without a key bias (Whisper) store zeros in that part of the fused bias.
``quant_mode`` ("int8" / "int4", with ``group_size``) makes every projection a weight-only quantized layer.

The layers compute through an op backend (``backend.py``: plain PyTorch by default, or the Triton kernels) and
own no cache: a caller passes a ``KVCache`` (or ``Int8KVCache``) that it owns. Fusions the backends offer are
arguments: a LayerNorm ``ln`` applied to x in the input projection's prologue, a ``residual`` added in the output
projection's epilogue.
"""
from __future__ import annotations

import functools
from typing import Mapping, Sequence

import torch

from .backend import TORCH_BACKEND, OpBackend
from .kernels.reference import causal_mask  # noqa: F401  (re-exported by the package)
from .kv_cache import KVCache, check_input_pos
from .linear import tp_shard
from .module import ArrayLike, Module, check_input, positive, to_tensor
from .quant_linear import column_linear, row_linear
from .quantization import DEFAULT_GROUP_SIZE, dequantized


def _shard_fused(value: torch.Tensor, parts: int, rank: int, world: int) -> torch.Tensor:
    """Split each of the ``parts`` stacked blocks of a fused weight/bias (dim 0) across ranks, keep the order."""
    blocks = value.reshape(parts, value.shape[0] // parts, *value.shape[1:])
    return tp_shard(blocks, rank, world, dim=1).reshape(-1, *value.shape[1:])


class _AttentionBase(Module):
    def __init__(self, hidden_size: int, num_heads: int, tp_size: int):
        super().__init__()
        positive("hidden_size", hidden_size)
        positive("num_heads", num_heads)
        positive("tp_size", tp_size)
        if hidden_size % num_heads:
            raise ValueError(f"hidden_size={hidden_size} is not divisible by num_heads={num_heads}")
        if num_heads % tp_size:
            raise ValueError(f"num_heads={num_heads} is not divisible by tp_size={tp_size}")
        self.hidden_size, self.num_heads = hidden_size, num_heads
        self.head_dim = hidden_size // num_heads
        self.local_heads = num_heads // tp_size

    def _heads(self, x: torch.Tensor, parts: int) -> torch.Tensor:
        """[b, t, parts*local_heads*head_dim] -> [parts, b, local_heads, t, head_dim]."""
        b, t, _ = x.shape
        return x.view(b, t, parts, self.local_heads, self.head_dim).permute(2, 0, 3, 1, 4)

    def new_cache(self, max_batch: int, max_len: int, *, dtype: torch.dtype, device=None,
                  int8: bool = False) -> KVCache:
        """A cache for this layer's heads [max_batch, local_heads, max_len, head_dim] (``int8``: an
        ``Int8KVCache`` whose reads dequantize to ``dtype``)."""
        from .kv_cache_int8 import Int8KVCache

        kind = Int8KVCache if int8 else KVCache
        return kind(max_batch, self.local_heads, max_len, self.head_dim, dtype=dtype, device=device)

    def _shard_fused_weights(self, full: Mapping[str, ArrayLike], fused: dict[str, int], layout: str):
        out = {}
        for name, value in full.items():
            module_name, _, local = name.partition(".")
            layer = getattr(self, module_name, None)
            if not isinstance(layer, Module) or local not in dict(layer.named_parameters()):
                raise ValueError(f"{type(self).__name__}: unknown weight name {name!r}")
            tensor = layer._transform_weight(local, to_tensor(name, value), layout)
            if module_name in fused and layer.tp_size > 1:
                out[name] = _shard_fused(tensor, fused[module_name], layer.tp_rank, layer.tp_size)
            else:
                out.update({f"{module_name}.{k}": v for k, v in layer.shard_weights({local: tensor}).items()})
        return out


class Attention(_AttentionBase):
    """Multi-head self-attention. ``x [b, t, hidden] -> [b, t, hidden]``.

    Without a cache it attends over ``x`` itself (``causal`` masks the future). With ``cache`` (a ``KVCache`` of
    at least b rows) and ``input_pos`` int64 ``[t]`` (absolute positions of the ``t`` new tokens, shared by all
    rows) or ``[b, t]`` (row i's token j at ``input_pos[i, j]``; positions distinct within a row, in any order)
    every new K/V is first written into the cache, then each query attends over every cache position <= its own.
    """

    def __init__(self, hidden_size: int, num_heads: int, *, bias: bool = True, causal: bool = False,
                 dtype: torch.dtype = torch.float32, device=None, tp_size: int = 1, tp_rank: int = 0, tp_group=None,
                 quant_mode=None, group_size: int = DEFAULT_GROUP_SIZE):
        super().__init__(hidden_size, num_heads, tp_size)
        tp = dict(dtype=dtype, device=device, tp_size=tp_size, tp_rank=tp_rank, tp_group=tp_group,
                  quant_mode=quant_mode, group_size=group_size)
        self.causal = causal
        self.qkv = column_linear(hidden_size, 3 * hidden_size, bias, gather_output=False, **tp)
        self.dense = row_linear(hidden_size, hidden_size, bias, **tp)

    def shard_weights(self, full: Mapping[str, ArrayLike], *, layout: str = "out_in") -> dict[str, torch.Tensor]:
        """This rank's slice of full weights; q, k and v are each split by heads."""
        return self._shard_fused_weights(full, {"qkv": 3}, layout)

    def forward(self, x: torch.Tensor, input_pos: torch.Tensor | None = None, *, cache: KVCache | None = None,
                ln=None, residual: torch.Tensor | None = None, backend: OpBackend = TORCH_BACKEND) -> torch.Tensor:
        """dense(attention(qkv(LN?(x)))) (+ residual) -> [b, t, hidden]."""
        check_input("Attention", x, ndim=3, last=self.hidden_size, dtype=self.qkv.weight.dtype)
        b, t, _ = x.shape
        qkv = self.qkv(x, ln=ln, backend=backend).view(b * t, -1)
        if input_pos is None:
            if cache is not None:
                raise ValueError("Attention: a cache needs input_pos (the positions of the new tokens)")
            o = backend.attention(qkv, b, self.local_heads, causal=self.causal and t > 1)
        else:
            if cache is None:
                raise ValueError("Attention: input_pos given but no cache; pass cache=KVCache(...)")
            check_input_pos("Attention", input_pos, b, t)
            if b > cache.max_batch or t > cache.max_len:
                raise ValueError(f"Attention: {b} rows x {t} tokens do not fit a cache of {cache.max_batch} rows x "
                                 f"{cache.max_len} positions")
            o = backend.self_attention(qkv, *cache.kv(), input_pos, t)
        return self.dense(o.view(b, t, -1), residual=residual, backend=backend)


class CrossAttention(_AttentionBase):
    """Attention from ``x [b, t, hidden]`` to encoder states ``xa [a, s, kv_hidden]``.

    ``compute_kv(xa, cache)`` projects K/V once per audio into a cache; every later ``forward(x, cache=cache)``
    reuses them. ``forward(x, xa)`` computes them instead (reference path).

    Groups: with ``b = a * g`` decoder rows (g >= 1, e.g. beams or samples of one audio on consecutive rows),
    row i reads audio ``i // g``; each audio's g rows are folded into its query length, so K/V are never copied
    per row. A cached call with fewer rows than cached audios (``b < a``) reads audios ``0..b-1``. Any other ``b``
    raises ValueError. ``group`` (a caller that checked it once) skips that derivation.

    ``score_heads``: also return the attention logits (q.k / sqrt(head_dim), before the softmax, float32) of those
    heads, ``[b, len(heads), t, s]``: word alignment normalises them over the frames it keeps.
    """

    def __init__(self, hidden_size: int, num_heads: int, kv_hidden_size: int | None = None, *, bias: bool = True,
                 dtype: torch.dtype = torch.float32, device=None, tp_size: int = 1, tp_rank: int = 0, tp_group=None,
                 quant_mode=None, group_size: int = DEFAULT_GROUP_SIZE):
        super().__init__(hidden_size, num_heads, tp_size)
        kv_hidden_size = hidden_size if kv_hidden_size is None else positive("kv_hidden_size", kv_hidden_size)
        tp = dict(dtype=dtype, device=device, tp_size=tp_size, tp_rank=tp_rank, tp_group=tp_group,
                  quant_mode=quant_mode, group_size=group_size)
        self.kv_hidden_size = kv_hidden_size
        self.query = column_linear(hidden_size, hidden_size, bias, gather_output=False, **tp)
        self.kv = column_linear(kv_hidden_size, 2 * hidden_size, bias, gather_output=False, **tp)
        self.dense = row_linear(hidden_size, hidden_size, bias, **tp)

    def shard_weights(self, full: Mapping[str, ArrayLike], *, layout: str = "out_in") -> dict[str, torch.Tensor]:
        """This rank's slice of full weights; k and v are each split by heads."""
        return self._shard_fused_weights(full, {"kv": 2}, layout)

    def _project_kv(self, xa: torch.Tensor, backend: OpBackend) -> torch.Tensor:
        """xa [a, s, kv_hidden] -> K/V [2, a, local_heads, s, head_dim] (strided views of one product)."""
        check_input("CrossAttention", xa, ndim=3, last=self.kv_hidden_size, dtype=self.kv.weight.dtype)
        return self._heads(self.kv(xa, backend=backend), 2)

    def compute_kv(self, xa: torch.Tensor, cache: KVCache, *, backend: OpBackend = TORCH_BACKEND) -> None:
        """Project ``xa [a, s, kv_hidden]`` to K/V once and write them into ``cache`` (rows 0..a-1)."""
        k, v = self._project_kv(xa, backend)
        cache.write(k, v)

    def forward(self, x: torch.Tensor, xa: torch.Tensor | None = None, *, cache: KVCache | None = None,
                group: int | None = None, ln=None, residual: torch.Tensor | None = None,
                score_heads: Sequence[int] | None = None, backend: OpBackend = TORCH_BACKEND):
        """dense(attention(query(LN?(x)), K/V)) (+ residual) -> [b, t, hidden] (and the scores of
        ``score_heads``)."""
        check_input("CrossAttention", x, ndim=3, last=self.hidden_size, dtype=self.query.weight.dtype)
        b, t, _ = x.shape
        q = self.query(x, ln=ln, backend=backend).view(b * t, -1)
        if xa is not None:
            k, v = self._project_kv(xa, backend)
        elif cache is None:
            raise ValueError("CrossAttention: pass the audio states xa or a cache filled by compute_kv(xa, cache)")
        else:
            if cache.length == 0:
                raise RuntimeError("CrossAttention: no encoder K/V cached; call compute_kv(xa, cache) or pass xa")
            k, v = cache.written()
        group = _group(b, k.shape[0]) if group is None else group
        o = backend.cross_attention(q, k, v, t, group)
        out = self.dense(o.view(b, t, -1), residual=residual, backend=backend)
        if score_heads is None:
            return out
        return out, self.head_scores(q, k, t, group, score_heads)

    def head_scores(self, q: torch.Tensor, k, t: int, group: int, heads: Sequence[int]) -> torch.Tensor:
        """q [b*t, local_heads*head_dim] over k [a, local_heads, s, head_dim] (row i reads audio i // group) ->
        the logits of ``heads`` [b, len(heads), t, s], float32."""
        if max(heads) >= self.local_heads or min(heads) < 0:
            raise ValueError(f"CrossAttention: score_heads {list(heads)} do not exist (the layer has "
                             f"{self.local_heads} heads)")
        b = q.shape[0] // t
        index = _head_index(tuple(heads), q.device)
        keys = dequantized(k, torch.float32)
        qh = q.view(b, t, self.local_heads, self.head_dim).index_select(2, index).transpose(1, 2).float()
        rows = torch.arange(b, device=q.device) // group
        kh = keys.index_select(0, rows).index_select(1, index).float()  # [b, h, s, hd]
        return torch.matmul(qh, kh.transpose(-1, -2)) * self.head_dim ** -0.5


@functools.lru_cache(maxsize=256)
def _head_index(heads: tuple[int, ...], device: torch.device) -> torch.Tensor:
    """The heads as an index tensor on ``device``, made once: a pass captured as a CUDA graph may not copy one
    from the host."""
    return torch.tensor(heads, device=device)


def _group(b: int, audios: int) -> int:
    """Decoder rows per audio row: ``b < audios`` rows read audios 0..b-1; else b must be a multiple of audios."""
    if b <= audios:
        return 1
    if b % audios:
        raise ValueError(f"CrossAttention: {b} decoder rows are not a multiple of the {audios} audio rows "
                         f"(row i reads audio i // group)")
    return b // audios
