"""Load test of the transcription server (issue 13): requests/s and p50 / p99 latency against concurrency, next
to ``transcribe_batch`` on the same clips (the offline batch path, same model, options and batch size).

    python bench/bench_server.py --model tiny.en --device cpu --clip_s 0 --concurrency 1 2 4 8 16 32 64
    python bench/bench_server.py --random large-v3 --tokens 100 --clip_s 30 --batch_size 32 \\
        --concurrency 1 2 4 8 16 32 64 --audio_dir .carry/audio --vocab_dir .carry/vocab --json OUT.json

The server runs as a subprocess of this script (``--serve``: the same model, built the same way) on 127.0.0.1;
the client is an asyncio loop of ``c`` workers, each sending its next request (a multipart upload of a WAV, as
curl -F sends it, response_format json) as soon as its last one is answered (a closed loop), until the level's
requests are done. Before the levels, on CUDA, one untimed round of ``c`` requests per level (captures the CUDA
graphs of every row bucket); on the CPU one request. Reported per level: requests, wall s, requests/s, audio s/s,
latency p50 / p99 / max, the mean batch occupancy (``whisper_batch_occupancy`` from /metrics).

Clips: ``--clip_s 0``: the shared English clips as they are (1-11 s, real speech; with ``--model``: real weights,
openai-whisper's default decoding); ``--clip_s 30``: the clips joined with 1-6 s gaps (``bench_longform``) cut into
30 s pieces. ``--random NAME``: NAME's shapes, random weights (the GPU engine on CUDA) and, as ``bench_longform``,
exactly ``--tokens`` tokens per window (greedy, end-of-text suppressed, no timestamps, no fallback), language en.
"""
from __future__ import annotations

import argparse
import asyncio
import datetime
import json
import os
import platform
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from bench.bench_longform import (  # noqa: E402
    AUDIO_DIR, CLIPS, long_audio, options_for, random_engine, versions)


def build(args):
    """(model module, tokenizer, base options, name) of the flags."""
    import torch

    from whisper_model.options import TranscriptionOptions

    if args.random:
        model, tokenizer = random_engine(args.random, args.device, args.batch_size, args.vocab_dir)
        return model, tokenizer, options_for(tokenizer, args.tokens), args.random
    from whisper_model import WhisperModel

    whisper = WhisperModel(args.model, device=args.device)
    model = whisper.model
    if torch.device(args.device).type == "cuda":
        from whisper_model.fast.engine import accelerate

        model = accelerate(model, max_batch_size=args.batch_size)
    return model, whisper.tokenizer, TranscriptionOptions(), args.model


def serve(args) -> int:
    """The ``--serve`` role: the server on ``--port``."""
    import uvicorn

    from whisper_model.server import ServedModel, ServerConfig, create_app

    model, tokenizer, options, name = build(args)
    config = ServerConfig(batch_size=args.batch_size, max_queue=1024, batch_wait_s=args.batch_wait_ms[0] / 1000,
                          batch_gap_s=None if args.batch_gap_ms is None else args.batch_gap_ms / 1000,
                          decode_processes=args.decode_processes)
    if args.switch_interval_ms:  # the GIL's hand-over interval (Python's default: 5 ms)
        sys.setswitchinterval(args.switch_interval_ms / 1000)
    uvicorn.run(create_app(ServedModel(model, tokenizer, name, options), config), host="127.0.0.1",
                port=args.port, log_level="warning")
    return 0


