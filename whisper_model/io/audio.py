"""Audio front end: decoding (PyAV), padding and the log-Mel spectrogram Whisper's encoder reads.

Numerically this matches openai-whisper's ``whisper.audio``:

* ``load_audio`` yields what ``ffmpeg -ac 1 -ar 16000 -f s16le`` yields: PyAV runs the same
  libswresample conversion (through an ``aformat`` filter, as the ffmpeg CLI does) to packed
  signed 16-bit mono, then the samples are scaled by 1/32768. Asking the resampler for ``s16``
  (not ``flt``) matters: with integer output libswresample resamples 16-bit input in integer
  arithmetic and normalises the stereo->mono matrix to 0.5*(L+R), exactly like the CLI; with
  ``flt`` output the downmix would be 0.707*(L+R) and resampling would be done in float.
* ``mel_filters`` computes the Slaney mel filterbank (librosa's default: ``htk=False``,
  ``norm="slaney"``) instead of reading ``mel_filters.npz``.
* ``log_mel_spectrogram`` is the same STFT / log / clamp recipe.
"""
from __future__ import annotations

import io
import os
from functools import lru_cache
from typing import BinaryIO, Iterator, Union

import numpy as np
import torch
import torch.nn.functional as F

from .audio_headers import AudioDecodeError, check_not_truncated, declared_seconds, wav_data_sizes

SAMPLE_RATE = 16000
N_FFT = 400
HOP_LENGTH = 160
CHUNK_LENGTH = 30  # seconds of audio per encoder window
N_SAMPLES = CHUNK_LENGTH * SAMPLE_RATE  # 480000 samples in a 30 s chunk
N_FRAMES = N_SAMPLES // HOP_LENGTH  # 3000 mel frames in a 30 s chunk
N_SAMPLES_PER_TOKEN = HOP_LENGTH * 2  # the encoder's stride-2 convolution halves the frames
FRAMES_PER_SECOND = SAMPLE_RATE // HOP_LENGTH  # 100: 10 ms per mel frame
TOKENS_PER_SECOND = SAMPLE_RATE // N_SAMPLES_PER_TOKEN  # 50: 20 ms per audio token

AudioSource = Union[str, os.PathLike, bytes, bytearray, BinaryIO]
MIN_INPUT_RATE, MAX_INPUT_RATE = 1000, 1_000_000  # input sample rates outside are refused as a corrupt header


def _describe(src) -> str:
    if isinstance(src, (str, os.PathLike)):
        return repr(os.fspath(src))
    if isinstance(src, (bytes, bytearray)):
        return f"<{len(src)} bytes in memory>"
    name = getattr(src, "name", None)
    return repr(name) if isinstance(name, str) else f"<file object {type(src).__name__}>"


def load_audio(
    path_or_file: AudioSource, sr: int = SAMPLE_RATE, *, allow_truncated: bool = False
) -> np.ndarray:
    """Decode any audio (or the audio track of a video) to mono float32 at ``sr`` Hz.

    Args:
        path_or_file: a path, the file's bytes, or a readable binary file object. Any
            container/codec FFmpeg (bundled with PyAV) knows: wav, flac, mp3, m4a/aac,
            ogg/vorbis/opus, webm, mp4/mkv video, ... The "best" audio stream is used.
        sr: output sample rate (default 16 kHz, what Whisper expects).
        allow_truncated: when False (default) a file whose header promises more audio than
            is there (e.g. a cut-off download) raises ``AudioDecodeError``; when True the
            decodable part is returned, as the ffmpeg CLI would. Checked exactly for WAV
            (>1% of the data chunk missing) and, for FLAC/MP4/MKV/AIFF/CAF, when less than
            half the header's duration decodes; MP3/OGG have no such header and pass.

    Returns:
        np.ndarray float32, shape ``[n_samples]``, values in [-1, 1), i.e. int16 / 32768.
        A well-formed file holding no samples (e.g. a WAV with an empty data chunk) gives an
        empty array ``[0]``; callers pad it (see ``pad_or_trim``) as needed.

    Raises:
        FileNotFoundError: the path does not exist.
        AudioDecodeError (a ValueError): empty file, not a media file, no audio stream,
            undecodable data, or a truncated file (see ``allow_truncated``).
    """
    blocks = list(iter_audio(path_or_file, sr, allow_truncated=allow_truncated))
    return np.concatenate(blocks) if blocks else np.zeros(0, np.float32)


