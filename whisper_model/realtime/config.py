"""A realtime transcription session's settings, as a ``session.update`` leaves them.

Defaults are OpenAI's for a transcription session: PCM16 at 24 kHz, server VAD on with threshold 0.5, 300 ms of
audio kept before the detected speech and 500 ms of silence to end it. 16 kHz PCM16 is accepted as well (the
model's own rate: no resampling); OpenAI's types allow only 24000, so a 16 kHz session is this server's extension.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Optional

from ..errors import OptionError

SAMPLE_RATES = (24000, 16000)  # PCM16 input rates accepted; the first is OpenAI's (and the default)


@dataclass(frozen=True)
class TurnDetection:
    """``server_vad``: a 32 ms frame is speech when Silero's probability is at least ``threshold``; speech starts
    ``prefix_padding_ms`` before its first speech frame and stops after ``silence_duration_ms`` without one."""

    threshold: float = 0.5
    prefix_padding_ms: int = 300
    silence_duration_ms: int = 500

    def __post_init__(self):
        if isinstance(self.threshold, bool) or not isinstance(self.threshold, (int, float)) \
                or math.isnan(self.threshold) or not 0.0 < self.threshold < 1.0:
            raise OptionError(f"turn_detection.threshold must be a number between 0 and 1 (exclusive), "
                              f"got {self.threshold!r}")
        for name in ("prefix_padding_ms", "silence_duration_ms"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise OptionError(f"turn_detection.{name} must be an integer >= 0, got {value!r}")


@dataclass(frozen=True)
class SessionConfig:
    """``sample_rate``: of the client's PCM16; ``model``: the transcription model's name as the client set it
    (echoed back); ``language``: an ISO-639-1 code or None (detected); ``prompt``: text to condition on;
    ``turn_detection``: server VAD's settings, or None (the client commits)."""

    sample_rate: int = SAMPLE_RATES[0]
    model: Optional[str] = None
    language: Optional[str] = None
    prompt: Optional[str] = None
    turn_detection: Optional[TurnDetection] = field(default_factory=TurnDetection)

    def __post_init__(self):
        if self.sample_rate not in SAMPLE_RATES:
            raise OptionError(f"sample_rate must be one of {SAMPLE_RATES}, got {self.sample_rate!r}")


__all__ = ["SAMPLE_RATES", "SessionConfig", "TurnDetection"]
