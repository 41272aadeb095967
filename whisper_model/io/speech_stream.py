"""Speech regions and chunk plans found as an audio is read: the streaming form of ``io.vad``'s plans.

    speech = SpeechFinder(FILTERING)                  # Silero (its state carried) -> regions, as they are final
    chunker = SpeechChunker(CHUNKING)                 # ... -> regions -> chunks
    for block in blocks:                              # 16 kHz mono float, any sizes
        for start, end, samples in chunker.feed(block):   # each chunk once it is final, with its samples
            ...
    rest = chunker.finish()                           # the chunks the end of the audio decides

``RegionFinder`` is silero's ``get_speech_timestamps_from_probs`` (silero-vad 6.2, its default
``use_max_poss_sil_at_max_speech=True``) fed one frame probability at a time: the same state machine, and its
padding pass done one region behind (a region's padded end depends on where the next one starts).
``ChunkPlanner`` is ``io.vad.plan_chunks`` fed one region at a time: a chunk is given out once no later region can
join it. ``io.vad.speech_regions`` / ``plan_chunks`` run these same classes over a whole array, so a file read in
blocks gets the chunks of the whole array (given the same probabilities: ``io.silero.SileroStream``).

``SpeechChunker`` keeps only the samples that a chunk still to be given out may need: from the earliest start a
region not yet final may have (its speech start less the padding) or the open chunk's start; at most the chunk
limit plus a region and a block, whatever the audio's length (``held`` / ``peak``: samples kept, now and at most).
"""
from __future__ import annotations

from typing import Optional

import numpy as np

from .audio import HOP_LENGTH, N_SAMPLES, SAMPLE_RATE
from .silero import FRAME, SileroStream

READ_BLOCK = 10 * SAMPLE_RATE  # samples a file is read (and Silero run) at a time by the VAD paths


