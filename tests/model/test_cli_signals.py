"""Ctrl-C and SIGTERM: a run stopped mid-way exits 130 / 143 at once with one line, keeps the outputs of the files
already done and leaves no temporary or partial file; writing an output is never cut in half."""
import os
import signal
import subprocess
import sys
import time
import wave
from pathlib import Path

import numpy as np
import pytest

from whisper_model.cli.signals import Interrupted, SignalGuard
from whisper_model.io import writers

REPO = Path(__file__).resolve().parents[2]
SAMPLE = REPO / "samples" / "jfk.mp3"


def test_guard_turns_signals_into_interrupted_and_restores_the_handlers():
    before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(Interrupted) as e:
        with SignalGuard():
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(1)  # the handler raises here
    assert e.value.exit_status == 143 and e.value.name == "SIGTERM"
    assert signal.getsignal(signal.SIGTERM) is before


def test_a_signal_in_a_deferred_block_is_raised_when_it_ends():
    done = []
    with pytest.raises(Interrupted) as e:
        with SignalGuard() as guard:
            with guard.deferred():
                os.kill(os.getpid(), signal.SIGINT)
                time.sleep(0.2)
                done.append("the block ran to its end")
            done.append("not reached")
    assert done == ["the block ran to its end"] and e.value.exit_status == 130


def test_atomic_write_leaves_no_temporary_file_when_interrupted(tmp_path, monkeypatch):
    def interrupted(*_):
        raise KeyboardInterrupt

    monkeypatch.setattr(writers.os, "replace", interrupted)
    with pytest.raises(KeyboardInterrupt):
        writers.atomic_write_text(tmp_path / "a.txt", "text")
    assert list(tmp_path.iterdir()) == []


def test_outputs_get_the_usual_file_mode(tmp_path):
    writers.atomic_write_text(tmp_path / "a.txt", "text")
    umask = os.umask(0o022)
    os.umask(umask)
    assert (tmp_path / "a.txt").stat().st_mode & 0o777 == 0o666 & ~umask


def _long_wav(path: Path, seconds: int) -> Path:
    """The sample repeated to ``seconds`` of 16 kHz speech: minutes of decoding for tiny.en on the CPU."""
    from whisper_model.io.audio import load_audio

    speech = load_audio(SAMPLE)
    samples = np.tile(speech, seconds * 16000 // len(speech) + 1)[: seconds * 16000]
    with wave.open(str(path), "wb") as f:
        f.setnchannels(1)
        f.setsampwidth(2)
        f.setframerate(16000)
        f.writeframes((samples * 32767).astype(np.int16).tobytes())
    return path


@pytest.mark.parametrize("signum, status", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_interrupted_run_exits_at_once_with_one_line(tmp_path, signum, status):
    out = tmp_path / "out"
    long = _long_wav(tmp_path / "long.wav", 600)
    proc = subprocess.Popen(
        [sys.executable, "-m", "whisper_model.run", SAMPLE, long, "-o", out, "--device", "cpu", "--beam_size",
         "None", "--verbose", "None"], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 240
        while not (out / "jfk.json").exists():  # the first file is done: the long one is being read or decoded
            assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
            time.sleep(0.1)
        time.sleep(1.0)
        sent = time.monotonic()
        proc.send_signal(signum)
        stdout, stderr = proc.communicate(timeout=120)
        stopped = time.monotonic() - sent
    finally:
        proc.kill()
    assert proc.returncode == status, stderr
    name = signal.Signals(signum).name
    assert stderr.splitlines() == [stderr.strip()] and stderr.startswith(f"interrupted ({name}): done 1, failed 0, "
                                                                         "skipped 0, not finished 1; 11.0 s of audio")
    assert "Traceback" not in stderr and stdout == ""
    assert sorted(p.name for p in out.iterdir()) == [f"jfk.{f}" for f in ("json", "srt", "tsv", "txt", "vtt")]
    # A bound with a wide margin, not a measurement (0.1 s measured): the rest of the 600 s file is minutes of
    # decoding, so a run that went on with it would be far slower than this, on any machine.
    assert stopped < 60, f"took {stopped:.1f} s to stop"
