"""Server VAD: Silero VAD over audio as it arrives, turned into speech started / stopped at sample offsets.

    vad = StreamingVad(TurnDetection())         # threshold 0.5, prefix_padding_ms 300, silence_duration_ms 500
    update = vad.feed(samples)                  # 16 kHz float32 of any length
    update.probabilities                        # Silero's probability of each 32 ms frame completed by this call
    update.events                               # [SpeechStarted | SpeechStopped], in order

Silero's probabilities come from ``io.silero.SileroStream``, the one streaming Silero (the offline chunk plan
reads files through it too): it keeps what the next call needs (the samples of an unfinished frame, the last 64
samples, the LSTM state), so the probabilities of any split of the audio into calls are those
``io.vad.speech_probabilities`` computes for the whole audio, up to rounding (tests/realtime/test_vad_stream.py).
``flush()`` scores the last, zero-padded frame.

Turns (OpenAI's server_vad settings): a frame is speech when its probability is at least ``threshold``. Speech
starts at the first speech frame; its audio starts ``prefix_padding_ms`` earlier (not before the stream's start or
the previous stop). It stops once ``silence_duration_ms`` have passed since the end of its last speech frame; its
audio ends there. Offsets count every sample fed since the stream began (``reset`` starts over).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Union

import numpy as np
import torch

from ..io.silero import FRAME, SileroStream
from .config import TurnDetection

SAMPLE_RATE = 16000


@dataclass(frozen=True)
class SpeechStarted:
    """``sample``: where the utterance's audio starts (the padding included); ``detected``: its first speech
    frame's start."""

    sample: int
    detected: int


@dataclass(frozen=True)
class SpeechStopped:
    """``sample``: where the utterance's audio ends (the silence waited for included); ``speech_end``: the end of
    its last speech frame."""

    sample: int
    speech_end: int


VadEvent = Union[SpeechStarted, SpeechStopped]


@dataclass
class VadUpdate:
    probabilities: torch.Tensor  # [frames completed by the call]
    events: list = field(default_factory=list)  # [VadEvent]


class StreamingVad:
    """One audio stream's voice activity, frame by frame, with its state carried from call to call."""

    def __init__(self, settings: TurnDetection = TurnDetection(), device: str = "cpu"):
        self.settings = settings
        self.device = device
        self._scorer = SileroStream(device)
        self.reset()

    def reset(self) -> None:
        """Forget all audio: a fresh LSTM state, offsets from 0, no speech."""
        self._scorer.reset()
        self.in_speech = False
        self._speech_end = 0  # end of the last speech frame
        self._last_stop = 0

    def interrupt(self) -> None:
        """End the speech in progress here without an event (the client committed or cleared the buffer): the
        next speech frame starts a new utterance, whose padding does not reach back before this point."""
        self.in_speech = False
        self._last_stop = self.samples

    @property
    def samples(self) -> int:
        """Samples fed so far."""
        return self._scorer.samples

    @property
    def scored(self) -> int:
        """Samples in scored frames."""
        return self._scorer.scored

    def feed(self, samples: Union[np.ndarray, torch.Tensor]) -> VadUpdate:
        """Score the frames ``samples`` complete (16 kHz mono float) and say where speech started or stopped."""
        start = self._scorer.scored
        return self._frames(start, self._scorer.feed(samples))

    def flush(self) -> VadUpdate:
        """The end of the stream: the unfinished frame, zero-padded, is scored too."""
        start = self._scorer.scored
        return self._frames(start, self._scorer.flush())

    def _frames(self, start: int, probabilities: torch.Tensor) -> VadUpdate:
        events = []
        for i, p in enumerate(probabilities.tolist()):
            event = self._turn(start + i * FRAME, p)
            if event is not None:
                events.append(event)
        return VadUpdate(probabilities, events)

    def _turn(self, frame_start: int, probability: float):
        settings, frame_end = self.settings, frame_start + FRAME
        if probability >= settings.threshold:
            self._speech_end = frame_end
            if not self.in_speech:
                self.in_speech = True
                pad = settings.prefix_padding_ms * SAMPLE_RATE // 1000
                return SpeechStarted(max(frame_start - pad, self._last_stop), frame_start)
        elif self.in_speech and frame_end - self._speech_end >= settings.silence_duration_ms * SAMPLE_RATE // 1000:
            self.in_speech = False
            self._last_stop = frame_end
            return SpeechStopped(frame_end, self._speech_end)
        return None


__all__ = ["SpeechStarted", "SpeechStopped", "StreamingVad", "VadEvent", "VadUpdate"]
