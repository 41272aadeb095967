"""Whisper's encoder and decoder built from ``trtllm_ext`` layers (floor 2): the forward, its op-set, its caches."""
from .caches import DecoderCaches
from .ops import TORCH_OPS, BlockOps, KernelOps
from .quant import Quantization, check_quantization
from .whisper import Whisper, WhisperDecoder, WhisperEncoder, sinusoids

__all__ = ["TORCH_OPS", "BlockOps", "DecoderCaches", "KernelOps", "Quantization", "Whisper", "WhisperDecoder",
           "WhisperEncoder", "check_quantization", "sinusoids"]
