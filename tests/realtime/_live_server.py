"""A server in this process for the realtime route's tests: tiny.en on the CPU behind ``serving.Server`` (the one
``python -m whisper_model.serve`` runs, which ends the realtime sessions on shutdown), uvicorn on a thread.

The waits here only bound a stalled server (``STALL_S``); what a test asserts is decided by events, never by a
clock: a server event received, a close, the worker's streams dict emptied.
"""
from __future__ import annotations

import base64
import json
import threading
import time

import numpy as np
import uvicorn

from whisper_model import WhisperModel
from whisper_model.server.app import create_app
from whisper_model.server.config import ServedModel, ServerConfig
from whisper_model.server.serving import Server

STALL_S = 120.0
KEY = "test-key"
_MODEL = {}


def tiny_en():
    """tiny.en, loaded once per test process."""
    if "tiny.en" not in _MODEL:
        model = WhisperModel("tiny.en", device="cpu")
        _MODEL["tiny.en"] = ServedModel(model.model, model.tokenizer, "tiny.en")
    return _MODEL["tiny.en"]


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(condition, timeout: float = STALL_S) -> None:
    """Polls ``condition`` (an order of events, never a duration); ``timeout`` only bounds a stall."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out waiting"
        time.sleep(0.02)


class LiveServer:
    """``create_app`` for tiny.en served by ``serving.Server`` on a thread; ``ws``: its realtime URL."""

    def __init__(self, config: ServerConfig):
        self.app = create_app(tiny_en(), config)
        self.worker = self.app.state.server.worker
        port = free_port()
        self.url = f"http://127.0.0.1:{port}"
        self.ws = f"ws://127.0.0.1:{port}/v1/realtime"
        uv = uvicorn.Config(self.app, host="127.0.0.1", port=port, log_level="warning")
        self.server = Server(uv, self.app.state.realtime, timeout=STALL_S)
        self.thread = threading.Thread(target=self.server.run, name="uvicorn-realtime", daemon=True)
        self.thread.start()
        wait_until(lambda: self.server.started or not self.thread.is_alive())
        assert self.server.started, "uvicorn did not start (see the log above)"

    def metric(self, name: str) -> float:
        import httpx

        text = httpx.get(f"{self.url}/metrics", timeout=10).text
        return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
                   if line.startswith(name) and line[len(name)] in " {")

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(STALL_S)
        assert not self.thread.is_alive(), "the server did not stop"


def append(pcm: bytes) -> str:
    return json.dumps({"type": "input_audio_buffer.append", "audio": base64.b64encode(pcm).decode()})


def update(rate: int = 24000, vad: bool = True, model: str | None = None) -> str:
    """A ``session.update``: PCM16 at ``rate``, English, server_vad (silence 500 ms) or none, ``model`` if given."""
    turn = {"type": "server_vad", "silence_duration_ms": 500} if vad else None
    transcription = {"language": "en", **({"model": model} if model else {})}
    return json.dumps({"type": "session.update", "session": {"type": "transcription", "audio": {"input": {
        "format": {"type": "audio/pcm", "rate": rate}, "turn_detection": turn, "transcription": transcription}}}})


def pcm16(samples: np.ndarray) -> bytes:
    return np.clip(np.round(samples * 32768), -32768, 32767).astype("<i2").tobytes()


def chunks(pcm: bytes, rate: int = 16000, seconds: float = 0.1) -> list[bytes]:
    """``pcm`` in appends of ``seconds`` each (100 ms: what a microphone client sends)."""
    step = int(rate * seconds) * 2
    return [pcm[i:i + step] for i in range(0, len(pcm), step)]
