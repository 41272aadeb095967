"""One audio's long-form transcription, openai-whisper's ``transcribe()`` loop in parts the scheduler drives.

``LongFormState`` holds an audio's window position (``seek``) and prompt and cuts each decoded window into
``Segment``s; ``decode_with_fallback`` decodes a batch of windows with temperature fallback; ``load_mel`` and
``detect_languages`` start an audio (its log-mel, and its language on the first 30 s).
"""
from __future__ import annotations

import functools
from dataclasses import dataclass, replace
from typing import Callable, Optional, Sequence

import torch

from .decode.language import detect_language
from .decode.options import DecodingResult
from .decode.task import DecodingTask
from .decode.timing import Word, WordTiming, place_words
from .encoding import Audio, WhisperEncoding
from .errors import audio_errors
from .io.audio import HOP_LENGTH, N_FRAMES, SAMPLE_RATE
from .io.mel_stream import StreamedLogMel
from .io.tokenizer import Tokenizer
from .options import TranscriptionOptions
from .words import Piece, Window, last_end, seek_after_words, skip_hallucinations

RowsObserver = Callable[[list[int], torch.Tensor], None]  # (window rows, tokens sampled so far [rows, group, t])


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
    words: Optional[list[Word]] = None  # with word_timestamps: the segment's words, in order


@dataclass(frozen=True)
class TranscriptionInfo:
    language: str  # given, detected, or "en" (English-only models)
    language_probability: float  # 1.0 when the language was given (or the model is English-only)
    duration: float  # seconds of audio
    all_language_probs: Optional[dict[str, float]]  # set when the language was detected
    options: TranscriptionOptions
    duration_after_vad: Optional[float] = None  # seconds of speech decoded (VAD chunking or filtering), else None

@dataclass
class WindowCut:
    """A decoded window cut into pieces (``LongFormState.cut``), before they become segments (``emit``):
    ``keep`` False drops the window (silence, or a hallucination after a gap)."""
    result: DecodingResult
    window: Window
    pieces: list[Piece]
    single_timestamp_ending: bool = False
    absorbed: bool = False  # the rest after the last timestamp was too short to decode and joined the last piece
    keep: bool = True

    def texts(self, eot: int) -> list[list[int]]:
        """Each piece's text ids (no timestamps)."""
        return [[t for t in p.tokens if t < eot] for p in self.pieces]


