"""whisper_model.scheduler: streams added at any time, per-stream events, failures kept to their stream, options
checked once. fp32 on CPU, real weights (tiny.en); the reference is ``transcribe()`` of each audio alone."""
from __future__ import annotations

import unittest.mock
from collections import defaultdict

import numpy as np
import pytest

from whisper_model import longform as LF
from whisper_model import scheduler as S
from whisper_model.decode import DecodingOptions
from whisper_model.errors import AudioError, DecodingError, OptionError
from whisper_model.options import TranscriptionOptions
from whisper_model.scheduler import Failed, Finished, Scheduler, Segments, Started
from whisper_model.transcribe import transcribe

try:
    from ._reference import clear, models, samples, transcribed
except ImportError:
    from _reference import clear, models, samples, transcribed

FIELDS = ("id", "seek", "start", "end", "text", "tokens", "temperature", "compression_ratio")
LONG, SHORT = "en_lecture_60s.wav", "en_jfk.wav"  # 3 windows; 1 window


def teardown_module():
    clear()


def alone(model, audio, **kwargs):
    segments, info = transcribe(model, audio, **kwargs)
    return list(segments), info


def shared(audio, **kwargs):
    """``alone(models("tiny.en")[0], audio, **kwargs)``, run once per session (``_reference.transcribed``; test_batch
    compares with some of the same runs)."""
    return transcribed("tiny.en", audio, **kwargs)


def assert_same(segments, ref_segments):
    assert [tuple(getattr(s, f) for f in FIELDS) for s in segments] == \
        [tuple(getattr(s, f) for f in FIELDS) for s in ref_segments]
    for a, b in zip(segments, ref_segments):
        assert a.avg_logprob == pytest.approx(b.avg_logprob, abs=1e-4)


def collect(events):
    """(events per stream id, segments per stream id) of an event iterator."""
    per_stream, segments = defaultdict(list), defaultdict(list)
    for event in events:
        per_stream[event.stream_id].append(event)
        if isinstance(event, Segments):
            segments[event.stream_id] += event.segments
    return per_stream, segments


class CountingTask:
    """Wraps ``longform.DecodingTask``: the number of rows of every decoding batch."""

    def __init__(self):
        self.rows, self.real = [], LF.DecodingTask

    def __call__(self, model, options, tokenizer=None, **kw):
        self.rows.append(len(kw["prompts"]))
        return self.real(model, options, tokenizer, **kw)


def test_stream_added_while_running_equals_alone_and_events_are_ordered():
    """A stream added after the first stream's first window joins the running batch (2 rows decoded together) and
    gets what it gets alone; per stream: Started, then one Segments per window (``done`` growing to the
    duration), then Finished."""
    model, _ = models("tiny.en")
    scheduler, counting = Scheduler(model, batch_size=2), CountingTask()
    first = scheduler.add(samples(LONG))
    log, added = [], None
    with unittest.mock.patch.object(LF, "DecodingTask", counting):
        for event in scheduler.events():
            log.append(event)
            if added is None and isinstance(event, Segments):
                added = scheduler.add(samples(SHORT), initial_prompt="President Kennedy.", stream_id="late")
    per_stream, segments = collect(log)
    assert (first, added) == (0, "late") and set(per_stream) == {0, "late"}
    assert max(counting.rows) == 2  # the late stream was decoded beside the first one
    assert log.index(per_stream["late"][0]) > log.index(per_stream[0][1])  # it started after a window of stream 0
    assert_same(segments[0], shared(samples(LONG))[0])
    assert_same(segments["late"], shared(samples(SHORT), initial_prompt="President Kennedy.")[0])
    for sid, events in per_stream.items():
        kinds = [type(e) for e in events]
        assert kinds[0] is Started and kinds[-1] is Finished and set(kinds[1:-1]) == {Segments}, sid
        done = [e.done for e in events[1:-1]]
        assert done == sorted(done) and done[-1] == pytest.approx(events[-1].info.duration)
        assert events[0].info == events[-1].info
    assert len(per_stream[0]) - 2 >= len({s.seek for s in segments[0]}) >= 3  # one Segments per window


