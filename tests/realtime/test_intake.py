"""PCM16 intake: appends of any size resample to exactly what one piece does; a sine keeps its frequency."""
from __future__ import annotations

import numpy as np
import pytest

from whisper_model.errors import AudioError
from whisper_model.realtime.intake import PcmIntake, pcm16_to_float

RNG = np.random.default_rng(27)


def pcm(samples: np.ndarray) -> bytes:
    return np.clip(np.round(samples * 32767), -32768, 32767).astype("<i2").tobytes()


def through(intake: PcmIntake, data: bytes, cuts) -> np.ndarray:
    edges = [0, *cuts, len(data)]
    pieces = [intake.append(data[a:b]) for a, b in zip(edges[:-1], edges[1:])]
    return np.concatenate(pieces + [intake.flush()])


NOISE = pcm(RNG.standard_normal(24000 * 2) * 0.2)
SPLITS = [[], [2], [2, 4, 6, 1000], list(range(0, len(NOISE), 962)), sorted(set(
    (2 * RNG.integers(1, len(NOISE) // 2, 40)).tolist()))]


@pytest.mark.parametrize("cuts", SPLITS, ids=lambda c: f"{len(c)}cuts")
def test_appends_equal_one_piece(cuts):
    whole = through(PcmIntake(24000), NOISE, [])
    assert whole.dtype == np.float32 and len(whole) == len(NOISE) // 2 * 2 // 3
    chunked = through(PcmIntake(24000), NOISE, cuts)
    assert chunked.shape == whole.shape
    assert np.abs(chunked - whole).max() == 0.0  # measured: libswresample's state carries over exactly


def test_a_sine_keeps_its_frequency_and_level():
    for hz in (440.0, 1000.0, 3000.0):
        t = np.arange(24000 * 2) / 24000
        out = through(PcmIntake(24000), pcm(0.5 * np.sin(2 * np.pi * hz * t)), list(range(0, 96000, 4802)))
        assert len(out) == 32000
        middle = out[4000:-4000]  # away from the filter's edges
        spectrum = np.abs(np.fft.rfft(middle * np.hanning(len(middle))))
        peak = np.argmax(spectrum) * 16000 / len(middle)
        assert abs(peak - hz) < 16000 / len(middle), (hz, peak)
        assert abs(np.sqrt(np.mean(middle ** 2)) - 0.5 / np.sqrt(2)) < 0.01
        expected = 0.5 * np.sin(2 * np.pi * hz * np.arange(32000) / 16000)
        assert np.abs(out[4000:-4000] - expected[4000:-4000]).max() < 0.01  # in phase: no delay added


def test_16_khz_is_converted_only():
    data = NOISE[:3200]
    intake = PcmIntake(16000)
    out = np.concatenate([intake.append(data[:1000]), intake.append(data[1000:]), intake.flush()])
    np.testing.assert_array_equal(out, np.frombuffer(data, "<i2") / np.float32(32768))
    assert intake.samples_in == 1600


def test_flush_ends_a_piece_and_clear_drops_it():
    intake = PcmIntake(24000)
    first = through(intake, NOISE[:4800], [])
    second = through(intake, NOISE[:4800], [])
    np.testing.assert_array_equal(first, second)  # each commit's piece starts afresh
    intake.append(NOISE[:4800])
    intake.clear()
    np.testing.assert_array_equal(through(intake, NOISE[:4800], []), first)


def test_odd_bytes_and_rates_are_refused():
    with pytest.raises(AudioError, match="odd"):
        PcmIntake(24000).append(b"\x00\x01\x02")
    with pytest.raises(AudioError, match="odd"):
        pcm16_to_float(b"\x00")
    with pytest.raises(AudioError, match="44100"):
        PcmIntake(44100)
