"""The one thread that drives the one ``Scheduler``: requests become its streams, its events go to the requests.

    worker = BatchWorker(served, config, metrics); worker.start()
    job = worker.submit(samples, options, language, prompt)     # on the event loop: a Job, its events queued
    segments, info = await job.result()                           # or: async for event in job.events()
    worker.cancel(job)                                            # client gone / timeout: its rows are dropped

The scheduler is not thread-safe, so every call to it happens on the worker thread: the event loop only puts
commands into the worker's inbox (a ``queue.SimpleQueue``). The worker drains the inbox between the scheduler's
events, so a request added while a batch runs joins it at the next round (continuous batching: no waiting for
the batch to finish); ``events()`` returns when nothing is left, and the worker then blocks on the inbox. Each
event is handed to its request's ``asyncio.Queue`` with ``loop.call_soon_threadsafe``.
"""
from __future__ import annotations

import asyncio
import itertools
import logging
import queue
import threading
import time
from typing import AsyncIterator, Optional

import torch

from ..errors import DecodingError
from ..io.audio import SAMPLE_RATE
from ..longform import Segment, TranscriptionInfo
from ..options import TranscriptionOptions
from ..scheduler import Event, Failed, Finished, Scheduler, Segments, Started
from .config import ServedModel, ServerConfig
from .metrics import Metrics
from .rounds import Rounds

log = logging.getLogger("whisper_model.server")


class ServerClosing(DecodingError):
    """The server stopped before the request's stream could run."""


class Job:
    """One request's stream. Its events arrive on ``queue`` (on the request's event loop); ``started`` and
    ``ended`` are the worker thread's bookkeeping."""

    def __init__(self, job_id: int, loop: asyncio.AbstractEventLoop, duration: float):
        self.id, self.loop, self.duration = job_id, loop, duration
        self.queue: asyncio.Queue = asyncio.Queue()
        self.submitted = time.monotonic()
        self.started = self.ended = False

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
        segments: list[Segment] = []
        async for event in self.events():
            if isinstance(event, Segments):
                segments += event.segments
            elif isinstance(event, Finished):
                return segments, event.info
            elif isinstance(event, Failed):
                raise event.error
        raise RuntimeError("unreachable")


