"""Long files through voice activity detection: speech chunks decoded in parallel, or non-speech removed.

    scheduler = make_scheduler(model, batch_size=16, chunking="vad")   # a ChunkedScheduler around a Scheduler
    scheduler.add("talk.mp3", stream_id="talk")         # the same add() / events() as scheduler.Scheduler
    scheduler.add("call.wav", vad_filter=True)          # each file may take another path (a server's requests)
    for event in scheduler.events():                    # per file: Started, Segments (time order), Finished
        ...

Each file takes one of three paths, the scheduler's own unless ``add`` says otherwise: ``chunking="vad"`` (the
chunk plan, ``chunk_plan.ChunkPlan``: Silero VAD finds the speech, ``io.vad.CHUNKING``: pauses of 160 ms or more
end a region, 400 ms of padding, regions of at most 30 s cut at their longest pause; ``io.vad.plan_chunks`` joins
consecutive regions into chunks of at most 30 s cut only in pauses, every chunk a stream of the one ``Scheduler``,
decoded ``batch_size`` at a time whatever file it comes from); ``vad_filter=True`` (the speech filter,
``speech_filter.SpeechFilter``: the speech joined, one stream, times mapped back); or neither (the file as one
stream, as ``Scheduler`` would decode it). A file's segments come out in time order on the file's timeline, their
ids counting from 0 per file. Files are loaded (and their speech found) lazily, while fewer than two batches of
streams are waiting; a file's chunks are added to the scheduler the same way (the chunk plan reads a file in
blocks and keeps its chunks on disk until then: memory bounded by a few chunks, not by the file's length).
"""
from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field, replace
from typing import Hashable, Iterator, Optional

from .chunk_plan import ChunkPlan
from .encoding import Audio
from .errors import AudioError, OptionError, audio_errors
from .io.audio import N_SAMPLES, SAMPLE_RATE
from .io.tokenizer import Tokenizer
from .io.vad import CHUNKING, FILTERING, SpeechMap, VadOptions
from .live import LIVE_STEP_S, TRIM_S
from .longform import TranscriptionInfo
from .options import TranscriptionOptions
from .scheduler import Event, Failed, Finished, Intake, ProgressCallback, Scheduler, Started
from .speech_filter import SpeechFilter, WholeFile

CHUNKINGS = ("none", "vad")
VAD_PATHS = {"vad": "chunking='vad'", "filter": "vad_filter=True"}  # the paths through VAD, as options


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


def path_name(chunking: str, vad_filter: bool) -> str:
    """The path of a file: "vad" (chunk plan), "filter" (speech filter) or "none"."""
    return "vad" if chunking == "vad" else "filter" if vad_filter else "none"


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
                            vad_filter=vad_filter, vad_options=vad_options, on_progress=on_progress)


@dataclass(eq=False)
class File:
    """One audio of a ``ChunkedScheduler`` and its ``path``: its chunks (sample ranges) or its speech map, and the
    segments of its chunks until they can be given out in time order."""
    id: Hashable
    audio: Optional[Audio]
    options: TranscriptionOptions  # what its streams are decoded with
    language: Optional[str]
    initial_prompt: Optional[str]
    path: object = None  # ChunkPlan, SpeechFilter or WholeFile
    samples: object = None  # (speech filter) the file's samples
    store: object = None  # (chunk plan) io.sample_spool.SampleSpool: each chunk's samples; (speech filter of a file)
    # its joined speech as a WAV file object (io.speech_wav); closed when the file is done
    head: object = None  # (chunk plan) the first 30 s, until the language is known
    added: int = 0  # (chunk plan) chunks added to the scheduler
    duration: float = 0.0  # seconds of audio (whole mel frames)
    info: Optional[TranscriptionInfo] = None
    chunks: list = field(default_factory=list)  # [(start, end)] in samples (chunk plan)
    speech: Optional[SpeechMap] = None  # (speech filter)
    segments: dict = field(default_factory=dict)  # chunk -> its segments (times within the chunk)
    decoded: dict = field(default_factory=dict)  # chunk -> seconds of it decoded (``on_progress``)
    finished: set = field(default_factory=set)  # chunks decoded to the end
    emitted: int = 0  # chunks given out
    next_id: int = 0