def clips(args) -> list[tuple[str, bytes, float]]:
    """(name, WAV bytes, seconds) of each clip (module docstring)."""
    from bench.bench_longform import write_wav
    from whisper_model.io.audio import SAMPLE_RATE, load_audio

    out = []
    if args.clip_s == 0:
        for name in CLIPS:
            path = Path(args.audio_dir) / name
            n = len(load_audio(str(path))) if path.is_file() else 0
            if 0 < n <= 30 * SAMPLE_RATE:
                out.append((name, path.read_bytes(), n / SAMPLE_RATE))
    else:
        n = int(args.clip_s * SAMPLE_RATE)
        samples = long_audio(args.n_clips * args.clip_s / 60, audio_dir=args.audio_dir)
        tmp = Path(os.environ.get("TMPDIR", "/tmp")) / f"bench_server_{os.getpid()}.wav"
        for k in range(len(samples) // n):
            write_wav(tmp, samples[k * n: (k + 1) * n])
            out.append((f"clip{k:03d}.wav", tmp.read_bytes(), n / SAMPLE_RATE))
        tmp.unlink()
    if not out:
        raise SystemExit(f"no clips in {Path(args.audio_dir).resolve()}")
    return out


def offline(args, inputs) -> dict:
    """``transcribe_batch`` over the clips (as WAV bytes, decoded inside the time), best of two after a warm-up."""
    import torch

    datas = [d for _, d, _ in inputs] * args.offline_repeat
    walls = offline_walls(args, datas)
    if torch.cuda.is_available():
        torch.cuda.empty_cache()  # the model is gone: its memory for the server
    wall = min(walls)
    return {"requests": len(datas), "wall_s": wall, "rps": len(datas) / wall, "walls": walls}


def offline_walls(args, datas) -> list[float]:
    from whisper_model.transcribe import transcribe_batch

    model, tokenizer, options, _ = build(args)

    def run(items):
        transcribe_batch(model, items, options=options, batch_size=args.batch_size, tokenizer=tokenizer,
                         language="en" if args.random else None)

    run(datas[: args.batch_size])
    walls = []
    for _ in range(2):
        start = time.perf_counter()
        run(datas)
        walls.append(time.perf_counter() - start)
    return walls


T0 = time.perf_counter()


def say(message: str) -> None:
    print(f"[{time.perf_counter() - T0:6.1f} s] {message}", flush=True)


def all_versions() -> dict:
    import importlib.metadata

    out = versions()
    for name in ("fastapi", "starlette", "uvicorn", "python-multipart", "sse-starlette", "httpx", "uvloop"):
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = None
    return out


def metric_sums(url: str) -> dict:
    import httpx

    text = httpx.get(url + "/metrics", timeout=30).text
    out = {}
    for name in ("whisper_batch_occupancy_sum", "whisper_batch_occupancy_count"):
        m = re.search(rf"^{name} (\S+)$", text, re.M)
        out[name] = float(m.group(1)) if m else 0.0
    return out


async def level(url: str, inputs, concurrency: int, n_requests: int, fields: dict) -> dict:
    """``n_requests`` requests, ``concurrency`` at a time (closed loop); latency of each."""
    import httpx

    latencies, errors, counter = [], [], iter(range(n_requests))
    limits = httpx.Limits(max_connections=concurrency + 4, max_keepalive_connections=concurrency + 4)
    async with httpx.AsyncClient(base_url=url, timeout=600, limits=limits) as client:
        async def worker():
            for i in counter:
                name, data, _ = inputs[i % len(inputs)]
                start = time.perf_counter()
                r = await client.post("/v1/audio/transcriptions", data=fields, files={"file": (name, data)})
                latencies.append(time.perf_counter() - start)
                if r.status_code != 200:
                    errors.append(f"{r.status_code} {r.text[:200]}")

        start = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        wall = time.perf_counter() - start
    return {"latencies": latencies, "wall_s": wall, "errors": errors}


def start_server(args, wait_ms: float) -> tuple[subprocess.Popen, str]:
    import httpx

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    argv = [sys.executable, __file__, "--serve", "--port", str(port), "--batch_wait_ms", str(wait_ms)]
    argv += args.passthrough
    proc = subprocess.Popen(argv, cwd=ROOT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 900
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"the server exited with {proc.returncode}")
        try:
            if httpx.get(url + "/health", timeout=2).status_code == 200:
                return proc, url
        except httpx.HTTPError:
            time.sleep(0.5)
    proc.kill()
    raise SystemExit("the server did not start")


def bench(args, partial) -> dict:
    inputs = clips(args)
    result = dict(date=datetime.date.today().isoformat(), command=" ".join(sys.argv), model=args.random or args.model,
                  random_weights=bool(args.random), device=device_name(args.device), versions=all_versions(),
                  batch_size=args.batch_size, batch_gap_ms=args.batch_gap_ms, clips=len(inputs),
                  switch_interval_ms=args.switch_interval_ms, decode_processes=args.decode_processes,
                  clip_s=args.clip_s, tokens=args.tokens if args.random else None, levels=[])
    fields = {"language": "en"} if args.random else {}
    if not args.skip_offline:
        result["offline"] = offline(args, inputs)
        say(f"offline transcribe_batch: {result['offline']['rps']:.2f} clips/s")
        partial(result)
    for k, wait_ms in enumerate(args.batch_wait_ms):
        levels = args.concurrency if k == 0 or not args.concurrency_rest else args.concurrency_rest
        proc, url = start_server(args, wait_ms)
        say(f"server up (batch_wait_ms {wait_ms:g})")
        try:
            for c in levels if args.device.startswith("cuda") else [1]:  # warm-up: every row bucket used
                asyncio.run(level(url, inputs, c, c, fields))
            say("warm")
            for c in levels:
                result["levels"].append(measured(url, inputs, c, max(args.requests, args.rounds * c), fields,
                                                 wait_ms))
                say(line(result["levels"][-1]))
                partial(result)
        finally:
            proc.terminate()
            proc.wait(60)
    return result


def measured(url: str, inputs, c: int, n: int, fields: dict, wait_ms: float) -> dict:
    before = metric_sums(url)
    got = asyncio.run(level(url, inputs, c, n, fields))
    after = metric_sums(url)
    windows = after["whisper_batch_occupancy_count"] - before["whisper_batch_occupancy_count"]
    occupancy = (after["whisper_batch_occupancy_sum"] - before["whisper_batch_occupancy_sum"]) / max(windows, 1)
    lat = np.asarray(got["latencies"])
    seconds = sum(inputs[i % len(inputs)][2] for i in range(n))
    return dict(batch_wait_ms=wait_ms, concurrency=c, requests=n, wall_s=got["wall_s"], rps=n / got["wall_s"],
                audio_s_per_s=seconds / got["wall_s"], p50_s=float(np.percentile(lat, 50)),
                p99_s=float(np.percentile(lat, 99)), max_s=float(lat.max()), occupancy=occupancy,
                errors=got["errors"][:5], n_errors=len(got["errors"]))


def device_name(device: str) -> str:
    import torch

    if device.startswith("cuda"):
        return torch.cuda.get_device_name(device)
    return f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores"


def line(r: dict) -> str:
    return (f"| {r['batch_wait_ms']:g} | {r['concurrency']} | {r['requests']} | {r['wall_s']:.2f} | {r['rps']:.2f} "
            f"| {r['audio_s_per_s']:.1f} | {r['p50_s']:.3f} | {r['p99_s']:.3f} | {r['max_s']:.3f} "
            f"| {r['occupancy']:.2f} | {r['n_errors']} |")


def table(result: dict) -> str:
    head = ["| wait ms | concurrency | requests | wall s | requests/s | audio s/s | p50 s | p99 s | max s | occupancy "
            "| errors |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    lines = head + [line(r) for r in result["levels"]]
    if "offline" in result:
        o = result["offline"]
        lines.append(f"offline transcribe_batch (batch {result['batch_size']}): {o['requests']} clips in "
                     f"{o['wall_s']:.2f} s = {o['rps']:.2f} clips/s")
    return "\n".join(lines)


def parse(argv=None):
    import torch

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--port", type=int, default=0, help=argparse.SUPPRESS)
    model = [("--model", dict(default="tiny.en", help="real weights (a bundled name or a checkpoint)")),
             ("--random", dict(default=None, help="this model's shapes with random weights, --tokens per window")),
             ("--tokens", dict(type=int, default=100)),
             ("--device", dict(default="cuda" if torch.cuda.is_available() else "cpu")),
             ("--batch_size", dict(type=int, default=32)),
             ("--batch_gap_ms", dict(type=float, default=None)),
             ("--switch_interval_ms", dict(type=float, default=0.0, help="the server's sys.setswitchinterval; "
                                           "0: Python's 5 ms")),
             ("--decode_processes", dict(type=int, default=0, help="the server's processes decoding uploads")),
             ("--vocab_dir", dict(type=Path, default=None))]
    for flag, kw in model:
        p.add_argument(flag, **kw)
    p.add_argument("--batch_wait_ms", type=float, nargs="+", default=[0.0], help="the server's; several: one "
                   "server after the other")
    p.add_argument("--concurrency", type=int, nargs="+", default=[1, 2, 4, 8, 16, 32, 64])
    p.add_argument("--concurrency_rest", type=int, nargs="+", default=None, help="the levels of the servers "
                   "after the first (default: --concurrency)")
    p.add_argument("--requests", type=int, default=8, help="at least this many requests per level")
    p.add_argument("--rounds", type=int, default=4, help="and at least this many per worker")
    p.add_argument("--clip_s", type=float, default=30.0, help="0: the shared clips as they are")
    p.add_argument("--n_clips", type=int, default=64, help="distinct clips with --clip_s > 0")
    p.add_argument("--offline_repeat", type=int, default=2, help="the clips this many times, offline")
    p.add_argument("--skip_offline", action="store_true")
    p.add_argument("--audio_dir", type=Path, default=AUDIO_DIR)
    p.add_argument("--json", type=Path, default=None)
    args = p.parse_args(argv)
    args.passthrough = []  # the model flags, for the server subprocess
    for flag, _ in model:
        value = getattr(args, flag[2:])
        if value is not None:
            args.passthrough += [flag, str(value)]
    return args


def main(argv=None) -> int:
    args = parse(argv)
    if args.serve:
        return serve(args)

    def write(result):
        if args.json:
            args.json.parent.mkdir(parents=True, exist_ok=True)
            args.json.write_text(json.dumps(result, indent=1))

    result = bench(args, write)
    print(table(result))
    write(result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
