"""What a person watching the command line sees, as openai-whisper's ``--verbose`` has it.

``--verbose True``: each segment printed as it is decoded (``[00:01.000 --> 00:04.000] text``; a file name first
when several files are decoded together), a "reading" line before a long input is read; ``False``: one progress
bar over the audio seconds of all the inputs (it moves as each window's tokens are decoded, through the
scheduler's ``on_progress``, and with every decoded window; "reading <file>" while an input is read);
``None``: neither. Errors and the per-file lines go to stderr (``None``: errors only).

The bar follows the scheduler's events (``Started``, ``Segments`` with the seconds done, ``Finished``, ``Failed``)
and its order of admission: inputs are read in order, ``batch_size`` at first, one more each time a file ends.
``advance(index, seconds)`` is what the scheduler's ``on_progress`` calls within a window.
"""
from __future__ import annotations

import sys
from collections import deque
from pathlib import Path
from typing import Optional, Sequence, TextIO

import tqdm

from ..io.writers import format_timestamp

LONG_INPUT_S = 60.0  # with --verbose True, say "reading" before inputs at least this long
BAR_FORMAT = "{desc}{percentage:3.0f}%|{bar}| {n:.1f}/{total:.1f} s of audio [{elapsed}<{remaining}{postfix}]"


def probe_seconds(path: str) -> Optional[float]:
    """The duration the file's header announces (no decoding), or None when it says none."""
    try:
        import av

        with av.open(str(path)) as container:
            if container.duration:
                return container.duration / 1_000_000  # AV_TIME_BASE units
            stream = container.streams.audio[0]
            return float(stream.duration * stream.time_base) if stream.duration else None
    except Exception:  # noqa: BLE001 - any file PyAV cannot open has no duration to announce
        return None


def hms(seconds: float) -> str:
    return format_timestamp(seconds).split(".")[0]


class Progress:
    """Progress of ``paths`` (stream ``i`` is ``paths[i]``) transcribed ``batch_size`` at a time."""

    def __init__(self, paths: Sequence[str], *, verbose: Optional[bool], batch_size: int = 1,
                 err: TextIO = None, out: TextIO = None):
        self.paths, self.verbose = list(paths), verbose
        self.err, self.out = err or sys.stderr, out or sys.stdout
        n = len(self.paths)
        self.expected = [probe_seconds(p) if verbose is not None else None for p in self.paths]
        self.done = [0.0] * n
        self.ended = 0
        self.prefix = batch_size > 1 and n > 1  # segments of several files interleave
        self.waiting, self.reading = deque(range(n)), []
        self.bar = None
        if verbose is False:
            self.bar = tqdm.tqdm(total=sum(e for e in self.expected if e), unit="s", file=self.err,
                                 bar_format=BAR_FORMAT, dynamic_ncols=True)
        self._admit(min(batch_size, n))

    # -- the scheduler's events ---------------------------------------------------------------------------------
    def started(self, i: int, duration: float) -> None:
        if i in self.reading:
            self.reading.remove(i)
        self._retotal(i, duration)
        self._describe()

    def segments(self, i: int, segments, done: float) -> None:
        if self.verbose:
            head = f"{self.paths[i]}: " if self.prefix else ""
            for seg in segments:
                print(f"{head}[{format_timestamp(seg.start)} --> {format_timestamp(seg.end)}] {seg.text.strip()}",
                      file=self.out, flush=True)
        self.advance(i, done)

    def finished(self, i: int, duration: float, line: str) -> None:
        self.advance(i, duration)
        self.note(line)
        self._end()

    def failed(self, i: int, message: str) -> None:
        if i in self.reading:
            self.reading.remove(i)
        self._retotal(i, self.done[i])  # what is left of it will not be transcribed
        self.error(message)
        self._end()

    def advance(self, i: int, seconds: float) -> None:
        """Input ``i`` is transcribed up to ``seconds`` (never goes back)."""
        if self.expected[i] is not None:
            seconds = min(seconds, self.expected[i])
        if seconds > self.done[i]:
            if self.bar is not None:
                self.bar.update(seconds - self.done[i])
            self.done[i] = seconds

    # -- output -------------------------------------------------------------------------------------------------
    def note(self, message: str) -> None:
        """An information line (not with --verbose None)."""
        if self.verbose is not None:
            self._write(message)

    def error(self, message: str) -> None:
        self._write(message)

    def close(self, *, keep: bool = True) -> None:
        """Done; ``keep=False`` (interrupted) clears the bar instead of leaving it on the screen."""
        if self.bar is not None:
            self.bar.leave = keep
            self.bar.close()
            self.bar = None

    def _write(self, message: str) -> None:
        if self.bar is not None:
            self.bar.write(message, file=self.err)
        else:
            print(message, file=self.err, flush=True)

    # -- bookkeeping ----------------------------------------------------------------------------------------------
    def _retotal(self, i: int, seconds: float) -> None:
        old, self.expected[i] = self.expected[i] or 0.0, seconds
        if self.bar is not None and seconds != old:
            self.bar.total = self.bar.total - old + seconds
            self.bar.refresh()

    def _end(self) -> None:
        self.ended += 1
        self._admit(1)  # the scheduler reads the next input into the freed row
        self._describe()

    def _admit(self, k: int) -> None:
        for _ in range(k):
            if not self.waiting:
                return
            i = self.waiting.popleft()
            self.reading.append(i)
            expected = self.expected[i]
            if self.verbose and (expected is None or expected >= LONG_INPUT_S):
                length = f" ({hms(expected)} of audio)" if expected is not None else ""
                self._write(f"reading {self.paths[i]}{length}")
        self._describe()

    def _describe(self) -> None:
        if self.bar is None:
            return
        name = Path(self.paths[self.reading[-1]]).name if self.reading else None
        self.bar.set_description(f"reading {name}" if name else "", refresh=False)
        if len(self.paths) > 1:
            self.bar.set_postfix_str(f"{self.ended}/{len(self.paths)} files", refresh=False)
        self.bar.refresh()
