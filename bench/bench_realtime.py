"""Live streams at real time: N streams fed together, how late their text comes (issue 27's bench).

    python bench/bench_realtime.py --model tiny.en --device cpu --streams 1 2 4 --seconds 20
    python bench/bench_realtime.py --random large-v3 --streams 1 8 32 64 128 --seconds 30 \\
        --audio_dir .carry/audio --vocab_dir .carry/vocab --json OUT.json

Each level runs N live streams of one ``service.StreamWorker`` (the thread that owns the scheduler, as the server's
realtime route uses it), each fed a different stretch of the shared English clips joined (``bench_longform``) in
100 ms blocks at real time (``--speed`` times faster), starts staggered over the first second. Reported per level:
- hypothesis lag p50 / p95: for each interim decode, its ``Hypothesis`` event's arrival minus the moment the last
  audio it covers (``done``) was fed: what the scheduler adds to the audio (the queue, the round, the decode);
- committed lag p50 / p95: the same for ``Committed`` events (final words; each word becomes final one decode
  after it is first heard, so a word's own latency adds about ``step_s``);
- first-delta latency p50: from a stream's first audio to its first ``Committed`` event;
- final WER against offline ``transcribe`` of the same audio (real weights only);
- GPU utilization: ``nvidia-smi``'s, sampled every 250 ms during the level (mean percent).
``--random NAME``: NAME's shapes with random weights (GPU engine on CUDA), greedy at most ``--tokens`` tokens per
decode with end-of-text allowed (``bench_longform.options_for`` without the end suppressed): the lags measure the
load; the text means nothing (no WER, and LocalAgreement seldom commits).
"""
from __future__ import annotations

import argparse
import datetime
import json
import sys
import threading
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from bench.bench_longform import AUDIO_DIR, long_audio, options_for, random_engine, versions  # noqa: E402

SR = 16000
BLOCK = SR // 10


def build(args):
    """(model module, tokenizer, options, label, WhisperModel or None) of the flags."""
    from whisper_model.options import TranscriptionOptions

    if args.random:
        model, tokenizer = random_engine(args.random, args.device, args.batch_size, args.vocab_dir)
        options = replace(options_for(tokenizer, args.tokens), suppress_tokens=(-1,))
        return model, tokenizer, options, args.random, None
    from whisper_model.service import ModelSpec, load_model

    whisper = load_model(ModelSpec(model=args.model, device=args.device, max_batch_size=args.batch_size))
    return whisper.model, whisper.tokenizer, TranscriptionOptions(temperature=0.0), args.model, whisper


class Tracker:
    """Events of one stream, timed on arrival (called on the worker thread)."""

    def __init__(self, fed_at: dict):
        self.fed_at = fed_at  # samples fed -> monotonic time (written by the feeder before the feed)
        self.events, self.done = [], threading.Event()

    def __call__(self, event):
        self.events.append((time.monotonic(), event))
        if type(event).__name__ in ("Finished", "Failed"):
            self.done.set()

    def lags(self, kind: str) -> list[float]:
        out = []
        for t, e in self.events:
            if type(e).__name__ == kind:
                fed = self.fed_at.get(round(e.done * SR))
                if fed is not None:
                    out.append(t - fed)
        return out


def run_level(worker, model_tokenizer_options, audios, speed: float, step_s: float) -> dict:
    """N live streams fed together at ``speed`` x real time; their trackers and the wall time."""
    _, _, options = model_tokenizer_options
    trackers, ids = [], []
    for _ in audios:
        fed_at: dict = {}
        tracker = Tracker(fed_at)
        trackers.append(tracker)
        ids.append(worker.add_live(tracker, options=options, language="en", step_s=step_s))
    t0 = time.monotonic()
    offsets = [i / max(1, len(audios)) for i in range(len(audios))]  # staggered starts over the first second
    positions = [0] * len(audios)
    first_fed = [None] * len(audios)
    while any(p < len(a) for p, a in zip(positions, audios)):
        now = time.monotonic() - t0
        for k, (audio, sid) in enumerate(zip(audios, ids)):
            due = int(max(0.0, now - offsets[k]) * speed * SR) // BLOCK * BLOCK + BLOCK
            while positions[k] < min(due, len(audio)):
                block = audio[positions[k]: positions[k] + BLOCK]
                positions[k] += len(block)
                trackers[k].fed_at[positions[k]] = time.monotonic()
                first_fed[k] = first_fed[k] or time.monotonic()
                worker.feed(sid, block)
            if positions[k] >= len(audio) and not getattr(trackers[k], "ended", False):
                trackers[k].ended = True
                worker.end(sid)
        time.sleep(0.005)
    for tracker in trackers:
        tracker.done.wait(600)
    firsts = []
    for tracker, start in zip(trackers, first_fed):
        commits = [t for t, e in tracker.events if type(e).__name__ == "Committed"]
        if commits:
            firsts.append(commits[0] - start)
    return {"trackers": trackers, "wall_s": time.monotonic() - t0, "first_delta": firsts}


