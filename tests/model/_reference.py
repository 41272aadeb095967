"""Loaded once per test session and shared by the test files: openai-whisper reference models holding our converted
weights, the shared clips' samples, ``WhisperModel`` pipelines, and the transcripts of both implementations.

``transcribed`` (ours) and ``reference_transcribed`` (openai-whisper's ``transcribe()``) run each (model, samples,
options) once per session, whichever file asks first (test_transcribe's parity runs are test_wer's sequential
runs; test_batch, test_scheduler and test_transcribe share runs of tiny.en / base with the default options); each
later call gets a deep copy of the same result. A test that checks how a transcription is computed (laziness, a
counted call, keywords against ``options=``) calls ``transcribe`` itself.
"""
from __future__ import annotations

import copy
import functools
import hashlib
import sys
import unittest.mock
from typing import Optional

import numpy as np
import pytest
import torch

from whisper_model.options import TranscriptionOptions, option_keywords

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
    """Kept for the test files' teardowns: the models, samples and transcripts stay loaded while tests/model runs
    (each file loaded them again, seconds per model, and ran again what another file had run); ``free`` (called by
    tests/conftest.py after the last test of tests/model) lets them go."""


def free() -> None:
    for cached in (models, samples, pipeline):
        cached.cache_clear()
    _OURS.clear()
    _THEIRS.clear()


def digest(audio: np.ndarray) -> tuple:
    """The samples' identity in a cache key: dtype, shape and a hash of the bytes."""
    assert isinstance(audio, np.ndarray), type(audio)
    audio = np.ascontiguousarray(audio)
    return str(audio.dtype), audio.shape, hashlib.sha256(audio.view(np.uint8)).hexdigest()


_OURS: dict = {}
_THEIRS: dict = {}


@option_keywords
def transcribed(name: str, audio: np.ndarray, *, options: Optional[TranscriptionOptions] = None,
                language: Optional[str] = None, initial_prompt: Optional[str] = None, chunking: str = "none",
                vad_filter: bool = False, vad_options=None, batch_size: int = 8):
    """``(segments, info)`` of ``whisper_model.transcribe(models(name)[0], audio, ...)`` after
    ``torch.manual_seed(0)``, every segment decoded. Once per session per (model, its alignment heads, samples,
    arguments); option keywords and an equal ``options=`` (None: the default options) are one key."""
    from whisper_model.transcribe import transcribe

    mine = models(name)[0]
    options = TranscriptionOptions() if options is None else options
    rest = dict(language=language, initial_prompt=initial_prompt, chunking=chunking, vad_filter=vad_filter,
                vad_options=vad_options, batch_size=batch_size)
    key = (name, repr(mine.alignment_heads), digest(audio), options, repr(sorted(rest.items())))
    if key not in _OURS:
        torch.manual_seed(0)
        segments, info = transcribe(mine, audio, options=options, **rest)
        _OURS[key] = (list(segments), info)
    return copy.deepcopy(_OURS[key])


def reference_transcribed(name: str, audio: np.ndarray, **options) -> dict:
    """openai-whisper's ``transcribe(models(name)[1], audio, fp16=False, **options)`` after ``torch.manual_seed(0)``,
    on our samples and our log-mel (its ``log_mel_spectrogram`` patched to ours). Once per session per (model, its
    alignment heads, samples, options as given)."""
    import whisper.transcribe  # noqa: F401  (the attribute is the function; the module is patched)

    from whisper_model.io import audio as A

    ref = models(name)[1]
    heads = tuple(ref.alignment_heads.to_dense().nonzero().flatten().tolist())
    key = (name, heads, digest(audio), repr(sorted(options.items())))
    if key not in _THEIRS:
        module = sys.modules["whisper.transcribe"]
        torch.manual_seed(0)
        with unittest.mock.patch.object(module, "log_mel_spectrogram", A.log_mel_spectrogram):
            _THEIRS[key] = module.transcribe(ref, audio, fp16=False, **options)
    return copy.deepcopy(_THEIRS[key])