def iter_audio(path_or_file: AudioSource, sr: int = SAMPLE_RATE, *, allow_truncated: bool = False,
               block: int = N_SAMPLES) -> Iterator[np.ndarray]:
    """``load_audio``'s samples as they are decoded, ``block`` at a time (float32 [block], the last one shorter):
    memory bounded at any length. The same checks and errors as ``load_audio``; those that need the whole file
    (corrupt packets, truncation) are raised after the last block."""
    import av  # deferred: the rest of this module works without PyAV

    if not isinstance(sr, int) or sr <= 0:
        raise ValueError(f"load_audio: sr must be a positive int sample rate, got {sr!r}")
    what = _describe(path_or_file)
    src = _checked_source(path_or_file, what)
    wav_sizes = wav_data_sizes(src)
    facts: dict = {}
    pending, size, total = [], 0, 0
    for chunk in _decode_best_audio(av, src, what, sr, facts):
        pending.append(chunk)
        size += chunk.size
        while size >= block:
            joined = np.concatenate(pending)
            yield _scaled(joined[:block])
            pending, size = [joined[block:]], size - block
            total += block
    if size:
        yield _scaled(np.concatenate(pending))
        total += size
    n_errors, n_packets = facts["errors"], facts["packets"]
    if n_errors and (total == 0 or n_errors * 2 > n_packets):
        raise AudioDecodeError(f"{what}: audio data is corrupt ({n_errors} of {n_packets} "
                               f"packets failed to decode)")
    if not allow_truncated:
        check_not_truncated(what, total / sr, wav_sizes, facts["declared"])


def _scaled(samples: np.ndarray) -> np.ndarray:
    """int16 -> float32 / 32768 in one pass (2**-15: exact, as the division)."""
    out = np.empty(samples.shape, np.float32)
    return np.multiply(samples, np.float32(1 / 32768), out=out)


def _checked_source(path_or_file: AudioSource, what: str):
    """What ``av.open`` reads: a path (checked to exist, be a file, be non-empty), bytes wrapped
    in a BytesIO (checked non-empty) or the file object as given."""
    src = path_or_file
    if isinstance(src, (str, os.PathLike)):
        src = os.fspath(src)
        if not os.path.exists(src):
            raise FileNotFoundError(2, f"audio file not found: {src!r}", src)
        if os.path.isdir(src):
            raise IsADirectoryError(21, f"expected an audio file, got a directory: {src!r}", src)
        if os.path.getsize(src) == 0:
            raise AudioDecodeError(f"audio file {what} is empty (0 bytes)")
    elif isinstance(src, (bytes, bytearray)):
        if len(src) == 0:
            raise AudioDecodeError("audio data is empty (0 bytes)")
        src = io.BytesIO(bytes(src))
    return src


def open_input(av, src):
    """``av.open(src)`` for reading, where tags that are not UTF-8 are no error on any PyAV: before 19 that takes
    ``metadata_errors="replace"``; PyAV 19 dropped the keyword and always reads tags as UTF-8 with
    ``surrogateescape``."""
    if int(av.__version__.split(".")[0]) < 19:
        return av.open(src, mode="r", metadata_errors="replace")
    return av.open(src, mode="r")


def _decode_best_audio(av, src, what: str, sr: int, facts: dict) -> Iterator[np.ndarray]:
    """Open ``src`` and decode its best audio stream: its int16 chunks, in order; ``facts`` gets the header
    duration (s, or None: ``declared``), then the packets that failed to decode (``errors``) and those seen
    (``packets``)."""
    try:
        container = open_input(av, src)
    except av.error.FFmpegError as e:
        raise AudioDecodeError(f"cannot read {what} as audio/video (not a media file, or "
                               f"corrupt): {e}") from e
    with container:
        try:
            stream = container.streams.best("audio")
        except Exception:  # noqa: BLE001 - older PyAV raises instead of returning None
            stream = None
        if stream is None:
            kinds = sorted({s.type for s in container.streams}) or ["none"]
            raise AudioDecodeError(f"{what} has no audio stream " + ("that can be decoded (a corrupt header?)"
                                   if "audio" in kinds else f"(streams: {', '.join(kinds)})"))
        codec = stream.codec_context  # None when FFmpeg has no decoder for the codec
        if codec is None:
            raise AudioDecodeError(f"{what}: its audio codec cannot be decoded (FFmpeg has no decoder for it)")
        rate = codec.sample_rate
        if rate and not MIN_INPUT_RATE <= rate <= MAX_INPUT_RATE:  # a corrupt header: resampling would take ages
            raise AudioDecodeError(f"{what}: implausible sample rate {rate} Hz (expected "
                                   f"{MIN_INPUT_RATE}..{MAX_INPUT_RATE}); the header is corrupt")
        try:  # PyAV 19 offers streams whose decoder does not open (a WAV header claiming 65535 channels)
            codec.open(strict=False)
        except av.error.FFmpegError as e:
            raise AudioDecodeError(f"{what} has no audio stream that can be decoded (a corrupt header?): {e}") from e
        facts["declared"] = declared_seconds(container, stream)
        try:
            yield from _decode_resampled(av, container, stream, sr, facts)
        except av.error.FFmpegError as e:  # e.g. a channel layout or format the resampler refuses
            raise AudioDecodeError(f"{what}: cannot convert its audio ({codec.name}, {rate} Hz) "
                                   f"to {sr} Hz mono: {e}") from e


