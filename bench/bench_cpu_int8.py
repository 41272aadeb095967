"""CPU int8 against fp32 and against the other Whisper runtimes on the same weights, clips and machine (issue 25).

    python bench/bench_cpu_int8.py --model tiny.en --clips en_jfk.wav en_lecture_60s.wav en_librivox_0890.wav \
        en_f5_ref.wav --modes greedy beam5 --threads 1 2 --repeats 2 --json bench/results/cpu_int8.json

Systems: ours fp32 and ours int8 (``WhisperModel(name, device="cpu", weight_only_precision=...)``), openai-whisper
fp32 (``whisper.transcribe`` on a ``Whisper`` holding our converted weights) and faster-whisper fp32 / int8
(CTranslate2 ``compute_type`` float32 / int8 on the CTranslate2 model.bin the bundled name is read from: tiny.en
and base are CTranslate2 checkpoints, so every system reads the same weights). All: language en, temperature 0
(no fallback), ``greedy`` (beam_size None / 1) or ``beam5``, without conditioning on the previous text. Per thread
count (``torch.set_num_threads``; CTranslate2's ``cpu_threads``, intra_threads) the systems run interleaved,
``--repeats`` times each after a warm-up (3 s of the clip): best wall and best process CPU time, texts listed.
``--systems``: a subset, for one process per runtime (CTranslate2's threads and torch's in one process: see
bench/RESULTS.md).
The machine may be shared with other work; CPU time is the less load-sensitive number. Nothing is asserted.
"""
from __future__ import annotations

import argparse
import datetime
import json
import platform
import shutil
import sys
import tempfile
from importlib import util
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from bench.bench_cpu_decoding import AUDIO_DIR, load_clip, reference_model, timed  # noqa: E402

MODES = {"beam5": 5, "greedy": None}


def ct2_dir(name: str, into: Path) -> Path:
    """A CTranslate2 model directory for bundled ``name`` (base's model.bin is its two parts concatenated)."""
    from whisper_model.io.locate import BUNDLED as _BUNDLED

    parts = [Path(util.find_spec(pkg).submodule_search_locations[0]) / sub / f for pkg, sub, f in _BUNDLED[name]]
    if len(parts) == 1:
        return parts[0].parent
    for extra in parts[0].parent.iterdir():
        if not extra.name.startswith("model.bin"):
            shutil.copy(extra, into / extra.name)
    with open(into / "model.bin", "wb") as out:
        for part in parts:
            with open(part, "rb") as f:
                shutil.copyfileobj(f, out)
    return into


def ours(name: str, precision):
    from whisper_model.pipeline import WhisperModel

    model = WhisperModel(name, device="cpu", weight_only_precision=precision)

    def run(samples, beam_size):
        return model.transcribe_dict(samples, beam_size=beam_size, language="en", temperature=0.0,
                                     condition_on_previous_text=False)["text"]
    return run


def openai(name: str):
    import whisper

    ref = reference_model(name)

    def run(samples, beam_size):
        return whisper.transcribe(ref, samples, beam_size=beam_size, fp16=False, language="en", verbose=None,
                                  temperature=0.0, condition_on_previous_text=False)["text"]
    return run


def faster(directory: Path, compute_type: str, threads: int):
    from faster_whisper import WhisperModel as FW

    model = FW(str(directory), device="cpu", compute_type=compute_type, cpu_threads=threads)

    def run(samples, beam_size):
        segments, _ = model.transcribe(samples, beam_size=beam_size or 1, language="en", temperature=0.0,
                                       condition_on_previous_text=False, vad_filter=False)
        return "".join(s.text for s in segments)
    return run


SYSTEMS = ("ours fp32", "ours int8", "openai-whisper fp32", "faster-whisper fp32", "faster-whisper int8")


