"""One long file, end to end: sequential windows vs VAD-cut chunks decoded in batches (GPU; runs on CPU too).

    python bench/bench_longform.py --model large-v3 --minutes 60 --batch 16 32 --tokens 100 --json OUT.json
    python bench/bench_longform.py ... --vad_device cpu cuda --profile --audio_dir .carry/audio --vocab_dir DIR
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

Also reported, alone: decoding the WAV (also as before 2026-12-04, the resampler on every frame), Silero VAD on CPU
and on the GPU, the log-mel of the whole file. A warm-up run comes first for every mode (compiles kernels, captures
the CUDA graph of every row bucket the timed run uses): on a 2-minute input for ``sequential`` (one row), on the
whole file for a chunked mode (a short input has too few chunks to fill a batch of 16 or 32, and the graphs of the
larger buckets would be captured inside the timed run). ``--profile`` adds one more chunked run per VAD device at
the largest batch with the time of each stage. Prints a table (wall seconds, real-time factor, "one hour in N s",
windows, decoded tokens per second) and writes JSON.
"""
from __future__ import annotations

import argparse
import datetime
import importlib.metadata
import json
import platform
import sys
import tempfile
import time
import wave
import zlib
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


def long_audio(minutes: float, seed: int = 0, audio_dir: Path = AUDIO_DIR) -> np.ndarray:
    """The shared English clips (of ``audio_dir``), shuffled, joined with 1-6 s gaps (silence or noise at std
    0.003)."""
    rng = np.random.default_rng(seed)
    audio_dir = Path(audio_dir)
    clips = [load_audio(audio_dir / c) for c in CLIPS if (audio_dir / c).is_file()]
    if not clips:
        raise SystemExit(f"no shared clips in {audio_dir.resolve()}")
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


def tokenizer_for(model, vocab_dir=None):
    """The model's vocabulary: from ``vocab_dir`` when given (a folder with ``multilingual.tiktoken`` /
    ``gpt2.tiktoken``), else openai-whisper's assets when installed, else the bundled checkpoints' own."""
    multilingual = model.dims.is_multilingual
    if vocab_dir is not None:
        return get_tokenizer(multilingual, num_languages=model.dims.num_languages, vocab_path=vocab_dir)
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


def load_audio_resampled(path) -> np.ndarray:
    """``load_audio`` as it was before 2026-12-04: every frame through PyAV's resampler (also a 16 kHz s16 mono WAV's),
    then int16 -> float32 / 32768 in two passes; the same samples."""
    import av

    chunks = []
    with av.open(path) as container:
        stream = container.streams.best("audio")
        resampler = av.AudioResampler(format="s16", layout="mono", rate=SR)
        for packet in container.demux(stream):
            for frame in packet.decode():
                chunks += [out.to_ndarray().reshape(-1).copy() for out in resampler.resample(frame)]
        chunks += [out.to_ndarray().reshape(-1).copy() for out in resampler.resample(None)]
    return np.concatenate(chunks).astype(np.float32) / 32768.0


def components(path, samples, n_mels, device) -> dict:
    """Seconds of each front-end step alone on the whole file."""
    load_audio(str(path))  # the file in the page cache
    out = {"decode_wav_s": timed(lambda: load_audio(str(path)), "cpu")[0],
           "decode_wav_resampled_s": timed(lambda: load_audio_resampled(str(path)), "cpu")[0]}
    devices = ["cpu"] + (["cuda"] if torch.device(device).type == "cuda" else [])
    for d in devices:
        V.speech_probabilities(samples[: 10 * SR], d)  # load the model, warm up
        seconds, regions = timed(lambda: V.speech_regions(samples, replace(V.CHUNKING, device=d)), d)
        chunks = V.plan_chunks(regions, len(samples))
        out[f"vad_{d}_s"], out[f"speech_regions_{d}"], out[f"chunks_{d}"] = seconds, len(regions), len(chunks)
        out[f"chunks_crc_{d}"] = zlib.crc32(np.asarray(chunks, np.int64).tobytes())
    log_mel_spectrogram(samples[: 30 * SR], n_mels, padding=0, device=device)
    out["log_mel_s"] = timed(lambda: log_mel_spectrogram(samples, n_mels, device=device), device)[0]
    return out


def random_engine(name: str, device, max_batch: int, vocab_dir=None, dtype=None):
    """(model, tokenizer): ``name``'s shapes with random weights (fp16 on CUDA, fp32 on the CPU unless ``dtype``),
    on CUDA the engine for ``max_batch`` rows; the vocabulary as ``tokenizer_for``."""
    device = torch.device(device)
    dtype = dtype or (torch.float16 if device.type == "cuda" else torch.float32)
    model = random_whisper(name, dtype=dtype, device=device)
    if device.type == "cuda":
        from whisper_model.fast.engine import accelerate

        model = accelerate(model, max_batch_size=max_batch)
    return model, tokenizer_for(model, vocab_dir)


