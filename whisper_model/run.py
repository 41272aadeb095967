"""Command line: transcribe or translate audio files and write txt/srt/vtt/tsv/json.

    python -m whisper_model.run --input_file clip.wav --model tiny.en --output_format all --output_dir out

Transcription options keep openai-whisper's names and defaults. Each file is fully transcribed before any
output for it is written, and every output file is written atomically: a failure leaves no partial output.
``--batch_size N`` (N > 1) transcribes up to N files at once (their windows encoded and decoded together);
each file's outputs are written as soon as that file is complete, and a file that fails to load is reported
while the others go on.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

from .writers import FORMATS, write_result


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
        raise ValueError(f"--temperature_increment_on_fallback must be positive, got {increment}")
    return tuple(float(t) for t in np.arange(start, 1.0 + 1e-6, increment))


def transcribe_options(args: argparse.Namespace) -> dict:
    return dict(
        language=None if args.language.lower() == "auto" else args.language,
        task=args.task,
        temperature=temperatures(args.temperature, args.temperature_increment_on_fallback),
        best_of=args.best_of, beam_size=args.beam_size, patience=args.patience,
        length_penalty=args.length_penalty, suppress_tokens=args.suppress_tokens,
        initial_prompt=args.initial_prompt, condition_on_previous_text=args.condition_on_previous_text,
        compression_ratio_threshold=args.compression_ratio_threshold, logprob_threshold=args.logprob_threshold,
        no_speech_threshold=args.no_speech_threshold, without_timestamps=args.without_timestamps,
    )


def load(args: argparse.Namespace):
    import torch

    from .pipeline import WhisperModel

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
            raise ValueError(f"--batch_size must be a positive integer, got {args.batch_size}")
        options = transcribe_options(args)
        model = load(args)
    except (ValueError, FileNotFoundError, RuntimeError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if args.batch_size > 1:
        return _main_batched(model, args, options)
    failures = 0
    for path in args.input_file:
        start = time.perf_counter()
        try:
            segments, info = model.transcribe(path, progress=args.verbose, **options)
            collected = []
            for seg in segments:
                collected.append(seg)
                if args.verbose:
                    _print_segment(seg)
            written = _write(model, args, path, collected, info)
        except (ValueError, FileNotFoundError, RuntimeError) as e:
            failures += 1
            print(f"error: {path}: {e}", file=sys.stderr)
            continue
        _report(path, info, time.perf_counter() - start, written)
    return 1 if failures else 0


def _main_batched(model, args: argparse.Namespace, options: dict) -> int:
    """--batch_size > 1: files decoded together; each file's outputs written once it is complete."""
    paths, start, failures, done = args.input_file, time.perf_counter(), 0, set()
    try:
        items = model.iter_transcribe_batch(paths, batch_size=args.batch_size, progress=False, **options)
        for item in items:
            path = paths[item.index]
            done.add(item.index)
            try:
                if item.error is not None:
                    raise item.error
                if args.verbose:
                    print(f"{path}:", flush=True)
                    for seg in item.segments:
                        _print_segment(seg)
                written = _write(model, args, path, item.segments, item.info)
            except (ValueError, FileNotFoundError, RuntimeError, OSError) as e:
                failures += 1
                print(f"error: {path}: {e}", file=sys.stderr)
                continue
            _report(path, item.info, time.perf_counter() - start, written)
    except (ValueError, RuntimeError) as e:  # decoding failed: every file not yet written fails with it
        for i, path in enumerate(paths):
            if i not in done:
                failures += 1
                print(f"error: {path}: {e}", file=sys.stderr)
    return 1 if failures else 0


def _print_segment(seg) -> None:
    print(f"[{seg.start:7.2f} --> {seg.end:7.2f}] {seg.text.strip()}", flush=True)


def _write(model, args: argparse.Namespace, path: str, segments, info) -> list:
    return write_result(model.result_dict(segments, info), path, args.output_dir, args.output_format)


def _report(path: str, info, seconds: float, written) -> None:
    print(f"{path}: language={info.language} duration={info.duration:.1f}s time={seconds:.1f}s "
          f"-> {', '.join(str(w) for w in written)}", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
