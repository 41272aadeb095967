"""The decode step's Triton kernels compiled for a GPU that is not here: registers, spills, waves, PDL prefetch.

    python bench/offline_kernels.py --json bench/results/offline_kernels.json     # needs triton, no GPU
    python bench/offline_kernels.py --sweep     # also every one-row linear configuration

Each kernel of a ``--model`` decode step (large-v3 by default: one-row fused linears in their default configs,
the self- and cross-attention of a one-token step, float and int8 cache) is compiled by Triton for ``--arch``
(sm_90a: H100 / H200), its integer arguments specialized as Triton's launcher does for the engine's shapes, and
assembled by its bundled ``ptxas -v``. The table gives the registers a thread takes and the bytes it spills, how
many programs an SM holds by registers (65536 a SM, allocated by 8 a thread, at most 64 warps), the waves its grid
takes on ``--sms`` SMs (a program of a later wave starts only when one of the first finishes, so it cannot fetch
its weights before the PDL wait), the global loads the PTX issues before ``griddepcontrol.wait`` (fetched while
the previous kernel runs) and its ``bar.sync`` count (each one a block-wide stop after the wait). Static facts of
the code, not times; nothing is asserted.
"""
from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import triton
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.bench_layers import linear_shapes  # noqa: E402
from trtllm_ext.kernels import attention, linear, ops  # noqa: E402
from whisper_model.config import dims_for  # noqa: E402

PTXAS = Path(triton.__file__).parent / "backends" / "nvidia" / "bin" / "ptxas"
# LayerNorm parameters, scales and partial sums are float32
FLOAT32 = {"lnw_ptr", "lnb_ptr", "ws_ptr", "ks_ptr", "vs_ptr", "ws_ml_ptr", "ws_acc_ptr"}
TYPES = {"pos_ptr": "*i64", "cnt_ptr": "*i32"}


def signature(fn, consts: dict, ints: dict, int8: tuple = ()) -> tuple[dict, dict, dict]:
    """Triton's signature, constants and hints as its launcher specializes them: pointers fp16 (float32 / int8
    where named) and 16-byte aligned; an integer argument ``ints`` gives as 1 becomes a constant, one divisible
    by 16 gets that hint (what lets loads of 16 bytes through masks that use it)."""
    sig, hints, consts = {}, {}, dict(consts)
    for i, name in enumerate(fn.arg_names):
        if name in consts:
            sig[name] = "constexpr"
        elif ints.get(name) == 1:
            sig[name], consts[name] = "constexpr", 1
        elif name.endswith("_ptr"):
            sig[name] = "*i8" if name in int8 else TYPES.get(name) or ("*fp32" if name in FLOAT32 else "*fp16")
            hints[(i,)] = [["tt.divisibility", 16]]
        else:
            sig[name] = "fp32" if name in ("eps", "scale") else "i32"
            if name in ints and ints[name] % 16 == 0:
                hints[(i,)] = [["tt.divisibility", 16]]
    return sig, consts, hints


def compile_facts(fn, consts: dict, ints: dict, *, warps: int, arch: int, int8: tuple = (), maxnreg=None) -> dict:
    sig, consts, hints = signature(fn, consts, ints, int8)
    kernel = triton.compile(ASTSource(fn, sig, constexprs=consts, attrs=hints), target=GPUTarget("cuda", arch, 32),
                            options=dict(num_warps=warps, maxnreg=maxnreg))
    ptx = kernel.asm["ptx"]
    with tempfile.NamedTemporaryFile("w", suffix=".ptx") as f:
        f.write(ptx)
        f.flush()
        log = subprocess.run([str(PTXAS), "-v", "--gpu-name", f"sm_{arch}a", f.name, "-o", "/dev/null"],
                             capture_output=True, text=True, check=True).stderr
    lines = ptx.splitlines()
    wait = next((i for i, line in enumerate(lines) if "griddepcontrol.wait" in line), len(lines))
    loads = [i for i, line in enumerate(lines) if "ld.global" in line]
    regs = int(re.search(r"Used (\d+) registers", log)[1])
    return dict(regs=regs, spill_bytes=int(re.search(r"(\d+) bytes spill stores", log)[1]),
                loads_before_wait=sum(i < wait for i in loads), loads=len(loads),
                barriers=len(re.findall(r"bar\.sync", ptx)), shared_bytes=kernel.metadata.shared)


