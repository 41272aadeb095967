"""The extra cost of word timestamps per 30 s window: the alignment pass, DTW and word placement.

    python bench/bench_words.py --model large-v3 --batch 1 16 --tokens 100 --heads 10 --vocab_dir DIR --json OUT

Random weights of ``--model``'s shapes on the GPU engine (fp16, Triton kernels + graphs; ``--device cpu``: the
eager fp32 model), random log-mel, ``--tokens`` greedy text tokens per window (end-of-text and the special ids
suppressed, ``bench._systems.OursRun.decode``). Per batch size: the window's decode time (encoder + prompt + the
tokens), then ``decode.alignment.align_windows`` on the same windows and text, right after their decode as in the
scheduler (so the cross K/V the decode computed are taken back, ``decode.protocol.put_audio``; one decoder pass over
``sot + no_timestamps + text + eot``, the scores of ``--heads`` alignment heads, the normalisation, one batched DTW,
the word split) and ``decode.timing.place_words``: milliseconds per batch and per window, and the ratio to the
decode. Random weights have no alignment heads: ``--heads N`` takes N heads spread over the decoder's last half
(real checkpoints name 6 to 23); ``--heads 0``: openai-whisper's fallback, every head of the last half.
Medians of ``--repeats`` runs after one warm-up; nothing asserts on a time.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench._systems import OursRun  # noqa: E402
from whisper_model.decode.alignment import MEDFILT_WIDTH, align_windows, alignment_tokens  # noqa: E402
from whisper_model.decode.dtw import dtw_many  # noqa: E402
from whisper_model.decode.timing import alignment_matrix, place_words  # noqa: E402
from whisper_model.fast.build import random_whisper  # noqa: E402
from whisper_model.io.alignment_heads import default_heads  # noqa: E402
from whisper_model.io.tokenizer import get_tokenizer  # noqa: E402


def timed(fn, repeats: int, device: str) -> tuple[float, object]:
    """Median seconds of ``repeats`` calls after a warm-up, synchronising the device around each."""
    out = fn()
    times = []
    for _ in range(repeats):
        if device == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        out = fn()
        if device == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), out


def spread_heads(dims, n: int) -> tuple:
    """``n`` (layer, head) pairs spread over the decoder's last half; 0: every head there."""
    every = default_heads(dims)
    return every if n == 0 else tuple(every[round(i * (len(every) - 1) / max(n - 1, 1))] for i in range(n))


def bench_batch(run: OursRun, tokenizer, b: int, tokens: int, repeats: int, device: str) -> dict:
    dims = run.model.dims
    g = torch.Generator().manual_seed(b)
    mel = torch.randn(b, dims.n_mels, 2 * dims.n_audio_ctx, generator=g).clamp(-1.5, 1.5).to(device)
    decode_s, out = timed(lambda: run.decode(mel, tokens), repeats, device)
    texts = [[t for t in row if t < tokenizer.eot] for row in out.tolist()]
    with torch.inference_mode():
        features = run.fast.encoder(mel)
    run.decode(mel, tokens, features)  # as the scheduler: the alignment pass follows the decode of these features
    tokenizers = [tokenizer] * b
    align_s, alignments = timed(lambda: align_windows(run.fast, tokenizers, features, texts, [3000] * b),
                                repeats, device)
    pass_s, dtw_s = parts(run.fast, tokenizer, features, texts, repeats, device)
    spans = [[(0.0, 30.0, text)] for text in texts]
    place_s, _ = timed(lambda: [place_words(a, s, 0.0, 0.0) for a, s in zip(alignments, spans)], repeats, device)
    words = sum(len(a) for a in alignments)
    extra = align_s + place_s
    return dict(batch=b, tokens=tokens, text_tokens=sum(map(len, texts)) / b, words_per_window=words / b,
                decode_ms=decode_s * 1e3, decode_ms_per_window=decode_s * 1e3 / b, align_ms=align_s * 1e3,
                place_ms=place_s * 1e3, pass_ms=pass_s * 1e3, dtw_ms=dtw_s * 1e3,
                words_ms_per_window=extra * 1e3 / b, ratio=extra / decode_s)


def parts(model, tokenizer, features, texts, repeats: int, device: str) -> tuple[float, float]:
    """Two parts of ``align_windows`` alone (seconds per batch): the decoder pass (cross K/V of the windows and
    the teacher-forced forward with the heads' scores) and the DTW of all windows' matrices."""
    _, tokens = alignment_tokens([tokenizer] * len(texts), texts, features.device)
    dec = model.text_decoder

    def forward():
        dec.set_audio(features)
        return dec.align(tokens, model.alignment_heads, tokenizer.eot)

    pass_s, (_, scores) = timed(forward, repeats, device)
    n_sot = len(tokenizer.sot_sequence)
    costs = [(-alignment_matrix(scores[r].float(), 3000, n_sot, MEDFILT_WIDTH)).double().cpu().numpy()
             for r in range(len(texts))]
    dtw_s, _ = timed(lambda: dtw_many(costs), repeats, "cpu")
    return pass_s, dtw_s


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="large-v3")
    ap.add_argument("--batch", type=int, nargs="+", default=[1, 16])
    ap.add_argument("--tokens", type=int, default=100)
    ap.add_argument("--heads", type=int, default=10)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--device", default="cuda", choices=["cuda", "cpu"])
    ap.add_argument("--vocab_dir", type=Path, default=None, help="folder with multilingual.tiktoken / gpt2.tiktoken")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args(argv)
    dtype = torch.float16 if args.device == "cuda" else torch.float32
    model = random_whisper(args.model, dtype=dtype, device=args.device, seed=0)
    model.alignment_heads = spread_heads(model.dims, args.heads)
    mode = "triton-pdl" if args.device == "cuda" else "eager"
    run = OursRun(model, mode=mode, max_batch=max(args.batch), device=args.device, dtype=dtype)
    tokenizer = get_tokenizer(model.dims.is_multilingual, num_languages=model.dims.num_languages, language="en",
                              vocab_path=args.vocab_dir)
    rows = [bench_batch(run, tokenizer, b, args.tokens, args.repeats, args.device) for b in args.batch]
    print(f"{args.model} {dtype} {args.device}, {len(model.alignment_heads)} alignment heads")
    print("| B | decode ms/window | words ms/window (align + place) | of align: pass, DTW ms | extra / decode |")
    print("|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['batch']} | {r['decode_ms_per_window']:.2f} | {r['words_ms_per_window']:.2f} "
              f"({r['align_ms']:.1f} + {r['place_ms']:.1f} per batch) | {r['pass_ms']:.1f}, {r['dtw_ms']:.1f} | "
              f"{100 * r['ratio']:.1f}% |")
    env = dict(torch=torch.__version__, device=torch.cuda.get_device_name() if args.device == "cuda" else "cpu",
               heads=len(model.alignment_heads), model=args.model)
    if args.json:
        args.json.write_text(json.dumps(dict(env=env, rows=rows), indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
