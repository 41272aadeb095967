"""Long files through voice activity detection: speech chunks decoded in parallel, or non-speech removed.

    scheduler = make_scheduler(model, batch_size=16, chunking="vad")   # a ChunkedScheduler around a Scheduler
    scheduler.add("talk.mp3", stream_id="talk")         # the same add() / events() as scheduler.Scheduler
    for event in scheduler.events():                    # per file: Started, Segments (time order), Finished
        ...

``chunking="vad"``: Silero VAD finds the speech of each file (``io.vad.CHUNKING``: pauses of 160 ms or more end a
region, 400 ms of padding, regions of at most 30 s cut at their longest pause); ``io.vad.plan_chunks`` joins
consecutive regions into chunks of at most 30 s, cut only in pauses (a file of at most 30 s with speech is one
chunk: the whole file). Every chunk of every file is a stream of the one ``Scheduler``: chunks are decoded
``batch_size`` at a time, whatever file they come from. Each chunk is decoded without the previous chunk's text
(``condition_on_previous_text`` None means False here; an explicit True is an ``OptionError``) and with the
file's ``initial_prompt`` as its own prompt; all other options apply to each chunk as to a sequential window.
When a chunk's window leaves less than ``MIN_WINDOW_S`` (1 s) after its last complete timestamp, the text after
that timestamp is the chunk's last segment, up to the chunk's end (``LongFormState.min_window``), rather than the
rest (mostly padding) being decoded as a window of its own, which invites a hallucination ("Thank you."); a
longer rest is decoded as the sequential loop would.
The language is detected once per file, on its first chunk (its first speech), and given to every chunk. A
file's segments come out per chunk, in time order, as soon as the chunks before have finished; their times
(``start``, ``end``, ``seek``) are on the file's timeline and their ids count from 0 per file. Audio outside the
chunks (silence, noise, music) is not decoded; times the model puts past a chunk's end (in the window's padding)
are the chunk's end. ``info.duration_after_vad``: seconds inside chunks.

``vad_filter=True`` (sequential): the file's speech (``io.vad.FILTERING``: pauses of 2 s or more removed, 400 ms
of padding) is joined and transcribed as one stream exactly as ``chunking="none"`` would transcribe it (prompted
with previous text, language detected on the first 30 s of speech); segment times are mapped back to the file
(faster-whisper's ``vad_filter``). ``info.duration_after_vad``: seconds of speech kept.
"""
from __future__ import annotations

import itertools
from collections import deque
from dataclasses import dataclass, field, replace
from typing import Hashable, Iterator, Optional

from .encoding import Audio, load_samples
from .errors import AudioError, DecodingError, OptionError
from .io.audio import HOP_LENGTH, N_SAMPLES, SAMPLE_RATE
from .io.tokenizer import Tokenizer
from .io.vad import CHUNKING, FILTERING, SpeechMap, VadOptions, plan_chunks, speech_regions
from .longform import Segment, TranscriptionInfo, detect_languages, load_mel
from .options import TranscriptionOptions, checked_tokenizer
from .scheduler import Event, Failed, Finished, ProgressCallback, Scheduler, Segments, Started

CHUNKINGS = ("none", "vad")
VAD_PATHS = {"vad": "chunking='vad'", "none": "vad_filter=True"}  # the ChunkedScheduler's two paths, as options
MIN_WINDOW_S = 1.0  # a chunk's rest shorter than this after its last complete timestamp is not decoded


