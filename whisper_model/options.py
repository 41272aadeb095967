"""Transcription options: openai-whisper's names, types and defaults, checked once when they are made.

    options = TranscriptionOptions(beam_size=5, temperature=(0.0, 0.4, 0.8))   # OptionError names a bad one
    segments, info = transcribe(model, "clip.wav", options=options, language="en")
    segments, info = transcribe(model, "clip.wav", beam_size=5)                  # the same, as keywords

The per-audio values (``language``, ``initial_prompt``) are not options: they are given per call (or per stream
of the scheduler), and the language an audio was decoded in is ``TranscriptionInfo.language``.
"""
from __future__ import annotations

import functools
import inspect
import math
import numbers
from collections.abc import Iterable
from dataclasses import dataclass, field, fields
from typing import Optional, Sequence, Union

from .decode import DecodingOptions, DecodingResult, tokenizer_for
from .decode.timing import APPEND_PUNCTUATIONS, PREPEND_PUNCTUATIONS
from .errors import OptionError
from .io.tokenizer import Tokenizer


@dataclass(frozen=True)
class TranscriptionOptions:
    """How to transcribe an audio of any length (openai-whisper's ``transcribe()`` options).

    ``temperature``: the fallback schedule (a number is a schedule of one); a window's result is decoded again at
    the next temperature when too repetitive (``compression_ratio > compression_ratio_threshold``) or too
    unlikely (``avg_logprob < logprob_threshold``) unless it looks silent (``no_speech_prob >
    no_speech_threshold``). ``beam_size`` / ``patience`` apply at temperature 0, ``best_of`` at temperatures > 0.
    ``decoding`` holds the window options of each temperature, built (and checked) once here. ``best_of`` is 5,
    the default of openai-whisper's command line (and faster-whisper's); openai-whisper's Python ``transcribe()``
    samples one candidate unless told (``best_of=None`` here does the same, and draws as it does).

    ``condition_on_previous_text``: prompt each window with the text before it. None (the default) means True
    on the sequential path (openai-whisper's default) and False for VAD chunks, which are decoded in parallel
    and so never see the previous chunk's text (an explicit True with ``chunking="vad"`` is an ``OptionError``).
    ``carry_initial_prompt``: the initial prompt starts every window's prompt, not only the first window's
    (the previous text follows it, as much as fits in half the text context).
    ``sample_len``: most tokens decoded per window (None: n_text_ctx // 2, as openai-whisper).
    ``stop_repetition_loops`` (not openai-whisper's; only with a ``compression_ratio_threshold``): a window whose
    text starts repeating one block of tokens (``decode.loops``) is ended at once and fails the repetition check,
    so the fallback acts within a few dozen tokens instead of 224 per temperature; windows without such a loop
    decode exactly as openai-whisper's. False: every window runs to ``sample_len`` as openai-whisper's does.
    """

    task: str = "transcribe"
    temperature: Union[float, tuple[float, ...]] = (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)
    beam_size: Optional[int] = None
    best_of: Optional[int] = 5
    patience: Optional[float] = None
    length_penalty: Optional[float] = None
    compression_ratio_threshold: Optional[float] = 2.4
    logprob_threshold: Optional[float] = -1.0
    no_speech_threshold: Optional[float] = 0.6
    condition_on_previous_text: Optional[bool] = None
    carry_initial_prompt: bool = False
    stop_repetition_loops: bool = True
    without_timestamps: bool = False
    suppress_tokens: Optional[Union[str, tuple[int, ...]]] = "-1"
    suppress_blank: bool = True
    max_initial_timestamp: Optional[float] = 1.0
    sample_len: Optional[int] = None
    word_timestamps: bool = False
    prepend_punctuations: str = PREPEND_PUNCTUATIONS
    append_punctuations: str = APPEND_PUNCTUATIONS
    clip_timestamps: Union[str, tuple[float, ...]] = "0"
    hallucination_silence_threshold: Optional[float] = None
    decoding: tuple[DecodingOptions, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self):
        temps = self.temperature
        temps = (temps,) if isinstance(temps, (int, float)) else tuple(temps)
        if not temps or any(isinstance(t, bool) or not isinstance(t, (int, float)) or t < 0 for t in temps):
            raise OptionError(f"temperature must be a number >= 0 or a non-empty sequence of them, "
                              f"got {self.temperature!r}")
        object.__setattr__(self, "temperature", tuple(float(t) for t in temps))
        if self.suppress_tokens is not None and not isinstance(self.suppress_tokens, str):
            object.__setattr__(self, "suppress_tokens", tuple(int(t) for t in self.suppress_tokens))
        self._check_word_options()
        for name in ("carry_initial_prompt", "stop_repetition_loops", "word_timestamps"):
            if not isinstance(getattr(self, name), bool):
                raise OptionError(f"{name} must be True or False, got {getattr(self, name)!r}")
        if self.condition_on_previous_text not in (None, True, False):
            raise OptionError(f"condition_on_previous_text must be True, False or None (the path's default), "
                              f"got {self.condition_on_previous_text!r}")
        try:
            decoding = tuple(self._window_options(t) for t in self.temperature)
        except ValueError as e:  # DecodingOptions names the option
            raise OptionError(str(e)) from None
        object.__setattr__(self, "decoding", decoding)

    def _check_word_options(self) -> None:
        """``clip_timestamps`` as a tuple of seconds; the punctuations and the threshold checked."""
        object.__setattr__(self, "clip_timestamps", clip_seconds(self.clip_timestamps))
        for name in ("prepend_punctuations", "append_punctuations"):
            if not isinstance(getattr(self, name), str):
                raise OptionError(f"{name} must be a string of punctuation marks, got {getattr(self, name)!r}")
        threshold = self.hallucination_silence_threshold
        if threshold is not None:
            if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or not threshold > 0:
                raise OptionError(f"hallucination_silence_threshold must be a number of seconds > 0 or None, "
                                  f"got {threshold!r}")
            object.__setattr__(self, "hallucination_silence_threshold", float(threshold))

    @property
    def clipped(self) -> bool:
        """Whether ``clip_timestamps`` selects parts of the audio (not the whole audio from 0)."""
        return self.clip_timestamps not in ((), (0.0,))

    def _window_options(self, t: float) -> DecodingOptions:
        """A window's options at temperature ``t`` (language and prompt are given per audio): beam search
        (beam_size, patience) only at t == 0, best_of only at t > 0, as openai-whisper's fallback does."""
        return DecodingOptions(
            task=self.task, temperature=t,
            beam_size=self.beam_size if t == 0 else None, patience=self.patience if t == 0 else None,
            best_of=self.best_of if t > 0 else None, length_penalty=self.length_penalty,
            suppress_tokens=self.suppress_tokens, suppress_blank=self.suppress_blank,
            without_timestamps=self.without_timestamps, max_initial_timestamp=self.max_initial_timestamp,
            sample_len=self.sample_len,
            stop_loops=self.stop_repetition_loops and self.compression_ratio_threshold is not None)

    @property
    def conditioned(self) -> bool:
        """Whether windows are prompted with the text before them (None: yes, the sequential default)."""
        return self.condition_on_previous_text is not False

    def needs_fallback(self, result: DecodingResult) -> bool:
        """Whether a window's ``result`` is rejected (decoded again at the next temperature)."""
        low_logprob = self.logprob_threshold is not None and result.avg_logprob < self.logprob_threshold
        if self.no_speech_threshold is not None and result.no_speech_prob > self.no_speech_threshold and low_logprob:
            return False  # silence: no point in sampling again
        too_repetitive = (self.compression_ratio_threshold is not None
                          and (result.compression_ratio > self.compression_ratio_threshold or result.looped))
        return too_repetitive or low_logprob

    def is_silent(self, result: DecodingResult) -> bool:
        """Whether a window's accepted ``result`` is skipped as silence (no segments)."""
        confident = self.logprob_threshold is not None and result.avg_logprob > self.logprob_threshold
        return (self.no_speech_threshold is not None and result.no_speech_prob > self.no_speech_threshold
                and not confident)


