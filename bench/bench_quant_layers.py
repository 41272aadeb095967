"""Decode linears with weight-only int8 / int4 weights against fp16, on one GPU.

    python bench/bench_quant_layers.py --model large-v3 --rows 1 16 32 [--tune] --json OUT.json

The shapes of one decoder layer (``bench_layers.linear_shapes``, the logits left out: the vocabulary table
stays in the activation dtype) at M rows: ``ops.fused_linear`` on the fp16 weight and ``ops.weight_only_linear``
on its int8 (per channel) and int4 (group 128) quantization, each timed as a chain of launches captured in one
CUDA graph on separate weight copies (nothing served from L2), with PDL as the engine runs them. Per row: us per
launch, the bytes read (weights + scales + activations) over that time, the ratio to fp16, the relative error
against ``reference.fused_linear`` on the dequantized weight. ``--tune`` also times every candidate tile config
(``quant_candidates``) of the quantized modes, reports the best and
(``--emit_configs``) saves them for ``TRTLLM_EXT_LINEAR_CONFIGS``. Nothing asserts on a time.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.bench_layers import L2_BYTES, linear_shapes, rel, time_chain  # noqa: E402
from trtllm_ext.kernels import ops, reference  # noqa: E402
from trtllm_ext.kernels.ops import LinearConfig  # noqa: E402
from trtllm_ext.quantization import dequantize_weight, quantize_weight  # noqa: E402
from whisper_model.config import dims_for  # noqa: E402

MODES = ("fp16", "int8", "int4")
BITS = {"fp16": 0, "int8": 8, "int4": 4}


def weight_copies(n: int, k: int, mode: str, dtype, copies: int) -> list[tuple]:
    """``copies`` weights [n, k] as (float weight,) or (qweight, scales)."""
    out = []
    for _ in range(copies):
        w = (torch.randn(n, k, device="cuda") * 0.02).to(dtype)
        out.append((w,) if mode == "fp16" else quantize_weight(w, mode, 128))
    return out


def launcher(mode: str, x, bias, kw):
    """w -> one launch of the fused linear on ``w`` (a tuple from ``weight_copies``) with config ``cfg``."""
    if mode == "fp16":
        return lambda w, cfg, pdl=True: ops.fused_linear(x, w[0], bias, config=cfg, pdl=pdl, **kw)
    group = 128 if mode == "int4" else None
    return lambda w, cfg, pdl=True: ops.weight_only_linear(x, *w, bias, mode=mode, group_size=group, config=cfg,
                                                            pdl=pdl, **kw)


def quant_candidates(m: int, k: int, has_ln: bool) -> list[LinearConfig]:
    """Tiles to try for a quantized weight (a program's slice is half / a quarter of the fp16 bytes, so wider ones
    than ``bench_layers.candidates``'): one row on the CUDA cores, or rows on the tensor cores."""
    splits = [1] if has_ln else [1, 2, 4] if k > 2048 else [1, 2]
    if m == 1:
        return [LinearConfig(1, bn, False, split, w) for bn in (8, 16, 32, 64) for split in splits for w in (4, 8)
                if 4096 <= bn * k // split <= 65536]
    bm = 16 if m <= 16 else 32
    return [LinearConfig(bm, bn, True, split, 4, loop_k=lk, num_stages=st) for split in splits
            for bn, lk, st in ((16, 128, 3), (32, 128, 3), (64, 256, 2), (128, 128, 3))]


def bench_shape(name, n, k, has_ln, gelu, res, m, mode, dtype, tune) -> dict:
    bytes_w = n * k * (2 if mode == "fp16" else 1 if mode == "int8" else 0.5)
    ws = weight_copies(n, k, mode, dtype, max(2, min(32, int(3 * L2_BYTES // bytes_w))))
    bias = torch.randn(n, device="cuda", dtype=dtype) * 0.1
    ln = (torch.rand(k, device="cuda") + 0.5, torch.randn(k, device="cuda") * 0.1, 1e-5) if has_ln else None
    x = torch.randn(m, k, device="cuda", dtype=dtype)
    r = torch.randn(m, n, device="cuda", dtype=dtype) if res else None
    y = torch.empty(m, n, device="cuda", dtype=dtype)
    run = launcher(mode, x, bias, dict(ln=ln, gelu=gelu, residual=r, out=y, workspace={}))
    w0 = ws[0][0] if mode == "fp16" else dequantize_weight(*ws[0], mode, k, dtype=dtype)
    ref = reference.fused_linear(x.float(), w0.float(), bias.float(), ln=ln, gelu=gelu,
                                 residual=None if r is None else r.float())
    cfgs = [ops.linear_config(m, n, k, has_ln, BITS[mode])]
    if tune and mode != "fp16":  # fp16 keeps its tuned config (bench_layers --tune)
        cfgs += quant_candidates(m, k, has_ln)
    results = []
    for cfg in cfgs:
        try:
            y.fill_(float("nan"))
            run(ws[0], cfg)
            err = rel(y, ref)
            results.append((time_chain([lambda w=w, c=cfg: run(w, c) for w in ws]), err, cfg))
        except Exception as e:  # noqa: BLE001 - a config that fails to compile is reported and skipped
            print(f"  {name} M={m} {mode} {cfg}: {type(e).__name__}: {str(e)[:160]}")
    t, err, best = min(results, key=lambda row: row[0])
    scale_bytes = 0 if mode == "fp16" else n * 2 * (1 if mode == "int8" else k // 128)
    gb = (bytes_w + scale_bytes + (m * k + m * n) * 2) / 1e9
    return dict(kind="quant_linear", name=name, M=m, N=n, K=k, mode=mode, us=t * 1e3, tb_s=gb / t, rel_err=err,
                config=best.__dict__, default_us=results[0][0] * 1e3,
                top=[dict(us=t * 1e3, cfg=c.__dict__) for t, _, c in sorted(results, key=lambda r: r[0])[:4]])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="large-v3")
    ap.add_argument("--rows", type=int, nargs="+", default=[1, 16, 32])
    ap.add_argument("--modes", nargs="+", default=list(MODES), choices=MODES)
    ap.add_argument("--tune", action="store_true", help="time every candidate tile config per mode")
    ap.add_argument("--emit_configs", help="with --tune: write the best quantized configs here (JSON, for "
                    "TRTLLM_EXT_LINEAR_CONFIGS)")
    ap.add_argument("--json")
    args = ap.parse_args(argv)
    dims, dtype = dims_for(args.model), torch.float16
    shapes = {k: v for k, v in linear_shapes(dims.n_text_state, dims.n_vocab).items() if k != "logits"}
    out = dict(meta=dict(device=torch.cuda.get_device_name(), torch=torch.__version__, model=args.model,
                         command=" ".join(sys.argv)), results=[])
    for name, (n, k, has_ln, gelu, res, _) in shapes.items():
        for m in args.rows:
            base = None
            for mode in args.modes:
                row = bench_shape(name, n, k, has_ln, gelu, res, m, mode, dtype, args.tune)
                if args.tune and mode != "fp16":
                    ops.set_linear_config(m, n, k, has_ln, LinearConfig(**row["config"]), BITS[mode])
                    if args.emit_configs:  # after every shape: a run cut short keeps what it tuned
                        ops.save_linear_configs(args.emit_configs)
                base = base or (row["us"] if mode == "fp16" else None)
                row["vs_fp16"] = row["us"] / base if base else None
                out["results"].append(row)
                ratio = f"{row['vs_fp16']:.2f}x fp16" if base else ""
                print(f"{name:9} M={m:<3} {mode:5} {row['us']:7.2f} us ({row['tb_s']:5.2f} TB/s) {ratio:12} "
                      f"default {row['default_us']:7.2f} us  err {row['rel_err']:.1e}  {row['config']}", flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
