"""Inference layers in TensorRT-LLM's conventions, as PyTorch modules.

Declared parameter shapes, explicit weight layouts (Linear weight [out, in], i.e. transB; Conv1d weight
(out, in/groups, k)), fused QKV, tensor-parallel split dims, and a strict ``load_weights`` contract.
Nothing here knows about Whisper.
"""
from .attention import Attention, CrossAttention, causal_mask
from .backend import TORCH_BACKEND, KernelBackend, OpBackend
from .conv import Conv1d
from .embedding import Embedding
from .kv_cache import KVCache, check_input_pos
from .kv_cache_int8 import Int8KVCache
from .linear import ColumnLinear, Linear, RowLinear, tp_shard
from .mlp import MLP
from .module import LAYOUTS, Module, init_random_
from .normalization import LayerNorm
from .quant_linear import WeightOnlyQuantColumnLinear, WeightOnlyQuantLinear, WeightOnlyQuantRowLinear
from .quantization import (
    QuantMode,
    dequantize_kv,
    dequantize_weight,
    pack_int4,
    quantize_kv,
    quantize_weight,
    unpack_int4,
)

__all__ = [
    "TORCH_BACKEND", "KernelBackend", "OpBackend", "Attention", "ColumnLinear", "Conv1d", "CrossAttention", "Embedding", "Int8KVCache", "KVCache", "LAYOUTS",
    "LayerNorm", "Linear", "MLP", "Module", "QuantMode", "RowLinear", "WeightOnlyQuantColumnLinear",
    "WeightOnlyQuantLinear", "WeightOnlyQuantRowLinear", "causal_mask", "check_input_pos", "dequantize_kv",
    "dequantize_weight", "init_random_", "pack_int4", "quantize_kv", "quantize_weight", "tp_shard", "unpack_int4",
]