def check_chunking(chunking: str, vad_filter: bool, vad_options: Optional[VadOptions]) -> None:
    """``OptionError`` naming the option when ``chunking`` / ``vad_filter`` / ``vad_options`` cannot be used."""
    if chunking not in CHUNKINGS:
        raise OptionError(f"chunking must be one of {CHUNKINGS}, got {chunking!r}")
    if not isinstance(vad_filter, bool):
        raise OptionError(f"vad_filter must be True or False, got {vad_filter!r}")
    if chunking == "vad" and vad_filter:
        raise OptionError("vad_filter=True applies to the sequential path (chunking='none'); chunking='vad' "
                          "already decodes only the speech it finds: give one of them")
    if vad_options is not None and not isinstance(vad_options, VadOptions):
        raise OptionError(f"vad_options must be an io.vad.VadOptions, got {type(vad_options).__name__}")
    if vad_options is not None and chunking == "none" and not vad_filter:
        raise OptionError("vad_options needs chunking='vad' or vad_filter=True (no voice activity detection runs "
                          "otherwise)")
    if chunking == "vad" and vad_options is not None and vad_options.max_speech_duration_s > N_SAMPLES / SAMPLE_RATE:
        raise OptionError(f"vad_options.max_speech_duration_s is the longest chunk with chunking='vad': at most "
                          f"{N_SAMPLES // SAMPLE_RATE} s (one window), got {vad_options.max_speech_duration_s}")


def make_scheduler(model, *, batch_size: int = 8, tokenizer: Optional[Tokenizer] = None, chunking: str = "none",
                   vad_filter: bool = False, vad_options: Optional[VadOptions] = None,
                   on_progress: Optional[ProgressCallback] = None):
    """A ``Scheduler`` (``chunking="none"`` without ``vad_filter``) or a ``ChunkedScheduler`` around one: both take
    ``add(audio, options=, language=, initial_prompt=, stream_id=)``, give per-stream events and call
    ``on_progress(stream_id, seconds)`` as windows are decoded."""
    check_chunking(chunking, vad_filter, vad_options)
    if chunking == "none" and not vad_filter:
        return Scheduler(model, batch_size=batch_size, tokenizer=tokenizer, on_progress=on_progress)
    return ChunkedScheduler(model, batch_size=batch_size, tokenizer=tokenizer, chunking=chunking,
                            vad_options=vad_options, on_progress=on_progress)


@dataclass(eq=False)
class _File:
    """One audio of a ``ChunkedScheduler``: its chunks (sample ranges) or its speech map, and the segments of its
    chunks until they can be given out in time order."""
    id: Hashable
    audio: Optional[Audio]
    options: TranscriptionOptions  # what its streams are decoded with
    language: Optional[str]
    initial_prompt: Optional[str]
    samples: object = None
    duration: float = 0.0  # seconds of audio (whole mel frames)
    info: Optional[TranscriptionInfo] = None
    chunks: list = field(default_factory=list)  # [(start, end)] in samples ("vad")
    speech: Optional[SpeechMap] = None  # (vad_filter)
    segments: dict = field(default_factory=dict)  # chunk -> its segments (times within the chunk)
    decoded: dict = field(default_factory=dict)  # chunk -> seconds of it decoded (``on_progress``)
    finished: set = field(default_factory=set)  # chunks decoded to the end
    emitted: int = 0  # chunks given out
    next_id: int = 0


