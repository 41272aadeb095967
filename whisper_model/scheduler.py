"""The long-form driver: audio streams of any length transcribed together, 30 s window by 30 s window.

    scheduler = Scheduler(model, batch_size=8)
    scheduler.add("a.wav", stream_id="a")                                  # default options, language detected
    scheduler.add(samples, options=TranscriptionOptions(beam_size=5), language="fr", initial_prompt="Bonjour.")
    for event in scheduler.events():          # Started, Segments (one per decoded window), Finished or Failed
        ...                                   # scheduler.add(...) may be called here too: the stream joins

Each stream has its own language (given, or detected on its first 30 s), initial prompt, options and long-form
state (``LongFormState``: openai-whisper's ``transcribe()`` loop for one audio). Round after round the current
windows of up to ``batch_size`` active streams are encoded in one encoder batch and decoded with one
``DecodingTask`` batch per group of streams sharing their options (``decode_with_fallback``: the rows that need a
temperature fallback are decoded again together at the next temperature). Streams that finish make room for
waiting ones; a stream whose audio cannot be loaded gives ``Failed`` and the others go on.

At temperature 0 every stream gets the segments it gets alone (fp32; batched products may round otherwise in
fp16); windows that fall back to sampling draw from the global torch RNG in batch order.
"""
from __future__ import annotations

import functools
import itertools
from collections import deque
from dataclasses import dataclass
from typing import Callable, Hashable, Iterator, Optional

import torch

from .decode.alignment import align_windows
from .decode.options import DecodingResult
from .encoding import Audio, WhisperEncoding
from .errors import AudioError, DecodingError, OptionError
from .io.audio import HOP_LENGTH, SAMPLE_RATE
from .io.mel_stream import StreamedLogMel
from .io.tokenizer import Tokenizer
from .live import LIVE_STEP_S, TRIM_S, LiveStream
from .longform import (
    LongFormState,
    TranscriptionInfo,
    WindowCut,
    decode_with_fallback,
    detect_languages,
    load_mel,
)
from .options import TranscriptionOptions, checked_tokenizer
from .scheduler_events import Committed, Event, Failed, Finished, Hypothesis, Segments, Started


ProgressCallback = Callable[[Hashable, float], None]  # (stream_id, seconds of its audio transcribed)

@dataclass(eq=False)
class Stream:
    """One audio of the scheduler. ``language`` None: detected (multilingual models). Once loaded: ``state``,
    ``info``, and ``features`` [n_audio_ctx, d], the current window's encoder states when already computed."""
    id: Hashable
    audio: Optional[Audio]
    options: TranscriptionOptions
    language: Optional[str] = None
    initial_prompt: Optional[str] = None
    min_window: int = 0
    state: Optional[LongFormState] = None
    info: Optional[TranscriptionInfo] = None
    features: Optional[torch.Tensor] = None


