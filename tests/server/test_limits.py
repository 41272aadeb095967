"""Limits of a server with one row and no queue: the API key (401), the bounded queue (503 with Retry-After),
the per-request timeout (504), a client that disconnects (its rows are dropped at once, for plain and for
streamed requests), and graceful shutdown (SIGTERM: the request in flight is answered, then the process ends)."""
from __future__ import annotations

import signal
import threading
import time

import httpx
import numpy as np
import openai
import pytest

from whisper_model.io.audio import load_audio

from ._server import SAMPLE, ServerProcess, clip, wav_bytes

KEY = "s3cret-key"
AUTH = {"Authorization": f"Bearer {KEY}"}
TIMEOUT_S = 6  # LONG needs far more than this on the CPU (16 windows), a short clip far less


@pytest.fixture(scope="module")
def long_audio() -> tuple[str, bytes]:
    """Eight minutes of speech: the lecture clip eight times."""
    samples = load_audio(clip("en_lecture_60s.wav"))
    return "lecture_x8.wav", wav_bytes(np.tile(samples, 8))


@pytest.fixture(scope="module")
def limited(tmp_path_factory):
    srv = ServerProcess(tmp_path_factory.mktemp("limited") / "tmp", "--batch_size", "1", "--max_queue", "0",
                        "--request_timeout", str(TIMEOUT_S), api_key=KEY)
    yield srv
    srv.stop()


def transcribe(server, audio, timeout=120.0, **fields) -> httpx.Response:
    """``audio``: a path, or (name, bytes)."""
    upload = (audio.name, audio.read_bytes()) if hasattr(audio, "read_bytes") else audio
    return httpx.post(server.url + "/v1/audio/transcriptions", headers=AUTH, data=fields,
                      files={"file": upload}, timeout=timeout)


def wait_until(condition, timeout=30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out waiting"
        time.sleep(0.05)


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
    no_key = httpx.post(limited.url + "/v1/audio/transcriptions", files={"file": ("a.wav", bytes(10**6))})
    assert no_key.status_code == 401  # before the body is looked at
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=limited.url + "/v1", api_key="wrong", max_retries=0).models.list()
    client = openai.OpenAI(base_url=limited.url + "/v1", api_key=KEY, max_retries=0)
    with open(SAMPLE, "rb") as f:
        assert "ask not" in client.audio.transcriptions.create(model="whisper-1", file=f).text


def test_a_full_queue_gets_503_and_a_slow_request_504_with_its_row_freed(limited, long_audio):
    long, short = long_audio, clip("en_bobby.wav")
    slow: list = []
    thread = threading.Thread(target=lambda: slow.append(transcribe(limited, long)))
    thread.start()
    wait_until(lambda: limited.health()["in_flight"] == 1)
    busy = transcribe(limited, short)
    assert busy.status_code == 503 and busy.headers["retry-after"] == "1"
    assert busy.json()["error"]["code"] == "queue_full"
    thread.join()
    assert slow[0].status_code == 504 and slow[0].json()["error"]["code"] == "timeout"
    ok = transcribe(limited, short)  # the timed-out request's row was dropped: this one gets it at once
    assert ok.status_code == 200 and "ledger" in ok.json()["text"]
    assert limited.metric("whisper_cancelled_total") >= 1
    assert limited.metric('whisper_rejected_total{reason="queue_full"}') >= 1


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "streamed"])
def test_a_client_that_disconnects_frees_its_row(limited, long_audio, stream):
    """Without the cancellation the long audio would keep the one row and the next request get a 503 (no queue)."""
    long, short = long_audio, clip("en_librivox_0930.wav")
    cancelled = limited.metric("whisper_cancelled_total")
    if stream:
        with httpx.stream("POST", limited.url + "/v1/audio/transcriptions", headers=AUTH, data={"stream": "true"},
                          files={"file": long}, timeout=60) as response:
            first = next(line for line in response.iter_lines() if line.startswith("data:"))
            assert "transcript.text.delta" in first  # the first window is decoded: now go away
    else:
        with pytest.raises(httpx.ReadTimeout):
            transcribe(limited, long, timeout=1.0)
    wait_until(lambda: limited.health()["in_flight"] == 0, timeout=10)
    ok = transcribe(limited, short)  # one row, no queue: a row still held would give 503 (or 504 behind it)
    assert ok.status_code == 200 and "amiable" in ok.json()["text"], ok.text
    wait_until(lambda: limited.metric("whisper_cancelled_total") == cancelled + 1, timeout=10)


def test_sigterm_lets_the_request_in_flight_finish(tmp_path):
    srv = ServerProcess(tmp_path / "tmp")
    try:
        answers: list = []
        thread = threading.Thread(target=lambda: answers.append(
            httpx.post(srv.url + "/v1/audio/transcriptions", files={"file": ("jfk.mp3", SAMPLE.read_bytes())},
                       timeout=120)))
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