def test_failing_streams_fail_alone():
    """Streams that cannot be loaded give Failed(AudioError) (no Started); a round whose decoding raises fails
    its streams with a DecodingError; the other streams complete as they do alone."""
    model, _ = models("tiny.en")
    scheduler = Scheduler(model, batch_size=2)
    for audio in ("no_such_clip.wav", samples(SHORT), b"not audio", np.zeros((2, 100), np.float32)):
        scheduler.add(audio)
    per_stream, segments = collect(scheduler.events())
    for sid in (0, 2, 3):
        (event,) = per_stream[sid]
        assert isinstance(event, Failed) and isinstance(event.error, AudioError), sid
    assert isinstance(per_stream[0][0].error.__cause__, FileNotFoundError)
    assert isinstance(per_stream[1][-1], Finished)
    assert_same(segments[1], shared(samples(SHORT))[0])

    scheduler, real, calls = Scheduler(model, batch_size=1), S.decode_with_fallback, []

    def failing_once(*args, **kwargs):
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("out of memory")
        return real(*args, **kwargs)

    scheduler.add(samples(LONG), stream_id="a")
    scheduler.add(samples(SHORT), stream_id="b")
    with unittest.mock.patch.object(S, "decode_with_fallback", failing_once):
        per_stream, segments = collect(scheduler.events())
    assert [type(e) for e in per_stream["a"]] == [Started, Failed]
    assert isinstance(per_stream["a"][1].error, DecodingError) and "out of memory" in str(per_stream["a"][1].error)
    assert isinstance(per_stream["b"][-1], Finished)
    assert_same(segments["b"], shared(samples(SHORT))[0])


def test_streams_with_different_options_are_decoded_in_groups():
    """Two streams with their own options in one round: one DecodingTask batch per options group; each stream
    gets what it gets alone with its options."""
    model, _ = models("tiny.en")
    beam = TranscriptionOptions(beam_size=2)
    scheduler, counting = Scheduler(model, batch_size=3), CountingTask()
    scheduler.add(samples(SHORT), stream_id="greedy")
    scheduler.add(samples("en_bobby.wav"), options=beam, stream_id="beam")
    scheduler.add(samples("en_librivox_0880.wav"), options=TranscriptionOptions(beam_size=2), stream_id="beam2")
    with unittest.mock.patch.object(LF, "DecodingTask", counting):
        _, segments = collect(scheduler.events())
    assert counting.rows[:2] == [1, 2]  # greedy alone, the two beam streams (equal options) together
    assert_same(segments["greedy"], shared(samples(SHORT))[0])
    assert_same(segments["beam"], shared(samples("en_bobby.wav"), options=beam)[0])
    assert_same(segments["beam2"], shared(samples("en_librivox_0880.wav"), beam_size=2)[0])


def test_options_are_validated_once_not_per_window():
    """The per-temperature DecodingOptions are built (and checked) once, with the TranscriptionOptions: a
    transcription of several windows, some decoded again at the fallback temperature, builds none."""
    model, _ = models("tiny.en")
    built, real = [], DecodingOptions.__post_init__

    def counting(self):
        built.append(self.temperature)
        return real(self)

    with unittest.mock.patch.object(DecodingOptions, "__post_init__", counting):
        options = TranscriptionOptions(temperature=(0.0, 0.0), logprob_threshold=-0.3)
        assert built == [0.0, 0.0] and [d.temperature for d in options.decoding] == [0.0, 0.0]
        counter, audio = CountingTask(), np.concatenate([samples(SHORT)] * 3)  # 33 s: 2 windows
        with unittest.mock.patch.object(LF, "DecodingTask", counter):
            segments, _ = alone(model, audio, options=options)
        assert len({s.seek for s in segments}) >= 2 and len(counter.rows) > 2  # windows, and fallbacks
        assert built == [0.0, 0.0]
        alone(model, samples(SHORT), temperature=(0.0, 0.4), best_of=2)  # keywords: built once per call
        assert built == [0.0, 0.0, 0.0, 0.4]


