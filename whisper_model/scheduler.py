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

import itertools
from collections import deque
from dataclasses import dataclass
from typing import Hashable, Iterator, Optional, Sequence

import torch

from .audio import HOP_LENGTH, N_FRAMES, SAMPLE_RATE
from .decoding import DecodingResult, DecodingTask, detect_language
from .encoding import Audio, WhisperEncoding
from .errors import AudioError, DecodingError, OptionError
from .options import TranscriptionOptions, checked_tokenizer
from .tokenizer import Tokenizer


@dataclass(frozen=True)
class Segment:
    id: int
    seek: int  # mel frame where this segment's window started
    start: float  # seconds
    end: float
    text: str
    tokens: list[int]  # text and timestamp ids ([] for a cleared empty or zero-length segment)
    temperature: float
    avg_logprob: float
    compression_ratio: float
    no_speech_prob: float


@dataclass(frozen=True)
class TranscriptionInfo:
    language: str  # given, detected, or "en" (English-only models)
    language_probability: float  # 1.0 when the language was given (or the model is English-only)
    duration: float  # seconds of audio
    all_language_probs: Optional[dict[str, float]]  # set when the language was detected
    options: TranscriptionOptions


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


class LongFormState:
    """One audio's long-form progress (the state of openai-whisper's ``transcribe()`` loop): the window at
    ``seek``, its prompt, and ``advance`` which cuts a decoded window into segments and moves ``seek`` and the
    prompt on. ``mel``: [n_mels, content_frames + N_FRAMES] (30 s of silence appended)."""

    def __init__(self, mel: torch.Tensor, content_frames: int, options: TranscriptionOptions, tokenizer: Tokenizer,
                 initial_prompt: Optional[str], n_audio_ctx: int):
        self.mel, self.content_frames, self.options, self.tokenizer = mel, content_frames, options, tokenizer
        self.input_stride = N_FRAMES // n_audio_ctx  # mel frames per timestamp step: 2
        self.time_precision = self.input_stride * HOP_LENGTH / SAMPLE_RATE  # seconds per timestamp step: 0.02
        self.all_tokens: list[int] = []
        if initial_prompt is not None:
            self.all_tokens += tokenizer.encode(" " + initial_prompt.strip())
        self.prompt_reset_since, self.seek, self.next_id = 0, 0, 0

    @property
    def done(self) -> bool:
        return self.seek >= self.content_frames

    @property
    def position(self) -> float:
        """Seconds of the audio transcribed so far."""
        return float(min(self.seek, self.content_frames) * HOP_LENGTH / SAMPLE_RATE)

    @property
    def segment_size(self) -> int:
        """Mel frames of the current window (N_FRAMES, or what is left)."""
        return min(N_FRAMES, self.content_frames - self.seek)

    def window(self) -> torch.Tensor:
        """The current window's mel [n_mels, N_FRAMES], zero-padded (log-mel domain) past the content."""
        return WhisperEncoding.window(self.mel, self.seek, self.segment_size)

    @property
    def prompt(self) -> list[int]:
        """Ids of the text since the last prompt reset (the initial prompt first)."""
        return self.all_tokens[self.prompt_reset_since:]

    def advance(self, result: DecodingResult) -> list[Segment]:
        """Take the current window's decoded ``result``: its segments (none for a window judged silent)."""
        previous_seek, segment_size = self.seek, self.segment_size
        if self.options.is_silent(result):
            self.seek += segment_size  # silence: skip the window
            return []
        segments = []
        for start, end, piece in self._pieces(result.tokens, segment_size):
            text = self.tokenizer.decode([t for t in piece if t < self.tokenizer.eot])
            if start == end or text.strip() == "":  # instantaneous or empty: keep it, cleared
                text, piece = "", []
            self.all_tokens.extend(piece)
            segments.append(Segment(
                id=self.next_id, seek=previous_seek, start=start, end=end, text=text, tokens=list(piece),
                temperature=result.temperature, avg_logprob=result.avg_logprob,
                compression_ratio=result.compression_ratio, no_speech_prob=result.no_speech_prob))
            self.next_id += 1
        if not self.options.condition_on_previous_text or result.temperature > 0.5:
            self.prompt_reset_since = len(self.all_tokens)  # do not prompt with text sampled at a high temperature
        return segments

    def _pieces(self, tokens: list[int], segment_size: int) -> list[tuple[float, float, list[int]]]:
        """Cut a window's tokens at pairs of timestamps into ``(start, end, tokens)`` and move ``seek`` on: to the
        last complete timestamp, or past the window when the text ends with a single timestamp or has none."""
        ts_begin = self.tokenizer.timestamp_begin
        time_offset = float(self.seek * HOP_LENGTH / SAMPLE_RATE)
        is_ts = [t >= ts_begin for t in tokens]
        single_timestamp_ending = is_ts[-2:] == [False, True]
        consecutive = [i + 1 for i in range(len(tokens) - 1) if is_ts[i] and is_ts[i + 1]]
        if not consecutive:
            duration = segment_size * HOP_LENGTH / SAMPLE_RATE
            timestamps = [t for t in tokens if t >= ts_begin]
            if timestamps and timestamps[-1] != ts_begin:
                duration = (timestamps[-1] - ts_begin) * self.time_precision
            self.seek += segment_size
            return [(time_offset, time_offset + duration, tokens)]
        pieces, last = [], 0
        for cut in consecutive + ([len(tokens)] if single_timestamp_ending else []):
            piece = tokens[last:cut]
            pieces.append((time_offset + (piece[0] - ts_begin) * self.time_precision,
                           time_offset + (piece[-1] - ts_begin) * self.time_precision, piece))
            last = cut
        if single_timestamp_ending:  # no speech after the last timestamp
            self.seek += segment_size
        else:  # the unfinished last segment is decoded again in the next window
            self.seek += (tokens[last - 1] - ts_begin) * self.input_stride
        return pieces


