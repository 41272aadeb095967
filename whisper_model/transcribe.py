"""Long-form transcription: openai-whisper's ``transcribe()`` algorithm with faster-whisper's result shape.

    segments, info = transcribe(model, "talk.wav")   # info is ready now; segments is a lazy generator
    for s in segments:
        print(f"[{s.start:.2f} -> {s.end:.2f}] {s.text}")

The audio's log-mel (30 s of silence appended) is cut into 30 s windows starting at ``seek``. Each window is
decoded with temperature fallback (a result is rejected when too repetitive, ``compression_ratio >
compression_ratio_threshold``, or too unlikely, ``avg_logprob < logprob_threshold``, unless the window looks
silent); a window judged silent (``no_speech_prob > no_speech_threshold`` and a low logprob) is skipped. Pairs
of timestamp tokens cut the text into segments; ``seek`` moves to the last complete timestamp (or the whole
window when the text ends with a single timestamp or has none). The text so far is the next window's prompt
(``condition_on_previous_text``), reset after a window decoded at temperature > 0.5.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Iterator, Optional, Sequence, Union

import torch
import tqdm

from .audio import HOP_LENGTH, N_FRAMES, SAMPLE_RATE
from .decoding import DecodingOptions, DecodingResult, DecodingTask, detect_language, tokenizer_for
from .encoding import Audio, WhisperEncoding
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
class TranscriptionOptions:
    """Every option a transcription used (the language as resolved: given, detected, or "en")."""

    language: str
    task: str
    temperature: tuple[float, ...]
    beam_size: Optional[int]
    best_of: Optional[int]
    patience: Optional[float]
    length_penalty: Optional[float]
    compression_ratio_threshold: Optional[float]
    logprob_threshold: Optional[float]
    no_speech_threshold: Optional[float]
    condition_on_previous_text: bool
    initial_prompt: Optional[str]
    without_timestamps: bool
    suppress_tokens: Optional[Union[str, tuple[int, ...]]]
    suppress_blank: bool
    max_initial_timestamp: Optional[float]


@dataclass(frozen=True)
class TranscriptionInfo:
    language: str
    language_probability: float  # 1.0 when the language was given (or the model is English-only)
    duration: float  # seconds of audio
    all_language_probs: Optional[dict[str, float]]  # set when the language was detected
    options: TranscriptionOptions


def _temperatures(temperature: Union[float, Sequence[float]]) -> tuple[float, ...]:
    temps = (temperature,) if isinstance(temperature, (int, float)) else tuple(temperature)
    if not temps or any(not isinstance(t, (int, float)) or t < 0 for t in temps):
        raise ValueError(f"temperature must be a number >= 0 or a non-empty sequence of them, got {temperature!r}")
    return tuple(float(t) for t in temps)


def _decoding_options(opts: TranscriptionOptions, t: float) -> DecodingOptions:
    """The windows' options at temperature ``t`` (language and prompt are given per audio): beam search
    (beam_size, patience) only at t == 0, best_of only at t > 0, as openai-whisper's fallback does."""
    return DecodingOptions(
        task=opts.task, temperature=t,
        beam_size=opts.beam_size if t == 0 else None, patience=opts.patience if t == 0 else None,
        best_of=opts.best_of if t > 0 else None, length_penalty=opts.length_penalty,
        suppress_tokens=opts.suppress_tokens, suppress_blank=opts.suppress_blank,
        without_timestamps=opts.without_timestamps, max_initial_timestamp=opts.max_initial_timestamp)


def _needs_fallback(r: DecodingResult, opts: TranscriptionOptions) -> bool:
    low_logprob = opts.logprob_threshold is not None and r.avg_logprob < opts.logprob_threshold
    if opts.no_speech_threshold is not None and r.no_speech_prob > opts.no_speech_threshold and low_logprob:
        return False  # silence: no point in sampling again
    too_repetitive = (opts.compression_ratio_threshold is not None
                      and r.compression_ratio > opts.compression_ratio_threshold)
    return too_repetitive or low_logprob


def decode_with_fallback(model, tokenizer: Tokenizer, opts: TranscriptionOptions, features: torch.Tensor,
                         prompts: Sequence[list[int]], languages: Sequence[str]) -> list[DecodingResult]:
    """Decode windows ``features [n, n_audio_ctx, d]`` (each with its own prompt ids and language) at each
    temperature of ``opts.temperature`` in turn; the rows whose result needs a fallback are decoded again,
    together, at the next temperature. A row keeps its first acceptable result (else its last one)."""
    results: list[Optional[DecodingResult]] = [None] * features.shape[0]
    todo = list(range(features.shape[0]))
    for t in opts.temperature:
        task = DecodingTask(model, _decoding_options(opts, t), tokenizer, prompts=[prompts[i] for i in todo],
                            languages=[languages[i] for i in todo])
        index = torch.tensor(todo, device=features.device)
        for i, result in zip(todo, task.run(features if len(todo) == len(results) else features[index])):
            results[i] = result
        todo = [i for i in todo if _needs_fallback(results[i], opts)]
        if not todo:
            break
    return results


