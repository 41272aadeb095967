"""Inference layers in TensorRT-LLM's conventions, as PyTorch modules.

Declared parameter shapes, explicit weight layouts (Linear weight [out, in], i.e. transB; Conv1d weight
(out, in/groups, k)), fused QKV, tensor-parallel split dims, and a strict ``load_weights`` contract.
Nothing here knows about Whisper.
"""
from .attention import Attention, CrossAttention, causal_mask, check_input_pos
from .conv import Conv1d
from .embedding import Embedding
from .kv_cache import KVCache
from .linear import ColumnLinear, Linear, RowLinear, tp_shard
from .mlp import MLP
from .module import LAYOUTS, Module, init_random_
from .normalization import LayerNorm

__all__ = [
    "Attention", "ColumnLinear", "Conv1d", "CrossAttention", "Embedding", "KVCache", "LAYOUTS", "LayerNorm",
    "Linear", "MLP", "Module", "RowLinear", "causal_mask", "check_input_pos", "init_random_", "tp_shard",
]