class LongFormState:
    """One audio's long-form progress (the state of openai-whisper's ``transcribe()`` loop): the window at
    ``seek``, its prompt, and per decoded window ``cut`` (its pieces; ``seek`` moved on), ``time_words`` (with
    word timestamps: the pieces' words, and what they change) and ``emit`` (the segments; the prompt moved on).
    ``mel``: the audio's log-mel, read a window at a time (``io.mel_stream.StreamedLogMel``: its
    ``content_frames`` and ``window(start, n)``). ``options.clip_timestamps``: only those spans are decoded, in
    order. ``min_window``: mel frames; when a window leaves less than this of the audio after its last complete
    timestamp, that rest is not decoded as a window of its own: the text after the last pair of timestamps becomes
    the last segment, up to the audio's end (VAD chunks: a fraction of a second at a chunk's end, mostly padding,
    invites a hallucination). 0 (openai-whisper's loop): every rest is decoded."""

    def __init__(self, mel: StreamedLogMel, options: TranscriptionOptions, tokenizer: Tokenizer,
                 initial_prompt: Optional[str], n_audio_ctx: int, min_window: int = 0, n_text_ctx: int = 448):
        self.mel, self.content_frames, self.options, self.tokenizer = mel, mel.content_frames, options, tokenizer
        self.min_window = min_window
        self.input_stride = N_FRAMES // n_audio_ctx  # mel frames per timestamp step: 2
        self.time_precision = self.input_stride * HOP_LENGTH / SAMPLE_RATE  # seconds per timestamp step: 0.02
        self.initial_tokens = tokenizer.encode(" " + initial_prompt.strip()) if initial_prompt is not None else []
        self.all_tokens: list[int] = list(self.initial_tokens)
        self.carried = n_text_ctx // 2 - 1 - len(self.initial_tokens)  # previous-text ids after a carried prompt
        self.prompt_reset_since, self.next_id = 0, 0
        self.last_speech = 0.0  # seconds: the end of the last word given out (word timestamps)
        self.clips = clip_spans(options.clip_timestamps, self.content_frames)
        self.clip, self.seek = 0, self.clips[0][0] if self.clips else 0
        self._settle()

    def _settle(self) -> None:
        """Move ``seek`` into the current clip, or on to the next clip once it is past this one."""
        while self.clip < len(self.clips):
            start, end = self.clips[self.clip]
            if self.seek < start:
                self.seek = start
            if self.seek < end:
                return
            self.clip += 1
            if self.clip < len(self.clips):
                self.seek = self.clips[self.clip][0]

    @property
    def done(self) -> bool:
        return self.clip >= len(self.clips)

    @property
    def position(self) -> float:
        """Seconds of the audio transcribed so far."""
        return float(min(self.seek, self.content_frames) * HOP_LENGTH / SAMPLE_RATE)

    @property
    def segment_size(self) -> int:
        """Mel frames of the current window (N_FRAMES, or what is left of the audio or the clip)."""
        end = self.clips[self.clip][1] if not self.done else self.content_frames
        return max(0, min(N_FRAMES, self.content_frames - self.seek, end - self.seek))

    def reached(self, sampled: torch.Tensor) -> float:
        """Seconds of the audio that the current window's text has reached: its latest timestamp token among
        ``sampled`` (any shape of ids), or the window's start when there is none."""
        stamps = sampled[sampled >= self.tokenizer.timestamp_begin]
        steps = int(stamps.max()) - self.tokenizer.timestamp_begin if stamps.numel() else 0
        frames = self.seek + min(steps * self.input_stride, self.segment_size)
        return float(min(frames, self.content_frames) * HOP_LENGTH / SAMPLE_RATE)

    def window(self) -> torch.Tensor:
        """The current window's mel [n_mels, N_FRAMES], zero-padded (log-mel domain) past the content."""
        return self.mel.window(self.seek, self.segment_size)

    @property
    def prompt(self) -> list[int]:
        """Ids of the text since the last prompt reset (the initial prompt first). ``carry_initial_prompt``: the
        initial prompt, then the last of that text that fits in half the text context (none when the initial
        prompt fills it alone)."""
        if not self.options.carry_initial_prompt:
            return self.all_tokens[self.prompt_reset_since:]
        since = self.all_tokens[max(len(self.initial_tokens), self.prompt_reset_since):]
        return self.initial_tokens + (since[-self.carried:] if self.carried > 0 else [])

    def advance(self, result: DecodingResult) -> list[Segment]:
        """``cut`` then ``emit`` (no word timestamps): the current window's segments."""
        return self.emit(self.cut(result))

    def cut(self, result: DecodingResult) -> WindowCut:
        """Cut the current window's decoded ``result`` into pieces and move ``seek`` on (past a silent window)."""
        window = Window(self.seek, self.segment_size, self.content_frames)
        if self.options.is_silent(result):
            self.seek += window.size
            return WindowCut(result, window, [], keep=False)
        pieces, single, absorbed = self._pieces(result.tokens, window.size)
        eot = self.tokenizer.eot
        return WindowCut(result, window, [Piece(a, b, ids, self.tokenizer.decode([t for t in ids if t < eot]))
                                          for a, b, ids in pieces], single, absorbed)

    def time_words(self, cut: WindowCut, alignment: list[WordTiming]) -> None:
        """The cut's words from the window's ``alignment`` (``decode.alignment``), the pieces' edges and the next
        seek from them, and (``hallucination_silence_threshold``) the silence around hallucinations skipped."""
        options, window = self.options, cut.window
        spans = [(p.start, p.end, text) for p, text in zip(cut.pieces, cut.texts(self.tokenizer.eot))]
        placed, _ = place_words(alignment, spans, window.time_offset, self.last_speech,
                                options.prepend_punctuations, options.append_punctuations)
        for piece, (start, end, words) in zip(cut.pieces, placed):
            piece.start, piece.end, piece.words = start, end, words
        if not cut.absorbed:
            self.seek = seek_after_words(cut.pieces, window, self.seek, cut.single_timestamp_ending)
        if options.hallucination_silence_threshold is not None:
            self.seek, cut.keep = skip_hallucinations(cut.pieces, window, self.seek, cut.single_timestamp_ending,
                                                      self.last_speech, options.hallucination_silence_threshold)
        end = last_end(cut.pieces) if cut.keep else None
        if end is not None:
            self.last_speech = end

    def emit(self, cut: WindowCut) -> list[Segment]:
        """The cut's segments (instantaneous or empty ones kept, cleared); the prompt moves on."""
        segments = []
        for p in cut.pieces if cut.keep else []:
            text, ids, words = p.text, p.tokens, p.words
            if p.start == p.end or text.strip() == "":
                text, ids, words = "", [], None if words is None else []
            self.all_tokens.extend(ids)
            r = cut.result
            segments.append(Segment(
                id=self.next_id, seek=cut.window.seek, start=p.start, end=p.end, text=text, tokens=list(ids),
                temperature=r.temperature, avg_logprob=r.avg_logprob, compression_ratio=r.compression_ratio,
                no_speech_prob=r.no_speech_prob, words=words))
            self.next_id += 1
        if cut.keep and (not self.options.conditioned or cut.result.temperature > 0.5):
            self.prompt_reset_since = len(self.all_tokens)  # do not prompt with text sampled at a high temperature
        self._settle()
        return segments

    def _pieces(self, tokens: list[int], segment_size: int) -> tuple[list[tuple[float, float, list[int]]], bool, bool]:
        """Cut a window's tokens at pairs of timestamps into ``(start, end, tokens)`` and move ``seek`` on: to the
        last complete timestamp, or past the window when the text ends with a single timestamp or has none.
        Also returns whether the text ended with a single timestamp, and whether a too short rest was absorbed."""
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
            return [(time_offset, time_offset + duration, tokens)], single_timestamp_ending, False
        pieces, last = [], 0
        for cut in consecutive + ([len(tokens)] if single_timestamp_ending else []):
            piece = tokens[last:cut]
            pieces.append((time_offset + (piece[0] - ts_begin) * self.time_precision,
                           time_offset + (piece[-1] - ts_begin) * self.time_precision, piece))
            last = cut
        if single_timestamp_ending:  # no speech after the last timestamp
            self.seek += segment_size
            return pieces, True, False
        rest = segment_size - (tokens[last - 1] - ts_begin) * self.input_stride  # frames after the last timestamp
        if self.seek + segment_size >= self.content_frames and rest < self.min_window:  # too little to decode
            if any(t < ts_begin for t in tokens[last:]):
                pieces.append((time_offset + (tokens[last] - ts_begin) * self.time_precision,
                               time_offset + segment_size * HOP_LENGTH / SAMPLE_RATE, tokens[last:]))
            self.seek += segment_size
            return pieces, False, True
        self.seek += (tokens[last - 1] - ts_begin) * self.input_stride  # the unfinished last segment comes again
        return pieces, False, False


