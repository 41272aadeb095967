"""Voice activity detection (``io.vad``) and VAD-cut long-form decoding (``chunked``), fp32 on CPU with real
weights (tiny.en, base) on the shared clips. The references: Silero's own frame-by-frame model calls and
``get_speech_timestamps``; each chunk decoded alone by a plain ``Scheduler``; sequential ``transcribe``."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import unittest.mock
from dataclasses import replace

import numpy as np
import pytest
import torch

from whisper_model import chunk_plan as P
from whisper_model import chunked as C
from whisper_model.errors import OptionError
from whisper_model.io import vad as V
from whisper_model.io.audio import HOP_LENGTH, N_SAMPLES, SAMPLE_RATE
from whisper_model.options import TranscriptionOptions
from whisper_model.scheduler import Finished, Scheduler, Segments, Started

try:
    from ._reference import clear, pipeline, samples
except ImportError:
    from _reference import clear, pipeline, samples

FIELDS = ("id", "seek", "start", "end", "text", "tokens", "temperature", "compression_ratio")
SR = SAMPLE_RATE


def teardown_module():
    clear()


def joined(*parts) -> np.ndarray:
    """Shared clips (names) and seconds of silence (numbers), end to end."""
    return np.concatenate([np.zeros(int(p * SR), np.float32) if isinstance(p, (int, float)) else samples(p)
                           for p in parts]).astype(np.float32)


def fields(segments) -> list[tuple]:
    return [tuple(getattr(s, f) for f in FIELDS) for s in segments]


def transcribed(model, audio, **kwargs):
    segments, info = model.transcribe(audio, **kwargs)
    return list(segments), info


# ---------------------------------------------------------------------------------------------------------------
# the detector
def test_vad_model_loads_from_the_installed_package_without_network_or_audio_libraries():
    """A fresh process with every socket refused loads Silero's TorchScript file from the installed wheel and scores
    audio; torchaudio and onnxruntime are not imported, and torch's thread count is what it was."""
    code = """if True:
        import json, socket, sys, torch
        def refuse(*a, **k): raise OSError("network use")
        socket.socket.connect = socket.create_connection = socket.getaddrinfo = refuse
        torch.set_num_threads(2)
        import importlib.resources, silero_vad  # noqa (imported by vad_model too)
        from whisper_model.io import vad
        torch.set_num_threads(2)
        model = vad.vad_model()
        probs = vad.speech_probabilities(torch.zeros(16000))
        path = importlib.resources.files("silero_vad.data") / "silero_vad.jit"
        print(json.dumps(dict(threads=torch.get_num_threads(), frames=len(probs), jit=path.is_file(),
                              kind=type(model).__name__, modules=[m for m in sys.modules
                              if m.split(".")[0] in ("torchaudio", "onnxruntime", "torchcodec")])))
    """
    env = dict(os.environ, HF_HUB_OFFLINE="1", NO_PROXY="*")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert out.returncode == 0, out.stderr
    got = json.loads(out.stdout.strip().splitlines()[-1])
    assert got == dict(threads=2, frames=32, jit=True, kind="RecursiveScriptModule", modules=[])


def test_vad_model_keeps_the_thread_count_of_the_first_import():
    code = ("import torch; torch.set_num_threads(2); from whisper_model.io import vad; vad.vad_model(); "
            "print(torch.get_num_threads())")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split()[-1] == "2"  # silero_vad's import alone sets 1


def test_probabilities_and_regions_equal_silero_frame_by_frame():
    """``speech_probabilities`` (encoder batched, one LSTM call) equals the model called on each 512-sample frame
    in turn, and ``speech_regions`` equals silero's ``get_speech_timestamps`` with the same options."""
    import silero_vad

    audio = torch.from_numpy(joined("en_jfk.wav", 2.0, "en_librivox_0880.wav"))
    model = V.vad_model()
    padded = torch.nn.functional.pad(audio, (0, -len(audio) % V.FRAME))
    model.reset_states()
    expected = torch.tensor([model(padded[i: i + V.FRAME], SR).item() for i in range(0, len(padded), V.FRAME)])
    probs = V.speech_probabilities(audio)
    assert probs.shape == expected.shape and torch.allclose(probs, expected, atol=1e-5)
    assert (probs > 0.5).any() and (probs < 0.2).any()  # speech and silence both seen
    for options in (V.CHUNKING, V.FILTERING, V.VadOptions(threshold=0.6, speech_pad_ms=30, max_speech_duration_s=4)):
        theirs = silero_vad.get_speech_timestamps(
            audio, model, threshold=options.threshold, min_speech_duration_ms=options.min_speech_duration_ms,
            min_silence_duration_ms=options.min_silence_duration_ms, speech_pad_ms=options.speech_pad_ms,
            max_speech_duration_s=options.max_speech_duration_s)
        assert V.speech_regions(audio, options, probs) == [(r["start"], r["end"]) for r in theirs], options
    assert V.speech_regions(audio[:0]) == [] and V.speech_probabilities(audio[:0]).shape == (0,)


