"""The server's worker: ``service.StreamWorker`` (the one thread that owns the one ``Scheduler``) with the
server's bookkeeping: requests become its streams, each request's events go to its ``asyncio.Queue``, the metrics
follow the streams, and ``batch_wait_s`` gathers requests before a round.

    worker = BatchWorker(served, config, metrics); worker.start()
    job = worker.submit(samples, options, language, prompt)     # on the event loop: a Job, its events queued
    segments, info = await job.result()                           # or: async for event in job.events()
    worker.cancel(job.id)                                         # client gone / timeout: its rows are dropped

A request added while a batch runs joins it at the next round (continuous batching: no waiting for the batch to
finish). Each event is handed to its request's ``asyncio.Queue`` with ``loop.call_soon_threadsafe``.
"""
from __future__ import annotations

import asyncio
import logging
import queue
import time
from typing import AsyncIterator, Optional

from ..io.audio import SAMPLE_RATE
from ..longform import Segment, TranscriptionInfo
from ..options import TranscriptionOptions
from ..results import StreamResult
from ..chunked import ChunkedScheduler
from ..scheduler import Event, Failed, Finished, Segments, Started
from ..service import Closing, Stream, StreamWorker
from .config import ServedModel, ServerConfig
from .metrics import Metrics
from .rounds import Rounds

log = logging.getLogger("whisper_model.server")
ServerClosing = Closing  # the server stopped before the request's stream could run


class Job:
    """One request's stream. Its events arrive on ``queue`` (on the request's event loop); ``id``: its stream's."""

    def __init__(self, loop: asyncio.AbstractEventLoop, duration: float):
        self.id: Optional[int] = None
        self.loop, self.duration = loop, duration
        self.queue: asyncio.Queue = asyncio.Queue()
        self.submitted = time.monotonic()

    def post(self, event: Event) -> None:
        """From the worker thread: hand ``event`` to the request."""
        self.loop.call_soon_threadsafe(self.queue.put_nowait, event)

    async def events(self) -> AsyncIterator[Event]:
        """The stream's events up to its ``Finished`` or ``Failed`` (included)."""
        while True:
            event = await self.queue.get()
            yield event
            if isinstance(event, (Finished, Failed)):
                return

    async def result(self) -> tuple[list[Segment], TranscriptionInfo]:
        """All segments and the info; raises the stream's error when it failed."""
        result = StreamResult(self.id)
        async for event in self.events():
            result.add(event)
        return result.outcome()


class BatchWorker(StreamWorker):
    """See the module's docstring. ``start`` / ``stop`` once; ``submit`` and ``cancel`` from any thread."""

    closing_message = "the server is shutting down"

    def __init__(self, served: ServedModel, config: ServerConfig, metrics: Metrics):
        self.served, self.config, self.metrics = served, config, metrics
        self.rounds = Rounds()  # worker thread only: the batch's rows in use, the round being given out
        super().__init__(self._new_scheduler, name="whisper-batch")

    def _new_scheduler(self) -> ChunkedScheduler:
        """Requests take their own path (``chunking`` / ``vad_filter``); without VAD, the file as one stream."""
        return ChunkedScheduler(self.served.model, batch_size=self.config.batch_size, tokenizer=self.served.tokenizer,
                                chunking="none", vad_filter=False)

    def submit(self, samples, options: TranscriptionOptions, language: Optional[str], prompt: Optional[str],
               chunking: str = "none", vad_filter: bool = False) -> Job:
        """Queue ``samples`` (16 kHz mono float32) as a stream; call on the request's event loop."""
        job = Job(asyncio.get_running_loop(), len(samples) / SAMPLE_RATE)
        self.metrics.queue_depth.inc()
        job.id = self.add(samples, job.post, options=options, language=language, initial_prompt=prompt,
                          chunking=chunking, vad_filter=vad_filter, context=job)
        return job

    def add_live(self, deliver, *, options: Optional[TranscriptionOptions] = None, language: Optional[str] = None,
                 initial_prompt: Optional[str] = None, context: object = None) -> int:
        """A live stream (a realtime item: ``realtime_items.LiveItem`` as ``context``), counted as waiting for a
        row until its ``Started``, as a request is."""
        self.metrics.queue_depth.inc()
        return super().add_live(deliver, options=options, language=language, initial_prompt=initial_prompt,
                                context=context)

    # --- the worker thread ---------------------------------------------------------------------------------

    def _before_round(self) -> None:
        self._gather(self.config.gap_s)

    def _after_event(self) -> None:
        if self.rounds.round_over() and self.config.batch_wait_s:
            self._gather(self.config.batch_wait_s)  # the clients just answered may come back

    def _gather(self, first_wait: float) -> None:
        """Take every command waiting. With ``batch_wait_s``, while the batch has free rows, wait for more: up to
        ``first_wait`` for the first, then up to ``gap_s`` after each, ``batch_wait_s`` in all (the scheduler is
        between rounds here: the next one starts when this returns)."""
        wait, timeout = self.config.batch_wait_s, first_wait
        deadline = time.monotonic() + wait
        while True:
            timeout = min(timeout, deadline - time.monotonic())
            free = 0 < len(self.streams) < self.config.batch_size
            try:
                command = self._inbox.get(timeout=timeout) if wait and free and timeout > 0 else \
                    self._inbox.get_nowait()
            except queue.Empty:
                return
            self._handle(command)
            timeout = self.config.gap_s

    def _on_event(self, stream: Stream, event: Event) -> None:
        job, m = stream.context, self.metrics
        if isinstance(event, Started):
            if isinstance(job, Job):  # a live stream's duration grows until its end
                job.duration = event.info.duration
            self.rounds.started(stream.id)
            m.queue_depth.dec()
            m.rows.set(len(self.rounds.rows))
            m.queue_seconds.observe(time.monotonic() - job.submitted)
        elif isinstance(event, Segments):
            self.rounds.window(stream.id, last=event.done >= job.duration)
            m.windows.inc()
            m.occupancy.observe(len(self.rounds.rows) / self.config.batch_size)
        elif isinstance(event, Finished):
            m.audio_seconds.inc(event.info.duration)

    def _on_end(self, stream: Stream, cancelled: bool) -> None:
        if stream.started:
            self.rounds.ended(stream.id)
            self.metrics.rows.set(len(self.rounds.rows))
        else:
            self.metrics.queue_depth.dec()
        if cancelled:
            self.metrics.cancelled.inc()


__all__ = ["BatchWorker", "Job", "ServerClosing"]
