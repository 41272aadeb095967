"""Build an engine directory for the fast GPU path.

    python -m whisper_model.build --model NAME_OR_PATH --dtype float16 --max_batch_size 16 \\
        --max_beam_width 5 --output_dir ENGINE_DIR [--random_weights large-v3] [--no_warmup] \\
        [--weight_only_precision {int8,int4} [--weight_only_group_size 128] [--calibration_audio A.wav ...]]
        [--int8_kv_cache]

What it writes: see ``whisper_model.fast.build``.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import torch

from ..fast.build import build
from ..model.quant import DEFAULT_GROUP_SIZE, WEIGHT_ONLY_PRECISIONS


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", help="bundled name ('tiny.en', 'base') or checkpoint path")
    ap.add_argument("--random_weights", metavar="NAME", help="random weights of this published model's shapes")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--dtype", default="float16", choices=["float16", "bfloat16", "float32"])
    ap.add_argument("--max_batch_size", type=int, default=1)
    ap.add_argument("--max_beam_width", type=int, default=1)
    ap.add_argument("--output_dir", required=True)
    ap.add_argument("--overwrite", action="store_true")
    ap.add_argument("--no_warmup", action="store_true", help="skip loading the engine on the GPU after writing")
    ap.add_argument("--weight_only_precision", choices=WEIGHT_ONLY_PRECISIONS, default=None,
                    help="quantize the projections' weights once, here (int8: per output channel; int4: per group "
                    "of --weight_only_group_size input features) and save them quantized (default: float weights)")
    ap.add_argument("--weight_only_group_size", type=int, default=None,
                    help=f"int4's group size (default: {DEFAULT_GROUP_SIZE})")
    ap.add_argument("--calibration_audio", nargs="+", metavar="AUDIO",
                    help="round the quantized weights by GPTQ on the float model's run over this audio (a few "
                    "minutes like what the engine will transcribe) instead of to nearest")
    ap.add_argument("--int8_kv_cache", action="store_true", help="record that the decoder's K/V caches are int8")
    args = ap.parse_args(argv)
    if args.max_batch_size < 1 or args.max_beam_width < 1:
        ap.error("--max_batch_size and --max_beam_width must be >= 1")
    if args.calibration_audio and (not args.weight_only_precision or args.random_weights):
        ap.error("--calibration_audio calibrates the quantized weights of --model: give --weight_only_precision")
    try:
        with tempfile.TemporaryDirectory() as tmp:
            model = _calibrated(args, Path(tmp)) if args.calibration_audio else args.model
            meta = build(model, Path(args.output_dir), dtype=args.dtype, max_batch_size=args.max_batch_size,
                         max_beam_width=args.max_beam_width, random_weights=args.random_weights, seed=args.seed,
                         warm=not args.no_warmup, overwrite=args.overwrite,
                         weight_only_precision=args.weight_only_precision,
                         weight_only_group_size=args.weight_only_group_size, int8_kv_cache=args.int8_kv_cache,
                         source_note=f"{args.model} calibrated on {args.calibration_audio}" if args.calibration_audio
                         else None)
    except (ValueError, FileNotFoundError, FileExistsError) as e:
        print(f"build: {e}", file=sys.stderr)
        return 2
    timing = ", ".join(f"{k} {meta[k]:.1f} s" for k in ("convert_s", "load_s", "warmup_s", "build_s") if k in meta)
    print(f"engine written to {args.output_dir} ({timing})")
    return 0


def _calibrated(args, tmp: Path) -> Path:
    """``--model`` calibrated (``whisper_model.calibration``) and saved under ``tmp``, scales in the engine's dtype;
    the engine is then built from that file as stored."""
    from ..pipeline import WhisperModel

    model = WhisperModel(args.model, dtype=getattr(torch, args.dtype), weight_only_precision=args.weight_only_precision,
                         weight_only_group_size=args.weight_only_group_size, calibration_audio=args.calibration_audio)
    return model.save(tmp / "calibrated.safetensors")


if __name__ == "__main__":
    sys.exit(main())
