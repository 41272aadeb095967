"""End-to-end Whisper bench: openai-whisper vs Hugging Face transformers vs ours, in one process.

    python bench/bench_e2e.py --model large-v3 --batch 1 16 --tokens 100 --systems openai,hf,ours --json OUT

Every system gets the same random weights (real shapes of ``--model``) and the same random log-mel, decodes
one 30 s segment per row greedily with end-of-text suppressed, so each decodes exactly ``--tokens`` tokens
(checked). Reported per system and batch: encoder ms, total ms per batch, ms per segment, per-step ms
((total - encoder) / tokens; ours also the replayed step alone), tokens/s, real-time factor (compute time
over audio time), peak GPU memory, build / first-call (compile) time. Timings are medians of ``--repeats``
runs after one warm-up run, with a device synchronise around each; nothing here asserts on a time.

Systems: ``openai`` (openai-whisper ``decode``, model ``.half()`` with its LayerNorms kept float32),
``hf`` (``WhisperForConditionalGeneration.generate``, sdpa attention; modes ``dynamic``: default cache,
``static``: static cache with generate's automatic compile), ``ours`` (``engine.accelerate``; variants
``triton-pdl``, ``triton``, ``torch``: the captured step with plain PyTorch ops).
``--report A.json [B.json ...]`` prints the tables of earlier runs instead.
"""
from __future__ import annotations

import argparse
import datetime
import gc
import json
import platform
import statistics
import sys
import time
import traceback
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench._systems import SYSTEMS, SystemRun, prompt_ids  # noqa: E402
from whisper_model.fast.build import random_whisper  # noqa: E402

SEGMENT_S = 30.0


def _sync(device):
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def median_time(fn, repeats: int, device) -> tuple[float, object]:
    """Median wall time (s) of ``repeats`` calls after one warm-up call, synchronising around each."""
    out = fn()
    times = []
    for _ in range(repeats):
        _sync(device)
        t0 = time.perf_counter()
        out = fn()
        _sync(device)
        times.append(time.perf_counter() - t0)
    return statistics.median(times), out


def bench_system(run: SystemRun, mels: dict[int, torch.Tensor], tokens: int, repeats: int, device,
                 reference_tokens: dict, mem_base: int) -> list[dict]:
    rows = []
    for b, mel in mels.items():
        _sync(device)
        t0 = time.perf_counter()
        first = run.decode(mel, tokens)
        _sync(device)
        first_call = time.perf_counter() - t0
        enc_s, _ = median_time(lambda: run.encode(mel), repeats, device)
        total_s, out = median_time(lambda: run.decode(mel, tokens), repeats, device)
        out = out.cpu()
        counts = [int(n) for n in (out >= 0).sum(1)]
        row = dict(system=run.label, batch=b, tokens=tokens, encoder_ms=enc_s * 1e3, total_ms=total_s * 1e3,
                   ms_per_segment=total_s * 1e3 / b, per_step_ms=(total_s - enc_s) * 1e3 / tokens,
                   tokens_per_s=b * tokens / total_s, rtf=total_s / (b * SEGMENT_S),
                   first_call_s=first_call, build_s=run.build_s, tokens_ok=all(c == tokens for c in counts),
                   token_counts=sorted(set(counts)), same_as_first_run=bool(torch.equal(first.cpu(), out)))
        step = run.step_ms(b)
        if step is not None:
            row["step_replay_ms"] = step
        if hasattr(run, "breakdown_ms") and torch.device(device).type == "cuda":
            row["breakdown_ms"] = run.breakdown_ms(mel)
        ref = reference_tokens.setdefault(b, out)
        if ref.shape == out.shape:
            row["agree_with_ours"] = float((ref == out).float().mean())
        if torch.device(device).type == "cuda":  # this system's weights + everything it allocated
            row["peak_mem_gb"] = (torch.cuda.max_memory_allocated() - mem_base + run.own_weight_bytes) / 2**30
        print(json.dumps({k: (round(v, 3) if isinstance(v, float) else v) for k, v in row.items()}), flush=True)
        rows.append(row)
    return rows


def environment(device) -> dict:
    env = dict(date=datetime.date.today().isoformat(), python=platform.python_version(), torch=torch.__version__,
               command=" ".join(sys.argv))
    for mod in ("triton", "transformers", "whisper"):
        try:
            env[mod] = __import__(mod).__version__
        except Exception:  # noqa: BLE001 - a missing system is reported, not fatal
            env[mod] = None
    if torch.device(device).type == "cuda":
        p = torch.cuda.get_device_properties(device)
        env.update(device=p.name, sms=p.multi_processor_count, gpu_mem_gb=round(p.total_memory / 2**30, 1),
                   cuda=torch.version.cuda)
    return env


