"""Self-attention over a static KV cache, and cross-attention whose K/V are computed once per audio.

Both use fused input projections in TensorRT-LLM's style (self: ``qkv`` [3*hidden, hidden], rows q, k, v;
cross: ``query`` [hidden, hidden] and ``kv`` [2*hidden, kv_hidden], rows k, v) and a ``RowLinear`` output
projection ``dense``. Models without a key bias (Whisper) store zeros in that part of the fused bias.
Attention itself is ``torch.nn.functional.scaled_dot_product_attention`` (flash/efficient kernels on GPU).
``quant_mode`` ("int8" / "int4", with ``group_size``) makes every projection a weight-only quantized layer.
"""
from __future__ import annotations

from typing import Mapping

import torch
import torch.nn.functional as F

from .kv_cache import KVCache
from .linear import tp_shard
from .module import ArrayLike, Module, check_input, positive, to_tensor
from .quant_linear import column_linear, row_linear
from .quantization import DEFAULT_GROUP_SIZE


def check_input_pos(owner: str, input_pos, b: int, t: int) -> None:
    """Raise ValueError unless ``input_pos`` is an int64 tensor of shape ``[t]`` (shared by all ``b`` rows) or
    ``[b, t]`` (row i's token j at ``input_pos[i, j]``)."""
    if not isinstance(input_pos, torch.Tensor) or input_pos.dtype != torch.long:
        got = input_pos.dtype if isinstance(input_pos, torch.Tensor) else type(input_pos).__name__
        raise ValueError(f"{owner}: input_pos must be int64, got {got}")
    if tuple(input_pos.shape) not in ((t,), (b, t)):
        raise ValueError(f"{owner}: input_pos must have shape [{t}] or [{b}, {t}], got {tuple(input_pos.shape)}")


def causal_mask(input_pos: torch.Tensor, max_len: int) -> torch.Tensor:
    """Boolean mask: a query at position p may see cache positions <= p.

    ``input_pos [t]`` -> ``[t, max_len]``; ``input_pos [b, t]`` (per row) -> ``[b, 1, t, max_len]`` (broadcasts
    over the heads of attention scores ``[b, heads, t, max_len]``).
    """
    if input_pos.dim() not in (1, 2):
        raise ValueError(f"causal_mask: input_pos must have shape [t] or [b, t], got {tuple(input_pos.shape)}")
    keys = torch.arange(max_len, device=input_pos.device)
    if input_pos.dim() == 1:
        return keys[None, :] <= input_pos[:, None]
    return keys <= input_pos[:, None, :, None]


def grouped_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """q [a*g, H, t, Dh] over k, v [a, H, s, Dh] -> [a*g, H, t, Dh]: query row i reads K/V row i // g.

    Each audio's g rows are folded into its query length (cross-attention has no mask), so K/V are never copied."""
    a, g = k.shape[0], q.shape[0] // k.shape[0]
    if g == 1:
        return F.scaled_dot_product_attention(q, k, v)
    _, h, t, dh = q.shape
    q = q.reshape(a, g, h, t, dh).transpose(1, 2).reshape(a, h, g * t, dh)
    o = F.scaled_dot_product_attention(q, k, v)
    return o.reshape(a, h, g, t, dh).transpose(1, 2).reshape(a * g, h, t, dh)


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
        self.kv_cache: KVCache | None = None

    def _heads(self, x: torch.Tensor, parts: int) -> torch.Tensor:
        """[b, t, parts*local_heads*head_dim] -> [parts, b, local_heads, t, head_dim]."""
        b, t, _ = x.shape
        return x.view(b, t, parts, self.local_heads, self.head_dim).permute(2, 0, 3, 1, 4)

    def _merge(self, o: torch.Tensor) -> torch.Tensor:
        """[b, heads, t, head_dim] -> [b, t, heads*head_dim], then the output projection."""
        b, _, t, _ = o.shape
        return self.dense(o.transpose(1, 2).reshape(b, t, self.local_heads * self.head_dim))

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

    def reset_cache(self) -> None:
        if self.kv_cache is not None:
            self.kv_cache.reset()


