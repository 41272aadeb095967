"""OpenAI's input audio buffer for one session: audio in, turns found, utterances committed.

    buffer = InputAudioBuffer(config)                 # config.turn_detection: server VAD, or None (client commits)
    out = buffer.append(pcm16_bytes)                  # out.events: speech_started / speech_stopped / committed dicts
    out.utterances                                    # [Utterance]: committed audio to transcribe, in order
    buffer.speech()                                   # the utterance in progress so far (for interim hypotheses)
    buffer.in_progress, buffer.audio_since(sample)    # its (item id, start), and its audio from a sample on
    buffer.commit(event_id) / buffer.clear()          # input_audio_buffer.commit / .clear

Audio goes through ``PcmIntake`` (16 kHz float32) and, with server VAD, ``StreamingVad``. With VAD an utterance is
the audio from a ``SpeechStarted``'s sample (the prefix padding included) to its ``SpeechStopped``'s; each gets an
item id at its start (``speech_started`` and ``speech_stopped`` name it) and is committed at its stop. Without
VAD an utterance starts with the first audio after a commit or clear (its item id is given then) and is committed
by the client. Outside
speech only the padding's worth of audio is kept, so a silent session holds no growing audio. A client's commit
takes everything since the last commit or stop (with VAD: from the speech's start, or the kept padding), ends the
speech in progress, and must hold at least ``MIN_COMMIT_MS`` (OpenAI's rule and error code); ``clear`` drops the
buffer. Offsets (``audio_start_ms``, ``audio_end_ms``, ``Utterance.start``) count the session's 16 kHz samples
(from ``offset``: a buffer made anew by a ``session.update`` goes on from the last one's).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

import numpy as np

from . import server_events as out
from .config import SessionConfig
from .events import ProtocolError
from .intake import SAMPLE_RATE, PcmIntake
from .vad_stream import SpeechStarted, SpeechStopped, StreamingVad

MIN_COMMIT_MS = 100  # the least audio a client's commit may hold (OpenAI's input_audio_buffer_commit_empty)


@dataclass(frozen=True)
class Utterance:
    """Audio of one conversation item: ``samples`` (16 kHz float32) from session sample ``start``."""

    item_id: str
    previous_item_id: Optional[str]
    start: int
    samples: np.ndarray

    @property
    def seconds(self) -> float:
        return len(self.samples) / SAMPLE_RATE


@dataclass
class BufferOutput:
    events: list = field(default_factory=list)  # server event dicts, in order
    utterances: list = field(default_factory=list)  # [Utterance] committed


class InputAudioBuffer:
    """One session's input audio buffer (see the module)."""

    def __init__(self, config: SessionConfig, device: str = "cpu", offset: int = 0,
                 last_item_id: Optional[str] = None):
        self.config = config
        self._intake = PcmIntake(config.sample_rate)
        vad = config.turn_detection
        self._vad = StreamingVad(vad, device) if vad is not None else None
        self._padding = 0 if vad is None else vad.prefix_padding_ms * SAMPLE_RATE // 1000
        self._chunks: list[np.ndarray] = []  # the kept audio, as appended (joined only when an utterance is cut)
        self._offset = offset  # the session's samples before this buffer (a session.update made a new one)
        self._start, self._held = offset, 0  # the first kept sample's offset, and how many are kept
        self._cut = offset  # where the buffer starts: the last commit, stop or clear
        self._speech: Optional[tuple[str, int]] = None  # (item id, start) of the utterance in progress
        self.last_item_id: Optional[str] = last_item_id

    @property
    def samples(self) -> int:
        """The session's 16 kHz samples so far."""
        return self._start + self._held

    @property
    def held(self) -> int:
        """Samples kept in memory (the speech in progress, or the padding the next speech may take)."""
        return self._held

    def append(self, pcm: bytes) -> BufferOutput:
        result = BufferOutput()
        self._take(self._intake.append(pcm), result)
        return result

    def commit(self, event_id: Optional[str] = None) -> BufferOutput:
        """The client's commit: the buffer becomes an utterance (``ProtocolError`` when it is too short)."""
        result = BufferOutput()
        self._take(self._intake.flush(), result)
        start = self._speech[1] if self._speech else max(self._cut, self._start)
        if (self.samples - start) * 1000 < MIN_COMMIT_MS * SAMPLE_RATE:
            raise ProtocolError("input_audio_buffer_commit_empty", f"buffer too small: a commit needs at least "
                                f"{MIN_COMMIT_MS} ms of audio, the buffer has "
                                f"{(self.samples - start) * 1000 / SAMPLE_RATE:.1f} ms", None, event_id)
        item_id = self._speech[0] if self._speech else out.new_id("item")
        if self._vad is not None:
            self._vad.interrupt()
        self._speech = None
        self._close(item_id, start, self.samples, result)
        return result

    def clear(self) -> BufferOutput:
        """Drop the buffer (and the speech in progress); the session's offsets go on."""
        self._intake.clear()
        if self._vad is not None:
            self._vad.interrupt()
        self._speech, self._cut = None, self.samples
        self._trim()
        return BufferOutput([out.cleared()])

    def speech(self) -> Optional[Utterance]:
        """The utterance in progress so far (with VAD, between its start and stop; without, the audio since the
        last commit or clear), or None."""
        if self._speech is None:
            return None
        item_id, start = self._speech
        return Utterance(item_id, self.last_item_id, start, self._slice(start, self.samples))

    @property
    def in_progress(self) -> Optional[tuple[str, int]]:
        """(item id, start sample) of the utterance in progress, or None."""
        return self._speech

    def audio_since(self, sample: int) -> np.ndarray:
        """The kept audio from session sample ``sample`` (not before the first sample kept) to now, taken from the
        last appends only: a live transcription takes each append's new audio this way, without copying the
        utterance again."""
        need = max(self.samples - max(sample, self._start), 0)
        parts, have = [], 0
        for chunk in reversed(self._chunks):
            if have >= need:
                break
            parts.append(chunk)
            have += len(chunk)
        joined = np.concatenate(parts[::-1]) if parts else np.zeros(0, np.float32)
        return joined[len(joined) - need:].copy()

    def _take(self, samples: np.ndarray, result: BufferOutput) -> None:
        if len(samples):
            self._chunks.append(samples)
            self._held += len(samples)
        if self._vad is None:
            if len(samples) and self._speech is None:  # the client's next utterance starts here
                self._speech = (out.new_id("item"), max(self._cut, self._start))
            return
        for event in self._vad.feed(samples).events:
            if isinstance(event, SpeechStarted):
                self._speech = (out.new_id("item"), max(self._offset + event.sample, self._cut))
                result.events.append(out.speech_started(self._speech[0], out.samples_to_ms(self._speech[1])))
            elif isinstance(event, SpeechStopped) and self._speech is not None:
                (item_id, start), self._speech = self._speech, None
                end = self._offset + event.sample
                result.events.append(out.speech_stopped(item_id, out.samples_to_ms(end)))
                self._close(item_id, start, end, result)
        self._trim()

    def _close(self, item_id: str, start: int, end: int, result: BufferOutput) -> None:
        result.utterances.append(Utterance(item_id, self.last_item_id, start, self._slice(start, end)))
        result.events.append(out.committed(item_id, self.last_item_id))
        self.last_item_id, self._cut = item_id, end
        self._trim()

    def _slice(self, start: int, end: int) -> np.ndarray:
        joined = np.concatenate(self._chunks) if self._chunks else np.zeros(0, np.float32)
        self._chunks = [joined] if len(joined) else []
        return joined[max(start - self._start, 0):end - self._start].copy()

    def _trim(self) -> None:
        """Drop audio no utterance can take any more: before the speech in progress, or (with VAD, outside
        speech) before the padding the next one may reach back to."""
        if self._speech is not None:
            keep = self._speech[1]
        elif self._vad is not None:
            keep = max(self._cut, self._offset + self._vad.scored - self._padding)
        else:
            keep = self._cut
        drop = min(max(keep - self._start, 0), self._held)
        self._start, self._held = self._start + drop, self._held - drop
        while drop and drop >= len(self._chunks[0]):
            drop -= len(self._chunks.pop(0))
        if drop:
            self._chunks[0] = self._chunks[0][drop:].copy()  # not a view keeping a long utterance alive


__all__ = ["MIN_COMMIT_MS", "BufferOutput", "InputAudioBuffer", "Utterance"]
