"""Per-kernel device time of one decode step, by weight / cache quantization (CUDA only).

    python bench/bench_step_kernels.py --model large-v3 --configs fp16 fp16+kv8 int8+kv8 --batch 1 16 \
        --cross_chunk 128 256 --json OUT

Random weights of ``--model``'s shapes; the engine's Triton kernels run eagerly (no CUDA graph, no PDL, so each
kernel's time is its own) for ``--steps`` one-token steps at cache position ``--position`` under torch.profiler;
the table lists each kernel name's time per step, launches per step and time per launch, and the encoder's
kernel time at batch 1. Prints tables and writes JSON; nothing here asserts on a time.
"""
from __future__ import annotations

import argparse
import collections
import gc
import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from whisper_model.fast.build import random_whisper  # noqa: E402
from whisper_model.fast.engine import accelerate  # noqa: E402

CONFIGS = {"fp16": {}, "fp16+kv8": dict(int8_kv_cache=True), "int8": dict(weight_only_precision="int8"),
           "int4": dict(weight_only_precision="int4"),
           "int8+kv8": dict(weight_only_precision="int8", int8_kv_cache=True),
           "int4+kv8": dict(weight_only_precision="int4", int8_kv_cache=True)}


def kernel_times(fn, repeats: int) -> dict[str, tuple[float, int]]:
    """Kernel name -> (device us per call of ``fn``, launches per call), over ``repeats`` calls."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        for _ in range(repeats):
            fn()
        torch.cuda.synchronize()
    agg: dict[str, list] = collections.defaultdict(lambda: [0.0, 0])
    for e in prof.events():
        if e.device_type.name == "CUDA":
            agg[e.name[:60]][0] += e.device_time / repeats
            agg[e.name[:60]][1] += 1
    return {k: (us, n // repeats) for k, (us, n) in agg.items()}


def run_config(name: str, args) -> list[dict]:
    model = random_whisper(args.model, dtype=torch.float16, device="cuda", **CONFIGS[name])
    fast = accelerate(model, max_batch_size=max(args.batch), cuda_graphs=False, pdl=0)
    dims, dec = model.dims, fast.text_decoder
    torch.manual_seed(0)
    mel = torch.randn(1, dims.n_mels, 2 * dims.n_audio_ctx, device="cuda", dtype=torch.float16)
    fast.encoder(mel)
    enc = kernel_times(lambda: fast.encoder(mel), 1)
    rows = [dict(config=name, part="encoder", batch=1, cross_chunk=None,
                 total_us=sum(us for us, _ in enc.values()), kernels=enc)]
    xa = torch.randn(max(args.batch), dims.n_audio_ctx, dims.n_audio_state, device="cuda", dtype=torch.float16)
    for b in args.batch:
        for chunk in args.cross_chunk:
            dec.cross_chunk = chunk
            dec._steps.clear()  # new step shapes with this chunk
            dec.reserve(b)
            dec.set_audio(xa[:b])
            tok = torch.randint(0, dims.n_vocab - 100, (b, 1), device="cuda")
            pos = torch.tensor([args.position], device="cuda")
            for _ in range(3):
                dec.step(tok, pos)
            ks = kernel_times(lambda: dec.step(tok, pos), args.steps)
            rows.append(dict(config=name, part="step", batch=b, cross_chunk=chunk,
                             total_us=sum(us for us, _ in ks.values()), kernels=ks))
    return rows


def print_row(r: dict, top: int) -> None:
    what = "encoder" if r["part"] == "encoder" else f"step B={r['batch']} cross_chunk={r['cross_chunk']}"
    print(f"\n{r['config']} {what}: {r['total_us'] / 1000:.3f} ms of kernels")
    print(f"{'us/step':>9} {'launches':>8} {'us each':>8}  kernel")
    for k, (us, n) in sorted(r["kernels"].items(), key=lambda kv: -kv[1][0])[:top]:
        print(f"{us:>9.1f} {n:>8d} {us / max(1, n):>8.2f}  {k}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="large-v3")
    ap.add_argument("--configs", nargs="+", default=["fp16", "fp16+kv8"], choices=list(CONFIGS))
    ap.add_argument("--batch", type=int, nargs="+", default=[1, 16])
    ap.add_argument("--cross_chunk", type=int, nargs="+", default=[128])
    ap.add_argument("--position", type=int, default=60, help="cache position of the profiled steps")
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--top", type=int, default=6, help="kernels listed per table")
    ap.add_argument("--json")
    args = ap.parse_args()
    if not torch.cuda.is_available():
        raise SystemExit("bench_step_kernels: needs a CUDA GPU (it profiles the engine's Triton kernels)")
    rows = []
    for name in args.configs:
        for r in run_config(name, args):
            print_row(r, args.top)
            rows.append(r)
        gc.collect()  # the config's model is gone: free its memory before the next one
        torch.cuda.empty_cache()
    if args.json:
        import datetime

        import triton

        meta = dict(date=datetime.date.today().isoformat(), command=" ".join(sys.argv),
                    device=torch.cuda.get_device_name(), torch=torch.__version__, triton=triton.__version__,
                    model=args.model, position=args.position, steps=args.steps)
        Path(args.json).write_text(json.dumps(dict(meta=meta, rows=rows), indent=1), encoding="utf-8")


if __name__ == "__main__":
    main()
