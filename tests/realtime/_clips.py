"""The shared speech clip the VAD, buffer and session tests use (``<repo>/../shared/data/audio``), and PCM16."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from whisper_model.io.audio import load_audio

AUDIO = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "audio"
CLIP = AUDIO / "en_librivox_0870.wav"  # 7.1 s of one reader, no pause of 500 ms
SR = 16000


def speech() -> np.ndarray:
    if not CLIP.is_file():
        pytest.fail(f"shared clip missing: {CLIP.resolve()} (expected <repo>/../shared/data/audio)")
    return np.asarray(load_audio(str(CLIP)), np.float32)


def pcm16(samples: np.ndarray) -> bytes:
    """Float samples -> PCM16 little-endian bytes (what a client appends)."""
    return np.clip(np.round(samples * 32768), -32768, 32767).astype("<i2").tobytes()
