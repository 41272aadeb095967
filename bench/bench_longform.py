"""One long file, end to end: sequential windows vs VAD-cut chunks decoded in batches (GPU; runs on CPU too).

    python bench/bench_longform.py --model large-v3 --minutes 60 --batch 16 32 --tokens 100 --json OUT.json
    python bench/bench_longform.py --model tiny --minutes 2 --batch 4 --tokens 20 --device cpu   # a smoke run

The input is real speech: the shared English clips, joined in a fixed shuffled order with 1-6 s gaps of silence or
low noise between them until ``--minutes``, written to a 16 kHz WAV file. The model has ``--model``'s shapes
and random weights (the GPU engine, ``fast.engine.accelerate``, on CUDA; the eager model on CPU). Every window
decodes exactly ``--tokens`` tokens: greedy at temperature 0 only, end-of-text suppressed, ``sample_len`` =
tokens, no timestamps (so a sequential window moves on by 30 s), no fallback or silence thresholds; the
language is given ("en"). Each timed run starts from the file's path: audio decoding, log-mel, voice activity
detection and language-free decoding are all inside the time.

* ``sequential``: ``transcribe(path)``, openai-whisper's loop (each window prompted with the previous text);
* ``chunked B``: ``transcribe(path, chunking="vad", batch_size=B)``: Silero VAD (on ``--vad_device``), chunks of at
  most 30 s cut in pauses, decoded B at a time, each without the previous chunk's text.

Also reported, alone: decoding the WAV, Silero VAD on CPU and on the GPU, the log-mel of the whole file. A warm-up
run on a 2-minute input comes first for every mode (compiles kernels, captures CUDA graphs). Prints a table (wall
seconds, real-time factor, "one hour in N s", windows, decoded tokens per second) and writes JSON.
"""
from __future__ import annotations

import argparse
import datetime
import json
import platform
import sys
import tempfile
import time
import wave
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from whisper_model.fast.build import random_whisper  # noqa: E402
from whisper_model.io import vad as V  # noqa: E402
from whisper_model.io.audio import SAMPLE_RATE, load_audio, log_mel_spectrogram  # noqa: E402
from whisper_model.io.tokenizer import get_tokenizer  # noqa: E402
from whisper_model.io.vocab import checkpoint_vocab_dir, vocab_name  # noqa: E402
from whisper_model.options import TranscriptionOptions  # noqa: E402
from whisper_model.transcribe import transcribe  # noqa: E402

SR = SAMPLE_RATE
AUDIO_DIR = ROOT / ".." / "shared" / "data" / "audio"
CLIPS = ["en_jfk.wav", "en_lecture_60s.wav", "en_asterisk_demo_instruct_8k.wav", "en_librivox_0870.wav",
         "en_librivox_0880.wav", "en_librivox_0890.wav", "en_librivox_0920.wav", "en_librivox_0930.wav",
         "en_f5_ref.wav", "en_arctic_a0007.wav"]


def long_audio(minutes: float, seed: int = 0) -> np.ndarray:
    """The shared English clips, shuffled, joined with 1-6 s gaps (silence or noise at std 0.003)."""
    rng = np.random.default_rng(seed)
    clips = [load_audio(AUDIO_DIR / c) for c in CLIPS if (AUDIO_DIR / c).is_file()]
    if not clips:
        raise SystemExit(f"no shared clips in {AUDIO_DIR.resolve()}")
    pieces, n, k = [], 0, 0
    while n < minutes * 60 * SR:
        for i in rng.permutation(len(clips)):
            gap = int(rng.uniform(1.0, 6.0) * SR)
            pieces.append(np.zeros(gap, np.float32) if k % 2 else rng.normal(0, 0.003, gap).astype(np.float32))
            pieces.append(clips[i])
            n, k = n + gap + len(clips[i]), k + 1
    return np.concatenate(pieces)[: int(minutes * 60 * SR)]


def write_wav(path: Path, samples: np.ndarray) -> None:
    with wave.open(str(path), "wb") as f:
        f.setnchannels(1)
        f.setsampwidth(2)
        f.setframerate(SR)
        f.writeframes((np.clip(samples, -1, 1 - 1 / 32768) * 32768).astype("<i2").tobytes())


def sync(device) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def timed(fn, device):
    sync(device)
    start = time.perf_counter()
    out = fn()
    sync(device)
    return time.perf_counter() - start, out


def tokenizer_for(model):
    """The model's vocabulary: openai-whisper's assets when installed, else the bundled checkpoints' own."""
    multilingual = model.dims.is_multilingual
    try:
        return get_tokenizer(multilingual, num_languages=model.dims.num_languages)
    except FileNotFoundError:
        folder = checkpoint_vocab_dir("base" if multilingual else "tiny.en", vocab_name(multilingual))
        return get_tokenizer(multilingual, num_languages=model.dims.num_languages, vocab_path=folder)


