"""Decode-step sweep of the fast path: replayed CUDA-graph step time per scheduling setting.

    python bench/bench_step.py --model large-v3 --batch 1 16 --pdl 0 1 2 --cross_chunk 128 256 --json OUT

Random weights of ``--model``'s shapes, random encoder states; for every (batch, pdl, cross_chunk) the
one-token step is captured once and its graph replayed ``--steps`` times between two CUDA events (median of
``--repeats`` such runs), and the logits of that setting are compared with the first setting's (the
scheduling must not change the numbers: ``max_abs_diff`` is printed). Prints a table and writes JSON;
nothing here asserts on a time.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from whisper_model.fast.build import random_whisper  # noqa: E402
from whisper_model.fast.engine import accelerate  # noqa: E402


def replay_ms(graph: torch.cuda.CUDAGraph, steps: int, repeats: int) -> float:
    runs = []
    for _ in range(repeats):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        for _ in range(steps):
            graph.replay()
        end.record()
        torch.cuda.synchronize()
        runs.append(start.elapsed_time(end) / steps)
    return statistics.median(runs)


@torch.inference_mode()
def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="large-v3")
    ap.add_argument("--batch", type=int, nargs="+", default=[1, 16])
    ap.add_argument("--pdl", type=int, nargs="+", default=[1])
    ap.add_argument("--cross_chunk", type=int, nargs="+", default=[128])
    ap.add_argument("--position", type=int, default=60, help="cache position of the timed step")
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--json")
    args = ap.parse_args()

    t0 = time.perf_counter()
    model = random_whisper(args.model, dtype=torch.float16, device="cuda")
    print(f"model built in {time.perf_counter() - t0:.1f} s", file=sys.stderr, flush=True)
    dims = model.dims
    fast = accelerate(model, max_batch_size=max(args.batch))
    dec = fast.text_decoder
    torch.manual_seed(0)
    xa = torch.randn(max(args.batch), dims.n_audio_ctx, dims.n_audio_state, device="cuda", dtype=torch.float16)
    rows = []
    print(f"{'batch':>5} {'pdl':>3} {'cross_chunk':>11} {'step ms':>8} {'max_abs_diff':>12}")
    for b in args.batch:
        dec.set_audio(xa[:b])
        tok = torch.randint(0, dims.n_vocab, (b, 1), device="cuda")
        pos = torch.tensor([args.position], device="cuda")
        first = None
        for pdl, chunk in [(p, c) for p in args.pdl for c in args.cross_chunk]:
            dec.pdl, dec.cross_chunk = pdl, chunk
            dec._steps.clear()  # recapture with this setting
            t0 = time.perf_counter()
            logits = dec.step(tok, pos)
            torch.cuda.synchronize()
            print(f"  captured b={b} pdl={pdl} cross_chunk={chunk} in {time.perf_counter() - t0:.1f} s",
                  file=sys.stderr, flush=True)
            st = dec._steps[(dec.bucket(b), 1, 1)]
            ms = replay_ms(st.graph, args.steps, args.repeats)
            first = logits if first is None else first
            diff = float((logits - first).abs().max())
            rows.append(dict(model=args.model, batch=b, pdl=pdl, cross_chunk=chunk, step_ms=ms, max_abs_diff=diff))
            print(f"{b:>5} {pdl:>3} {chunk:>11} {ms:>8.3f} {diff:>12.3g}", flush=True)
    if args.json:
        meta = dict(device=torch.cuda.get_device_name(), torch=torch.__version__, position=args.position,
                    steps=args.steps, repeats=args.repeats)
        Path(args.json).write_text(json.dumps(dict(meta=meta, rows=rows), indent=1), encoding="utf-8")


if __name__ == "__main__":
    main()
