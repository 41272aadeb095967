"""The chunk plan of ``chunking="vad"``: a file's speech cut into chunks of at most 30 s, every chunk a stream of the
one ``Scheduler`` (decoded in parallel, with the chunks of any file), their segments put back on the file's
timeline in time order. ``chunked.ChunkedScheduler`` owns the files and hands each of them here.

A file is read once, in blocks of 10 s (``encoding.sample_blocks``), through the streaming Silero and planner
(``io.speech_stream.SpeechChunker``: the chunks of ``io.vad.plan_chunks(speech_regions(samples))``, each as soon as
it is final); each chunk's samples go to a ``io.sample_spool.SampleSpool`` (an anonymous temporary file) as it is
found. The whole file is read before it starts (a file that cannot be read fails before any event of it, with
its duration and speech known for ``Started``); its chunks are then added to the scheduler as it has room
(``top_up``: while fewer than two batches of streams are waiting), so the samples in memory are a few chunks and
the reader's blocks, not the file (``peak_held``: the most samples a file's reading kept at once).

The language is detected once per file, on its first chunk (its first speech), and given to every chunk. Each
chunk is decoded without the previous chunk's text (``chunk_options``: ``condition_on_previous_text`` None means
False, an explicit True is an ``OptionError``) and with the file's ``initial_prompt`` as its own prompt. When a
chunk's window leaves less than ``MIN_WINDOW_S`` (1 s) after its last complete timestamp, the text after that
timestamp is the chunk's last segment, up to the chunk's end (``LongFormState.min_window``), rather than the rest
(mostly padding) being decoded as a window of its own, which invites a hallucination ("Thank you."). Times the
model puts past a chunk's end (in the window's padding) are the chunk's end; ``info.duration_after_vad``: seconds
inside chunks.
"""
from __future__ import annotations

from collections import deque
from dataclasses import replace
from typing import Iterator, Optional

import numpy as np

from .encoding import sample_blocks
from .errors import OptionError
from .io.audio import HOP_LENGTH, N_SAMPLES, SAMPLE_RATE
from .io.sample_spool import SampleSpool
from .io.speech_stream import READ_BLOCK, SpeechChunker
from .io.vad import VadOptions
from .longform import detect_languages, load_mel, moved
from .options import TranscriptionOptions
from .scheduler import Event, Finished, Segments, decoding_error, stream_info

MIN_WINDOW_S = 1.0  # a chunk's rest shorter than this after its last complete timestamp is not decoded


def chunk_options(options: TranscriptionOptions) -> TranscriptionOptions:
    """``options`` as every chunk is decoded with: without the previous chunk's text (``condition_on_previous_text``
    None: False; True: an ``OptionError``, the one refusal of every front end)."""
    if options.condition_on_previous_text:
        raise OptionError("condition_on_previous_text=True cannot be used with chunking='vad': the chunks of a file "
                          "are decoded in parallel, each without the previous chunk's text; leave it unset (or "
                          "False), or use chunking='none'")
    return replace(options, condition_on_previous_text=False)


