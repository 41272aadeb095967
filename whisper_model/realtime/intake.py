"""PCM16 from the client -> float32 samples at 16 kHz (the model's rate), resampled as it arrives.

    intake = PcmIntake(24000)
    samples = intake.append(pcm_bytes)   # float32 [n] at 16 kHz: what the resampler could give so far
    tail = intake.flush()                # at commit: the resampler's last samples; the next append starts afresh

24 kHz goes through PyAV's ``av.AudioResampler`` (libswresample) kept open across appends: its filter state
carries over, so the samples of any split of the input into appends are those of resampling it in one piece
(tests/realtime/test_intake.py: equal, max difference 0.0). 16 kHz is only converted (no resampler). Samples are
int16 / 32768, as ``io.audio`` scales them.
"""
from __future__ import annotations

from typing import Optional

import numpy as np

from ..errors import AudioError
from .config import SAMPLE_RATES

SAMPLE_RATE = 16000  # the model's


def pcm16_to_float(pcm: bytes) -> np.ndarray:
    """Little-endian PCM16 mono bytes (an even count) -> float32 samples in [-1, 1)."""
    if len(pcm) % 2:
        raise AudioError(f"PCM16 audio has 2 bytes per sample; got {len(pcm)} bytes, an odd count")
    return np.frombuffer(pcm, dtype="<i2").astype(np.float32) / 32768.0


class PcmIntake:
    """One session's audio input at ``rate`` Hz, handed on at 16 kHz. ``samples_in``: input samples so far."""

    def __init__(self, rate: int):
        if rate not in SAMPLE_RATES:
            raise AudioError(f"PCM16 input rate must be one of {SAMPLE_RATES}, got {rate!r}")
        self.rate = rate
        self.samples_in = 0
        self._resampler: Optional[object] = None

    def append(self, pcm: bytes) -> np.ndarray:
        """The 16 kHz samples ``pcm`` (and the audio before it) give now; a resampler holds back a few."""
        if len(pcm) % 2:
            raise AudioError(f"PCM16 audio has 2 bytes per sample; got {len(pcm)} bytes, an odd count")
        self.samples_in += len(pcm) // 2
        if self.rate == SAMPLE_RATE:
            return pcm16_to_float(pcm)
        if not pcm:
            return np.zeros(0, np.float32)
        import av

        if self._resampler is None:
            self._resampler = av.AudioResampler(format="flt", layout="mono", rate=SAMPLE_RATE)
        frame = av.AudioFrame.from_ndarray(np.frombuffer(pcm, dtype="<i2").astype(np.int16)[None, :],
                                           format="s16", layout="mono")
        frame.sample_rate = self.rate
        return self._collect(self._resampler.resample(frame))

    def flush(self) -> np.ndarray:
        """The samples the resampler still holds (the end of the input); the next ``append`` starts a new piece."""
        resampler, self._resampler = self._resampler, None
        if resampler is None:
            return np.zeros(0, np.float32)
        return self._collect(resampler.resample(None))

    def clear(self) -> None:
        """Drop what the resampler holds (``input_audio_buffer.clear``)."""
        self._resampler = None

    @staticmethod
    def _collect(frames) -> np.ndarray:
        if not frames:
            return np.zeros(0, np.float32)
        return np.concatenate([f.to_ndarray().reshape(-1) for f in frames]).astype(np.float32, copy=False)


__all__ = ["SAMPLE_RATE", "PcmIntake", "pcm16_to_float"]