def transcription_options(
    model, tokenizer: Optional[Tokenizer] = None, *, language: Optional[str] = None, task: str = "transcribe",
    temperature: Union[float, Sequence[float]] = (0.0, 0.2, 0.4, 0.6, 0.8, 1.0), beam_size: Optional[int] = None,
    best_of: Optional[int] = 5, patience: Optional[float] = None, length_penalty: Optional[float] = None,
    compression_ratio_threshold: Optional[float] = 2.4, logprob_threshold: Optional[float] = -1.0,
    no_speech_threshold: Optional[float] = 0.6, condition_on_previous_text: bool = True,
    initial_prompt: Optional[str] = None, without_timestamps: bool = False,
    suppress_tokens: Optional[Union[str, Sequence[int]]] = "-1", suppress_blank: bool = True,
    max_initial_timestamp: Optional[float] = 1.0,
) -> tuple[TranscriptionOptions, Optional[str]]:
    """The options of ``transcribe`` / ``transcribe_batch`` (openai-whisper's names and defaults), checked for
    ``model``: ``(options, language)`` where ``language`` is the one asked for (None: detect per audio on a
    multilingual model) and ``options.language`` is a placeholder until an audio's language is resolved.
    ValueError names the offending option."""
    opts = TranscriptionOptions(
        language="en", task=task, temperature=_temperatures(temperature), beam_size=beam_size, best_of=best_of,
        patience=patience, length_penalty=length_penalty, compression_ratio_threshold=compression_ratio_threshold,
        logprob_threshold=logprob_threshold, no_speech_threshold=no_speech_threshold,
        condition_on_previous_text=condition_on_previous_text, initial_prompt=initial_prompt,
        without_timestamps=without_timestamps,
        suppress_tokens=suppress_tokens if suppress_tokens is None or isinstance(suppress_tokens, str)
        else tuple(int(t) for t in suppress_tokens),
        suppress_blank=suppress_blank, max_initial_timestamp=max_initial_timestamp)
    tokenizer_for(model, language, task, tokenizer)  # validates language and task before any audio work
    for t in opts.temperature:
        _decoding_options(opts, t)  # validates the decoding options at every temperature
    if (beam_size is not None or patience is not None) and 0 not in opts.temperature:
        raise ValueError("beam_size and patience need a temperature of 0 in temperature (beam search does not "
                         "sample); use best_of for temperatures > 0")
    return opts, language


def file_info(opts: TranscriptionOptions, tokenizer: Tokenizer, content_frames: int,
              language_probs: Optional[dict[str, float]]) -> TranscriptionInfo:
    """An audio's info: its language from ``tokenizer`` (given, detected with ``language_probs``, or "en")."""
    language = tokenizer.language or "en"
    probability = 1.0 if language_probs is None else language_probs[language]
    return TranscriptionInfo(language=language, language_probability=probability,
                             duration=float(content_frames * HOP_LENGTH / SAMPLE_RATE),
                             all_language_probs=language_probs, options=replace(opts, language=language))


def transcribe(model, audio: Audio, *, tokenizer: Optional[Tokenizer] = None, progress: bool = False,
               **options) -> tuple[Iterator[Segment], TranscriptionInfo]:
    """Transcribe (or translate) ``audio`` of any length: ``(lazy segment generator, info)``.

    ``model``: ``Whisper`` (or an accelerated wrapper); ``audio``: a path, file bytes, or 16 kHz mono samples [n];
    ``tokenizer`` supplies the vocabulary (default: the model's standard one); ``options``: those of
    ``transcription_options`` (openai-whisper's names and defaults). ``language=None`` detects it on the first
    30 s (multilingual models; English-only models use "en"). Options are checked here, before decoding:
    ValueError names the offending option (TypeError for an unknown one).
    """
    opts, language = transcription_options(model, tokenizer, **options)
    encoding = WhisperEncoding(model)
    mel = encoding.log_mel(audio)  # [n_mels, content_frames + N_FRAMES]
    content_frames = mel.shape[-1] - N_FRAMES

    all_probs, first = None, None
    if language is None and model.is_multilingual:
        first = encoding.encode(encoding.window(mel, 0)[None])  # the padded mel's first 30 s
        _, (all_probs,) = detect_language(model, first, tokenizer)
        language = max(all_probs, key=all_probs.get)
    tokenizer = tokenizer_for(model, language, opts.task, tokenizer)
    info = file_info(opts, tokenizer, content_frames, all_probs)
    if content_frames < N_FRAMES:
        first = None  # the first window is then shorter than the detection window: zero-padded, not the same
    state = FileState(mel, content_frames, info.options, tokenizer, model.dims.n_audio_ctx)
    return _segments(model, encoding, state, progress, first), info