def options_for(tokenizer, tokens: int) -> TranscriptionOptions:
    return TranscriptionOptions(temperature=0.0, without_timestamps=True, sample_len=tokens, suppress_blank=False,
                                suppress_tokens=(-1, tokenizer.eot), compression_ratio_threshold=None,
                                logprob_threshold=None, no_speech_threshold=None)


def decode_file(model, tokenizer, path, options, batch, vad_device):
    """Segments of the whole file (one per window: no timestamps)."""
    kwargs = {} if batch is None else dict(chunking="vad", batch_size=batch,
                                           vad_options=replace(V.CHUNKING, device=vad_device))
    segments, info = transcribe(model, str(path), options=options, language="en", tokenizer=tokenizer, **kwargs)
    return list(segments), info


def components(path, samples, n_mels, device) -> dict:
    """Seconds of each front-end step alone on the whole file."""
    out = {"decode_wav_s": timed(lambda: load_audio(str(path)), "cpu")[0]}
    devices = ["cpu"] + (["cuda"] if torch.device(device).type == "cuda" else [])
    for d in devices:
        V.speech_probabilities(samples[: 10 * SR], d)  # load the model, warm up
        seconds, regions = timed(lambda: V.speech_regions(samples, replace(V.CHUNKING, device=d)), d)
        out[f"vad_{d}_s"], out["speech_regions"] = seconds, len(regions)
        out["chunks"] = len(V.plan_chunks(regions, len(samples)))
    log_mel_spectrogram(samples[: 30 * SR], n_mels, padding=0, device=device)
    out["log_mel_s"] = timed(lambda: log_mel_spectrogram(samples, n_mels, device=device), device)[0]
    return out


def bench(args) -> dict:
    device, dtype = torch.device(args.device), getattr(torch, args.dtype)
    model = random_whisper(args.model, dtype=dtype, device=device)
    if device.type == "cuda":
        from whisper_model.fast.engine import accelerate

        model = accelerate(model, max_batch_size=max(args.batch))
    tokenizer = tokenizer_for(model)
    options = options_for(tokenizer, args.tokens)
    samples = long_audio(args.minutes)
    seconds = len(samples) / SR
    rows, tmp = [], Path(tempfile.mkdtemp(prefix="bench_longform_"))
    path, warm = tmp / "long.wav", tmp / "warm.wav"
    write_wav(path, samples)
    write_wav(warm, samples[: 120 * SR])
    parts = components(path, load_audio(str(path)), model.dims.n_mels, device)
    for batch in [None] + list(args.batch):
        mode = "sequential" if batch is None else f"chunked B={batch}"
        decode_file(model, tokenizer, warm, options, batch, args.vad_device)
        wall, (segments, info) = timed(lambda: decode_file(model, tokenizer, path, options, batch, args.vad_device),
                                       device)
        windows = len(segments)
        tokens = sum(len(s.tokens) for s in segments)
        rows.append(dict(mode=mode, batch=batch, seconds=wall, rtf=wall / seconds, hour_s=wall * 3600 / seconds,
                         windows=windows, tokens=tokens, tokens_per_s=tokens / wall,
                         speech_s=info.duration_after_vad))
        print(f"{mode}: {wall:.2f} s, {windows} windows, {tokens} tokens", flush=True)
    gpu = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu"
    return dict(date=datetime.date.today().isoformat(), command=" ".join(sys.argv), model=args.model,
                dtype=args.dtype, device=gpu, torch=torch.__version__, audio_s=seconds, tokens_per_window=args.tokens,
                vad_device=args.vad_device, components=parts, rows=rows)


def table(result: dict) -> str:
    lines = [f"{result['model']} {result['dtype']} on {result['device']}, {result['audio_s'] / 60:.1f} min of audio, "
             f"{result['tokens_per_window']} tokens per window; VAD on {result['vad_device']}",
             "| mode | wall s | RTF | one hour in | windows | tokens/s |", "|---|---|---|---|---|---|"]
    for r in result["rows"]:
        lines.append(f"| {r['mode']} | {r['seconds']:.2f} | {r['rtf']:.5f} | {r['hour_s']:.1f} s | {r['windows']} | "
                     f"{r['tokens_per_s']:.0f} |")
    c = result["components"]
    lines.append("alone: " + ", ".join(f"{k} {v:.2f}" if isinstance(v, float) else f"{k} {v}" for k, v in c.items()))
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="large-v3", help="shapes of this published model (random weights)")
    p.add_argument("--minutes", type=float, default=60.0)
    p.add_argument("--batch", type=int, nargs="+", default=[16, 32], help="chunks decoded together")
    p.add_argument("--tokens", type=int, default=100, help="tokens decoded per window / chunk")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--dtype", default=None, help="default: float16 on cuda, float32 on cpu")
    p.add_argument("--vad_device", default="cpu", help="where Silero VAD runs in the chunked runs")
    p.add_argument("--json", type=Path, default=None)
    args = p.parse_args(argv)
    args.dtype = args.dtype or ("float16" if torch.device(args.device).type == "cuda" else "float32")
    result = bench(args)
    print(table(result))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
