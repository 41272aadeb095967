"""The job's flags: every flag of ``python -m whisper_model.run`` (``cli.args.build_parser``: the same names, short
forms, types and defaults), plus where and on how many workers it runs.

    python -m whisper_model.distributed --input_file recordings/ --output_dir out --model base \\
        --num_workers 4 --gpus_per_worker 1 --batch_size 16 --address auto

``prepare(args)`` checks them all on the driver, before Ray starts or any weights are loaded (``OptionError``
naming the flag), and turns them into a ``JobSpec``: the ``TranscriptionOptions`` and the srt/vtt
``WriterOptions`` (``cli.session``'s own translation of the flags), the absolute paths a worker on any node needs,
and the resources of one worker.
"""
from __future__ import annotations

import argparse
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from ..cli.args import build_parser, model_source, parse_args
from ..cli.session import check_run_flags, transcription_options, writer_options
from ..errors import OptionError
from ..io.writers import WriterOptions
from ..options import TranscriptionOptions
from ..service.loading import resolve_dtype

PROG = "python -m whisper_model.distributed"
VERBOSE_HELP = ("True: print each file's segments and one line when the file is done; False: show one progress bar "
                "over the files and the hours of audio instead; None: print neither")
DEVICE_HELP = ("device of every worker: cpu or cuda (each worker gets its own GPUs from Ray) (default: cuda with "
               "--gpus_per_worker > 0 or when this machine has a GPU, else cpu)")
EPILOG = ("Exit status: 0 when every input was transcribed (or was already done: see manifest.jsonl in --output_dir); "
          "1 when an input failed or was missing (the others are still transcribed); 2 for a bad option, a model that "
          "cannot be loaded or a cluster that cannot run one worker; 130 / 143 when interrupted by Ctrl-C / SIGTERM "
          "(the files already done are kept and recorded: a re-run goes on from there).")


def positive_float(value: str) -> float:
    number = float(value)
    if not math.isfinite(number) or number < 0:
        raise argparse.ArgumentTypeError(f"expected a number >= 0, got {value!r}")
    return number


def build_job_parser() -> argparse.ArgumentParser:
    """``run.py``'s parser with this job's name and flags added."""
    p = build_parser(help={"verbose": VERBOSE_HELP, "device": DEVICE_HELP})
    p.prog, p.epilog = PROG, EPILOG
    p.description = ("Transcribe or translate many audio files on a Ray cluster (or this machine alone) and write "
                     "txt/srt/vtt/tsv/json as python -m whisper_model.run does; files already done are skipped.")
    p.set_defaults(device=None)
    g = p.add_argument_group("distributed (Ray)")
    g.add_argument("--num_workers", type=int, default=1, help="workers (Ray actors), each with the model loaded once "
                   "and its own batch of --batch_size files")
    g.add_argument("--gpus_per_worker", type=positive_float, default=None, help="GPUs of each worker, a fraction "
                   "to share one (default: None: 1 with --device cuda, else 0)")
    g.add_argument("--cpus_per_worker", type=positive_float, default=1.0, help="CPU cores Ray reserves for each "
                   "worker; a CPU worker runs that many torch threads unless --threads says otherwise")
    g.add_argument("--address", default=None, help="the Ray cluster to run on: auto (the one running here, "
                   "started by ray start, or RAY_ADDRESS), HOST:PORT of its head node, or ray://HOST:10001 (Ray "
                   "client) (default: None: start a local Ray on this machine for this job; stopped when it ends)")
    return p


def parse_job_args(argv: Optional[list[str]] = None) -> argparse.Namespace:
    """The parsed flags; ``audio``: the positional paths, then those of ``--input_file``."""
    return parse_args(argv, build_job_parser(), inputs="the audio files or directories")


