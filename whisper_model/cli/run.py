"""Command line: transcribe or translate audio files and write txt/srt/vtt/tsv/json.

    python -m whisper_model.run --input_file clip.wav --model tiny.en --output_format all --output_dir out

Transcription options keep openai-whisper's names and defaults. Each file is fully transcribed before any
output for it is written, and every output file is written atomically: a failure leaves no partial output.
The files go through one ``scheduler.Scheduler``: ``--batch_size N`` transcribes up to N files at once (their
windows encoded and decoded together; 1: one after the other). Each file's outputs are written as soon as that
file is complete; a file that fails is reported while the others go on. Exit status: 0, 1 when a file failed,
2 for bad options, a missing input file, or a model that cannot be loaded.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

from ..errors import AudioError, DecodingError, OptionError, OutputError, WhisperError
from ..io.writers import FORMATS, write_result
from ..options import TranscriptionOptions
from ..pipeline import WhisperModel
from ..scheduler import Failed, Finished, Scheduler, Segments, Started
from ..transcribe import result_dict

FILE_ERRORS = (AudioError, DecodingError, OutputError)  # what fails one file while the others go on


def _str2bool(value: str) -> bool:
    table = {"true": True, "false": False, "1": True, "0": False, "yes": True, "no": False}
    if value.lower() not in table:
        raise argparse.ArgumentTypeError(f"expected True or False, got {value!r}")
    return table[value.lower()]


def _optional_float(value: str) -> float | None:
    return None if value == "None" else float(value)


def _optional_int(value: str) -> int | None:
    return None if value == "None" else int(value)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m whisper_model.run", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--input_file", nargs="+", required=True, help="audio or video files to transcribe")
    p.add_argument("--model", default="tiny.en", help="model name (tiny.en, base) or checkpoint path "
                   "(openai-whisper .pt, Hugging Face dir, CTranslate2 dir)")
    p.add_argument("--engine_dir", default=None, help="engine built by whisper_model.build (replaces --model)")
    p.add_argument("--device", choices=("cpu", "cuda"), default=None, help="default: cuda when available")
    p.add_argument("--dtype", choices=("float32", "float16", "bfloat16"), default=None,
                   help="default: float16 on cuda, float32 on cpu")
    p.add_argument("--output_dir", default=".", help="where to write the outputs")
    p.add_argument("--output_format", choices=FORMATS + ("all",), default="all")
    p.add_argument("--verbose", type=_str2bool, default=True, help="print segments as they are decoded")
    p.add_argument("--task", choices=("transcribe", "translate"), default="transcribe")
    p.add_argument("--language", default="auto", help="language code or name, or 'auto' to detect")
    p.add_argument("--temperature", type=float, default=0.0)
    p.add_argument("--best_of", type=_optional_int, default=5, help="candidates when sampling (temperature > 0)")
    p.add_argument("--beam_size", type=_optional_int, default=5, help="beams at temperature 0 (None: greedy)")
    p.add_argument("--patience", type=_optional_float, default=None)
    p.add_argument("--length_penalty", type=_optional_float, default=None)
    p.add_argument("--suppress_tokens", default="-1", help="comma-separated token ids; -1: non-speech symbols")
    p.add_argument("--initial_prompt", default=None)
    p.add_argument("--condition_on_previous_text", type=_str2bool, default=True)
    p.add_argument("--temperature_increment_on_fallback", type=_optional_float, default=0.2)
    p.add_argument("--compression_ratio_threshold", type=_optional_float, default=2.4)
    p.add_argument("--logprob_threshold", type=_optional_float, default=-1.0)
    p.add_argument("--no_speech_threshold", type=_optional_float, default=0.6)
    p.add_argument("--without_timestamps", action="store_true", help="decode text only (no timestamp tokens)")
    p.add_argument("--batch_size", type=int, default=1,
                   help="files transcribed together (1: one file after the other)")
    return p


def temperatures(start: float, increment: float | None) -> tuple[float, ...]:
    """The fallback schedule: start, start+increment, ... up to 1.0 (just ``start`` without an increment)."""
    if increment is None:
        return (start,)
    if increment <= 0:
        raise OptionError(f"--temperature_increment_on_fallback must be positive, got {increment}")
    return tuple(float(t) for t in np.arange(start, 1.0 + 1e-6, increment))


def transcription_options(args: argparse.Namespace) -> TranscriptionOptions:
    return TranscriptionOptions(
        task=args.task, temperature=temperatures(args.temperature, args.temperature_increment_on_fallback),
        best_of=args.best_of, beam_size=args.beam_size, patience=args.patience,
        length_penalty=args.length_penalty, suppress_tokens=args.suppress_tokens,
        condition_on_previous_text=args.condition_on_previous_text,
        compression_ratio_threshold=args.compression_ratio_threshold, logprob_threshold=args.logprob_threshold,
        no_speech_threshold=args.no_speech_threshold, without_timestamps=args.without_timestamps,
    )


def load(args: argparse.Namespace) -> WhisperModel:
    dtype = getattr(torch, args.dtype) if args.dtype else None
    if args.engine_dir:
        return WhisperModel.from_engine(args.engine_dir, device=args.device)
    return WhisperModel(args.model, device=args.device, dtype=dtype)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    missing = [f for f in args.input_file if not Path(f).is_file()]
    if missing:
        print(f"error: input file not found: {', '.join(missing)}", file=sys.stderr)
        return 2
    try:
        if args.batch_size < 1:
            raise OptionError(f"--batch_size must be a positive integer, got {args.batch_size}")
        options = transcription_options(args)
        model = load(args)
        scheduler = model.scheduler(batch_size=args.batch_size)
        language = None if args.language.lower() == "auto" else args.language
        for index, path in enumerate(args.input_file):  # language and task checked for the model here
            scheduler.add(path, options=options, language=language, initial_prompt=args.initial_prompt,
                          stream_id=index)
    except (WhisperError, RuntimeError) as e:  # bad options, a model (or device) that cannot be loaded
        print(f"error: {e}", file=sys.stderr)
        return 2
    return transcribe_files(args, scheduler)


def transcribe_files(args: argparse.Namespace, scheduler: Scheduler) -> int:
    """Run ``scheduler`` (stream ids: indices into ``args.input_file``): print segments as they are decoded,
    write each file's outputs once it is complete, report each failure. 1 when a file failed, else 0."""
    paths, failures, collected, started = args.input_file, 0, {}, {}
    prefix = args.batch_size > 1 and len(paths) > 1  # windows of several files interleave
    for event in scheduler.events():
        index, path = event.stream_id, paths[event.stream_id]
        try:
            if isinstance(event, Failed):
                raise event.error
            if isinstance(event, Started):
                collected[index], started[index] = [], time.perf_counter()
            elif isinstance(event, Segments):
                collected[index] += event.segments
                for seg in event.segments if args.verbose else ():
                    _print_segment(seg, f"{path}: " if prefix else "")
            elif isinstance(event, Finished):
                written = _write(args, path, collected.pop(index), event.info)
                _report(path, event.info, time.perf_counter() - started.pop(index), written)
        except FILE_ERRORS as e:
            failures += 1
            collected.pop(index, None)
            print(f"error: {path}: {e}", file=sys.stderr)
    return 1 if failures else 0


def _print_segment(seg, prefix: str = "") -> None:
    print(f"{prefix}[{seg.start:7.2f} --> {seg.end:7.2f}] {seg.text.strip()}", flush=True)


def _write(args: argparse.Namespace, path: str, segments, info) -> list:
    try:
        return write_result(result_dict(segments, info), path, args.output_dir, args.output_format)
    except OSError as e:
        raise OutputError(f"cannot write the outputs: {e}") from e


def _report(path: str, info, seconds: float, written) -> None:
    print(f"{path}: language={info.language} duration={info.duration:.1f}s time={seconds:.1f}s "
          f"-> {', '.join(str(w) for w in written)}", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