@pytest.mark.parametrize("kwargs, option", [
    (dict(threshold=1.5), "threshold"), (dict(speech_pad_ms=-1), "speech_pad_ms"),
    (dict(neg_threshold=0.9), "neg_threshold"), (dict(max_speech_duration_s=0.5), "max_speech_duration_s"),
    (dict(min_silence_duration_ms="100"), "min_silence_duration_ms")])
def test_bad_vad_options_name_the_option(kwargs, option):
    with pytest.raises(OptionError, match=f"vad_options.{option}"):
        V.VadOptions(**kwargs)


# ---------------------------------------------------------------------------------------------------------------
# chunk plans and time maps (no model)
def test_plan_chunks_cuts_only_between_regions_within_the_limit():
    limit, n = 30 * SR, 200 * SR
    regions = [(int(s * SR), int(e * SR)) for s, e in [(1, 5), (6, 20), (21, 29), (29.5, 40), (41, 42), (80, 81), (100, 175)]]
    chunks = V.plan_chunks(regions, n, limit)
    assert all(0 < e - s <= limit and s % HOP_LENGTH == 0 for s, e in chunks)
    assert chunks == sorted(chunks) and all(a[1] <= b[0] for a, b in zip(chunks, chunks[1:]))
    for start, end in regions[:-1]:  # every region of at most 30 s lies in exactly one chunk
        assert sum(s <= start and end <= e for s, e in chunks) == 1, (start, end)
    assert chunks[:3] == [(1 * SR, 29 * SR), (int(29.5 * SR), 42 * SR), (80 * SR, 81 * SR)]
    long_parts = chunks[3:]  # 75 s without a pause: three equal, adjacent parts
    assert long_parts[0][0] == 100 * SR and long_parts[-1][1] == 175 * SR and len(long_parts) == 3
    assert all(a[1] == b[0] for a, b in zip(long_parts, long_parts[1:]))
    assert V.plan_chunks([], n) == [] and V.plan_chunks([(SR, 2 * SR)], 20 * SR) == [(0, 20 * SR)]
    assert V.plan_chunks([(0, N_SAMPLES)], N_SAMPLES + 1) == [(0, N_SAMPLES)]


def test_speech_map_maps_joined_times_back():
    speech = V.SpeechMap([(2 * SR, 5 * SR), (10 * SR, 11 * SR), (20 * SR, 30 * SR)])
    assert speech.duration == 14.0 and speech.offsets == [0, 3 * SR, 4 * SR, 14 * SR]
    assert [speech.to_audio(t) for t in (0.0, 1.5, 3.0, 3.5, 4.0, 13.0)] == [2.0, 3.5, 10.0, 10.5, 20.0, 29.0]
    assert speech.to_audio(3.0, is_end=True) == 5.0 and speech.to_audio(4.0, is_end=True) == 11.0
    assert speech.to_audio(15.0, is_end=True) == 31.0  # past the last region: on from its start
    audio = np.arange(40 * SR, dtype=np.float32)
    collected = speech.collect(audio)
    assert collected.shape == (14 * SR,) and collected[3 * SR] == 10 * SR and collected[-1] == 30 * SR - 1
    assert V.SpeechMap([]).collect(audio).shape == (0,) and V.SpeechMap([]).to_audio(1.0) == 1.0
    # a segment across a join starting (ending) within the margin of it belongs to the next (previous) region
    assert speech.span_to_audio(2.8, 3.9, 0.4) == (10.0, 10.9)
    assert speech.span_to_audio(2.0, 3.1, 0.4) == (4.0, 5.0)
    assert speech.span_to_audio(2.0, 3.5, 0.4) == (4.0, 10.5)  # half a second on each side: a real span
    assert speech.span_to_audio(2.9, 4.1, 0.4) == (10.0, 11.0)  # across two joins: both edges move in
    assert speech.span_to_audio(1.0, 2.0, 0.4) == (3.0, 4.0)


