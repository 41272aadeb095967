"""The Ray job run in this process on a local Ray with 2 CPU workers (tiny.en, the shared clips): its outputs equal
the single-process command line's, a corrupt file fails alone, a re-run skips what is done, a worker that dies has
its files done by a worker again, and a job killed midway finishes on a re-run without redoing finished files."""
from __future__ import annotations

import json
import os
import signal
import sys
import time

import pytest

from _distributed_common import FLAGS, output_files
from _processes import gated_job_command, kill_session, start
from _requires import require
from whisper_model.distributed import command
from whisper_model.distributed.manifest import MANIFEST_NAME, done_inputs, read_records
from whisper_model.distributed.worker import TranscriptionWorker

ray = require("ray")
pytestmark = pytest.mark.usefixtures("local_ray")


def run_job(capsys, *argv, worker_class=None):
    code = command.main([str(a) for a in argv], worker_class=worker_class)
    return code, capsys.readouterr()


def summary(err: str) -> str:
    return err.strip().splitlines()[-1]


def test_outputs_equal_the_single_process_cli_and_a_corrupt_file_fails_alone(tmp_path, capsys, clips, reference):
    corrupt = tmp_path / "corrupt.wav"
    corrupt.write_bytes(b"RIFF\x24\x00\x00\x00WAVEfmt " + os.urandom(2000))
    missing = tmp_path / "missing.wav"
    out = tmp_path / "out"
    code, io = run_job(capsys, *clips, corrupt, missing, "-o", out, *FLAGS, "--num_workers", "2")
    assert code == 1, io.err  # a file failed, one was missing
    assert output_files(out) == output_files(reference)  # byte for byte, every format
    assert f"error: {missing}: no such file; skipped" in io.err
    assert f"error: {corrupt}: " in io.err
    assert summary(io.err).startswith("done 5, failed 1, skipped 1 (0 already done, 1 missing); ")
    assert summary(io.err).endswith(" on 2 workers")
    records = read_records(out / MANIFEST_NAME)
    assert sorted(k for k, r in records.items() if r["status"] == "done") == sorted(map(os.path.abspath, clips))
    assert records[str(corrupt)]["status"] == "failed" and records[str(corrupt)]["error"]

    # a re-run skips what is done (no worker is started for them) and tries the failed file again
    code, io = run_job(capsys, *clips, corrupt, "-o", out, *FLAGS)
    assert code == 1 and summary(io.err).startswith("done 0, failed 1, skipped 5 (5 already done, 0 missing); ")
    code, io = run_job(capsys, *clips, "-o", out, *FLAGS)
    assert code == 0 and summary(io.err).startswith("done 0, failed 0, skipped 5 (5 already done, 0 missing); ")
    assert "ready (pid" not in io.err  # nothing to do: no worker started
    assert output_files(out) == output_files(reference)


class DiesOnce(TranscriptionWorker):
    """A worker whose process dies on the first file any worker of the job is given (``marker`` says it did)."""

    marker = ""

    def transcribe(self, path: str) -> dict:
        if not os.path.exists(self.marker):
            open(self.marker, "w").close()
            os._exit(1)
        return super().transcribe(path)


ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])  # the workers cannot import this test module


def test_a_worker_that_dies_is_restarted_and_its_files_done(tmp_path, capsys, clips, reference):
    """Also with --batch_size 2: the texts, times and tokens are the command line's (log-probabilities to rounding:
    other files share the batch)."""
    DiesOnce.marker = str(tmp_path / "died")
    out = tmp_path / "out"
    code, io = run_job(capsys, *clips, "-o", out, *FLAGS, "--num_workers", "2", "--batch_size", "2",
                       worker_class=DiesOnce)
    assert code == 0, io.err
    assert os.path.exists(DiesOnce.marker)
    assert "died" in io.err and "its files go back to the queue" in io.err
    assert "retried after a worker died" in summary(io.err) and summary(io.err).startswith("done 5, failed 0")
    ours, theirs = output_files(out), output_files(reference)
    assert ours.keys() == theirs.keys()
    for name in ours:
        if name.endswith(".json"):
            a, b = json.loads(ours[name]), json.loads(theirs[name])
            assert a["text"] == b["text"]
            for sa, sb in zip(a["segments"], b["segments"], strict=True):
                for key in ("avg_logprob", "no_speech_prob"):
                    assert sa.pop(key) == pytest.approx(sb.pop(key), rel=1e-4, abs=1e-6)
                assert sa == sb
        else:
            assert ours[name] == theirs[name], name
    assert len(done_inputs(out)) == 5


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGKILL], ids=["SIGTERM", "SIGKILL"])
def test_killed_midway_then_rerun_finishes_without_redoing_finished_files(tmp_path, capsys, clips, reference, signum):
    """The job as a command whose workers never finish one file (``_gated_job.py``), stopped once a file is done:
    by SIGTERM (exit status 143, Ray shut down, nothing left running) or by SIGKILL (no clean-up at all: a crash);
    the re-run (no gate) does the rest."""
    out = tmp_path / "out"
    argv = [*clips, "-o", out, *FLAGS, "--num_workers", "1"]
    job = start(gated_job_command(clips[0], *argv), tmp_path / "job.log")
    try:
        deadline = time.monotonic() + 600  # only against a hang: the job is not stopped before a file is done
        while not done_inputs(out) and job.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        running = job.poll() is None
        os.kill(job.pid, signum)
        job.wait(30)
    finally:
        left = kill_session(job, wait_s=10 if signum == signal.SIGTERM else 1)  # the local Ray it started
    log = (tmp_path / "job.log").read_text()
    assert running, f"the job ended by itself (it cannot finish {clips[0]}):\n{log}"
    if signum == signal.SIGTERM:
        assert job.returncode == 143 and "interrupted (SIGTERM): done " in log, log
        assert left == [], "the job left processes running after SIGTERM"
    first = done_inputs(out)
    assert first and os.path.abspath(clips[0]) not in first, log
    stamps = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}

    code, io = run_job(capsys, *argv)
    assert code == 0, io.err
    skipped = len(first)
    assert summary(io.err).startswith(f"done {len(clips) - skipped}, failed 0, skipped {skipped} ({skipped} already "
                                      "done, 0 missing)")
    for path in first:  # not written again
        for name in read_records(out / MANIFEST_NAME)[path]["outputs"]:
            assert (out / name).stat().st_mtime_ns == stamps[name]
    lines = [json.loads(line) for line in (out / MANIFEST_NAME).read_text().splitlines()]
    assert sorted(r["input"] for r in lines if r["status"] == "done") == sorted(map(os.path.abspath, clips))
    assert output_files(out) == output_files(reference)


def test_a_model_that_cannot_be_loaded_stops_the_job_with_exit_status_2(tmp_path, capsys, clips):
    code, io = run_job(capsys, clips[0], "-o", tmp_path, *FLAGS, "--model", str(tmp_path / "nope.pt"))
    assert code == 2
    assert io.err.startswith("error: worker w0 (w0@") and "cannot load the model" in io.err
    assert not done_inputs(tmp_path)