class Scheduler:
    """Transcribes the streams given to ``add``, ``batch_size`` windows at a time; ``events()`` drives it.

    ``model``: ``Whisper`` (or an accelerated wrapper); ``tokenizer`` supplies the vocabulary (default: the
    model's standard one). One ``events()`` iteration at a time. ``on_progress(stream_id, seconds)``: called while
    a window is decoded (every few tokens; windows with timestamps) with how far into its audio the stream's text
    has come, between the ``Segments`` events (which carry the same measure, ``done``, per window).
    """

    def __init__(self, model, *, batch_size: int = 8, tokenizer: Optional[Tokenizer] = None,
                 on_progress: Optional[ProgressCallback] = None):
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise OptionError(f"batch_size must be a positive integer, got {batch_size!r}")
        if on_progress is not None and not callable(on_progress):
            raise OptionError(f"on_progress must be a callable (stream_id, seconds), got {on_progress!r}")
        self.model, self.batch_size, self.tokenizer = model, batch_size, tokenizer
        self.on_progress = on_progress
        self.encoding = WhisperEncoding(model)
        self._waiting: deque[Stream] = deque()
        self._active: list[Stream] = []
        self._live: dict[Hashable, LiveStream] = {}  # live streams, started or not, until they finish
        self.intake = Intake(model, tokenizer)  # the checks of ``add``, the ids of the streams waiting or active

    def add(self, audio: Audio, *, options: Optional[TranscriptionOptions] = None, language: Optional[str] = None,
            initial_prompt: Optional[str] = None, stream_id: Optional[Hashable] = None,
            min_window_s: float = 0.0, chunking: Optional[str] = None, vad_filter: Optional[bool] = None) -> Hashable:
        """Queue ``audio`` (a path, file bytes, or 16 kHz mono samples [n]); it is loaded when a row is free.
        Returns its id (``stream_id``, default the next integer). ``language`` and ``options.task`` are checked
        for this model now: ``OptionError``. ``min_window_s``: a rest of the audio shorter than this after the last
        complete timestamp of its last window is not decoded on its own (``LongFormState.min_window``; VAD
        chunks). ``chunking`` / ``vad_filter``: as ``chunked.ChunkedScheduler.add`` takes them; here only the path
        without VAD (None, "none", False)."""
        if chunking not in (None, "none") or vad_filter:
            raise OptionError("chunking='vad' and vad_filter=True need a chunked.ChunkedScheduler (make_scheduler "
                              "with chunking or vad_filter)")
        options, stream_id = self.intake.admit(options, language, stream_id)
        self._waiting.append(Stream(stream_id, audio, options, language, initial_prompt,
                                    round(min_window_s * SAMPLE_RATE / HOP_LENGTH)))
        return stream_id

    def add_live(self, *, options: Optional[TranscriptionOptions] = None, language: Optional[str] = None,
                 initial_prompt: Optional[str] = None, stream_id: Optional[Hashable] = None,
                 step_s: float = LIVE_STEP_S, trim_s: float = TRIM_S) -> Hashable:
        """A live stream: audio given later by ``feed`` while it is decoded, up to ``end`` (``live.LiveStream``:
        interim decodes every ``step_s`` seconds of new audio, final words as ``Committed`` events, the window
        trimmed past ``trim_s``). Returns its id; the checks of ``add``, and ``options.clip_timestamps`` must be
        the whole audio."""
        if options is not None and options.clipped:
            raise OptionError("clip_timestamps is not possible on a live stream (its audio is not there yet)")
        if not 0.0 < step_s <= 30.0 or not step_s <= trim_s <= 30.0:
            raise OptionError(f"a live stream needs 0 < step_s <= trim_s <= 30, got step_s={step_s!r}, "
                              f"trim_s={trim_s!r}")
        options, stream_id = self.intake.admit(options, language, stream_id)
        self._live[stream_id] = LiveStream(stream_id, options, language, initial_prompt,
                                           round(step_s * SAMPLE_RATE), round(trim_s * SAMPLE_RATE))
        return stream_id

    def feed(self, stream_id: Hashable, samples) -> None:
        """Append 16 kHz mono float samples [n] to the live stream ``stream_id`` (``AudioError`` for other audio
        or after its ``end``)."""
        self._live_stream(stream_id).feed(samples)

    def end(self, stream_id: Hashable) -> None:
        """No more audio for the live stream ``stream_id``: the rest is transcribed, then ``Finished``."""
        self._live_stream(stream_id).end()

    def _live_stream(self, stream_id: Hashable) -> LiveStream:
        stream = self._live.get(stream_id)
        if stream is None:
            raise OptionError(f"no live stream {stream_id!r} (never added, finished, failed or cancelled)")
        return stream

    def events(self) -> Iterator[Event]:
        """Run until every stream added (before or while iterating) has finished or failed; call again after
        adding more. Per stream: ``Started``, then one ``Segments`` per window, then ``Finished``; or ``Failed``
        (at any point). A live stream: ``Started`` once its language is known, ``Committed`` and ``Segments`` as
        its words become final, ``Finished`` after its ``end``; it runs only while a decode is due (``step_s``
        of new audio, or its end): with nothing else due, this returns, and is called again after ``feed``."""
        while self._waiting or self._active or self.due:
            yield from self._admit()
            if self._active or self.due:
                yield from self._round()

    def cancel(self, stream_id: Hashable) -> bool:
        """Drop a waiting or active stream (its caller is gone): its row is free at the next round and its id
        for ``add``; the events of the round being given out may still name it, no later one does. Returns
        whether it was dropped: False for an id finished, failed or unknown, and for a stream being admitted at
        this moment (loaded, its ``Started`` not given out yet: call again after the next event)."""
        if stream_id in self._live:
            del self._live[stream_id]
            self.intake.release(stream_id)
            return True
        for streams in (self._waiting, self._active):
            for stream in streams:
                if stream.id == stream_id:
                    streams.remove(stream)
                    self.intake.release(stream_id)
                    stream.audio = stream.state = stream.features = None
                    return True
        return False

    def _admit(self) -> Iterator[Event]:
        """Load waiting streams into the free rows; detect the languages of those that need it together."""
        joined: list[tuple[Stream, torch.Tensor]] = []
        while self._waiting and len(self._active) + len(joined) < self.batch_size:
            stream = self._waiting.popleft()
            try:
                joined.append((stream, load_mel(self.encoding, stream.audio)))
            except AudioError as e:
                yield self._failed(stream, e)
        detect = [(s, mel) for s, mel in joined if s.language is None and self.model.is_multilingual]
        detected = {}  # id(stream) -> (language probabilities, first window's encoder states or None)
        if detect:
            try:
                probs, firsts = detect_languages(self.model, self.encoding, [m for _, m in detect], self.tokenizer)
                detected = {id(s): found for (s, _), found in zip(detect, zip(probs, firsts))}
            except (RuntimeError, ValueError) as e:  # e.g. out of memory: these streams fail, the others go on
                joined = [(s, mel) for s, mel in joined if s.language is not None]
                yield from (self._failed(s, decoding_error(e)) for s, _ in detect)
        for stream, mel in joined:
            self._start(stream, mel, *detected.get(id(stream), (None, None)))
            yield Started(stream.id, stream.info)
            if stream.state.done:  # no content at all
                self.intake.release(stream.id)
                yield Finished(stream.id, stream.info)
            else:
                self._active.append(stream)

    def _start(self, stream: Stream, mel: StreamedLogMel, probs: Optional[dict[str, float]],
               first: Optional[torch.Tensor]) -> None:
        """The stream's tokenizer, info and long-form state, from its mel and detected ``probs`` (if any);
        ``first``: its first window's encoder states when language detection computed them."""
        duration = float(mel.content_frames * HOP_LENGTH / SAMPLE_RATE)
        tokenizer, stream.info = stream_info(self.model, self.tokenizer, stream.language, probs, stream.options,
                                             duration)
        stream.state = LongFormState(mel, stream.options, tokenizer, stream.initial_prompt,
                                     self.model.dims.n_audio_ctx, stream.min_window, self.model.dims.n_text_ctx)
        stream.audio, stream.features = None, first

    def _round(self) -> Iterator[Event]:
        """Encode and decode the current windows of the live streams due and of the active streams (up to
        ``batch_size``, live ones first); advance each stream."""
        live = yield from self._live_rows()
        files = self._active[: self.batch_size - len(live)]
        rows = live + files
        if not rows:
            return
        try:
            features = self._encode(rows)
            results = self._decode(rows, features)
            cuts = [s.state.cut(result) for s, result in zip(rows, results)]
            self._time_words(rows, cuts, features)
        except (RuntimeError, ValueError) as e:  # e.g. out of memory: the round's streams fail, later ones go on
            yield from (self._failed(s, decoding_error(e)) for s in rows)
            return
        events: list[Event] = []
        for stream, cut in zip(rows, cuts):
            if isinstance(stream, LiveStream):
                events += stream.conclude(cut)
            else:
                events.append(Segments(stream.id, stream.state.emit(cut), stream.state.position))
        yield from self._settle_rows(rows, events)

    def _settle_rows(self, rows: list, events: list[Event]) -> Iterator[Event]:
        """The round's events, and the streams done with it leave (``Finished`` after their last ``Segments``)."""
        finished = {e.stream_id for e in events if isinstance(e, Finished)}
        for stream in rows:
            if not isinstance(stream, LiveStream) and stream.state.done:
                finished.add(stream.id)
                events.append(Finished(stream.id, stream.info))
        self._active = [s for s in self._active if s.id not in finished]
        for stream_id in finished:
            self._live.pop(stream_id, None)
            self.intake.release(stream_id)
        yield from events

    def _live_rows(self) -> Iterator[Event]:
        """The live streams due (at most ``batch_size``), each with the round's window (``LiveStream.begin``);
        those whose language was unknown get it (detected together) and give ``Started`` first; a stream ended
        with nothing left to decode finishes here. Returns the streams (a generator's return value)."""
        due = [s for s in self._live.values() if s.ready][: self.batch_size]
        new = [s for s in due if s.info is None]
        detect = [s for s in new if s.language is None and self.model.is_multilingual]
        seen = {id(s): (s.arrived, s.ended) for s in due}  # what the mels hold: feeds may come at a yield below
        try:
            mels = {id(s): load_mel(self.encoding, s.window_samples()) for s in due if not s.finishing}
            probs = detect_languages(self.model, self.encoding, [mels[id(s)] for s in detect], self.tokenizer)[0] \
                if detect else []
        except (RuntimeError, ValueError) as e:  # e.g. out of memory: these streams fail, the others go on
            yield from (self._failed(s, decoding_error(e)) for s in due)
            return []
        detected = {id(s): p for s, p in zip(detect, probs)}
        for stream in new:
            stream.tokenizer, stream.info = stream_info(self.model, self.tokenizer, stream.language,
                                                        detected.get(id(stream)), stream.options, 0.0)
            yield Started(stream.id, stream.info)
        rows = []
        for stream in due:
            state = stream.begin(mels.get(id(stream)), *seen[id(stream)], self.model.dims.n_audio_ctx,
                                 self.model.dims.n_text_ctx)
            if state.done:  # nothing left to decode: the end of an empty window
                yield from self._settle_rows([], stream.conclude(None))
            else:
                rows.append(stream)
        return rows

    @property
    def due(self) -> bool:
        """Whether a live stream is due for a decode (``events()`` has work for it)."""
        return any(s.ready for s in self._live.values())

    def _encode(self, active: list[Stream]) -> torch.Tensor:
        """Encoder states [len(active), n_audio_ctx, d] of the streams' current windows (one encoder batch for
        those not encoded yet)."""
        todo = [s for s in active if s.features is None]
        encoded = self.encoding.encode(torch.stack([s.state.window() for s in todo])) if todo else None
        if len(todo) == len(active):
            features = encoded
        else:
            for s, x in zip(todo, encoded if todo else []):
                s.features = x
            features = torch.stack([s.features for s in active])
        for s in active:
            s.features = None  # the next window is another one
        return features

    def _decode(self, active: list[Stream], features: torch.Tensor) -> list[DecodingResult]:
        """Each stream's result for its window: one ``decode_with_fallback`` per group sharing options."""
        groups: dict[TranscriptionOptions, list[int]] = {}
        for i, stream in enumerate(active):
            groups.setdefault(stream.options, []).append(i)
        results: list[Optional[DecodingResult]] = [None] * len(active)
        for options, rows in groups.items():
            x = features if len(rows) == len(active) else features[torch.tensor(rows, device=features.device)]
            observer = None
            if self.on_progress is not None and not options.without_timestamps:
                observer = functools.partial(self._observe, [active[i] for i in rows])
            decoded = decode_with_fallback(self.model, self.tokenizer, options, x,
                                           [active[i].state.prompt for i in rows],
                                           [active[i].info.language for i in rows], observer)
            for i, result in zip(rows, decoded):
                results[i] = result
        return results

    def _time_words(self, active: list[Stream], cuts: list[WindowCut], features: torch.Tensor) -> None:
        """Word timestamps of the windows that want them and have text: one alignment pass for all of them."""
        rows = [i for i, (s, cut) in enumerate(zip(active, cuts)) if s.options.word_timestamps and cut.keep]
        if not rows:
            return
        eot = active[rows[0]].state.tokenizer.eot
        texts = [[t for text in cuts[i].texts(eot) for t in text] for i in rows]
        x = features if len(rows) == len(active) else features[torch.tensor(rows, device=features.device)]
        alignments = align_windows(self.model, [active[i].state.tokenizer for i in rows], x, texts,
                                   [cuts[i].window.size for i in rows])
        for i, alignment in zip(rows, alignments):
            active[i].state.time_words(cuts[i], alignment)

    def _observe(self, streams: list[Stream], rows: list[int], sampled: torch.Tensor) -> None:
        """``on_progress`` for the windows ``rows`` of ``streams`` from the tokens they have sampled so far."""
        for row, tokens in zip(rows, sampled):
            stream = streams[row]
            if isinstance(stream, LiveStream):  # its window's position is not its audio's
                continue
            self.on_progress(stream.id, stream.state.reached(tokens))

    def _failed(self, stream, error: Exception) -> Failed:
        """``stream`` (a ``Stream`` or a ``LiveStream``) leaves with ``error``."""
        self.intake.release(stream.id)
        if stream in self._active:
            self._active.remove(stream)
        self._live.pop(stream.id, None)
        if isinstance(stream, Stream):
            stream.audio = None
        stream.state = stream.features = None
        return Failed(stream.id, error)