class RegionFinder:
    """Padded speech regions ``(start, end)`` in samples from frame probabilities given in order (``vad.VadOptions``
    ``options``): ``step(p)`` -> the regions now final; ``finish(n_samples)`` -> the rest."""

    def __init__(self, options):
        sr = SAMPLE_RATE
        self.threshold = options.threshold
        self.neg_threshold = max(options.threshold - 0.15, 0.01) if options.neg_threshold is None \
            else options.neg_threshold
        self.min_speech = sr * options.min_speech_duration_ms / 1000
        self.pad = sr * options.speech_pad_ms / 1000
        self.max_speech = sr * options.max_speech_duration_s - FRAME - 2 * self.pad
        self.min_silence = sr * options.min_silence_duration_ms / 1000
        self.min_silence_at_max = sr * options.min_silence_at_max_speech_ms / 1000
        self.frames = 0
        self.start: Optional[int] = None  # the speech in progress (triggered), unpadded
        self.temp_end = 0
        self.possible_ends: list[tuple[int, int]] = []
        self.held: Optional[list] = None  # the last region found: its start padded, its end not yet

    def keep_from(self) -> int:
        """No region still to be given out starts before this sample."""
        if self.held is not None:
            return self.held[0]
        since = self.frames * FRAME if self.start is None else self.start
        return max(0, int(since - self.pad))

    def step(self, probability: float) -> list[tuple[int, int]]:
        """The next frame's probability -> the regions that are final now."""
        out = self._advance(probability)
        return out + self._release()

    def _release(self) -> list[tuple[int, int]]:
        """The held region, once the next one cannot start within twice the padding (and a frame) of its end: its
        padded end is then its end plus the padding, as silero's pass makes it (before the audio's end too)."""
        held = self.held
        next_start = self.frames * FRAME if self.start is None else self.start
        if held is None or next_start - held[1] < 2 * self.pad + FRAME:
            return []
        self.held = None
        end = int(held[1] + self.pad)
        return [(held[0], end)] if end > held[0] else []

    def _advance(self, probability: float) -> list[tuple[int, int]]:
        """silero's loop body for one frame."""
        cur, self.frames = self.frames * FRAME, self.frames + 1
        speech = probability >= self.threshold
        if speech and self.temp_end:
            silence = cur - self.temp_end
            if silence > self.min_silence_at_max:
                self.possible_ends.append((self.temp_end, silence))
            self.temp_end = 0
        if speech and self.start is None:
            self.start = cur
            return []
        out = []
        if self.start is not None and cur - self.start > self.max_speech:
            out, stop = self._cut(cur)
            if stop:
                return out
        if probability < self.neg_threshold and self.start is not None:
            if not self.temp_end:
                self.temp_end = cur
            if cur - self.temp_end >= self.min_silence:
                if self.temp_end - self.start > self.min_speech:
                    out += self._found(self.start, self.temp_end)
                self._stop()
        return out

    def _cut(self, cur: int) -> tuple[list, bool]:
        """The speech in progress reached the longest region: cut at its longest pause, else here."""
        if not self.possible_ends:
            out = self._found(self.start, cur)
            self._stop()
            return out, True
        end, silence = max(self.possible_ends, key=lambda x: x[1])
        out = self._found(self.start, end)
        restart = end + silence
        self._stop()
        if restart < end + cur:  # silero's test (always true here: the pause ended before this frame)
            self.start = restart
        return out, False

    def _stop(self) -> None:
        self.start, self.temp_end, self.possible_ends = None, 0, []

    def _found(self, start: int, end: int) -> list[tuple[int, int]]:
        """A region's unpadded ``[start, end)`` -> the previous region, now padded (silero's padding pass)."""
        held, out = self.held, []
        if held is None:  # the first region, or the one before was released: a pause of more than twice the padding
            start = int(max(0, start - self.pad))
        else:
            silence = start - held[1]
            if silence < 2 * self.pad:
                held[1] += int(silence // 2)
                start = int(max(0, start - silence // 2))
            else:
                held[1] = int(held[1] + self.pad)  # (silero's min with the audio's length: the next region is in it)
                start = int(max(0, start - self.pad))
            out = [tuple(held)] if held[1] > held[0] else []
        self.held = [start, end]
        return out

    def finish(self, n_samples: int) -> list[tuple[int, int]]:
        """The audio ends after ``n_samples``: the regions still held."""
        out = []
        if self.start is not None and n_samples - self.start > self.min_speech:
            out = self._found(self.start, n_samples)
        self._stop()
        if self.held is not None:
            start, end = self.held
            end = int(min(n_samples, end + self.pad))
            out += [(start, end)] if end > start else []
            self.held = None
        return out


class ChunkPlanner:
    """``io.vad.plan_chunks`` one region at a time: ``add(region)``; ``take(known, keep_from)`` -> the chunks no
    later region can join, once ``known`` samples of the audio are read; ``finish(n_samples)`` -> the rest."""

    def __init__(self, max_samples: int = N_SAMPLES):
        self.max_samples = max_samples
        self.open: Optional[tuple[int, int]] = None  # the chunk later regions may still join
        self.closed: list[tuple[int, int]] = []  # chunks final but not given out (unaligned)
        self.last_end: Optional[int] = None  # the last chunk given out ends here
        self.any = False

    def add(self, region: tuple[int, int]) -> None:
        start, end = region
        self.any = True
        if self.open is not None and end - self.open[0] <= self.max_samples:
            self.open = (self.open[0], end)
            return
        if self.open is not None:
            self.closed.append(self.open)
        parts = -(-(end - start) // self.max_samples)
        cuts = [start + (end - start) * i // parts for i in range(parts + 1)]
        pieces = list(zip(cuts[:-1], cuts[1:]))
        self.closed += pieces[:-1]
        self.open = pieces[-1]

    def keep_from(self) -> Optional[int]:
        """The first sample a chunk still to be given out may take (None: none yet)."""
        first = self.closed[0] if self.closed else self.open
        return None if first is None else first[0] // HOP_LENGTH * HOP_LENGTH

    def take(self, known: int, keep_from: int) -> list[tuple[int, int]]:
        """Chunks final now: ``known`` samples read, no region still to come starts before ``keep_from``. While
        the audio may still be one window long (``known`` <= the limit), none: then it is one chunk, the whole."""
        if known <= self.max_samples:
            return []
        if self.open is not None and keep_from - self.open[0] >= self.max_samples:  # nothing more can join it
            self.closed.append(self.open)
            self.open = None
        out = []
        while self.closed and -(-self.closed[0][1] // HOP_LENGTH) * HOP_LENGTH <= known:
            out.append(self._aligned(*self.closed.pop(0), known))
        return out

    def finish(self, n_samples: int) -> list[tuple[int, int]]:
        if n_samples <= self.max_samples:
            return [(0, n_samples)] if self.any else []
        if self.open is not None:
            self.closed.append(self.open)
            self.open = None
        out = [self._aligned(start, end, n_samples) for start, end in self.closed]
        self.closed = []
        return out

    def _aligned(self, start: int, end: int, n_samples: int) -> tuple[int, int]:
        """Edges out to whole mel frames, within the audio and the limit; touching the last chunk: one cut."""
        start = start // HOP_LENGTH * HOP_LENGTH
        end = min(n_samples, -(-end // HOP_LENGTH) * HOP_LENGTH, start + self.max_samples // HOP_LENGTH * HOP_LENGTH)
        if self.last_end is not None and start < self.last_end:  # two parts of one long region: keep them adjacent
            start = self.last_end
        self.last_end = end
        return start, end


class SpeechFinder:
    """An audio fed in blocks -> its padded speech regions (``io.vad.speech_regions``'s) as they become final:
    the streaming Silero and ``RegionFinder`` together; ``samples``: samples fed."""

    def __init__(self, options):
        self.scorer = SileroStream(options.device)
        self.regions = RegionFinder(options)
        self.samples = 0

    def feed(self, block: np.ndarray) -> list[tuple[int, int]]:
        self.samples += len(block)
        return self._step(self.scorer.feed(block))

    def finish(self) -> list[tuple[int, int]]:
        """The audio ended: the regions left."""
        return self._step(self.scorer.flush()) + self.regions.finish(self.samples)

    def keep_from(self) -> int:
        return self.regions.keep_from()

    def _step(self, probabilities) -> list[tuple[int, int]]:
        return [region for p in probabilities.tolist() for region in self.regions.step(p)]


class SpeechChunker:
    """An audio fed in blocks -> its chunks ``(start, end, samples)`` as they become final (module docstring);
    ``options``: a ``vad.VadOptions`` (its ``max_speech_duration_s``: the chunk limit)."""

    def __init__(self, options):
        self.speech = SpeechFinder(options)
        self.planner = ChunkPlanner(int(options.max_speech_duration_s * SAMPLE_RATE))
        self._kept: list[np.ndarray] = []  # samples [self._from, self.samples)
        self._from = 0
        self.peak = 0

    @property
    def samples(self) -> int:
        return self.speech.samples

    @property
    def held(self) -> int:
        return self.samples - self._from

    def feed(self, block: np.ndarray) -> list[tuple[int, int, np.ndarray]]:
        block = np.asarray(block, np.float32).reshape(-1)
        self._kept.append(block)
        for region in self.speech.feed(block):
            self.planner.add(region)
        self.peak = max(self.peak, self.held)
        return self._give(self.planner.take(self.samples, self.speech.keep_from()))

    def finish(self) -> list[tuple[int, int, np.ndarray]]:
        """The audio ended: the chunks left (all of them for an audio of at most one chunk's length)."""
        for region in self.speech.finish():
            self.planner.add(region)
        return self._give(self.planner.finish(self.samples))

    def _give(self, chunks: list[tuple[int, int]]) -> list[tuple[int, int, np.ndarray]]:
        """The chunks with their samples; then the samples no chunk to come needs are dropped."""
        kept = np.concatenate(self._kept) if len(self._kept) > 1 else self._kept[0] if self._kept else None
        if chunks and chunks[0][0] < self._from:
            raise RuntimeError(f"chunk {chunks[0]} starts before the samples kept ({self._from})")  # a broken invariant
        out = [(s, e, kept[s - self._from: e - self._from].copy()) for s, e in chunks]
        first = self.planner.keep_from()
        keep = min(self.speech.keep_from(), first if first is not None else self.samples) // HOP_LENGTH * HOP_LENGTH
        if self.samples <= self.planner.max_samples:  # the audio may still be one chunk, all of it
            keep = 0
        if kept is not None and keep > self._from:
            kept = kept[keep - self._from:].copy()
            self._from = keep
        self._kept = [] if kept is None or not len(kept) else [kept]
        return out


__all__ = ["ChunkPlanner", "READ_BLOCK", "RegionFinder", "SpeechChunker", "SpeechFinder"]
