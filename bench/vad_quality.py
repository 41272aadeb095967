"""Quality of VAD-cut chunked decoding against sequential decoding (CPU is enough; real weights).

    python bench/vad_quality.py --models tiny.en base --minutes 10 --json bench/results/vad_quality.json

Two inputs per model:

* the shared long clips (60-85 s; Spanish and French for multilingual models only);
* a long file made of the shared English clips, repeated in a fixed shuffled order until ``--minutes`` of speech,
  with a 2-8 s gap between clips: digital silence, white noise (std 0.01) or "music" (a chord of three sine tones
  with a slow tremolo, amplitude 0.1), in turn.

Each is transcribed sequentially (``chunking="none"``, openai-whisper's loop: previous text as prompt), with
``chunking="vad"`` (``--batch_size``) and sequentially with ``vad_filter=True`` (``--filter``), greedy at the
default fallback schedule, the language given (English for the long file). Reported: word error rate (jiwer,
Whisper's normalizers, as ``whisper_model.summarize``) of each transcript against the sequential one and against
the reference texts where the manifest has them (per clip of the long file, pooled; the hypothesis words of a clip
are the segments whose middle falls within 1 s of it); speech lost: reference word regions (openai-whisper's
word timestamps of each clip decoded alone with the same model, moved to where the clip sits) whose middle is in
no chunk; text in gaps: segments with text of which more than half lies inside an inserted gap. Times are CPU
wall seconds. Needs openai-whisper for the word regions (skipped without it).
"""
from __future__ import annotations

import argparse
import datetime
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from whisper_model.cli.summarize import score  # noqa: E402
from whisper_model.io import vad as V  # noqa: E402
from whisper_model.io.audio import SAMPLE_RATE, load_audio  # noqa: E402
from whisper_model.pipeline import WhisperModel  # noqa: E402

SR = SAMPLE_RATE
DATA = ROOT / ".." / "shared" / "data"
LONG_CLIPS = ["en_lecture_60s.wav", "en_asterisk_demo_instruct_8k.wav", "es_asterisk_demo_instruct_8k.wav",
              "fr_asterisk_demo_instruct_8k.wav"]
GAP_KINDS = ("silence", "noise", "music")


def manifest() -> dict[str, dict]:
    import csv

    with open(DATA / "MANIFEST.tsv", encoding="utf-8", newline="") as f:
        return {row["file"]: row for row in csv.DictReader(f, delimiter="\t")}


def gap(kind: str, seconds: float, rng: np.random.Generator) -> np.ndarray:
    n = int(seconds * SR)
    if kind == "silence":
        return np.zeros(n, np.float32)
    if kind == "noise":
        return rng.normal(0, 0.01, n).astype(np.float32)
    t = np.arange(n) / SR
    chord = sum(np.sin(2 * np.pi * f * t) for f in (220.0, 277.2, 329.6)) / 3
    return (0.1 * chord * (0.75 + 0.25 * np.sin(2 * np.pi * 0.5 * t))).astype(np.float32)


def build_long(clips: list[str], minutes: float, seed: int) -> tuple[np.ndarray, list[dict], list[dict]]:
    """(samples, placed clips [{clip, start, end}], gaps [{kind, start, end}]) in seconds."""
    rng = np.random.default_rng(seed)
    audio = {c: load_audio(DATA / "audio" / c) for c in clips}
    pieces, placed, gaps, t, speech, k = [], [], [], 0.0, 0.0, 0
    while speech < minutes * 60:
        for clip in rng.permutation(clips):
            kind, seconds = GAP_KINDS[k % 3], float(rng.uniform(2.0, 8.0))
            k += 1
            pieces.append(gap(kind, seconds, rng))
            gaps.append(dict(kind=kind, start=t, end=t + seconds))
            t += seconds
            pieces.append(audio[clip])
            placed.append(dict(clip=str(clip), start=t, end=t + len(audio[clip]) / SR))
            t += len(audio[clip]) / SR
            speech += len(audio[clip]) / SR
    pieces.append(gap("silence", 3.0, rng))
    gaps.append(dict(kind="silence", start=t, end=t + 3.0))
    return np.concatenate(pieces), placed, gaps


def word_regions(name: str, clips: list[str]) -> dict[str, list[tuple[float, float]]]:
    """openai-whisper's word timestamps of each clip decoded alone (the same converted weights), or {}."""
    try:
        import whisper
    except ImportError:
        print("openai-whisper not installed: no word regions", file=sys.stderr)
        return {}
    from whisper_model.io.export import to_openai
    from whisper_model.io.weights import load_checkpoint

    dims, sd = load_checkpoint(name)
    ckpt = to_openai(dims, sd)
    ref = whisper.model.Whisper(whisper.model.ModelDimensions(**ckpt["dims"]))
    ref.load_state_dict(ckpt["model_state_dict"])
    ref.eval()
    out = {}
    for clip in clips:
        result = whisper.transcribe(ref, load_audio(DATA / "audio" / clip), fp16=False, word_timestamps=True,
                                    language="en", temperature=0.0)
        out[clip] = [(w["start"], w["end"]) for s in result["segments"] for w in s.get("words", [])]
    return out


def run(model: WhisperModel, audio: np.ndarray, language, mode: str, batch_size: int):
    kwargs = dict(chunking="vad", batch_size=batch_size) if mode == "chunked" else \
        dict(vad_filter=True) if mode == "filtered" else {}
    torch.manual_seed(0)
    start = time.perf_counter()
    segments, info = model.transcribe(audio, language=language, **kwargs)
    segments = list(segments)
    return segments, info, time.perf_counter() - start


