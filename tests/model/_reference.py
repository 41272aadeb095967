"""Loaded once per test session: openai-whisper reference models holding our converted weights, the shared
clips' samples, and ``WhisperModel`` pipelines (``clear()`` frees them at a module's teardown)."""
from __future__ import annotations

import functools

import numpy as np
import pytest

try:
    from ._paths import AUDIO_DIR, MISSING, NO_SHARED
except ImportError:
    from _paths import AUDIO_DIR, MISSING, NO_SHARED


@functools.lru_cache(maxsize=None)
def models(name: str):
    """(ours, openai-whisper's) fp32 models holding the same weights."""
    import whisper

    from whisper_model.io.export import to_openai
    from whisper_model.io.weights import load_checkpoint
    from whisper_model.model import Whisper

    dims, sd = load_checkpoint(name)
    ours = Whisper.from_state_dict(dims, sd)
    ckpt = to_openai(dims, sd)
    ref = whisper.model.Whisper(whisper.model.ModelDimensions(**ckpt["dims"]))
    ref.load_state_dict(ckpt["model_state_dict"], strict=True)
    return ours, ref.eval()


@functools.lru_cache(maxsize=None)
def samples(clip: str) -> np.ndarray:
    """16 kHz samples of a shared clip (skips the test when the shared clips are absent)."""
    from whisper_model.io import audio

    if clip == MISSING or not (AUDIO_DIR / clip).is_file():
        pytest.skip(NO_SHARED)
    return audio.load_audio(AUDIO_DIR / clip)


@functools.lru_cache(maxsize=None)
def pipeline(name: str):
    from whisper_model.pipeline import WhisperModel

    return WhisperModel(name, device="cpu")


def clear() -> None:
    for cached in (models, samples, pipeline):
        cached.cache_clear()
