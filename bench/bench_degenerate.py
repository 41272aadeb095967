"""Degenerate decoding on noise: the worst 30 s window's time with and without ``stop_repetition_loops``.

    python bench/bench_degenerate.py --model tiny.en --seconds 30 --json bench/results/degenerate_tiny_en.json

Inputs (seeded): white noise (std 0.1), low noise (std 0.003) and a three-tone "music" chord, each ``--seconds``
long. Each is transcribed with the command line's defaults (beam search 5 at temperature 0, best_of 5 above it, the
fallback schedule 0, 0.2, .. 1.0, the thresholds, previous text as prompt), language en, once with
``stop_repetition_loops=False`` (openai-whisper's behaviour: every window decoded to 224 tokens at every
temperature it falls back to) and once with True (the default). Per run: wall seconds, windows, the worst
window's seconds (between two ``Segments`` events), the decodes per temperature and how many were ``looped``.
Prints a table and writes JSON.
"""
from __future__ import annotations

import argparse
import collections
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
from whisper_model import longform  # noqa: E402
from whisper_model.options import TranscriptionOptions  # noqa: E402
from whisper_model.pipeline import WhisperModel  # noqa: E402
from whisper_model.scheduler import Segments  # noqa: E402

SR = 16000


def inputs(seconds: float) -> dict[str, np.ndarray]:
    rng, t = np.random.default_rng(0), np.arange(int(seconds * SR)) / SR
    chord = sum(np.sin(2 * np.pi * f * t) for f in (220.0, 277.2, 329.6)) * (0.5 + 0.5 * np.sin(2 * np.pi * 0.5 * t))
    return {"noise": rng.normal(0, 0.1, t.size).astype(np.float32),
            "low noise": rng.normal(0, 0.003, t.size).astype(np.float32),
            "music": (0.1 / 3 * chord).astype(np.float32)}


class Counting:
    """Wraps ``longform.DecodingTask``: decodes per temperature and looped results."""

    def __init__(self):
        self.real, self.decodes, self.looped = longform.DecodingTask, collections.Counter(), 0

    def __call__(self, *args, **kwargs):
        task = self.real(*args, **kwargs)
        run = task.run

        def counted(features):
            results = run(features)
            self.decodes[task.options.temperature] += len(results)
            self.looped += sum(r.looped for r in results)
            return results
        task.run = counted
        return task


def one(model, audio, stop: bool) -> dict:
    options = TranscriptionOptions(beam_size=5, best_of=5, stop_repetition_loops=stop)
    counting = Counting()
    longform.DecodingTask = counting
    try:
        scheduler = model.scheduler(batch_size=1)
        scheduler.add(audio, options=options, language="en")
        start = last = time.perf_counter()
        windows, texts = [], []
        for event in scheduler.events():
            if isinstance(event, Segments):
                now = time.perf_counter()
                windows.append(now - last)
                texts += [s.text for s in event.segments]
                last = now
        wall = time.perf_counter() - start
    finally:
        longform.DecodingTask = counting.real
    return dict(stop=stop, wall_s=wall, windows=len(windows), worst_window_s=max(windows, default=0.0),
                decodes={str(k): v for k, v in sorted(counting.decodes.items())}, looped=counting.looped,
                text=" ".join(t.strip() for t in texts)[:200])


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="tiny.en")
    p.add_argument("--seconds", type=float, default=30.0)
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--json", type=Path, default=None)
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    model = WhisperModel(args.model)
    rows = []
    for name, audio in inputs(args.seconds).items():
        for stop in (False, True):
            row = dict(input=name, **one(model, audio, stop))
            rows.append(row)
            print(f"{name:10s} stop={stop!s:5s} {row['wall_s']:7.1f} s, {row['windows']} windows, worst "
                  f"{row['worst_window_s']:6.1f} s, decodes {row['decodes']}, looped {row['looped']}", flush=True)
    print("\n| input | stop_repetition_loops | wall s | windows | worst window s | decodes per temperature | looped |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        decodes = ", ".join(f"{k}: {v}" for k, v in r["decodes"].items())
        print(f"| {r['input']} | {r['stop']} | {r['wall_s']:.1f} | {r['windows']} | {r['worst_window_s']:.1f} | "
              f"{decodes} | {r['looped']} |")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(dict(date=datetime.date.today().isoformat(), command=" ".join(sys.argv),
                                             model=args.model, torch=torch.__version__, threads=torch.get_num_threads(),
                                             cpu=platform.processor() or platform.machine(), rows=rows), indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
