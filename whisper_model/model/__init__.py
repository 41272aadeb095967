"""Whisper's encoder and decoder built from ``trtllm_ext`` layers (floor 2): the forward and its caches."""
from .caches import DecoderCaches
from .quant import Quantization, check_quantization
from .whisper import Whisper, WhisperDecoder, WhisperEncoder, sinusoids

__all__ = ["DecoderCaches", "Quantization", "Whisper", "WhisperDecoder", "WhisperEncoder", "check_quantization",
           "sinusoids"]
