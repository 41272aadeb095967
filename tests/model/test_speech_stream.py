"""The VAD paths of a file read in blocks (io.speech_stream, io.silero, chunk_plan, speech_filter, io.speech_wav):
silero's regions and the whole array's chunks found frame by frame and region by region; a long file's chunks (or
its speech, vad_filter) found and handed over with a few chunks' samples in memory, not the file's."""
from __future__ import annotations

import tracemalloc
import wave

import numpy as np
import pytest
import torch

from whisper_model.errors import AudioError
from whisper_model.io import vad as V
from whisper_model.io.audio import HOP_LENGTH, N_SAMPLES, SAMPLE_RATE, iter_audio, load_audio
from whisper_model.io.sample_spool import SampleSpool
from whisper_model.io.silero import SileroStream
from whisper_model.io.speech_stream import READ_BLOCK, ChunkPlanner, RegionFinder, SpeechChunker
from whisper_model.io.speech_wav import SpeechWav
from whisper_model.longform import TranscriptionInfo
from whisper_model.scheduler import Failed, Finished, Segments, Started

try:
    from ._reference import clear, pipeline, samples
except ImportError:
    from _reference import clear, pipeline, samples

SR = SAMPLE_RATE
OPTIONS = [V.CHUNKING, V.FILTERING, V.VadOptions(threshold=0.6, speech_pad_ms=30, max_speech_duration_s=4),
           V.VadOptions(speech_pad_ms=0, min_speech_duration_ms=0, neg_threshold=0.5, max_speech_duration_s=2),
           V.VadOptions(speech_pad_ms=1000, min_silence_duration_ms=500, min_silence_at_max_speech_ms=0),
           V.VadOptions(speech_pad_ms=10, min_silence_duration_ms=0, min_speech_duration_ms=0)]


def teardown_module():
    clear()


def joined(*parts) -> np.ndarray:
    """Shared clips (names) and seconds of silence (numbers), end to end."""
    return np.concatenate([np.zeros(int(p * SR), np.float32) if isinstance(p, (int, float)) else samples(p)
                           for p in parts]).astype(np.float32)


def random_probabilities(rng, n: int) -> list[float]:
    """Runs of speech and silence of random lengths (1 frame to 40 s), with noise across the thresholds."""
    out = []
    while len(out) < n:
        level = rng.choice([0.05, 0.3, 0.45, 0.55, 0.9])
        out += np.clip(level + rng.normal(0, 0.1, int(rng.integers(1, 1250 if rng.random() < 0.1 else 60))),
                       0, 1).tolist()
    return out[:n]


def silero_regions(probabilities: list[float], options: V.VadOptions, n: int) -> list[tuple[int, int]]:
    from silero_vad import get_speech_timestamps_from_probs

    found = get_speech_timestamps_from_probs(
        probabilities, sampling_rate=SR, threshold=options.threshold, neg_threshold=options.neg_threshold,
        min_speech_duration_ms=options.min_speech_duration_ms, min_silence_duration_ms=options.min_silence_duration_ms,
        speech_pad_ms=options.speech_pad_ms, max_speech_duration_s=options.max_speech_duration_s,
        min_silence_at_max_speech=options.min_silence_at_max_speech_ms, audio_length_samples=n)
    return [(int(r["start"]), int(r["end"])) for r in found if r["end"] > r["start"]]


def test_regions_found_frame_by_frame_equal_silero_on_any_probabilities():
    """RegionFinder, fed one probability at a time, gives silero's get_speech_timestamps_from_probs regions (its
    state machine and padding pass), whatever the options, also with regions cut at the longest speech."""
    V.vad_model()  # silero's import, the thread count kept
    rng = np.random.default_rng(0)
    cut = 0
    for trial in range(60):
        n_frames = int(rng.integers(0, 6000))
        probabilities = random_probabilities(rng, n_frames)
        n = max(0, n_frames * 512 - int(rng.integers(0, 512)))
        for options in OPTIONS:
            finder = RegionFinder(options)
            found = [r for p in probabilities for r in finder.step(p)] + finder.finish(n)
            assert found == silero_regions(probabilities, options, n), (trial, options)
            cut += any(e - s >= options.max_speech_duration_s * SR - 2 * options.speech_pad_ms * 16 - 512
                       for s, e in found)
    assert cut > 10  # the longest-speech cut was exercised