def _decode_resampled(av, container, stream, sr: int, facts: dict) -> Iterator[np.ndarray]:
    """Demux + decode ``stream``, convert to packed s16 mono at ``sr``.

    Yields int16 arrays as they are decoded; ``facts`` gets the number of packets that failed to decode
    (``errors``) and the packets seen (``packets``) at the end.
    Like the ffmpeg CLI, isolated undecodable packets are skipped. A change of input format
    mid-stream (sample rate / layout) starts a new resampler after flushing the old one.
    """
    chunks: list[np.ndarray] = []
    n_errors = n_packets = 0
    resampler, setup = None, None

    def push(frame):
        nonlocal resampler, setup
        if frame is not None:
            key = (frame.format.name, frame.layout.name, frame.sample_rate)
            if key != setup:
                if resampler is not None:
                    push(None)
                # packed s16 mono at sr already (a 16 kHz 16-bit mono WAV): libswresample would copy it as is, and
                # the Python calls per 1024-sample frame cost more than the decoding (1.5 s of an hour's WAV)
                same = key[0] == "s16" and frame.layout.nb_channels == 1 and key[2] == sr
                resampler = None if same else av.AudioResampler(format="s16", layout="mono", rate=sr)
                setup = key
            if resampler is None:
                chunks.append(np.frombuffer(frame.planes[0], np.int16, count=frame.samples).copy())
                return
        if resampler is None:
            return
        for out in resampler.resample(frame):
            chunks.append(out.to_ndarray().reshape(-1).copy())

    packets = container.demux(stream)
    while True:
        try:
            packet = next(packets)
        except StopIteration:
            break
        except av.error.FFmpegError:  # the demuxer hit garbage: keep what was decoded
            n_errors += 1
            for frame in _safe_flush(av, stream):
                push(frame)
            break
        n_packets += bool(packet.size)
        try:
            frames = packet.decode()  # the final empty packet flushes the decoder
        except av.error.FFmpegError:
            n_errors += 1
            continue
        for frame in frames:
            push(frame)
        yield from chunks
        chunks.clear()
    push(None)  # flush the resampler's buffered tail
    yield from chunks
    facts["errors"], facts["packets"] = n_errors, n_packets


def _safe_flush(av, stream) -> list:
    try:
        return stream.codec_context.decode(None)
    except av.error.FFmpegError:
        return []


def pad_or_trim(array, length: int = N_SAMPLES, *, axis: int = -1):
    """Zero-pad (at the end) or cut ``array`` to ``length`` along ``axis``.

    Works for np.ndarray and torch.Tensor alike; e.g. audio ``[n] -> [480000]`` or a mel
    ``[n_mels, n] -> [n_mels, 3000]`` with ``length=N_FRAMES``.
    """
    n = array.shape[axis]
    if torch.is_tensor(array):
        if n > length:
            array = array.narrow(axis, 0, length)
        elif n < length:
            dim = axis % array.ndim
            pads = [0, 0] * (array.ndim - 1 - dim) + [0, length - n]  # F.pad: last dim first
            array = F.pad(array, pads)
        return array
    array = np.asarray(array)
    if n > length:
        array = np.take(array, np.arange(length), axis=axis)
    elif n < length:
        widths = [(0, 0)] * array.ndim
        widths[axis] = (0, length - n)
        array = np.pad(array, widths)
    return array


def _hz_to_mel(f):
    """Slaney mel scale: linear below 1 kHz (3 mels per 200 Hz), logarithmic above."""
    f = np.asarray(f, dtype=np.float64)
    f_sp, min_log_hz, logstep = 200.0 / 3, 1000.0, np.log(6.4) / 27.0
    min_log_mel = min_log_hz / f_sp
    safe = np.maximum(f, min_log_hz)
    return np.where(f >= min_log_hz, min_log_mel + np.log(safe / min_log_hz) / logstep, f / f_sp)


