"""The driver of one job: check the flags, find the inputs, skip what the manifest has as done, run the rest on the
workers, write each file's outputs (atomically, as ``python -m whisper_model.run`` writes them) and its manifest
line as soon as the file comes back, and sum it all up.

Outputs and the manifest are written here, on the driver's machine, in ``--output_dir``; the workers only read
the inputs, by their absolute paths (on a cluster, the inputs, ``--engine_dir`` and checkpoint paths must be
visible at the same paths on every node, e.g. on a shared file system).
"""
from __future__ import annotations

import argparse
import signal
import sys
import threading
from typing import Optional

from ..cli.args import usage_error
from ..cli.inputs import expand_inputs
from ..cli.signals import SIGNALS, Interrupted
from ..errors import OptionError, OutputError
from ..io.writers import write_result
from ..options import TranscriptionOptions
from .args import JobSpec, prepare
from .manifest import MANIFEST_NAME, Manifest, input_key
from .pool import JobError, RayCluster, WorkerPool
from .report import Report
from .worker import TranscriptionWorker


class SignalFlag:
    """SIGINT and SIGTERM noted by the handler and raised by ``check`` (as ``cli.signals.Interrupted``) between
    Ray's waits: an exception raised by a handler inside ``ray.wait`` comes out of it as a plain
    KeyboardInterrupt, without the signal's name and exit status. Nothing is interrupted midway this way: a file's
    outputs and manifest line are always written whole."""

    def __init__(self):
        self.signum: Optional[int] = None
        self.previous: dict = {}

    def __enter__(self) -> "SignalFlag":
        if threading.current_thread() is threading.main_thread():
            self.previous = {s: signal.signal(s, self._note) for s in SIGNALS}
        return self

    def _note(self, signum: int, frame) -> None:
        self.signum = signum

    def check(self) -> None:
        if self.signum is not None:
            raise Interrupted(self.signum)

    def __exit__(self, *exc) -> None:
        for s, handler in self.previous.items():
            signal.signal(s, handler)
        self.previous = {}


class Job:
    """One run of the command (``run`` returns its exit status); ``report`` has its counts, also when it was
    interrupted. ``worker_class``: the actor's class (tests give a subclass); ``options``: the
    ``TranscriptionOptions`` of every file in place of the flags' (``args.prepare``)."""

    def __init__(self, args: argparse.Namespace, worker_class: type = TranscriptionWorker,
                 report: Optional[Report] = None, options: Optional[TranscriptionOptions] = None):
        self.args, self.worker_class, self.options = args, worker_class, options
        self.report = report or Report(args.verbose)
        self.spec: Optional[JobSpec] = None

    def run(self) -> int:
        try:
            self.spec = prepare(self.args, self.options)
        except OptionError as e:
            return usage_error(e)
        files = self._existing()
        if files:
            try:
                with Manifest(self.spec.output_dir, self.spec.output_format) as manifest:
                    todo = self._not_done(files, manifest)
                    if todo:
                        self._transcribe(todo, manifest)
            except (JobError, OutputError) as e:
                self.report.close()
                return usage_error(e)
        print(self.report.summary(), file=sys.stderr, flush=True)
        return 1 if self.report.failed or self.report.missing else 0

    def _existing(self) -> list[str]:
        """The input files, each once (a directory: its media files); missing or unreadable ones are reported."""
        inputs = expand_inputs(self.args.audio)
        for line in [f"error: {p}; skipped" for p in inputs.problems]:
            self.report.error(line)
        for line in inputs.notes:
            self.report.note(line)
        self.report.missing = len(inputs.problems)
        seen, files = set(), []
        for path in inputs.files:
            if input_key(path) not in seen:
                seen.add(input_key(path))
                files.append(path)
        return files

    def _not_done(self, files: list[str], manifest: Manifest) -> list[str]:
        todo = [p for p in files if not manifest.is_done(p)]
        self.report.already = len(files) - len(todo)
        if self.report.already:
            self.report.note(f"{self.report.already} of {len(files)} files already done (as {manifest.path} "
                             "says): skipped")
        return todo

    def _transcribe(self, todo: list[str], manifest: Manifest) -> None:
        """Start Ray and the workers, hand the files out, write each one's outputs as it comes back."""
        report = self.report
        with RayCluster(self.spec), SignalFlag() as stop:  # after ray.init, which puts in its own SIGTERM handler
            pool = WorkerPool(self.spec, self.worker_class)
            try:
                report.begin(todo)
                for kind, data in pool.run(todo, check=stop.check):
                    if kind == "ready":
                        report.worker_ready(data)
                    elif kind == "lost":
                        report.error(data)
                    else:
                        self._finished(data, manifest)
                    stop.check()
                report.close()
            finally:
                report.retried = pool.retried
                pool.close()

    def _finished(self, outcome: dict, manifest: Manifest) -> None:
        """One file back from a worker: its outputs written and its manifest line appended, or its failure."""
        path = outcome["input"]
        if outcome.get("error") is None:
            try:
                written = write_result(outcome["result"], path, self.spec.output_dir, self.spec.output_format,
                                       self.spec.writer)
            except (OSError, ValueError) as e:
                outcome = dict(outcome, error=f"cannot write the outputs: {e}", error_type="OutputError")
            else:
                manifest.record(path, "done", duration=outcome["duration"], language=outcome["language"],
                                outputs=[w.name for w in written], worker=outcome["worker"])
                self.report.file_done(path, outcome, written)
                return
        manifest.record(path, "failed", error=outcome["error"], error_type=outcome.get("error_type"),
                        worker=outcome.get("worker"))
        self.report.file_failed(path, outcome["error"])


def run_job(args: argparse.Namespace, worker_class: type = TranscriptionWorker) -> int:
    """``Job(args, worker_class).run()``: the exit status."""
    return Job(args, worker_class).run()


__all__ = ["Job", "MANIFEST_NAME", "run_job"]
