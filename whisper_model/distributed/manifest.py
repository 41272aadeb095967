"""The job's record in its output folder, ``manifest.jsonl``: one JSON line per file finished (done or failed),
appended and flushed to disk as soon as the file's outputs are written. A re-run into the same folder skips the
files it lists as done, so a job stopped by Ctrl-C, a crash or a lost driver goes on where it was.

    {"input": "/data/a.wav", "status": "done", "size": 352078, "mtime_ns": ..., "duration": 11.0,
     "language": "en", "outputs": ["a.txt", "a.srt", ...], "worker": "w1@node", "time": "2026-12-04T10:00:00Z"}
    {"input": "/data/b.wav", "status": "failed", "error": "AudioError: ...", ...}

A file counts as done when its latest line says so, it has not changed since (same size and modification time),
and the outputs of the format asked for now are all there (a re-run with ``-f all`` after ``-f txt`` redoes it).
Failed files are tried again by the next run. A line cut short by a crash is ignored. One job at a time writes
to a folder: a second one is refused while the first holds the manifest's lock.
"""
from __future__ import annotations

import fcntl
import json
import os
import time
from pathlib import Path
from typing import Optional

from ..errors import OutputError
from ..io.writers import FORMATS

MANIFEST_NAME = "manifest.jsonl"


def input_key(path: str) -> str:
    return os.path.abspath(path)


def fingerprint(path: str) -> dict:
    """What says that an input is the one a record was made for: its size and modification time."""
    st = os.stat(path)
    return {"size": st.st_size, "mtime_ns": st.st_mtime_ns}


def expected_outputs(audio_path: str, output_format: str) -> list[str]:
    """The names ``io.writers.write_result`` gives the outputs of ``audio_path``."""
    formats = FORMATS if output_format == "all" else (output_format,)
    return [f"{Path(audio_path).stem}.{fmt}" for fmt in formats]


def read_records(path: Path) -> dict[str, dict]:
    """The latest record of each input in the manifest at ``path`` ({} when there is none); lines that are not
    complete JSON objects (cut short by a crash) are skipped."""
    records: dict[str, dict] = {}
    if not path.is_file():
        return records
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if isinstance(record, dict) and isinstance(record.get("input"), str):
                records[record["input"]] = record
    return records


class Manifest:
    """The manifest of ``output_dir``, opened (folder made, lock taken, records read) by ``open``."""

    def __init__(self, output_dir: str, output_format: str):
        self.output_dir = Path(output_dir)
        self.path = self.output_dir / MANIFEST_NAME
        self.output_format = output_format
        self.records: dict[str, dict] = {}
        self._file = None

    def open(self) -> "Manifest":
        try:
            self.output_dir.mkdir(parents=True, exist_ok=True)
            self._file = open(self.path, "ab+")
        except OSError as e:
            raise OutputError(f"--output_dir {self.output_dir}: cannot write {MANIFEST_NAME}: {e.strerror or e}") \
                from e
        try:
            fcntl.flock(self._file.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            self.close()
            raise OutputError(f"--output_dir {self.output_dir}: another job is writing to it (its {MANIFEST_NAME} "
                              "is locked); wait for it to end or give another --output_dir") from None
        self.records = read_records(self.path)
        self._end_cut_line()
        return self

    def _end_cut_line(self) -> None:
        """A last line without its newline (a crash while appending) gets one, so the next record stands alone."""
        end = self._file.seek(0, os.SEEK_END)
        if end > 0:
            self._file.seek(end - 1)
            if self._file.read(1) != b"\n":
                self._file.write(b"\n")
                self._file.flush()

    def is_done(self, path: str) -> bool:
        record = self.records.get(input_key(path))
        if record is None or record.get("status") != "done":
            return False
        try:
            if {k: record.get(k) for k in ("size", "mtime_ns")} != fingerprint(path):
                return False
        except OSError:
            return False
        return all((self.output_dir / name).is_file() for name in expected_outputs(path, self.output_format))

    def record(self, path: str, status: str, **fields) -> dict:
        """Append one line for ``path`` (``status``: done or failed) and put it on disk before returning."""
        entry = {"input": input_key(path), "status": status}
        try:
            entry.update(fingerprint(path))
        except OSError:
            pass
        entry.update(fields)
        entry["time"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        try:
            self._file.write((json.dumps(entry, ensure_ascii=False) + "\n").encode("utf-8"))
            self._file.flush()
            os.fsync(self._file.fileno())
        except OSError as e:
            raise OutputError(f"cannot append to {self.path}: {e.strerror or e}") from e
        self.records[entry["input"]] = entry
        return entry

    def close(self) -> None:
        if self._file is not None:
            self._file.close()  # releases the lock
            self._file = None

    def __enter__(self) -> "Manifest":
        return self.open()

    def __exit__(self, *exc) -> None:
        self.close()


def done_inputs(output_dir: str) -> list[str]:
    """The inputs the manifest of ``output_dir`` lists as done (whatever their outputs), for scripts and tests."""
    return sorted(k for k, r in read_records(Path(output_dir) / MANIFEST_NAME).items() if r.get("status") == "done")


def find_record(output_dir: str, path: str) -> Optional[dict]:
    return read_records(Path(output_dir) / MANIFEST_NAME).get(input_key(path))


__all__ = ["MANIFEST_NAME", "Manifest", "done_inputs", "expected_outputs", "find_record", "fingerprint",
           "input_key", "read_records"]
