"""``python -m whisper_model.distributed``: the job as a command (exit status as ``args.EPILOG`` says).

Ctrl-C and SIGTERM stop the job within a moment: one line with the summary so far, exit status 130 / 143; the
files already done are written and recorded in the manifest (a file being written is finished first), the workers
are stopped, and a local Ray started for the job is shut down. Running it again goes on from there.
"""
from __future__ import annotations

from typing import Optional

from ..cli.signals import SignalGuard, report_interrupt


def main(argv: Optional[list[str]] = None, worker_class: Optional[type] = None) -> int:
    job = None
    try:
        with SignalGuard():
            from .args import parse_job_args  # imported here: a Ctrl-C while torch loads ends cleanly too
            from .job import Job
            from .worker import TranscriptionWorker

            job = Job(parse_job_args(argv), worker_class or TranscriptionWorker)
            return job.run()
    except KeyboardInterrupt as e:  # signals.Interrupted (SIGINT, SIGTERM), or a Ctrl-C before the guard was up
        return report_interrupt(e, job.report if job is not None else None)


__all__ = ["main"]
