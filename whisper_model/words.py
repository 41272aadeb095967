"""What word timestamps change in the long-form loop, as openai-whisper's ``transcribe()`` does it: the window's
next seek from its last word, and (``hallucination_silence_threshold``) skipping the silence around segments whose
words look hallucinated (improbable, very short or very long). Pure functions over a window's ``Piece``s; the
state (``longform.LongFormState``) applies what they return.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence

from .decode.timing import Word
from .io.audio import HOP_LENGTH, N_FRAMES, SAMPLE_RATE

FRAMES_PER_SECOND = SAMPLE_RATE // HOP_LENGTH  # mel frames per second: 100
PUNCTUATION = "\"'“¿([{-\"'.。,，!！?？:：”)]}、"  # openai-whisper's set (a word in it is not scored)


@dataclass
class Piece:
    """A segment of the current window before it is given out: times in seconds of the audio, its ids (text and
    timestamps), its text, and its words once timed (None: word timestamps off)."""
    start: float
    end: float
    tokens: list[int]
    text: str
    words: Optional[list[Word]] = None


@dataclass(frozen=True)
class Window:
    """The current window as the word rules see it: its first mel frame, frames decoded, the audio's frames."""
    seek: int
    size: int
    content_frames: int

    @property
    def time_offset(self) -> float:
        return self.seek * HOP_LENGTH / SAMPLE_RATE

    @property
    def end_time(self) -> float:
        """Where a full 30 s window from ``seek`` would end (openai-whisper's ``window_end_time``)."""
        return (self.seek + N_FRAMES) * HOP_LENGTH / SAMPLE_RATE

    @property
    def duration(self) -> float:
        return self.size * HOP_LENGTH / SAMPLE_RATE

    @property
    def content_duration(self) -> float:
        return self.content_frames * HOP_LENGTH / SAMPLE_RATE


def last_end(pieces: Sequence[Piece]) -> Optional[float]:
    """The end of the last word of the last piece with words; else the last piece's end; None without pieces."""
    for piece in reversed(pieces):
        if piece.words:
            return piece.words[-1].end
    return pieces[-1].end if pieces else None


def word_anomaly(word: Word) -> float:
    """How hallucinated a word looks: improbable (< 0.15), shorter than 0.133 s, longer than 2 s."""
    duration = word.end - word.start
    score = 1.0 if word.probability < 0.15 else 0.0
    if duration < 0.133:
        score += (0.133 - duration) * 15
    if duration > 2.0:
        score += duration - 2.0
    return score


def is_anomaly(piece: Optional[Piece]) -> bool:
    """Whether a piece's first 8 words (punctuation aside) look hallucinated."""
    if piece is None or not piece.words:
        return False
    words = [w for w in piece.words if w.word not in PUNCTUATION][:8]
    score = sum(word_anomaly(w) for w in words)
    return score >= 3 or score + 0.01 >= len(words)


def _next_with_words(pieces: Sequence[Piece]) -> Optional[Piece]:
    return next((p for p in pieces if p.words), None)


def seek_after_words(pieces: Sequence[Piece], window: Window, seek: int, single_timestamp_ending: bool) -> int:
    """The next window starts at the last word's end (when it is inside this window), unless the text ended with a
    single timestamp (nothing after it)."""
    end = last_end(pieces)
    if not single_timestamp_ending and end is not None and end > window.time_offset:
        return round(end * FRAMES_PER_SECOND)
    return seek


def skip_hallucinations(pieces: list[Piece], window: Window, seek: int, single_timestamp_ending: bool,
                        last_speech: float, threshold: float) -> tuple[int, bool]:
    """``hallucination_silence_threshold``: ``(seek, keep)``; ``keep`` False drops the whole window (its first
    piece looks hallucinated after a gap longer than ``threshold``: decoding resumes after the gap). A piece that
    looks hallucinated between silences (or other such pieces) is dropped with everything after it, and the next
    window starts at it. ``pieces`` is cut in place."""
    if not single_timestamp_ending:
        end = last_end(pieces)
        if end is not None and end > window.time_offset:
            remaining = window.end_time - end
            seek = round(end * FRAMES_PER_SECOND) if remaining > threshold else window.seek + window.size
    first = _next_with_words(pieces)
    if first is not None and is_anomaly(first):
        gap = first.start - window.time_offset
        if gap > threshold:
            return window.seek + round(gap * FRAMES_PER_SECOND), False
    previous_end = last_speech
    for i, piece in enumerate(pieces):
        if not piece.words:
            continue
        if is_anomaly(piece):
            after = _next_with_words(pieces[i + 1:])
            next_start = after.words[0].start if after is not None else window.time_offset + window.duration
            silence_before = (piece.start - previous_end > threshold or piece.start < threshold
                              or piece.start - window.time_offset < 2.0)
            silence_after = (next_start - piece.end > threshold or is_anomaly(after)
                             or window.end_time - piece.end < 2.0)
            if silence_before and silence_after:
                seek = round(max(window.time_offset + 1, piece.start) * FRAMES_PER_SECOND)
                if window.content_duration - piece.end < threshold:
                    seek = window.content_frames
                del pieces[i:]
                break
        previous_end = piece.end
    return seek, True


__all__ = ["FRAMES_PER_SECOND", "PUNCTUATION", "Piece", "Window", "is_anomaly", "last_end", "seek_after_words",
           "skip_hallucinations", "word_anomaly"]
