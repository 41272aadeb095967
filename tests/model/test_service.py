"""``whisper_model.service``: one loading rule for every front end, the worker thread that owns a scheduler (streams
added at any time, events per stream, cancellation, a fresh scheduler after a crash, refusal once stopping), and
a stream's events gathered into its result."""
from __future__ import annotations

import threading

import pytest
import torch

from whisper_model.errors import DecodingError, OptionError
from whisper_model.results import Results, StreamResult
from whisper_model.scheduler import Failed, Finished, Segments, Started
from whisper_model.service import Closing, ModelSpec, StreamWorker, load_model
from whisper_model.service import loading
from whisper_model.service.loading import resolve_dtype


# --- loading --------------------------------------------------------------------------------------------------

def test_one_dtype_rule():
    assert resolve_dtype("cpu", None) == "float32"
    assert resolve_dtype("cuda", None) == "float16"
    assert resolve_dtype("cuda:1", None, fp16=False) == "float32"
    assert resolve_dtype("cpu", "bfloat16") == "bfloat16"  # a given dtype decides
    with pytest.raises(OptionError, match="--fp16 False contradicts --dtype float16"):
        resolve_dtype("cuda", "float16", fp16=False)
    with pytest.raises(OptionError, match="--dtype int3"):
        resolve_dtype("cpu", "int3")


class FakeWhisperModel:
    """Records how ``load_model`` builds the model."""
    made: list = []

    def __init__(self, source, *, device, dtype, int8_kv_cache, **quant):
        self.source, self.device, self.dtype, self.quant, self.accelerated = source, device, dtype, quant, None
        FakeWhisperModel.made.append(self)

    def accelerate(self, max_batch_size, max_beam_width):
        self.accelerated = (max_batch_size, max_beam_width)
        return self


@pytest.fixture
def fake_cuda(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(loading, "WhisperModel", FakeWhisperModel)
    FakeWhisperModel.made = []


def test_cuda_gives_float16_and_the_fast_path_and_flags_override(fake_cuda):
    model = load_model(ModelSpec("tiny.en", max_batch_size=16, max_beam_width=5))
    assert (model.device, model.dtype, model.accelerated) == ("cuda", torch.float16, (16, 5))
    eager = load_model(ModelSpec("tiny.en", device="cuda", dtype="float32", fast=False))
    assert (eager.dtype, eager.accelerated) == (torch.float32, None)
    cpu = load_model(ModelSpec("tiny.en", device="cpu", weight_only_precision="int8"))
    assert (cpu.dtype, cpu.accelerated, cpu.quant) == (torch.float32, None, {"weight_only_precision": "int8"})


def test_a_real_model_on_the_cpu_is_float32():
    model = load_model(ModelSpec("tiny.en", device="cpu"))
    assert (model.device.type, model.dtype) == ("cpu", torch.float32)


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_cuda_without_a_gpu_is_an_option_error():
    with pytest.raises(OptionError, match="--device cuda: CUDA is not available"):
        load_model(ModelSpec("tiny.en", device="cuda"))


# --- results --------------------------------------------------------------------------------------------------

def test_results_gather_each_stream_and_hand_it_back_when_it_ends():
    results = Results()
    assert results.add(Started("a", "info a")) is None
    assert results.add(Started("b", "info b")) is None
    assert results.add(Segments("a", ["a1"], 1.0)) is None
    assert results.add(Segments("b", ["b1"], 1.0)) is None
    assert results.add(Segments("a", ["a2"], 2.0)) is None
    a = results.add(Finished("a", "info a"))
    assert a.outcome() == (["a1", "a2"], "info a") and a.seconds >= 0
    b = results.add(Failed("b", DecodingError("no")))
    assert b.ended and b.segments == ["b1"]
    with pytest.raises(DecodingError, match="no"):
        b.outcome()
    with pytest.raises(RuntimeError, match="has not ended"):
        StreamResult("c").outcome()


# --- the worker -----------------------------------------------------------------------------------------------

class FakeScheduler:
    """Each stream: Started, one Segments, Finished; audio "crash" raises out of ``events``, "bad" is refused."""
    made = 0

    def __init__(self):
        FakeScheduler.made += 1
        self.waiting, self.cancelled = [], []

    def add(self, audio, *, options, language, initial_prompt, stream_id, chunking, vad_filter):
        if audio == "bad":
            raise OptionError("language='xx' is not a language")
        self.waiting.append((stream_id, audio))

    def cancel(self, stream_id):
        self.cancelled.append(stream_id)
        before = len(self.waiting)
        self.waiting = [w for w in self.waiting if w[0] != stream_id]
        return len(self.waiting) < before

    def events(self):
        while self.waiting:
            stream_id, audio = self.waiting.pop(0)
            if audio == "crash":
                raise RuntimeError("a bug")
            yield Started(stream_id, audio)
            yield Segments(stream_id, [audio.upper()], 1.0)
            yield Finished(stream_id, audio)


class Collect:
    """A stream's events, and an ``ended`` flag set by its last."""

    def __init__(self):
        self.result, self.done = StreamResult(), threading.Event()

    def __call__(self, event):
        if self.result.add(event):
            self.done.set()


def run(worker, *audios):
    streams = [Collect() for _ in audios]
    for audio, collect in zip(audios, streams):
        worker.add(audio, collect)
    for collect in streams:
        assert collect.done.wait(10), "a stream never ended"
    return [c.result for c in streams]


def test_streams_added_at_any_time_get_their_own_events():
    worker = StreamWorker(FakeScheduler)
    worker.start()
    try:
        a, b = run(worker, "a", "b")
        (c,) = run(worker, "c")  # after the worker went idle
    finally:
        assert worker.stop(10)
    assert [r.outcome() for r in (a, b, c)] == [(["A"], "a"), (["B"], "b"), (["C"], "c")]


def test_a_bad_stream_fails_alone_and_a_crash_fails_the_streams_in_flight_then_a_fresh_scheduler_goes_on():
    FakeScheduler.made = 0
    worker = StreamWorker(FakeScheduler)
    worker.start()
    try:
        bad, crash = run(worker, "bad", "crash")
        (after,) = run(worker, "after")
    finally:
        assert worker.stop(10)
    assert isinstance(bad.error, OptionError)
    assert isinstance(crash.error, DecodingError) and "the scheduler failed: RuntimeError: a bug" in str(crash.error)
    assert after.outcome() == (["AFTER"], "after") and FakeScheduler.made == 2


def test_a_cancelled_stream_gets_no_more_events():
    worker = StreamWorker(FakeScheduler)  # not started: the commands wait in the inbox, in order
    dropped, kept = Collect(), Collect()
    worker.cancel(worker.add("dropped", dropped))
    worker.add("kept", kept)
    worker.start()
    try:
        assert kept.done.wait(10) and kept.result.outcome() == (["KEPT"], "kept")
    finally:
        assert worker.stop(10) and not worker.alive
    assert not dropped.done.is_set() and dropped.result.info is None


def test_streams_given_before_stop_finish_and_later_ones_are_refused():
    worker = StreamWorker(FakeScheduler)
    first, late = Collect(), Collect()
    worker.add("first", first)
    worker._inbox.put(("stop",))  # what stop() sends, here before the thread runs: the order is fixed
    worker.add("late", late)
    worker.start()
    assert first.done.wait(10) and late.done.wait(10)
    assert first.result.outcome() == (["FIRST"], "first")
    assert isinstance(late.result.error, Closing)
    assert worker.stop(10)
