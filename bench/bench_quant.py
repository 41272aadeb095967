"""Quantized weights and the int8 K/V cache on the fast path (issue 28 item 4): fp16 vs weight-only int8 vs int4,
each with and without the int8 K/V cache, in one process.

    python bench/bench_quant.py --model large-v3 --batch 1 16 32 --tokens 100 --json bench/results/quant.json
    python bench/bench_quant.py --model tiny --device cpu --batch 1 2 --tokens 8 --repeats 1 --dtype float32  # CPU
    python bench/bench_quant.py --report bench/results/quant.json

The float weights are random (``random_whisper``: the real shapes of ``--model``, ``--seed``), made once on the CPU;
each config of ``--configs`` (fp16: the float weights in ``--dtype``; int8 or int4 weight-only, int4 in groups of
``--group_size``; ``+kv8``: the int8 K/V cache) builds its model from them directly on ``--device``
(``Whisper.from_state_dict`` with the device: the float weights are copied over and the projections quantized there,
by the code the engine build uses), so the same float weights underlie every config. Each model is accelerated once
for max(``--batch``) rows and timed per batch by ``bench_e2e.bench_system``: greedy, end-of-text suppressed, exactly
``--tokens`` tokens; encoder ms, ms per segment, the replayed decode step alone, the segment's breakdown; medians of
``--repeats`` after a warm-up. Tokens are compared with the fp16 config's at the same batch (the share of equal
tokens; random weights, so no WER). Memory (CUDA only): weight bytes (the parameters and buffers the model holds:
quantized weights with their scales; the caches are not among them), the allocator's peak during each batch minus
what was allocated before the model was built (and absolute); with ``--b1_engine`` (default on) the same weights
accelerated for one row, the peak over a B=1 segment divided by the weight bytes. Every model is freed before the
next is built. Prints one table per batch with ratios to fp16 and a table of the issue's targets (met, or missed by
how much and why); writes ``--json`` after every batch, so a run cut short keeps what it measured; ``--report
A.json`` reprints. Nothing here asserts on a time.
"""
from __future__ import annotations

import argparse
import datetime
import gc
import json
import sys
import time
import traceback
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench._systems import OursRun  # noqa: E402
from bench.bench_e2e import bench_system, environment, median_time  # noqa: E402
from whisper_model.fast.build import random_whisper  # noqa: E402
from whisper_model.model import Whisper  # noqa: E402

DEFAULT_CONFIGS = "fp16,int8,int4,fp16+kv8,int8+kv8,int4+kv8"
QUANT_OPS = ("weight_only_linear", "self_attention_int8", "cross_attention_int8")
GB = 2**30


def parse_config(name: str) -> dict:
    """``"int4+kv8"`` -> ``Whisper``'s quantization options."""
    weights, *rest = name.split("+")
    if weights not in ("fp16", "int8", "int4") or rest not in ([], ["kv8"]):
        raise SystemExit(f"--configs: unknown config {name!r} (fp16, int8 or int4, optionally +kv8)")
    return dict(weight_only_precision=None if weights == "fp16" else weights, int8_kv_cache=bool(rest))


def is_cuda(device) -> bool:
    return torch.device(device).type == "cuda"


def free(device) -> None:
    gc.collect()
    if is_cuda(device):
        torch.cuda.synchronize()
        torch.cuda.empty_cache()


def weight_bytes(model) -> tuple[int, int]:
    """(bytes of every parameter and buffer the model holds, those of the blocks' projections alone: what weight-only
    quantization replaces by qweight + scales). The K/V caches belong to the engine, not the model."""
    total = linear = 0
    for name, t in [*model.named_parameters(), *model.named_buffers()]:
        n = t.numel() * t.element_size()
        total += n
        if ".blocks." in name and (name.endswith((".qweight", ".scales")) or
                                   (name.endswith(".weight") and t.dim() == 2)):
            linear += n
    return total, linear


def cache_bytes(run: OursRun) -> int:
    caches = run.fast.text_decoder.caches
    stores = (caches.self_store, caches.cross_store, caches.self_scale, caches.cross_scale)
    return sum(t.numel() * t.element_size() for t in stores if t is not None)