def clip_seconds(clips: Union[str, Sequence[float]]) -> tuple[float, ...]:
    """openai-whisper's ``clip_timestamps`` (``"start,end,start,end,..."`` seconds, or a sequence of numbers) as a
    tuple of floats, each >= 0 and each clip's end after its start (an odd count: the last clip has no end)."""
    if isinstance(clips, str):
        try:
            seconds = [float(part) for part in clips.split(",")] if clips.strip() else []
        except ValueError:
            raise OptionError(f"clip_timestamps must be comma-separated seconds, start,end,start,end,... (an odd "
                              f"count: the last clip runs to the end), got {clips!r}") from None
    else:
        items = list(clips) if isinstance(clips, Iterable) else None
        if items is None or not all(isinstance(t, numbers.Real) and not isinstance(t, bool) for t in items):
            raise OptionError(f"clip_timestamps must be a string 'start,end,...' or a sequence of seconds, "
                              f"got {clips!r}")
        seconds = [float(t) for t in items]
    for k, t in enumerate(seconds):
        if not math.isfinite(t) or t < 0:
            raise OptionError(f"clip_timestamps must be seconds >= 0, got {t:g} in {clips!r}")
        if k % 2 and t <= seconds[k - 1]:
            raise OptionError(f"clip_timestamps: each clip must end after its start, got the clip {seconds[k - 1]:g} "
                              f"to {t:g} in {clips!r}")
    return tuple(seconds)


def checked_tokenizer(model, language: Optional[str], task: str, base: Optional[Tokenizer] = None) -> Tokenizer:
    """``decode.tokenizer_for`` (the model's checks of ``language`` and ``task``) raising ``OptionError``."""
    try:
        return tokenizer_for(model, language, task, base)
    except ValueError as e:
        raise OptionError(str(e)) from None


OPTION_NAMES = tuple(f.name for f in fields(TranscriptionOptions) if f.init)


def option_keywords(fn):
    """Decorate ``fn(..., *, options: TranscriptionOptions | None = None, ...)`` so that it also takes each option
    as a keyword (``fn(audio, beam_size=5)``): the keywords make ``options`` once, here, and ``inspect.signature``
    (``help``) lists them with their types and defaults after ``fn``'s own parameters. Giving ``options`` and
    option keywords together is a TypeError; a bad value is an ``OptionError``."""
    signature = inspect.signature(fn)
    if "options" not in signature.parameters:
        raise TypeError(f"{fn.__qualname__} needs a keyword-only 'options' parameter")
    extra = [inspect.Parameter(f.name, inspect.Parameter.KEYWORD_ONLY, default=f.default, annotation=f.type)
             for f in fields(TranscriptionOptions) if f.init]

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        given = {name: kwargs.pop(name) for name in OPTION_NAMES if name in kwargs}
        if given:
            if kwargs.get("options") is not None:
                raise TypeError(f"{fn.__name__}() takes options= or option keywords ({', '.join(given)}), not both")
            kwargs["options"] = TranscriptionOptions(**given)
        return fn(*args, **kwargs)

    wrapper.__signature__ = signature.replace(parameters=[*signature.parameters.values(), *extra])
    return wrapper


__all__ = ["OPTION_NAMES", "TranscriptionOptions", "checked_tokenizer", "clip_seconds", "option_keywords"]
