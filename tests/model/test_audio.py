"""whisper_model.io.audio against openai-whisper (reference only) and independent checks."""
from __future__ import annotations

import fractions
import wave
from math import gcd
from pathlib import Path

import numpy as np
import pytest
import torch
from parameterized import parameterized

from whisper_model.io import audio as A
from whisper_model.io.audio import AudioDecodeError, load_audio

from _requires import openai_whisper

try:
    from ._paths import AUDIO_DIR, MISSING, NO_SHARED, clips, manifest, whisper_assets
except ImportError:
    from _paths import AUDIO_DIR, MISSING, NO_SHARED, clips, manifest, whisper_assets

CLIPS = clips()


def _rate(name: str) -> int:
    with wave.open(str(AUDIO_DIR / name)) as w:
        return w.getframerate()


RESAMPLED = [c for c in clips((".wav",)) if c != MISSING and _rate(c) != 16000] or [MISSING]


def _clip(name: str) -> Path:
    if name == MISSING:
        pytest.skip(NO_SHARED)
    return AUDIO_DIR / name


def _read_wav(path) -> tuple[np.ndarray, int, int]:
    """Stdlib reader: (int16 samples [n, channels], sample rate, channels)."""
    with wave.open(str(path)) as w:
        assert w.getsampwidth() == 2, f"{path}: test expects 16-bit PCM"
        data = np.frombuffer(w.readframes(w.getnframes()), "<i2")
        return data.reshape(-1, w.getnchannels()), w.getframerate(), w.getnchannels()


def _write_wav(path, samples: np.ndarray, sr: int) -> Path:
    """samples: int16 [n, channels]."""
    with wave.open(str(path), "wb") as w:
        w.setnchannels(samples.shape[1])
        w.setsampwidth(2)
        w.setframerate(sr)
        w.writeframes(np.ascontiguousarray(samples, "<i2").tobytes())
    return Path(path)


def _whisper():
    return openai_whisper()


def test_constants():
    assert (A.SAMPLE_RATE, A.N_FFT, A.HOP_LENGTH, A.CHUNK_LENGTH) == (16000, 400, 160, 30)
    assert (A.N_SAMPLES, A.N_FRAMES, A.N_SAMPLES_PER_TOKEN) == (480000, 3000, 320)
    assert (A.FRAMES_PER_SECOND, A.TOKENS_PER_SECOND) == (100, 50)


@parameterized.expand([(80,), (128,)])
def test_mel_filters_equal_openai_npz(n_mels):
    assets = whisper_assets()
    if assets is None:
        pytest.skip("openai-whisper assets/mel_filters.npz not found")
    with np.load(assets / "mel_filters.npz") as npz:
        ref = npz[f"mel_{n_mels}"]
    ours = A.mel_filters(n_mels, "cpu")
    assert ours.dtype == torch.float32 and tuple(ours.shape) == ref.shape == (n_mels, 201)
    np.testing.assert_allclose(ours.numpy(), ref, rtol=0, atol=1e-6)


