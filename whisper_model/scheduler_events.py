"""What happens to a scheduler's streams: the events ``Scheduler.events()`` gives out, each naming its stream.

    Started    the audio is loaded (a live stream: its language known) and no window decoded yet
    Segments   final segments (a file: one decoded window's; a live stream: those that left its window)
    Committed  a live stream's newly final words (never retracted; all of them joined: its transcript)
    Hypothesis a live stream's interim decode: its window's text as it stands (may still change)
    Finished   the stream's last window is decoded
    Failed     the stream stopped with an error
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Hashable

from .longform import Segment, TranscriptionInfo


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
class Committed(Event):
    """A live stream's words that became final (``text``: to append to the ones before, never retracted);
    ``done``: seconds of its audio that had arrived when they were decoded."""
    text: str
    done: float


@dataclass(frozen=True)
class Hypothesis(Event):
    """A live stream's interim decode: ``text``, its window's whole text (the final words in it, and those that
    may still change); ``done``: seconds of its audio that had arrived when it was decoded."""
    text: str
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


__all__ = ["Committed", "Event", "Failed", "Finished", "Hypothesis", "Segments", "Started"]
