"""What is live at the B=1 engine's peak GPU memory, by source line (CUDA only).

    python bench/bench_peak_memory.py --model large-v3 --configs int8 int4+kv8 --json OUT

For each config (``bench_quant``'s names: fp16, int8, int4, each [+kv8]) the model is built from the same random
float weights of ``--model``'s shapes, then accelerated for one row and run for two segments of 30 s and exactly
``--tokens`` tokens (the first captures the graphs) under the allocator's history recorder. Replaying that history
gives the allocations live at the highest point; they are summed by their innermost frames in this repository.
Prints, per config, the weight bytes, the peak over what was allocated before the model was built (and over the
weight bytes), and the largest groups; writes JSON. Nothing here asserts.
"""
from __future__ import annotations

import argparse
import collections
import gc
import json
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from bench._systems import OursRun  # noqa: E402
from bench.bench_quant import build_model, free, parse_args, parse_config, prepare, weight_bytes  # noqa: E402

MiB = 2 ** 20


def live_at_peak(trace: list[dict]) -> tuple[int, list[dict]]:
    """An allocator trace (``torch.cuda.memory._snapshot()["device_traces"][i]``) -> (the highest sum of live
    bytes it reaches, the allocations live then)."""
    live: dict[int, dict] = {}
    cur = best = 0
    best_live: list[dict] = []
    for ev in trace:
        if ev["action"] == "alloc":
            live[ev["addr"]] = ev
            cur += ev["size"]
            if cur > best:
                best, best_live = cur, list(live.values())
        elif ev["action"] == "free_requested" and ev["addr"] in live:
            cur -= live.pop(ev["addr"])["size"]
    return best, best_live


def source(ev: dict, depth: int) -> str:
    """An allocation's innermost ``depth`` frames in this repository."""
    frames = [f for f in ev.get("frames", []) if f["filename"].startswith(str(ROOT))
              and not f["filename"].endswith(Path(__file__).name)]
    key = " < ".join(f"{Path(f['filename']).relative_to(ROOT)}:{f['line']}:{f['name']}" for f in frames[:depth])
    return key or "(outside the repository)"


def by_source(events: list[dict], depth: int = 3) -> list[dict]:
    """Live allocations -> [{source, bytes, blocks: the largest few block sizes}], largest group first."""
    groups: dict[str, list[int]] = collections.defaultdict(list)
    for ev in events:
        groups[source(ev, depth)].append(ev["size"])
    return [dict(source=k, bytes=sum(v), blocks=sorted(v, reverse=True)[:6])
            for k, v in sorted(groups.items(), key=lambda kv: -sum(kv[1]))]


def trace_config(config: str, dims, float_sd: dict, mel: torch.Tensor, args, depth: int = 3) -> dict:
    free(args.device)
    base = torch.cuda.memory_allocated()
    model, _ = build_model(dims, float_sd, config, args)
    weights, _ = weight_bytes(model)
    free(args.device)
    torch.cuda.reset_peak_memory_stats()
    torch.cuda.memory._record_memory_history(max_entries=2_000_000, stacks="python")
    run = OursRun(model, mode=args.variant, max_batch=1, device=args.device, dtype=model.dtype)
    try:
        for _ in range(2):
            run.decode(mel, args.tokens)
        torch.cuda.synchronize()
        peak = torch.cuda.max_memory_allocated() - base
        trace = torch.cuda.memory._snapshot()["device_traces"][torch.cuda.current_device()]
    finally:
        torch.cuda.memory._record_memory_history(enabled=None)
        run.close()
        del run, model
        gc.collect()
        free(args.device)
    traced, events = live_at_peak(trace)
    return dict(config=config, weight_bytes=weights, peak_bytes=peak, peak_over_weights=peak / weights,
                traced_live_bytes=traced, groups=by_source(events, depth),
                peak_set_by=source(events[-1], 12) if events else None)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="large-v3")
    ap.add_argument("--configs", nargs="+", default=["int8", "int4+kv8"])
    ap.add_argument("--tokens", type=int, default=100)
    ap.add_argument("--top", type=int, default=8, help="groups printed per config")
    ap.add_argument("--depth", type=int, default=3, help="innermost frames in this repository that name a group")
    ap.add_argument("--json")
    args = ap.parse_args(argv)
    for c in args.configs:
        parse_config(c)
    if not torch.cuda.is_available():
        raise SystemExit("bench_peak_memory: needs a CUDA GPU (it traces the CUDA caching allocator)")
    qargs = parse_args(["--model", args.model, "--batch", "1", "--tokens", str(args.tokens), "--repeats", "1"])
    dims, float_sd, mels, meta = prepare(qargs)
    rows = []
    for config in args.configs:
        row = trace_config(config, dims, float_sd, mels[1], qargs, args.depth)
        rows.append(row)
        print(f"\n{config}: weights {row['weight_bytes'] / MiB:.1f} MiB, peak {row['peak_bytes'] / MiB:.1f} MiB "
              f"({row['peak_over_weights']:.3f}x the weights); live at the traced peak "
              f"{row['traced_live_bytes'] / MiB:.1f} MiB beyond what was allocated before the engine:")
        for g in row["groups"][:args.top]:
            blocks = ", ".join(f"{b / MiB:.2f}" for b in g["blocks"])
            print(f"  {g['bytes'] / MiB:9.2f} MiB  {g['source']}  (largest blocks, MiB: {blocks})")
        print(f"  the allocation that reached the peak: {row['peak_set_by']}")
    if args.json:
        Path(args.json).write_text(json.dumps(dict(meta=dict(meta, command=" ".join(sys.argv)), rows=rows), indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
