"""Server VAD: Silero VAD over audio as it arrives, turned into speech started / stopped at sample offsets.

    vad = StreamingVad(TurnDetection())         # threshold 0.5, prefix_padding_ms 300, silence_duration_ms 500
    update = vad.feed(samples)                  # 16 kHz float32 of any length
    update.probabilities                        # Silero's probability of each 32 ms frame completed by this call
    update.events                               # [SpeechStarted | SpeechStopped], in order

Silero scores 512-sample frames, each seen with the 64 samples before it, through a convolutional encoder and an
LSTM cell whose state runs through the whole audio. The stream keeps what the next call needs: the samples of an
unfinished frame, the last 64 samples, and the LSTM state; so the probabilities of any split of the audio into
calls are those ``io.vad.speech_probabilities`` computes for the whole audio (its model, loaded once by
``io.vad.vad_model``; tests/realtime/test_vad_stream.py). ``flush()`` scores the last, zero-padded frame.

Turns (OpenAI's server_vad settings): a frame is speech when its probability is at least ``threshold``. Speech
starts at the first speech frame; its audio starts ``prefix_padding_ms`` earlier (not before the stream's start or
the previous stop). It stops once ``silence_duration_ms`` have passed since the end of its last speech frame; its
audio ends there. Offsets count every sample fed since the stream began (``reset`` starts over).
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import Union

import numpy as np
import torch

from ..io.vad import CONTEXT, FRAME, vad_model
from .config import TurnDetection

SAMPLE_RATE = 16000
STATE_SIZE = 128  # Silero's LSTM width


@contextlib.contextmanager
def one_cpu_thread(device: str):
    """torch on one thread inside the block on a CPU: a frame's small products only lose from more (on a loaded
    machine two threads made a frame 100x slower: 33 ms instead of 0.3 ms)."""
    if torch.device(device).type != "cpu":
        yield
        return
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


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
        self._net = vad_model(device)._model
        self.reset()

    def reset(self) -> None:
        """Forget all audio: a fresh LSTM state, offsets from 0, no speech."""
        self._state = torch.zeros(2, 1, STATE_SIZE, device=self.device)
        self._context = torch.zeros(CONTEXT, device=self.device)
        self._pending = np.zeros(0, np.float32)
        self.scored = 0  # samples in scored frames
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
        return self.scored + len(self._pending)

    def feed(self, samples: Union[np.ndarray, torch.Tensor]) -> VadUpdate:
        """Score the frames ``samples`` complete (16 kHz mono float) and say where speech started or stopped."""
        audio = np.concatenate([self._pending, np.asarray(samples, np.float32).reshape(-1)])
        whole = len(audio) // FRAME * FRAME
        self._pending = audio[whole:].copy()
        return self._frames(audio[:whole])

    def flush(self) -> VadUpdate:
        """The end of the stream: the unfinished frame, zero-padded, is scored too."""
        if not len(self._pending):
            return VadUpdate(torch.zeros(0))
        audio = np.zeros(FRAME, np.float32)
        audio[:len(self._pending)] = self._pending
        self._pending = np.zeros(0, np.float32)
        return self._frames(audio)

    @torch.no_grad()
    def _probabilities(self, audio: np.ndarray) -> torch.Tensor:
        """Probabilities [n] of whole frames ``audio`` [n * 512], moving the context and the LSTM state on."""
        if not len(audio):
            return torch.zeros(0)
        with one_cpu_thread(self.device):
            return self._score(audio)

    def _score(self, audio: np.ndarray) -> torch.Tensor:
        net = self._net
        audio = torch.cat([self._context, torch.from_numpy(audio).to(self.device)])
        self._context = audio[-CONTEXT:].clone()
        frames = audio.unfold(0, FRAME + CONTEXT, FRAME)  # [n, 576]: each frame after its context
        features = net.encoder(net.stft(frames))  # [n, 128, 1]
        out = []
        for i in range(features.shape[0]):  # the LSTM cell, one frame at a time (as the model runs it)
            probability, self._state = net.decoder(features[i:i + 1], self._state)
            out.append(probability.reshape(()))
        return torch.stack(out).float().cpu()

    def _frames(self, audio: np.ndarray) -> VadUpdate:
        start = self.scored
        probabilities = self._probabilities(audio)
        self.scored += len(audio)
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