def bench(args, partial=None) -> dict:
    """All rows; ``partial(result)`` is called with the result so far after each one (JSON survives a timeout)."""
    device = torch.device(args.device)
    model, tokenizer = random_engine(args.model, args.device, max(args.batch), args.vocab_dir,
                                     getattr(torch, args.dtype))
    options = options_for(tokenizer, args.tokens)
    samples = long_audio(args.minutes, audio_dir=args.audio_dir)
    seconds = len(samples) / SR
    rows, tmp = [], Path(tempfile.mkdtemp(prefix="bench_longform_"))
    path, warm = tmp / "long.wav", tmp / "warm.wav"
    write_wav(path, samples)
    write_wav(warm, samples[: 120 * SR])
    parts = components(path, load_audio(str(path)), model.dims.n_mels, device)
    gpu = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu"
    result = dict(date=datetime.date.today().isoformat(), command=" ".join(sys.argv), model=args.model,
                  dtype=args.dtype, device=gpu, versions=versions(), audio_s=seconds,
                  tokens_per_window=args.tokens, vad_device=args.vad_device, components=parts, rows=rows)
    print("alone: " + components_line(parts), flush=True)
    runs = [(None, None)] if not args.skip_sequential else []
    runs += [(b, v) for v in args.vad_device for b in args.batch]
    for batch, vad_device in runs:
        mode = "sequential" if batch is None else f"chunked B={batch}, VAD {vad_device}"
        decode_file(model, tokenizer, warm if batch is None else path, options, batch, vad_device)
        wall, (segments, info) = timed(lambda: decode_file(model, tokenizer, path, options, batch, vad_device),
                                       device)
        windows = len(segments)
        tokens = sum(len(s.tokens) for s in segments)
        rows.append(dict(mode=mode, batch=batch, vad_device=vad_device, seconds=wall, rtf=wall / seconds,
                         hour_s=wall * 3600 / seconds, windows=windows, tokens=tokens, tokens_per_s=tokens / wall,
                         speech_s=info.duration_after_vad, chunk_starts_crc=chunk_digest(segments)))
        print(f"{mode}: {wall:.2f} s, {windows} windows, {tokens} tokens", flush=True)
        if partial is not None:
            partial(result)
    if args.profile:
        for vad_device in args.vad_device:
            batch = max(args.batch)
            stages = profiled(lambda: decode_file(model, tokenizer, path, options, batch, vad_device), device)
            result.setdefault("profile", {})[f"chunked B={batch}, VAD {vad_device}"] = stages
            print(f"profile chunked B={batch}, VAD {vad_device}: " + components_line(stages), flush=True)
            if partial is not None:
                partial(result)
    return result


def profiled(fn, device) -> dict:
    """Seconds spent in each stage of one run of ``fn`` (a chunked decode), the device synchronised around each
    stage (a little slower than the timed run): loading the file, VAD, log-mel of the chunks, the encoder; the
    rest (``decode_rest_s``) is the decoder, the scheduler and everything else."""
    from whisper_model import chunked
    from whisper_model.encoding import WhisperEncoding

    stages = dict.fromkeys(("load_s", "vad_s", "chunk_log_mel_s", "encode_s"), 0.0)
    saved = [(chunked, "load_samples"), (chunked, "speech_regions"), (WhisperEncoding, "log_mel"),
             (WhisperEncoding, "encode")]
    originals = [getattr(owner, name) for owner, name in saved]

    def wrap(original, key):
        def timed_stage(*a, **k):
            seconds, out = timed(lambda: original(*a, **k), device)
            stages[key] += seconds
            return out
        return timed_stage

    for (owner, name), original, key in zip(saved, originals, stages):
        setattr(owner, name, wrap(original, key))
    try:
        wall = timed(fn, device)[0]
    finally:
        for (owner, name), original in zip(saved, originals):
            setattr(owner, name, original)
    return dict(wall_s=wall, **stages, decode_rest_s=wall - sum(stages.values()))


def chunk_digest(segments) -> int:
    """A checksum of the segments' seeks (the chunks' starts): runs that cut the same chunks give the same."""
    return zlib.crc32(np.asarray([s.seek for s in segments], np.int64).tobytes())


def versions() -> dict:
    out = {"python": platform.python_version(), "torch": torch.__version__}
    for name in ("triton", "silero-vad", "av", "numpy"):
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = None
    return out


def components_line(c: dict) -> str:
    return ", ".join(f"{k} {v:.2f}" if isinstance(v, float) else f"{k} {v}" for k, v in c.items())


def table(result: dict) -> str:
    lines = [f"{result['model']} {result['dtype']} on {result['device']}, {result['audio_s'] / 60:.1f} min of audio, "
             f"{result['tokens_per_window']} tokens per window",
             "| mode | wall s | RTF | one hour in | windows | tokens/s |", "|---|---|---|---|---|---|"]
    for r in result["rows"]:
        lines.append(f"| {r['mode']} | {r['seconds']:.2f} | {r['rtf']:.5f} | {r['hour_s']:.1f} s | {r['windows']} | "
                     f"{r['tokens_per_s']:.0f} |")
    lines.append("alone: " + components_line(result["components"]))
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="large-v3", help="shapes of this published model (random weights)")
    p.add_argument("--minutes", type=float, default=60.0)
    p.add_argument("--batch", type=int, nargs="+", default=[16, 32], help="chunks decoded together")
    p.add_argument("--tokens", type=int, default=100, help="tokens decoded per window / chunk")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--dtype", default=None, help="default: float16 on cuda, float32 on cpu")
    p.add_argument("--vad_device", nargs="+", default=["cpu"],
                   help="where Silero VAD runs in the chunked runs (several: every batch size on each)")
    p.add_argument("--skip_sequential", action="store_true", help="chunked runs only")
    p.add_argument("--profile", action="store_true",
                   help="then one more chunked run (largest batch, each VAD device) timing its stages")
    p.add_argument("--audio_dir", type=Path, default=AUDIO_DIR, help="folder holding the clips of CLIPS")
    p.add_argument("--vocab_dir", type=Path, default=None, help="folder with the model's .tiktoken vocabulary")
    p.add_argument("--json", type=Path, default=None)
    args = p.parse_args(argv)
    args.dtype = args.dtype or ("float16" if torch.device(args.device).type == "cuda" else "float32")

    def write(result):
        if args.json:
            args.json.parent.mkdir(parents=True, exist_ok=True)
            args.json.write_text(json.dumps(result, indent=1))

    result = bench(args, partial=write)
    print(table(result))
    write(result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
