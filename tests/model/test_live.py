"""Live streams of the scheduler (``Scheduler.add_live`` / ``feed`` / ``end``): audio that arrives while it is decoded.

tiny.en, fp32 on CPU, real speech. What must hold: the final segments of a stream that never outgrew its window
are those of ``transcribe()`` on the same audio (the same window, decoded alike); the committed texts never change
and joined come close to the offline text (a bound on the word error rate, measured and stated below); a window
never holds more than 30 s plus a step; live streams and files decode in the same rounds and each gets the events
it gets alone; bad calls are refused with the problem named.
"""
from __future__ import annotations

import functools
import threading

import jiwer
import numpy as np
import pytest

from whisper_model import scheduler as S
from whisper_model.errors import AudioError, OptionError
from whisper_model.io.audio import N_SAMPLES, SAMPLE_RATE
from whisper_model.options import TranscriptionOptions

try:
    from ._reference import pipeline, samples
except ImportError:
    from _reference import pipeline, samples

BLOCK = SAMPLE_RATE // 10  # 100 ms appends, as a realtime client sends them


def normalized(text: str) -> str:
    return " ".join("".join(c for c in text.lower() if c.isalnum() or c.isspace()).split())


def stream_live(scheduler, clip_samples, *, step_s=1.0, trim_s=15.0, stream_id="live", watch=None):
    """Feed ``clip_samples`` in 100 ms blocks, running the scheduler after each; returns the stream's events.
    ``watch(scheduler)`` after every block (a check on the scheduler's state)."""
    sid = scheduler.add_live(language="en", stream_id=stream_id, step_s=step_s, trim_s=trim_s)
    events = []
    for i in range(0, len(clip_samples), BLOCK):
        scheduler.feed(sid, clip_samples[i: i + BLOCK])
        events += [e for e in scheduler.events() if e.stream_id == sid]
        if watch is not None:
            watch(scheduler)
    scheduler.end(sid)
    return events + [e for e in scheduler.events() if e.stream_id == sid]


@functools.lru_cache(maxsize=None)
def alone(clip: str, step_s: float, stream_id: str) -> tuple:
    """The events of ``clip`` streamed alone (a scheduler of its own), shared by the tests."""
    return tuple(stream_live(S.Scheduler(pipeline("tiny.en").model, batch_size=4), samples(clip), step_s=step_s,
                             stream_id=stream_id))


@functools.lru_cache(maxsize=None)
def offline(clip: str, seconds: float = 0) -> list:
    """``transcribe()``'s segments of ``clip`` (its first ``seconds``: 0 for all; tiny.en, English)."""
    audio = samples(clip)[: int(seconds * SAMPLE_RATE) or None]
    return list(pipeline("tiny.en").transcribe(audio, language="en")[0])


def committed_text(events) -> str:
    return "".join(e.text for e in events if isinstance(e, S.Committed))


def final_segments(events):
    return [s for e in events if isinstance(e, S.Segments) for s in e.segments]


