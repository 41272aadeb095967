"""The CPU's int8 weight-only product kernels against the float32 one, per call, at Whisper's shapes (issue 25).

    python bench/bench_cpu_int8_kernels.py --threads 1 --rows 1 1500 --json bench/results/cpu_int8_kernels.json

For each [N, K] (tiny's and base's projections, the vocabulary projection at one row) and row count M: the
float32 ``F.linear``, fbgemm's dynamic quantized linear on the prepacked weight (``cpu_int8.packed_linear``, what
an int8 model runs), ``torch.ops.aten._weight_int8pack_mm`` (int8 weight, float activation, scale per channel:
gpt-fast's CPU int8 path) and ``torch._int_mm`` with the rows quantized (``cpu_int8.int_mm_linear``). Best of three
timed loops after two warm-up calls, milliseconds per call; the largest error against float64 is printed too.
Nothing is asserted.
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
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from trtllm_ext.kernels import cpu_int8  # noqa: E402

SHAPES = [(384, 384), (1152, 384), (1536, 384), (384, 1536), (512, 512), (1536, 512), (2048, 512), (512, 2048),
          (51864, 384)]
KERNELS = ("fp32", "fbgemm", "int8pack_mm", "int_mm")


def per_call_ms(fn, budget_s: float = 0.3) -> float:
    fn()
    fn()
    t0 = time.perf_counter()
    fn()
    n = max(1, int(budget_s / max(time.perf_counter() - t0, 1e-6)))
    best = float("inf")
    for _ in range(3):
        t0 = time.perf_counter()
        for _ in range(n):
            fn()
        best = min(best, (time.perf_counter() - t0) / n)
    return best * 1e3


def row(n: int, k: int, m: int, gen: torch.Generator) -> dict:
    w = torch.randn(n, k, generator=gen)
    scales = w.abs().amax(1) / 127
    q = torch.round(w / scales[:, None]).to(torch.int8)
    x = torch.randn(m, k, generator=gen)
    packed = cpu_int8.packed_weight(q, scales)
    calls = {"fp32": lambda: F.linear(x, w), "fbgemm": lambda: cpu_int8.packed_linear(x, packed),
             "int8pack_mm": lambda: torch.ops.aten._weight_int8pack_mm(x, q, scales),
             "int_mm": lambda: cpu_int8.int_mm_linear(x, q, scales)}
    want = x.double() @ (q.double() * scales.double()[:, None]).T
    out = {"n": n, "k": k, "m": m}
    for name, fn in calls.items():
        out[f"{name}_ms"] = round(per_call_ms(fn), 4)
        out[f"{name}_err"] = float((fn().double() - want).abs().max())
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--rows", nargs="+", type=int, default=[1, 1500])
    p.add_argument("--json", default=None)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    gen = torch.Generator().manual_seed(0)
    rows = []
    print("| N x K | M | " + " | ".join(f"{k} ms" for k in KERNELS) + " |")
    print("|---|---|" + "---|" * len(KERNELS))
    with torch.no_grad():
        for n, k in SHAPES:
            for m in args.rows:
                if n * m > 10_000_000:  # the vocabulary projection is a one-row product
                    continue
                r = row(n, k, m, gen)
                rows.append(r)
                print(f"| {n} x {k} | {m} | " + " | ".join(f"{r[f'{c}_ms']:.3f}" for c in KERNELS) + " |",
                      flush=True)
    if args.json:
        env = {"date": datetime.date.today().isoformat(), "machine": platform.processor() or platform.machine(),
               "python": platform.python_version(), "torch": torch.__version__, "argv": sys.argv[1:]}
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps({"env": env, "rows": rows}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
