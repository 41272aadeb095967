"""CPU transcription speed: ours against openai-whisper on the same weights, clips and machine (issue 17).

    python bench/bench_cpu_decoding.py --models tiny.en base --clips en_jfk.wav en_lecture_60s.wav \
        --modes beam5 greedy --threads 2 --repeats 2 --json bench/results/cpu_decoding.json

Both systems transcribe the same 16 kHz samples (a shared clip from ``../shared/data/audio``, read once) with the
command line's defaults: language English, fp32, temperature schedule (0, 0.2, ..., 1.0) with fallback,
best_of 5, condition_on_previous_text; ``beam5``: beam_size 5 at temperature 0, ``greedy``: beam_size None.
openai-whisper (``whisper.transcribe``) runs a ``whisper.model.Whisper`` holding our converted weights
(``io.export.to_openai``); ours is ``WhisperModel(name, device="cpu")``. The two run alternately, ``--repeats``
times each after one warm-up (3 s of the clip); reported per run: the best wall time and the best process CPU
time (all threads) over the repeats, the real-time factor (wall / audio seconds), the windows that fell back to
sampling (a temperature > 0) and whether the texts are equal. The machine may be shared: CPU time (with
``--threads 1`` above all) is far less sensitive to other processes than wall time. Nothing here asserts a time.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
AUDIO_DIR = ROOT / ".." / "shared" / "data" / "audio"
TEMPERATURES = (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)
MODES = {"beam5": 5, "greedy": None}


def reference_model(name: str):
    """openai-whisper's ``Whisper`` holding the weights ``WhisperModel(name)`` loads."""
    import whisper

    from whisper_model.io.export import to_openai
    from whisper_model.io.weights import load_checkpoint

    ckpt = to_openai(*load_checkpoint(name))
    ref = whisper.model.Whisper(whisper.model.ModelDimensions(**ckpt["dims"]))
    ref.load_state_dict(ckpt["model_state_dict"], strict=True)
    return ref.eval()


def systems(name: str) -> dict:
    """label -> transcribe(samples, beam_size) -> openai-whisper's result dict; ``name``: a bundled name or a
    checkpoint path."""
    import whisper

    from whisper_model.pipeline import WhisperModel

    ours, ref = WhisperModel(name, device="cpu"), reference_model(name)

    def run_ref(samples, beam_size):
        return whisper.transcribe(ref, samples, beam_size=beam_size, best_of=5, fp16=False, language="en",
                                  verbose=None, temperature=TEMPERATURES)

    def run_ours(samples, beam_size):
        return ours.transcribe_dict(samples, beam_size=beam_size, best_of=5, language="en",
                                    temperature=TEMPERATURES)

    return {"openai-whisper": run_ref, "ours": run_ours}


def timed(fn, *args) -> tuple[float, float, dict]:
    wall, cpu = time.perf_counter(), time.process_time()
    result = fn(*args)
    return time.perf_counter() - wall, time.process_time() - cpu, result


def load_clip(folder: Path, clip: str):
    """16 kHz samples: a shared clip, or a ``.npy`` of samples (where PyAV is not installed)."""
    if clip.endswith(".npy"):
        import numpy as np

        return np.load(folder / clip)
    from whisper_model.io.audio import load_audio

    return load_audio(folder / clip)


def bench_one(runs: dict, samples, beam_size, repeats: int) -> dict:
    """Per system, the best wall time and the best CPU time over ``repeats`` runs (ours and openai-whisper
    alternating), with the result of the first run."""
    for fn in runs.values():
        fn(samples[:48000], beam_size)  # warm-up: first-call allocations, tokenizer, caches
    times: dict[str, list] = {label: [] for label in runs}
    results: dict[str, dict] = {}
    for _ in range(repeats):
        for label, fn in runs.items():
            wall, cpu, result = timed(fn, samples, beam_size)
            times[label].append((wall, cpu))
            results.setdefault(label, result)
    seconds = len(samples) / 16000
    out = {label: {"wall_s": round(min(w for w, _ in ts), 2), "cpu_s": round(min(c for _, c in ts), 2),
                   "rtf": round(min(w for w, _ in ts) / seconds, 3),
                   "runs": [[round(w, 2), round(c, 2)] for w, c in ts],
                   "windows_above_t0": len({s["seek"] for s in results[label]["segments"] if s["temperature"] > 0})}
           for label, ts in times.items()}
    out["same_text"] = results["ours"]["text"].strip() == results["openai-whisper"]["text"].strip()
    out["audio_s"] = round(seconds, 2)
    return out


def table(rows: list[dict]) -> str:
    lines = ["| model | clip (s) | mode | openai-whisper wall / CPU s | ours wall / CPU s | ours / openai (CPU) "
             "| same text | fallback windows |", "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        ref, ours = r["openai-whisper"], r["ours"]
        lines.append(f"| {r['model']} | {r['clip']} ({r['audio_s']:.0f}) | {r['mode']} | "
                     f"{ref['wall_s']:.2f} / {ref['cpu_s']:.2f} | {ours['wall_s']:.2f} / {ours['cpu_s']:.2f} | "
                     f"{ours['cpu_s'] / ref['cpu_s']:.2f} | {'yes' if r['same_text'] else 'no'} | "
                     f"{ref['windows_above_t0']} / {ours['windows_above_t0']} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--models", nargs="+", default=["tiny.en", "base"], help="bundled names or checkpoint paths")
    p.add_argument("--audio_dir", default=str(AUDIO_DIR), help="where the clips are (.wav/.mp3, or .npy samples)")
    p.add_argument("--cpus", default=None, help="pin the process to these CPUs, e.g. 0,1 (default: no pinning)")
    p.add_argument("--clips", nargs="+", default=["en_jfk.wav", "en_lecture_60s.wav"])
    p.add_argument("--modes", nargs="+", choices=tuple(MODES), default=list(MODES))
    p.add_argument("--threads", type=int, default=2, help="torch.set_num_threads for both systems")
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--json", default=None, help="write the rows and the environment here")
    args = p.parse_args(argv)
    if args.cpus:
        os.sched_setaffinity(0, {int(c) for c in args.cpus.split(",")})
    torch.set_num_threads(args.threads)
    rows = []
    for name in args.models:
        runs = systems(name)
        for clip in args.clips:
            samples = load_clip(Path(args.audio_dir), clip)
            for mode in args.modes:
                row = {"model": name, "clip": clip, "mode": mode,
                       **bench_one(runs, samples, MODES[mode], args.repeats)}
                print(json.dumps(row), flush=True)
                rows.append(row)
    print(table(rows))
    if args.json:
        import whisper

        env = {"date": datetime.date.today().isoformat(), "machine": platform.processor() or platform.machine(),
               "threads": torch.get_num_threads(), "cpus": sorted(os.sched_getaffinity(0)),
               "python": platform.python_version(), "torch": torch.__version__,
               "openai-whisper": whisper.__version__, "argv": sys.argv[1:]}
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps({"env": env, "rows": rows}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
