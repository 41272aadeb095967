"""A realtime session's items transcribed as live streams of the worker: the seam between the protocol and the
scheduler.

    items = LiveItems(worker, emit, options, metrics)   # on the connection's event loop
    items.sync(session, result.utterances)    # after each client event: streams opened, fed, ended, cancelled
    items.cancel_all()                        # the client went away: every stream of it is dropped at once
    await items.drained()                     # shutdown: the committed items have sent their completed events

An item (an utterance) is one live stream (``worker.add_live``). It opens when its audio starts (server_vad: at
``speech_started``; turn detection none: with the first append after a commit or clear), takes each append's new
audio (``InputAudioBuffer.audio_since``: only the samples not yet fed) and ends at its commit: the final pass
runs. The stream's events come on the worker thread and are handed to the event loop: ``Committed`` -> a
``...transcription.delta``, ``Finished`` -> ``...transcription.completed`` (``realtime.Transcript``: the deltas
joined), ``Failed`` -> ``...transcription.failed`` (OpenAI's event, with the error), and the session goes on. An
item dropped before its commit (``input_audio_buffer.clear``, a ``session.update`` that changes the audio input)
is cancelled at once, which frees its rows.
"""
from __future__ import annotations

import asyncio
import math
import time
from dataclasses import dataclass, field
from functools import partial
from typing import Callable, Optional

import numpy as np

from ..options import TranscriptionOptions
from ..realtime import server_events as out
from ..realtime.config import SessionConfig
from ..realtime.input_buffer import Utterance
from ..realtime.intake import SAMPLE_RATE
from ..realtime.session import RealtimeSession
from ..realtime.transcript import Transcript
from ..scheduler import Committed, Event, Failed, Finished
from .metrics import Metrics

Emit = Callable[[list], None]  # server event dicts to send, in order


@dataclass(eq=False)
class LiveItem:
    """One item's stream: ``start``: its first session sample; ``fed``: samples given to the stream so far.
    ``submitted`` / ``duration``: what the server worker's metrics read of a stream's context."""
    item_id: str
    start: int
    transcript: Transcript
    stream_id: Optional[int] = None
    fed: int = 0
    ended: bool = False  # committed: no more audio
    done: bool = False  # finished, failed or cancelled: no event of it is sent any more
    submitted: float = field(default_factory=time.monotonic)
    duration: float = math.inf  # unknown while the audio grows

    @property
    def seconds(self) -> float:
        return self.fed / SAMPLE_RATE


class LiveItems:
    """One connection's items (see the module). Call on its event loop only; ``worker``: the server's
    ``BatchWorker`` (``add_live`` / ``feed`` / ``end`` / ``cancel``)."""

    def __init__(self, worker, emit: Emit, options: Optional[TranscriptionOptions], metrics: Metrics):
        self.worker, self.emit, self.options, self.metrics = worker, emit, options, metrics
        self.loop = asyncio.get_running_loop()
        self.open: Optional[LiveItem] = None  # the utterance in progress
        self.ending: dict[str, LiveItem] = {}  # committed, their completed event not yet sent
        self._idle = asyncio.Event()
        self._idle.set()

    def sync(self, session: RealtimeSession, utterances: list[Utterance]) -> None:
        """After a client event: end the items it committed (their last audio fed), cancel the one in progress
        if the buffer dropped it, open the one in progress and feed it its new audio."""
        for utterance in utterances:
            self._commit(utterance, session.config)
        progress = session.buffer.in_progress
        if self.open is not None and (progress is None or progress[0] != self.open.item_id):
            self._cancel(self.open)
        if progress is not None:
            if self.open is None:
                self.open = self._start(progress[0], progress[1], session.config)
            self._feed(self.open, session.buffer.audio_since(self.open.start + self.open.fed))

    def cancel_all(self) -> None:
        """Drop every stream of the connection (the client went away, or the server is stopping)."""
        if self.open is not None:
            self._cancel(self.open)
        for item in list(self.ending.values()):
            self._cancel(item)

    def cancel_open(self) -> None:
        """Drop the utterance in progress (not committed: it will get no transcript)."""
        if self.open is not None:
            self._cancel(self.open)

    async def drained(self) -> None:
        """Returns once every committed item has sent its completed (or error) event."""
        await self._idle.wait()

    # --- streams -------------------------------------------------------------------------------------------

    def _start(self, item_id: str, start: int, config: SessionConfig) -> LiveItem:
        item = LiveItem(item_id, start, Transcript(item_id))
        item.stream_id = self.worker.add_live(partial(self._deliver, item), options=self.options,
                                              language=config.language, initial_prompt=config.prompt,
                                              context=item)
        return item

    def _feed(self, item: LiveItem, samples: np.ndarray) -> None:
        if len(samples) and not item.done:
            self.worker.feed(item.stream_id, samples)
            item.fed += len(samples)

    def _commit(self, utterance: Utterance, config: SessionConfig) -> None:
        item = self.open
        if item is None or item.item_id != utterance.item_id:  # its audio came and went in one client event
            item = self._start(utterance.item_id, utterance.start, config)
        else:
            self.open = None
        self._feed(item, utterance.samples[item.fed:])
        item.ended, item.duration = True, item.seconds
        if not item.done:  # a stream that failed already sent its error
            self.ending[item.item_id] = item
            self._idle.clear()
            self.worker.end(item.stream_id)

    def _cancel(self, item: LiveItem) -> None:
        if not item.done:
            self.worker.cancel(item.stream_id)
        self._close(item)
        if self.open is item:
            self.open = None

    def _close(self, item: LiveItem) -> None:
        """No more events of ``item``. One that failed in progress stays ``open`` (done): its audio is not fed and
        its commit sends nothing more."""
        item.done = True
        self.ending.pop(item.item_id, None)
        if not self.ending:
            self._idle.set()

    # --- events: from the worker thread, handled on the loop -----------------------------------------------

    def _deliver(self, item: LiveItem, event: Event) -> None:
        self.loop.call_soon_threadsafe(self._on_event, item, event)

    def _on_event(self, item: LiveItem, event: Event) -> None:
        if item.done:  # cancelled: the events already under way
            return
        if isinstance(event, Committed):
            self.emit(item.transcript.committed(event.text))
        elif isinstance(event, Finished):
            self._close(item)
            self.metrics.realtime_items.labels("completed").inc()
            self.emit(item.transcript.finish(item.seconds))
        elif isinstance(event, Failed):
            self._close(item)
            self.metrics.realtime_items.labels("failed").inc()
            self.emit([out.transcription_failed(item.item_id, f"{type(event.error).__name__}: {event.error}",
                                                "transcription_failed")])


__all__ = ["LiveItem", "LiveItems"]
