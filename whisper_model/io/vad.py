"""Voice activity detection with Silero VAD (package ``silero-vad``), and the plans made from it.

    regions = speech_regions(samples, CHUNKING)          # [(start, end)] in samples, padded, at most 30 s each
    chunks = plan_chunks(regions, len(samples))          # [(start, end)]: windows of at most 30 s, cut in pauses
    speech = SpeechMap(speech_regions(samples, FILTERING))   # the speech only, and its times on the file's timeline

The model is Silero VAD's TorchScript file shipped inside the ``silero-vad`` wheel (``load_silero_vad(onnx=False)``:
torch only; neither torchaudio nor onnxruntime is imported, nothing is downloaded). Importing ``silero_vad`` sets
``torch.set_num_threads(1)`` for the whole process; ``vad_model`` puts the caller's setting back.

Silero scores frames of 512 samples (32 ms at 16 kHz), each seen with the last 64 samples of the frame before;
per frame a convolutional encoder (STFT, four convolutions) feeds an LSTM cell whose state runs through the whole
audio. ``speech_probabilities`` computes exactly what calling the model frame by frame computes (as
``silero_vad.get_speech_timestamps`` does), only faster: the encoder runs on all frames in large batches, the
LSTM as one ``torch.nn.LSTM`` call over the sequence (one thread on CPU: it is a chain of small products).
Splitting the sequence into parallel pieces is not exact: the LSTM state carries over seconds of audio.
``speech_regions`` turns the probabilities into padded speech regions with silero's own
``get_speech_timestamps_from_probs``.
"""
from __future__ import annotations

import bisect
import functools
import importlib.util
import math
import warnings
from dataclasses import dataclass, fields
from typing import Optional, Sequence, Union

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import OptionError
from .audio import HOP_LENGTH, N_SAMPLES, SAMPLE_RATE

FRAME, CONTEXT = 512, 64  # samples per scored frame at 16 kHz, and samples of the frame before seen with it
ENCODER_BATCH = 4096  # frames per encoder call (~2 s of compute on one core, ~10 MB of features)
LSTM_PIECE = 8192  # frames per cuDNN LSTM call on a GPU (4.4 min of audio)


@dataclass(frozen=True)
class VadOptions:
    """How speech is found (silero's names and meanings). ``threshold``: a frame is speech at or above it;
    ``neg_threshold``: inside speech, frames below it count as silence (None: threshold - 0.15);
    ``min_speech_duration_ms``: shorter regions are dropped; ``min_silence_duration_ms``: a pause at least this
    long ends a region; ``speech_pad_ms``: added on both sides of each region (half the pause each when two
    regions are closer than twice this); ``max_speech_duration_s``: longer regions are cut at their longest
    pause (of at least ``min_silence_at_max_speech_ms``), or at the limit when there is none;
    ``device``: where the VAD model runs (``chunked`` uses the model's device unless options are given)."""

    threshold: float = 0.5
    neg_threshold: Optional[float] = None
    min_speech_duration_ms: int = 250
    min_silence_duration_ms: int = 160
    speech_pad_ms: int = 400
    max_speech_duration_s: float = N_SAMPLES / SAMPLE_RATE
    min_silence_at_max_speech_ms: int = 98
    device: str = "cpu"

    def __post_init__(self):
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name == "device":
                if not isinstance(value, (str, torch.device)):
                    raise OptionError(f"vad_options.device must be a device name, got {value!r}")
                continue
            if value is None and f.name == "neg_threshold":
                continue
            if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value) or value < 0:
                raise OptionError(f"vad_options.{f.name} must be a number >= 0, got {value!r}")
        if not 0 < self.threshold < 1:
            raise OptionError(f"vad_options.threshold must be between 0 and 1, got {self.threshold}")
        if self.neg_threshold is not None and not 0 < self.neg_threshold <= self.threshold:
            raise OptionError(f"vad_options.neg_threshold must be in (0, threshold], got {self.neg_threshold}")
        if self.max_speech_duration_s * 1000 <= 2 * self.speech_pad_ms + 1000 * FRAME / SAMPLE_RATE:
            raise OptionError(f"vad_options.max_speech_duration_s ({self.max_speech_duration_s}) must be longer "
                              f"than twice speech_pad_ms ({self.speech_pad_ms}) plus one frame (32 ms)")


