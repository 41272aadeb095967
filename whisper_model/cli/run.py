"""Command line: transcribe or translate audio files and write txt/srt/vtt/tsv/json, as openai-whisper's ``whisper``.

    whisper-trtllm clip.wav talk.mp3 --model base -o out -f srt
    python -m whisper_model.run clip.wav --model tiny.en --output_format all --output_dir out --verbose False

The flags are openai-whisper's (names, short forms, types, defaults; ``cli/args.py`` lists what differs). The
inputs go through one ``scheduler.Scheduler``: ``--batch_size N`` transcribes up to N files at once (1: one after
the other). Each file is fully transcribed before its outputs are written, each output atomically, as soon as that
file is complete. An input that is missing or cannot be decoded is reported and skipped, and the others go on; one
line at the end sums the run up (done, failed, skipped; audio seconds; wall time; real-time factor).

Ctrl-C (SIGINT) and SIGTERM stop the run: one line, exit status 130 / 143, no partial output (a file's outputs
being written are finished first). Exit status otherwise: 0, 1 when an input failed or was missing, 2 for a bad
option or a model that cannot be loaded.
"""
from __future__ import annotations

import os
import sys

from .signals import SignalGuard, report_interrupt


def main(argv: list[str] | None = None) -> int:
    session = None
    try:
        with SignalGuard() as guard:
            from .args import parse_args  # imported here: a Ctrl-C while torch loads ends cleanly too
            from .session import Session

            session = Session()
            return session.run(parse_args(argv), guard)
    except KeyboardInterrupt as e:  # signals.Interrupted (SIGINT, SIGTERM), or a Ctrl-C before the guard was up
        status = report_interrupt(e, session)
        if argv is None:  # the program itself, not a Python caller: skip the interpreter's teardown (about 1 s
            sys.stdout.flush()  # with torch loaded); every output file is already complete or never started
            os._exit(status)
        return status


if __name__ == "__main__":
    sys.exit(main())
