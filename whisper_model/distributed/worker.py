"""One worker of the job (a Ray actor; the class itself needs Ray only to name its node): the model or engine
loaded once, and one ``Scheduler`` that files join as they arrive, so the batch stays full across calls.

    worker = TranscriptionWorker(spec)      # in the actor's process: loads the model (errors kept for ready())
    worker.ready()                          # {"error": None, "multilingual": False, "warning": None, ...}
    worker.transcribe("/data/a.wav")        # {"input": ..., "result": result_dict, "duration": 11.0, ...}

Ray calls ``transcribe`` from several threads at once (the actor's ``max_concurrency``): each call puts its file
in an inbox and waits for its outcome; one thread runs the scheduler, adds the files of the inbox between its
events (a file joins the batch at the next round) and hands each call its file's result once the file is done,
or its error (``AudioError``, ``DecodingError``: that file fails, the others go on).
"""
from __future__ import annotations

import itertools
import os
import queue
import socket
import threading
import time
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Optional

from ..cli.session import check_device
from ..errors import WhisperError
from ..io.tokenizer import normalize_language
from ..pipeline import WhisperModel
from ..scheduler import Failed, Finished, Segments, Started
from ..transcribe import result_dict
from .args import WorkerSpec


@dataclass
class _Pending:
    path: str
    future: Future
    segments: list = field(default_factory=list)
    since: float = field(default_factory=time.perf_counter)


def load_model(spec: WorkerSpec) -> WhisperModel:
    import torch

    check_device(spec.device)
    if spec.engine_dir:
        return WhisperModel.from_engine(spec.engine_dir, device=spec.device)
    return WhisperModel(spec.model, device=spec.device, dtype=getattr(torch, spec.dtype))


def english_only_language(spec: WorkerSpec, multilingual: bool) -> tuple[Optional[str], Optional[str]]:
    """The language to give the scheduler, and a warning when an English-only model was given another one (it
    uses English, as ``python -m whisper_model.run`` does)."""
    language = spec.language
    if language is not None and not multilingual and normalize_language(language) != "en":
        return "en", (f"warning: {spec.model_label} is an English-only model but got --language {language}; using "
                      "English instead")
    return language, None


def node_id() -> Optional[str]:
    """The Ray node this runs on (None outside Ray)."""
    try:
        import ray

        return ray.get_runtime_context().get_node_id() if ray.is_initialized() else None
    except Exception:  # noqa: BLE001 - not in a Ray worker
        return None


class TranscriptionWorker:
    """Loads the model (``spec``) and transcribes the files it is given, ``spec.batch_size`` at a time."""

    def __init__(self, spec: WorkerSpec, name: str = "worker"):
        self.spec, self.name = spec, f"{name}@{socket.gethostname()}"
        self.error: Optional[str] = None
        self.warning: Optional[str] = None
        self.model = None
        self.inbox: queue.Queue = queue.Queue()
        self.pending: dict[int, _Pending] = {}
        self.ids = itertools.count()
        self.started = time.perf_counter()
        try:
            self._set_threads()
            self.model = load_model(spec)
            self.language, self.warning = english_only_language(spec, self.model.is_multilingual)
            self.scheduler = self._new_scheduler()
        except (WhisperError, RuntimeError, OSError, ValueError) as e:  # reported by ready(): exit status 2
            self.error = f"{type(e).__name__}: {e}" if not isinstance(e, WhisperError) else str(e)
            return
        self.load_s = time.perf_counter() - self.started
        threading.Thread(target=self._serve, name="scheduler", daemon=True).start()

    def _set_threads(self) -> None:
        import torch

        if self.spec.threads:
            torch.set_num_threads(self.spec.threads)

    def _new_scheduler(self):
        return self.model.scheduler(batch_size=self.spec.batch_size, chunking=self.spec.chunking,
                                    vad_filter=self.spec.vad_filter)

    def ready(self) -> dict:
        """How the model loaded: ``error`` (None when it did), and what the driver reports."""
        return {"error": self.error, "warning": self.warning, "name": self.name, "pid": os.getpid(),
                "device": str(self.model.device) if self.model is not None else None,
                "multilingual": self.model.is_multilingual if self.model is not None else None,
                "load_s": getattr(self, "load_s", None), "node": node_id()}

    def transcribe(self, path: str) -> dict:
        """The outcome of ``path``: ``{"input", "worker", "result", "duration", "language", "seconds"}`` when
        done, ``{"input", "worker", "error"}`` when it failed."""
        if self.error is not None:
            return {"input": path, "worker": self.name, "error": self.error}
        future: Future = Future()
        self.inbox.put((path, future))
        return future.result()

    # -- the scheduler thread -----------------------------------------------------------------------------------
    def _serve(self) -> None:
        self._set_threads()  # torch's thread count is per thread here
        while True:
            self._add(*self.inbox.get())  # idle: wait for a file
            try:
                for event in self.scheduler.events():
                    self._drain()
                    self._handle(event)
            except Exception as e:  # noqa: BLE001 - not a file's failure: fail the files in flight, go on afresh
                for item in self.pending.values():
                    item.future.set_result(self._failure(item.path, e))
                self.pending.clear()
                self.scheduler = self._new_scheduler()

    def _drain(self) -> None:
        while True:
            try:
                self._add(*self.inbox.get_nowait())
            except queue.Empty:
                return

    def _add(self, path: str, future: Future) -> None:
        stream = next(self.ids)
        try:
            self.scheduler.add(path, options=self.spec.options, language=self.language,
                               initial_prompt=self.spec.initial_prompt, stream_id=stream)
        except WhisperError as e:
            future.set_result(self._failure(path, e))
            return
        self.pending[stream] = _Pending(path, future)

    def _handle(self, event) -> None:
        item = self.pending.get(event.stream_id)
        if item is None:
            return
        if isinstance(event, Started):
            item.since = time.perf_counter()
        elif isinstance(event, Segments):
            item.segments += event.segments
        elif isinstance(event, Finished):
            del self.pending[event.stream_id]
            item.future.set_result({
                "input": item.path, "worker": self.name, "result": result_dict(item.segments, event.info),
                "duration": event.info.duration, "language": event.info.language,
                "seconds": time.perf_counter() - item.since})
        elif isinstance(event, Failed):
            del self.pending[event.stream_id]
            item.future.set_result(self._failure(item.path, event.error))

    def _failure(self, path: str, error: BaseException) -> dict:
        message = str(error) if isinstance(error, WhisperError) else f"{type(error).__name__}: {error}"
        return {"input": path, "worker": self.name, "error": message, "error_type": type(error).__name__}


__all__ = ["TranscriptionWorker", "english_only_language", "load_model"]
