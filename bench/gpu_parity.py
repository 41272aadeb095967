"""GPU parity: fp16 transcripts on the GPU (engine fast path, and the plain fp16 model) against fp32 CPU ones.

Step 1, on any machine with the weights and PyAV (writes the reference):
    python bench/gpu_parity.py make --models tiny.en base --audio_dir ../shared/data/audio \\
        --samples SAMPLES.npz --expected EXPECTED.json
Step 2, on the GPU machine (no network, no PyAV: the decoded samples travel as int16, which is exactly
what ``audio.load_audio`` returns times 32768; engines built with ``python -m whisper_model.build``):
    python bench/gpu_parity.py check --engines tiny.en=DIR base=DIR --samples SAMPLES.npz \\
        --expected EXPECTED.json --json OUT.json [--kinds engine plain-fp16 engine-batched --batch_size 16]
Kinds: ``engine`` (``WhisperModel.from_engine``, one clip at a time), ``plain-fp16`` (the eager model in fp16),
``engine-batched`` (the engine, all clips through ``transcribe_batch``: their windows decoded together).
Transcription is greedy at temperature 0 only (no sampling fallback), so both sides are deterministic.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from whisper_model.pipeline import WhisperModel  # noqa: E402

OPTIONS = dict(temperature=0.0)


def _transcribe(model: WhisperModel, samples: np.ndarray) -> dict:
    r = model.transcribe_dict(samples.astype(np.float32) / 32768.0, **OPTIONS)
    return dict(text=r["text"], language=r.get("language"),
                segments=[dict(text=s["text"], tokens=list(s["tokens"])) for s in r["segments"]])


def _segments_dict(segments, info) -> dict:
    return dict(text="".join(s.text for s in segments), language=info.language,
                segments=[dict(text=s.text, tokens=list(s.tokens)) for s in segments])


def make(args) -> int:
    from whisper_model.io.audio import load_audio

    clips = sorted(p for p in Path(args.audio_dir).iterdir() if p.suffix in (".wav", ".mp3"))
    samples = {p.name: np.round(load_audio(p) * 32768.0).astype(np.int16) for p in clips}
    np.savez_compressed(args.samples, **samples)
    expected = {}
    for name in args.models:
        model = WhisperModel(name, device="cpu", dtype=torch.float32)
        expected[name] = {}
        for clip, s in samples.items():
            t0 = time.perf_counter()
            expected[name][clip] = _transcribe(model, s)
            print(f"{name} {clip} {time.perf_counter() - t0:.1f}s {expected[name][clip]['text'][:70]!r}", flush=True)
    Path(args.expected).write_text(json.dumps(expected, indent=1, ensure_ascii=False))
    return 0


def check(args) -> int:
    samples = dict(np.load(args.samples))
    expected = json.loads(Path(args.expected).read_text())
    report, ok_all = dict(device=torch.cuda.get_device_name(), results=[]), True
    for spec in args.engines:
        name, engine_dir = spec.split("=", 1)
        for kind in args.kinds:
            t0 = time.perf_counter()
            model = (WhisperModel(engine_dir, device="cuda", dtype=torch.float16) if kind == "plain-fp16"
                     else WhisperModel.from_engine(engine_dir))
            load_s = time.perf_counter() - t0
            batched = {}
            if kind == "engine-batched":
                clips = sorted(samples)
                for run in ("first", "second"):  # the first run also captures the graphs of new batch shapes
                    t1 = time.perf_counter()
                    out = model.transcribe_batch([samples[c].astype(np.float32) / 32768.0 for c in clips],
                                                 batch_size=args.batch_size, **OPTIONS)
                    torch.cuda.synchronize()
                    seconds = time.perf_counter() - t1
                    report.setdefault("batched_seconds", {}).setdefault(name, {})[run] = seconds
                    print(f"{name} batched ({run} run): {len(clips)} clips in {seconds:.2f} s", flush=True)
                batched = {c: _segments_dict(*r) for c, r in zip(clips, out)}
            for i, (clip, s) in enumerate(sorted(samples.items())):
                t1 = time.perf_counter()
                got = batched[clip] if batched else _transcribe(model, s)
                torch.cuda.synchronize()
                want = expected[name][clip]
                same_text = got["text"] == want["text"]
                same_tokens = [g["tokens"] for g in got["segments"]] == [w["tokens"] for w in want["segments"]]
                ok_all &= same_text
                row = dict(model=name, kind=kind, clip=clip, same_text=same_text, same_tokens=same_tokens,
                           seconds=time.perf_counter() - t1)
                if i == 0:
                    row["load_plus_first_transcript_s"] = load_s + row["seconds"]
                if not same_text:
                    row.update(got=got["text"], want=want["text"])
                elif not same_tokens:  # same text: show the first segment whose tokens differ
                    pairs = zip(got["segments"], want["segments"])
                    g, w = next(((g, w) for g, w in pairs if g["tokens"] != w["tokens"]), (None, None))
                    row.update(got_tokens=g and g["tokens"], want_tokens=w and w["tokens"],
                               segments=(len(got["segments"]), len(want["segments"])))
                report["results"].append(row)
                print(json.dumps(row, ensure_ascii=False), flush=True)
            del model
            torch.cuda.empty_cache()
    for name in {r["model"] for r in report["results"]}:
        for kind in args.kinds:
            rows = [r for r in report["results"] if r["model"] == name and r["kind"] == kind]
            print(f"{name:8} {kind:10} text equal {sum(r['same_text'] for r in rows)}/{len(rows)}, "
                  f"tokens equal {sum(r['same_tokens'] for r in rows)}/{len(rows)}")
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=1, ensure_ascii=False))
    return 0 if ok_all else 1


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    m = sub.add_parser("make")
    m.add_argument("--models", nargs="+", default=["tiny.en", "base"])
    m.add_argument("--audio_dir", default=str(Path(__file__).resolve().parents[2] / "shared/data/audio"))
    m.add_argument("--samples", required=True)
    m.add_argument("--expected", required=True)
    c = sub.add_parser("check")
    c.add_argument("--engines", nargs="+", required=True, help="NAME=ENGINE_DIR ...")
    c.add_argument("--samples", required=True)
    c.add_argument("--expected", required=True)
    c.add_argument("--json")
    c.add_argument("--kinds", nargs="+", default=["engine", "plain-fp16"],
                   choices=["engine", "plain-fp16", "engine-batched"])
    c.add_argument("--batch_size", type=int, default=16, help="for engine-batched")
    args = ap.parse_args(argv)
    return make(args) if args.cmd == "make" else check(args)


if __name__ == "__main__":
    sys.exit(main())
