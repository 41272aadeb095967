"""How to decode one 30 s window (``DecodingOptions``, checked once when made) and what comes out
(``DecodingResult``)."""
from __future__ import annotations

import zlib
from dataclasses import dataclass, field
from typing import Iterable, Optional, Sequence, Union

import numpy as np

from ..io.tokenizer import TASKS


def compression_ratio(text: str) -> float:
    """UTF-8 size over zlib-compressed size; high values mean repetitive text."""
    data = text.encode("utf-8")
    return len(data) / len(zlib.compress(data))


@dataclass(frozen=True)
class DecodingOptions:
    """How to decode one window. ``prompt``: earlier text (str or ids), fed after ``<|startofprev|>`` and before
    the start-of-transcript sequence (its last n_text_ctx // 2 - 1 ids); ``prefix``: forced start of this
    window's text; ``suppress_tokens``: ids or "1,2,3", where -1 adds the tokenizer's non-speech symbols; None or
    "" suppresses nothing (not even the special tokens). ``max_initial_timestamp``: latest first timestamp in
    seconds (0.0: the text starts at <|0.00|>), None for no limit. ``stop_loops``: end a row's text as soon as it
    ends in a repetition loop, and say so in ``DecodingResult.looped`` (``loops.py``; False: openai-whisper's)."""

    task: str = "transcribe"
    language: Optional[str] = None  # None: detect per audio (English-only models: always "en")
    temperature: float = 0.0
    sample_len: Optional[int] = None  # most sampled tokens; None: n_text_ctx // 2
    best_of: Optional[int] = None  # independent samples per audio (temperature > 0)
    beam_size: Optional[int] = None  # beams per audio (temperature 0)
    patience: Optional[float] = None  # beam search stops after round(beam_size * patience) finished candidates
    length_penalty: Optional[float] = None  # None: rank by logprob / length; else Google NMT's alpha in [0, 1]
    prompt: Optional[Union[str, Sequence[int]]] = None
    prefix: Optional[Union[str, Sequence[int]]] = None
    suppress_tokens: Optional[Union[str, Iterable[int]]] = "-1"
    suppress_blank: bool = True
    without_timestamps: bool = False
    max_initial_timestamp: Optional[float] = 1.0
    stop_loops: bool = False  # end a row whose text ends in a repetition loop (``loops.py``); not openai-whisper's

    def __post_init__(self):
        if self.task not in TASKS:
            raise ValueError(f"task must be one of {TASKS}, got {self.task!r}")
        if self.temperature < 0:
            raise ValueError(f"temperature must be >= 0, got {self.temperature}")
        for name in ("sample_len", "best_of", "beam_size"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, (int, np.integer)) or value < 1):
                raise ValueError(f"{name} must be a positive integer or None, got {value!r}")
        if self.beam_size is not None and self.best_of is not None:
            raise ValueError("beam_size and best_of can't be given together")
        if self.temperature == 0 and self.best_of is not None:
            raise ValueError("best_of needs temperature > 0 (at temperature 0 use beam_size)")
        if self.temperature > 0 and self.beam_size is not None:
            raise ValueError("beam_size needs temperature 0 (beam search does not sample; use best_of)")
        if self.patience is not None:
            if self.beam_size is None:
                raise ValueError("patience requires beam_size to be given")
            if self.patience <= 0 or round(self.beam_size * self.patience) < 1:
                raise ValueError(f"patience must keep at least one candidate, got {self.patience}")
        if self.length_penalty is not None and not 0 <= self.length_penalty <= 1:
            raise ValueError(f"length_penalty (alpha) must be between 0 and 1, got {self.length_penalty}")
        if self.max_initial_timestamp is not None and self.max_initial_timestamp < 0:
            raise ValueError(f"max_initial_timestamp must be >= 0 or None, got {self.max_initial_timestamp}")


@dataclass(frozen=True)
class DecodingResult:
    """One audio's decoded window. ``tokens``: sampled ids, without the initial tokens and end-of-text."""

    language: str
    tokens: list[int] = field(default_factory=list)
    text: str = ""
    sum_logprob: float = float("nan")
    avg_logprob: float = float("nan")  # sum_logprob / (len(tokens) + 1): end-of-text counts
    no_speech_prob: float = float("nan")
    temperature: float = float("nan")
    compression_ratio: float = float("nan")
    language_probs: Optional[dict[str, float]] = None  # set when the language was detected
    looped: bool = False  # stopped in a repetition loop (``DecodingOptions.stop_loops``)