def text_of(segments) -> str:
    return "".join(s.text for s in segments)


def wer(reference: str, hypothesis: str, language: str) -> tuple[int, int]:
    _, errors, units = score(reference, hypothesis, language)
    return errors, units


def long_clip_rows(model, name, refs, modes, batch_size) -> list[dict]:
    rows = []
    for clip in LONG_CLIPS:
        language = refs[clip]["language"]
        if language != "en" and not model.is_multilingual:
            continue
        audio = load_audio(DATA / "audio" / clip)
        out = {m: run(model, audio, language, m, batch_size) for m in modes}
        sequential = text_of(out["sequential"][0])
        for mode, (segments, info, seconds) in out.items():
            row = dict(model=name, input=clip, mode=mode, audio_s=len(audio) / SR, seconds=seconds,
                       vs_sequential=wer(sequential, text_of(segments), language),
                       vs_reference=None, text=text_of(segments).strip())
            if refs[clip]["reference_transcript"].strip():
                row["vs_reference"] = wer(refs[clip]["reference_transcript"], text_of(segments), language)
            rows.append(row)
    return rows


def chunk_spans(audio: np.ndarray) -> list[tuple[float, float]]:
    regions = V.speech_regions(audio, V.CHUNKING)
    return [(s / SR, e / SR) for s, e in V.plan_chunks(regions, len(audio))]


def long_file_rows(model, name, refs, modes, batch_size, audio, placed, gaps, words) -> list[dict]:
    out = {m: run(model, audio, "en", m, batch_size) for m in modes}
    sequential = text_of(out["sequential"][0])
    chunks = chunk_spans(audio)
    lost, total_words = [], 0
    for p in placed:
        for a, b in words.get(p["clip"], []):
            total_words += 1
            middle = p["start"] + (a + b) / 2
            if not any(s <= middle <= e for s, e in chunks):
                lost.append(round(middle, 2))
    rows = []
    for mode, (segments, info, seconds) in out.items():
        errors = units = 0
        for p in placed:
            reference = refs[p["clip"]]["reference_transcript"].strip()
            if reference:
                mine = [s for s in segments if p["start"] - 1 <= (s.start + s.end) / 2 <= p["end"] + 1]
                e, u = wer(reference, text_of(mine), "en")
                errors, units = errors + e, units + u
        in_gaps = [dict(start=round(s.start, 2), end=round(s.end, 2), text=s.text.strip(), gap=g["kind"])
                   for s in segments if s.text.strip() for g in gaps
                   if min(s.end, g["end"]) - max(s.start, g["start"]) > 0.5 * max(s.end - s.start, 1e-3)]
        rows.append(dict(model=name, input=f"long file {len(audio) / SR / 60:.1f} min", mode=mode,
                         audio_s=len(audio) / SR, seconds=seconds, vs_sequential=wer(sequential, text_of(segments),
                                                                                     "en"),
                         vs_reference=(errors, units), text_in_gaps=in_gaps,
                         chunks=len(chunks) if mode == "chunked" else None,
                         words_lost=(len(lost), total_words) if mode == "chunked" and words else None,
                         lost_at=lost[:20] if mode == "chunked" else None,
                         speech_s=info.duration_after_vad))
    return rows


def pct(pair) -> str:
    return "-" if pair is None else f"{100 * pair[0] / max(pair[1], 1):.1f}% ({pair[0]}/{pair[1]})"


def table(rows: list[dict]) -> str:
    lines = ["| model | input | mode | WER vs sequential | WER vs reference | segments with text in gaps | "
             "words lost | CPU s |", "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        gaps = "-" if "text_in_gaps" not in r else str(len(r["text_in_gaps"]))
        lost = "-" if r.get("words_lost") is None else f"{r['words_lost'][0]}/{r['words_lost'][1]}"
        lines.append(f"| {r['model']} | {r['input']} | {r['mode']} | {pct(r['vs_sequential'])} | "
                     f"{pct(r['vs_reference'])} | {gaps} | {lost} | {r['seconds']:.1f} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--models", nargs="+", default=["tiny.en"])
    p.add_argument("--minutes", type=float, default=10.0, help="minutes of speech in the long file")
    p.add_argument("--batch_size", type=int, default=8)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--filter", action="store_true", help="also sequential with vad_filter=True")
    p.add_argument("--skip_long_clips", action="store_true")
    p.add_argument("--json", type=Path, default=None)
    args = p.parse_args(argv)
    refs = manifest()
    english = sorted(c for c, r in refs.items() if r["language"] == "en" and c.endswith(".wav"))
    audio, placed, gaps = build_long(english, args.minutes, args.seed)
    modes = ["sequential", "chunked"] + (["filtered"] if args.filter else [])
    rows = []
    for name in args.models:
        model = WhisperModel(name, device="cpu")
        if not args.skip_long_clips:
            rows += long_clip_rows(model, name, refs, modes, args.batch_size)
        words = word_regions(name, english)
        rows += long_file_rows(model, name, refs, modes, args.batch_size, audio, placed, gaps, words)
        print(table(rows), flush=True)
    print(table(rows))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        meta = dict(date=datetime.date.today().isoformat(), command=" ".join(sys.argv), torch=torch.__version__,
                    python=platform.python_version(), cpu_threads=torch.get_num_threads(),
                    long_file=dict(seconds=len(audio) / SR, clips=placed, gaps=gaps))
        args.json.write_text(json.dumps(dict(meta=meta, rows=rows), indent=1, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
