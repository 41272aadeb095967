"""Decoding of 30 s windows (floor 3): options, the decoder seam, logit filters, token decoders, the task.

Same algorithm as openai-whisper's ``whisper/decoding.py``; the decode loop talks to the model only through
``TextDecoder`` (``protocol.py``)."""
from .language import detect_language, resolve_language, tokenizer_for
from .options import DecodingOptions, DecodingResult, compression_ratio
from .protocol import SpeechModel, TextDecoder
from .task import DecodingTask, WhisperDecoding, decode

__all__ = ["DecodingOptions", "DecodingResult", "DecodingTask", "SpeechModel", "TextDecoder", "WhisperDecoding", "compression_ratio",
           "decode", "detect_language", "resolve_language", "tokenizer_for"]