def fused_quant_ops(device) -> dict:
    """Which quantized ops the Triton kernel module has (a missing one runs on ``kernels.reference``)."""
    if not is_cuda(device):
        return {name: False for name in QUANT_OPS}
    from trtllm_ext.kernels import ops

    return {name: hasattr(ops, name) for name in QUANT_OPS}


def build_model(dims, float_sd: dict, config: str, args) -> tuple[Whisper, float]:
    """The config's model, made on the device from the float weights (quantized there); seconds taken."""
    free(args.device)
    t0 = time.perf_counter()
    model = Whisper.from_state_dict(dims, float_sd, dtype=getattr(torch, args.dtype), device=args.device,
                                    weight_only_group_size=args.group_size, **parse_config(config))
    free(args.device)
    if model.device.type != torch.device(args.device).type:
        raise RuntimeError(f"{config}: the model was built on {model.device}, not {args.device}")
    return model, time.perf_counter() - t0


def bench_batches(run: OursRun, config: str, info: dict, mels: dict, args, reference_tokens: dict, base: int,
                  out: dict) -> None:
    """``bench_system`` once per batch, the allocator's peak reset before each; each row into ``out["results"]``,
    the JSON rewritten after each."""
    for b in args.batch:
        if is_cuda(args.device):
            torch.cuda.reset_peak_memory_stats()
        (row,) = bench_system(run, {b: mels[b]}, args.tokens, args.repeats, args.device, reference_tokens, base)
        row.update(info, config=config, tokens_equal_fp16=row.pop("agree_with_ours", None))
        if is_cuda(args.device):
            row["peak_abs_gb"] = torch.cuda.max_memory_allocated() / GB
        out["results"].append(row)
        write(out, args.json)


def bench_b1(model: Whisper, config: str, mel: torch.Tensor, args, base: int, weights: int,
             reference_tokens: dict) -> dict:
    """The same weights accelerated for one row: one B=1 segment after a warm-up (which captures), its peak."""
    free(args.device)
    if is_cuda(args.device):
        torch.cuda.reset_peak_memory_stats()
    run = OursRun(model, mode=args.variant, max_batch=1, device=args.device, dtype=model.dtype)
    try:
        seg_s, tokens = median_time(lambda: run.decode(mel, args.tokens), 1, args.device)
        row = dict(config=config, batch=1, engine_rows=1, ms_per_segment=seg_s * 1e3, weight_bytes=weights,
                   cache_bytes=cache_bytes(run))
        ref = reference_tokens.get(1)
        if ref is not None and ref.shape == tokens.shape:
            row["tokens_equal_fp16"] = float((ref == tokens.cpu()).float().mean())
        if is_cuda(args.device):
            peak = torch.cuda.max_memory_allocated() - base
            row.update(peak_mem_gb=peak / GB, peak_abs_gb=torch.cuda.max_memory_allocated() / GB,
                       peak_over_weights=peak / weights)
    finally:
        run.close()  # the engine: its caches and graphs (the weights stay with the model)
        free(args.device)
    print(json.dumps({k: round(v, 3) if isinstance(v, float) else v for k, v in row.items()}), flush=True)
    return row


def bench_config(config: str, dims, float_sd: dict, mels: dict, args, reference_tokens: dict, out: dict) -> None:
    """Build, accelerate for max(batch) rows, time every batch, then (``--b1_engine``) the B=1 engine; free all."""
    cuda = is_cuda(args.device)
    free(args.device)
    base = torch.cuda.memory_allocated() if cuda else 0
    model, build_s = build_model(dims, float_sd, config, args)
    total, linear = weight_bytes(model)
    info = dict(weight_bytes=total, linear_bytes=linear, build_s=build_s,
                model_alloc_gb=(torch.cuda.memory_allocated() - base) / GB if cuda else None)
    print(f"{config}: built on {model.device} in {build_s:.1f} s, weights {total / GB:.3f} GB "
          f"(projections {linear / GB:.3f} GB)", flush=True)
    try:
        run = OursRun(model, mode=args.variant, max_batch=max(args.batch), device=args.device, dtype=model.dtype)
        run.own_weight_bytes = 0  # base was read before the model was built: its weights are in the peak already
        info.update(cache_bytes=cache_bytes(run), accelerate_s=run.build_s)
        try:
            bench_batches(run, config, info, mels, args, reference_tokens, base, out)
        finally:
            run.close()
            del run
        if args.b1_engine:
            out["b1"].append(bench_b1(model, config, mels[1], args, base, total, reference_tokens))
    finally:
        del model
        free(args.device)


