"""One worker of the job (a Ray actor; the class itself needs Ray only to name its node): the model or engine
loaded once, and one ``Scheduler`` that files join as they arrive, so the batch stays full across calls.

    worker = TranscriptionWorker(spec)      # in the actor's process: loads the model (errors kept for ready())
    worker.ready()                          # {"error": None, "multilingual": False, "warning": None, ...}
    worker.transcribe("/data/a.wav")        # {"input": ..., "result": result_dict, "duration": 11.0, ...}

Ray calls ``transcribe`` from several threads at once (the actor's ``max_concurrency``): each call adds its file
to the worker's ``service.StreamWorker`` (the thread that runs the scheduler: a file joins the batch at the next
round) and waits for its outcome: the file's result once it is done (``results.StreamResult``), or its error
(``AudioError``, ``DecodingError``: that file fails, the others go on).
"""
from __future__ import annotations

import os
import socket
import time
from concurrent.futures import Future
from typing import Optional

from ..errors import WhisperError
from ..pipeline import WhisperModel
from ..results import StreamResult
from ..transcribe import result_dict
from ..service import ModelSpec, StreamWorker, english_only_language, load_model
from .args import WorkerSpec


def model_of(spec: WorkerSpec) -> WhisperModel:
    """The worker's model (``service.load_model``: the same rule as the command line's)."""
    return load_model(ModelSpec(spec.model, None, spec.engine_dir, device=spec.device, dtype=spec.dtype,
                                fast=spec.fast, max_batch_size=spec.batch_size,
                                max_beam_width=max(spec.options.beam_size or 1, spec.options.best_of or 1)))


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
        self.started = time.perf_counter()
        try:
            self._set_threads()
            self.model = model_of(spec)
            self.language, self.warning = english_only_language(spec.language, self.model.is_multilingual,
                                                                spec.model_label)
            self.worker = StreamWorker(self._new_scheduler, threads=spec.threads, name="scheduler")
        except (WhisperError, RuntimeError, OSError, ValueError) as e:  # reported by ready(): exit status 2
            self.error = f"{type(e).__name__}: {e}" if not isinstance(e, WhisperError) else str(e)
            return
        self.load_s = time.perf_counter() - self.started
        self.worker.start()

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
        done, ``{"input", "worker", "error", "error_type"}`` when it failed."""
        if self.error is not None:
            return {"input": path, "worker": self.name, "error": self.error}
        future: Future = Future()
        result = StreamResult(path)

        def deliver(event) -> None:  # on the scheduler's thread
            if result.add(event):
                future.set_result(self._outcome(path, result))

        self.worker.add(path, deliver, options=self.spec.options, language=self.language,
                        initial_prompt=self.spec.initial_prompt)
        return future.result()

    def _outcome(self, path: str, result: StreamResult) -> dict:
        if result.error is not None:
            error = result.error
            message = str(error) if isinstance(error, WhisperError) else f"{type(error).__name__}: {error}"
            return {"input": path, "worker": self.name, "error": message, "error_type": type(error).__name__}
        info = result.info
        return {"input": path, "worker": self.name, "result": result_dict(result.segments, info),
                "duration": info.duration, "language": info.language, "seconds": result.seconds}


__all__ = ["TranscriptionWorker", "model_of"]
