"""Live streams of the scheduler: audio that keeps arriving while it is decoded (``Scheduler.add_live``).

    stream = LiveStream(stream_id, options, language, initial_prompt, step=SAMPLE_RATE)
    stream.feed(samples); ...; stream.end()        # 16 kHz mono float32, appended; the end of the audio
    stream.ready                                    # a decode is due: ``step`` new samples, or the end
    stream.begin(mel, arrived, ended, ...)          # the round's LongFormState over the window (``stream.state``)
    events = stream.conclude(cut)                   # after the round's decode: Committed / Segments / Finished

The window is the stream's audio from ``start`` (the end of the last segment that left it) to what has arrived,
transcribed as an audio of its own: its own log-mel (``mel``: the scheduler makes it from ``window_samples()``),
prompted with the initial prompt and the final text before the window. Until the end each decode is an interim
one: the window's first 30 s decoded once (at the first temperature of ``options`` only), its whole text (past
the last timestamp too, given out as a ``Hypothesis``) a hypothesis for the commit policy (``CommitPolicy``;
LocalAgreement-2: words two hypotheses in a row agree on are final, given out as ``Committed`` and never
retracted). The window is trimmed so that it stays within one decoding window:
- once it holds more than ``trim_s`` of audio, at the end of the last of its segments whose words are all final
  (those segments are given out as ``Segments`` and their text joins the prompt);
- once it holds more than 30 s, whatever it holds: the decoded segments become final (``commit``) and the window
  moves on where openai-whisper's loop would seek (past a silent window: by the whole window).
At the end the window is transcribed to its end as any audio (``LongFormState``: more rounds past 30 s); its text
becomes final (``finish``: the rest after the words already final) and its segments are given out, then
``Finished``. So the ``Committed`` texts joined are the stream's transcript, and the ``Segments`` its segments
(their text the final decode's, which may word a committed phrase otherwise). Memory: the window's samples only.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Hashable, Optional, Protocol

import numpy as np
import torch

from .errors import AudioError
from .io.audio import HOP_LENGTH, N_SAMPLES, SAMPLE_RATE
from .io.sample_blocks import SampleBlocks
from .io.tokenizer import Tokenizer
from .longform import LongFormState, Segment, TranscriptionInfo, WindowCut, moved
from .options import TranscriptionOptions
from .realtime.agreement import LocalAgreement, split_words
from .scheduler_events import Committed, Event, Finished, Hypothesis, Segments

LIVE_STEP_S = 1.0  # default: decode again once this much new audio has arrived
TRIM_S = 15.0  # default: a window longer than this is trimmed at its last final segment


def live_samples(samples) -> np.ndarray:
    """Live audio as float32 [n]: 16 kHz mono floating-point samples, numpy or torch (``AudioError`` otherwise)."""
    samples = samples.detach().cpu().numpy() if isinstance(samples, torch.Tensor) else np.asarray(samples)
    if samples.ndim != 1 or not np.issubdtype(samples.dtype, np.floating):
        raise AudioError(f"live audio must be 16 kHz mono float samples [n], got {samples.dtype} "
                         f"{list(samples.shape)}")
    return samples.astype(np.float32, copy=False)


class CommitPolicy(Protocol):
    """Which words of a growing window's hypotheses are final (``realtime.agreement.LocalAgreement``)."""
    committed: list[str]  # the final words of the window

    def update(self, hypothesis: str) -> str: ...  # -> the text newly final ("" when none)

    def commit(self, hypothesis: str) -> str: ...  # the rest of it is final now

    def finish(self, hypothesis: str) -> str: ...  # the rest of it is final, and no update follows

    def drop(self, n: int) -> None: ...  # the first n final words left the window