def test_transcription_options_checks():
    """Options are checked when made (OptionError, a ValueError, naming the option); beam search only at
    temperature 0, best_of only above; the language is not an option but a per-stream value checked by add."""
    options = TranscriptionOptions(temperature=0.0)
    assert options.temperature == (0.0,) and len(options.decoding) == 1
    options = TranscriptionOptions(beam_size=3, patience=1.0, temperature=[0, 0.5], suppress_tokens=[1, 2])
    assert options.temperature == (0.0, 0.5) and options.suppress_tokens == (1, 2)
    (at0, at5) = options.decoding
    assert (at0.beam_size, at0.patience, at0.best_of) == (3, 1.0, None)
    assert (at5.beam_size, at5.patience, at5.best_of) == (None, None, 5)
    assert options == TranscriptionOptions(beam_size=3, patience=1.0, temperature=(0.0, 0.5), suppress_tokens=(1, 2))
    assert not hasattr(options, "language") and not hasattr(options, "initial_prompt")
    sampled = TranscriptionOptions(beam_size=2, temperature=0.3).decoding  # beam search at temperature 0 only
    assert [(d.beam_size, d.best_of, d.temperature) for d in sampled] == [(None, 5, 0.3)]
    for kwargs, name in [(dict(temperature=()), "temperature"), (dict(task="summarize"), "task"),
                         (dict(patience=2.0), "patience"), (dict(best_of=0, temperature=0.5), "best_of"),
                         (dict(beam_size=0), "beam_size"), (dict(length_penalty=3), "length_penalty")]:
        with pytest.raises(OptionError, match=name):
            TranscriptionOptions(**kwargs)
    model, _ = models("tiny.en")
    scheduler = Scheduler(model)
    with pytest.raises(OptionError, match="language"):
        scheduler.add("never_loaded.wav", language="fr")
    with pytest.raises(OptionError, match="translate"):
        scheduler.add("never_loaded.wav", options=TranscriptionOptions(task="translate"))
    scheduler.add("never_loaded.wav", stream_id="x")
    with pytest.raises(OptionError, match="stream_id"):
        scheduler.add("never_loaded.wav", stream_id="x")
    with pytest.raises(OptionError, match="batch_size"):
        Scheduler(model, batch_size=0)


def test_on_progress_moves_within_each_window_and_changes_nothing():
    """``on_progress(stream_id, seconds)`` is called while a window is decoded, with seconds that grow inside the
    window (before its ``Segments`` event), from the latest timestamp token; the segments equal those without
    it. Without timestamps nothing is reported mid-window."""
    model, _ = models("tiny.en")
    audio = samples(LONG)
    log = []  # ("progress", id, seconds) and ("event", event), in the order they happened
    scheduler = Scheduler(model, batch_size=2, on_progress=lambda i, s: log.append(("progress", i, s)))
    scheduler.add(audio, stream_id="long")
    scheduler.add(samples(SHORT), stream_id="short")
    per_stream, segments = collect(e for e in scheduler.events() if not log.append(("event", e)))
    assert_same(segments["long"], shared(audio)[0])
    first = next(k for k, entry in enumerate(log) if entry[0] == "event" and isinstance(entry[1], Segments))
    inside = [entry[2] for entry in log[:first] if entry[0] == "progress" and entry[1] == "long"]
    assert len(inside) >= 3 and inside == sorted(inside) and 0 < inside[-1] <= log[first][1].done <= 30.0
    calls = [entry[1:] for entry in log if entry[0] == "progress"]
    assert {i for i, _ in calls} == {"long", "short"}
    assert all(0 <= s <= 60.1 for _, s in calls)
    quiet = []
    scheduler = Scheduler(model, batch_size=1, on_progress=lambda i, s: quiet.append(s))
    scheduler.add(samples(SHORT), options=TranscriptionOptions(without_timestamps=True))
    list(scheduler.events())
    assert quiet == []
    with pytest.raises(OptionError, match="on_progress"):
        Scheduler(model, on_progress=3)