# Chunks for batched decoding (faster-whisper's BatchedInferencePipeline uses 160 ms pauses and 30 s chunks):
# short pauses give the chunk planner many places to cut; 400 ms of padding keeps word edges inside the chunk.
CHUNKING = VadOptions()
# Non-speech removal before sequential decoding (faster-whisper's vad_filter defaults): only pauses of 2 s or
# more are removed, every region is kept whatever its length (the sequential loop cuts 30 s windows itself).
FILTERING = VadOptions(min_speech_duration_ms=0, min_silence_duration_ms=2000, max_speech_duration_s=math.inf)


def vad_available() -> bool:
    """Whether the ``silero-vad`` package is installed (without importing it)."""
    return importlib.util.find_spec("silero_vad") is not None


@functools.lru_cache(maxsize=None)
def vad_model(device: str = "cpu"):
    """Silero VAD's TorchScript model from the installed ``silero-vad`` package (no network), on ``device``,
    in eval mode; torch's thread count is restored after the package's import changes it."""
    threads = torch.get_num_threads()
    try:
        import silero_vad
    except ImportError as e:
        raise ImportError("voice activity detection needs the 'silero-vad' package: pip install silero-vad") from e
    finally:
        torch.set_num_threads(threads)
    with warnings.catch_warnings():  # its importlib.resources.path and torch.jit.load are deprecated, not gone
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.filterwarnings("ignore", r"`torch\.jit\.load` is deprecated", FutureWarning)  # torch >= 2.15
        model = silero_vad.load_silero_vad(onnx=False)
    return model.to(torch.device(device)).eval()


@functools.lru_cache(maxsize=None)
def _lstm(device: str) -> torch.nn.LSTM:
    """The model's LSTM cell as a ``torch.nn.LSTM`` layer (same weights): one call runs the whole sequence."""
    cell = vad_model(device)._model.decoder.rnn
    lstm = torch.nn.LSTM(cell.weight_ih.shape[1], cell.weight_hh.shape[1]).to(cell.weight_ih.device)
    with torch.no_grad():
        for mine, theirs in (("weight_ih_l0", cell.weight_ih), ("weight_hh_l0", cell.weight_hh),
                             ("bias_ih_l0", cell.bias_ih), ("bias_hh_l0", cell.bias_hh)):
            getattr(lstm, mine).copy_(theirs)
    return lstm.eval()


class _OneThread:
    """torch on one CPU thread inside the block (the LSTM's small sequential products only lose from more)."""

    def __enter__(self):
        self.threads = torch.get_num_threads()
        torch.set_num_threads(1)

    def __exit__(self, *exc):
        torch.set_num_threads(self.threads)


