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
from .longform import (
    LongFormState,
    Segment,
    TranscriptionInfo,
    WindowCut,
    decode_with_fallback,
    detect_languages,
    load_mel,
)
from .options import TranscriptionOptions, checked_tokenizer


ProgressCallback = Callable[[Hashable, float], None]  # (stream_id, seconds of its audio transcribed)


@dataclass(frozen=True)
class Event:
    """Something that happened to one stream; ``stream_id``: the id ``Scheduler.add`` returned."""
    stream_id: Hashable


@dataclass(frozen=True)
class Started(Event):
    """The stream's audio is loaded and its language known: ``info`` (language, its probability, duration,
    options). No window is decoded yet."""
    info: TranscriptionInfo


@dataclass(frozen=True)
class Segments(Event):
    """One decoded window's segments (none for a window judged silent); ``done``: seconds transcribed so far."""
    segments: list[Segment]
    done: float


@dataclass(frozen=True)
class Finished(Event):
    """The stream's last window is decoded; ``info`` is ``Started``'s."""
    info: TranscriptionInfo


@dataclass(frozen=True)
class Failed(Event):
    """The stream stopped with ``error``: an ``AudioError`` when its audio could not be loaded (no ``Started``
    then), a ``DecodingError`` when its windows could not be encoded or decoded."""
    error: Exception

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

    def events(self) -> Iterator[Event]:
        """Run until every stream added (before or while iterating) has finished or failed; call again after
        adding more. Per stream: ``Started``, then one ``Segments`` per window, then ``Finished``; or ``Failed``
        (at any point)."""
        while self._waiting or self._active:
            yield from self._admit()
            if self._active:
                yield from self._round()

    def cancel(self, stream_id: Hashable) -> bool:
        """Drop a waiting or active stream (its caller is gone): its row is free at the next round and its id
        for ``add``; the events of the round being given out may still name it, no later one does. Returns
        whether it was dropped: False for an id finished, failed or unknown, and for a stream being admitted at
        this moment (loaded, its ``Started`` not given out yet: call again after the next event)."""
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
        """Encode and decode the active streams' current windows; advance each stream."""
        active = self._active
        try:
            features = self._encode(active)
            results = self._decode(active, features)
        except (RuntimeError, ValueError) as e:  # e.g. out of memory: the round's streams fail, later ones go on
            self._active = []
            yield from (self._failed(s, decoding_error(e)) for s in active)
            return
        cuts = [s.state.cut(result) for s, result in zip(active, results)]
        try:
            self._time_words(active, cuts, features)
        except (RuntimeError, ValueError) as e:
            self._active = []
            yield from (self._failed(s, decoding_error(e)) for s in active)
            return
        events: list[Event] = [Segments(s.id, s.state.emit(cut), s.state.position) for s, cut in zip(active, cuts)]
        self._active = [s for s in active if not s.state.done]
        for stream in active:
            if stream.state.done:
                self.intake.release(stream.id)
                events.append(Finished(stream.id, stream.info))
        yield from events

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
            self.on_progress(stream.id, stream.state.reached(tokens))

    def _failed(self, stream: Stream, error: Exception) -> Failed:
        self.intake.release(stream.id)
        stream.audio = stream.state = stream.features = None
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


__all__ = ["Event", "Failed", "Finished", "Intake", "Scheduler", "Segments", "Started", "Stream", "decoding_error",
           "stream_info"]
