"""The one thread that owns a scheduler: streams are added from any thread at any time, each stream's events are
handed to its own callback, a stream can be cancelled, and a scheduler that crashes is replaced.

    worker = StreamWorker(lambda: model.scheduler(batch_size=16)); worker.start()
    stream_id = worker.add(samples, deliver, options=options, language="en")   # deliver(event) per event
    live_id = worker.add_live(deliver, language="en")       # a live stream: its audio comes later
    worker.feed(live_id, samples); worker.end(live_id)       # ... as it arrives; its end
    worker.cancel(stream_id)                                 # its rows are dropped at the next event
    worker.stop(timeout=30)                                  # the streams already given finish first

The scheduler is not thread-safe, so every call to it happens on the worker thread: ``add`` and ``cancel`` only
put commands into an inbox (a ``queue.SimpleQueue``). The thread takes them between the scheduler's events, so a
stream added while a round runs joins the batch at the next round; when nothing is left it blocks on the inbox.
``deliver`` is called on the worker thread, once per event of its stream, up to its ``Finished`` or ``Failed``
(included); it must not block (hand the event on: ``loop.call_soon_threadsafe``, a ``Future``, a queue).

An exception out of the scheduler (a bug, not a stream's failure: those are ``Failed`` events) fails every stream
in flight with a ``DecodingError`` and the worker goes on with a fresh scheduler. A subclass can watch the streams
(``_on_event``, ``_on_end``) and gather requests before a round (``_before_round``, ``_after_event``): the server does.
"""
from __future__ import annotations

import itertools
import logging
import queue
import threading
from dataclasses import dataclass
from typing import Callable, Optional

import torch

from ..encoding import Audio
from ..errors import DecodingError, WhisperError
from ..options import TranscriptionOptions
from ..live import LIVE_STEP_S, live_samples
from ..scheduler import Event, Failed, Finished

log = logging.getLogger("whisper_model.service")
Deliver = Callable[[Event], None]


class Closing(DecodingError):
    """The worker was stopping before the stream could run."""


@dataclass(eq=False)
class Stream:
    """A stream of the worker: where its events go; ``started`` once its ``Started`` was delivered."""
    id: int
    deliver: Deliver
    context: object = None  # what the caller of ``add`` gave, for the hooks
    started: bool = False
    ended: bool = False


