"""The chunk plan of ``chunking="vad"``: a file's speech cut into chunks of at most 30 s, every chunk a stream of the
one ``Scheduler`` (decoded in parallel, with the chunks of any file), their segments put back on the file's
timeline in time order. ``chunked.ChunkedScheduler`` owns the files and hands each of them here.

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

from dataclasses import replace
from typing import Iterator, Optional

from .errors import OptionError
from .io.audio import HOP_LENGTH, N_SAMPLES, SAMPLE_RATE
from .io.vad import VadOptions, plan_chunks
from .longform import Segment, detect_languages, load_mel, moved
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

    def options(self, options: TranscriptionOptions) -> TranscriptionOptions:
        return chunk_options(options)

    def plan(self, file, regions: list) -> None:
        max_samples = int(self.vad_options.max_speech_duration_s * SAMPLE_RATE)
        file.chunks = plan_chunks(regions, int(file.samples.shape[0]), max_samples)

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
        first = [f.samples[slice(*f.chunks[0])] if f.chunks else f.samples[:N_SAMPLES] for f in files]
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
        for k, (start, end) in enumerate(file.chunks):
            owner.scheduler.add(file.samples[start:end], options=file.options, language=file.info.language,
                                initial_prompt=file.initial_prompt, stream_id=(file.id, k), min_window_s=MIN_WINDOW_S)
        owner.outstanding += len(file.chunks)
        file.samples = None

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


__all__ = ["ChunkPlan", "MIN_WINDOW_S", "chunk_options"]