@dataclass(eq=False)
class LiveStream:
    """One live stream (see the module). ``step`` / ``trim``: samples. ``tokenizer`` and ``info``: set by the
    scheduler once the language is known; ``state`` / ``features``: the round's window (the scheduler's)."""
    id: Hashable
    options: TranscriptionOptions
    language: Optional[str] = None
    initial_prompt: Optional[str] = None
    step: int = round(LIVE_STEP_S * SAMPLE_RATE)
    trim: int = round(TRIM_S * SAMPLE_RATE)
    policy: CommitPolicy = field(default_factory=LocalAgreement)
    tokenizer: Optional[Tokenizer] = None
    info: Optional[TranscriptionInfo] = None
    state: Optional[LongFormState] = None
    features: Optional[torch.Tensor] = None
    ended: bool = False
    start: int = 0  # stream sample where the window starts (a whole mel frame)
    decoded: int = 0  # samples arrived when the last decode began
    before: str = ""  # the final text before the window
    next_id: int = 0
    finishing: bool = False  # the end is being transcribed: ``state`` goes on over rounds (no new mel)
    _window: SampleBlocks = field(default_factory=SampleBlocks)  # the window's samples, as fed
    _final: list = field(default_factory=list)  # the end: the segments decoded so far (on the stream's timeline)

    def __post_init__(self):
        # ``options``: the round's. Interim decodes take the first temperature only: a hypothesis sampled at a
        # higher one would not agree with the next; the end falls back as any audio does.
        self.final_options = self.options
        self.interim_options = replace(self.options, temperature=self.options.temperature[:1])

    @property
    def arrived(self) -> int:
        """Samples of the stream so far."""
        return self.start + self._window.size

    @property
    def ready(self) -> bool:
        """Whether to decode in the next round: ``step`` samples arrived since the last decode, or the end."""
        return self.ended or self.arrived - self.decoded >= self.step

    def feed(self, samples) -> None:
        """Append ``samples`` (``live_samples``'s checks)."""
        if self.ended:
            raise AudioError(f"live stream {self.id!r} has ended: no audio may follow")
        self._window.append(live_samples(samples))

    def end(self) -> None:
        self.ended = True

    def window_samples(self) -> np.ndarray:
        """The window's audio [n] (16 kHz float32)."""
        return self._window.samples()

    def begin(self, mel, arrived: int, ended: bool, n_audio_ctx: int, n_text_ctx: int) -> LongFormState:
        """The round's state: the window's ``mel`` (the log-mel of ``window_samples()`` when the stream had
        ``arrived`` samples and had ``ended`` or not: audio fed since waits for the next round) from its start,
        prompted with the text before it; at the end, the one state that transcribes the window to its end."""
        if self.finishing:
            return self.state
        prompt = " ".join(p for p in (self.initial_prompt, self.before) if p and p.strip()) or None
        self.options = self.final_options if ended else self.interim_options
        self.state = LongFormState(mel, self.options, self.tokenizer, prompt, n_audio_ctx, 0, n_text_ctx)
        self.decoded, self.finishing = arrived, ended
        return self.state

    def conclude(self, cut: Optional[WindowCut]) -> list[Event]:
        """The events of the round's decoded ``cut`` (its words timed, when wanted; None: nothing was left to
        decode at the end)."""
        segments = self.state.emit(cut) if cut is not None else []
        if self.finishing:
            return self._conclude_end(segments)
        text = self._text(cut)
        events = self._committed(self.policy.update(text)) + [Hypothesis(self.id, text, self.decoded / SAMPLE_RATE)]
        if self._window.size > N_SAMPLES:  # more than one window: it must move on now
            events += self._committed(self.policy.commit("".join(s.text for s in segments)))
            return events + self._trim(segments, len(segments), self.state.seek * HOP_LENGTH)
        if self._window.size > self.trim:
            n = self._final_segments(segments)
            if n:
                return events + self._trim(segments, n, round(segments[n - 1].end * SAMPLE_RATE))
        return events

    def _conclude_end(self, segments: list[Segment]) -> list[Event]:
        self._final += segments
        if not self.state.done:
            return []
        events = self._committed(self.policy.finish("".join(s.text for s in self._final)))
        end = self.arrived
        given = [moved(s, self.next_id + i, self.start, end) for i, s in enumerate(self._final)]
        info = replace(self.info, duration=end / SAMPLE_RATE)
        self.info, self._window, self._final, self.state = info, SampleBlocks(), [], None
        return events + [Segments(self.id, given, end / SAMPLE_RATE), Finished(self.id, info)]

    def _text(self, cut: WindowCut) -> str:
        """The hypothesis: the window's decoded text, all of it ("" for a window judged silent)."""
        if not cut.keep:
            return ""
        eot = self.tokenizer.eot
        return self.tokenizer.decode([t for t in cut.result.tokens if t < eot])

    def _final_segments(self, segments: list[Segment]) -> int:
        """How many of the leading ``segments`` have only final words (the window's final words start with
        theirs), the last one complete (followed by another)."""
        committed, words, n = self.policy.committed, 0, 0
        for k, segment in enumerate(segments[:-1]):
            words += len(split_words(segment.text))
            if words > len(committed):
                break
            if split_words("".join(s.text for s in segments[:k + 1])) == committed[:words]:
                n = k + 1
        return n

    def _trim(self, segments: list[Segment], n: int, cut_at: int) -> list[Event]:
        """Move the window's start ``cut_at`` samples on (a whole mel frame) past its first ``n`` segments,
        whose words are final: they are given out and join the prompt."""
        cut_at = min(cut_at - cut_at % HOP_LENGTH, self._window.size)
        gone = segments[:n]
        self.policy.drop(min(sum(len(split_words(s.text)) for s in gone), len(self.policy.committed)))
        given = [moved(s, self.next_id + i, self.start, self.start + cut_at) for i, s in enumerate(gone)]
        self.next_id += len(gone)
        self.before = (self.before + "".join(s.text for s in gone))[-2000:]  # the prompt keeps its last tokens
        self._window.keep_from(cut_at)
        self.start += cut_at
        return [Segments(self.id, given, self.start / SAMPLE_RATE)] if given else []

    def _committed(self, text: str) -> list[Event]:
        return [Committed(self.id, text, self.decoded / SAMPLE_RATE)] if text else []


__all__ = ["CommitPolicy", "LIVE_STEP_S", "LiveStream", "TRIM_S", "live_samples"]
