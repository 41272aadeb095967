"""What fuzzing found in ``load_audio`` (issue 9, item 6), kept as cases: each corrupt header gets one clear
``AudioDecodeError`` naming the file (not a UnicodeDecodeError, an av.error.ArgumentError / MemoryError from the
resampler, or minutes of resampling a header's absurd sample rate)."""
from __future__ import annotations

import struct

import numpy as np
import pytest

from _seeds import AUDIO_DIR
from whisper_model.io import audio
from whisper_model.io.audio import AudioDecodeError, load_audio

JFK = AUDIO_DIR / "en_jfk.wav"  # 16 kHz mono 16-bit; fmt fields: channels at byte 22, sample rate at 24


@pytest.fixture(scope="module")
def wav() -> bytes:
    if not JFK.is_file():
        pytest.skip(f"{JFK} is absent")
    return JFK.read_bytes()


def _with(data: bytes, offset: int, fmt: str, value: int) -> bytes:
    out = bytearray(data)
    struct.pack_into(fmt, out, offset, value)
    return bytes(out)


@pytest.mark.parametrize("rate", [1, 999, 553_672_128, 1_845_501_760])
def test_implausible_sample_rate_is_refused_before_decoding(wav, rate, tmp_path, monkeypatch):
    """Refused from the header alone: not a packet decoded or resampled (553 MHz took 13 s of resampling before)."""
    decoded = []
    monkeypatch.setattr(audio, "_decode_resampled", lambda *args: decoded.append(args) or iter(()))
    path = tmp_path / "rate.wav"
    path.write_bytes(_with(wav, 24, "<I", rate))
    with pytest.raises(AudioDecodeError, match=rf"rate\.wav'?: implausible sample rate {rate} Hz \(expected 1000\."):
        load_audio(path)
    assert decoded == []


def test_a_plausible_sample_rate_is_decoded_through_the_watched_step(wav, monkeypatch):
    """The step the test above watches is the one that decodes: were it renamed, that test would pass for nothing."""
    decoded = []
    real = audio._decode_resampled
    monkeypatch.setattr(audio, "_decode_resampled", lambda *args: decoded.append(args) or real(*args))
    assert len(load_audio(wav)) > 0 and len(decoded) == 1


@pytest.mark.parametrize("channels", [64, 200])
def test_channel_count_the_resampler_refuses(wav, channels):
    with pytest.raises(AudioDecodeError, match=r"bytes in memory>: cannot convert its audio \(pcm_s16le, 16000 Hz\) "
                                               r"to 16000 Hz mono: Invalid argument"):
        load_audio(_with(wav, 22, "<H", channels))


@pytest.mark.parametrize("channels", [0, 65535])
def test_audio_stream_that_cannot_be_decoded(wav, channels):
    with pytest.raises(AudioDecodeError, match=r"has no audio stream that can be decoded \(a corrupt header\?\)"):
        load_audio(_with(wav, 22, "<H", channels))


def test_metadata_that_is_not_utf8_still_loads(wav):
    """A LIST/INFO tag with a byte that is not UTF-8 (PyAV raised UnicodeDecodeError opening the file)."""
    info = b"INFO" + b"INAM" + struct.pack("<I", 8) + b"Lavf\xf745\x00"
    data = bytearray(wav[:36] + b"LIST" + struct.pack("<I", len(info)) + info + wav[36:])
    struct.pack_into("<I", data, 4, len(data) - 8)
    samples = load_audio(bytes(data))
    assert np.array_equal(samples, load_audio(wav))
