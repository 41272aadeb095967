"""Voice activity detection with Silero VAD (package ``silero-vad``), and the plans made from it.

    regions = speech_regions(samples, CHUNKING)          # [(start, end)] in samples, padded, at most 30 s each
    chunks = plan_chunks(regions, len(samples))          # [(start, end)]: windows of at most 30 s, cut in pauses
    speech = SpeechMap(speech_regions(samples, FILTERING))   # the speech only, and its times on the file's timeline

The model and its probabilities: ``io.silero`` (``SileroStream``: the state carried from call to call; one call
over the whole array here). ``speech_regions`` turns the probabilities into padded speech regions as silero's own
``get_speech_timestamps_from_probs`` does, and ``plan_chunks`` joins them into chunks: both through the streaming
classes of ``io.speech_stream`` (``RegionFinder``, ``ChunkPlanner``) that also plan a file read in blocks.
"""
from __future__ import annotations

import bisect
import math
from dataclasses import dataclass, fields
from typing import Optional, Sequence, Union

import numpy as np
import torch

from ..errors import OptionError
from .audio import N_SAMPLES, SAMPLE_RATE
from .silero import CONTEXT, FRAME, speech_probabilities, vad_available, vad_model
from .speech_stream import ChunkPlanner, RegionFinder


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


def speech_regions(samples: Union[np.ndarray, torch.Tensor], options: VadOptions = CHUNKING,
                   probabilities: Optional[torch.Tensor] = None) -> list[tuple[int, int]]:
    """Speech regions ``[(start, end)]`` in samples of 16 kHz ``samples``, padded, in order, not overlapping
    (silero's ``get_speech_timestamps`` on ``speech_probabilities``, or the ``probabilities`` given)."""
    n = int(samples.shape[0])
    if probabilities is None:
        probabilities = speech_probabilities(samples, options.device)
    finder = RegionFinder(options)
    regions = [region for p in probabilities.tolist() for region in finder.step(p)]
    return regions + finder.finish(n)


def plan_chunks(regions: Sequence[tuple[int, int]], n_samples: int,
                max_samples: int = N_SAMPLES) -> list[tuple[int, int]]:
    """Chunks ``[(start, end)]`` of at most ``max_samples`` that cover every speech region, cut only between
    regions (in pauses): consecutive regions join the current chunk while it stays within the limit; a region
    longer than the limit (only when it has no pause to cut at) is cut into equal parts. Edges are moved out to
    whole mel frames (160 samples) within the audio and the limit; two chunks that touch keep one cut. An audio
    of at most ``max_samples`` with any speech is one chunk, the whole audio (what sequential decoding sees)."""
    planner = ChunkPlanner(max_samples)
    for region in regions:
        planner.add(region)
    return planner.finish(n_samples)


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


__all__ = ["CHUNKING", "CONTEXT", "FILTERING", "FRAME", "SpeechMap", "VadOptions", "plan_chunks",
           "speech_probabilities", "speech_regions", "vad_available", "vad_model"]
