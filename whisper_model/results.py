"""A stream's events gathered into its result: the one place that turns ``Started`` / ``Segments`` / ``Finished`` /
``Failed`` into segments, info and error.

    result = StreamResult(stream_id)
    for event in events_of_one_stream:
        if result.add(event):                        # True once the stream has ended
            segments, info = result.outcome()        # raises the stream's error when it failed

    results = Results()                              # many streams' events, in any order
    for event in scheduler.events():
        done = results.add(event)                    # the StreamResult of a stream that just ended, else None
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Hashable, Optional

from .longform import Segment, TranscriptionInfo
from .scheduler import Event, Failed, Finished, Segments, Started


@dataclass(eq=False)
class StreamResult:
    """One stream's events so far: its ``segments``, ``info`` (from ``Started``), ``error`` (from ``Failed``),
    whether it has ``ended``, and when it started (``seconds``: the time since, or until it ended)."""

    stream_id: Hashable = None
    segments: list[Segment] = field(default_factory=list)
    info: Optional[TranscriptionInfo] = None
    error: Optional[Exception] = None
    ended: bool = False
    started_at: Optional[float] = None
    ended_at: Optional[float] = None

    def add(self, event: Event) -> bool:
        """Take one of the stream's events; True when it ended the stream (``Finished`` or ``Failed``)."""
        if isinstance(event, Started):
            self.info, self.started_at = event.info, time.perf_counter()
        elif isinstance(event, Segments):
            self.segments += event.segments
        elif isinstance(event, Finished):
            self.info = event.info
        elif isinstance(event, Failed):
            self.error = event.error
        if isinstance(event, (Finished, Failed)):
            self.ended, self.ended_at = True, time.perf_counter()
        return self.ended

    @property
    def seconds(self) -> float:
        """Seconds from its ``Started`` to its end (or to now); 0 when it never started."""
        if self.started_at is None:
            return 0.0
        return (self.ended_at or time.perf_counter()) - self.started_at

    def outcome(self) -> tuple[list[Segment], TranscriptionInfo]:
        """``(segments, info)`` of a finished stream; raises its error when it failed."""
        if self.error is not None:
            raise self.error
        if not self.ended:
            raise RuntimeError(f"stream {self.stream_id!r} has not ended yet")
        return self.segments, self.info


class Results:
    """The events of many streams gathered per stream; ``add`` hands back each stream's result as it ends."""

    def __init__(self):
        self._open: dict[Hashable, StreamResult] = {}

    def add(self, event: Event) -> Optional[StreamResult]:
        """Take ``event``; the ``StreamResult`` of its stream when this event ended it, else None."""
        result = self._open.get(event.stream_id)
        if result is None:
            result = self._open[event.stream_id] = StreamResult(event.stream_id)
        if result.add(event):
            return self._open.pop(event.stream_id)
        return None

    def drop(self, stream_id: Hashable) -> None:
        """Forget a stream (cancelled)."""
        self._open.pop(stream_id, None)


__all__ = ["Results", "StreamResult"]
