"""A file as one stream of the scheduler: as it is (``WholeFile``, the path without VAD), or its speech only
(``SpeechFilter``, ``vad_filter=True``). ``chunked.ChunkedScheduler`` owns the files and hands each of them here.

The speech filter: the file's speech (pauses of 2 s or more removed, ``io.vad.FILTERING``) joined and transcribed as
one stream exactly as ``chunking="none"`` would transcribe it (prompted with the previous text, language detected
on the first 30 s of speech); its segment times are mapped back to the file (faster-whisper's ``vad_filter``).
``info.duration_after_vad``: seconds of speech kept. A file (path, bytes, file object) is read once, in blocks,
through the streaming Silero (``io.speech_stream.SpeechFinder``: the regions of the whole array), its samples kept
as int16 in a temporary file, and its speech handed to the scheduler as a WAV (``io.speech_wav``: the same
samples): memory does not grow with its length. Samples given as an array are joined in memory.
"""
from __future__ import annotations

from dataclasses import replace
from typing import Iterator

import numpy as np
import torch

from .encoding import load_samples, sample_blocks
from .io.audio import HOP_LENGTH, SAMPLE_RATE
from .io.speech_stream import READ_BLOCK, SpeechFinder
from .io.speech_wav import SpeechWav
from .io.vad import SpeechMap, VadOptions, speech_regions
from .longform import Segment
from .options import TranscriptionOptions
from .scheduler import Event, Finished, Segments, Started


class WholeFile:
    """The file as it is, one stream of ``owner.scheduler`` (a ``ChunkedScheduler``'s), its events renamed."""

    finds_speech = False
    vad_options = None

    def __init__(self, owner):
        self.owner = owner

    def options(self, options: TranscriptionOptions) -> TranscriptionOptions:
        return options

    def audio(self, file):
        return file.audio

    def start(self, files: list) -> Iterator[Event]:
        for file in files:
            self.owner.files[file.id] = file
            self.owner.scheduler.add(self.audio(file), options=file.options, language=file.language,
                                     initial_prompt=file.initial_prompt, stream_id=(file.id, 0))
            file.samples = file.audio = None
            self.owner.outstanding += 1
        return iter(())

    def streams(self, file) -> int:
        return 1

    def merge(self, file, k: int, event: Event) -> Iterator[Event]:
        """An event of the file's stream (not ``Failed``: the owner's) as the file's."""
        if isinstance(event, Started):
            file.info = self.info(file, event.info)
            yield self.owner.started(file)
        elif isinstance(event, Segments):
            yield Segments(file.id, self.segments(file, event.segments), self.seconds(file, event.done))
        elif isinstance(event, Finished):
            yield self.owner.finished(file)

    def progress(self, file, k: int, seconds: float) -> None:
        self.owner.on_progress(file.id, self.seconds(file, seconds))

    def info(self, file, info):
        return info

    def segments(self, file, segments: list[Segment]) -> list[Segment]:
        return segments

    def seconds(self, file, seconds: float) -> float:
        return seconds


class SpeechFilter(WholeFile):
    """The ``vad_filter`` path: the file's speech joined, one stream; times on the file's timeline."""

    finds_speech = True

    def __init__(self, owner, vad_options: VadOptions):
        super().__init__(owner)
        self.vad_options = vad_options

    def find(self, file) -> None:
        """Find the file's speech: samples in memory at once, a file read in blocks (its speech as a WAV in
        ``file.store``); what keeps it from being read raises (the caller's ``audio_errors``)."""
        if isinstance(file.audio, (np.ndarray, torch.Tensor)):
            file.samples = load_samples(file.audio)  # (checked: 1-D)
            n = int(file.samples.shape[0])
            file.speech = SpeechMap(speech_regions(file.samples, self.vad_options))
        else:
            finder, wav = SpeechFinder(self.vad_options), SpeechWav()
            try:
                regions = []
                for block in sample_blocks(file.audio, READ_BLOCK):
                    wav.write(block)
                    regions += finder.feed(block)
                regions += finder.finish()
                file.store, n = wav.joined(regions), finder.samples
            finally:
                wav.close()
            file.speech = SpeechMap(regions)
        file.audio = None
        file.duration = n // HOP_LENGTH * HOP_LENGTH / SAMPLE_RATE

    def audio(self, file):
        return file.store if file.store is not None else file.speech.collect(file.samples)

    def info(self, file, info):
        return replace(info, duration=file.duration, duration_after_vad=file.speech.duration)

    def segments(self, file, segments: list[Segment]) -> list[Segment]:
        margin = self.vad_options.speech_pad_ms / 1000
        return [mapped(s, file.speech, margin) for s in segments]

    def seconds(self, file, seconds: float) -> float:
        return file.speech.to_audio(seconds, is_end=True)


def mapped(segment: Segment, speech: SpeechMap, margin: float) -> Segment:
    """``segment`` of the joined speech, on the file's timeline (``SpeechMap.span_to_audio``)."""
    seek = round(speech.to_audio(segment.seek * HOP_LENGTH / SAMPLE_RATE) * SAMPLE_RATE) // HOP_LENGTH
    start, end = speech.span_to_audio(segment.start, segment.end, margin)
    words = None if segment.words is None else [
        replace(w, start=round(speech.to_audio(w.start), 2), end=round(speech.to_audio(w.end, is_end=True), 2))
        for w in segment.words]
    return replace(segment, seek=seek, start=start, end=end, words=words)


__all__ = ["SpeechFilter", "WholeFile", "mapped"]