class GpuUtilization:
    """``nvidia-smi``'s GPU utilization sampled every 250 ms while in the ``with`` block: ``mean`` (percent), or
    None without nvidia-smi (the CPU)."""

    def __enter__(self):
        import shutil
        import subprocess

        self.mean, self._proc = None, None
        if shutil.which("nvidia-smi"):
            self._proc = subprocess.Popen(["nvidia-smi", "--query-gpu=utilization.gpu", "--format=csv,noheader,"
                                           "nounits", "-lms", "250", "-i", "0"], stdout=subprocess.PIPE, text=True)
        return self

    def __exit__(self, *exc):
        if self._proc is not None:
            self._proc.terminate()
            values = [float(v) for v in self._proc.communicate()[0].split() if v.strip().isdigit()]
            self.mean = sum(values) / len(values) if values else None


def pct(values, q):
    return float(np.percentile(values, q)) if values else float("nan")


def summarize(n, level, whisper, audios) -> dict:
    hyp = [x for t in level["trackers"] for x in t.lags("Hypothesis")]
    com = [x for t in level["trackers"] for x in t.lags("Committed")]
    row = {"streams": n, "wall_s": round(level["wall_s"], 2), "decodes": len(hyp),
           "hyp_lag_p50": pct(hyp, 50), "hyp_lag_p95": pct(hyp, 95), "commit_lag_p50": pct(com, 50),
           "commit_lag_p95": pct(com, 95), "first_delta_p50": pct(level["first_delta"], 50),
           "failed": sum(type(t.events[-1][1]).__name__ != "Finished" for t in level["trackers"] if t.events)}
    if whisper is not None:
        import jiwer

        refs, hyps = [], []
        for tracker, audio in zip(level["trackers"], audios):
            hyps.append("".join(e.text for _, e in tracker.events if type(e).__name__ == "Committed"))
            refs.append("".join(s.text for s in whisper.transcribe(audio, language="en", temperature=0.0)[0]))
        norm = lambda s: " ".join("".join(c for c in s.lower() if c.isalnum() or c.isspace()).split())
        row["wer_vs_offline"] = jiwer.wer([norm(r) for r in refs], [norm(h) for h in hyps])
    return row


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="tiny.en")
    ap.add_argument("--random", help="a model name: its shapes with random weights")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--streams", type=int, nargs="+", default=[1, 2, 4])
    ap.add_argument("--seconds", type=float, default=20.0, help="audio per stream")
    ap.add_argument("--speed", type=float, default=1.0)
    ap.add_argument("--step_s", type=float, default=1.0)
    ap.add_argument("--batch_size", type=int, default=None, help="scheduler rows (default: the most streams)")
    ap.add_argument("--tokens", type=int, default=40, help="--random: tokens per decode at most")
    ap.add_argument("--audio_dir", default=str(AUDIO_DIR))
    ap.add_argument("--vocab_dir")
    ap.add_argument("--json")
    args = ap.parse_args()
    args.batch_size = args.batch_size or max(args.streams)
    from whisper_model.service import StreamWorker
    from whisper_model.service.loading import warm_up

    model, tokenizer, options, label, whisper = build(args)
    warm_s = warm_up(model, tokenizer)  # the GPU engine, captured at start as the server does (its --no_warmup)
    if warm_s is not None:
        print(f"warm-up {warm_s:.1f} s", flush=True)
    pool = long_audio(args.seconds * max(args.streams) / 60 + 1, audio_dir=Path(args.audio_dir))
    n_samples = int(args.seconds * SR)
    worker = StreamWorker(lambda: model_scheduler(model, tokenizer, args.batch_size))
    worker.start()
    run_level(worker, (model, tokenizer, options), [pool[:2 * SR]], 8.0, args.step_s)  # warm-up
    rows = []
    for n in args.streams:
        audios = [pool[k * n_samples: (k + 1) * n_samples] for k in range(n)]
        with GpuUtilization() as gpu:
            level = run_level(worker, (model, tokenizer, options), audios, args.speed, args.step_s)
        rows.append(dict(summarize(n, level, whisper, audios), gpu_util=gpu.mean))
        print(json.dumps(rows[-1]), flush=True)
    worker.stop(60)
    print(f"\n{label} on {args.device}, {args.seconds:.0f} s per stream at {args.speed}x, step {args.step_s} s")
    print("| streams | decodes | hyp lag p50 / p95 s | commit lag p50 / p95 s | first delta p50 s | WER vs offline | "
          "GPU util % |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        wer = f"{r['wer_vs_offline']:.3f}" if "wer_vs_offline" in r else "-"
        print(f"| {r['streams']} | {r['decodes']} | {r['hyp_lag_p50']:.3f} / {r['hyp_lag_p95']:.3f} | "
              f"{r['commit_lag_p50']:.3f} / {r['commit_lag_p95']:.3f} | {r['first_delta_p50']:.2f} | {wer} | "
              f"{'-' if r['gpu_util'] is None else round(r['gpu_util'])} |")
    if args.json:
        meta = {"date": datetime.date.today().isoformat(), "model": label, "device": device_name(args.device),
                "versions": versions(), "argv": sys.argv[1:]}
        Path(args.json).write_text(json.dumps({"meta": meta, "rows": rows}, indent=1))
    return 0


def model_scheduler(model, tokenizer, batch_size):
    from whisper_model.scheduler import Scheduler

    return Scheduler(model, batch_size=batch_size, tokenizer=tokenizer)


def device_name(device: str) -> str:
    import torch

    return torch.cuda.get_device_name() if device.startswith("cuda") else "cpu"


if __name__ == "__main__":
    sys.exit(main())
