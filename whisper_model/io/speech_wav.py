"""The speech of a decoded file, joined, as a WAV in an anonymous temporary file: ``SpeechWav``.

    wav = SpeechWav()
    wav.write(block)                  # the file's samples in order, as io.audio decodes them (int16 / 32768)
    joined = wav.joined(regions)      # a WAV of the regions [(start, end)] end to end: a file object at its start
    wav.close()                       # the samples written are gone (``joined`` stays until it is closed)

The speech filter (``speech_filter.SpeechFilter``, ``vad_filter=True``) reads a file once, in blocks, and hands the
scheduler its speech as this WAV instead of an array: the memory held is a block, not the file. ``io.audio``
decodes every file to 16-bit samples scaled by 1/32768, so they are kept here as int16 without loss and the WAV
decodes back to the very same float32 samples (16 kHz mono: nothing is resampled).
"""
from __future__ import annotations

import tempfile
import wave
from typing import BinaryIO, Sequence

import numpy as np

from .audio import SAMPLE_RATE

COPY_SAMPLES = 10 * SAMPLE_RATE  # samples copied at a time into the joined WAV


def to_int16(samples: np.ndarray) -> np.ndarray:
    """Decoded samples (k / 32768) -> their int16 k; ``ValueError`` for samples that are not (an array given as
    samples, not decoded from a file)."""
    scaled = np.asarray(samples, np.float32) * np.float32(32768)
    out = np.rint(scaled)
    if not np.array_equal(out, scaled) or (len(out) and (out.min() < -32768 or out.max() > 32767)):
        raise ValueError("SpeechWav keeps decoded 16-bit samples only")
    return out.astype("<i2")


class SpeechWav:
    """A file's samples as int16 in an anonymous temporary file; ``joined`` makes the WAV of its speech."""

    def __init__(self):
        self._raw = tempfile.TemporaryFile()
        self.samples = 0

    def write(self, samples: np.ndarray) -> None:
        self._raw.seek(2 * self.samples)
        self._raw.write(to_int16(samples).tobytes())
        self.samples += len(samples)

    def joined(self, regions: Sequence[tuple[int, int]]) -> BinaryIO:
        """A 16 kHz mono 16-bit WAV of ``regions`` (samples, in order) end to end, in a new anonymous temporary
        file, opened for reading at its start (the caller closes it)."""
        out = tempfile.TemporaryFile()
        try:
            with wave.open(out, "wb") as w:  # (closing the writer leaves ``out`` open)
                w.setnchannels(1)
                w.setsampwidth(2)
                w.setframerate(SAMPLE_RATE)
                for start, end in regions:
                    self._copy(w, start, min(end, self.samples))
            out.seek(0)
        except BaseException:
            out.close()
            raise
        return out

    def _copy(self, writer, start: int, end: int) -> None:
        for at in range(start, end, COPY_SAMPLES):
            self._raw.seek(2 * at)
            data = self._raw.read(2 * (min(end, at + COPY_SAMPLES) - at))
            writer.writeframesraw(data)

    def close(self) -> None:
        self._raw.close()


__all__ = ["SpeechWav", "to_int16"]
