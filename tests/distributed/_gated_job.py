"""``python tests/distributed/_gated_job.py GATED ARGS...``: the Ray job as a command (``python -m
whisper_model.distributed ARGS...``) whose workers never finish the input ``GATED``. Stopped once a file is done,
it has done some files and cannot have done them all, however fast or slow the machine."""
from __future__ import annotations

import os
import sys
import threading
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # this checkout's whisper_model, as with python -m

from whisper_model.distributed import command  # noqa: E402
from whisper_model.distributed.worker import TranscriptionWorker  # noqa: E402


class GatedWorker(TranscriptionWorker):
    gated = ""  # set before the workers start: the class goes to them by value, with it

    def transcribe(self, path: str) -> dict:
        if os.path.abspath(path) == self.gated:
            threading.Event().wait()  # until the job is stopped (a call of its own: the other files go on)
        return super().transcribe(path)


if __name__ == "__main__":
    GatedWorker.gated = os.path.abspath(sys.argv[1])
    sys.exit(command.main(sys.argv[2:], worker_class=GatedWorker))
