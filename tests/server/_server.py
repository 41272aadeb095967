"""Helpers of the server tests: ``python -m whisper_model.serve`` (tiny.en on the CPU) as a subprocess on 127.0.0.1,
on a free port, with its own temporary folder (``TMPDIR``) so that the tests can see what it leaves there."""
from __future__ import annotations

import importlib.util
import io
import os
import signal
import socket
import subprocess
import sys
import time
import wave
from pathlib import Path

import httpx
import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[2]
_spec = importlib.util.spec_from_file_location("model_paths", REPO / "tests" / "model" / "_paths.py")
paths = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(paths)
AUDIO_DIR, NO_SHARED, manifest = paths.AUDIO_DIR, paths.NO_SHARED, paths.manifest
SAMPLE = REPO / "samples" / "jfk.mp3"


def clip(name: str) -> Path:
    path = AUDIO_DIR / name
    if not path.is_file():
        pytest.skip(NO_SHARED)
    return path


def wav_bytes(samples: np.ndarray, rate: int = 16000) -> bytes:
    out = io.BytesIO()
    with wave.open(out, "wb") as f:
        f.setnchannels(1)
        f.setsampwidth(2)
        f.setframerate(rate)
        f.writeframes((np.clip(samples, -1, 1 - 1 / 32768) * 32768).astype("<i2").tobytes())
    return out.getvalue()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Endpoints:
    """What the tests read from a server at ``url``: ``/health`` and ``/metrics``."""

    url: str

    def health(self) -> dict:
        return httpx.get(f"{self.url}/health", timeout=5).json()

    def metric(self, name: str) -> float:
        """The value of an unlabelled metric (or the sum over its labels)."""
        text = httpx.get(f"{self.url}/metrics", timeout=5).text
        values = [float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
                  if line.startswith(name) and line[len(name)] in " {"]
        return sum(values)


class ServerProcess(Endpoints):
    """One server; ``url`` once ``/health`` answers. ``tmp``: its TMPDIR."""

    def __init__(self, tmp: Path, *flags: str, api_key: str | None = None):
        self.tmp, self.port = tmp, free_port()
        self.tmp.mkdir(parents=True, exist_ok=True)
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = tmp.parent / f"server-{self.port}.log"
        self.log = open(self.log_path, "w")
        env = {**os.environ, "TMPDIR": str(tmp), "PYTHONUNBUFFERED": "1"}
        env.pop("WHISPER_API_KEY", None)
        if api_key is not None:
            env["WHISPER_API_KEY"] = api_key
        argv = [sys.executable, "-m", "whisper_model.serve", "--model", "tiny.en", "--device", "cpu",
                "--port", str(self.port), "--log_level", "warning", *flags]
        self.process = subprocess.Popen(argv, cwd=REPO, env=env, stdout=self.log, stderr=subprocess.STDOUT)
        self._wait_ready()

    def _wait_ready(self, timeout: float = 180.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"the server exited with {self.process.returncode}:\n{self.output()}")
            try:
                if httpx.get(f"{self.url}/health", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"the server did not start within {timeout} s:\n{self.output()}")

    def output(self) -> str:
        if not self.log.closed:
            self.log.flush()
        return self.log_path.read_text(errors="replace")

    def terminate(self) -> None:
        self.process.send_signal(signal.SIGTERM)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.terminate()
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.log.close()