class ChunkedScheduler:
    """Files through voice activity detection, as streams of ``scheduler`` (see the module's docstring):
    ``chunking="vad"`` (speech chunks decoded in parallel) or ``"none"`` (``vad_filter``: the speech joined, one
    stream). The same ``add``, ``events`` and ``on_progress`` as ``Scheduler`` (a file's progress: ``vad``, its
    duration times the share of its chunks' audio decoded; ``vad_filter``, the joined speech's progress on its
    timeline); one ``events()`` iteration at a time."""

    def __init__(self, model, *, batch_size: int = 8, tokenizer: Optional[Tokenizer] = None, chunking: str = "vad",
                 vad_options: Optional[VadOptions] = None, on_progress: Optional[ProgressCallback] = None):
        check_chunking(chunking, chunking == "none", vad_options)
        self.on_progress = on_progress
        self.scheduler = Scheduler(model, batch_size=batch_size, tokenizer=tokenizer,
                                   on_progress=None if on_progress is None else self._progress)
        self.model, self.tokenizer = model, tokenizer
        self.chunking = chunking
        # the defaults run Silero where the model runs (the same regions on CPU and GPU, faster on the GPU)
        self.vad_options = vad_options or replace(CHUNKING if chunking == "vad" else FILTERING,
                                                  device=str(model.device))
        self._queue: deque[_File] = deque()
        self._files: dict[Hashable, _File] = {}  # started, not finished
        self._ids: set = set()
        self._outstanding = 0  # streams added to ``scheduler`` and not finished or failed
        self._counter = itertools.count()

    @property
    def batch_size(self) -> int:
        return self.scheduler.batch_size

    def add(self, audio: Audio, *, options: Optional[TranscriptionOptions] = None, language: Optional[str] = None,
            initial_prompt: Optional[str] = None, stream_id: Optional[Hashable] = None) -> Hashable:
        """Queue ``audio`` (a path, file bytes, or 16 kHz mono samples [n]); it is loaded and its speech found
        when the scheduler needs more chunks. ``OptionError`` now for a bad ``language`` / ``options.task``, for
        ``condition_on_previous_text=True`` with ``chunking="vad"`` and for ``options.clip_timestamps`` other than
        the whole audio."""
        options = TranscriptionOptions() if options is None else options
        if not isinstance(options, TranscriptionOptions):
            raise TypeError(f"options must be a TranscriptionOptions, got {type(options).__name__}")
        checked_tokenizer(self.model, language, options.task, self.tokenizer)
        if options.clipped:
            raise OptionError(f"clip_timestamps cannot be used with {VAD_PATHS[self.chunking]}: the times decoded "
                              "are the speech that VAD finds; leave it at '0' (the whole audio), or decode without VAD")
        if self.chunking == "vad":
            if options.condition_on_previous_text:
                raise OptionError("condition_on_previous_text=True cannot be used with chunking='vad': the chunks "
                                  "of a file are decoded in parallel, each without the previous chunk's text; "
                                  "leave it unset (or False), or use chunking='none'")
            options = replace(options, condition_on_previous_text=False)
        if stream_id is None:
            stream_id = next(i for i in self._counter if i not in self._ids)
        elif stream_id in self._ids:
            raise OptionError(f"stream_id={stream_id!r} is already in use")
        self._ids.add(stream_id)
        self._queue.append(_File(stream_id, audio, options, language, initial_prompt))
        return stream_id

    def cancel(self, stream_id: Hashable) -> bool:
        """Drop a queued or started file (``Scheduler.cancel``): its chunk streams leave the scheduler (one being
        admitted at this moment goes at its next event); the events being given out may still name it, no later
        one does. Returns whether it was dropped: False for a file finished, failed or unknown, or being started
        at this moment (call again after the next event)."""
        for file in self._queue:
            if file.id == stream_id:
                self._queue.remove(file)
                self._ids.discard(stream_id)
                return True
        file = self._files.pop(stream_id, None)
        if file is None:
            return False
        self._ids.discard(stream_id)
        for k in range(len(file.chunks) if self.chunking == "vad" else 1):
            if k not in file.finished and self.scheduler.cancel((stream_id, k)):
                self._outstanding -= 1
        file.finished.clear()  # the file's segments being given out stop
        return True

    def events(self) -> Iterator[Event]:
        """Run until every file added has finished or failed. Per file: ``Started`` (language known), then
        ``Segments`` (``chunking="vad"``: one per chunk, in time order; else one per window), then ``Finished``;
        or ``Failed`` at any point (its other chunks are dropped)."""
        while self._queue or self._outstanding:
            yield from self._feed()
            for event in self.scheduler.events():
                yield from self._merge(event)
                if self._queue and self._outstanding < 2 * self.batch_size:
                    yield from self._feed()
            if self._outstanding and not self._queue:
                raise RuntimeError(f"{self._outstanding} chunk streams never finished")  # a broken invariant

    def _feed(self) -> Iterator[Event]:
        """Load queued files and find their speech until the scheduler has two batches of streams to go on with;
        detect the languages of the new chunked files together; add their streams."""
        ready: list[_File] = []
        while self._queue and self._outstanding + sum(len(f.chunks) or 1 for f in ready) < 2 * self.batch_size:
            file = self._queue.popleft()
            try:
                self._find_speech(file)
            except AudioError as e:
                yield self._failed(file, e)
                continue
            ready.append(file)
        for start in range(0, len(ready), self.batch_size):
            yield from self._start(ready[start: start + self.batch_size])

    def _find_speech(self, file: _File) -> None:
        try:
            file.samples = load_samples(file.audio)
        except (ValueError, OSError, RuntimeError) as e:  # missing file, AudioDecodeError, bad samples
            raise AudioError(str(e)) from e
        file.audio = None
        file.duration = int(file.samples.shape[0]) // HOP_LENGTH * HOP_LENGTH / SAMPLE_RATE
        regions = speech_regions(file.samples, self.vad_options)
        if self.chunking == "vad":
            max_samples = int(self.vad_options.max_speech_duration_s * SAMPLE_RATE)
            file.chunks = plan_chunks(regions, int(file.samples.shape[0]), max_samples)
        else:
            file.speech = SpeechMap(regions)

    def _start(self, files: list[_File]) -> Iterator[Event]:
        """Add the files' streams (``vad``: with their languages, detected together where needed)."""
        if self.chunking != "vad":
            for file in files:
                self._files[file.id] = file
                self.scheduler.add(file.speech.collect(file.samples), options=file.options, language=file.language,
                                   initial_prompt=file.initial_prompt, stream_id=(file.id, 0))
                file.samples = None
                self._outstanding += 1
            return
        detect = [f for f in files if f.language is None and self.model.is_multilingual]
        probs = {}
        if detect:
            try:
                probs = dict(zip(map(id, detect), self._detect(detect)))
            except (RuntimeError, ValueError) as e:  # e.g. out of memory: these files fail, the others go on
                files = [f for f in files if f not in detect]
                yield from (self._failed(f, _decoding_error(e)) for f in detect)
        for file in files:
            yield from self._add_chunks(file, probs.get(id(file)))

    def _detect(self, files: list[_File]) -> list[dict[str, float]]:
        """Language probabilities of each file on its first chunk (its first 30 s when it has no speech)."""
        encoding = self.scheduler.encoding
        first = [f.samples[slice(*f.chunks[0])] if f.chunks else f.samples[:N_SAMPLES] for f in files]
        probs, _ = detect_languages(self.model, encoding, [load_mel(encoding, s) for s in first], self.tokenizer)
        return probs

    def _add_chunks(self, file: _File, probs: Optional[dict[str, float]]) -> Iterator[Event]:
        language = file.language if probs is None else max(probs, key=probs.get)
        code = checked_tokenizer(self.model, language, file.options.task, self.tokenizer).language or "en"
        file.info = TranscriptionInfo(
            language=code, language_probability=1.0 if probs is None else probs[code],
            duration=file.duration, all_language_probs=probs, options=file.options,
            duration_after_vad=sum(end - start for start, end in file.chunks) / SAMPLE_RATE)
        yield Started(file.id, file.info)
        if not file.chunks:
            self._ids.discard(file.id)
            yield Finished(file.id, file.info)
            return
        self._files[file.id] = file
        for k, (start, end) in enumerate(file.chunks):
            self.scheduler.add(file.samples[start:end], options=file.options, language=code,
                               initial_prompt=file.initial_prompt, stream_id=(file.id, k), min_window_s=MIN_WINDOW_S)
        self._outstanding += len(file.chunks)
        file.samples = None

    def _merge(self, event: Event) -> Iterator[Event]:
        """One event of a stream -> the events of its file."""
        file_id, k = event.stream_id
        if isinstance(event, (Finished, Failed)):
            self._outstanding -= 1
        file = self._files.get(file_id)
        if file is None:  # the file failed or was cancelled before: its chunk streams still running go too
            if self.scheduler.cancel(event.stream_id):
                self._outstanding -= 1
            return
        if isinstance(event, Failed):
            yield self._failed(file, event.error)
        elif self.chunking != "vad":
            yield from self._filtered(file, event)
        elif isinstance(event, Segments):
            file.segments.setdefault(k, []).extend(event.segments)
            self._decoded(file, k, event.done)
        elif isinstance(event, Finished):
            file.finished.add(k)
            yield from self._emit(file)

    def _progress(self, stream_id: Hashable, seconds: float) -> None:
        """A chunk stream's ``on_progress`` -> its file's."""
        file_id, k = stream_id
        file = self._files.get(file_id)
        if file is None:
            return
        if self.chunking != "vad":
            self.on_progress(file_id, file.speech.to_audio(seconds, is_end=True))
            return
        self._decoded(file, k, seconds)

    def _decoded(self, file: _File, k: int, seconds: float) -> None:
        """Chunk ``k`` of ``file`` is decoded up to ``seconds`` (of the chunk): tell ``on_progress``."""
        speech = file.info.duration_after_vad
        if self.on_progress is None or not speech:
            return
        file.decoded[k] = max(file.decoded.get(k, 0.0), seconds)
        self.on_progress(file.id, file.duration * min(sum(file.decoded.values()) / speech, 1.0))

    def _emit(self, file: _File) -> Iterator[Event]:
        """The segments of the file's finished chunks that follow the ones given out, moved to its timeline."""
        while file.emitted in file.finished:
            start, end = file.chunks[file.emitted]
            segments = []
            for segment in file.segments.pop(file.emitted, []):
                segments.append(_moved(segment, file.next_id, start, end))
                file.next_id += 1
            file.emitted += 1
            last = file.emitted == len(file.chunks)
            yield Segments(file.id, segments, file.info.duration if last else end / SAMPLE_RATE)
            if last:
                yield self._finished(file, file.info)
                return

    def _filtered(self, file: _File, event: Event) -> Iterator[Event]:
        """An event of a ``vad_filter`` stream (the file's speech, joined) on the file's timeline."""
        speech = file.speech
        if isinstance(event, Started):
            file.info = replace(event.info, duration=file.duration, duration_after_vad=speech.duration)
            yield Started(file.id, file.info)
        elif isinstance(event, Segments):
            margin = self.vad_options.speech_pad_ms / 1000
            segments = [_mapped(s, speech, margin) for s in event.segments]
            yield Segments(file.id, segments, speech.to_audio(event.done, is_end=True))
        elif isinstance(event, Finished):
            yield self._finished(file, file.info)

    def _finished(self, file: _File, info: TranscriptionInfo) -> Finished:
        self._files.pop(file.id, None)
        self._ids.discard(file.id)
        return Finished(file.id, info)

    def _failed(self, file: _File, error: Exception) -> Failed:
        self._files.pop(file.id, None)
        self._ids.discard(file.id)
        file.samples = file.segments = None
        return Failed(file.id, error)