def _mel_to_hz(m):
    m = np.asarray(m, dtype=np.float64)
    f_sp, min_log_hz, logstep = 200.0 / 3, 1000.0, np.log(6.4) / 27.0
    min_log_mel = min_log_hz / f_sp
    return np.where(m >= min_log_mel, min_log_hz * np.exp(logstep * (m - min_log_mel)), f_sp * m)


@lru_cache(maxsize=None)
def mel_filterbank(n_mels: int, sr: int = SAMPLE_RATE, n_fft: int = N_FFT) -> np.ndarray:
    """Slaney-style, area-normalised triangular mel filters, float32 ``[n_mels, n_fft//2+1]``.

    Same as ``librosa.filters.mel(sr=sr, n_fft=n_fft, n_mels=n_mels)`` (fmin=0, fmax=sr/2,
    htk=False, norm="slaney"). The returned array is read-only (it is cached).
    """
    if not isinstance(n_mels, int) or n_mels <= 0:
        raise ValueError(f"mel filterbank: n_mels must be a positive int, got {n_mels!r}")
    fft_hz = np.linspace(0.0, sr / 2, n_fft // 2 + 1)
    edges_hz = _mel_to_hz(np.linspace(_hz_to_mel(0.0), _hz_to_mel(sr / 2), n_mels + 2))
    widths = np.diff(edges_hz)  # [n_mels + 1]
    dist = edges_hz[:, None] - fft_hz[None, :]  # [n_mels + 2, n_freqs]
    rising = -dist[:-2] / widths[:-1, None]
    falling = dist[2:] / widths[1:, None]
    weights = np.maximum(0.0, np.minimum(rising, falling))
    weights *= (2.0 / (edges_hz[2:] - edges_hz[:-2]))[:, None]  # equal area per filter
    weights = weights.astype(np.float32)
    weights.flags.writeable = False
    return weights


@lru_cache(maxsize=None)
def _mel_filters_cached(n_mels: int, device: torch.device) -> torch.Tensor:
    return torch.from_numpy(mel_filterbank(n_mels).copy()).to(device)


def mel_filters(n_mels: int = 80, device: Union[str, torch.device, None] = None) -> torch.Tensor:
    """Mel filterbank for 16 kHz / n_fft=400 as a float32 tensor ``[n_mels, 201]`` on ``device``.

    Whisper models use ``n_mels`` 80 (up to large-v2) or 128 (large-v3, turbo).
    """
    return _mel_filters_cached(n_mels, torch.device(device if device is not None else "cpu"))


def log_mel_spectrogram(
    audio: Union[str, os.PathLike, np.ndarray, torch.Tensor],
    n_mels: int = 80,
    padding: int = 0,
    device: Union[str, torch.device, None] = None,
) -> torch.Tensor:
    """Whisper's log-Mel spectrogram.

    Args:
        audio: a path (decoded with ``load_audio``) or 16 kHz mono samples, shape ``[*, n]``.
        n_mels: number of mel bins (80 or 128 for published models).
        padding: zeros appended to the samples before the STFT (e.g. ``N_SAMPLES``).
        device: where to compute; defaults to the tensor's device (CPU for numpy / paths).

    Returns:
        float32 tensor ``[*, n_mels, (n + padding) // HOP_LENGTH]``, roughly in [-1, 1.5]:
        log10 power, floored at (max - 8), then ``(x + 4) / 4``.
    """
    if isinstance(audio, (str, os.PathLike)):
        audio = load_audio(audio)
    if not torch.is_tensor(audio):
        audio = torch.from_numpy(np.ascontiguousarray(audio, dtype=np.float32))
    if audio.dtype != torch.float32:
        audio = audio.float()
    if device is not None:
        audio = audio.to(device)
    if padding > 0:
        audio = F.pad(audio, (0, padding))
    if audio.shape[-1] <= N_FFT // 2:
        raise ValueError(f"log_mel_spectrogram needs more than {N_FFT // 2} samples for the "
                         f"reflect-padded STFT, got {audio.shape[-1]}; pass padding=N_SAMPLES "
                         f"or pad the audio with pad_or_trim")
    window = torch.hann_window(N_FFT, device=audio.device)
    stft = torch.stft(audio, N_FFT, HOP_LENGTH, window=window, center=True,
                      pad_mode="reflect", return_complex=True)
    power = stft[..., :-1].abs() ** 2  # [*, 201, n_frames]; the last frame is dropped
    mel = mel_filters(n_mels, audio.device) @ power
    log_spec = torch.clamp(mel, min=1e-10).log10()
    log_spec = torch.maximum(log_spec, log_spec.max() - 8.0)
    return (log_spec + 4.0) / 4.0