class ChunkPlan:
    """The ``"vad"`` path of ``owner`` (a ``ChunkedScheduler``: its ``scheduler``, files and bookkeeping)."""

    finds_speech = True

    def __init__(self, owner, vad_options: VadOptions):
        self.owner, self.vad_options = owner, vad_options
        self.adding: deque = deque()  # started files with chunks not yet added to the scheduler, in order
        self.peak_held = 0  # the most samples reading a file kept at once (the reader's and the chunker's)

    def options(self, options: TranscriptionOptions) -> TranscriptionOptions:
        return chunk_options(options)

    def find(self, file) -> None:
        """Read ``file.audio`` in blocks: its chunks, their samples spooled, its first 30 s (``head``: the language
        of a file without speech) and duration. What keeps it from being read raises (the caller's
        ``audio_errors``); the spool is closed then."""
        chunker, file.store, head = SpeechChunker(self.vad_options), SampleSpool(), []
        try:
            for block in sample_blocks(file.audio, READ_BLOCK):
                if sum(map(len, head)) < N_SAMPLES:
                    head.append(np.asarray(block[:N_SAMPLES - sum(map(len, head))], np.float32))
                self._spool(file, chunker.feed(block))
                self.peak_held = max(self.peak_held, chunker.peak + len(block))
            self._spool(file, chunker.finish())
        except BaseException:
            file.store.close()
            raise
        file.head = np.concatenate(head) if head else np.zeros(0, np.float32)
        file.audio = None
        file.duration = chunker.samples // HOP_LENGTH * HOP_LENGTH / SAMPLE_RATE

    @staticmethod
    def _spool(file, chunks: list) -> None:
        for start, end, samples in chunks:
            file.chunks.append((start, end))
            file.store.append(samples)

    def start(self, files: list) -> Iterator[Event]:
        """Add the files' chunks, with their languages (detected together where needed)."""
        owner = self.owner
        detect = [f for f in files if f.language is None and owner.model.is_multilingual]
        probs = {}
        if detect:
            try:
                probs = dict(zip(map(id, detect), self._detect(detect)))
            except (RuntimeError, ValueError) as e:  # e.g. out of memory: these files fail, the others go on
                files = [f for f in files if f not in detect]
                yield from (owner.failed(f, decoding_error(e)) for f in detect)
        for file in files:
            yield from self._add_chunks(file, probs.get(id(file)))

    def _detect(self, files: list) -> list[dict[str, float]]:
        """Language probabilities of each file on its first chunk (its first 30 s when it has no speech)."""
        owner = self.owner
        encoding = owner.scheduler.encoding
        first = [f.store.read(0) if f.chunks else f.head for f in files]
        probs, _ = detect_languages(owner.model, encoding, [load_mel(encoding, s) for s in first], owner.tokenizer)
        return probs

    def _add_chunks(self, file, probs: Optional[dict[str, float]]) -> Iterator[Event]:
        owner = self.owner
        speech = sum(end - start for start, end in file.chunks) / SAMPLE_RATE
        _, file.info = stream_info(owner.model, owner.tokenizer, file.language, probs, file.options, file.duration,
                                   duration_after_vad=speech)
        yield owner.started(file)  # (cancel() during this event finds no file yet: it says to call again)
        if not file.chunks:
            yield owner.finished(file)
            return
        owner.files[file.id] = file
        file.head = None
        self.adding.append(file)
        self.top_up()

    def top_up(self) -> None:
        """Add the next chunks of the started files (in order) while fewer than two batches of streams wait; the
        chunks of a file failed or cancelled meanwhile are dropped."""
        owner = self.owner
        while self.adding and owner.outstanding < 2 * owner.batch_size:
            file = self.adding[0]
            if owner.files.get(file.id) is not file or file.added == len(file.chunks):
                self.adding.popleft()
                continue
            owner.scheduler.add(file.store.read(file.added), options=file.options, language=file.info.language,
                                initial_prompt=file.initial_prompt, stream_id=(file.id, file.added),
                                min_window_s=MIN_WINDOW_S)
            file.added += 1
            owner.outstanding += 1

    def streams(self, file) -> int:
        return len(file.chunks)

    def merge(self, file, k: int, event: Event) -> Iterator[Event]:
        """A chunk's event (not ``Failed``: the owner's) -> the file's: its segments once the chunks before it are
        done."""
        if isinstance(event, Segments):
            file.segments.setdefault(k, []).extend(event.segments)
            self.progress(file, k, event.done)
        elif isinstance(event, Finished):
            file.finished.add(k)
            yield from self._emit(file)

    def progress(self, file, k: int, seconds: float) -> None:
        """Chunk ``k`` of ``file`` is decoded up to ``seconds`` (of the chunk): the file's duration times the share
        of its chunks' audio decoded."""
        speech = file.info.duration_after_vad
        if self.owner.on_progress is None or not speech:
            return
        file.decoded[k] = max(file.decoded.get(k, 0.0), seconds)
        self.owner.on_progress(file.id, file.duration * min(sum(file.decoded.values()) / speech, 1.0))

    def _emit(self, file) -> Iterator[Event]:
        """The segments of the file's finished chunks that follow the ones given out, moved to its timeline."""
        while file.emitted in file.finished:
            start, end = file.chunks[file.emitted]
            segments = []
            for segment in file.segments.pop(file.emitted, []):
                segments.append(moved(segment, file.next_id, start, end))
                file.next_id += 1
            file.emitted += 1
            last = file.emitted == len(file.chunks)
            yield Segments(file.id, segments, file.info.duration if last else end / SAMPLE_RATE)
            if last:
                yield self.owner.finished(file)
                return


__all__ = ["ChunkPlan", "MIN_WINDOW_S", "READ_BLOCK", "chunk_options"]