def test_a_short_rest_after_the_last_timestamp_is_not_decoded_on_its_own():
    """``LongFormState.min_window``: a window of 10 s whose text has a pair of timestamps at 9.8 s and an unfinished
    segment after it: openai-whisper's loop (0) decodes the 0.2 s left as another window; a VAD chunk (1 s) keeps
    the unfinished text as its last segment, up to the chunk's end, and is done."""
    from whisper_model.decode.options import DecodingResult
    from whisper_model.io.mel_stream import StreamedLogMel
    from whisper_model.longform import LongFormState

    tokenizer = pipeline("tiny.en").tokenizer
    ts = tokenizer.timestamp_begin
    text, more = tokenizer.encode(" Hello there."), tokenizer.encode(" And")
    tokens = [ts, *text, ts + 490, ts + 490, *more]
    result = DecodingResult(language="en", tokens=tokens, temperature=0.0, avg_logprob=-0.1, no_speech_prob=0.0,
                            compression_ratio=1.0)
    mel = StreamedLogMel([np.zeros(1000 * HOP_LENGTH, np.float32)], 80)  # 10 s
    for min_window, pieces, seek in ((0, 1, 980), (100, 2, 1000)):
        state = LongFormState(mel, TranscriptionOptions(), tokenizer, None, 1500, min_window=min_window)
        segments = state.advance(result)
        assert (len(segments), state.seek, state.done) == (pieces, seek, seek == 1000)
        assert (segments[0].start, segments[0].end, segments[0].text) == (0.0, 9.8, " Hello there.")
    assert (segments[1].start, segments[1].end, segments[1].text, segments[1].tokens) == (9.8, 10.0, " And",
                                                                                         tokens[-1 - len(more):])