def reference_plan(regions, n_samples, max_samples=N_SAMPLES):
    """io.vad.plan_chunks before it went through ChunkPlanner (the whole list of regions at once)."""
    if not regions:
        return []
    if n_samples <= max_samples:
        return [(0, n_samples)]
    chunks = []
    for start, end in regions:
        if chunks and end - chunks[-1][0] <= max_samples:
            chunks[-1] = (chunks[-1][0], end)
            continue
        parts = -(-(end - start) // max_samples)
        cuts = [start + (end - start) * i // parts for i in range(parts + 1)]
        chunks += list(zip(cuts[:-1], cuts[1:]))
    aligned = []
    for start, end in chunks:
        start = start // HOP_LENGTH * HOP_LENGTH
        end = min(n_samples, -(-end // HOP_LENGTH) * HOP_LENGTH, start + max_samples // HOP_LENGTH * HOP_LENGTH)
        if aligned and start < aligned[-1][1]:
            start = aligned[-1][1]
        aligned.append((start, end))
    return aligned


def test_chunks_planned_region_by_region_equal_the_whole_plan():
    """ChunkPlanner given regions one at a time, taking what is final after each (the audio read up to the next
    region's start), plans what the whole list planned: chunks given out early are the same chunks."""
    rng = np.random.default_rng(1)
    early = 0
    for trial in range(300):
        regions, at = [], int(rng.integers(0, 5 * SR))
        for _ in range(int(rng.integers(0, 40))):
            start = at + int(rng.integers(0, 40 * SR if rng.random() < 0.2 else 2 * SR))
            at = start + int(rng.integers(1, 70 * SR if rng.random() < 0.1 else 12 * SR))
            regions.append((start, at))
        n = at + int(rng.integers(0, 3 * SR)) if regions or rng.random() < 0.5 else int(rng.integers(0, 60 * SR))
        planner, got = ChunkPlanner(), []
        for i, region in enumerate(regions):
            planner.add(region)
            following = regions[i + 1][0] if i + 1 < len(regions) else n
            got += planner.take(following, following)
        early += len(got)
        got += planner.finish(n)
        assert got == reference_plan(regions, n), trial
    assert early > 100  # chunks were given out before the end


def test_a_file_read_in_blocks_has_the_chunks_of_the_whole_array():
    """Clips joined with pauses (3 min), read in blocks of 10 s (as files are read), 30 s or odd sizes: every chunk and
    its samples equal io.vad's whole-array plan; Silero's probabilities in blocks equal the whole array's within
    rounding; the samples kept stay at about two chunks and a block."""
    audio = joined("en_lecture_60s.wav", 0.3, "en_jfk.wav", 2.0, "en_librivox_0870.wav", 0.7, "en_f5_ref.wav", 5.0,
                   "en_librivox_0880.wav", 0.2, "en_bobby.wav", 1.0, "en_lecture_60s.wav", 3.0)
    whole = V.speech_probabilities(audio)
    chunks = V.plan_chunks(V.speech_regions(audio, V.CHUNKING, whole), len(audio))
    assert len(chunks) >= 6
    for block in (READ_BLOCK, N_SAMPLES, 7777):
        stream, chunker, got, probabilities = SileroStream(), SpeechChunker(V.CHUNKING), [], []
        for start in range(0, len(audio), block):
            probabilities.append(stream.feed(audio[start:start + block]))
            got += chunker.feed(audio[start:start + block])
        got += chunker.finish()
        streamed = torch.cat(probabilities + [stream.flush()])
        assert streamed.shape == whole.shape and (streamed - whole).abs().max() < 1e-6, block
        assert [(s, e) for s, e, _ in got] == chunks, block
        assert all(np.array_equal(x, audio[s:e]) for s, e, x in got)
        assert chunker.peak <= 3 * N_SAMPLES + block, (block, chunker.peak / SR)


def write_wav(path, audio: np.ndarray) -> None:
    with wave.open(str(path), "wb") as f:
        f.setnchannels(1)
        f.setsampwidth(2)
        f.setframerate(SR)
        f.writeframes((np.clip(audio, -1, 1) * 32767).astype("<i2").tobytes())


class HoldingScheduler:
    """The scheduler's add / events / cancel without decoding: it holds each stream's samples until the round after
    it is added (``batch_size`` a round), as ``Scheduler`` holds a queued stream's audio; ``peak``: the most
    samples held at once. A file object (the speech filter's WAV) is read block by block, as the scheduler's
    log-mel reads it. It has no live streams (``due``)."""

    due = False

    def __init__(self, batch_size: int):
        self.batch_size, self.queue, self.peak, self.added = batch_size, [], 0, []

    def add(self, audio, *, options, language, initial_prompt, stream_id, min_window_s=None):
        if hasattr(audio, "read"):
            n, audio = sum(len(block) for block in iter_audio(audio, block=READ_BLOCK)), np.zeros(0, np.float32)
        else:
            n = len(audio)
        self.queue.append((stream_id, audio, TranscriptionInfo("en", 1.0, n / SR, None, options)))
        self.added.append(stream_id)
        self.peak = max(self.peak, sum(len(a) for _, a, _ in self.queue))

    def cancel(self, stream_id) -> bool:
        return False

    def events(self):
        while self.queue:
            batch, self.queue = self.queue[:self.batch_size], self.queue[self.batch_size:]
            for stream_id, audio, info in batch:
                yield Started(stream_id, info)
                yield Segments(stream_id, [], info.duration)
                yield Finished(stream_id, info)


def write_long_wav(path, piece: np.ndarray, times: int) -> int:
    """``piece`` and 1 to 3 s of silence, ``times`` over, written as they go; returns the samples written."""
    n = 0
    with wave.open(str(path), "wb") as f:
        f.setnchannels(1)
        f.setsampwidth(2)
        f.setframerate(SR)
        for k in range(times):
            part = np.concatenate([piece, np.zeros(SR * (1 + k % 3), np.float32)])
            f.writeframes((np.clip(part, -1, 1) * 32767).astype("<i2").tobytes())
            n += len(part)
    return n


def peak_memory(scheduler) -> tuple[list, int]:
    """The scheduler's events, and the most memory Python held meanwhile (tracemalloc: numpy's arrays included)."""
    tracemalloc.start()
    try:
        events = list(scheduler.events())
        return events, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


@pytest.mark.parametrize("path", ["vad", "filter"])
def test_a_long_file_is_read_in_bounded_memory(tmp_path, path):
    """20 min of speech (a 60 s lecture over and over, with pauses) in a wav, chunking="vad" or vad_filter=True:
    the most memory Python holds while the file is read, its speech found and handed over (the reader's blocks,
    the chunker's samples, the chunks the scheduler holds: two batches at most) is a small part of the file's
    samples; loading the file whole would hold all of them at once. The speech filter hands over a WAV."""
    n = write_long_wav(tmp_path / "long.wav", samples("en_lecture_60s.wav"), 20)
    kwargs = dict(chunking="vad") if path == "vad" else dict(vad_filter=True)
    scheduler = pipeline("tiny.en").scheduler(batch_size=2, **kwargs)
    scheduler.scheduler = holding = HoldingScheduler(2)
    scheduler.add(str(tmp_path / "long.wav"), stream_id="long")
    events, peak = peak_memory(scheduler)
    assert isinstance(events[-1], Finished) and events[-1].info.duration == pytest.approx(n / SR, abs=0.01)
    assert peak < 4 * n / 4, (peak / 2 ** 20, 4 * n / 2 ** 20)
    if path == "filter":
        assert holding.added == [("long", 0)] and events[-1].info.duration_after_vad > 0.8 * n / SR
        return
    assert [type(e) for e in events[:2]] == [Started, Segments]
    chunks = len(holding.added)
    assert chunks >= 40 and holding.added == [("long", k) for k in range(chunks)]
    assert holding.peak <= 2 * 2 * N_SAMPLES  # two batches of chunks of at most 30 s
    assert scheduler.paths["vad"].peak_held <= 3 * N_SAMPLES + 2 * READ_BLOCK


def test_the_speech_filter_of_a_file_equals_that_of_its_samples(tmp_path):
    """vad_filter=True on a wav (read in blocks, the speech handed over as a WAV) and on its samples (joined in
    memory): the same segments, tokens and info; a silent file has none either way."""
    model = pipeline("tiny.en")
    for name, audio in (("speech", joined("en_jfk.wav", 3.0, "en_librivox_0870.wav", 0.5, "en_jfk.wav", 4.0)),
                        ("silence", np.zeros(5 * SR, np.float32))):
        write_wav(tmp_path / f"{name}.wav", audio)
        results = []
        for source in (str(tmp_path / f"{name}.wav"), load_audio(tmp_path / f"{name}.wav")):
            segments, info = model.transcribe(source, vad_filter=True)
            results.append(([(s.seek, s.start, s.end, s.text, s.tokens) for s in segments], info))
        assert results[0] == results[1], name
        assert bool(results[0][0]) == (name == "speech") and results[0][1].duration_after_vad < results[0][1].duration


def test_an_unreadable_or_truncated_file_fails_before_any_output(tmp_path):
    """A file that is not audio, and a wav cut in the middle (found only at its end): Failed with an AudioError,
    no Started or Segments of it; the next file goes on."""
    (tmp_path / "junk.wav").write_bytes(b"RIFF not really a wav" * 100)
    write_wav(tmp_path / "full.wav", joined("en_jfk.wav", 30.0, "en_jfk.wav"))
    data = (tmp_path / "full.wav").read_bytes()
    (tmp_path / "cut.wav").write_bytes(data[:len(data) * 2 // 3])
    scheduler = pipeline("tiny.en").scheduler(batch_size=2, chunking="vad")
    scheduler.scheduler = HoldingScheduler(2)
    for name in ("junk", "cut", "full"):
        scheduler.add(str(tmp_path / f"{name}.wav"), stream_id=name)
    events = list(scheduler.events())
    for name in ("junk", "cut"):
        mine = [e for e in events if e.stream_id == name]
        assert len(mine) == 1 and isinstance(mine[0], Failed) and isinstance(mine[0].error, AudioError), mine
        assert f"{name}.wav" in str(mine[0].error)
    full = [type(e) for e in events if e.stream_id == "full"]
    assert full[0] is Started and full[-1] is Finished and full.count(Segments) == 2


def test_the_spool_gives_back_what_it_was_given():
    spool, rng = SampleSpool(), np.random.default_rng(2)
    pieces = [rng.standard_normal(int(n)).astype(np.float32) for n in (0, 1, 480000, 7, 160)]
    assert [spool.append(p) for p in pieces] == list(range(5)) and len(spool) == 5
    for k in (2, 0, 4, 1, 3, 2):
        assert np.array_equal(spool.read(k), pieces[k])
    spool.close()
    with pytest.raises(IndexError):
        spool.read(0)


def test_the_speech_wav_decodes_back_to_the_same_samples():
    """SpeechWav: decoded samples (int16 / 32768) written in blocks, regions joined as a WAV that io.audio decodes
    to exactly those samples end to end; samples that are not decoded 16-bit ones are refused."""
    rng = np.random.default_rng(3)
    audio = (rng.integers(-32768, 32768, 5 * SR) / 32768).astype(np.float32)
    wav = SpeechWav()
    for start in range(0, len(audio), 7777):
        wav.write(audio[start:start + 7777])
    regions = [(0, 100), (1000, 1000 + 12 * SR // 5), (3 * SR, 5 * SR)]
    with wav.joined(regions) as joined_wav:
        assert np.array_equal(load_audio(joined_wav), np.concatenate([audio[s:e] for s, e in regions]))
    with wav.joined([]) as empty:
        assert load_audio(empty).shape == (0,)
    wav.close()
    with pytest.raises(ValueError, match="16-bit"):
        SpeechWav().write(np.array([0.1234567], np.float32))