@parameterized.expand([(c,) for c in CLIPS])
def test_log_mel_matches_openai(name):
    whisper = _whisper()
    samples = load_audio(_clip(name))
    for n_mels in (80, 128):
        for padding in (0, A.N_SAMPLES):
            ref = whisper.log_mel_spectrogram(samples, n_mels, padding=padding)
            ours = A.log_mel_spectrogram(samples, n_mels, padding=padding)
            assert ours.shape == ref.shape == (n_mels, (samples.size + padding) // 160)
            diff = (ours - ref).abs().max().item()
            assert diff < 1e-4, f"{name} n_mels={n_mels} padding={padding}: max |diff| {diff}"


@parameterized.expand([(c,) for c in CLIPS])
def test_load_audio_length_and_content(name):
    path = _clip(name)
    audio = load_audio(path)
    assert audio.dtype == np.float32 and audio.ndim == 1
    assert np.abs(audio).max() > 0.05 and np.sqrt(np.mean(audio ** 2)) > 1e-3, "silent output"
    if path.suffix == ".wav":
        pcm, sr, _ = _read_wav(path)
        expected, tol = pcm.shape[0] * 16000 / sr, 2
        if sr == 16000 and pcm.shape[1] == 1:  # no conversion: must be int16 / 32768 exactly
            np.testing.assert_array_equal(audio, pcm[:, 0].astype(np.float32) / 32768.0)
    else:  # compressed: compare with the manifest, or with the same-named .wav
        row = manifest().get(name, {})
        twin = path.with_suffix(".wav")
        if row.get("seconds"):
            expected = float(row["seconds"]) * 16000
        elif twin.is_file():
            expected = _read_wav(twin)[0].shape[0] * 16000 / _read_wav(twin)[1]
        else:
            pytest.skip(f"no reference duration for {name}")
        tol = 16
    assert abs(audio.size - expected) <= tol, f"{name}: {audio.size} samples, expected ~{expected}"


@parameterized.expand([(c,) for c in RESAMPLED])
def test_resampling_matches_ideal_bandlimited(name):
    """Independent check of rate conversion: no delay, no gain change (FFT resampling)."""
    pcm, sr, channels = _read_wav(_clip(name))
    assert channels == 1, f"{name}: test expects mono"
    q = sr // gcd(sr, 16000)
    x = pcm[: pcm.shape[0] // q * q, 0] / 32768.0
    m = x.size * 16000 // sr
    spec = np.zeros(m // 2 + 1, complex)
    k = min(spec.size, x.size // 2 + 1)
    spec[:k] = np.fft.rfft(x)[:k]
    ideal = np.fft.irfft(spec, m) * m / x.size
    ours = load_audio(AUDIO_DIR / name)[:m]
    corr = np.corrcoef(ours[100:-100], ideal[100:-100])[0, 1]
    assert corr > 0.999, f"{name}: correlation with ideal resampling {corr}"


def test_mp3_matches_its_wav():
    mp3, wav = AUDIO_DIR / "en_jfk.mp3", AUDIO_DIR / "en_jfk.wav"
    if not (mp3.is_file() and wav.is_file()):
        pytest.skip(NO_SHARED)
    a, b = load_audio(mp3), load_audio(wav)
    n = min(a.size, b.size)
    assert np.corrcoef(a[:n], b[:n])[0, 1] > 0.999  # gapless: encoder delay is removed


def test_stereo_downmix_is_mean_like_ffmpeg_ac1(tmp_path):
    """ffmpeg -ac 1 with s16 output mixes stereo as 0.5*(L+R) (not 0.707*(L+R))."""
    x = (np.sin(np.arange(16000) * 0.05) * 12000).astype(np.int16)
    both = load_audio(_write_wav(tmp_path / "lr.wav", np.stack([x, x], 1), 16000))
    left = load_audio(_write_wav(tmp_path / "l.wav", np.stack([x, 0 * x], 1), 16000))
    np.testing.assert_allclose(both, x / 32768.0, atol=1.5 / 32768)
    np.testing.assert_allclose(left, x / 65536.0, atol=1.5 / 32768)


def test_sources_path_bytes_fileobj_agree(tmp_path):
    x = (np.random.default_rng(0).standard_normal(24000) * 3000).astype(np.int16)[:, None]
    path = _write_wav(tmp_path / "n.wav", x, 24000)
    ref = load_audio(path)
    assert ref.size == 16000
    np.testing.assert_array_equal(load_audio(str(path)), ref)
    np.testing.assert_array_equal(load_audio(path.read_bytes()), ref)
    with open(path, "rb") as f:
        np.testing.assert_array_equal(load_audio(f), ref)
    assert load_audio(path, sr=8000).size == 8000


def _encode(path, codec, rate=44100, seconds=1.5, video=False, audio=True):
    """Write a stereo test file with PyAV: L = 0.5 sin(440 Hz), R = 0.25 sin(660 Hz)."""
    import av
    t = np.arange(int(rate * seconds)) / rate
    sig = np.stack([0.5 * np.sin(2 * np.pi * 440 * t), 0.25 * np.sin(2 * np.pi * 660 * t)])
    scale = {"s16": 32767, "s32": 2 ** 31 - 1, "flt": 1.0, "dbl": 1.0}
    dtype = {"s16": np.int16, "s32": np.int32, "flt": np.float32, "dbl": np.float64}
    with av.open(str(path), "w") as c:
        if video:
            vs = c.add_stream("mpeg4", rate=10)
            vs.width, vs.height, vs.pix_fmt = 64, 48, "yuv420p"
        if audio:
            s = c.add_stream(codec, rate=rate)
            s.layout = "stereo"
            fmt = s.codec_context.format.name
            base = fmt.rstrip("p")
            step = s.codec_context.frame_size or 1024
            for i in range(0, sig.shape[1], step):
                chunk = (sig[:, i:i + step] * scale[base]).astype(dtype[base])
                arr = chunk if fmt.endswith("p") else chunk.T.reshape(1, -1)
                frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(arr), format=fmt,
                                                   layout="stereo")
                frame.sample_rate, frame.pts = rate, i
                frame.time_base = fractions.Fraction(1, rate)
                for p in s.encode(frame):
                    c.mux(p)
            for p in s.encode(None):
                c.mux(p)
        if video:
            for i in range(int(10 * seconds)):
                f = av.VideoFrame.from_ndarray(np.zeros((48, 64, 3), np.uint8), format="rgb24")
                f.pts = i
                for p in vs.encode(f):
                    c.mux(p)
            for p in vs.encode(None):
                c.mux(p)
    return path


@parameterized.expand([
    ("flac", "a.flac", "flac", 44100, False), ("mp3", "a.mp3", "libmp3lame", 44100, False),
    ("m4a_aac", "a.m4a", "aac", 44100, False), ("ogg_opus", "a.ogg", "libopus", 48000, False),
    ("webm_opus", "a.webm", "libopus", 48000, False), ("mp4_video", "v.mp4", "aac", 44100, True),
    ("mkv_video", "v.mkv", "libopus", 48000, True),
])
def test_containers_and_codecs(_, fname, codec, rate, video):
    import tempfile

    import av
    if codec not in av.codecs_available:
        pytest.skip(f"PyAV build lacks encoder {codec}")
    with tempfile.TemporaryDirectory() as tmp:
        audio = load_audio(_encode(Path(tmp) / fname, codec, rate, video=video))
    # 1.5 s; lossy codecs may keep up to ~2 frames of encoder priming
    assert abs(audio.size - 24000) <= (0 if codec == "flac" else 1100), audio.size
    peak = np.abs(audio[4000:20000]).max()  # mono = 0.25 sin + 0.125 sin -> peak ~0.36
    assert 0.3 < peak < 0.42, f"{fname}: downmix peak {peak}"


def test_video_without_audio_stream(tmp_path):
    import av
    if "mpeg4" not in av.codecs_available:
        pytest.skip("PyAV build lacks the mpeg4 encoder")
    path = _encode(tmp_path / "silent.mp4", None, video=True, audio=False)
    with pytest.raises(AudioDecodeError, match="no audio stream"):
        load_audio(path)


def test_missing_file():
    with pytest.raises(FileNotFoundError, match="does_not_exist.wav"):
        load_audio("/nonexistent/does_not_exist.wav")


def test_directory():
    with pytest.raises(IsADirectoryError):
        load_audio(Path(__file__).parent)


def test_text_file_renamed_wav(tmp_path):
    path = tmp_path / "notes.wav"
    path.write_text("this is not audio\n" * 50)
    with pytest.raises(AudioDecodeError, match="notes.wav"):
        load_audio(path)


def test_empty_file(tmp_path):
    (tmp_path / "empty.wav").write_bytes(b"")
    with pytest.raises(AudioDecodeError, match="empty"):
        load_audio(tmp_path / "empty.wav")
    with pytest.raises(AudioDecodeError, match="empty"):
        load_audio(b"")


@parameterized.expand([(c,) for c in CLIPS])
def test_truncated_first_100_bytes(name):
    import tempfile
    data = _clip(name).read_bytes()[:100]
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"cut_{name}"
        path.write_bytes(data)
        with pytest.raises(AudioDecodeError, match=f"cut_{name}"):
            load_audio(path)


def test_truncated_half_wav_allow_truncated(tmp_path):
    x = (np.sin(np.arange(32000) * 0.01) * 8000).astype(np.int16)[:, None]
    data = _write_wav(tmp_path / "full.wav", x, 16000).read_bytes()
    (tmp_path / "half.wav").write_bytes(data[: 44 + 32000])
    with pytest.raises(AudioDecodeError, match="truncated"):
        load_audio(tmp_path / "half.wav")
    part = load_audio(tmp_path / "half.wav", allow_truncated=True)
    np.testing.assert_array_equal(part, x[:16000, 0] / np.float32(32768))


def test_zero_length_wav_gives_empty_array(tmp_path):
    path = _write_wav(tmp_path / "zero.wav", np.zeros((0, 1), np.int16), 16000)
    out = load_audio(path)
    assert out.shape == (0,) and out.dtype == np.float32
    mel = A.log_mel_spectrogram(out, padding=A.N_SAMPLES)
    assert tuple(mel.shape) == (80, A.N_FRAMES)
    with pytest.raises(ValueError, match="padding"):
        A.log_mel_spectrogram(out)


def test_log_mel_inputs(tmp_path):
    x = (np.random.default_rng(1).standard_normal(20000) * 2000).astype(np.int16)[:, None]
    path = _write_wav(tmp_path / "r.wav", x, 16000)
    arr = load_audio(path)
    ref = A.log_mel_spectrogram(arr)
    torch.testing.assert_close(A.log_mel_spectrogram(str(path)), ref)
    torch.testing.assert_close(A.log_mel_spectrogram(torch.from_numpy(arr)), ref)
    torch.testing.assert_close(A.log_mel_spectrogram(arr.astype(np.float64)), ref)
    batch = A.log_mel_spectrogram(np.stack([arr, arr]), n_mels=128)
    assert tuple(batch.shape) == (2, 128, 125)


@parameterized.expand([
    ("np_pad", "np", (5, 100), 300, -1), ("np_trim", "np", (5, 100), 30, -1),
    ("np_axis0", "np", (100, 5), 150, 0), ("torch_pad", "torch", (5, 100), 300, -1),
    ("torch_trim", "torch", (5, 100), 30, 1), ("torch_axis0", "torch", (100, 5), 80, 0),
    ("torch_3d", "torch", (2, 100, 5), 120, 1),
])
def test_pad_or_trim_matches_openai(_, kind, shape, length, axis):
    whisper = _whisper()
    x = np.random.default_rng(2).standard_normal(shape).astype(np.float32)
    if kind == "torch":
        x = torch.from_numpy(x)
    ours, ref = A.pad_or_trim(x, length, axis=axis), whisper.pad_or_trim(x, length, axis=axis)
    assert type(ours) is type(ref) and tuple(ours.shape) == tuple(ref.shape)
    np.testing.assert_array_equal(np.asarray(ours), np.asarray(ref))
    assert A.pad_or_trim(np.zeros(10)).shape == (A.N_SAMPLES,)


def test_16khz_mono_s16_wav_is_read_exactly_without_the_resampler(tmp_path):
    """A WAV already at 16 kHz, 16-bit, mono skips libswresample (one Python call per 1024-sample frame costs more
    than decoding a long file): the samples are the file's int16 values / 32768, exactly, at every length."""
    rng = np.random.default_rng(0)
    for n in (0, 1, 1023, 1024, 1025, 16000 * 7 + 3):
        values = rng.integers(-32768, 32768, n, dtype=np.int16)
        path = tmp_path / f"s16_{n}.wav"
        with wave.open(str(path), "wb") as f:
            f.setnchannels(1)
            f.setsampwidth(2)
            f.setframerate(16000)
            f.writeframes(values.tobytes())
        loaded = load_audio(str(path))
        assert loaded.dtype == np.float32 and loaded.shape == (n,)
        assert np.array_equal(loaded, values.astype(np.float32) / 32768.0), n


@parameterized.expand([(c,) for c in CLIPS])
def test_iter_audio_blocks_join_to_load_audio(name):
    """``iter_audio`` decodes as it reads: blocks of the asked size (the last shorter) whose concatenation is
    exactly ``load_audio``'s samples, for every shared format and rate."""
    whole = load_audio(_clip(name))
    blocks = list(A.iter_audio(_clip(name), block=12345))
    assert all(b.dtype == np.float32 and b.size == 12345 for b in blocks[:-1]) and 0 < blocks[-1].size <= 12345
    np.testing.assert_array_equal(np.concatenate(blocks), whole)


def test_iter_audio_finds_truncation_after_the_last_block(tmp_path):
    x = (np.sin(np.arange(32000) * 0.01) * 8000).astype(np.int16)[:, None]
    data = _write_wav(tmp_path / "full.wav", x, 16000).read_bytes()
    (tmp_path / "half.wav").write_bytes(data[: 44 + 32000])
    blocks = A.iter_audio(tmp_path / "half.wav", block=4000)
    got = [next(blocks) for _ in range(4)]  # the decodable part comes first, block by block
    assert sum(b.size for b in got) == 16000
    with pytest.raises(AudioDecodeError, match="truncated"):
        next(blocks)



def _tone() -> np.ndarray:
    return (np.sin(np.arange(8000) / 9) * 8000).astype(np.int16)[:, None]


def _wav_with_latin1_tag(path) -> Path:
    """A 16 kHz mono s16 WAV whose LIST/INFO title is latin-1 bytes (not UTF-8), as old tools write them."""
    raw = _write_wav(path, _tone(), 16000).read_bytes()
    title = "Caf\xe9 m\xfcsli".encode("latin-1") + b"\0"
    info = b"INFO" + b"INAM" + len(title).to_bytes(4, "little") + title
    info += b"\0" * (len(info) % 2)
    data = raw[12:] + b"LIST" + len(info).to_bytes(4, "little") + info
    path.write_bytes(b"RIFF" + (len(data) + 4).to_bytes(4, "little") + b"WAVE" + data)
    return path


def _pyav_major(av) -> int:
    return int(av.__version__.split(".")[0])


def test_tags_that_are_not_utf8_are_no_error(tmp_path):
    import av

    path = _wav_with_latin1_tag(tmp_path / "latin1.wav")
    if _pyav_major(av) >= 19:  # the tag is read, byte exact, as surrogates
        with av.open(str(path)) as c:
            assert c.metadata["title"].encode("utf-8", "surrogateescape") == "Caf\xe9 m\xfcsli".encode("latin-1")
    else:  # the tag is there and is not UTF-8: strict decoding (the default before 19) fails on it
        with pytest.raises(UnicodeDecodeError), av.open(str(path)) as c:
            dict(c.metadata)
    np.testing.assert_array_equal(load_audio(path), _tone()[:, 0] / np.float32(32768))


@pytest.mark.parametrize("version", ["18.1.0", "19.0.2", "20.1.0"])
def test_open_input_speaks_each_pyav_api(tmp_path, monkeypatch, version):
    """PyAV 19 removed ``metadata_errors`` from ``av.open`` (TypeError when given); older releases need it for
    tags that are not UTF-8. The call made must be the one the installed release takes."""
    import av

    calls, real_open, installed = [], av.open, _pyav_major(av)

    def open_as(src, mode="r", **kwargs):  # av.open as release `version` declares it, opening with the real one
        calls.append(kwargs)
        if int(version.split(".")[0]) >= 19 and "metadata_errors" in kwargs:
            raise TypeError("open() got an unexpected keyword argument 'metadata_errors'")
        return real_open(src, mode=mode, **({"metadata_errors": "replace"} if installed < 19 else {}))

    monkeypatch.setattr(av, "__version__", version)
    monkeypatch.setattr(av, "open", open_as)
    assert load_audio(_wav_with_latin1_tag(tmp_path / "latin1.wav")).shape == (8000,)
    assert calls == [{} if version[:2] != "18" else {"metadata_errors": "replace"}]
