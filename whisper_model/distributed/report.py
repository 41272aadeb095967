"""What the job tells the person running it: per file (``--verbose True``: its segments and one line; ``False``:
one progress bar over the files and the hours of audio), the workers as they start or die, and the summary line:

    done 98, failed 1, skipped 3 (2 already done, 1 missing); 3.52 h of audio in 412.0 s (real-time factor 0.033)
    on 4 workers
"""
from __future__ import annotations

import sys
import time
from typing import Optional, Sequence, TextIO

import tqdm

from ..cli.progress import probe_seconds
from ..io.writers import format_timestamp

BAR_FORMAT = "{desc}{percentage:3.0f}%|{bar}| {n_fmt}/{total_fmt} files [{elapsed}<{remaining}{postfix}]"


def audio_amount(seconds: float) -> str:
    return f"{seconds / 3600:.2f} h" if seconds >= 3600 else f"{seconds:.1f} s"


class Report:
    """The counts of one job (also when it is interrupted) and what is printed as it goes."""

    def __init__(self, verbose: Optional[bool], err: TextIO = None, out: TextIO = None):
        self.verbose, self.err, self.out = verbose, err or sys.stderr, out or sys.stdout
        self.started = time.perf_counter()
        self.done = self.failed = self.already = self.missing = self.retried = 0
        self.todo = 0
        self.workers = 0
        self.audio_s = 0.0
        self.expected_s = 0.0
        self.bar: Optional[tqdm.tqdm] = None
        self.first_ready: Optional[float] = None

    def begin(self, todo: Sequence[str]) -> None:
        """The files to transcribe now; ``--verbose False`` shows the bar (their announced hours of audio)."""
        self.todo = len(todo)
        if self.verbose is False and todo:
            self.expected_s = sum(probe_seconds(p) or 0.0 for p in todo)
            self.bar = tqdm.tqdm(total=len(todo), unit="file", file=self.err, bar_format=BAR_FORMAT,
                                 dynamic_ncols=True)
            self._postfix()

    def worker_ready(self, info: dict) -> None:
        self.workers += 1
        if self.first_ready is None:
            self.first_ready = time.perf_counter()
        if info.get("warning") and self.workers == 1:
            self.error(info["warning"])
        node = f", node {info['node'][:12]}" if info.get("node") else ""
        self.note(f"worker {info['name']} ready (pid {info['pid']}, {info['device']}{node}, model loaded in "
                  f"{info['load_s']:.1f} s)")

    def file_done(self, path: str, outcome: dict, written: list) -> None:
        self.done += 1
        self.audio_s += outcome["duration"]
        if self.verbose:
            head = f"{path}: " if self.todo > 1 else ""
            for seg in outcome["result"]["segments"]:
                print(f"{head}[{format_timestamp(seg['start'])} --> {format_timestamp(seg['end'])}] "
                      f"{seg['text'].strip()}", file=self.out, flush=True)
        self.note(f"{path}: language={outcome['language']} duration={outcome['duration']:.1f}s "
                  f"time={outcome['seconds']:.1f}s worker={outcome['worker']} -> "
                  f"{', '.join(str(w) for w in written)}")
        self._tick()

    def file_failed(self, path: str, message: str) -> None:
        self.failed += 1
        self.error(f"error: {path}: {message}")
        self._tick()

    def note(self, message: str) -> None:
        """An information line (not with --verbose None)."""
        if self.verbose is not None:
            self._write(message)

    def error(self, message: str) -> None:
        self._write(message)

    def summary(self) -> str:
        wall = time.perf_counter() - self.started
        left = self.todo - self.done - self.failed
        skipped = self.already + self.missing
        counts = f"done {self.done}, failed {self.failed}, skipped {skipped}"
        if skipped:
            counts += f" ({self.already} already done, {self.missing} missing)"
        counts += f", not finished {left}" if left > 0 else ""
        rtf = f" (real-time factor {wall / self.audio_s:.3f})" if self.audio_s else ""
        workers = f" on {self.workers} worker{'s' * (self.workers != 1)}" if self.workers else ""
        retried = f"; {self.retried} file{'s' * (self.retried != 1)} retried after a worker died" if self.retried \
            else ""
        return f"{counts}; {audio_amount(self.audio_s)} of audio in {wall:.1f} s{rtf}{workers}{retried}"

    def close(self, *, keep: bool = True) -> None:
        if self.bar is not None:
            self.bar.leave = keep
            self.bar.close()
            self.bar = None

    def _tick(self) -> None:
        if self.bar is not None:
            self.bar.update(1)
            self._postfix()

    def _postfix(self) -> None:
        total = f"/{self.expected_s / 3600:.2f}" if self.expected_s else ""
        failed = f", {self.failed} failed" if self.failed else ""
        self.bar.set_postfix_str(f"{self.audio_s / 3600:.2f}{total} h of audio{failed}", refresh=True)

    def _write(self, message: str) -> None:
        if self.bar is not None:
            self.bar.write(message, file=self.err)
        else:
            print(message, file=self.err, flush=True)


__all__ = ["Report", "audio_amount"]
