"""One decoding step and one encoder window on the CPU, by weight precision, on fixed inputs (issue 25).

    python bench/bench_cpu_step.py --model tiny.en --precisions fp32 int8 --threads 1 --repeats 5 --json OUT

Whole transcriptions are a poor A/B for a change that moves the numerics (int8): the text, and with it the number of
decoded tokens, can change. Here the work is fixed: the encoder runs on one random 30 s log-mel window; the decoder
prefills 3 tokens over random audio states, then decodes ``--steps`` one-token steps of fixed random tokens (greedy's
shape: one row, caches as the pipeline makes them). The precisions run interleaved, ``--repeats`` times after a
warm-up; best and median ms per step and per window, and their ratios to the first precision. Prints a table,
writes JSON; nothing here asserts on a time.
"""
from __future__ import annotations

import argparse
import datetime
import json
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from whisper_model.pipeline import WhisperModel  # noqa: E402


def timed_steps(model: WhisperModel, xa: torch.Tensor, tokens: torch.Tensor, steps: int) -> float:
    """ms per one-token decoding step after a 3-token prefill (positions 3 .. 3 + steps - 1)."""
    dec = model.model.text_decoder
    dec.reserve(1)
    dec.set_audio(xa)
    with torch.inference_mode():
        dec.step(tokens[:, :3], torch.arange(3))
        t0 = time.perf_counter()
        for p in range(3, 3 + steps):
            dec.step(tokens[:, p:p + 1], torch.tensor([p]))
    return (time.perf_counter() - t0) / steps * 1e3


def timed_encoder(model: WhisperModel, mel: torch.Tensor) -> float:
    """ms for one encoder window."""
    with torch.inference_mode():
        t0 = time.perf_counter()
        model.model.encoder(mel)
    return (time.perf_counter() - t0) * 1e3


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="tiny.en")
    ap.add_argument("--precisions", nargs="+", default=["fp32", "int8"], choices=["fp32", "int8", "int4"])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--steps", type=int, default=150)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json")
    args = ap.parse_args(argv)
    if args.steps < 1 or args.steps + 3 > 448 or args.repeats < 1:
        ap.error("--steps must lie in 1 .. 445 (the text context) and --repeats be at least 1")
    torch.set_num_threads(args.threads)
    models = {p: WhisperModel(args.model, device="cpu", weight_only_precision=None if p == "fp32" else p)
              for p in args.precisions}
    dims = next(iter(models.values())).dims
    gen = torch.Generator().manual_seed(args.seed)
    xa = torch.randn(1, dims.n_audio_ctx, dims.n_audio_state, generator=gen)
    mel = torch.randn(1, dims.n_mels, 2 * dims.n_audio_ctx, generator=gen).clamp(-1.5, 1.5)
    tokens = torch.randint(0, dims.n_vocab - 100, (1, args.steps + 3), generator=gen)
    for m in models.values():  # warm-up
        timed_steps(m, xa, tokens, min(5, args.steps))
        timed_encoder(m, mel)
    times = {p: {"step_ms": [], "encoder_ms": []} for p in models}
    for _ in range(args.repeats):
        for p, m in models.items():
            times[p]["step_ms"].append(timed_steps(m, xa, tokens, args.steps))
            times[p]["encoder_ms"].append(timed_encoder(m, mel))
    first = args.precisions[0]
    rows = []
    for p, t in times.items():
        row = dict(precision=p, **{f"{k}_{s}": f(v) for k, v in t.items()
                                   for s, f in (("best", min), ("median", statistics.median))}, runs=t)
        rows.append(row)
    print(f"{args.model}, {args.threads} thread(s), {args.steps} steps, best / median of {args.repeats}")
    print("| precision | step ms | encoder ms | step x first | encoder x first |\n|---|---|---|---|---|")
    for r in rows:
        f = rows[0]
        print(f"| {r['precision']} | {r['step_ms_best']:.2f} / {r['step_ms_median']:.2f} | "
              f"{r['encoder_ms_best']:.1f} / {r['encoder_ms_median']:.1f} | "
              f"{f['step_ms_best'] / r['step_ms_best']:.2f} | {f['encoder_ms_best'] / r['encoder_ms_best']:.2f} |")
    if args.json:
        meta = dict(date=datetime.date.today().isoformat(), command=" ".join(sys.argv), torch=torch.__version__,
                    python=platform.python_version(), machine=platform.processor() or platform.machine(),
                    model=args.model, threads=args.threads, steps=args.steps, repeats=args.repeats, first=first)
        Path(args.json).write_text(json.dumps(dict(meta=meta, rows=rows), indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