class Attention(_AttentionBase):
    """Multi-head self-attention. ``x [b, t, hidden] -> [b, t, hidden]``.

    Without a cache it attends over ``x`` itself (``causal`` masks the future). After ``setup_cache`` a call
    with ``input_pos`` int64 ``[t]`` (absolute positions of the ``t`` new tokens, shared by all rows) or
    ``[b, t]`` (row i's token j at ``input_pos[i, j]``; positions distinct within a row, in any order) first
    writes every new K/V into the cache, then each query attends over every cache position <= its own.
    ``mask`` (optional, with ``input_pos``) replaces ``causal_mask(input_pos, max_len)``.
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

    def setup_cache(self, max_batch: int, max_len: int, *, dtype: torch.dtype | None = None, device=None) -> None:
        """Preallocate the KV cache [max_batch, local_heads, max_len, head_dim]."""
        self.kv_cache = KVCache(max_batch, self.local_heads, max_len, self.head_dim,
                                dtype=dtype or self.qkv.weight.dtype, device=device or self.qkv.weight.device)

    def shard_weights(self, full: Mapping[str, ArrayLike], *, layout: str = "out_in") -> dict[str, torch.Tensor]:
        """This rank's slice of full weights; q, k and v are each split by heads."""
        return self._shard_fused_weights(full, {"qkv": 3}, layout)

    def forward(self, x: torch.Tensor, input_pos: torch.Tensor | None = None,
                mask: torch.Tensor | None = None) -> torch.Tensor:
        check_input("Attention", x, ndim=3, last=self.hidden_size, dtype=self.qkv.weight.dtype)
        q, k, v = self._heads(self.qkv(x), 3)
        if input_pos is None:
            if mask is not None:
                raise ValueError("Attention: a mask needs input_pos (cached decoding)")
            o = F.scaled_dot_product_attention(q, k, v, is_causal=self.causal and x.shape[1] > 1)
            return self._merge(o)
        if self.kv_cache is None:
            raise ValueError("Attention: input_pos given but no cache; call setup_cache first")
        check_input_pos("Attention", input_pos, x.shape[0], x.shape[1])
        k, v = self.kv_cache.update(input_pos, k, v)
        if mask is None:
            mask = causal_mask(input_pos, self.kv_cache.max_len)
        return self._merge(F.scaled_dot_product_attention(q, k, v, attn_mask=mask))


class CrossAttention(_AttentionBase):
    """Attention from ``x [b, t, hidden]`` to encoder states ``xa [a, s, kv_hidden]``.

    ``compute_kv(xa)`` projects K/V once per audio into the cross cache; every later ``forward(x)`` reuses
    them. ``forward(x, xa)`` recomputes them instead (reference path). ``reset_cache`` forgets the audio.

    Groups: with ``b = a * g`` decoder rows (g >= 1, e.g. beams or samples of one audio on consecutive rows),
    row i reads audio ``i // g``; each audio's g rows are folded into its query length (``[a, heads, g*t, Dh]``,
    cross-attention has no mask), so K/V are never copied per row. A cached call with fewer rows than cached
    audios (``b < a``) reads audios ``0..b-1``. Any other ``b`` raises ValueError.
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
        self.kv_len = 0  # positions of the cache holding the current audio's K/V (0: none)
        self.kv_rows = 0

    def setup_cache(self, max_batch: int, max_len: int, *, dtype: torch.dtype | None = None, device=None) -> None:
        """Preallocate the cross cache [max_batch, local_heads, max_len, head_dim]."""
        self.kv_cache = KVCache(max_batch, self.local_heads, max_len, self.head_dim,
                                dtype=dtype or self.kv.weight.dtype, device=device or self.kv.weight.device)
        self.kv_len = self.kv_rows = 0

    def shard_weights(self, full: Mapping[str, ArrayLike], *, layout: str = "out_in") -> dict[str, torch.Tensor]:
        """This rank's slice of full weights; k and v are each split by heads."""
        return self._shard_fused_weights(full, {"kv": 2}, layout)

    def _project_kv(self, xa: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        check_input("CrossAttention", xa, ndim=3, last=self.kv_hidden_size, dtype=self.kv.weight.dtype)
        k, v = self._heads(self.kv(xa), 2)
        return k, v

    def compute_kv(self, xa: torch.Tensor) -> None:
        """Project ``xa [b, s, kv_hidden]`` to K/V once and keep them in the cross cache."""
        if self.kv_cache is None:
            raise ValueError("CrossAttention: call setup_cache before compute_kv")
        k, v = self._project_kv(xa)
        self.kv_cache.write(k, v)
        self.kv_rows, self.kv_len = xa.shape[0], xa.shape[1]

    def reset_cache(self) -> None:
        super().reset_cache()
        self.kv_len = self.kv_rows = 0

    def forward(self, x: torch.Tensor, xa: torch.Tensor | None = None) -> torch.Tensor:
        check_input("CrossAttention", x, ndim=3, last=self.hidden_size, dtype=self.query.weight.dtype)
        (q,) = self._heads(self.query(x), 1)
        b = x.shape[0]
        if xa is not None:
            k, v = self._project_kv(xa)
            rows = xa.shape[0]
        else:
            if self.kv_len == 0:
                raise RuntimeError("CrossAttention: no encoder K/V cached; call compute_kv(xa) or pass xa")
            rows = min(b, self.kv_rows)
            k = self.kv_cache.k[:rows, :, : self.kv_len]
            v = self.kv_cache.v[:rows, :, : self.kv_len]
        if b % rows:
            raise ValueError(f"CrossAttention: {b} decoder rows are not a multiple of the {rows} audio rows "
                             f"(row i reads audio i // group)")
        return self._merge(grouped_attention(q, k, v))