def add_ratios(results: list[dict]) -> None:
    """Each row's weight bytes, step, segment and encoder time over the fp16 row's of the same batch."""
    fp16 = {r["batch"]: r for r in results if r["config"] == "fp16"}
    for r in results:
        ref = fp16.get(r["batch"])
        if ref is None:
            continue
        r["weight_ratio"] = r["weight_bytes"] / ref["weight_bytes"]
        r["linear_ratio"] = r["linear_bytes"] / ref["linear_bytes"]
        r["step_ratio"] = step_ms(r) / step_ms(ref)
        if r.get("step_replay_ms") is not None and ref.get("step_replay_ms") is not None:
            r["step_replay_ratio"] = r["step_replay_ms"] / ref["step_replay_ms"]
        r["segment_ratio"] = r["ms_per_segment"] / ref["ms_per_segment"]
        r["encoder_ratio"] = r["encoder_ms"] / ref["encoder_ms"]


def step_ms(row: dict) -> float:
    """The replayed step alone (CUDA), else (total - encoder) / tokens."""
    return row["step_replay_ms"] if row.get("step_replay_ms") is not None else row["per_step_ms"]


# ------------------------------------------------------------------------------------------ the targets

def _verdict(value, limit: float) -> str:
    if value is None:
        return "n/a"
    return "met" if value <= limit else f"missed by {100 * (value / limit - 1):.0f}%"


def _why_step(meta: dict, kv: bool = False) -> str:
    fused, parts = meta.get("fused_quant_ops", {}), []
    if meta.get("device_type") != "cuda":
        return "CPU run: reference kernels, no CUDA graphs (the targets are the GPU's)"
    if not fused.get("weight_only_linear"):
        parts.append("no Triton weight-only GEMM (ops.weight_only_linear): each projection dequantizes its whole "
                     "weight to float32, then fp16, every call (reference path), ~10x fp16's weight traffic")
    if kv and not (fused.get("self_attention_int8") and fused.get("cross_attention_int8")):
        parts.append("int8 K/V attention on the reference path: the cached K/V are dequantized every step")
    return "; ".join(parts) or "see breakdown_ms: the non-weight part of the step does not shrink"


def _why_weights(row: dict, fp16: dict) -> str:
    rest = (row["weight_bytes"] - row["linear_bytes"]) / fp16["weight_bytes"]
    return (f"the float parts (tied embedding, convs, norms, biases) alone are {rest:.2f}x fp16's bytes; "
            f"the projections {row['linear_ratio']:.2f}x theirs")


def _why_peak(row: dict) -> str:
    extra, caches = row["peak_mem_gb"] * GB - row["weight_bytes"], row["cache_bytes"]
    return (f"beyond the weights: K/V caches {caches / GB:.2f} GB ({caches / row['weight_bytes']:.2f}x the "
            f"weights), the rest {(extra - caches) / GB:.2f} GB (encoder activations, graph pools, logits, mel)")


