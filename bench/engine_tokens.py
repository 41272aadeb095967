"""Greedy tokens of the GPU engine on random weights, to check that two versions of the code decode alike.

    python3 bench/engine_tokens.py --tree OLD_TREE --out old.pt --weights w.pt
    python3 bench/engine_tokens.py --tree . --out new.pt --compare old.pt --weights w.pt

Random weights of ``--model``'s shapes (seed 0; ``--weights FILE``: saved by the first run, loaded by the next, since
two trees may draw them in another order), random log-mel (seed 1), B=1 and B=16, ``--tokens`` greedy tokens
each with end-of-text suppressed (``bench._systems.OursRun.decode``); ``--compare`` prints the fraction of equal
tokens per batch size. ``--tree`` is the checkout whose ``whisper_model`` and ``bench`` are imported (older trees
had ``whisper_model.build`` where newer ones have ``whisper_model.fast.build``).
"""
import argparse
import json
import sys
from pathlib import Path

import torch


def decode_tokens(tree: Path, model_name: str, n: int, weights: Path = None) -> dict[int, torch.Tensor]:
    sys.path.insert(0, str(tree.resolve()))
    try:
        from whisper_model.fast.build import random_whisper
    except ImportError:
        from whisper_model.build import random_whisper
    from bench._systems import OursRun

    model = random_whisper(model_name, dtype=torch.float16, device="cuda", seed=0)
    if weights is not None:  # the same weights for both trees (their layers may draw random values in another order)
        if weights.is_file():
            model.load_state_dict(torch.load(weights, map_location="cuda"), strict=True)
        else:
            torch.save(model.state_dict(), weights)
    run = OursRun(model, max_batch=16)
    g = torch.Generator().manual_seed(1)
    out = {}
    for b in (1, 16):
        mel = torch.randn(b, model.dims.n_mels, 2 * model.dims.n_audio_ctx, generator=g).clamp(-1.5, 1.5).cuda()
        out[b] = run.decode(mel, n).cpu()
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tree", type=Path, default=Path(__file__).resolve().parents[1])
    ap.add_argument("--model", default="large-v3")
    ap.add_argument("--tokens", type=int, default=100)
    ap.add_argument("--out", required=True)
    ap.add_argument("--compare", help="tokens written by an earlier run")
    ap.add_argument("--weights", type=Path, help="load the weights from this file, or save them there if absent")
    args = ap.parse_args()
    tokens = decode_tokens(args.tree, args.model, args.tokens, args.weights)
    torch.save(tokens, args.out)
    if args.compare:
        other = torch.load(args.compare)
        agreement = {b: float((tokens[b] == other[b]).float().mean()) for b in tokens}
        print(json.dumps({"model": args.model, "tokens": args.tokens, "agreement": agreement}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
