"""The worker thread in-process (tiny.en, CPU): results equal offline decoding; ``batch_wait_s`` lets a request
that comes just after another join its first round; ``Rounds`` follows the rounds from the events; requests take
their own VAD path (``chunking`` / ``vad_filter``) in one batch, with the command line's refusal."""
from __future__ import annotations

import asyncio
import threading

import pytest

from whisper_model import WhisperModel
from whisper_model.chunk_plan import chunk_options
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


def test_requests_take_their_own_vad_path_in_one_batch(served):
    """A plain request, a chunking=vad one and a vad_filter one share the worker's batch; each gets what the model
    gives its audio alone on that path (Silero finds the same speech regions alone and in the batch)."""
    import numpy as np

    served_model, model = served
    jfk, silence = load_audio(SAMPLE), np.zeros(16000 * 3, np.float32)
    audio = np.concatenate([jfk, silence, load_audio(clip("en_bobby.wav")), load_audio(clip("en_librivox_0930.wav")),
                            silence, jfk])  # over 30 s: the regions make two chunks
    paths = [("none", False), ("vad", False), ("none", True)]
    worker = BatchWorker(served_model, ServerConfig(batch_size=4), Metrics(4))
    worker.start()

    async def all_paths():
        options = chunk_options(served_model.base_options)
        jobs = [worker.submit(audio, options if c == "vad" else served_model.base_options, None, None, c, f)
                for c, f in paths]
        return await asyncio.gather(*(job.result() for job in jobs))

    try:
        results = asyncio.run(all_paths())
    finally:
        assert worker.stop(60)
    for (chunking, vad_filter), (segments, info) in zip(paths, results):
        alone, alone_info = model.transcribe(audio, chunking=chunking, vad_filter=vad_filter, batch_size=4)
        want = [(s.start, s.end, s.text) for s in alone]
        assert [(s.start, s.end, s.text) for s in segments] == want, (chunking, vad_filter)
        assert info.duration_after_vad == alone_info.duration_after_vad
    assert results[0][1].duration_after_vad is None
    assert all(info.duration_after_vad < info.duration for _, info in results[1:])  # VAD left the pauses out


def test_a_form_refuses_condition_on_previous_text_with_chunking_as_the_command_line(served, monkeypatch):
    from dataclasses import replace

    from whisper_model.server import forms
    from whisper_model.server.errors import ApiError

    monkeypatch.setattr(forms, "vad_available", lambda: True)
    served_model, _ = served
    conditioned = replace(served_model, base_options=replace(served_model.base_options,
                                                             condition_on_previous_text=True))
    fields = {"granularities": [], "chunking": "vad"}
    with pytest.raises(ApiError, match="condition_on_previous_text=True cannot be used with chunking='vad'") as e:
        forms.checked(dict(fields), b"", "a.wav", "transcribe", conditioned)
    assert e.value.status == 400 and e.value.param == "chunking"
    request = forms.checked(dict(fields), b"", "a.wav", "transcribe", served_model)
    assert (request.chunking, request.vad_filter, request.options.condition_on_previous_text) == ("vad", False, False)
    assert forms.checked({"granularities": []}, b"", "a.wav", "transcribe", served_model).chunking == "none"