def _moved(segment: Segment, segment_id: int, start: int, end: int) -> Segment:
    """``segment`` of the chunk of samples [start, end) (``start`` a whole mel frame) on the file's timeline; times
    past the chunk's end (timestamps in the window's padding) are the chunk's end."""
    offset, last = start / SAMPLE_RATE, end / SAMPLE_RATE
    words = None if segment.words is None else [
        replace(w, start=round(min(w.start + offset, last), 2), end=round(min(w.end + offset, last), 2))
        for w in segment.words]
    return replace(segment, id=segment_id, seek=segment.seek + start // HOP_LENGTH,
                   start=min(segment.start + offset, last), end=min(segment.end + offset, last), words=words)


def _mapped(segment: Segment, speech: SpeechMap, margin: float) -> Segment:
    """``segment`` of the joined speech, on the file's timeline (``SpeechMap.span_to_audio``)."""
    seek = round(speech.to_audio(segment.seek * HOP_LENGTH / SAMPLE_RATE) * SAMPLE_RATE) // HOP_LENGTH
    start, end = speech.span_to_audio(segment.start, segment.end, margin)
    words = None if segment.words is None else [
        replace(w, start=round(speech.to_audio(w.start), 2), end=round(speech.to_audio(w.end, is_end=True), 2))
        for w in segment.words]
    return replace(segment, seek=seek, start=start, end=end, words=words)


def _decoding_error(e: Exception) -> DecodingError:
    error = DecodingError(f"{type(e).__name__}: {e}")
    error.__cause__ = e
    return error


__all__ = ["CHUNKINGS", "ChunkedScheduler", "check_chunking", "make_scheduler"]