@dataclass(frozen=True)
class WorkerSpec:
    """What each worker needs to load its model and transcribe (absolute paths: workers run anywhere)."""

    model: str  # a bundled name or an absolute checkpoint path
    engine_dir: Optional[str]
    device: str
    dtype: str
    threads: int
    batch_size: int
    chunking: str
    vad_filter: bool
    options: TranscriptionOptions
    language: Optional[str]
    initial_prompt: Optional[str]
    model_label: str  # --model as given, for messages
    fast: bool = True  # on CUDA, the fast path (False: --eager)


@dataclass(frozen=True)
class JobSpec:
    worker: WorkerSpec
    output_dir: str
    output_format: str
    verbose: Optional[bool]
    num_workers: int
    gpus_per_worker: float
    cpus_per_worker: float
    address: Optional[str]
    in_flight: int  # files sent ahead to each worker, so that its batch never waits for the driver
    writer: WriterOptions = WriterOptions()  # how the driver writes srt and vtt (the word flags)


def resolve_device(device: Optional[str], gpus: Optional[float]) -> tuple[str, float]:
    """``--device`` and ``--gpus_per_worker`` made consistent (see their help)."""
    if device is None:
        if gpus is None:
            import torch

            device = "cuda" if torch.cuda.is_available() else "cpu"
        else:
            device = "cuda" if gpus > 0 else "cpu"
    if device not in ("cpu", "cuda"):
        hint = ": Ray gives each worker its GPUs, give --device cuda" if device.startswith("cuda:") else ""
        raise OptionError(f"--device {device}: a worker's device is cpu or cuda{hint}")
    if gpus is None:
        gpus = 1.0 if device == "cuda" else 0.0
    if device == "cuda" and gpus <= 0:
        raise OptionError("--device cuda needs --gpus_per_worker above 0 (the GPUs Ray gives each worker)")
    if device == "cpu" and gpus > 0:
        raise OptionError(f"--gpus_per_worker {gpus:g} with --device cpu: the GPUs would sit idle; give --device cuda")
    return device, gpus


def prepare(args: argparse.Namespace, options: Optional[TranscriptionOptions] = None) -> JobSpec:
    """Every flag checked (``OptionError``), as a ``JobSpec``; nothing is started or created. ``options`` (Python
    callers): the ``TranscriptionOptions`` every file is transcribed with, used as given in place of those the flags
    make (for options no flag sets, e.g. ``sample_len``; the flags are still checked)."""
    if args.num_workers < 1:
        raise OptionError(f"--num_workers must be a positive integer, got {args.num_workers}")
    if args.cpus_per_worker <= 0:
        raise OptionError(f"--cpus_per_worker must be above 0, got {args.cpus_per_worker:g}")
    check_run_flags(args)
    args.device, gpus = resolve_device(args.device, args.gpus_per_worker)
    args.dtype = resolve_dtype(args.device, args.dtype, args.fp16)
    flagged, writer = transcription_options(args), writer_options(args)
    options = flagged if options is None else options
    model = model_source(args.model, args.model_dir)
    if Path(model).expanduser().exists():
        model = str(Path(model).expanduser().absolute())
    engine = str(Path(args.engine_dir).expanduser().absolute()) if args.engine_dir else None
    if engine is not None and not Path(engine).is_dir():
        raise OptionError(f"--engine_dir {args.engine_dir}: no such directory")
    worker = WorkerSpec(model=model, engine_dir=engine, device=args.device, dtype=args.dtype,
                        threads=args.threads or 0, batch_size=args.batch_size, chunking=args.chunking,
                        vad_filter=args.vad_filter, options=options, language=args.language,
                        initial_prompt=args.initial_prompt, model_label=args.model, fast=not args.eager)
    return JobSpec(worker=worker, output_dir=os.path.abspath(os.path.expanduser(args.output_dir)),
                   output_format=args.output_format, verbose=args.verbose, num_workers=args.num_workers,
                   gpus_per_worker=gpus, cpus_per_worker=args.cpus_per_worker, address=args.address,
                   in_flight=max(2, 2 * args.batch_size), writer=writer)


__all__ = ["JobSpec", "PROG", "WorkerSpec", "build_job_parser", "parse_job_args", "prepare", "resolve_device"]