def load_mel(encoding: WhisperEncoding, audio: Audio) -> torch.Tensor:
    """An audio's log-mel [n_mels, content_frames + N_FRAMES]; what keeps it from loading is an ``AudioError``."""
    try:
        return encoding.log_mel(audio)
    except (ValueError, OSError, RuntimeError) as e:  # missing file, AudioDecodeError, bad samples
        raise AudioError(str(e)) from e


def detect_languages(model, encoding: WhisperEncoding, mels: Sequence[torch.Tensor],
                     tokenizer: Optional[Tokenizer] = None) -> tuple[list[dict], list[Optional[torch.Tensor]]]:
    """Languages of audios on their first 30 s, as openai-whisper's ``transcribe()`` detects them (one encoder
    batch). ``mels``: [n_mels, content_frames + N_FRAMES] each -> (``{code: probability}`` per audio, per audio
    the encoder states [n_audio_ctx, n_audio_state] of that window when it is also the audio's first window to
    decode (content_frames >= N_FRAMES; a shorter first window is zero-padded instead), else None)."""
    features = encoding.encode(torch.stack([encoding.window(mel, 0) for mel in mels]))
    _, probs = detect_language(model, features, tokenizer)
    return probs, [x if mel.shape[-1] - N_FRAMES >= N_FRAMES else None for mel, x in zip(mels, features)]


def decode_with_fallback(model, tokenizer: Optional[Tokenizer], options: TranscriptionOptions,
                         features: torch.Tensor, prompts: Sequence[list[int]],
                         languages: Sequence[str]) -> list[DecodingResult]:
    """Decode windows ``features [n, n_audio_ctx, d]`` (each with its own prompt ids and language) at each
    temperature of ``options`` in turn; the rows whose result needs a fallback are decoded again, together, at
    the next temperature. A row keeps its first acceptable result (else its last one)."""
    results: list[Optional[DecodingResult]] = [None] * features.shape[0]
    todo = list(range(features.shape[0]))
    for decoding in options.decoding:
        task = DecodingTask(model, decoding, tokenizer, prompts=[prompts[i] for i in todo],
                            languages=[languages[i] for i in todo])
        index = torch.tensor(todo, device=features.device)
        for i, result in zip(todo, task.run(features if len(todo) == len(results) else features[index])):
            results[i] = result
        todo = [i for i in todo if options.needs_fallback(results[i])]
        if not todo:
            break
    return results


@dataclass(eq=False)
class Stream:
    """One audio of the scheduler. ``language`` None: detected (multilingual models). Once loaded: ``state``,
    ``info``, and ``features`` [n_audio_ctx, d], the current window's encoder states when already computed."""
    id: Hashable
    audio: Optional[Audio]
    options: TranscriptionOptions
    language: Optional[str] = None
    initial_prompt: Optional[str] = None
    state: Optional[LongFormState] = None
    info: Optional[TranscriptionInfo] = None
    features: Optional[torch.Tensor] = None