# ---------------------------------------------------------------------------------------------------------------
# chunked decoding on real speech
def test_chunk_boundaries_fall_in_pauses():
    """On 60 s of lecture and on clips joined with silences, every cut between two chunks lies where the VAD
    hears no speech (a frame below the threshold within 0.3 s of the cut on both sides), chunks are at most 30 s
    and cover every detected speech region."""
    for audio in (samples("en_lecture_60s.wav"), joined("en_jfk.wav", 3.0, "en_f5_ref.wav", 1.0, "en_jfk.wav",
                                                          0.5, "en_librivox_0870.wav", 4.0, "en_jfk.wav")):
        probs = V.speech_probabilities(audio)
        regions = V.speech_regions(audio, V.CHUNKING, probs)
        chunks = V.plan_chunks(regions, len(audio))
        assert len(chunks) >= 2 and all(e - s <= N_SAMPLES for s, e in chunks)
        # in a chunk, up to the 10 ms by which a cut between two touching regions moves to a whole mel frame
        assert all(any(s <= a + HOP_LENGTH and b - HOP_LENGTH <= e for s, e in chunks) for a, b in regions)
        for (_, end), (start, _) in zip(chunks, chunks[1:]):
            for cut in (end, start):
                near = probs[max(0, cut // V.FRAME - 9): cut // V.FRAME + 10]
                assert near.min() < V.CHUNKING.threshold, (cut / SR, near)


@pytest.mark.parametrize("name", ["tiny.en", "base"])
def test_chunked_transcript_of_a_short_clip_equals_the_sequential_one(name):
    """A clip of at most 30 s is one chunk, the whole clip: the same segments as sequential decoding (which
    decodes these clips in one window), language detected on the same 30 s (base)."""
    model = pipeline(name)
    for clip in ("en_jfk.wav", "en_librivox_0870.wav"):
        sequential, info = transcribed(model, samples(clip))
        assert {s.seek for s in sequential} == {0}  # one window: the chunk sees just what sequential decoding saw
        chunked, chunked_info = transcribed(model, samples(clip), chunking="vad", batch_size=4)
        assert fields(chunked) == fields(sequential) and sequential, clip
        assert (chunked_info.language, chunked_info.duration) == (info.language, info.duration)
        assert chunked_info.language_probability == pytest.approx(info.language_probability, abs=1e-5)
        assert chunked_info.options == replace(info.options, condition_on_previous_text=False)


def test_chunk_segments_are_mapped_to_the_file_timeline_in_order():
    """Clips joined with silences (> 30 s): each chunk decoded alone by a plain Scheduler, moved by the chunk's
    start (times kept within the chunk), gives exactly the chunked transcript; segments are in time order, ids count from 0; the audio of two
    files is decoded as one batch of chunks with the same result; text lands where the clips are."""
    model = pipeline("tiny.en")
    audio = joined(12.0, "en_jfk.wav", 25.0, "en_librivox_0870.wav", 3.0, "en_f5_ref.wav", 20.0)
    segments, info = transcribed(model, audio, chunking="vad", batch_size=4)
    chunks = V.plan_chunks(V.speech_regions(audio, V.CHUNKING), len(audio))
    assert len(chunks) >= 2 and info.duration_after_vad == pytest.approx(sum(e - s for s, e in chunks) / SR)
    options = TranscriptionOptions(condition_on_previous_text=False)
    scheduler, expected = Scheduler(model.model, batch_size=1, tokenizer=model.tokenizer), []
    for k, (start, end) in enumerate(chunks):
        scheduler.add(audio[start:end], options=options, language="en", stream_id=k,
                      min_window_s=P.MIN_WINDOW_S)
    alone = {k: [] for k in range(len(chunks))}
    for event in scheduler.events():
        if isinstance(event, Segments):
            alone[event.stream_id] += event.segments
    for k, (start, end) in enumerate(chunks):
        expected += [replace(s, id=len(expected) + i, seek=s.seek + start // HOP_LENGTH,
                             start=min(s.start + start / SR, end / SR), end=min(s.end + start / SR, end / SR))
                     for i, s in enumerate(alone[k])]
    assert fields(segments) == fields(expected)
    assert [s.start for s in segments] == sorted(s.start for s in segments)
    text_at = {round(s.start): s.text for s in segments if s.text.strip()}
    jfk = [s for s in segments if "country" in s.text]
    assert jfk and all(11.0 <= s.start and s.end <= 24.0 for s in jfk), text_at
    assert not [s for s in segments if s.text.strip() and (24.0 <= s.start and s.end <= 48.0)], text_at
    both = model.transcribe_batch([audio, samples("en_jfk.wav")], chunking="vad", batch_size=8)
    assert fields(both[0][0]) == fields(segments)
    assert fields(both[1][0]) == fields(transcribed(model, samples("en_jfk.wav"), chunking="vad")[0])


def test_language_is_detected_once_on_the_first_speech():
    """35 s of silence, then Chinese: the chunked path detects the language once, on the first chunk (the speech),
    not on the silent first 30 s, and decodes it in that language."""
    model = pipeline("base")
    audio = joined(35.0, "zh_sentence.wav", 1.0)
    calls = []

    def counting(model_, encoding, mels, tokenizer=None):
        calls.append([m.content_frames for m in mels])
        return real(model_, encoding, mels, tokenizer)

    real = P.detect_languages
    with unittest.mock.patch.object(P, "detect_languages", counting):
        segments, info = transcribed(model, audio, chunking="vad")
    assert info.language == "zh" and info.language_probability > 0.5 and len(calls) == 1
    (frames,) = calls[0]
    assert frames < N_SAMPLES // HOP_LENGTH  # the chunk (under 30 s)
    assert segments and all(s.start >= 34.0 for s in segments) and "真人" in "".join(s.text for s in segments)


@pytest.mark.parametrize("name", ["tiny.en", "base"])
def test_empty_and_silent_audio_give_no_segments(name):
    model = pipeline(name)
    for audio in (np.zeros(0, np.float32), np.zeros(100, np.float32), np.zeros(5 * SR, np.float32),
                  np.zeros(40 * SR, np.float32), np.random.default_rng(0).normal(0, 1e-4, 40 * SR).astype(np.float32)):
        for kwargs in (dict(chunking="vad"), dict(vad_filter=True)):
            segments, info = transcribed(model, audio, **kwargs)
            assert segments == [] and info.duration_after_vad == 0.0, (len(audio), kwargs)
            assert info.duration == pytest.approx(len(audio) // HOP_LENGTH * HOP_LENGTH / SR)


def test_vad_filter_removes_long_silences_and_maps_times_back():
    """``vad_filter``: the joined speech transcribed sequentially; the segments' times, mapped back, fall in the
    clips, none in the silences between them (a segment whose edge lands in the padding beside a join is moved
    to the right side of it); equal to transcribing the collected speech and mapping by hand."""
    model = pipeline("tiny.en")
    audio = joined(10.0, "en_jfk.wav", 15.0, "en_librivox_0870.wav", 8.0)
    segments, info = transcribed(model, audio, vad_filter=True)
    speech = V.SpeechMap(V.speech_regions(audio, V.FILTERING))
    assert info.duration == pytest.approx(len(audio) / SR) and info.duration_after_vad == pytest.approx(speech.duration)
    assert speech.duration < 24.0  # of 51 s
    inner, _ = transcribed(model, speech.collect(audio))
    assert [(s.text, s.tokens) for s in segments] == [(s.text, s.tokens) for s in inner]
    assert [(s.start, s.end) for s in segments] == [speech.span_to_audio(s.start, s.end, 0.4) for s in inner]
    spoken = [s for s in segments if s.text.strip()]
    assert "country" in "".join(s.text for s in spoken) and "dashwood" in "".join(s.text for s in spoken).lower()
    for s in spoken:
        assert 9.5 <= s.start < s.end <= 21.5 or 35.5 <= s.start < s.end <= 43.5, (s.start, s.end, s.text)


def test_chunking_options_are_checked_before_any_audio():
    """Bad chunking options are ``OptionError`` naming the option, before the (missing) audio is looked at; the
    default condition_on_previous_text (None) is True on the sequential path."""
    model = pipeline("tiny.en")
    cases = [(dict(chunking="vad", condition_on_previous_text=True), "condition_on_previous_text"),
             (dict(chunking="silero"), "chunking"), (dict(chunking="vad", vad_filter=True), "vad_filter"),
             (dict(vad_filter="yes"), "vad_filter"), (dict(vad_options=V.VadOptions()), "vad_options"),
             (dict(chunking="vad", vad_options=V.FILTERING), "max_speech_duration_s"),
             (dict(chunking="vad", batch_size=0), "batch_size"),
             (dict(condition_on_previous_text="no"), "condition_on_previous_text")]
    for kwargs, option in cases:
        with pytest.raises(OptionError, match=option):
            model.transcribe("no_such_file.wav", **kwargs)
    assert TranscriptionOptions().condition_on_previous_text is None and TranscriptionOptions().conditioned
    assert not TranscriptionOptions(condition_on_previous_text=False).conditioned


def test_chunked_scheduler_events_per_file():
    """The CLI's view: ``model.scheduler(chunking="vad")`` takes files and gives Started, Segments (``done``
    growing to the duration), Finished per file, also for a file without speech."""
    model = pipeline("tiny.en")
    scheduler = model.scheduler(batch_size=4, chunking="vad")
    assert isinstance(scheduler, C.ChunkedScheduler)
    scheduler.add(joined("en_jfk.wav", 25.0, "en_jfk.wav"), stream_id="a")
    scheduler.add(np.zeros(10 * SR, np.float32), stream_id="b")
    events = {"a": [], "b": []}
    for event in scheduler.events():
        events[event.stream_id].append(event)
    kinds = [type(e) for e in events["a"]]
    assert kinds[0] is Started and kinds[-1] is Finished and set(kinds[1:-1]) == {Segments} and len(kinds) == 4
    done = [e.done for e in events["a"][1:-1]]
    assert done == sorted(done) and done[-1] == events["a"][-1].info.duration
    assert [type(e) for e in events["b"]] == [Started, Finished]


def test_chunked_progress_is_per_file_and_grows_to_its_duration():
    """``on_progress`` of a ChunkedScheduler names the file (not its chunks): the share of its chunks decoded,
    times its duration, never falling, reaching the duration; vad_filter's is on the file's timeline."""
    model = pipeline("tiny.en")
    audio = joined(12.0, "en_jfk.wav", 25.0, "en_librivox_0870.wav", 20.0)
    for kwargs in (dict(chunking="vad"), dict(vad_filter=True)):
        seen = []
        scheduler = model.scheduler(batch_size=4, on_progress=lambda i, s: seen.append((i, s)), **kwargs)
        scheduler.add(audio, stream_id="f")
        finished = [e for e in scheduler.events() if isinstance(e, Finished)]
        duration = finished[0].info.duration
        values = [s for _, s in seen]
        assert {i for i, _ in seen} == {"f"} and len(values) >= 3, kwargs
        assert all(0 <= v <= duration + 1e-6 for v in values), (kwargs, values)
        if kwargs.get("chunking"):
            assert values == sorted(values) and values[-1] == pytest.approx(duration)
