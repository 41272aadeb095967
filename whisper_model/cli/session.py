"""One run of the command line: check the flags, skip missing inputs, load the model, transcribe every input
through one ``Scheduler``, write each file's outputs when it is complete, count what happened.

Errors are one line each, written for a shell user (flags named as ``--flag``); nothing here prints a traceback
for a user's error. ``Session.run`` returns the exit status (see ``args.build_parser``'s epilog).
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

from ..errors import AudioError, DecodingError, OptionError, OutputError, WhisperError
from ..io.writers import WriterOptions, write_result
from ..options import TranscriptionOptions
from ..results import Results
from ..scheduler import Failed, Finished, Scheduler, Segments, Started
from ..service import ModelSpec, english_only_language, load_model
from ..service.loading import resolve_device, resolve_dtype
from ..transcribe import result_dict
from ..chunk_plan import chunk_options
from ..chunked import check_chunking
from ..service.flags import default_batch_size
from .args import temperatures, usage_error
from .inputs import check_output_dir, expand_inputs
from .progress import Progress
from .signals import SignalGuard

FILE_ERRORS = (AudioError, DecodingError, OutputError)  # what fails one input while the others go on


def transcription_options(args: argparse.Namespace) -> TranscriptionOptions:
    """The flags as ``TranscriptionOptions``. As in openai-whisper's ``transcribe()``, beam search (``--beam_size``,
    ``--patience``) is used only at temperature 0: a schedule without 0 samples (``--best_of``) at every step.
    ``--clip_timestamps`` (other than the whole file) with VAD is an ``OptionError``."""
    schedule = temperatures(args.temperature, args.temperature_increment_on_fallback)
    beam = 0 in schedule
    given = "condition_on_previous_text" in args.given
    conditioned = args.condition_on_previous_text if given or args.chunking != "vad" else None  # None: the path's
    options = TranscriptionOptions(
        task=args.task, temperature=schedule, best_of=args.best_of, beam_size=args.beam_size if beam else None,
        patience=args.patience if beam else None, length_penalty=args.length_penalty,
        suppress_tokens=args.suppress_tokens, condition_on_previous_text=conditioned,
        carry_initial_prompt=args.carry_initial_prompt, stop_repetition_loops=args.stop_repetition_loops,
        compression_ratio_threshold=args.compression_ratio_threshold, logprob_threshold=args.logprob_threshold,
        no_speech_threshold=args.no_speech_threshold, without_timestamps=args.without_timestamps,
        word_timestamps=args.word_timestamps, prepend_punctuations=args.prepend_punctuations,
        append_punctuations=args.append_punctuations, clip_timestamps=args.clip_timestamps,
        hallucination_silence_threshold=args.hallucination_silence_threshold)
    if args.chunking == "vad":
        options = chunk_options(options)  # an explicit --condition_on_previous_text True is refused
    if options.clipped and (args.chunking == "vad" or args.vad_filter):
        vad = "--chunking vad" if args.chunking == "vad" else "--vad_filter True"
        raise OptionError(f"--clip_timestamps {args.clip_timestamps} cannot be used with {vad}: the times decoded "
                          "are the speech that VAD finds; leave --clip_timestamps out, or transcribe without VAD")
    return options


def writer_options(args: argparse.Namespace) -> WriterOptions:
    """The srt/vtt flags as ``WriterOptions`` (``args.check_word_flags`` has checked them against
    ``--word_timestamps``)."""
    return WriterOptions(highlight_words=args.highlight_words, max_line_width=args.max_line_width,
                         max_line_count=args.max_line_count, max_words_per_line=args.max_words_per_line)


def model_spec(args: argparse.Namespace, options: TranscriptionOptions) -> ModelSpec:
    """The model flags as a ``service.ModelSpec`` (the fast path sized for ``--batch_size`` and the options' beams
    or samples per window)."""
    return ModelSpec(args.model, args.model_dir, args.engine_dir, device=args.device, dtype=args.dtype,
                     fp16=args.fp16, fast=not getattr(args, "eager", False),
                     weight_only_precision=getattr(args, "weight_only_precision", None),
                     int8_kv_cache=getattr(args, "int8_kv_cache", False), max_batch_size=args.batch_size,
                     max_beam_width=max(options.beam_size or 1, options.best_of or 1))


def check_run_flags(args: argparse.Namespace) -> None:
    """The flags of a run (the command line's, the Ray job's) that need no model: ``--batch_size`` (its default
    set), ``--chunking`` / ``--vad_filter``, ``--output_dir``, ``--threads``; ``OptionError`` naming the flag."""
    if args.batch_size is None:
        args.batch_size = default_batch_size(args.chunking)
    if args.batch_size < 1:
        raise OptionError(f"--batch_size must be a positive integer, got {args.batch_size}")
    if args.threads is not None and args.threads < 0:
        raise OptionError(f"--threads must be 0 (torch's default) or positive, got {args.threads}")
    check_chunking(args.chunking, args.vad_filter, None)
    check_output_dir(args.output_dir)


class Session:
    """The counts of one run (for the summary line, also when interrupted) and its progress display."""

    def __init__(self):
        self.started = time.perf_counter()
        self.inputs = self.done = self.failed = self.skipped = 0
        self.audio_s = 0.0
        self.progress: Progress | None = None
        self.writer = WriterOptions()

    def summary(self) -> str:
        wall = time.perf_counter() - self.started
        left = self.inputs - self.done - self.failed - self.skipped
        rtf = f" (real-time factor {wall / self.audio_s:.3f})" if self.audio_s else ""
        counts = f"done {self.done}, failed {self.failed}, skipped {self.skipped}"
        counts += f", not finished {left}" if left > 0 else ""
        return f"{counts}; {self.audio_s:.1f} s of audio in {wall:.1f} s{rtf}"

    def run(self, args: argparse.Namespace, guard: SignalGuard) -> int:
        self.inputs = len(args.audio)  # until the directories are expanded
        try:
            options = self._prepare(args)
        except OptionError as e:
            return usage_error(e)
        inputs = self._existing(args.audio, args.verbose)
        if inputs:
            try:
                scheduler = self._scheduler(args, options, inputs)
            except (WhisperError, RuntimeError, OSError) as e:  # a model, device or output folder that fails
                return usage_error(e)
            self._transcribe(args, inputs, scheduler, guard)
        print(self.summary(), file=sys.stderr, flush=True)
        return 1 if self.failed or self.skipped else 0

    def _advance(self, index: int, seconds: float) -> None:
        """The scheduler's ``on_progress``: the bar moves within a window as its tokens are decoded."""
        if self.progress is not None:
            self.progress.advance(index, seconds)

    def close(self, *, keep: bool) -> None:
        if self.progress is not None:
            self.progress.close(keep=keep)

    def _prepare(self, args: argparse.Namespace) -> TranscriptionOptions:
        check_run_flags(args)
        args.device = resolve_device(args.device)
        args.dtype = resolve_dtype(args.device, args.dtype, args.fp16)
        if args.threads:
            torch.set_num_threads(args.threads)
        options = transcription_options(args)
        self.writer = writer_options(args)
        if args.temperature > 1 and args.temperature_increment_on_fallback is not None and args.verbose is not None:
            print(f"note: --temperature {args.temperature:g} is above 1, so there is no fallback: every window is "
                  f"sampled at {args.temperature:g} (the schedule is --temperature, then steps of "
                  "--temperature_increment_on_fallback up to 1)", file=sys.stderr, flush=True)
        return options

    def _existing(self, paths: list[str], verbose: bool | None) -> list[str]:
        """The input files (a directory: its media files, sorted, said unless ``verbose`` is None); each input
        that cannot be read is reported and skipped."""
        inputs = expand_inputs(paths)
        for line in [f"error: {p}; skipped" for p in inputs.problems] + (inputs.notes if verbose is not None else []):
            print(line, file=sys.stderr, flush=True)
        self.skipped = len(inputs.problems)
        self.inputs = len(inputs.files) + self.skipped
        return inputs.files

    def _scheduler(self, args: argparse.Namespace, options: TranscriptionOptions, inputs: list[str]) -> Scheduler:
        """Load the model, queue every input (stream i: ``inputs[i]``), make the output folder."""
        model = load_model(model_spec(args, options))
        language, warning = english_only_language(args.language, model.is_multilingual, args.model)
        if warning:
            print(warning, file=sys.stderr)
        scheduler = model.scheduler(batch_size=args.batch_size, chunking=args.chunking, vad_filter=args.vad_filter,
                                    on_progress=self._advance)
        for index, path in enumerate(inputs):  # language and task checked for this model here
            scheduler.add(path, options=options, language=language, initial_prompt=args.initial_prompt,
                          stream_id=index)
        try:
            Path(args.output_dir).mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise OutputError(f"--output_dir {args.output_dir}: cannot create it: {e.strerror or e}") from e
        return scheduler

    def _transcribe(self, args: argparse.Namespace, inputs: list[str], scheduler: Scheduler,
                    guard: SignalGuard) -> None:
        """Run the scheduler: show progress, write each file's outputs once it is complete (a signal waits for
        the writing to end), report each failure and go on."""
        progress = self.progress = Progress(inputs, verbose=args.verbose, batch_size=args.batch_size)
        results = Results()
        for event in scheduler.events():
            i, path = event.stream_id, inputs[event.stream_id]
            result = results.add(event)
            try:
                if isinstance(event, Failed):
                    raise event.error
                if isinstance(event, Started):
                    progress.started(i, event.info.duration)
                elif isinstance(event, Segments):
                    progress.segments(i, event.segments, event.done)
                elif isinstance(event, Finished):
                    with guard.deferred():
                        written = _write(args, path, result.segments, event.info, self.writer)
                    self.done, self.audio_s = self.done + 1, self.audio_s + event.info.duration
                    progress.finished(i, event.info.duration, _report(path, event.info, result.seconds, written))
            except FILE_ERRORS as e:
                self.failed += 1
                progress.failed(i, f"error: {path}: {e}")
        progress.close()
        self.progress = None


def _write(args: argparse.Namespace, path: str, segments, info, writer: WriterOptions) -> list:
    try:
        return write_result(result_dict(segments, info), path, args.output_dir, args.output_format, writer)
    except OSError as e:
        raise OutputError(f"cannot write the outputs: {e}") from e


def _report(path: str, info, seconds: float, written) -> str:
    return (f"{path}: language={info.language} duration={info.duration:.1f}s "
            f"time={seconds:.1f}s -> {', '.join(str(w) for w in written)}")