def clip_spans(clip_timestamps: Sequence[float], content_frames: int) -> list[tuple[int, int]]:
    """openai-whisper's ``clip_timestamps`` (seconds: start, end, start, end, ...; an odd count runs the last clip
    to the end) -> [(first frame, end frame)], ends within the audio; no clips: the whole audio."""
    points = [round(t * SAMPLE_RATE / HOP_LENGTH) for t in clip_timestamps] or [0]
    if len(points) % 2:
        points.append(content_frames)
    return [(start, min(end, content_frames)) for start, end in zip(points[::2], points[1::2])]


def load_mel(encoding: WhisperEncoding, audio: Audio) -> StreamedLogMel:
    """An audio's log-mel, computed as it is decoded and read back a window at a time (bounded memory at any
    length); what keeps it from loading is an ``AudioError``."""
    with audio_errors():
        return encoding.stream_mel(audio)


def detect_languages(model, encoding: WhisperEncoding, mels: Sequence[StreamedLogMel],
                     tokenizer: Optional[Tokenizer] = None) -> tuple[list[dict], list[Optional[torch.Tensor]]]:
    """Languages of audios on their first 30 s, as openai-whisper's ``transcribe()`` detects them (one encoder
    batch). ``mels``: ``load_mel``'s -> (``{code: probability}`` per audio, per audio
    the encoder states [n_audio_ctx, n_audio_state] of that window when it is also the audio's first window to
    decode (content_frames >= N_FRAMES; a shorter first window is zero-padded instead), else None)."""
    features = encoding.encode(torch.stack([mel.window(0) for mel in mels]))
    _, probs = detect_language(model, features, tokenizer)
    return probs, [x if mel.content_frames >= N_FRAMES else None for mel, x in zip(mels, features)]


def decode_with_fallback(model, tokenizer: Optional[Tokenizer], options: TranscriptionOptions,
                         features: torch.Tensor, prompts: Sequence[list[int]], languages: Sequence[str],
                         observer: Optional[RowsObserver] = None) -> list[DecodingResult]:
    """Decode windows ``features [n, n_audio_ctx, d]`` (each with its own prompt ids and language) at each
    temperature of ``options`` in turn; the rows whose result needs a fallback are decoded again, together, at
    the next temperature. A row keeps its first acceptable result (else its last one). ``observer(rows,
    sampled)``: the tokens sampled so far [len(rows), n_group, t] of the windows ``rows`` (``StepObserver``)."""
    results: list[Optional[DecodingResult]] = [None] * features.shape[0]
    todo = list(range(features.shape[0]))
    for decoding in options.decoding:
        task = DecodingTask(model, decoding, tokenizer, prompts=[prompts[i] for i in todo],
                            languages=[languages[i] for i in todo],
                            observer=None if observer is None else functools.partial(observer, todo))
        index = torch.tensor(todo, device=features.device)
        for i, result in zip(todo, task.run(features if len(todo) == len(results) else features[index])):
            results[i] = result
        todo = [i for i in todo if options.needs_fallback(results[i])]
        if not todo:
            break
    return results


def moved(segment: Segment, segment_id: int, start: int, end: int) -> Segment:
    """``segment`` of the chunk of samples [start, end) (``start`` a whole mel frame) on the file's timeline; times
    past the chunk's end (timestamps in the window's padding) are the chunk's end."""
    offset, last = start / SAMPLE_RATE, end / SAMPLE_RATE
    words = None if segment.words is None else [
        replace(w, start=round(min(w.start + offset, last), 2), end=round(min(w.end + offset, last), 2))
        for w in segment.words]
    return replace(segment, id=segment_id, seek=segment.seek + start // HOP_LENGTH,
                   start=min(segment.start + offset, last), end=min(segment.end + offset, last), words=words)


__all__ = ["LongFormState", "Segment", "WindowCut", "clip_spans", "TranscriptionInfo", "decode_with_fallback",
           "detect_languages", "load_mel", "moved"]
