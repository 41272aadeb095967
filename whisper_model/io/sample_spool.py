"""Pieces of audio kept on disk until they are needed: ``SampleSpool``.

    spool = SampleSpool()
    k = spool.append(samples)      # float32 [n] written to an anonymous temporary file; its index
    samples = spool.read(k)        # read back (a fresh array)
    spool.close()                  # the file is gone (also when the spool is collected)

The chunk plan (``chunk_plan.ChunkPlan``) reads a file once, in blocks, and keeps each chunk's samples here until
the scheduler has room for it: the memory held is a few chunks, not the file. The temporary file is unlinked at
once (``tempfile.TemporaryFile``) and created on the first ``append``.
"""
from __future__ import annotations

import tempfile
from typing import Optional

import numpy as np


class SampleSpool:
    """float32 sample arrays in an anonymous temporary file, read back by index."""

    def __init__(self):
        self._file: Optional[object] = None
        self._spans: list[tuple[int, int]] = []  # (offset, count) of each array, in float32 items
        self._end = 0  # items written

    def __len__(self) -> int:
        return len(self._spans)

    def append(self, samples: np.ndarray) -> int:
        """Write ``samples`` [n] (as float32); returns its index."""
        data = np.ascontiguousarray(samples, dtype=np.float32).reshape(-1)
        if self._file is None:
            self._file = tempfile.TemporaryFile()
        self._file.seek(self._end * 4)
        self._file.write(memoryview(data).cast("B"))
        self._spans.append((self._end, len(data)))
        self._end += len(data)
        return len(self._spans) - 1

    def read(self, index: int) -> np.ndarray:
        """The samples appended as ``index`` (float32 [n])."""
        offset, count = self._spans[index]
        if not count:
            return np.zeros(0, np.float32)
        self._file.seek(offset * 4)
        data = np.empty(count, np.float32)
        got = self._file.readinto(memoryview(data).cast("B"))
        if got != data.nbytes:
            raise OSError(f"the sample spool gave {got} of {data.nbytes} bytes back")
        return data

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
        self._spans = []


__all__ = ["SampleSpool"]
