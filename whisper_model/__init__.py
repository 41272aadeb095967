"""Whisper built from ``trtllm_ext`` layers: model, weights, audio, tokenizer, decoding, long-form, CLI.

    from whisper_model import WhisperModel
    model = WhisperModel("tiny.en")               # or "base", or a checkpoint path
    segments, info = model.transcribe("clip.wav")  # segments is a lazy generator

The floors (imports only go down) are described in docs/ARCHITECTURE.md.
"""
import importlib

from .config import MODEL_DIMS, ModelDimensions, dims_for

_LAZY = {  # imported on first use: keeps `import whisper_model` light
    "WhisperModel": ".pipeline", "Scheduler": ".scheduler", "TranscriptionOptions": ".options",
    "WhisperEncoding": ".encoding", "WhisperDecoding": ".decode", "DecodingOptions": ".decode",
}

__all__ = ["MODEL_DIMS", "ModelDimensions", "dims_for", *_LAZY]


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name], __name__), name)
    raise AttributeError(f"module 'whisper_model' has no attribute {name!r}")