class StreamWorker:
    """See the module's docstring. ``new_scheduler()`` makes the scheduler (again after a crash); ``threads``: torch
    CPU threads of the worker thread (0: torch's default). ``start`` / ``stop`` once; ``add`` and ``cancel`` from
    any thread."""

    closing_message = "the worker is stopping"

    def __init__(self, new_scheduler: Callable[[], object], *, threads: int = 0, name: str = "whisper-scheduler"):
        self._new_scheduler, self.threads = new_scheduler, threads
        self.scheduler = new_scheduler()
        self._inbox: queue.SimpleQueue = queue.SimpleQueue()
        self._ids = itertools.count()
        self.streams: dict[int, Stream] = {}  # worker thread only: streams added and not ended
        self._cancels: set[int] = set()  # worker thread only: ids to cancel once the scheduler can find them
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

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

    def add(self, audio: Audio, deliver: Deliver, *, options: Optional[TranscriptionOptions] = None,
            language: Optional[str] = None, initial_prompt: Optional[str] = None, chunking: Optional[str] = None,
            vad_filter: Optional[bool] = None, context: object = None) -> int:
        """Queue ``audio`` (a path, file bytes or 16 kHz mono samples) as a stream; its events go to ``deliver``
        (a bad option: a ``Failed`` event). Returns its id, for ``cancel``. ``chunking`` / ``vad_filter``: this
        stream's path through VAD (a ``chunked.ChunkedScheduler``'s; None: the scheduler's own). ``context``:
        kept on the ``Stream`` for a subclass's hooks."""
        stream = Stream(next(self._ids), deliver, context)
        self._inbox.put(("add", stream, audio, options, language, initial_prompt, chunking, vad_filter))
        return stream.id

    def add_live(self, deliver: Deliver, *, options: Optional[TranscriptionOptions] = None,
                 language: Optional[str] = None, initial_prompt: Optional[str] = None, context: object = None,
                 step_s: float = LIVE_STEP_S) -> int:
        """A live stream (``Scheduler.add_live``, decoded every ``step_s`` of new audio): its audio comes by
        ``feed`` up to ``end``; its events (``Started``, ``Hypothesis``, ``Committed``, ``Segments``, then
        ``Finished`` or ``Failed``) go to ``deliver``. Returns its id."""
        stream = Stream(next(self._ids), deliver, context)
        self._inbox.put(("live", stream, options, language, initial_prompt, step_s))
        return stream.id

    def feed(self, stream_id: int, samples) -> None:
        """Append 16 kHz mono float samples [n] to the live stream (checked here: ``AudioError``); nothing once it
        has ended or was cancelled."""
        self._inbox.put(("feed", stream_id, live_samples(samples)))

    def end(self, stream_id: int) -> None:
        """No more audio for the live stream: its rest is transcribed, then ``Finished``."""
        self._inbox.put(("end", stream_id))

    def cancel(self, stream_id: int) -> None:
        """Drop the stream: no event of it is delivered after the next one (nothing when it has ended)."""
        self._inbox.put(("cancel", stream_id))

    # --- the worker thread ---------------------------------------------------------------------------------

    @torch.no_grad()  # grad mode is per thread; the model's own methods say so too
    def _run(self) -> None:
        if self.threads:
            torch.set_num_threads(self.threads)
        while True:
            self._handle(self._inbox.get())
            self._before_round()
            self._drive()
            if self._stopping and self._inbox.empty():
                return

    def _before_round(self) -> None:
        """Before the first round after idling: take the commands waiting (a subclass may wait for more)."""
        self._drain()

    def _after_event(self) -> None:
        """After each event and the commands taken then (a subclass may gather more at a round's end)."""

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
        elif kind == "live":
            self._add_live(*command[1:])
        elif kind in ("feed", "end") and command[1] in self.streams and command[1] not in self._cancels:
            getattr(self.scheduler, kind)(*command[1:])
        elif kind == "cancel" and command[1] in self.streams:
            self._cancels.add(command[1])
            self._try_cancels()

    def _add(self, stream: Stream, audio, options, language, initial_prompt, chunking, vad_filter) -> None:
        if self._stopping:
            return self._end(stream, Failed(stream.id, Closing(self.closing_message)))
        try:
            self.scheduler.add(audio, options=options, language=language, initial_prompt=initial_prompt,
                               stream_id=stream.id, chunking=chunking, vad_filter=vad_filter)
        except (WhisperError, ValueError, TypeError) as e:  # OptionError: the front ends check first; not trusted
            return self._end(stream, Failed(stream.id, e))
        self.streams[stream.id] = stream

    def _add_live(self, stream: Stream, options, language, initial_prompt, step_s) -> None:
        if self._stopping:
            return self._end(stream, Failed(stream.id, Closing(self.closing_message)))
        try:
            self.scheduler.add_live(options=options, language=language, initial_prompt=initial_prompt,
                                    stream_id=stream.id, step_s=step_s)
        except (WhisperError, ValueError, TypeError) as e:
            return self._end(stream, Failed(stream.id, e))
        self.streams[stream.id] = stream

    def _try_cancels(self) -> None:
        """Cancel what can be cancelled now (a stream being admitted is found after its ``Started``)."""
        for stream_id in list(self._cancels):
            stream = self.streams.get(stream_id)
            if stream is None:
                self._cancels.discard(stream_id)
            elif self.scheduler.cancel(stream_id):
                self._cancels.discard(stream_id)
                self._forget(stream, cancelled=True)

    def _drive(self) -> None:
        """Run the scheduler until it has nothing left, taking commands between its events."""
        try:
            for event in self.scheduler.events():
                self._route(event)
                self._drain()
                if self._cancels:
                    self._try_cancels()
                self._after_event()
        except Exception as e:  # a bug: fail what is running, start over with a fresh scheduler
            log.exception("the scheduler failed; its %d streams fail", len(self.streams))
            error = DecodingError(f"the scheduler failed: {type(e).__name__}: {e}")
            for stream in list(self.streams.values()):
                self._end(stream, Failed(stream.id, error))
            self._cancels.clear()
            self.scheduler = self._new_scheduler()

    def _route(self, event: Event) -> None:
        stream = self.streams.get(event.stream_id)
        if stream is None:  # cancelled: the rest of its round's events
            return
        self._on_event(stream, event)
        if isinstance(event, (Finished, Failed)):
            self._end(stream, event)
        else:
            stream.started = True
            stream.deliver(event)

    def _end(self, stream: Stream, event: Event) -> None:
        self._forget(stream)
        stream.deliver(event)

    def _forget(self, stream: Stream, cancelled: bool = False) -> None:
        if stream.ended:
            return
        stream.ended = True
        self.streams.pop(stream.id, None)
        self._on_end(stream, cancelled)

    def _on_event(self, stream: Stream, event: Event) -> None:
        """A hook: ``event`` of ``stream`` is about to be delivered."""

    def _on_end(self, stream: Stream, cancelled: bool) -> None:
        """A hook: ``stream`` has ended (finished, failed or cancelled)."""


__all__ = ["Closing", "Stream", "StreamWorker"]