@torch.no_grad()
def speech_probabilities(samples: Union[np.ndarray, torch.Tensor], device: str = "cpu") -> torch.Tensor:
    """Silero's speech probability [ceil(n / 512)] of each 32 ms frame of 16 kHz mono ``samples`` [n] (the last
    frame zero-padded), equal to calling the model frame by frame from a fresh state."""
    audio = torch.as_tensor(samples, dtype=torch.float32).reshape(-1)
    n_frames = -(-audio.shape[0] // FRAME)
    if n_frames == 0:
        return torch.zeros(0)
    net = vad_model(device)._model
    audio = F.pad(audio.to(device), (CONTEXT, n_frames * FRAME - audio.shape[0]))
    frames = audio.unfold(0, FRAME + CONTEXT, FRAME)  # [n_frames, 576]: each frame after its context
    features = torch.cat([net.encoder(net.stft(block)) for block in frames.split(ENCODER_BATCH)])  # [n, 128, 1]
    lstm = _lstm(device)
    if torch.device(device).type == "cpu":
        with _OneThread():
            hidden, _ = lstm(features[:, None, :, 0])
    else:  # cuDNN refuses very long sequences: pieces, the state carried over (the same recurrence)
        sequence, state, pieces = features[:, None, :, 0].contiguous(), None, []
        for piece in sequence.split(LSTM_PIECE):
            out, state = lstm(piece, state)
            pieces.append(out)
        hidden = torch.cat(pieces)
    return net.decoder.decoder(hidden[:, 0, :, None]).reshape(-1).float().cpu()


def speech_regions(samples: Union[np.ndarray, torch.Tensor], options: VadOptions = CHUNKING,
                   probabilities: Optional[torch.Tensor] = None) -> list[tuple[int, int]]:
    """Speech regions ``[(start, end)]`` in samples of 16 kHz ``samples``, padded, in order, not overlapping
    (silero's ``get_speech_timestamps`` on ``speech_probabilities``, or the ``probabilities`` given)."""
    n = int(samples.shape[0])
    if probabilities is None:
        probabilities = speech_probabilities(samples, options.device)
    if n == 0:
        return []
    vad_model(options.device)  # the package's import, with the thread count kept
    from silero_vad import get_speech_timestamps_from_probs

    found = get_speech_timestamps_from_probs(
        probabilities.tolist(), sampling_rate=SAMPLE_RATE, threshold=options.threshold,
        neg_threshold=options.neg_threshold, min_speech_duration_ms=options.min_speech_duration_ms,
        min_silence_duration_ms=options.min_silence_duration_ms, speech_pad_ms=options.speech_pad_ms,
        max_speech_duration_s=options.max_speech_duration_s,
        min_silence_at_max_speech=options.min_silence_at_max_speech_ms, audio_length_samples=n)
    return [(int(r["start"]), int(r["end"])) for r in found if r["end"] > r["start"]]


def plan_chunks(regions: Sequence[tuple[int, int]], n_samples: int,
                max_samples: int = N_SAMPLES) -> list[tuple[int, int]]:
    """Chunks ``[(start, end)]`` of at most ``max_samples`` that cover every speech region, cut only between
    regions (in pauses): consecutive regions join the current chunk while it stays within the limit; a region
    longer than the limit (only when it has no pause to cut at) is cut into equal parts. Edges are moved out to
    whole mel frames (160 samples) within the audio and the limit; two chunks that touch keep one cut. An audio
    of at most ``max_samples`` with any speech is one chunk, the whole audio (what sequential decoding sees)."""
    if not regions:
        return []
    if n_samples <= max_samples:
        return [(0, n_samples)]
    chunks: list[tuple[int, int]] = []
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
        if aligned and start < aligned[-1][1]:  # two parts of one long region: keep them adjacent
            start = aligned[-1][1]
        aligned.append((start, end))
    return aligned


class SpeechMap:
    """The speech ``regions`` [(start, end)] (samples, in order) of an audio joined end to end, and times on that
    joined timeline mapped back to the audio's. ``duration``: seconds of speech."""

    def __init__(self, regions: Sequence[tuple[int, int]]):
        self.regions = [(int(s), int(e)) for s, e in regions]
        self.offsets = [0]  # where each region starts on the joined timeline, in samples
        for start, end in self.regions:
            self.offsets.append(self.offsets[-1] + end - start)
        self.duration = self.offsets[-1] / SAMPLE_RATE

    def collect(self, samples: Union[np.ndarray, torch.Tensor]) -> Union[np.ndarray, torch.Tensor]:
        """The speech of ``samples``, joined ([0] samples when there is none)."""
        pieces = [samples[s:e] for s, e in self.regions]
        if isinstance(samples, torch.Tensor):
            return torch.cat(pieces) if pieces else samples[:0]
        return np.concatenate(pieces) if pieces else samples[:0]

    def to_audio(self, seconds: float, is_end: bool = False) -> float:
        """A time on the joined timeline -> the same instant in the audio. A time exactly where two regions meet
        is the later region's start, or the earlier region's end when ``is_end`` (a segment's end)."""
        if not self.regions:
            return seconds
        sample = seconds * SAMPLE_RATE
        find = bisect.bisect_left if is_end else bisect.bisect_right
        i = min(max(find(self.offsets, sample) - 1, 0), len(self.regions) - 1)
        return (self.regions[i][0] + sample - self.offsets[i]) / SAMPLE_RATE

    def span_to_audio(self, start: float, end: float, margin: float) -> tuple[float, float]:
        """A segment ``[start, end]`` on the joined timeline -> the audio's. A segment across a join whose start is
        within ``margin`` seconds (the padding) of its region's end starts at the next region instead, and one
        whose end is within ``margin`` of its region's start ends at the region before: the 20 ms timestamps
        put a segment's edge on the wrong side of a join as easily as on the right one."""
        if not self.regions:
            return start, end
        a, b, step = start * SAMPLE_RATE, end * SAMPLE_RATE, margin * SAMPLE_RATE
        first = min(max(bisect.bisect_right(self.offsets, a) - 1, 0), len(self.regions) - 1)
        last = min(max(bisect.bisect_left(self.offsets, b) - 1, 0), len(self.regions) - 1)
        if first < last and self.offsets[first + 1] - a <= step:
            first += 1
            a = self.offsets[first]
        if first < last and b - self.offsets[last] <= step:
            last -= 1
            b = self.offsets[last + 1]
        return self.to_audio(a / SAMPLE_RATE), self.to_audio(b / SAMPLE_RATE, is_end=True)


__all__ = ["CHUNKING", "FILTERING", "SpeechMap", "VadOptions", "plan_chunks", "speech_probabilities",
           "speech_regions", "vad_model"]
