"""``Scheduler.cancel`` and ``ChunkedScheduler.cancel`` (a server's client gone): a waiting or running stream
leaves the batch, no later event names it, the others get what they get alone; ids are freed (tiny.en, CPU)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from whisper_model import WhisperModel
from whisper_model.io.audio import SAMPLE_RATE, load_audio
from whisper_model.options import TranscriptionOptions
from whisper_model.scheduler import Finished, Segments, Started

SAMPLE = Path(__file__).resolve().parents[2] / "samples" / "jfk.mp3"
OPTIONS = TranscriptionOptions(temperature=0.0, sample_len=24)  # short windows: the tests are about the streams


@pytest.fixture(scope="module")
def model():
    return WhisperModel("tiny.en", device="cpu")


@pytest.fixture(scope="module")
def jfk():
    return load_audio(SAMPLE)


def long_audio(jfk) -> np.ndarray:
    """Three windows: the speech, 25 s of silence, the speech again."""
    return np.concatenate([jfk, np.zeros(25 * SAMPLE_RATE, np.float32), jfk])


def texts(events, stream_id) -> list[str]:
    return [s.text for e in events if e.stream_id == stream_id and isinstance(e, Segments) for s in e.segments]


def test_cancel_a_running_stream_frees_its_row_and_the_others_are_unchanged(model, jfk):
    alone = [s.text for s in model.transcribe(jfk, options=OPTIONS)[0]]
    scheduler = model.scheduler(batch_size=2)
    scheduler.add(long_audio(jfk), options=OPTIONS, stream_id="long")
    scheduler.add(jfk, options=OPTIONS, stream_id="short")
    scheduler.add(jfk, options=OPTIONS, stream_id="waiting")  # no row until one is free
    events, cancelled_at = [], None
    for event in scheduler.events():
        events.append(event)
        if cancelled_at is None and isinstance(event, Segments) and event.stream_id == "long":  # its 1st window
            assert scheduler.cancel("long") and not scheduler.cancel("long")
            cancelled_at = len(events)
    assert cancelled_at and all(e.stream_id != "long" for e in events[cancelled_at:])  # none names it after
    assert [type(e) for e in events if e.stream_id == "long"] == [Started, Segments]
    assert texts(events, "short") == alone and texts(events, "waiting") == alone
    waiting = [type(e) for e in events if e.stream_id == "waiting"]
    assert waiting[0] is Started and waiting[-1] is Finished and set(waiting[1:-1]) == {Segments}
    assert scheduler.add(jfk, options=OPTIONS, stream_id="long") == "long"  # the id is free again
    assert texts(list(scheduler.events()), "long") == alone


def test_cancel_a_waiting_stream_and_unknown_ids(model, jfk):
    scheduler = model.scheduler(batch_size=1)
    scheduler.add(jfk, options=OPTIONS, stream_id="a")
    scheduler.add(jfk, options=OPTIONS, stream_id="b")
    assert scheduler.cancel("b") and not scheduler.cancel("b") and not scheduler.cancel("nobody")
    events = list(scheduler.events())
    assert {e.stream_id for e in events} == {"a"} and isinstance(events[-1], Finished)
    assert not scheduler.cancel("a")  # finished


def test_cancel_during_admission_is_found_after_started(model, jfk):
    """A stream being admitted (its Started being given out) is not found yet; it is at the next event."""
    scheduler = model.scheduler(batch_size=2)
    scheduler.add(jfk, options=OPTIONS, stream_id="x")
    scheduler.add(jfk, options=OPTIONS, stream_id="y")
    seen, tries = [], []
    for event in scheduler.events():
        seen.append(event)
        if not tries or not tries[-1]:
            tries.append(scheduler.cancel("y"))
    assert tries == [False, False, True]  # at x's Started (y loaded with it), at y's own, at the next event
    # the round being given out when it was dropped had decoded its first window too; nothing more comes
    assert [type(e) for e in seen if e.stream_id == "y"] == [Started, Segments]
    assert isinstance(seen[-1], Finished) and seen[-1].stream_id == "x"


@pytest.mark.parametrize("chunking, vad_filter", [("vad", False), ("none", True)], ids=["vad", "vad_filter"])
def test_chunked_cancel_drops_every_chunk_of_a_file(model, jfk, chunking, vad_filter):
    """A queued file, and a started one (found at its Started or the event after): none of their streams go on
    (the counts stay right: no "chunk streams never finished"); the other file is unchanged."""
    pytest.importorskip("silero_vad")  # (a dependency of the package: the chunk plan reads files through it)
    alone = [s.text for s in model.transcribe(jfk, options=OPTIONS, chunking=chunking, vad_filter=vad_filter)[0]]
    scheduler = model.scheduler(batch_size=4, chunking=chunking, vad_filter=vad_filter)
    scheduler.add(long_audio(jfk), options=OPTIONS, stream_id="long")  # two chunks with "vad"
    scheduler.add(jfk, options=OPTIONS, stream_id="short")
    scheduler.add(jfk, options=OPTIONS, stream_id="queued")
    assert scheduler.cancel("queued") and not scheduler.cancel("queued")
    chunk_events, events_of = [], scheduler.scheduler.events

    def spied():  # the chunk streams' own events
        for event in events_of():
            chunk_events.append(event)
            yield event

    scheduler.scheduler.events = spied
    events, started, dropped = [], False, False
    for event in scheduler.events():
        events.append(event)
        assert not (dropped and event.stream_id == "long")
        started = started or (isinstance(event, Started) and event.stream_id == "long")
        if started and not dropped:
            dropped = scheduler.cancel("long")
    assert dropped and [type(e) for e in events if e.stream_id == "long"] == [Started]
    short = [type(e) for e in events if e.stream_id == "short"]
    assert short[0] is Started and short[-1] is Finished and set(short[1:-1]) == {Segments}
    assert texts(events, "short") == alone
    assert not scheduler.cancel("long") and not scheduler.cancel("short")
    inner = [e for e in chunk_events if e.stream_id[0] == "long"]
    assert not any(isinstance(e, Finished) for e in inner)  # its chunk streams were dropped, not run unseen
