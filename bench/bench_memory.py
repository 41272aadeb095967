"""Peak memory of transcribing one long file on the CPU (issue 9): does it grow with the input's length?

    python bench/bench_memory.py --hours 3 --model tiny.en --json bench/results/memory_3h.json
    python bench/bench_memory.py --hours 3 --tree /tmp/before      # the same on another checkout (before/after)
    python bench/bench_memory.py --hours 1 --chunking vad          # the chunk plan's path (issue 27)
    python bench/bench_memory.py --hours 1 --vad_filter            # the speech filter's path (issue 27)

The input is a 16 kHz mono 16-bit WAV of ``--hours`` hours written to a temporary folder: low noise (std 0.003)
with the shared English clips placed every ten minutes. Each run is a fresh Python process (the checkout given by
``--tree``, default this one) that transcribes the whole file with ``transcribe()`` and bounded per-window work
(greedy at temperature 0 only, no timestamps, ``--tokens`` tokens per window, no fallback), so that hours of audio
take minutes; the decoding options do not change what is held in memory per file. ``--chunking vad``: the same
file through ``transcribe(..., chunking="vad", batch_size=--batch_size)`` (Silero over the whole file, its speech
chunks decoded in batches) instead of the sequential loop; ``--vad_filter``: the sequential loop over the speech
only (``vad_filter=True``). Reported: the process's peak
resident memory (``ru_maxrss``), the resident memory once the model is loaded, wall seconds and windows. Prints a
table and writes JSON.
"""
from __future__ import annotations

import argparse
import datetime
import json
import subprocess
import sys
import tempfile
import textwrap
import wave
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
AUDIO_DIR = ROOT / ".." / "shared" / "data" / "audio"
SR = 16000

CHILD = textwrap.dedent("""
    import json, resource, sys, time
    sys.path.insert(0, sys.argv[1])
    import torch
    torch.set_num_threads(int(sys.argv[5]))
    from whisper_model.pipeline import WhisperModel
    from whisper_model.options import TranscriptionOptions
    def rss_mb():
        return int(open("/proc/self/statm").read().split()[1]) * 4096 / 2**20
    model = WhisperModel(sys.argv[3])
    tokens = int(sys.argv[4])
    options = TranscriptionOptions(temperature=0.0, without_timestamps=True, sample_len=tokens,
                                   compression_ratio_threshold=None, logprob_threshold=None,
                                   no_speech_threshold=None, condition_on_previous_text=False)
    loaded = rss_mb()
    start = time.perf_counter()
    chunking, batch_size, vad_filter = sys.argv[6], int(sys.argv[7]), sys.argv[8] == "1"
    segments, info = model.transcribe(sys.argv[2], options=options, language="en", chunking=chunking,
                                      batch_size=batch_size, vad_filter=vad_filter)
    windows = sum(1 for _ in segments)
    wall = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps(dict(peak_rss_mb=peak, loaded_rss_mb=loaded, wall_s=wall, windows=windows,
                          duration_s=info.duration)))
""")


def write_input(path: Path, hours: float) -> float:
    """Low noise with the shared English clips every ten minutes, written in ten-minute pieces."""
    rng = np.random.default_rng(0)
    clips = []
    if AUDIO_DIR.is_dir():
        from whisper_model.io.audio import load_audio  # noqa: PLC0415 - only when clips are there
        clips = [load_audio(p) for p in sorted(AUDIO_DIR.glob("en_*.wav"))]
    piece = 600 * SR
    total = int(hours * 3600 * SR)
    with wave.open(str(path), "wb") as f:
        f.setnchannels(1)
        f.setsampwidth(2)
        f.setframerate(SR)
        for k, start in enumerate(range(0, total, piece)):
            samples = rng.normal(0, 0.003, min(piece, total - start)).astype(np.float32)
            if clips:
                clip = clips[k % len(clips)][: samples.size]
                samples[: clip.size] += clip
            f.writeframes((np.clip(samples, -1, 1 - 1 / 32768) * 32768).astype("<i2").tobytes())
    return total / SR


def run(tree: Path, path: Path, model: str, tokens: int, threads: int, chunking: str, batch_size: int,
        vad_filter: bool) -> dict:
    out = subprocess.run([sys.executable, "-c", CHILD, str(tree), str(path), model, str(tokens), str(threads),
                          chunking, str(batch_size), str(int(vad_filter))], capture_output=True, text=True,
                         check=False)
    if out.returncode != 0:
        raise SystemExit(f"the run on {tree} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--hours", type=float, default=3.0)
    p.add_argument("--model", default="tiny.en")
    p.add_argument("--tokens", type=int, default=4, help="tokens decoded per window")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--chunking", choices=("none", "vad"), default="none")
    p.add_argument("--batch_size", type=int, default=8, help="chunks decoded together (--chunking vad)")
    p.add_argument("--vad_filter", action="store_true", help="decode the speech only, sequentially")
    p.add_argument("--tree", type=Path, nargs="+", default=[ROOT], help="checkouts to measure, in turn")
    p.add_argument("--json", type=Path, default=None)
    args = p.parse_args(argv)
    sys.path.insert(0, str(ROOT))
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench_memory_") as tmp:
        path = Path(tmp) / "long.wav"
        seconds = write_input(path, args.hours)
        for tree in args.tree:
            row = dict(tree=str(tree), audio_s=seconds, chunking=args.chunking, vad_filter=args.vad_filter,
                       **run(tree, path, args.model, args.tokens, args.threads, args.chunking, args.batch_size,
                             args.vad_filter))
            rows.append(row)
            print(json.dumps(row), flush=True)
    print(f"\n{args.model}, {args.hours:g} h of audio, chunking {args.chunking}, vad_filter {args.vad_filter}, "
          f"{args.tokens} tokens per window, {args.threads} threads")
    print("| checkout | peak RSS MB | RSS after loading the model MB | wall s | windows |")
    print("|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['tree']} | {r['peak_rss_mb']:.0f} | {r['loaded_rss_mb']:.0f} | {r['wall_s']:.0f} | "
              f"{r['windows']} |")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(dict(date=datetime.date.today().isoformat(), command=" ".join(sys.argv),
                                             rows=rows), indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