def occupancy(regs: int, warps: int, programs: int, sms: int) -> dict:
    per_sm = min(65536 // (-(-regs // 8) * 8 * 32 * warps), 64 // warps)
    return dict(programs=programs, per_sm=per_sm, waves=round(programs / (sms * per_sm), 2))


def self_attention_ints(h: int, d: int, max_len: int, int8: bool) -> dict:
    """A one-token step's integer arguments in the engine: positions [rows, 1], the caches' [2, rows, H, L, D]
    store (float32 scales [2, rows, H, L, 1] with the int8 cache)."""
    ints = dict(T=1, stride_pb=1, stride_qkv=3 * h * d, stride_kb=h * max_len * d, stride_kh=max_len * d,
                stride_kl=d, stride_o=h * d)
    ints.update(stride_vb=ints["stride_kb"], stride_vh=ints["stride_kh"], stride_vl=d)
    sc = (h * max_len, max_len, 1) if int8 else (0, 0, 0)
    return {**ints, **dict(zip(("stride_ksb", "stride_ksh", "stride_ksl", "stride_vsb", "stride_vsh", "stride_vsl"),
                               sc + sc))}


def cross_attention_ints(h: int, d: int, n_audio: int, int8: bool) -> dict:
    """A one-query cross-attention's integer arguments in the engine: one row, its audio's K/V in the caches'
    [rows, S, 2, H, D] store (float32 scales [rows, 2, H, S, 1] with the int8 cache)."""
    kv = dict(zip(("stride_kb", "stride_kh", "stride_ks"), (n_audio * 2 * h * d, d, 2 * h * d)))
    ints = dict(M=1, QB=1, S=n_audio, stride_q=h * d, stride_o=h * d, **kv,
                **{name.replace("_k", "_v"): v for name, v in kv.items()})
    sc = (2 * h * n_audio, n_audio, 1) if int8 else (0, 0, 0)
    return {**ints, **dict(zip(("stride_ksb", "stride_ksh", "stride_kss", "stride_vsb", "stride_vsh", "stride_vss"),
                               sc + sc))}


def linear_rows(d: int, vocab: int, sweep: bool, arch: int, sms: int) -> list[dict]:
    """The decoder layer's one-row products (``bench_layers.linear_shapes``; not the float32 logits) in their
    default configuration, and with ``sweep`` every block of up to 40960 weights (the whole slice in registers)
    at 2 to 8 warps."""
    rows = []
    for name, (n, k, ln, gelu, res, f32) in linear_shapes(d, vocab).items():
        if f32:
            continue
        cfg = ops.default_linear_config(1, n, k, ln)
        choices = [(cfg.block_n, cfg.num_warps)]
        if sweep:
            choices += [(bn, w) for bn in (2, 4, 8, 16, 32) for w in (2, 4, 8) if bn * k <= 40960]
        for bn, warps in dict.fromkeys(choices):
            k1, k2, k3 = ops.k_chunks(k)
            consts = dict(K1=k1, K2=k2, K3=k3, SPLIT_K=1, HAS_BIAS=True, HAS_LN=ln, HAS_RES=res, ACT_GELU=gelu,
                          BLOCK_M=1, BLOCK_N=bn, USE_DOT=False, PDL=1, QUANT=0, GROUP=0)
            ints = dict(M=1, N=n, K=k, stride_xm=k, stride_wn=k, stride_sn=0, stride_rm=n, stride_ym=n)
            facts = compile_facts(linear.fused_linear_kernel, consts, ints, warps=warps, arch=arch)
            tag = " (default)" if (bn, warps) == choices[0] else ""
            rows.append(dict(kernel=f"linear {name} [{n}x{k}] bn{bn} w{warps}{tag}", **facts,
                             **occupancy(facts["regs"], warps, -(-n // bn), sms)))
    return rows


def attention_rows(dims, batch: int, arch: int, sms: int) -> list[dict]:
    """The self- and cross-attention of a one-token step (the launchers' tiles, register caps and chunk of 128),
    float and int8 cache, for ``batch`` decoder rows."""
    h, d = dims.n_text_head, dims.n_text_state // dims.n_text_head
    chunks = -(-dims.n_audio_ctx // 128)
    rows = []
    for int8 in (False, True):
        kind = "int8" if int8 else "fp16"
        block_t = ops._query_block(1, cuda_cores=int8)
        consts = dict(H=h, D=d, BLOCK_T=block_t, BLOCK_S=64, ONE_NEW=True, KV_INT8=int8, PDL=1)
        facts = compile_facts(attention.self_attention_kernel, consts,
                              self_attention_ints(h, d, dims.n_text_ctx, int8), warps=4, arch=arch,
                              int8=("kc_ptr", "vc_ptr") if int8 else (), maxnreg=ops.ONE_TOKEN_MAXNREG[int8])
        rows.append(dict(kernel=f"self-attention {kind} cache, T=1 (tile {block_t})", **facts,
                         **occupancy(facts["regs"], 4, h * batch, sms)))
        consts = dict(H=h, D=d, BLOCK_Q=ops._query_block(1), CHUNK=128, NUM_CHUNKS=chunks, INLINE_COMBINE=True,
                      KV_INT8=int8, PDL=1)
        facts = compile_facts(attention.cross_attention_kernel, consts,
                              cross_attention_ints(h, d, dims.n_audio_ctx, int8), warps=4, arch=arch,
                              int8=("k_ptr", "v_ptr") if int8 else ())
        rows.append(dict(kernel=f"cross-attention {kind} cache, one query, chunks of 128", **facts,
                         **occupancy(facts["regs"], 4, h * chunks * batch, sms)))
    return rows


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="large-v3")
    ap.add_argument("--arch", type=int, default=90)
    ap.add_argument("--sms", type=int, default=132)
    ap.add_argument("--batch", type=int, default=1, help="decoder rows of the attention kernels' grids")
    ap.add_argument("--sweep", action="store_true", help="also every one-row linear configuration (block, warps)")
    ap.add_argument("--json")
    args = ap.parse_args(argv)
    dims = dims_for(args.model)
    rows = (linear_rows(dims.n_text_state, dims.n_vocab, args.sweep, args.arch, args.sms)
            + attention_rows(dims, args.batch, args.arch, args.sms))
    cols = ["regs", "spill_bytes", "per_sm", "programs", "waves", "loads_before_wait", "loads", "barriers"]
    print(f"sm_{args.arch}a, {args.sms} SMs, {args.model} decode step (B={args.batch} for the attention's grids)")
    print("| kernel | " + " | ".join(cols) + " |")
    print("|---|" + "---|" * len(cols))
    for r in rows:
        print(f"| {r['kernel']} | " + " | ".join(str(r[c]) for c in cols) + " |")
    if args.json:
        Path(args.json).write_text(json.dumps(dict(model=args.model, arch=args.arch, sms=args.sms,
                                                   triton=triton.__version__, rows=rows), indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
