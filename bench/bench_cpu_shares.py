"""Where greedy CPU decoding spends its time, fp32 against int8 weights, and what that bounds (issue 25).

    python bench/bench_cpu_shares.py --model tiny.en --clips en_jfk.wav en_lecture_60s.wav en_librivox_0890.wav \
        en_f5_ref.wav --threads 1 --json bench/results/cpu_shares.json

Each precision transcribes the clips (``bench_cpu_int8.ours``: language en, temperature 0, greedy, no conditioning)
once for the wall time, then once more under ``torch.profiler`` (CPU). The profiled ops' self time is put in four
groups: the weight products (``PRODUCTS``: float ``addmm`` / ``mm`` / ``bmm``, the int8 ``linear_dynamic`` /
``_int_mm``), the attention (``scaled_dot_product_attention``'s CPU kernels), the other ops (LayerNorm, GELU, the
convolutions, the mel, copies, the logit filters' ops), and the time outside any op (Python, the profiler's own).
From the groups: the fp32 / int8 ratio if the int8 products took no time at all, and how much faster than fp32's
the int8 products would have to be for a 1.5x whole-run ratio (the rest unchanged). Nothing is asserted.
"""
from __future__ import annotations

import argparse
import datetime
import json
import platform
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from bench.bench_cpu_decoding import load_clip  # noqa: E402
from bench.bench_cpu_int8 import clip_arguments, ours  # noqa: E402

PRODUCTS = ("aten::addmm", "aten::mm", "aten::bmm", "aten::baddbmm", "quantized::linear_dynamic", "aten::_int_mm")
ATTENTION = ("aten::_scaled_dot_product_flash_attention_for_cpu", "aten::_scaled_dot_product_attention_math")
GROUPS = ("products", "attention", "other ops", "outside ops")


def group_of(key: str) -> str:
    return "products" if key in PRODUCTS else "attention" if key in ATTENTION else "other ops"


def shares(run, clips: dict) -> dict:
    """Wall seconds of one pass over ``clips`` and the profiled pass's seconds per group (``GROUPS``)."""
    run(next(iter(clips.values()))[:48000], None)  # warm-up
    t0 = time.perf_counter()
    for samples in clips.values():
        run(samples, None)
    wall = time.perf_counter() - t0
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        t0 = time.perf_counter()
        for samples in clips.values():
            run(samples, None)
        profiled = time.perf_counter() - t0
    out = dict.fromkeys(GROUPS, 0.0)
    for ev in prof.key_averages():
        out[group_of(ev.key)] += ev.self_cpu_time_total / 1e6
    out["outside ops"] = profiled - sum(out[g] for g in GROUPS[:3])
    return {"wall_s": round(wall, 3), "profiled_s": round(profiled, 3), **{g: round(v, 3) for g, v in out.items()}}


def bounds(fp32: dict, int8: dict, target: float = 1.5) -> dict:
    """In the profiled seconds: the ratio with free int8 products, and the product speed-up ``target`` needs."""
    rest = int8["profiled_s"] - int8["products"]
    need = fp32["profiled_s"] / target - rest  # int8 product seconds allowed
    return {"ratio": round(fp32["profiled_s"] / int8["profiled_s"], 3),
            "ratio_with_free_int8_products": round(fp32["profiled_s"] / rest, 3),
            "int8_products_allowed_s": round(need, 3),
            "product_speedup_needed": round(fp32["products"] / need, 2) if need > 0 else None,
            "product_speedup_now": round(fp32["products"] / int8["products"], 2)}


def main(argv=None) -> int:
    p = clip_arguments(argparse.ArgumentParser(description=__doc__.split("\n\n")[0]))
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--json", default=None)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    clips = {c: load_clip(Path(args.audio_dir), c) for c in args.clips}
    rows = {label: shares(ours(args.model, precision), clips) for label, precision in
            (("fp32", None), ("int8", "int8"))}
    print("| precision | wall s | profiled s | " + " | ".join(GROUPS) + " |")
    print("|---|---|---|" + "---|" * len(GROUPS))
    for label, r in rows.items():
        print(f"| {label} | {r['wall_s']:.2f} | {r['profiled_s']:.2f} | "
              + " | ".join(f"{r[g]:.2f}" for g in GROUPS) + " |")
    b = bounds(rows["fp32"], rows["int8"])
    print(json.dumps(b))
    if args.json:
        env = {"date": datetime.date.today().isoformat(), "machine": platform.processor() or platform.machine(),
               "python": platform.python_version(), "torch": torch.__version__, "argv": sys.argv[1:]}
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps({"env": env, "rows": rows, "bounds": b}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
