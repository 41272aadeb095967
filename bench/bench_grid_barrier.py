"""A grid-wide barrier inside one persistent kernel against a kernel boundary in a CUDA graph (issue 15).

    python bench/bench_grid_barrier.py --phases 256 --chunks 16 4096 16384 --json bench/results/grid_barrier.json

The decode step is a chain of ~260 dependent kernels; issue 15 asks for fewer, longer-lived ones. This measures
what one link of the chain costs each way, on work shaped like the step's: ``--phases`` phases, each program of
the grid (one per SM) reading its own slice of a weight (``CHUNK`` fp16 values, a power of two; 132 x 4096 x 2 B =
1.1 MB, 132 x 16384 x 2 B = 4.3 MB: a large-v3 1280 x 1280 projection is 3.3 MB) and one value that another
program wrote in the phase before, so every phase depends on the whole previous one:

* ``chain``: one kernel launch per phase, replayed as a CUDA graph, with programmatic dependent launch
  (``--pdl``: 0 off; 1 each kernel fetches its weight slice before it waits on the previous one, as the engine's
  kernels do);
* ``persistent``: one launch; between phases every program arrives at a grid-wide barrier (an atomic counter in
  global memory, release / acquire at GPU scope) and spins until all have; the next phase's slice is fetched
  before the barrier (the wait spins on atomics, or on volatile loads: ``persistent_spin_load``). Every program
  must be resident at once: the grid is the SM count. A spin is bounded
  (``MAX_SPIN``): a barrier that times out counts an error instead of hanging the GPU.

Both compute the same values (checked bit for bit, and against a float64 reference). Prints microseconds per phase
and writes JSON; nothing here asserts on a time.
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
from trtllm_ext.kernels.linear import pdl_trigger, pdl_wait  # noqa: E402

MAX_SPIN = 1 << 16  # a barrier gives up after ~50 ms (counted in err) rather than hang


@triton.jit
def _phase(w, x_ptr, p, pid, P):
    """One phase of program ``pid``: its slice's sum, plus half of what program pid + 1 wrote in phase p - 1."""
    x_in = tl.load(x_ptr + (p % 2) * P + (pid + 1) % P, cache_modifier=".cg")
    tl.store(x_ptr + ((p + 1) % 2) * P + pid, tl.sum(w.to(tl.float32), axis=0) * 1e-3 + 0.5 * x_in)


@triton.jit
def chain_kernel(w_ptr, x_ptr, p, P, CHUNK: tl.constexpr, PDL: tl.constexpr):
    pdl_trigger(PDL)
    pid = tl.program_id(0)
    w = tl.load(w_ptr + (p * P + pid) * CHUNK + tl.arange(0, CHUNK))
    pdl_wait(PDL)
    _phase(w, x_ptr, p, pid, P)


@triton.jit
def _grid_sync(bar_ptr, err_ptr, target, MAX_SPIN: tl.constexpr, SPIN_LOAD: tl.constexpr):
    """Arrive, then wait until ``target`` programs have arrived in all (the counter only grows). The wait spins on
    acquiring atomics, or (``SPIN_LOAD``) on volatile loads with one acquiring atomic once the count is reached."""
    tl.debug_barrier()  # this program's stores are issued before its arrival is released
    tl.atomic_add(bar_ptr, 1, sem="release", scope="gpu")
    if SPIN_LOAD:
        seen = tl.load(bar_ptr, volatile=True)
    else:
        seen = tl.atomic_add(bar_ptr, 0, sem="acquire", scope="gpu")
    spins = 0
    while (seen < target) & (spins < MAX_SPIN):
        if SPIN_LOAD:
            seen = tl.load(bar_ptr, volatile=True)
        else:
            seen = tl.atomic_add(bar_ptr, 0, sem="acquire", scope="gpu")
        spins += 1
    if SPIN_LOAD:
        seen = tl.atomic_add(bar_ptr, 0, sem="acquire", scope="gpu")
    if seen < target:
        tl.atomic_add(err_ptr, 1)
    tl.debug_barrier()