def print_tables(results: list[dict]) -> None:
    cols = [("system", "{:<24}"), ("batch", "{:>5}"), ("encoder_ms", "{:>9.2f}"), ("per_step_ms", "{:>9.3f}"),
            ("step_replay_ms", "{:>9.3f}"), ("ms_per_segment", "{:>10.1f}"), ("tokens_per_s", "{:>9.0f}"),
            ("rtf", "{:>8.5f}"), ("peak_mem_gb", "{:>7.2f}"), ("build_s", "{:>7.1f}"), ("first_call_s", "{:>7.1f}"),
            ("tokens_ok", "{!s:>5}")]
    heads = ["system", "B", "enc ms", "step ms", "replay", "ms/seg", "tok/s", "RTF", "mem GB", "build", "1st s", "ok"]
    print(" ".join(f"{h:>{len(fmt.format(0)) if 's' not in fmt[-3:] else 5}}" if i else f"{h:<24}"
                   for i, (h, (_, fmt)) in enumerate(zip(heads, cols))))
    for r in sorted(results, key=lambda r: (r["batch"], r["system"])):
        cells = []
        for name, fmt in cols:
            v = r.get(name)
            cells.append(fmt.format(v) if v is not None else f"{'-':>{len(fmt.format(0)) if name != 'system' else 24}}")
        print(" ".join(cells))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="large-v3")
    ap.add_argument("--batch", type=int, nargs="+", default=[1, 16])
    ap.add_argument("--tokens", type=int, default=100)
    ap.add_argument("--systems", default="openai,hf,ours")
    ap.add_argument("--hf_modes", default="dynamic,static")
    ap.add_argument("--ours_variants", default="triton-pdl")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--dtype", default="float16", choices=["float16", "bfloat16", "float32"])
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", help="write the results here (rewritten after every system)")
    ap.add_argument("--report", nargs="+", help="print the tables of earlier --json files and exit")
    args = ap.parse_args(argv)
    if args.report:
        results = [r for f in args.report for r in json.loads(Path(f).read_text())["results"]]
        print_tables(results)
        return 0

    torch.backends.cuda.matmul.allow_tf32 = False
    dtype, device = getattr(torch, args.dtype), args.device
    t0 = time.perf_counter()
    model = random_whisper(args.model, dtype=dtype, device=device, seed=args.seed)
    print(f"random {args.model} weights in {time.perf_counter() - t0:.1f} s", flush=True)
    gen = torch.Generator().manual_seed(args.seed + 1)
    mels = {b: (torch.randn(b, model.dims.n_mels, 2 * model.dims.n_audio_ctx, generator=gen) * 0.5).clamp(-1.5, 1.5)
            .to(device) for b in args.batch}
    ids = prompt_ids(model.dims)
    out = dict(meta=dict(environment(device), model=args.model, dtype=args.dtype, tokens=args.tokens,
                         batches=args.batch, prompt=ids["prompt"]), results=[])
    reference_tokens: dict = {}
    wanted = []
    for system in args.systems.split(","):
        modes = {"hf": args.hf_modes, "ours": args.ours_variants}.get(system, "")
        wanted += [(system, m) for m in modes.split(",")] if modes else [(system, None)]
    wanted.sort(key=lambda sm: sm[0] != "ours")  # ours first: the others' tokens are compared with its
    for system, mode in wanted:
        mem_base = 0
        if torch.device(device).type == "cuda":
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats()
            mem_base = torch.cuda.memory_allocated()
        try:
            run = SYSTEMS[system](model, mode=mode, max_batch=max(args.batch), device=device, dtype=dtype)
        except ImportError as e:
            print(f"skipping {system}: {e}", flush=True)
            continue
        try:
            out["results"] += bench_system(run, mels, args.tokens, args.repeats, device, reference_tokens, mem_base)
        except Exception as e:  # noqa: BLE001 - one failing system must not lose the others' numbers
            traceback.print_exc()
            out.setdefault("errors", []).append(dict(system=run.label, error=f"{type(e).__name__}: {e}"))
        run.close()
        del run
        gc.collect()
        if args.json:
            Path(args.json).write_text(json.dumps(out, indent=1))
    print_tables(out["results"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
