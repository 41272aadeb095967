"""``python -m whisper_model.serve``: load a model, serve OpenAI's audio API with uvicorn.

    python -m whisper_model.serve --model base --port 8000
    python -m whisper_model.serve --engine_dir engines/base --batch_size 32 --api_key "$KEY"

SIGINT / SIGTERM: no new connection is taken, each realtime session's committed items finish and it gets a final
event and a close (``serving.Server``), the requests in flight finish (up to ``--shutdown_timeout`` s),
the worker thread ends, then the process ends by that signal, as uvicorn does (status 130 / 143 in a shell; a
service manager counts it as a clean stop). A model that cannot be loaded or a bad flag: one line, status 2.
"""
from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

API_KEY_ENV = "WHISPER_API_KEY"
STARTUP_FAILURE = 3  # uvicorn's status when the server could not start
WS_MAX_SIZE = 16 * 2**20  # uvicorn's default largest WebSocket message; room for an append at the limit


def build_parser() -> argparse.ArgumentParser:
    """The server's flags; those it shares with the command line come from ``service.flags``."""
    from ..service.flags import add_options

    p = argparse.ArgumentParser(prog="python -m whisper_model.serve", description="OpenAI-compatible "
                                "transcription server (/v1/audio/transcriptions, /translations) with continuous "
                                "batching: every request is a stream of one scheduler")
    add_options(p, ["model", "model_dir", "engine_dir"], help={
        "model": "a bundled name (tiny.en, base), a checkpoint path, or a name in --model_dir (default: tiny.en)",
        "engine_dir": "a GPU engine from python -m whisper_model.build (then --model is not loaded)"})
    p.add_argument("--served_model_name", default=None, help="the model's id in the API (default: --model, or "
                   "the engine folder's name); 'whisper-1' is accepted as well")
    add_options(p, ["device", "dtype", "eager"])
    p.add_argument("--max_beam_width", type=int, default=5, help="the fast path's rows: batch x this (beam_size "
                   "of a request may not exceed it; default 5)")
    p.add_argument("--no_warmup", action="store_true", help="GPU fast path: do not capture the graphs of every "
                   "batch size at start (the first requests of each size then wait for their capture)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000)
    add_options(p, ["batch_size"], defaults={"batch_size": 16}, help={"batch_size": "windows decoded together: "
                                                                     "the rows of the one scheduler (default 16)"})
    p.add_argument("--max_queue", type=int, default=256, help="requests that may wait for a row; more get 503 "
                   "with Retry-After (default 256)")
    p.add_argument("--max_upload_mb", type=float, default=25.0, help="larger uploads get 413 (default 25, as "
                   "OpenAI)")
    p.add_argument("--request_timeout", type=float, default=600.0, help="seconds; a request not done by then "
                   "gets 504 and its rows are dropped (default 600)")
    p.add_argument("--batch_wait_ms", type=float, default=0.0, help="before a round with free rows (the first "
                   "after idling, or one after requests finished), wait up to this long for requests to fill them "
                   "(default 0: never; 20-50 helps a GPU's throughput when every request is one window)")
    p.add_argument("--batch_gap_ms", type=float, default=None, help="and stop waiting when none came for this "
                   "long (default: a quarter of --batch_wait_ms)")
    p.add_argument("--api_key", default=os.environ.get(API_KEY_ENV), help="require 'Authorization: Bearer "
                   f"KEY' (default: ${API_KEY_ENV}; unset: no key)")
    p.add_argument("--shutdown_timeout", type=float, default=30.0, help="seconds the requests in flight (and "
                   "the realtime items committed) get to finish on SIGTERM / SIGINT (default 30)")
    p.add_argument("--max_realtime_sessions", type=int, default=64, help="/v1/realtime sessions open at once; "
                   "the next gets an error event and a close (default 64)")
    p.add_argument("--max_append_mb", type=float, default=15.0, help="base64 MiB one input_audio_buffer.append "
                   "may carry; a larger one gets an error event and the session goes on (default 15, as OpenAI)")
    p.add_argument("--decode_processes", type=int, default=None, help="processes that decode the uploads "
                   "(0: threads of the server; default: on CUDA min(4, CPU cores / 2), on the CPU 0)")
    add_options(p, ["threads"])
    p.add_argument("--log_level", default="info", choices=["critical", "error", "warning", "info", "debug"])
    return p


def load(args: argparse.Namespace):
    """The ``ServedModel`` of the flags (``CheckpointError`` / ``OptionError`` when it cannot be)."""
    import torch

    from ..options import TranscriptionOptions
    from ..service import ModelSpec, load_model
    from .config import ServedModel

    if args.threads:
        torch.set_num_threads(args.threads)
    spec = ModelSpec(args.model, args.model_dir, args.engine_dir, device=args.device, dtype=args.dtype,
                     fast=not args.eager, max_batch_size=args.batch_size, max_beam_width=args.max_beam_width,
                     warm=not args.no_warmup)
    whisper = load_model(spec)
    name = args.served_model_name or (Path(args.engine_dir).name if args.engine_dir else args.model)
    return ServedModel(whisper.model, whisper.tokenizer, name, TranscriptionOptions(),
                       max_beam_size=args.max_beam_width)


def decode_processes(args: argparse.Namespace) -> int:
    """``--decode_processes``, or its default for the device the model runs on."""
    if args.decode_processes is not None:
        return args.decode_processes
    from ..service.loading import resolve_device

    on_gpu = args.engine_dir or resolve_device(args.device).startswith("cuda")
    return min(4, (os.cpu_count() or 1) // 2) if on_gpu else 0


def config_of(args: argparse.Namespace):
    from .config import ServerConfig

    return ServerConfig(batch_size=args.batch_size, max_queue=args.max_queue,
                        max_upload_bytes=int(args.max_upload_mb * 2**20), request_timeout_s=args.request_timeout,
                        api_key=args.api_key or None, batch_wait_s=args.batch_wait_ms / 1000,
                        batch_gap_s=None if args.batch_gap_ms is None else args.batch_gap_ms / 1000,
                        shutdown_timeout_s=args.shutdown_timeout,
                        max_realtime_sessions=args.max_realtime_sessions,
                        max_append_chars=int(args.max_append_mb * 2**20), decode_processes=decode_processes(args))


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(levelname)s %(name)s: %(message)s")
    from ..errors import WhisperError

    try:
        config = config_of(args)
        served = load(args)
    except (WhisperError, ValueError, RuntimeError, OSError) as e:
        print(f"error: {e}", file=sys.stderr, flush=True)
        return 2
    import uvicorn

    from .app import create_app
    from .serving import Server

    app = create_app(served, config)
    server = Server(uvicorn.Config(app, host=args.host, port=args.port, log_level=args.log_level,
                                   timeout_graceful_shutdown=args.shutdown_timeout or None,
                                   ws_max_size=max(WS_MAX_SIZE, config.max_append_chars + 4096)),
                    app.state.realtime, args.shutdown_timeout)
    server.run()
    return 0 if server.started else STARTUP_FAILURE  # e.g. the port is taken (uvicorn logged why)


__all__ = ["build_parser", "main"]