@triton.jit
def persistent_kernel(w_ptr, x_ptr, bar_ptr, err_ptr, P, PHASES: tl.constexpr, CHUNK: tl.constexpr,
                      MAX_SPIN: tl.constexpr, SPIN_LOAD: tl.constexpr):
    pid = tl.program_id(0)
    offs = tl.arange(0, CHUNK)
    w = tl.load(w_ptr + pid * CHUNK + offs)
    for p in range(PHASES):
        if p > 0:
            _grid_sync(bar_ptr, err_ptr, p * P, MAX_SPIN, SPIN_LOAD)
        _phase(w, x_ptr, p, pid, P)
        w = tl.load(w_ptr + (tl.minimum(p + 1, PHASES - 1) * P + pid) * CHUNK + offs)  # the next phase's slice


def reference(w: torch.Tensor, x0: torch.Tensor) -> torch.Tensor:
    """float64: the last phase's values. w [PHASES, P, CHUNK], x0 [P]."""
    x = x0.double()
    for p in range(w.shape[0]):
        x = w[p].double().sum(1) * 1e-3 + 0.5 * x.roll(-1)
    return x


def timed_us(graph: torch.cuda.CUDAGraph, phases: int) -> float:
    """Microseconds per phase of one replay (median of 7)."""
    return replay_ms(graph, 1, 7) * 1e3 / phases


def bench(chunk: int, phases: int, pdl_levels, P: int) -> dict:
    gen = torch.Generator(device="cuda").manual_seed(chunk)
    w = torch.randn(phases, P, chunk, device="cuda", generator=gen).half()
    x0 = torch.randn(P, device="cuda", generator=gen)
    want = reference(w, x0)
    x = torch.zeros(2, P, device="cuda")
    bar = torch.zeros(1, device="cuda", dtype=torch.int32)
    err = torch.zeros(1, device="cuda", dtype=torch.int32)
    row = {"chunk": chunk, "phase_bytes": P * chunk * 2, "programs": P, "phases": phases}
    results = {}

    def chain(pdl):
        def run():
            x[0].copy_(x0)
            for p in range(phases):
                chain_kernel[(P,)](w, x, p, P, CHUNK=chunk, PDL=pdl, num_warps=4, launch_pdl=bool(pdl))
        return run

    def persistent(spin_load):
        def run():
            x[0].copy_(x0)
            bar.zero_()
            persistent_kernel[(P,)](w, x, bar, err, P, PHASES=phases, CHUNK=chunk, MAX_SPIN=MAX_SPIN,
                                    SPIN_LOAD=spin_load, num_warps=4)
        return run

    for pdl in pdl_levels:
        graph = capture(chain(pdl))
        row[f"chain_pdl{pdl}_us"] = round(timed_us(graph, phases), 3)
        results[f"chain_pdl{pdl}"] = x[phases % 2].clone()
    for name, spin_load in (("persistent", False), ("persistent_spin_load", True)):
        graph = capture(persistent(spin_load))
        row[f"{name}_us"] = round(timed_us(graph, phases), 3)
        results[name] = x[phases % 2].clone()
    row["barrier_timeouts"] = int(err.item())
    first = next(iter(results.values()))
    row["bit_identical"] = all(torch.equal(first, r) for r in results.values())
    row["max_rel_err_vs_fp64"] = float(((first.double() - want).abs() / want.abs().clamp_min(1e-3)).max())
    return row


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--phases", type=int, default=256)
    ap.add_argument("--chunks", type=int, nargs="+", default=[16, 4096, 16384])
    ap.add_argument("--pdl", type=int, nargs="+", default=[0, 1])
    ap.add_argument("--programs", type=int, default=0, help="grid size (default: the SM count)")
    ap.add_argument("--json")
    args = ap.parse_args(argv)
    props = torch.cuda.get_device_properties(0)
    P = args.programs or props.multi_processor_count
    rows = [bench(c, args.phases, args.pdl, P) for c in args.chunks]
    cols = [f"chain_pdl{p}_us" for p in args.pdl] + ["persistent_us", "persistent_spin_load_us"]
    print(f"{props.name}, {P} programs, {args.phases} phases; us per phase")
    print("| bytes a phase | " + " | ".join(cols) + " | timeouts | identical | rel err |")
    print("|---|" + "---|" * (len(cols) + 3))
    for r in rows:
        print(f"| {r['phase_bytes']} | " + " | ".join(f"{r[c]:.2f}" for c in cols)
              + f" | {r['barrier_timeouts']} | {r['bit_identical']} | {r['max_rel_err_vs_fp64']:.1e} |")
    if args.json:
        write_json(args.json, rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