def _segments(model, encoding: WhisperEncoding, state: "FileState", progress: bool,
              first: Optional[torch.Tensor]) -> Iterator[Segment]:
    """``first``: encoder states of frames [0, N_FRAMES) when already computed (language detection)."""
    with tqdm.tqdm(total=state.content_frames, unit="frames", disable=not progress) as pbar:
        while not state.done:
            previous_seek = state.seek
            if state.seek == 0 and first is not None:
                features = first
            else:
                features = encoding.encode(state.window()[None])
            (result,) = decode_with_fallback(model, state.tokenizer, state.opts, features, [state.prompt],
                                             [state.opts.language])
            yield from state.advance(result)
            pbar.update(min(state.content_frames, state.seek) - previous_seek)


class FileState:
    """One audio's long-form progress (the state of openai-whisper's ``transcribe()`` loop): the window at
    ``seek``, its prompt, and ``advance`` which cuts a decoded window into segments and moves ``seek`` and the
    prompt on. Shared by ``transcribe`` (one audio) and ``batch.transcribe_batch`` (many at once).

    ``mel``: [n_mels, content_frames + N_FRAMES] (30 s of silence appended); ``opts.language`` is the audio's.
    """

    def __init__(self, mel: torch.Tensor, content_frames: int, opts: TranscriptionOptions, tokenizer: Tokenizer,
                 n_audio_ctx: int):
        self.mel, self.content_frames, self.opts, self.tokenizer = mel, content_frames, opts, tokenizer
        self.input_stride = N_FRAMES // n_audio_ctx  # mel frames per timestamp step: 2
        self.time_precision = self.input_stride * HOP_LENGTH / SAMPLE_RATE  # seconds per timestamp step: 0.02
        self.all_tokens: list[int] = []
        if opts.initial_prompt is not None:
            self.all_tokens += tokenizer.encode(" " + opts.initial_prompt.strip())
        self.prompt_reset_since, self.seek, self.next_id = 0, 0, 0

    @property
    def done(self) -> bool:
        return self.seek >= self.content_frames

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
        opts, tokenizer = self.opts, self.tokenizer
        ts_begin, eot = tokenizer.timestamp_begin, tokenizer.eot
        previous_seek, segment_size = self.seek, self.segment_size
        time_offset = float(self.seek * HOP_LENGTH / SAMPLE_RATE)
        if opts.no_speech_threshold is not None and result.no_speech_prob > opts.no_speech_threshold and not (
                opts.logprob_threshold is not None and result.avg_logprob > opts.logprob_threshold):
            self.seek += segment_size  # silence: skip the window
            return []

        tokens = result.tokens
        is_ts = [t >= ts_begin for t in tokens]
        single_timestamp_ending = is_ts[-2:] == [False, True]
        pieces: list[tuple[float, float, list[int]]] = []  # (start, end, tokens)
        consecutive = [i + 1 for i in range(len(tokens) - 1) if is_ts[i] and is_ts[i + 1]]
        if consecutive:  # cut at every pair of timestamps
            slices = consecutive + ([len(tokens)] if single_timestamp_ending else [])
            last = 0
            for cut in slices:
                piece = tokens[last:cut]
                pieces.append((time_offset + (piece[0] - ts_begin) * self.time_precision,
                               time_offset + (piece[-1] - ts_begin) * self.time_precision, piece))
                last = cut
            if single_timestamp_ending:  # no speech after the last timestamp
                self.seek += segment_size
            else:  # the unfinished last segment is decoded again in the next window
                self.seek += (tokens[last - 1] - ts_begin) * self.input_stride
        else:
            duration = segment_size * HOP_LENGTH / SAMPLE_RATE
            timestamps = [t for t in tokens if t >= ts_begin]
            if timestamps and timestamps[-1] != ts_begin:
                duration = (timestamps[-1] - ts_begin) * self.time_precision
            pieces.append((time_offset, time_offset + duration, tokens))
            self.seek += segment_size

        segments = []
        for start, end, piece in pieces:
            text = tokenizer.decode([t for t in piece if t < eot])
            if start == end or text.strip() == "":  # instantaneous or empty: keep it, cleared
                text, piece = "", []
            self.all_tokens.extend(piece)
            segments.append(Segment(
                id=self.next_id, seek=previous_seek, start=start, end=end, text=text, tokens=list(piece),
                temperature=result.temperature, avg_logprob=result.avg_logprob,
                compression_ratio=result.compression_ratio, no_speech_prob=result.no_speech_prob))
            self.next_id += 1
        if not opts.condition_on_previous_text or result.temperature > 0.5:
            self.prompt_reset_since = len(self.all_tokens)  # do not prompt with text sampled at a high temperature
        return segments


def result_dict(segments: Sequence[Segment], info: TranscriptionInfo) -> dict:
    """openai-whisper's result: {"text", "segments": [dicts], "language"}; ``segments`` may be the generator."""
    segments = [asdict(s) for s in segments]
    return {"text": "".join(s["text"] for s in segments), "segments": segments, "language": info.language}