def targets(out: dict) -> list[dict]:
    """The issue's targets, each with measured value, limit, verdict and (missed) why."""
    res, meta, rows = out["results"], out["meta"], []
    get = lambda c, b: next((r for r in res if r["config"] == c and r["batch"] == b), None)  # noqa: E731
    b0 = min((r["batch"] for r in res), default=None)

    def add(target, config, row, key, limit, why):
        value = None if row is None else row.get(key)
        verdict = _verdict(value, limit)
        rows.append(dict(target=target, config=config, measured=value, limit=limit, status=verdict,
                         why=why() if verdict.startswith("missed") else ""))

    for c, limit in (("int8", 0.55), ("int4", 0.3)):
        why = lambda c=c: _why_weights(get(c, b0), get("fp16", b0))  # noqa: E731
        add("weight bytes / fp16's", c, get(c, b0), "weight_ratio", limit, why)
    for c, limit in (("int8", 0.8), ("int4", 0.7)):
        add("replayed decode step at B=1 / fp16's", c, get(c, 1), "step_replay_ratio", limit,
            lambda: _why_step(meta))
    for c in ("fp16+kv8", "int8+kv8", "int4+kv8"):
        add("ms per segment at B=16 / fp16's", c, get(c, 16), "segment_ratio", 0.85,
            lambda: _why_step(meta, kv=True))
    for r in out.get("b1", []):
        add("peak memory B=1 (B=1 engine) / weight bytes", r["config"], r, "peak_over_weights", 1.3,
            lambda r=r: _why_peak(r))
    return rows


# ------------------------------------------------------------------------------------------ tables

def _cell(v, fmt: str, width: int) -> str:
    return f"{'n/a':>{width}}" if v is None else f"{v:{fmt}}".rjust(width)


def _table(rows: list[dict], cols: list[tuple[str, str, str, int]]) -> None:
    print(" ".join(h.rjust(w) if i else h.ljust(w) for i, (h, _, _, w) in enumerate(cols)))
    for r in rows:
        cells = [_cell(r.get(key), fmt, w) if i else str(r.get(key)).ljust(w) for i, (_, key, fmt, w) in
                 enumerate(cols)]
        print(" ".join(cells))


def print_tables(out: dict) -> None:
    cols = [("config", "config", "", 9), ("enc ms", "encoder_ms", ".2f", 9), ("step ms", "step_ms", ".3f", 8),
            ("ms/seg", "ms_per_segment", ".1f", 8), ("total ms", "total_ms", ".1f", 9),
            ("tok=fp16", "tokens_equal_fp16", ".3f", 8), ("peak GB", "peak_mem_gb", ".2f", 7),
            ("abs GB", "peak_abs_gb", ".2f", 7), ("weights GB", "weight_gb", ".3f", 10),
            ("w/fp16", "weight_ratio", ".3f", 6), ("step/fp16", "step_ratio", ".3f", 9),
            ("seg/fp16", "segment_ratio", ".3f", 8), ("enc/fp16", "encoder_ratio", ".3f", 8)]
    for b in sorted({r["batch"] for r in out["results"]}):
        meta = out["meta"]
        print(f"\nB={b} ({meta.get('model')}, {meta.get('tokens')} tokens; engine for {max(meta.get('batches', [b]))} "
              f"rows; step: replayed alone on CUDA, else (total - enc) / tokens)")
        _table([dict(r, step_ms=step_ms(r), weight_gb=r["weight_bytes"] / GB) for r in out["results"]
                if r["batch"] == b], cols)
    if out.get("b1"):
        print("\nB=1 engine (accelerated for one row): one B=1 segment")
        _table([dict(r, weight_gb=r["weight_bytes"] / GB, cache_gb=r["cache_bytes"] / GB) for r in out["b1"]],
               [("config", "config", "", 9), ("ms/seg", "ms_per_segment", ".1f", 8),
                ("weights GB", "weight_gb", ".3f", 10), ("caches GB", "cache_gb", ".3f", 9),
                ("peak GB", "peak_mem_gb", ".3f", 8), ("abs GB", "peak_abs_gb", ".3f", 8),
                ("peak/weights", "peak_over_weights", ".3f", 12), ("tok=fp16", "tokens_equal_fp16", ".3f", 8)])
    print("\ntargets")
    print(f"{'target':<44} {'config':<9} {'measured':>8} {'limit':>6}  status / why")
    for t in targets(out):
        v = "n/a" if t["measured"] is None else f"{t['measured']:.3f}"
        print(f"{t['target']:<44} {t['config']:<9} {v:>8} {t['limit']:>6.2f}  {t['status']}"
              + (f": {t['why']}" if t["why"] else ""))
    for e in out.get("errors", []):
        print(f"error: {e['config']}: {e['error']}")


