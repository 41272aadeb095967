"""Whisper built from ``trtllm_ext`` layers: model, weights, audio, tokenizer, decoding, long-form, CLI.

    from whisper_model import WhisperModel
    model = WhisperModel("tiny.en")               # or "base", or a checkpoint path
    segments, info = model.transcribe("clip.wav")  # segments is a lazy generator
"""
from .config import MODEL_DIMS, ModelDimensions, dims_for

__all__ = ["MODEL_DIMS", "ModelDimensions", "WhisperModel", "dims_for"]


def __getattr__(name: str):
    if name == "WhisperModel":  # imported on first use: keeps `import whisper_model` light
        from .pipeline import WhisperModel

        return WhisperModel
    raise AttributeError(f"module 'whisper_model' has no attribute {name!r}")
