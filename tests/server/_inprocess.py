"""A server in this process (uvicorn on a thread, tiny.en on the CPU) whose batch worker a test can hold.

``Gate`` holds the worker thread right after it has handed out a stream's first window: while held, no stream
can finish (each needs more events from that thread), so a request is known to be in flight, and a timeout or a
disconnect is known to come first, on any machine, however loaded. Nothing in these tests waits on a clock to
decide an outcome; the waits are only there so that a stalled server fails the test instead of hanging it.
"""
from __future__ import annotations

import threading
import time

import httpx
import uvicorn

from whisper_model import WhisperModel
from whisper_model.scheduler import Segments
from whisper_model.server.app import create_app
from whisper_model.server.config import ServedModel, ServerConfig

from ._server import Endpoints, free_port

STALL_S = 120.0  # only how long a stalled server is waited for before the test fails


class Gate:
    """Wraps the worker's event routing. ``arm()``: hold the worker after the next stream's first ``Segments`` has
    been handed to its request (its first window's text is out, the rest cannot come); ``held`` is set then, with
    ``held_id`` the stream's id. ``release()`` lets the worker go on. ``events``: every (stream id, event type)."""

    def __init__(self, worker):
        self.events: list[tuple[int, str]] = []
        self.held, self._go = threading.Event(), threading.Event()
        self.held_id: int | None = None
        self._armed = False
        route = worker._route

        def routed(event):
            self.events.append((event.stream_id, type(event).__name__))
            route(event)
            if self._armed and isinstance(event, Segments):
                self._armed, self.held_id = False, event.stream_id
                self.held.set()
                self._go.wait()

        worker._route = routed

    def arm(self) -> None:
        self.held.clear()
        self._go.clear()
        self._armed = True

    def wait_held(self) -> int:
        assert self.held.wait(STALL_S), "the worker never reached the stream's first window"
        return self.held_id

    def release(self) -> None:
        self._armed = False
        self._go.set()

    def finished(self, stream_id: int) -> bool:
        return (stream_id, "Finished") in self.events


class InProcessServer(Endpoints):
    """``create_app`` for tiny.en (CPU) served by uvicorn on a thread of this process; ``gate`` holds its worker."""

    def __init__(self, config: ServerConfig):
        model = WhisperModel("tiny.en", device="cpu")
        app = create_app(ServedModel(model.model, model.tokenizer, "tiny.en"), config)
        self.state = app.state.server
        self.gate = Gate(self.state.worker)
        port = free_port()
        self.url = f"http://127.0.0.1:{port}"
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, name="uvicorn", daemon=True)
        self.thread.start()
        wait_until(lambda: self.server.started or not self.thread.is_alive())
        assert self.server.started, "uvicorn did not start (see the log above)"

    def stop(self) -> None:
        self.gate.release()
        self.server.should_exit = True
        self.thread.join(STALL_S)


def wait_until(condition, timeout: float = STALL_S) -> None:
    """Polls ``condition``; ``timeout`` only bounds a stall (the condition is an order, never a duration)."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out waiting"
        time.sleep(0.05)


def post_bytes(url: str, path: str, headers: dict, files: dict, data: dict | None = None) -> bytes:
    """The HTTP/1.1 request httpx would send, as bytes (for a client that goes away mid-request)."""
    request = httpx.Request("POST", url + path, headers=headers, files=files, data=data)
    body = request.read()
    head = "".join(f"{k}: {v}\r\n" for k, v in request.headers.items())
    return f"POST {path} HTTP/1.1\r\n{head}\r\n".encode("latin-1") + body