def systems(name: str, threads: int, ct2: Path, labels=SYSTEMS) -> dict:
    """label -> run(samples float32 [n], beam_size) -> text, for the systems ``labels``."""
    make = {"ours fp32": lambda: ours(name, None), "ours int8": lambda: ours(name, "int8"),
            "openai-whisper fp32": lambda: openai(name),
            "faster-whisper fp32": lambda: faster(ct2, "float32", threads),
            "faster-whisper int8": lambda: faster(ct2, "int8", threads)}
    return {label: make[label]() for label in labels}


def bench_clip(runs: dict, samples, beam_size, repeats: int) -> dict:
    for fn in runs.values():
        fn(samples[:48000], beam_size)
    times = {label: [] for label in runs}
    texts = {}
    for _ in range(repeats):
        for label, fn in runs.items():
            wall, cpu, text = timed(fn, samples, beam_size)
            times[label].append((wall, cpu))
            texts.setdefault(label, text.strip())
    return {label: {"wall_s": round(min(w for w, _ in ts), 3), "cpu_s": round(min(c for _, c in ts), 3),
                    "text": texts[label]} for label, ts in times.items()}


def totals(rows: list[dict], labels) -> list[str]:
    """Table lines: per thread count and mode, each system's summed best wall / CPU seconds over the clips."""
    lines = ["| threads | mode | " + " | ".join(labels) + " |", "|---|---|" + "---|" * len(labels)]
    for key in sorted({(r["threads"], r["mode"]) for r in rows}):
        sel = [r for r in rows if (r["threads"], r["mode"]) == key]
        cells = [f"{sum(r[l]['wall_s'] for r in sel):.2f} / {sum(r[l]['cpu_s'] for r in sel):.2f}" for l in labels]
        lines.append(f"| {key[0]} | {key[1]} | " + " | ".join(cells) + " |")
    return lines


def clip_arguments(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """``--model``, ``--audio_dir`` and ``--clips`` (the four English clips of the CPU runs by default)."""
    p.add_argument("--model", default="tiny.en")
    p.add_argument("--audio_dir", default=str(AUDIO_DIR))
    p.add_argument("--clips", nargs="+",
                   default=["en_jfk.wav", "en_lecture_60s.wav", "en_librivox_0890.wav", "en_f5_ref.wav"])
    return p


def main(argv=None) -> int:
    p = clip_arguments(argparse.ArgumentParser(description=__doc__.split("\n\n")[0]))
    p.add_argument("--modes", nargs="+", choices=tuple(MODES), default=["greedy", "beam5"])
    p.add_argument("--threads", nargs="+", type=int, default=[1, 2])
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--systems", nargs="+", choices=SYSTEMS, default=list(SYSTEMS), help="a subset: run the others "
                   "in another process (CTranslate2's thread pool beside torch's in one process slowed ours with 2 "
                   "threads)")
    p.add_argument("--json", default=None)
    args = p.parse_args(argv)
    clips = {c: load_clip(Path(args.audio_dir), c) for c in args.clips}
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        ct2 = ct2_dir(args.model, Path(tmp))
        for threads in args.threads:
            torch.set_num_threads(threads)
            runs = systems(args.model, threads, ct2, args.systems)
            for clip, samples in clips.items():
                for mode in args.modes:
                    row = {"threads": threads, "clip": clip, "audio_s": round(len(samples) / 16000, 2), "mode": mode,
                           **bench_clip(runs, samples, MODES[mode], args.repeats)}
                    print(json.dumps(row), flush=True)
                    rows.append(row)
    labels = [k for k in rows[0] if k not in ("threads", "clip", "audio_s", "mode")]
    print("\n".join(totals(rows, labels)))
    if args.json:
        import ctranslate2
        import faster_whisper
        import whisper

        env = {"date": datetime.date.today().isoformat(), "machine": platform.processor() or platform.machine(),
               "python": platform.python_version(), "torch": torch.__version__, "openai-whisper": whisper.__version__,
               "ctranslate2": ctranslate2.__version__, "faster-whisper": faster_whisper.__version__,
               "argv": sys.argv[1:]}
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps({"env": env, "rows": rows}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
