"""The worker thread in-process (tiny.en, CPU): results equal offline decoding; ``batch_wait_s`` lets a request
that comes just after another join its first round; ``Rounds`` follows the rounds from the events."""
from __future__ import annotations

import asyncio
import threading

import pytest

from whisper_model import WhisperModel
from whisper_model.io.audio import load_audio
from whisper_model.server.config import ServedModel, ServerConfig
from whisper_model.server.metrics import Metrics
from whisper_model.server.rounds import Rounds
from whisper_model.server.worker import BatchWorker

from ._server import SAMPLE, clip


def test_rounds_follow_the_events():
    rounds = Rounds()
    for s in "abc":
        rounds.started(s)
    rounds.window("a", last=False)
    rounds.window("b", last=True)
    assert not rounds.round_over()
    rounds.window("c", last=False)
    assert not rounds.round_over()  # b's Finished is still to come
    rounds.ended("b")
    assert rounds.round_over() and not rounds.round_over()  # once
    rounds.window("a", last=False)
    rounds.window("c", last=False)
    assert not rounds.round_over()  # nothing freed: no reason to wait
    rounds.window("a", last=False)
    rounds.ended("c")  # cancelled before its window came
    assert rounds.round_over()
    rounds.window("a", last=True)
    rounds.ended("a")
    assert not rounds.round_over() and rounds.rows == set()  # nothing left running: the scheduler goes idle


@pytest.fixture(scope="module")
def served():
    model = WhisperModel("tiny.en", device="cpu")
    return ServedModel(model.model, model.tokenizer, "tiny.en"), model


@pytest.mark.parametrize("wait_s", [0.0, 30.0])
def test_a_request_just_after_another_joins_its_first_round_with_batch_wait(served, wait_s):
    """The second request is submitted when the worker, holding the first, gathers its first round: with a batch
    wait it is waiting there (two rows: the second fills the batch, so the wait ends on it), without one it has
    just stopped gathering. Submitting on the worker's step, not after a sleep, makes the order the same on any
    machine; 30 s is only how long a stalled worker is waited for."""
    served_model, model = served
    first, second = load_audio(SAMPLE), load_audio(clip("en_librivox_0930.wav"))
    config = ServerConfig(batch_size=2, batch_wait_s=wait_s, batch_gap_s=wait_s)
    worker = BatchWorker(served_model, config, Metrics(2))
    order = []
    route = worker._route
    worker._route = lambda event: (order.append((event.stream_id, type(event).__name__)), route(event))
    gathering, gather = threading.Event(), worker._gather

    def watched_gather(first_wait):
        if wait_s:
            gathering.set()  # the worker is about to wait for more requests
        gather(first_wait)
        gathering.set()  # (set already with a wait): the round is about to start

    worker._gather = watched_gather
    worker.start()

    async def both():
        a = worker.submit(first, served_model.base_options, None, None)
        assert await asyncio.to_thread(gathering.wait, 60), "the worker never gathered a round"
        b = worker.submit(second, served_model.base_options, None, None)
        return await asyncio.gather(a.result(), b.result())

    try:
        (segments_a, _), (segments_b, _) = asyncio.run(both())
    finally:
        assert worker.stop(30)
    assert [s.text for s in segments_a] == [s.text for s in model.transcribe(first)[0]]
    assert [s.text for s in segments_b] == [s.text for s in model.transcribe(second)[0]]
    first_window = order.index((0, "Segments"))
    joined = (1, "Started") in order[:first_window]
    assert joined == (wait_s > 0), order