def test_a_short_stream_ends_with_the_offline_segments_and_commits_close_to_them():
    audio = samples("en_jfk.wav")
    events = alone("en_jfk.wav", 2.0, "a")
    kinds = [type(e).__name__ for e in events]
    assert kinds[0] == "Started" and kinds[-1] == "Finished" and kinds.count("Segments") == 1
    hypotheses = [e for e in events if isinstance(e, S.Hypothesis)]
    assert [h.done for h in hypotheses] == [2.0 * k for k in range(1, len(audio) // (2 * SAMPLE_RATE) + 1)]
    reference = offline("en_jfk.wav")
    got = final_segments(events)
    assert [(s.start, s.end, s.text, s.tokens) for s in got] == [(s.start, s.end, s.text, s.tokens) for s in reference]
    commits = [e for e in events if isinstance(e, S.Committed)]
    assert len(commits) >= 2, "words must become final while the audio still arrives"
    assert commits[0].done < len(audio) / SAMPLE_RATE
    text = normalized("".join(s.text for s in reference))
    assert jiwer.wer(text, normalized(committed_text(events))) <= 0.05  # measured 0.0


def test_a_long_stream_is_trimmed_and_its_commits_stay_close_to_offline():
    """40 s of speech, decoded every 4 s: the window is trimmed at final segments (and never exceeds 30 s plus a
    step); the segments given out follow each other and reach the end; the committed text's WER against the
    offline transcript is bounded (measured 0.04 on tiny.en; bound 0.15)."""
    model = pipeline("tiny.en")
    audio = samples("en_lecture_60s.wav")[: 40 * SAMPLE_RATE]
    longest = []
    watch = lambda sch: longest.append(max((len(s.window_samples()) for s in sch._live.values()), default=0))
    events = stream_live(S.Scheduler(model.model, batch_size=4), audio, step_s=4.0, trim_s=10.0, watch=watch)
    assert max(longest) <= N_SAMPLES + 4 * SAMPLE_RATE + BLOCK
    segments = final_segments(events)
    assert sum(isinstance(e, S.Segments) for e in events) >= 2, "a 40 s stream must give segments before its end"
    assert all(a.end <= b.start + 1e-6 for a, b in zip(segments, segments[1:]))
    assert [s.id for s in segments] == list(range(len(segments)))
    assert segments[-1].end == pytest.approx(len(audio) // 160 * 160 / SAMPLE_RATE, abs=1.0)
    reference = normalized("".join(s.text for s in offline("en_lecture_60s.wav", 40)))
    committed_wer = jiwer.wer(reference, normalized(committed_text(events)))
    segments_wer = jiwer.wer(reference, normalized("".join(s.text for s in segments)))
    print(f"40 s lecture: committed WER {committed_wer:.3f}, segments WER {segments_wer:.3f} vs offline")
    assert committed_wer <= 0.15 and segments_wer <= 0.15


def outcome(events):
    """What a stream's events say, apart from log-probabilities (batched products may round them otherwise)."""
    return [(type(e).__name__, getattr(e, "text", None), getattr(e, "done", None),
             [(s.start, s.end, s.text, s.tokens) for s in getattr(e, "segments", [])]) for e in events]


def test_live_streams_and_files_share_rounds_and_each_gets_its_events_alone():
    model = pipeline("tiny.en")
    a, b = samples("en_jfk.wav"), samples("en_librivox_0870.wav")
    alone_a, alone_b = list(alone("en_jfk.wav", 2.0, "a")), list(alone("en_librivox_0870.wav", 2.0, "b"))
    file = samples("en_librivox_0890.wav")
    scheduler = S.Scheduler(model.model, batch_size=4)
    rounds = []
    encode = scheduler._encode
    scheduler._encode = lambda rows: (rounds.append({s.id for s in rows}), encode(rows))[1]
    scheduler.add_live(language="en", stream_id="a", step_s=2.0)
    scheduler.add_live(language="en", stream_id="b", step_s=2.0)
    together: dict = {"a": [], "b": [], "file": []}
    ended = set()
    for i in range(0, max(len(a), len(b)), BLOCK):
        if i + BLOCK == 4 * SAMPLE_RATE:  # the file joins with the block that makes both live streams due
            scheduler.add(file, language="en", stream_id="file")
        for sid, audio in (("a", a), ("b", b)):
            if i < len(audio):
                scheduler.feed(sid, audio[i: i + BLOCK])
            if i + BLOCK >= len(audio) and sid not in ended:
                scheduler.end(sid)
                ended.add(sid)
        for event in scheduler.events():
            together[event.stream_id].append(event)
    assert {"a", "b", "file"} in rounds, "the live streams and the file must have been decoded in one round"
    assert outcome(together["a"]) == outcome(alone_a) and outcome(together["b"]) == outcome(alone_b)
    assert [s.text for s in final_segments(together["file"])] == [s.text for s in offline("en_librivox_0890.wav")]


def test_silence_commits_nothing_and_finishes():
    model = pipeline("tiny.en")
    events = stream_live(S.Scheduler(model.model), np.zeros(3 * SAMPLE_RATE, np.float32), step_s=1.0)
    assert [type(e) for e in events] == [S.Started] + [S.Hypothesis] * 3 + [S.Segments, S.Finished]
    assert {e.text for e in events if isinstance(e, S.Hypothesis)} == {""}
    assert final_segments(events) == [] and committed_text(events) == ""
    assert events[-1].info.duration == pytest.approx(3.0)


def test_an_ended_stream_with_no_audio_finishes():
    scheduler = S.Scheduler(pipeline("tiny.en").model)
    sid = scheduler.add_live(language="en")
    assert list(scheduler.events()) == []  # nothing due: the scheduler returns at once
    scheduler.end(sid)
    assert [type(e) for e in scheduler.events()] == [S.Started, S.Segments, S.Finished]
    with pytest.raises(OptionError, match="no live stream"):
        scheduler.feed(sid, np.zeros(10, np.float32))


def test_bad_live_calls_name_the_problem():
    scheduler = S.Scheduler(pipeline("tiny.en").model)
    sid = scheduler.add_live(language="en")
    with pytest.raises(AudioError, match=r"float samples \[n\].*int16"):
        scheduler.feed(sid, np.zeros(10, np.int16))
    with pytest.raises(AudioError, match=r"\[2, 5\]"):
        scheduler.feed(sid, np.zeros((2, 5), np.float32))
    with pytest.raises(OptionError, match="no live stream 'nope'"):
        scheduler.end("nope")
    with pytest.raises(OptionError, match="clip_timestamps"):
        scheduler.add_live(options=TranscriptionOptions(clip_timestamps="1,2"))
    with pytest.raises(OptionError, match="step_s"):
        scheduler.add_live(step_s=0)
    with pytest.raises(OptionError, match="already in use"):
        scheduler.add_live(stream_id=sid)
    scheduler.end(sid)
    with pytest.raises(AudioError, match="has ended"):
        scheduler.feed(sid, np.zeros(10, np.float32))
    assert scheduler.cancel(sid) and not scheduler.cancel(sid)
    scheduler.add_live(stream_id=sid)  # the id is free again


def test_the_worker_runs_live_streams_from_other_threads():
    from whisper_model.chunked import make_scheduler
    from whisper_model.service import StreamWorker

    model = pipeline("tiny.en")
    audio = samples("en_jfk.wav")
    worker = StreamWorker(lambda: make_scheduler(model.model, batch_size=4, chunking="vad"))
    worker.start()
    events, done = [], threading.Event()

    def deliver(event):
        events.append(event)
        if isinstance(event, (S.Finished, S.Failed)):
            done.set()

    sid = worker.add_live(deliver, language="en")
    with pytest.raises(AudioError):
        worker.feed(sid, audio.astype(np.int32))
    for i in range(0, len(audio), BLOCK):
        worker.feed(sid, audio[i: i + BLOCK])
    worker.end(sid)
    assert done.wait(300), "the live stream never finished"
    assert worker.stop(60)
    assert isinstance(events[-1], S.Finished) and worker.streams == {}
    assert [s.text for s in final_segments(events)] == [s.text for s in offline("en_jfk.wav")]
    assert normalized(committed_text(events)) == normalized("".join(s.text for s in offline("en_jfk.wav")))


def test_audio_fed_while_a_round_gives_out_its_events_waits_for_the_next_round():
    """The worker feeds between events: audio and the end that come while ``Started`` is out belong to the next
    round, and the end is transcribed whole (it once decoded the mel made before them as if it were the end)."""
    audio = np.concatenate([samples("en_librivox_0880.wav"), np.zeros(SAMPLE_RATE, np.float32)])
    scheduler = S.Scheduler(pipeline("tiny.en").model, batch_size=2)
    sid = scheduler.add_live(language="en")
    scheduler.feed(sid, audio[:24000])
    events = scheduler.events()
    assert isinstance(next(events), S.Started)
    scheduler.feed(sid, audio[24000:])
    scheduler.end(sid)
    events = list(events) + list(scheduler.events())
    full = list(pipeline("tiny.en").transcribe(audio, language="en")[0])
    assert [s.text for s in final_segments(events)] == [s.text for s in full]
    assert events[-1].info.duration == pytest.approx(len(audio) / SAMPLE_RATE)
