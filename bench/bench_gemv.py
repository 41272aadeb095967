"""One-row linears of the decode step: the engine's fused linear against a grid-of-SMs GEMV (issue 15).

    python bench/bench_gemv.py --shapes 3840x1280 1280x1280 5120x1280 1280x5120 --json bench/results/gemv.json

For each weight [N, K] (fp16, large-v3's decoder projections by default), ``--calls`` launches of a one-row
product back to back (cycling over copies of the weight that together exceed the L2 three times) in a CUDA graph
with programmatic dependent launch (each waits on the one before, as in the step): ``engine``, ``ops.fused_linear``
with its configuration for one row (``N / BLOCK_N`` programs, each one block of weights); ``gemv_bn{B}_x{P}``, a
kernel of P programs per SM, each taking output blocks of B rows ``pid, pid + grid, ...`` with the next block's
load issued before the current block's sum. Microseconds per call and the weight bytes' rate; the outputs are
compared with the engine's (float32 sums in another order: ``max_rel_diff``). Nothing is asserted.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
import triton
import triton.language as tl

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench._gpu import capture, write_json  # noqa: E402
from bench.bench_step import replay_ms  # noqa: E402
from trtllm_ext.kernels import ops  # noqa: E402
from trtllm_ext.kernels.linear import pdl_trigger, pdl_wait  # noqa: E402

L2_ROTATION_BYTES = 160 * 2**20  # > 3x the H100's / H200's 50 MB L2: the calls cycle over this many weight bytes


@triton.jit
def _block(w_ptr, n0, N, K, stride_wn, KP: tl.constexpr, BLOCK_N: tl.constexpr):
    """The weights of outputs [n0, n0 + BLOCK_N) (rows past N and columns past K read 0): [BLOCK_N, KP]."""
    offs_n = n0 + tl.arange(0, BLOCK_N)
    offs_k = tl.arange(0, KP)
    return tl.load(w_ptr + offs_n[:, None] * stride_wn + offs_k[None, :],
                   mask=(offs_n < N)[:, None] & (offs_k < K)[None, :], other=0.0)


@triton.jit
def gemv_kernel(x_ptr, w_ptr, y_ptr, N, K, stride_wn, KP: tl.constexpr, BLOCK_N: tl.constexpr, PDL: tl.constexpr):
    """y [N] = w [N, K] @ x [K], one row; program p sums output blocks p, p + grid, ... (fp32 sums)."""
    pdl_trigger(PDL)
    pid = tl.program_id(0)
    grid = tl.num_programs(0)
    w = _block(w_ptr, pid * BLOCK_N, N, K, stride_wn, KP, BLOCK_N)  # before the wait: weights never depend on it
    pdl_wait(PDL)
    offs_k = tl.arange(0, KP)
    x = tl.load(x_ptr + offs_k, mask=offs_k < K, other=0.0).to(tl.float32)
    b = pid
    while b * BLOCK_N < N:
        w_next = _block(w_ptr, (b + grid) * BLOCK_N, N, K, stride_wn, KP, BLOCK_N)
        offs_n = b * BLOCK_N + tl.arange(0, BLOCK_N)
        y = tl.sum(w.to(tl.float32) * x[None, :], axis=1)
        tl.store(y_ptr + offs_n, y.to(y_ptr.dtype.element_ty), mask=offs_n < N)
        w = w_next
        b += grid


def gemv(x: torch.Tensor, w: torch.Tensor, out: torch.Tensor, grid: int, block_n: int, pdl: bool) -> torch.Tensor:
    n, k = w.shape
    kp = triton.next_power_of_2(k)
    gemv_kernel[(grid,)](x, w, out, n, k, w.stride(0), KP=kp, BLOCK_N=block_n, PDL=int(pdl),
                         num_warps=8 if block_n * kp >= 16384 else 4, launch_pdl=pdl)
    return out


def bench(n: int, k: int, calls: int, block_ns, sms: int, per_sm) -> dict:
    gen = torch.Generator(device="cuda").manual_seed(n + k)
    copies = max(2, -(-L2_ROTATION_BYTES // (n * k * 2)))  # the weights of successive calls are not in L2
    ws = [torch.randn(n, k, device="cuda", generator=gen).half() for _ in range(copies)]
    x = torch.randn(1, k, device="cuda", generator=gen).half()
    y_engine = torch.empty(1, n, device="cuda", dtype=torch.float16)
    row = {"n": n, "k": k, "weight_bytes": n * k * 2, "engine_config": str(ops.linear_config(1, n, k, False))}
    graph = capture(lambda: [ops.fused_linear(x, ws[i % copies], out=y_engine, pdl=True) for i in range(calls)])
    row["engine_us"] = round(replay_ms(graph, 1, 7) * 1e3 / calls, 3)
    want = y_engine.float()
    for bn in block_ns:
        for p in per_sm:
            y = torch.empty(n, device="cuda", dtype=torch.float16)
            graph = capture(lambda: [gemv(x[0], ws[i % copies], y, p * sms, bn, True) for i in range(calls)])
            name = f"gemv_bn{bn}_x{p}"
            row[f"{name}_us"] = round(replay_ms(graph, 1, 7) * 1e3 / calls, 3)
            row[f"{name}_max_rel_diff"] = float(((y.float() - want[0]).abs() / want[0].abs().clamp_min(1e-2)).max())
    return row


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--shapes", nargs="+", default=["3840x1280", "1280x1280", "5120x1280", "1280x5120"])
    ap.add_argument("--block_n", type=int, nargs="+", default=[1, 2, 4])
    ap.add_argument("--per_sm", type=int, nargs="+", default=[1, 2], help="programs per SM of the GEMV's grid")
    ap.add_argument("--calls", type=int, default=64)
    ap.add_argument("--json")
    args = ap.parse_args(argv)
    props = torch.cuda.get_device_properties(0)
    sms = props.multi_processor_count
    rows = [bench(*map(int, s.split("x")), args.calls, args.block_n, sms, args.per_sm) for s in args.shapes]
    cols = ["engine_us"] + [f"gemv_bn{b}_x{p}_us" for b in args.block_n for p in args.per_sm]
    print(f"{props.name}: us per one-row product, {args.calls} in a graph with PDL (TB/s of the weight bytes)")
    print("| N x K | " + " | ".join(cols) + " | engine config |")
    print("|---|" + "---|" * (len(cols) + 1))
    for r in rows:
        cells = [f"{r[c]:.2f} ({r['weight_bytes'] / r[c] / 1e6:.2f})" for c in cols]
        print(f"| {r['n']} x {r['k']} | " + " | ".join(cells) + f" | {r['engine_config']} |")
    print("max rel diff gemv vs engine:", {c: max(r[c] for r in rows) for c in rows[0] if c.endswith("rel_diff")})
    if args.json:
        write_json(args.json, rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
