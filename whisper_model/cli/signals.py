"""Ctrl-C and SIGTERM for the command line: a clean stop (an exception the command line turns into one line and
exit status 128 + the signal's number), and short sections (writing a file's outputs) that finish first.

    with SignalGuard() as guard:       # SIGINT and SIGTERM raise Interrupted from here on
        ...
        with guard.deferred():         # a signal arriving in here is raised when the block ends
            write_outputs()
"""
from __future__ import annotations

import signal
import sys
import threading
from contextlib import contextmanager
from typing import Iterator, Optional

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Interrupted(KeyboardInterrupt):
    """The run was stopped by ``signum`` (SIGINT: Ctrl-C, or SIGTERM)."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum

    @property
    def name(self) -> str:
        return signal.Signals(self.signum).name

    @property
    def exit_status(self) -> int:
        return 128 + self.signum  # 130 for SIGINT, 143 for SIGTERM: what a shell reports for a killed command


class SignalGuard:
    """Installs handlers for SIGINT and SIGTERM that raise ``Interrupted`` (in the main thread; elsewhere it does
    nothing); the previous handlers come back on exit."""

    def __init__(self):
        self._previous: dict = {}
        self._depth = 0
        self._pending: Optional[int] = None

    def __enter__(self) -> "SignalGuard":
        if threading.current_thread() is threading.main_thread():
            self._previous = {s: signal.signal(s, self._handle) for s in SIGNALS}
        return self

    def __exit__(self, *exc) -> None:
        for s, handler in self._previous.items():
            signal.signal(s, handler)
        self._previous = {}

    def _handle(self, signum: int, frame) -> None:
        if self._depth:
            self._pending = signum
            return
        raise Interrupted(signum)

    @contextmanager
    def deferred(self) -> Iterator[None]:
        """Run the block to its end even if a signal comes; raise ``Interrupted`` for it afterwards."""
        self._depth += 1
        try:
            yield
        finally:
            self._depth -= 1
            if not self._depth and self._pending is not None:  # the signal wins over an error of the block
                signum, self._pending = self._pending, None
                raise Interrupted(signum)


def report_interrupt(e: KeyboardInterrupt, run) -> int:
    """One line on stderr for a run stopped by ``e`` (``Interrupted``, or a Ctrl-C before the guard was up), with
    ``run``'s summary so far (``run``: None, or what has ``close(keep=)`` and ``summary()``: the command line's
    session, the Ray job's report); its exit status (130 / 143)."""
    if run is not None:
        run.close(keep=False)
    done = f": {run.summary()}" if run is not None else ""
    print(f"interrupted ({getattr(e, 'name', 'SIGINT')}){done}", file=sys.stderr, flush=True)
    return getattr(e, "exit_status", 130)