# ------------------------------------------------------------------------------------------ the run

def parse_args(argv):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="large-v3", help="the shapes of this published model (random weights)")
    ap.add_argument("--configs", default=DEFAULT_CONFIGS, help="comma-separated: fp16, int8, int4, each [+kv8]")
    ap.add_argument("--batch", type=int, nargs="+", default=[1, 16, 32])
    ap.add_argument("--tokens", type=int, default=100)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--dtype", default="float16", choices=["float16", "bfloat16", "float32"])
    ap.add_argument("--group_size", type=int, default=128, help="int4's group of input features")
    ap.add_argument("--variant", default="triton-pdl", help="OursRun mode (bench/_systems.py)")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--b1_engine", action=argparse.BooleanOptionalAction, default=True,
                    help="also accelerate each config for one row: peak memory of a B=1 segment / weight bytes")
    ap.add_argument("--json", help="write the results here (rewritten after every batch)")
    ap.add_argument("--report", nargs="+", help="print the tables of earlier --json files and exit")
    args = ap.parse_args(argv)
    configs = list(dict.fromkeys(args.configs.split(",")))
    for c in configs:
        parse_config(c)
    args.configs = sorted(configs, key=lambda c: c != "fp16")  # fp16 first: the others are compared with it
    args.batch = sorted(set(args.batch))
    return args


def report(files: list[str]) -> int:
    for f in files:
        out = json.loads(Path(f).read_text())
        print(f"{f}: {out['meta'].get('device') or 'cpu'}, {out['meta'].get('date')}, {out['meta'].get('command')}")
        add_ratios(out["results"])
        print_tables(out)
    return 0


def write(out: dict, path) -> None:
    add_ratios(out["results"])
    out["targets"] = targets(out)
    if path:
        Path(path).write_text(json.dumps(out, indent=1))


def prepare(args) -> tuple:
    """(dims, the float weights on the CPU, mel per batch on the device, the run's metadata)."""
    t0 = time.perf_counter()
    float_model = random_whisper(args.model, dtype=getattr(torch, args.dtype), device="cpu", seed=args.seed)
    dims, float_sd = float_model.dims, {k: v.detach() for k, v in float_model.state_dict().items()}
    del float_model
    print(f"random {args.model} float weights on the CPU in {time.perf_counter() - t0:.1f} s", flush=True)
    gen = torch.Generator().manual_seed(args.seed + 1)
    mels = {b: (torch.randn(b, dims.n_mels, 2 * dims.n_audio_ctx, generator=gen) * 0.5).clamp(-1.5, 1.5)
            .to(args.device) for b in sorted(set(args.batch) | {1})}
    env = environment(args.device)
    env.setdefault("device", "cpu")
    meta = dict(env, device_type=torch.device(args.device).type,
                started=datetime.datetime.now(datetime.timezone.utc).isoformat(), model=args.model,
                dtype=args.dtype, tokens=args.tokens, batches=args.batch, configs=args.configs, repeats=args.repeats,
                group_size=args.group_size, variant=args.variant, b1_engine=args.b1_engine,
                fused_quant_ops=fused_quant_ops(args.device))
    return dims, float_sd, mels, meta


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.report:
        return report(args.report)
    torch.backends.cuda.matmul.allow_tf32 = False
    t0 = time.perf_counter()
    dims, float_sd, mels, meta = prepare(args)
    out = dict(meta=meta, results=[], b1=[])
    reference_tokens: dict = {}
    for config in args.configs:
        t1 = time.perf_counter()
        try:
            bench_config(config, dims, float_sd, mels, args, reference_tokens, out)
        except Exception as e:  # noqa: BLE001 - one failing config must not lose the others' numbers
            traceback.print_exc()
            out.setdefault("errors", []).append(dict(config=config, error=f"{type(e).__name__}: {e}"))
        print(f"{config}: {time.perf_counter() - t1:.1f} s", flush=True)
        out["meta"]["wall_s"] = time.perf_counter() - t0
        write(out, args.json)
    print_tables(out)
    return 1 if out.get("errors") else 0


if __name__ == "__main__":
    sys.exit(main())
