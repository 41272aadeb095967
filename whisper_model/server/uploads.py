"""Uploaded files decoded to 16 kHz samples, off the process that decodes the batch (or on threads of it).

    uploads = UploadDecoder(processes=4); uploads.start()
    samples = await uploads.decode(data, "clip.wav")      # float32 [n]; ApiError 400 naming the file
    uploads.close()

Why processes: the batch's decode loop is Python around the GPU's kernels, and it gives the GIL up at each step's
synchronisation. Decoding an upload with PyAV on a thread of the same process holds the GIL for milliseconds at a
time, so every step of the loop that waits for it gets longer while requests arrive (measured on an H200: a round of
32 windows took 2.0 s in the server against 1.34 s offline). In worker processes the decoding has its own GIL; the
server only copies the bytes there and the samples back. ``processes=0``: on the event loop's thread pool, as
before (the right choice on a CPU, where the cores are the decode loop's anyway).

The processes come from a ``forkserver`` (never forked from a process that has started CUDA), with the audio module
loaded once before they fork; ``start`` waits until each has started, so the first requests do not pay for it.
"""
from __future__ import annotations

import asyncio
import multiprocessing
import threading
import logging
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Optional

import numpy as np
from starlette.concurrency import run_in_threadpool

from ..errors import AudioError, audio_errors
from .errors import ApiError

log = logging.getLogger("whisper_model.server")
PRELOAD = ["whisper_model.io.audio"]  # what the forkserver imports before it forks a decoding process


def samples_of(data: bytes) -> tuple[Optional[np.ndarray], Optional[str]]:
    """File bytes -> (16 kHz mono float32 samples [n], None), or (None, why they are not audio). Runs in a decoding
    process (a plain value back: no exception has to survive pickling)."""
    from ..io.audio import load_audio

    try:
        with audio_errors():
            return load_audio(data), None
    except AudioError as e:
        return None, str(e)


def _ready() -> bool:
    return True


class UploadDecoder:
    """See the module's docstring. ``start`` and ``close`` once, ``decode`` from the event loop in between."""

    def __init__(self, processes: int = 0):
        if processes < 0:
            raise ValueError(f"decode_processes must be >= 0, got {processes}")
        self.processes = processes
        self._pool: Optional[ProcessPoolExecutor] = None
        self._replacing = threading.Lock()

    def start(self) -> None:
        """Start the processes (none with ``processes=0``) and wait until each has run once."""
        if self.processes:
            self._pool = self._new_pool()

    def _new_pool(self) -> ProcessPoolExecutor:
        context = multiprocessing.get_context("forkserver")
        context.set_forkserver_preload(PRELOAD)
        pool = ProcessPoolExecutor(self.processes, mp_context=context)
        for future in [pool.submit(_ready) for _ in range(self.processes)]:
            future.result()
        return pool

    def close(self) -> None:
        """Stop the processes (decodings still queued are cancelled: their requests are being dropped anyway)."""
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None

    async def decode(self, data: bytes, filename: str) -> np.ndarray:
        """The upload as 16 kHz mono float32 samples; ``ApiError`` 400 naming the file when it is not audio."""
        pool = self._pool
        if pool is None:
            samples, why = await run_in_threadpool(samples_of, data)
        else:
            try:
                samples, why = await asyncio.get_running_loop().run_in_executor(pool, samples_of, data)
            except BrokenProcessPool:  # a decoding process died (killed, or crashed in the decoder)
                await run_in_threadpool(self._replace, pool)
                raise ApiError(500, f"the process decoding {filename!r} stopped; the request may be retried",
                               code="decoder_failed") from None
        if why is not None:
            raise ApiError(400, f"file {filename!r} cannot be decoded as audio: {why}", param="file",
                           code="invalid_audio")
        return samples

    def _replace(self, broken: ProcessPoolExecutor) -> None:
        """A fresh pool for a broken one (once, when several requests saw it break)."""
        with self._replacing:
            if self._pool is broken:
                log.error("a process decoding uploads stopped; starting %d new ones", self.processes)
                broken.shutdown(wait=False, cancel_futures=True)
                self._pool = self._new_pool()


__all__ = ["UploadDecoder", "samples_of"]
