"""Throughput of the Ray job (issue 14) against ``transcribe_batch`` in one process, on the same files: on the CPU
(tiny.en, the default), or with an engine directory on one GPU.

    python bench/bench_distributed.py --copies 3 --batch_size 4 --repeats 3 --json bench/results/distributed_cpu.json
    python bench/bench_distributed.py --device cuda --engine_dir ENGINE --gpus_per_worker 1 --batch_size 16 \
        --tokens 100 --copies 200 --repeats 2 --audio_dir /root/audio --vocab_dir /root/vocab --clips en_jfk.wav ...

The inputs: the short English shared clips (``--clips``; 1-7 s each), ``--copies`` times each (symbolic links
with distinct names, so that every copy is a file of its own). Every system transcribes all of them with the same
options: tiny.en, fp32 on the CPU, greedy (beam_size None) with the command line's temperature fallback.

* ``one process``: ``WhisperModel("tiny.en", device="cpu").transcribe_batch(files, batch_size=B)`` in a Python
  process of its own (no Ray in it), torch using ``threads`` threads (and ``OMP_NUM_THREADS=threads``, which Ray
  sets for each worker too: without it, 2 threads ran 1.5 to 4 times slower on the loaded development machine);
  ``load`` is the model's load,
  ``transcribe`` the call itself (no output written), ``CPU s`` that process's CPU time during the call.
* ``Ray job``: ``python -m whisper_model.distributed``'s ``Job`` run in this process on a local Ray started once
  (``ray.init`` time reported apart), ``workers`` actors of ``cpus`` CPUs each, each with ``--threads cpus`` and
  ``--batch_size B``, writing every output format and the manifest as the command does, into a fresh folder each
  run. ``load`` is the time to the first worker ready (actor processes started, torch imported, model loaded),
  ``transcribe`` the rest: files handed out, transcribed, outputs written; ``CPU s`` the workers' processes' CPU
  time from ready to their last file (the driver's is not counted).

Per system the best of ``--repeats`` runs (systems alternate; the CPU time is the least of the runs); audio seconds
/ transcribe seconds is the throughput. The texts of every file are compared with the first system's. The
machine may be shared: CPU time is far less sensitive to other processes than wall time; nothing here asserts a
time.

On the GPU (``--device cuda``): the same two kinds of system, ``one process, 1 GPU`` and ``Ray job, 1 worker x G
GPU`` (the job's ``--gpus_per_worker G``), each with ``--threads`` CPU threads (torch's, ``OMP_NUM_THREADS``, the
worker's ``--cpus_per_worker`` and ``--threads``). ``--engine_dir``: both load that engine (``service.load_model``,
the job's rule: the worker loads it with the job's ``--engine_dir``) on the same device, batch ``--batch_size``
(at most the engine's). ``--tokens N`` (random weights: a text of its own would end at once or never): both
transcribe with the same ``TranscriptionOptions``, ``bench_longform.options_for``'s (greedy, exactly N tokens per
window, end-of-text suppressed, no timestamps, no fallback), language en; the job gets them as ``Job(...,
options=)`` (``sample_len`` has no flag). An engine without its vocabulary (random weights) gets ``--vocab_dir``'s
files: both load a folder of links to the engine's files and those. After each run the JSON so far is written.
"""
from __future__ import annotations

import argparse
import datetime
import json
import logging
import os
import pickle
import platform
import sys
import subprocess
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from bench.bench_longform import options_for  # noqa: E402
from whisper_model.config import ModelDimensions, dims_for  # noqa: E402
from whisper_model.distributed.args import parse_job_args  # noqa: E402
from whisper_model.distributed.job import Job  # noqa: E402
from whisper_model.distributed.report import Report  # noqa: E402
from whisper_model.distributed.worker import TranscriptionWorker  # noqa: E402
from whisper_model.io.tokenizer import get_tokenizer  # noqa: E402
from whisper_model.io.vocab import VOCAB_FILES, checkpoint_vocab_dir, vocab_name  # noqa: E402
AUDIO_DIR = ROOT / ".." / "shared" / "data" / "audio"
CLIPS = ("en_arctic_a0007.wav", "en_bobby.wav", "en_f5_ref.wav", "en_librivox_0870.wav", "en_librivox_0880.wav",
         "en_librivox_0890.wav", "en_librivox_0920.wav", "en_librivox_0930.wav")
