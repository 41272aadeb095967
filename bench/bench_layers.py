"""Layer bench: the fused kernels and the layers of one Whisper block against torch eager, on one GPU.

    python bench/bench_layers.py --model large-v3 --json OUT.json [--tune]

Floors first (device-to-device copy bandwidth counting read + write, fp16 8192^3 matmul rate), then:
* decode linears (the shapes of one decoder layer + logits) at M = 1, 16, 32 rows: our fused kernel (LN /
  bias / GELU / residual fused) vs cuBLAS ``F.linear`` with the same ops unfused; ``--tune`` times each
  candidate tile config and prints the best (copy it into ``trtllm_ext/kernels/ops.py``);
* decode attention (self over a 448-position cache at position 100, cross over 1500 positions) vs SDPA;
* encoder pieces at 1500 x B rows: Conv1d front end, attention block, MLP block (+ residual LayerNorm)
  as ``TORCH_BACKEND`` runs them vs the fused path of ``fast.engine.FastEncoder``.
Decode kernels are timed as chains captured in one CUDA graph (as the engine runs them), each launch on
its own weight / cache copy so nothing is served from L2; times are per launch, median of replays.
Every fused result is checked against ``trtllm_ext.kernels.reference`` (relative error printed).
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from trtllm_ext.kernels import ops, reference  # noqa: E402
from trtllm_ext.kernels.ops import LinearConfig  # noqa: E402
from whisper_model.config import dims_for  # noqa: E402

L2_BYTES = 50 * 2**20


def rel(a, b) -> float:
    a, b = a.float(), b.float()
    return float((a - b).norm() / b.norm().clamp_min(1e-30))


def time_chain(fns, replays: int = 20) -> float:
    """Median ms per launch of ``fns`` (a list of callables) captured back to back in one CUDA graph."""
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        for f in fns:
            f()
    torch.cuda.current_stream().wait_stream(side)
    g = torch.cuda.CUDAGraph()
    with torch.cuda.graph(g):
        for f in fns:
            f()
    g.replay()
    times = []
    for _ in range(replays):
        s, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        s.record()
        g.replay()
        e.record()
        torch.cuda.synchronize()
        times.append(s.elapsed_time(e))
    return statistics.median(times) / len(fns)


def time_eager(fn, reps: int = 10) -> float:
    fn()
    times = []
    for _ in range(reps):
        s, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        s.record()
        fn()
        e.record()
        torch.cuda.synchronize()
        times.append(s.elapsed_time(e))
    return statistics.median(times)


def floors() -> dict:
    n = 2**30
    a, b = torch.empty(n, dtype=torch.uint8, device="cuda"), torch.empty(n, dtype=torch.uint8, device="cuda")
    ms = time_eager(lambda: b.copy_(a))
    x = torch.randn(8192, 8192, device="cuda", dtype=torch.float16)
    mm = time_eager(lambda: x @ x)
    return dict(copy_tb_s=2 * n / ms / 1e9, matmul_tflops=2 * 8192**3 / mm / 1e9)


def linear_shapes(d: int, vocab: int) -> dict:
    """name -> (N, K, LN, GELU, residual, fp32 out)."""
    return {"qkv": (3 * d, d, True, False, False, False), "attn_out": (d, d, False, False, True, False),
            "cross_q": (d, d, True, False, False, False), "fc_gelu": (4 * d, d, True, True, False, False),
            "proj": (d, 4 * d, False, False, True, False), "logits": (vocab, d, True, False, False, True)}


def candidates(m: int, k: int, has_ln: bool) -> list[LinearConfig]:
    out = [ops.default_linear_config(m, 0, k, has_ln)]
    splits = [1] if has_ln else [1, 2, 4] if k > 2048 else [1, 2]
    if m == 1:
        for bn in (2, 4, 8, 16):
            for split in splits:
                if bn * k // split <= 24576:
                    out += [LinearConfig(1, bn, False, split, w) for w in (4, 8)]
        out.append(LinearConfig(16, 16, True, splits[-1], 8))
    else:
        bm = 16 if m <= 16 else 32
        for bn, lk, st in ((16, 256, 1), (32, 256, 1), (16, 128, 3), (32, 128, 3), (64, 128, 3)):
            out += [LinearConfig(bm, bn, True, split, 4, loop_k=lk, num_stages=st) for split in splits]
        if not has_ln:
            out += [LinearConfig(bm, 32, True, 2, 4), LinearConfig(bm, 16, True, splits[-1], 4)]
    return list(dict.fromkeys(out))


def bench_linears(d: int, vocab: int, ms_rows, dtype, tune: bool, tune_rows=()) -> list[dict]:
    rows = []
    for name, (n, k, has_ln, gelu, res, f32) in linear_shapes(d, vocab).items():
        copies = max(2, min(32, 3 * L2_BYTES // (n * k * 2)))
        ws = [torch.randn(n, k, device="cuda", dtype=dtype) * 0.02 for _ in range(copies)]
        bias = torch.randn(n, device="cuda", dtype=dtype) * 0.1 if name != "logits" else None
        ln = (torch.rand(k, device="cuda") + 0.5, torch.randn(k, device="cuda") * 0.1, 1e-5) if has_ln else None
        for m in ms_rows:
            x = torch.randn(m, k, device="cuda", dtype=dtype)
            r = torch.randn(m, n, device="cuda", dtype=dtype) if res else None
            out_dtype = torch.float32 if f32 else dtype
            ref = reference.fused_linear(x, ws[0], bias, ln=ln, gelu=gelu, residual=r, out_dtype=out_dtype)
            y = torch.empty(m, n, device="cuda", dtype=out_dtype)
            kw = dict(ln=ln, gelu=gelu, residual=r, out=y, workspace={})
            tuning = tune and m in tune_rows
            cfgs = candidates(m, k, has_ln) if tuning else [ops.linear_config(m, n, k, has_ln)]
            results = []
            for cfg in cfgs:
                try:
                    y.fill_(float("nan"))
                    ops.fused_linear(x, ws[0], bias, config=cfg, pdl=True, **kw)
                    err = rel(y, ref)
                    t = time_chain([lambda w=w, c=cfg: ops.fused_linear(x, w, bias, config=c, pdl=True, **kw)
                                    for w in ws])
                    results.append((t, err, cfg))
                except Exception as e:  # noqa: BLE001 - a config that fails to compile is reported and skipped
                    print(f"  {name} M={m} {cfg}: {type(e).__name__}: {str(e)[:200]}")
            best_t, err, best = min(results, key=lambda r: r[0])
            if tuning:
                ops.set_linear_config(m, n, k, has_ln, best)
            t_nopdl = time_chain([lambda w=w: ops.fused_linear(x, w, bias, config=best, pdl=False, **kw) for w in ws])
            t_pdl2 = time_chain([lambda w=w: ops.fused_linear(x, w, bias, config=best, pdl=2, **kw) for w in ws])
            t_torch = time_chain([lambda w=w: reference.fused_linear(x, w, bias, ln=ln, gelu=gelu, residual=r,
                                                                     out_dtype=out_dtype) for w in ws])
            t_cublas = time_chain([lambda w=w: F.linear(x, w, bias) for w in ws])
            gb = (n * k + m * k + m * n) * 2 / 1e9
            row = dict(kind="linear", name=name, M=m, N=n, K=k, fused_pdl_us=best_t * 1e3, fused_pdl2_us=t_pdl2 * 1e3,
                       fused_us=t_nopdl * 1e3,
                       torch_unfused_us=t_torch * 1e3, cublas_linear_only_us=t_cublas * 1e3,
                       fused_tb_s=gb / best_t, cublas_tb_s=gb / t_cublas, rel_err=err, config=best.__dict__,
                       all=[dict(us=t * 1e3, cfg=c.__dict__) for t, _, c in sorted(results, key=lambda r: r[0])])
            print(f"{name:9} M={m:<3} fused+pdl {best_t*1e3:7.2f} us ({gb/best_t:5.2f} TB/s)  no-pdl {t_nopdl*1e3:7.2f}"
                  f" pdl2 {t_pdl2*1e3:6.2f}  torch-unfused {t_torch*1e3:7.2f}  cublas {t_cublas*1e3:7.2f}"
                  f"  err {err:.1e}  {best}", flush=True)
            rows.append(row)
    return rows


def bench_attention(d: int, heads: int, n_ctx: int, n_audio: int, layers: int, dtype) -> list[dict]:
    rows, hd = [], d // heads
    for b in (1, 16):
        # self-attention: `layers` caches at position 100
        kcs = [torch.randn(b, heads, n_ctx, hd, device="cuda", dtype=dtype) for _ in range(layers)]
        vcs = [torch.randn_like(kcs[0]) for _ in range(layers)]
        qkv = torch.randn(b, 3 * d, device="cuda", dtype=dtype)
        pos = torch.tensor([100], device="cuda")
        o = torch.empty(b, d, device="cuda", dtype=dtype)
        ref = reference.self_attention(qkv, kcs[0].clone(), vcs[0].clone(), pos, 1)
        ops.self_attention(qkv, kcs[0], vcs[0], pos, 1, out=o, pdl=True)
        err = rel(o, ref)
        t = time_chain([lambda i=i: ops.self_attention(qkv, kcs[i], vcs[i], pos, 1, out=o, pdl=True)
                        for i in range(layers)])
        tt = time_chain([lambda i=i: reference.self_attention(qkv, kcs[i], vcs[i], pos, 1) for i in range(layers)])
        rows.append(dict(kind="self_attention", B=b, pos=100, fused_us=t * 1e3, torch_us=tt * 1e3, rel_err=err))
        print(f"self-attn B={b:<3} fused {t*1e3:7.2f} us  torch(index_copy+sdpa) {tt*1e3:7.2f} us  err {err:.1e}")
        del kcs, vcs
        # cross-attention over n_audio positions, strided cache as the engine stores it
        store = [torch.randn(b, n_audio, 2, heads, hd, device="cuda", dtype=dtype) for _ in range(layers)]
        kv = [s.permute(2, 0, 3, 1, 4) for s in store]
        q = torch.randn(b, d, device="cuda", dtype=dtype)
        ref = reference.cross_attention(q, kv[0][0], kv[0][1], 1)
        tt = time_chain([lambda i=i: reference.cross_attention(q, kv[i][0], kv[i][1], 1) for i in range(layers)])
        gb = b * n_audio * 2 * d * 2 / 1e9
        for chunk in (32, 64, 128):
            for inline in (True, False):
                ws: dict = {}
                o.fill_(float("nan"))
                ops.cross_attention(q, kv[0][0], kv[0][1], 1, out=o, chunk=chunk, inline_combine=inline, workspace=ws,
                                    pdl=True)
                err = rel(o, ref)
                t = time_chain([lambda i=i: ops.cross_attention(q, kv[i][0], kv[i][1], 1, out=o, chunk=chunk, pdl=True,
                                                                inline_combine=inline, workspace=ws)
                                for i in range(layers)])
                rows.append(dict(kind="cross_attention", B=b, S=n_audio, chunk=chunk, inline=inline, fused_us=t * 1e3,
                                 torch_us=tt * 1e3, fused_tb_s=gb / t, rel_err=err))
                print(f"cross-attn B={b:<3} chunk {chunk:3} inline {inline!s:5} fused {t*1e3:7.2f} us "
                      f"({gb/t:4.2f} TB/s)  torch sdpa {tt*1e3:7.2f} us  err {err:.1e}", flush=True)
        del store, kv
    return rows


def bench_encoder_pieces(name: str, dtype, batches) -> list[dict]:
    from trtllm_ext import KernelBackend, init_random_
    from whisper_model.fast.engine import FastEncoder
    from whisper_model.model import WhisperEncoder

    dims = dims_for(name)
    enc = init_random_(WhisperEncoder(dims, dtype=dtype, device="cuda")).eval()
    fast = FastEncoder(enc, KernelBackend(ops))
    rows = []
    for b in batches:
        mel = torch.randn(b, dims.n_mels, 2 * dims.n_audio_ctx, device="cuda").clamp(-1.5, 1.5)
        with torch.inference_mode():
            ref = enc(mel)
            got = fast(mel)
            x = torch.randn(b, dims.n_audio_ctx, dims.n_audio_state, device="cuda", dtype=dtype)
            blk = enc.blocks[0]
            pieces = {
                "conv_front": lambda: F.gelu(enc.conv2(F.gelu(enc.conv1(mel.to(dtype))))),
                "attn_block_eager": lambda: x + blk.attn(blk.attn_ln(x)),
                "mlp_block_eager": lambda: x + blk.mlp(blk.mlp_ln(x)),
                "layernorm_eager": lambda: blk.mlp_ln(x + x),
                "add_layernorm_fused": lambda: ops.layer_norm(x.view(-1, x.shape[-1]), *_ln(blk.mlp_ln),
                                                              residual=x.view(-1, x.shape[-1])),
                "encoder_eager": lambda: enc(mel),
                "encoder_fast": lambda: fast(mel),
            }
            for piece, fn in pieces.items():
                t = time_eager(fn)
                rows.append(dict(kind="encoder", piece=piece, B=b, ms=t))
                print(f"encoder B={b:<3} {piece:22} {t:8.3f} ms", flush=True)
        rows.append(dict(kind="encoder", piece="fast_vs_eager_rel_err", B=b, rel_err=rel(got, ref)))
        print(f"encoder B={b} fast vs eager rel err {rel(got, ref):.1e}")
    return rows


def _ln(norm):
    return norm.weight, norm.bias, norm.eps


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="large-v3")
    ap.add_argument("--dtype", default="float16", choices=["float16", "bfloat16"])
    ap.add_argument("--rows", type=int, nargs="+", default=[1, 16, 32])
    ap.add_argument("--tune", action="store_true", help="time every candidate tile config of the linears")
    ap.add_argument("--tune_rows", type=int, nargs="+", help="tune only these row counts (default: all --rows)")
    ap.add_argument("--parts", default="floors,linear,attention,encoder")
    ap.add_argument("--encoder_batches", type=int, nargs="+", default=[1, 16])
    ap.add_argument("--emit_configs", help="with --tune: write the best linear configs here (JSON, for "
                    "TRTLLM_EXT_LINEAR_CONFIGS)")
    ap.add_argument("--json")
    args = ap.parse_args(argv)
    torch.backends.cuda.matmul.allow_tf32 = False
    dtype, dims = getattr(torch, args.dtype), dims_for(args.model)
    out = dict(meta=dict(device=torch.cuda.get_device_name(), torch=torch.__version__, model=args.model,
                         dtype=args.dtype, command=" ".join(sys.argv)), results=[])
    parts = args.parts.split(",")
    if "floors" in parts:
        out["floors"] = floors()
        print(json.dumps(out["floors"]), flush=True)
    if "linear" in parts:
        out["results"] += bench_linears(dims.n_text_state, dims.n_vocab, args.rows, dtype, args.tune,
                                        args.tune_rows or args.rows)
    if args.tune and args.emit_configs:
        ops.save_linear_configs(args.emit_configs)
    if "attention" in parts:
        out["results"] += bench_attention(dims.n_text_state, dims.n_text_head, dims.n_text_ctx, dims.n_audio_ctx,
                                          dims.n_text_layer, dtype)
    if "encoder" in parts:
        out["results"] += bench_encoder_pieces(args.model, dtype, args.encoder_batches)
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
