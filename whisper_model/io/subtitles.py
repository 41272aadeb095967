"""srt and vtt text of a result dict, cue for cue what openai-whisper's subtitle writers give for the same options.

    srt_text(result)                                                    # one cue per segment
    vtt_text(result, WriterOptions(max_line_width=42, max_line_count=2))  # cues made of words (word timestamps)

When the first segment has ``words`` (word timestamps), the cues are made of words: a cue per segment, or, with
``max_line_width``, lines of at most that many characters (a word wider than the line gets a line of its own);
with ``max_line_width`` and ``max_line_count`` together, cues of at most that many lines that no longer follow the
segments (a new cue also after a pause of more than 3 s); ``max_words_per_line`` (with segments kept) starts a new
cue every that many words of a segment. A segment without words (an empty ``words`` list) gives no cue then.
``highlight_words``: each word of a cue gets a cue of its own time, the cue's text with that word underlined
(``<u>``), and the gaps between words show the plain text. Without words: a cue per segment, its text stripped,
with ``-->`` written ``->`` (word texts are written as they are).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterator, Optional

from ..errors import OptionError

Stamp = Callable[[float], str]
PAUSE_S = 3.0  # seconds between two word starts that end a cue when segments are not kept
UNLIMITED = 1000  # a line's width / words when not limited (openai-whisper's figure)


@dataclass(frozen=True)
class WriterOptions:
    """How srt and vtt cut and show words (openai-whisper's writer options; they need word timestamps, and the
    other formats ignore them). Each limit is a positive integer or None (no limit)."""

    highlight_words: bool = False
    max_line_width: Optional[int] = None
    max_line_count: Optional[int] = None
    max_words_per_line: Optional[int] = None

    def __post_init__(self):
        if not isinstance(self.highlight_words, bool):
            raise OptionError(f"highlight_words must be True or False, got {self.highlight_words!r}")
        for name in ("max_line_width", "max_line_count", "max_words_per_line"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                raise OptionError(f"{name} must be a positive integer or None, got {value!r}")


def format_timestamp(seconds: float, *, always_hours: bool = False, marker: str = ".") -> str:
    """12.345 -> '00:12.345' (or '00:00:12.345' with hours); srt uses ',' as the decimal marker."""
    if seconds < 0:
        raise ValueError(f"timestamps must be non-negative, got {seconds}")
    ms = round(seconds * 1000.0)
    hours, ms = divmod(ms, 3_600_000)
    minutes, ms = divmod(ms, 60_000)
    secs, ms = divmod(ms, 1000)
    head = f"{hours:02d}:" if always_hours or hours else ""
    return f"{head}{minutes:02d}:{secs:02d}{marker}{ms:03d}"


def _words(segment: dict) -> list[dict]:
    return segment.get("words") or []


def word_groups(segments: list[dict], options: WriterOptions) -> Iterator[list[dict]]:
    """The words of ``segments`` cut into cues: copies of the word dicts, a word that starts a line stripped of
    its spaces (and, from a cue's second line on, led by a line break)."""
    keep_segments = options.max_line_count is None or options.max_line_width is None
    width = options.max_line_width or UNLIMITED
    run = options.max_words_per_line or UNLIMITED
    starts = (w["start"] for s in segments for w in _words(s))
    previous = next(starts, segments[0]["start"] if segments else None) or 0.0
    group: list[dict] = []
    line_len, line_count = 0, 1
    for segment in segments:
        for k, source in enumerate(_words(segment)):
            word = dict(source)
            text = word["word"]
            paused = not keep_segments and word["start"] - previous > PAUSE_S
            new_cue = keep_segments and k % run == 0 and bool(group)
            if line_len > 0 and line_len + len(text) <= width and not paused and not new_cue:
                line_len += len(text)
            else:
                text = text.strip()
                full = options.max_line_count is not None and (paused or line_count >= options.max_line_count)
                if new_cue or (group and full):
                    yield group
                    group, line_count = [], 1
                elif line_len > 0:
                    line_count += 1
                    text = "\n" + text
                line_len = len(text.strip())
                word["word"] = text
            group.append(word)
            previous = word["start"]
    if group:
        yield group


def underlined(text: str) -> str:
    """A word with ``<u>`` around it, after its leading spaces (a word broken inside is left as it is)."""
    rest = text.lstrip()
    lead = text[: len(text) - len(rest)]
    body, tail = (rest[:-1], "\n") if rest.endswith("\n") else (rest, "")
    return text if "\n" in body else f"{lead}<u>{body}</u>{tail}"


def _highlighted(group: list[dict], stamp: Stamp) -> Iterator[tuple[str, str, str]]:
    texts = [w["word"] for w in group]
    plain = "".join(texts)
    shown = stamp(group[0]["start"])  # the end of what the cues so far show
    for i, word in enumerate(group):
        start, end = stamp(word["start"]), stamp(word["end"])
        if start != shown:
            yield shown, start, plain
        yield start, end, "".join(underlined(t) if j == i else t for j, t in enumerate(texts))
        shown = end


def cues(result: dict, options: Optional[WriterOptions], stamp: Stamp) -> Iterator[tuple[str, str, str]]:
    """(start, end, text) of each cue, times written by ``stamp``."""
    options = options or WriterOptions()
    segments = result["segments"]
    if not segments or "words" not in segments[0]:
        for segment in segments:
            yield stamp(segment["start"]), stamp(segment["end"]), segment["text"].strip().replace("-->", "->")
        return
    for group in word_groups(segments, options):
        if options.highlight_words:
            yield from _highlighted(group, stamp)
        else:
            yield stamp(group[0]["start"]), stamp(group[-1]["end"]), "".join(w["word"] for w in group)


def srt_text(result: dict, options: Optional[WriterOptions] = None) -> str:
    def stamp(t: float) -> str:
        return format_timestamp(t, always_hours=True, marker=",")
    return "".join(f"{n}\n{start} --> {end}\n{text}\n\n"
                   for n, (start, end, text) in enumerate(cues(result, options, stamp), start=1))


def vtt_text(result: dict, options: Optional[WriterOptions] = None) -> str:
    return "WEBVTT\n\n" + "".join(f"{start} --> {end}\n{text}\n\n"
                                  for start, end, text in cues(result, options, format_timestamp))


__all__ = ["WriterOptions", "cues", "format_timestamp", "srt_text", "underlined", "vtt_text", "word_groups"]
