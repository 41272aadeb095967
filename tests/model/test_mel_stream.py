"""io/mel_stream.py: the log-mel computed block by block equals the whole-file computation in every window, at any
length and any block split; frames beyond a few windows go to an anonymous temporary file."""
import numpy as np
import pytest
import torch

from whisper_model.encoding import WhisperEncoding
from whisper_model.io.audio import N_FRAMES, N_SAMPLES, log_mel_spectrogram
from whisper_model.io.mel_stream import FrameStore, StreamedLogMel


def _blocks(samples, rng, small=False):
    """``samples`` cut at random places (some blocks empty or tiny)."""
    cuts = np.sort(rng.integers(0, samples.size + 1, size=12 if not small else 4))
    return [samples[a:b] for a, b in zip(np.r_[0, cuts], np.r_[cuts, samples.size])]


def _windows(mel, content_frames):
    starts = list(range(0, max(content_frames, 1), 1234)) + [max(content_frames - 17, 0)]
    return [(s, min(N_FRAMES, max(content_frames - s, 1))) for s in starts] + [(0, N_FRAMES)]


@pytest.mark.parametrize("n", [0, 1, 150, 200, 201, 401, 16000, N_SAMPLES - 7, 2 * N_SAMPLES + 12345])
@pytest.mark.parametrize("n_mels", [80, 128])
def test_every_window_equals_the_whole_file_computation(n, n_mels):
    rng = np.random.default_rng(n + n_mels)
    samples = (rng.standard_normal(n) * rng.uniform(0.001, 0.5)).astype(np.float32)
    whole = log_mel_spectrogram(samples, n_mels, padding=N_SAMPLES)
    streamed = StreamedLogMel(_blocks(samples, rng), n_mels, block_frames=997)
    assert streamed.content_frames == n // 160 and streamed.n_frames == whole.shape[1]
    for start, size in _windows(whole, streamed.content_frames):
        expected = WhisperEncoding.window(whole, start, size)
        got = streamed.window(start, size)
        assert got.shape == (n_mels, N_FRAMES) and got.dtype == torch.float32
        assert torch.allclose(got, expected, atol=1e-6, rtol=0), (start, size, (got - expected).abs().max())


def test_store_spills_to_an_anonymous_file_and_reads_ranges_back():
    rows = torch.arange(50 * 3, dtype=torch.float32).reshape(50, 3)
    store = FrameStore(3, memory_rows=8)
    for a in range(0, 50, 7):
        store.append(rows[a: a + 7])
    assert store.file is not None and store.rows == 50
    for start, stop in ((0, 8), (5, 12), (8, 9), (20, 50), (45, 60), (0, 50)):
        assert torch.equal(store.read(start, stop), rows[start: min(stop, 50)])
    store.close()
    assert store.file is None


def test_a_long_audio_keeps_memory_bounded():
    """Ten minutes in 30 s blocks: a few windows of frames in memory, the rest on disk, and the windows still
    right."""
    rng = np.random.default_rng(1)
    samples = (rng.standard_normal(600 * 16000) * 0.1).astype(np.float32)
    streamed = StreamedLogMel((samples[a: a + N_SAMPLES] for a in range(0, samples.size, N_SAMPLES)), 80)
    head = streamed.store.head
    assert head.numel() * head.element_size() <= 4 * N_FRAMES * 80 * 4 and streamed.store.file is not None
    whole = log_mel_spectrogram(samples, 80, padding=N_SAMPLES)
    for start in (0, 29000, 57000):
        assert torch.allclose(streamed.window(start), WhisperEncoding.window(whole, start), atol=1e-6, rtol=0)


@pytest.mark.gpu
def test_on_the_gpu_windows_stay_there_and_equal_the_whole_file():
    rng = np.random.default_rng(3)
    samples = (rng.standard_normal(5 * N_SAMPLES + 999) * 0.1).astype(np.float32)
    whole = log_mel_spectrogram(samples, 128, padding=N_SAMPLES, device="cuda")
    streamed = StreamedLogMel(_blocks(samples, rng), 128, device="cuda")
    for start, size in _windows(whole, streamed.content_frames):
        got = streamed.window(start, size)
        assert got.device.type == "cuda"
        assert torch.allclose(got, WhisperEncoding.window(whole, start, size), atol=1e-5, rtol=0)