class Scheduler:
    """Transcribes the streams given to ``add``, ``batch_size`` windows at a time; ``events()`` drives it.

    ``model``: ``Whisper`` (or an accelerated wrapper); ``tokenizer`` supplies the vocabulary (default: the
    model's standard one). One ``events()`` iteration at a time.
    """

    def __init__(self, model, *, batch_size: int = 8, tokenizer: Optional[Tokenizer] = None):
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise OptionError(f"batch_size must be a positive integer, got {batch_size!r}")
        self.model, self.batch_size, self.tokenizer = model, batch_size, tokenizer
        self.encoding = WhisperEncoding(model)
        self._waiting: deque[Stream] = deque()
        self._active: list[Stream] = []
        self._ids: set = set()  # of the streams waiting or active
        self._counter = itertools.count()

    def add(self, audio: Audio, *, options: Optional[TranscriptionOptions] = None, language: Optional[str] = None,
            initial_prompt: Optional[str] = None, stream_id: Optional[Hashable] = None) -> Hashable:
        """Queue ``audio`` (a path, file bytes, or 16 kHz mono samples [n]); it is loaded when a row is free.
        Returns its id (``stream_id``, default the next integer). ``language`` and ``options.task`` are checked
        for this model now: ``OptionError``."""
        options = TranscriptionOptions() if options is None else options
        if not isinstance(options, TranscriptionOptions):
            raise TypeError(f"options must be a TranscriptionOptions, got {type(options).__name__}")
        checked_tokenizer(self.model, language, options.task, self.tokenizer)
        if stream_id is None:
            stream_id = next(i for i in self._counter if i not in self._ids)
        elif stream_id in self._ids:
            raise OptionError(f"stream_id={stream_id!r} is already in use")
        self._ids.add(stream_id)
        self._waiting.append(Stream(stream_id, audio, options, language, initial_prompt))
        return stream_id

    def events(self) -> Iterator[Event]:
        """Run until every stream added (before or while iterating) has finished or failed; call again after
        adding more. Per stream: ``Started``, then one ``Segments`` per window, then ``Finished``; or ``Failed``
        (at any point)."""
        while self._waiting or self._active:
            yield from self._admit()
            if self._active:
                yield from self._round()

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
                yield from (self._failed(s, _decoding_error(e)) for s, _ in detect)
        for stream, mel in joined:
            self._start(stream, mel, *detected.get(id(stream), (None, None)))
            yield Started(stream.id, stream.info)
            if stream.state.done:  # no content at all
                self._ids.discard(stream.id)
                yield Finished(stream.id, stream.info)
            else:
                self._active.append(stream)

    def _start(self, stream: Stream, mel: torch.Tensor, probs: Optional[dict[str, float]],
               first: Optional[torch.Tensor]) -> None:
        """The stream's tokenizer, info and long-form state, from its mel and detected ``probs`` (if any);
        ``first``: its first window's encoder states when language detection computed them."""
        content_frames = mel.shape[-1] - N_FRAMES
        language = stream.language if probs is None else max(probs, key=probs.get)
        tokenizer = checked_tokenizer(self.model, language, stream.options.task, self.tokenizer)
        code = tokenizer.language or "en"
        stream.info = TranscriptionInfo(
            language=code, language_probability=1.0 if probs is None else probs[code],
            duration=float(content_frames * HOP_LENGTH / SAMPLE_RATE), all_language_probs=probs,
            options=stream.options)
        stream.state = LongFormState(mel, content_frames, stream.options, tokenizer, stream.initial_prompt,
                                     self.model.dims.n_audio_ctx)
        stream.audio, stream.features = None, first

    def _round(self) -> Iterator[Event]:
        """Encode and decode the active streams' current windows; advance each stream."""
        active = self._active
        try:
            results = self._decode(active, self._encode(active))
        except (RuntimeError, ValueError) as e:  # e.g. out of memory: the round's streams fail, later ones go on
            self._active = []
            yield from (self._failed(s, _decoding_error(e)) for s in active)
            return
        events: list[Event] = [Segments(s.id, s.state.advance(result), s.state.position)
                               for s, result in zip(active, results)]
        self._active = [s for s in active if not s.state.done]
        for stream in active:
            if stream.state.done:
                self._ids.discard(stream.id)
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
            decoded = decode_with_fallback(self.model, self.tokenizer, options, x,
                                           [active[i].state.prompt for i in rows],
                                           [active[i].info.language for i in rows])
            for i, result in zip(rows, decoded):
                results[i] = result
        return results

    def _failed(self, stream: Stream, error: Exception) -> Failed:
        self._ids.discard(stream.id)
        stream.audio = stream.state = stream.features = None
        return Failed(stream.id, error)


def _decoding_error(e: Exception) -> DecodingError:
    error = DecodingError(f"{type(e).__name__}: {e}")
    error.__cause__ = e
    return error


__all__ = ["Event", "Failed", "Finished", "LongFormState", "Scheduler", "Segment", "Segments", "Started", "Stream",
           "TranscriptionInfo", "decode_with_fallback", "detect_languages", "load_mel"]