MODEL = "tiny.en"  # without --engine_dir
SYSTEMS = {  # label -> (kind, workers, cpus / threads); the CPU's
    "one process, 1 thread": ("batch", 1, 1), "Ray job, 1 worker x 1 CPU": ("ray", 1, 1),
    "one process, 2 threads": ("batch", 1, 2), "Ray job, 1 worker x 2 CPUs": ("ray", 1, 2),
    "Ray job, 2 workers x 1 CPU": ("ray", 2, 1),
}


def systems_for(args) -> dict:
    """The systems of ``args.device``: label -> (kind, workers, cpus / threads)."""
    if args.device == "cpu":
        return SYSTEMS
    return {"one process, 1 GPU": ("batch", 1, args.threads),
            f"Ray job, 1 worker x {args.gpus_per_worker:g} GPU": ("ray", 1, args.threads)}


def inputs(folder: Path, audio_dir: Path, clips: list[str], copies: int) -> list[str]:
    files = []
    for k in range(copies):
        for name in clips:
            link = folder / f"c{k}_{name}"
            link.symlink_to((audio_dir / name).resolve())
            files.append(str(link))
    return files


def engine_with_vocab(engine: Path, vocab_dir, scratch: Path) -> Path:
    """``engine`` itself when it has its vocabulary (or no ``vocab_dir`` is given: openai-whisper's assets then),
    else a folder of links to its files and to ``vocab_dir``'s vocabulary files."""
    if vocab_dir is None or checkpoint_vocab_dir(engine) is not None:
        return engine
    linked = scratch / "engine"
    linked.mkdir()
    for f in engine.iterdir():
        (linked / f.name).symlink_to(f.resolve())
    for name in VOCAB_FILES:
        if (Path(vocab_dir) / name).is_file():
            (linked / name).symlink_to((Path(vocab_dir) / name).resolve())
    return linked


def forced_options(engine, tokens: int):
    """``options_for`` with the vocabulary the model loads (``WhisperModel``'s rule: the engine's own files, else
    openai-whisper's assets)."""
    dims = ModelDimensions.from_dict(json.loads((engine / "engine.json").read_text())["dims"]) if engine \
        else dims_for(MODEL)
    vocab = checkpoint_vocab_dir(engine or MODEL, vocab_name(dims.is_multilingual))
    return options_for(get_tokenizer(dims.is_multilingual, num_languages=dims.num_languages, vocab_path=vocab), tokens)


def one_process_child(files: list[str], threads: int, batch_size: int, setup: dict) -> dict:
    """In the child process: load the model, then ``transcribe_batch`` (timed: wall and this process's CPU)."""
    from whisper_model.service import ModelSpec, load_model

    torch.set_num_threads(threads)
    t0 = time.perf_counter()
    model = load_model(ModelSpec(MODEL, engine_dir=setup["engine"], device=setup["device"],
                                 max_batch_size=batch_size))
    t1, c1 = time.perf_counter(), time.process_time()
    if setup["options"] is None:
        results = model.transcribe_batch(files, batch_size=batch_size, beam_size=None)
    else:
        results = model.transcribe_batch(files, batch_size=batch_size, options=setup["options"], language="en")
    t2, c2 = time.perf_counter(), time.process_time()
    texts = {Path(f).stem: "".join(s.text for s in segments) for f, (segments, _) in zip(files, results)}
    return {"load_s": t1 - t0, "transcribe_s": t2 - t1, "cpu_s": c2 - c1,
            "audio_s": sum(info.duration for _, info in results), "texts": texts}