class ChunkedScheduler:
    """Files through voice activity detection, as streams of ``scheduler`` (see the module's docstring). The same
    ``add``, ``cancel``, ``events`` and ``on_progress`` as ``Scheduler`` (a file's progress: the chunk plan, its
    duration times the share of its chunks' audio decoded; the speech filter, the joined speech's progress on its
    timeline); one ``events()`` iteration at a time. ``chunking`` / ``vad_filter``: the path of a file ``add``
    gives none (default ``vad_filter``: True with ``chunking="none"``); ``vad_options`` tune that path's VAD."""

    def __init__(self, model, *, batch_size: int = 8, tokenizer: Optional[Tokenizer] = None, chunking: str = "vad",
                 vad_filter: Optional[bool] = None, vad_options: Optional[VadOptions] = None,
                 on_progress: Optional[ProgressCallback] = None):
        vad_filter = chunking == "none" if vad_filter is None else vad_filter
        check_chunking(chunking, vad_filter, vad_options)
        self.on_progress = on_progress
        self.scheduler = Scheduler(model, batch_size=batch_size, tokenizer=tokenizer,
                                   on_progress=None if on_progress is None else self._progress)
        self.model, self.tokenizer = model, tokenizer
        self.default = path_name(chunking, vad_filter)
        # the defaults run Silero where the model runs (the same regions on CPU and GPU, faster on the GPU)
        vad = {name: replace(base, device=str(model.device)) for name, base in (("vad", CHUNKING),
                                                                                 ("filter", FILTERING))}
        if vad_options is not None:
            vad[self.default] = vad_options
        self.paths = {"vad": ChunkPlan(self, vad["vad"]), "filter": SpeechFilter(self, vad["filter"]),
                      "none": WholeFile(self)}
        self.intake = Intake(model, tokenizer)
        self._queue: deque[File] = deque()
        self.files: dict[Hashable, File] = {}  # started, not finished
        self.outstanding = 0  # streams of files added to ``scheduler`` and not finished or failed
        self.live: set = set()  # ids of the live streams (``Scheduler.add_live``), as they are in ``scheduler``

    @property
    def batch_size(self) -> int:
        return self.scheduler.batch_size

    def add(self, audio: Audio, *, options: Optional[TranscriptionOptions] = None, language: Optional[str] = None,
            initial_prompt: Optional[str] = None, stream_id: Optional[Hashable] = None,
            chunking: Optional[str] = None, vad_filter: Optional[bool] = None) -> Hashable:
        """Queue ``audio`` (a path, file bytes, or 16 kHz mono samples [n]); it is loaded and its speech found
        when the scheduler needs more streams. ``chunking`` / ``vad_filter``: this file's path (default: the
        scheduler's). ``OptionError`` now for a bad ``language`` / ``options.task``, for
        ``condition_on_previous_text=True`` with ``chunking="vad"`` and for ``options.clip_timestamps`` other than
        the whole audio with VAD."""
        name = self.default if chunking is None and vad_filter is None else \
            path_name(chunking or "none", bool(vad_filter))
        if chunking is not None or vad_filter is not None:
            check_chunking(chunking or "none", bool(vad_filter), None)
        path = self.paths[name]
        options, stream_id = self.intake.admit(options, language, stream_id, check=lambda o: _checked(o, name, path))
        self._queue.append(File(stream_id, audio, options, language, initial_prompt, path))
        return stream_id

    def add_live(self, *, options: Optional[TranscriptionOptions] = None, language: Optional[str] = None,
                 initial_prompt: Optional[str] = None, stream_id: Optional[Hashable] = None,
                 step_s: float = LIVE_STEP_S, trim_s: float = TRIM_S) -> Hashable:
        """A live stream (``Scheduler.add_live``): no VAD path; its events are the scheduler's."""
        options, stream_id = self.intake.admit(options, language, stream_id)
        try:
            self.scheduler.add_live(options=options, language=language, initial_prompt=initial_prompt,
                                    stream_id=stream_id, step_s=step_s, trim_s=trim_s)
        except Exception:
            self.intake.release(stream_id)
            raise
        self.live.add(stream_id)
        return stream_id

    def feed(self, stream_id: Hashable, samples) -> None:
        self.scheduler.feed(stream_id, samples)

    def end(self, stream_id: Hashable) -> None:
        self.scheduler.end(stream_id)

    def cancel(self, stream_id: Hashable) -> bool:
        """Drop a queued or started file (``Scheduler.cancel``): its streams leave the scheduler (one being
        admitted at this moment goes at its next event); the events being given out may still name it, no later
        one does. Returns whether it was dropped: False for a file finished, failed or unknown, or being started
        at this moment (call again after the next event). A live stream: ``Scheduler.cancel``."""
        if stream_id in self.live:
            self.live.discard(stream_id)
            self.intake.release(stream_id)
            return self.scheduler.cancel(stream_id)
        for file in self._queue:
            if file.id == stream_id:
                self._queue.remove(file)
                self.intake.release(stream_id)
                return True
        file = self.files.get(stream_id)
        if file is None:
            return False
        self._drop(file)
        for k in range(file.path.streams(file)):
            if k not in file.finished and self.scheduler.cancel((stream_id, k)):
                self.outstanding -= 1
        file.finished.clear()  # the file's segments being given out stop
        return True

    def events(self) -> Iterator[Event]:
        """Run until every file added has finished or failed. Per file: ``Started`` (language known), then
        ``Segments`` (the chunk plan: one per chunk, in time order; else one per window), then ``Finished``; or
        ``Failed`` at any point (its other chunks are dropped)."""
        plan = self.paths["vad"]
        while self._queue or self.outstanding or plan.adding or self.scheduler.due:
            yield from self._feed()
            for event in self.scheduler.events():
                yield from self._merge(event)
                if (self._queue or plan.adding) and self.outstanding < 2 * self.batch_size:
                    yield from self._feed()
            if self.outstanding and not self._queue:
                raise RuntimeError(f"{self.outstanding} chunk streams never finished")  # a broken invariant

    def _feed(self) -> Iterator[Event]:
        """Load queued files and find their speech until the scheduler has two batches of streams to go on with;
        start them a batch at a time (the chunk plan detects their languages together)."""
        plan = self.paths["vad"]
        plan.top_up()
        ready: list[File] = []
        while self._queue and not plan.adding and \
                self.outstanding + sum(len(f.chunks) or 1 for f in ready) < 2 * self.batch_size:
            file = self._queue.popleft()
            if file.path.finds_speech:
                try:
                    self._find_speech(file)
                except AudioError as e:
                    yield self.failed(file, e)
                    continue
            ready.append(file)
        for start in range(0, len(ready), self.batch_size):
            batch = ready[start: start + self.batch_size]
            for path in self.paths.values():
                yield from path.start([f for f in batch if f.path is path])

    def _find_speech(self, file: File) -> None:
        with audio_errors():
            file.path.find(file)

    def _merge(self, event: Event) -> Iterator[Event]:
        """One event of a stream -> the events of its file (a live stream's: as they are)."""
        if event.stream_id in self.live:
            if isinstance(event, (Finished, Failed)):
                self.live.discard(event.stream_id)
                self.intake.release(event.stream_id)
            yield event
            return
        file_id, k = event.stream_id
        if isinstance(event, (Finished, Failed)):
            self.outstanding -= 1
        file = self.files.get(file_id)
        if file is None:  # the file failed or was cancelled before: its streams still running go too
            if self.scheduler.cancel(event.stream_id):
                self.outstanding -= 1
            return
        if isinstance(event, Failed):
            yield self.failed(file, event.error)
        else:
            yield from file.path.merge(file, k, event)

    def _progress(self, stream_id: Hashable, seconds: float) -> None:
        """A stream's ``on_progress`` -> its file's."""
        file_id, k = stream_id
        file = self.files.get(file_id)
        if file is not None:
            file.path.progress(file, k, seconds)

    # the paths' bookkeeping: a file's start and end
    def started(self, file: File) -> Started:
        return Started(file.id, file.info)

    def finished(self, file: File) -> Finished:
        self._drop(file)
        return Finished(file.id, file.info)

    def failed(self, file: File, error: Exception) -> Failed:
        self._drop(file)
        file.segments = None
        return Failed(file.id, error)

    def _drop(self, file: File) -> None:
        """``file`` is done: its id free, its samples and spooled chunks gone."""
        self.files.pop(file.id, None)
        self.intake.release(file.id)
        file.samples = file.head = None
        if file.store is not None:
            file.store.close()


def _checked(options: TranscriptionOptions, name: str, path) -> TranscriptionOptions:
    """``options`` for a file of path ``name``: clip_timestamps is refused with VAD, the path's own rule applies."""
    if name in VAD_PATHS and options.clipped:
        raise OptionError(f"clip_timestamps cannot be used with {VAD_PATHS[name]}: the times decoded are the speech "
                          "that VAD finds; leave it at '0' (the whole audio), or decode without VAD")
    return path.options(options)


__all__ = ["CHUNKINGS", "ChunkedScheduler", "check_chunking", "make_scheduler", "path_name"]