class Intake:
    """What ``add`` checks, and the ids of the streams in use (a ``Scheduler``'s, a ``chunked.ChunkedScheduler``'s)."""

    def __init__(self, model, tokenizer: Optional[Tokenizer]):
        self.model, self.tokenizer = model, tokenizer
        self.ids: set = set()
        self._counter = itertools.count()

    def admit(self, options: Optional[TranscriptionOptions], language: Optional[str], stream_id: Optional[Hashable],
              check: Optional[Callable[[TranscriptionOptions], TranscriptionOptions]] = None):
        """``(options, stream_id)`` of a new stream: the options (default ones when None; ``check`` may refuse or
        change them) checked with ``language`` and ``options.task`` for this model (``OptionError``), and its id
        (``stream_id``, default the next free integer), now in use."""
        options = TranscriptionOptions() if options is None else options
        if not isinstance(options, TranscriptionOptions):
            raise TypeError(f"options must be a TranscriptionOptions, got {type(options).__name__}")
        checked_tokenizer(self.model, language, options.task, self.tokenizer)
        options = options if check is None else check(options)
        if stream_id is None:
            stream_id = next(i for i in self._counter if i not in self.ids)
        elif stream_id in self.ids:
            raise OptionError(f"stream_id={stream_id!r} is already in use")
        self.ids.add(stream_id)
        return options, stream_id

    def release(self, stream_id: Hashable) -> None:
        self.ids.discard(stream_id)


def stream_info(model, tokenizer: Optional[Tokenizer], language: Optional[str], probs: Optional[dict[str, float]],
                options: TranscriptionOptions, duration: float,
                duration_after_vad: Optional[float] = None) -> tuple[Tokenizer, TranscriptionInfo]:
    """A stream's tokenizer and info once its language is known: ``language`` as given, or the most likely of
    ``probs`` (detected), "en" on an English-only model."""
    language = language if probs is None else max(probs, key=probs.get)
    tokenizer = checked_tokenizer(model, language, options.task, tokenizer)
    code = tokenizer.language or "en"
    info = TranscriptionInfo(language=code, language_probability=1.0 if probs is None else probs[code],
                             duration=duration, all_language_probs=probs, options=options,
                             duration_after_vad=duration_after_vad)
    return tokenizer, info


def decoding_error(e: Exception) -> DecodingError:
    """``e`` (out of memory, a bad shape) as the ``DecodingError`` of the streams it stops."""
    error = DecodingError(f"{type(e).__name__}: {e}")
    error.__cause__ = e
    return error


__all__ = ["Committed", "Event", "Failed", "Finished", "Hypothesis", "Intake", "Scheduler", "Segments", "Started",
           "Stream", "decoding_error", "stream_info"]