def one_process(files: list[str], threads: int, batch_size: int, scratch: Path, setup: dict) -> dict:
    """``transcribe_batch`` in a process of its own (no Ray in it), as a user would run it; ``setup``: the engine
    (or None), device and options (None: the CPU's)."""
    listing = scratch / "files.json"
    listing.write_text(json.dumps(files))
    (scratch / "setup.pickle").write_bytes(pickle.dumps(setup))
    out = subprocess.run([sys.executable, __file__, "--child", str(listing), "--threads", str(threads),
                          "--batch_size", str(batch_size)], capture_output=True, text=True,
                         env=dict(os.environ, OMP_NUM_THREADS=str(threads)))  # as Ray sets it for its workers
    if out.returncode != 0:
        raise RuntimeError(f"one process failed (exit status {out.returncode}):\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


class Clocked(TranscriptionWorker):
    """The job's worker, also saying how much CPU its process has used (all its threads) when ready and with each
    file. Defined in the script run as __main__: Ray sends the class itself to the workers."""

    def ready(self) -> dict:
        return dict(super().ready(), cpu_s=time.process_time())

    def transcribe(self, path: str) -> dict:
        return dict(super().transcribe(path), cpu_s=time.process_time())


class Timed(Report):
    """The job's report, also noting when the first worker was ready and the workers' CPU seconds since ready."""

    def worker_ready(self, info):
        self.ready_at = getattr(self, "ready_at", time.perf_counter())
        self.cpu = getattr(self, "cpu", {})
        self.cpu[info["name"]] = [info["cpu_s"], info["cpu_s"]]
        super().worker_ready(info)

    def file_done(self, path, outcome, written):
        clock = self.cpu[outcome["worker"]]
        clock[1] = max(clock[1], outcome["cpu_s"])
        super().file_done(path, outcome, written)


def ray_job(files: list[str], workers: int, cpus: int, batch_size: int, out: Path, setup: dict) -> dict:
    """The job's own flags (``--engine_dir``, ``--gpus_per_worker``) and ``Job``; ``setup`` as ``one_process``'s."""
    argv = [*files, "-o", str(out), "--device", setup["device"], "--beam_size", "None", "--verbose", "None",
            "--num_workers", str(workers), "--cpus_per_worker", str(cpus), "--threads", str(cpus),
            "--batch_size", str(batch_size)]
    if setup["engine"]:
        argv += ["--engine_dir", setup["engine"]]
    if setup["device"] == "cuda":
        argv += ["--gpus_per_worker", str(setup["gpus_per_worker"])]
    if setup["options"] is not None:
        argv += ["--language", "en"]
    report = Timed(None)
    t0 = time.perf_counter()
    code = Job(parse_job_args(argv), Clocked, report=report, options=setup["options"]).run()
    t2 = time.perf_counter()
    assert code == 0 and report.done == len(files), f"the job failed: exit status {code}"
    texts = {Path(f).stem: json.loads((out / f"{Path(f).stem}.json").read_text())["text"] for f in files}
    return {"load_s": report.ready_at - t0, "transcribe_s": t2 - report.ready_at, "audio_s": report.audio_s,
            "cpu_s": sum(end - start for start, end in report.cpu.values()), "texts": texts}


def measure(systems: list[str], files: list[str], args, scratch: Path, setup: dict, done=None) -> dict:
    """Every system's runs; ``done(runs)`` after each run."""
    runs: dict[str, list] = {label: [] for label in systems}
    for repeat in range(args.repeats):
        for label in systems if repeat % 2 == 0 else systems[::-1]:
            kind, workers, cpus = systems_for(args)[label]
            if kind == "batch":
                run = one_process(files, cpus, args.batch_size, scratch, setup)
            else:
                run = ray_job(files, workers, cpus, args.batch_size, scratch / f"out_{len(os.listdir(scratch))}",
                              setup)
            runs[label].append(run)
            print(f"{label}: load {run['load_s']:.2f} s, transcribe {run['transcribe_s']:.2f} s", flush=True)
            if done is not None:
                done(runs)
    return runs


def table(runs: dict, ray_init_s: float) -> tuple[str, dict]:
    reference = next(iter(runs.values()))[0]["texts"]
    rows, summary = [], {}
    base = None
    for label, results in runs.items():
        if not results:
            continue
        best = min(results, key=lambda r: r["transcribe_s"])
        throughput = best["audio_s"] / best["transcribe_s"]
        base = base or throughput
        same = sum(best["texts"][k] == v for k, v in reference.items())
        cpu = min(r["cpu_s"] for r in results)
        summary[label] = {"load_s": best["load_s"], "transcribe_s": best["transcribe_s"], "audio_s": best["audio_s"],
                          "audio_s_per_s": throughput, "vs_first": throughput / base, "cpu_s": cpu,
                          "same_texts": same, "texts": len(reference),
                          "all_transcribe_s": [r["transcribe_s"] for r in results],
                          "all_cpu_s": [r["cpu_s"] for r in results]}
        rows.append(f"| {label} | {best['load_s']:.2f} | {best['transcribe_s']:.2f} | {throughput:.1f} | "
                    f"{throughput / base:.2f} | {cpu:.2f} | {same}/{len(reference)} |")
    head = ["| system | load s | transcribe s (wall) | audio s per s | vs first row | CPU s | same text |",
            "|---|---|---|---|---|---|---|"]
    note = f"\nray.init (local, once): {ray_init_s:.2f} s"
    return "\n".join(head + rows) + note, summary


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--clips", nargs="+", default=list(CLIPS), help="file names in --audio_dir")
    p.add_argument("--audio_dir", type=Path, default=AUDIO_DIR)
    p.add_argument("--copies", type=int, default=3)
    p.add_argument("--batch_size", type=int, default=4)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--systems", nargs="+", default=None, help="labels of the systems to run (default: all the "
                   f"device's; the CPU's: {', '.join(SYSTEMS)})")
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    p.add_argument("--engine_dir", type=Path, default=None, help=f"an engine directory (default: {MODEL})")
    p.add_argument("--gpus_per_worker", type=float, default=1.0, help="--device cuda: the job's flag")
    p.add_argument("--threads", type=int, default=None, help="--device cuda: CPU threads of each system (default 4)")
    p.add_argument("--tokens", type=int, default=None, help="exactly N tokens per window (random weights)")
    p.add_argument("--vocab_dir", type=Path, default=None, help="vocabulary files for an engine without its own")
    p.add_argument("--json", default=None)
    p.add_argument("--child", default=None, help=argparse.SUPPRESS)  # a JSON list of files: one_process_child
    args = p.parse_args()
    if args.child:
        setup = pickle.loads((Path(args.child).parent / "setup.pickle").read_bytes())
        print(json.dumps(one_process_child(json.loads(Path(args.child).read_text()), args.threads, args.batch_size,
                                           setup)))
        return
    args.threads = args.threads or 4
    systems = systems_for(args)
    args.systems = args.systems or list(systems)
    if set(args.systems) - set(systems):
        p.error(f"--systems: expected labels of {', '.join(systems)}")
    missing = [name for name in args.clips if not (args.audio_dir / name).is_file()]
    if missing:
        p.error(f"not in {args.audio_dir}: {', '.join(missing)}")
    import ray

    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    load_start = os.getloadavg()
    t0 = time.perf_counter()
    gpus = {"num_gpus": torch.cuda.device_count()} if args.device == "cuda" else {}  # not Ray's own detection
    ray.init(address="local", num_cpus=max(2, *(c for _, _, c in systems.values())), include_dashboard=False,
             log_to_driver=False, logging_level=logging.ERROR, object_store_memory=128 * 2**20, **gpus)
    ray_init_s = time.perf_counter() - t0
    meta = {"date": datetime.date.today().isoformat(), "command": " ".join(sys.argv), "machine": platform.machine(),
            "cpus": os.cpu_count(), "python": platform.python_version(), "torch": torch.__version__,
            "ray": ray.__version__, "device": args.device, "engine_dir": str(args.engine_dir or MODEL),
            "tokens": args.tokens, "clips": args.clips, "copies": args.copies, "batch_size": args.batch_size,
            "repeats": args.repeats, "threads": args.threads if args.device == "cuda" else None,
            "gpus_per_worker": args.gpus_per_worker if args.device == "cuda" else None,
            "load_average_start": load_start}

    def write(runs: dict) -> str:
        text, summary = table(runs, ray_init_s)
        if args.json:
            if args.device == "cuda":
                meta["gpu"] = torch.cuda.get_device_name(0)
            meta.update(files=len(files), load_average_end=os.getloadavg())
            Path(args.json).write_text(json.dumps({"meta": meta, "systems": summary, "ray_init_s": ray_init_s},
                                                  indent=1))
        return text

    try:
        with tempfile.TemporaryDirectory() as tmp:
            scratch = Path(tmp)
            (scratch / "in").mkdir()
            files = inputs(scratch / "in", args.audio_dir, args.clips, args.copies)
            engine = engine_with_vocab(args.engine_dir.absolute(), args.vocab_dir, scratch) if args.engine_dir \
                else None
            setup = {"engine": str(engine) if engine else None, "device": args.device,
                     "gpus_per_worker": args.gpus_per_worker,
                     "options": forced_options(engine, args.tokens) if args.tokens else None}
            one_process(files[:2], 1, 1, scratch, setup)  # warm-up: the file cache (the engine's too)
            runs = measure(args.systems, files, args, scratch, setup, done=write)
    finally:
        ray.shutdown()
    print(write(runs))


if __name__ == "__main__":
    main()
