"""Limits of a server with one row and no queue: the API key (401), the bounded queue (503 with Retry-After),
the per-request timeout (504), a client that disconnects (its rows are dropped at once, for plain and for
streamed requests), and graceful shutdown (SIGTERM: the request in flight is answered, then the process ends).

The one-row servers run in this process (``_inprocess``) so that a test can hold the batch worker after a
stream's first window: the request is then in flight and cannot finish, and what a test asserts is an order
and an outcome (503 while it holds the row; 504 or a disconnect before its end; the next request answered),
never how long something took.
"""
from __future__ import annotations

import signal
import socket
import threading

import httpx
import openai
import pytest

from whisper_model.server.config import ServerConfig

from ._inprocess import STALL_S, InProcessServer, post_bytes, wait_until
from ._server import SAMPLE, ServerProcess, clip

KEY = "s3cret-key"
AUTH = {"Authorization": f"Bearer {KEY}"}
ROUTE = "/v1/audio/transcriptions"
TIMEOUT_S = 1.0  # the timing-out server's limit: its request is held, so it would time out at any value


@pytest.fixture(scope="module")
def limited():
    """One row, no queue, an API key; the default request timeout (600 s: no request here comes near it)."""
    srv = InProcessServer(ServerConfig(batch_size=1, max_queue=0, api_key=KEY))
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def timing_out():
    srv = InProcessServer(ServerConfig(batch_size=1, max_queue=0, request_timeout_s=TIMEOUT_S))
    yield srv
    srv.stop()


def transcribe(server, audio, headers=AUTH, **fields) -> httpx.Response:
    """``audio``: a path."""
    return httpx.post(server.url + ROUTE, headers=headers, data=fields, files={"file": (audio.name,
                      audio.read_bytes())}, timeout=STALL_S)


def long_clip():
    return clip("en_lecture_60s.wav")  # two windows: held after its first, it is still in flight


def test_the_api_key(limited):
    models = limited.url + "/v1/models"
    assert httpx.get(models).status_code == 401
    wrong = httpx.get(models, headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 401 and wrong.headers["www-authenticate"] == "Bearer"
    assert wrong.json()["error"]["code"] == "invalid_api_key"
    assert httpx.get(models, headers={"Authorization": f"Basic {KEY}"}).status_code == 401
    assert httpx.get(models, headers=AUTH).status_code == 200
    assert httpx.get(limited.url + "/health").status_code == 200  # probes and Prometheus need no key
    assert httpx.get(limited.url + "/metrics").status_code == 200
    no_key = httpx.post(limited.url + ROUTE, files={"file": ("a.wav", bytes(10**6))})
    assert no_key.status_code == 401  # before the body is looked at
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=limited.url + "/v1", api_key="wrong", max_retries=0).models.list()
    client = openai.OpenAI(base_url=limited.url + "/v1", api_key=KEY, max_retries=0)
    with open(SAMPLE, "rb") as f:
        assert "ask not" in client.audio.transcriptions.create(model="whisper-1", file=f).text


def held_plain(server):
    """A plain request for the long clip on a raw socket, held after its first window: (socket, stream id)."""
    audio = long_clip()
    sock = socket.create_connection(("127.0.0.1", int(server.url.rsplit(":", 1)[1])))
    sock.sendall(post_bytes(server.url, ROUTE, AUTH, {"file": (audio.name, audio.read_bytes())}))
    return sock, server.gate.wait_held()


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "streamed"])
def test_a_full_queue_gets_503_and_a_client_that_disconnects_frees_its_row(limited, stream):
    """While the long request holds the one row, another gets 503; once its client goes away, its row is
    dropped and the next request is answered (a row still held would give it 503); the long one never finished."""
    short = clip("en_librivox_0930.wav")
    cancelled, gate = limited.metric("whisper_cancelled_total"), limited.gate
    gate.arm()
    try:
        if stream:
            with httpx.stream("POST", limited.url + ROUTE, headers=AUTH, data={"stream": "true"},
                              files={"file": (long_clip().name, long_clip().read_bytes())}, timeout=STALL_S) as r:
                lines = r.iter_lines()  # kept: a dropped line iterator closes the connection (a disconnect)
                first = next(line for line in lines if line.startswith("data:"))
                assert "transcript.text.delta" in first  # the first window is out: the rest is held
                held = gate.wait_held()
                busy = transcribe(limited, short)
        else:
            sock, held = held_plain(limited)
            busy = transcribe(limited, short)
            sock.close()
        assert busy.status_code == 503 and busy.headers["retry-after"] == "1"
        assert busy.json()["error"]["code"] == "queue_full"
        wait_until(lambda: limited.health()["in_flight"] == 0)  # the server saw the client go
    finally:
        gate.release()
    ok = transcribe(limited, short)
    assert ok.status_code == 200 and "amiable" in ok.json()["text"], ok.text
    wait_until(lambda: limited.metric("whisper_cancelled_total") == cancelled + 1)
    assert not gate.finished(held)
    assert limited.metric('whisper_rejected_total{reason="queue_full"}') >= 1


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "streamed"])
def test_a_request_past_its_timeout_gets_504_and_its_rows_are_dropped(timing_out, stream):
    """The worker is held on the request's stream, so the request cannot finish: its timeout comes first."""
    gate, audio = timing_out.gate, long_clip()
    cancelled = timing_out.metric("whisper_cancelled_total")
    gate.arm()
    try:
        answer = httpx.post(timing_out.url + ROUTE, data={"stream": "true"} if stream else {},
                            files={"file": (audio.name, audio.read_bytes())}, timeout=STALL_S)
    finally:
        gate.release()
    if stream:  # the status line went out with the first event; the timeout is the stream's last event
        assert answer.status_code == 200
        events = [line for line in answer.text.splitlines() if line.startswith("data:")]
        assert '"timeout"' in events[-1] and not any("transcript.text.done" in e for e in events)
    else:
        assert answer.status_code == 504 and answer.json()["error"]["code"] == "timeout"
    wait_until(lambda: timing_out.metric("whisper_cancelled_total") == cancelled + 1)
    wait_until(lambda: timing_out.metric("whisper_batch_rows") == 0)  # its row is free
    assert timing_out.metric('whisper_rejected_total{reason="timeout"}') >= 1
    assert not any(kind == "Finished" for _, kind in gate.events)


def test_sigterm_lets_the_request_in_flight_finish(tmp_path):
    srv = ServerProcess(tmp_path / "tmp")
    try:
        answers: list = []
        thread = threading.Thread(target=lambda: answers.append(
            httpx.post(srv.url + ROUTE, files={"file": ("jfk.mp3", SAMPLE.read_bytes())}, timeout=STALL_S)))
        thread.start()
        wait_until(lambda: srv.metric("whisper_batch_rows") == 1)  # its window is being decoded
        srv.terminate()
        thread.join()
        assert answers[0].status_code == 200 and "ask not" in answers[0].json()["text"]
        assert srv.process.wait(30) == -signal.SIGTERM  # uvicorn re-raises the signal once it has drained
        with pytest.raises(httpx.ConnectError):
            httpx.get(srv.url + "/health")
    finally:
        srv.stop()
    assert "Traceback" not in srv.output()