class BatchWorker:
    """See the module's docstring. ``start`` / ``stop`` once; ``submit`` and ``cancel`` from any thread."""

    def __init__(self, served: ServedModel, config: ServerConfig, metrics: Metrics):
        self.served, self.config, self.metrics = served, config, metrics
        self.scheduler = self._new_scheduler()
        self._inbox: queue.SimpleQueue = queue.SimpleQueue()
        self._ids = itertools.count()
        self._jobs: dict[int, Job] = {}  # worker thread only: jobs added and not ended
        self._cancels: set[int] = set()  # worker thread only: ids to cancel once the scheduler can find them
        self._stopping = False
        self.rounds = Rounds()  # worker thread only: the batch's rows in use, the round being given out
        self._thread = threading.Thread(target=self._run, name="whisper-batch", daemon=True)

    def _new_scheduler(self) -> Scheduler:
        return Scheduler(self.served.model, batch_size=self.config.batch_size, tokenizer=self.served.tokenizer)

    def start(self) -> None:
        self._thread.start()

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    def stop(self, timeout: Optional[float] = None) -> bool:
        """Finish the streams already given, then end the thread; False if it was still running at ``timeout``."""
        self._inbox.put(("stop",))
        self._thread.join(timeout)
        return not self._thread.is_alive()

    def submit(self, samples, options: TranscriptionOptions, language: Optional[str],
               prompt: Optional[str]) -> Job:
        """Queue ``samples`` (16 kHz mono float32) as a stream; call on the request's event loop."""
        job = Job(next(self._ids), asyncio.get_running_loop(), len(samples) / SAMPLE_RATE)
        self.metrics.queue_depth.inc()
        self._inbox.put(("add", job, samples, options, language, prompt))
        return job

    def cancel(self, job: Job) -> None:
        self._inbox.put(("cancel", job))

    # --- the worker thread ---------------------------------------------------------------------------------

    @torch.no_grad()  # grad mode is per thread; the model's own methods say so too
    def _run(self) -> None:
        while True:
            self._handle(self._inbox.get())
            self._gather(self.config.gap_s)
            self._drive()
            if self._stopping and self._inbox.empty():
                return

    def _gather(self, first_wait: float) -> None:
        """Take every command waiting. With ``batch_wait_s``, while the batch has free rows, wait for more: up to
        ``first_wait`` for the first, then up to ``gap_s`` after each, ``batch_wait_s`` in all (the scheduler is
        between rounds here: the next one starts when this returns)."""
        wait, timeout = self.config.batch_wait_s, first_wait
        deadline = time.monotonic() + wait
        while True:
            timeout = min(timeout, deadline - time.monotonic())
            free = 0 < len(self._jobs) < self.config.batch_size
            try:
                command = self._inbox.get(timeout=timeout) if wait and free and timeout > 0 else \
                    self._inbox.get_nowait()
            except queue.Empty:
                return
            self._handle(command)
            timeout = self.config.gap_s

    def _drain(self) -> None:
        while True:
            try:
                command = self._inbox.get_nowait()
            except queue.Empty:
                return
            self._handle(command)

    def _handle(self, command: tuple) -> None:
        kind = command[0]
        if kind == "stop":
            self._stopping = True
        elif kind == "add":
            self._add(*command[1:])
        elif kind == "cancel":
            job = command[1]
            if job.id in self._jobs:
                self._cancels.add(job.id)
                self._try_cancels()

    def _add(self, job: Job, samples, options, language, prompt) -> None:
        if self._stopping:
            return self._end(job, Failed(job.id, ServerClosing("the server is shutting down")))
        try:
            self.scheduler.add(samples, options=options, language=language, initial_prompt=prompt,
                               stream_id=job.id)
        except (ValueError, TypeError) as e:  # OptionError: checked by the routes already, but not trusted
            return self._end(job, Failed(job.id, e))
        self._jobs[job.id] = job

    def _try_cancels(self) -> None:
        """Cancel what can be cancelled now (a stream being admitted is found after its ``Started``)."""
        for job_id in list(self._cancels):
            job = self._jobs.get(job_id)
            if job is None:
                self._cancels.discard(job_id)
            elif self.scheduler.cancel(job_id):
                self._cancels.discard(job_id)
                self._forget(job)
                self.metrics.cancelled.inc()

    def _drive(self) -> None:
        """Run the scheduler until it has nothing left, taking commands between its events."""
        try:
            for event in self.scheduler.events():
                self._route(event)
                self._drain()
                if self._cancels:
                    self._try_cancels()
                if self.rounds.round_over() and self.config.batch_wait_s:
                    self._gather(self.config.batch_wait_s)  # the clients just answered may come back
        except Exception as e:  # a bug: fail what is running, start over with a fresh scheduler
            log.exception("the scheduler failed; its %d streams fail", len(self._jobs))
            error = DecodingError(f"the scheduler failed: {type(e).__name__}: {e}")
            for job in list(self._jobs.values()):
                self._end(job, Failed(job.id, error))
            self._cancels.clear()
            self.scheduler = self._new_scheduler()

    def _route(self, event: Event) -> None:
        job = self._jobs.get(event.stream_id)
        if job is None:  # cancelled: the rest of its round's events
            return
        m = self.metrics
        if isinstance(event, Started):
            job.started, job.duration = True, event.info.duration
            self.rounds.started(job.id)
            m.queue_depth.dec()
            m.rows.set(len(self.rounds.rows))
            m.queue_seconds.observe(time.monotonic() - job.submitted)
        elif isinstance(event, Segments):
            self.rounds.window(job.id, last=event.done >= job.duration)
            m.windows.inc()
            m.occupancy.observe(len(self.rounds.rows) / self.config.batch_size)
        if isinstance(event, (Finished, Failed)):
            if isinstance(event, Finished):
                m.audio_seconds.inc(event.info.duration)
            self._end(job, event)
        else:
            job.post(event)

    def _end(self, job: Job, event: Event) -> None:
        self._forget(job)
        job.post(event)

    def _forget(self, job: Job) -> None:
        if job.ended:
            return
        job.ended = True
        self._jobs.pop(job.id, None)
        if job.started:
            self.rounds.ended(job.id)
            self.metrics.rows.set(len(self.rounds.rows))
        else:
            self.metrics.queue_depth.dec()


__all__ = ["BatchWorker", "Job", "ServerClosing"]
