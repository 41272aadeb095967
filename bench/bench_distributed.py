"""CPU throughput of the Ray job (issue 14) against ``transcribe_batch`` in one process, on the same files.

    python bench/bench_distributed.py --copies 3 --batch_size 4 --repeats 3 --json bench/results/distributed_cpu.json

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
"""
from __future__ import annotations

import argparse
import datetime
import json
import logging
import os
import platform
import sys
import subprocess
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from whisper_model.distributed.args import parse_job_args  # noqa: E402
from whisper_model.distributed.job import Job  # noqa: E402
from whisper_model.distributed.report import Report  # noqa: E402
from whisper_model.distributed.worker import TranscriptionWorker  # noqa: E402
AUDIO_DIR = ROOT / ".." / "shared" / "data" / "audio"
CLIPS = ("en_arctic_a0007.wav", "en_bobby.wav", "en_f5_ref.wav", "en_librivox_0870.wav", "en_librivox_0880.wav",
         "en_librivox_0890.wav", "en_librivox_0920.wav", "en_librivox_0930.wav")
SYSTEMS = {  # label -> (kind, workers, cpus / threads)
    "one process, 1 thread": ("batch", 1, 1), "Ray job, 1 worker x 1 CPU": ("ray", 1, 1),
    "one process, 2 threads": ("batch", 1, 2), "Ray job, 1 worker x 2 CPUs": ("ray", 1, 2),
    "Ray job, 2 workers x 1 CPU": ("ray", 2, 1),
}


def inputs(folder: Path, clips: list[str], copies: int) -> list[str]:
    files = []
    for k in range(copies):
        for name in clips:
            link = folder / f"c{k}_{name}"
            link.symlink_to((AUDIO_DIR / name).resolve())
            files.append(str(link))
    return files


def one_process_child(files: list[str], threads: int, batch_size: int) -> dict:
    """In the child process: load the model, then ``transcribe_batch`` (timed: wall and this process's CPU)."""
    from whisper_model.pipeline import WhisperModel

    torch.set_num_threads(threads)
    t0 = time.perf_counter()
    model = WhisperModel("tiny.en", device="cpu")
    t1, c1 = time.perf_counter(), time.process_time()
    results = model.transcribe_batch(files, batch_size=batch_size, beam_size=None)
    t2, c2 = time.perf_counter(), time.process_time()
    texts = {Path(f).stem: "".join(s.text for s in segments) for f, (segments, _) in zip(files, results)}
    return {"load_s": t1 - t0, "transcribe_s": t2 - t1, "cpu_s": c2 - c1,
            "audio_s": sum(info.duration for _, info in results), "texts": texts}


def one_process(files: list[str], threads: int, batch_size: int, scratch: Path) -> dict:
    """``transcribe_batch`` in a process of its own (no Ray in it), as a user would run it."""
    listing = scratch / "files.json"
    listing.write_text(json.dumps(files))
    out = subprocess.run([sys.executable, __file__, "--child", str(listing), "--threads", str(threads),
                          "--batch_size", str(batch_size)], capture_output=True, text=True, check=True,
                         env=dict(os.environ, OMP_NUM_THREADS=str(threads)))  # as Ray sets it for its workers
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


def ray_job(files: list[str], workers: int, cpus: int, batch_size: int, out: Path) -> dict:
    args = parse_job_args([*files, "-o", str(out), "--device", "cpu", "--beam_size", "None", "--verbose", "None",
                           "--num_workers", str(workers), "--cpus_per_worker", str(cpus), "--threads", str(cpus),
                           "--batch_size", str(batch_size)])
    report = Timed(None)
    t0 = time.perf_counter()
    code = Job(args, Clocked, report=report).run()
    t2 = time.perf_counter()
    assert code == 0 and report.done == len(files), f"the job failed: exit status {code}"
    texts = {Path(f).stem: json.loads((out / f"{Path(f).stem}.json").read_text())["text"] for f in files}
    return {"load_s": report.ready_at - t0, "transcribe_s": t2 - report.ready_at, "audio_s": report.audio_s,
            "cpu_s": sum(end - start for start, end in report.cpu.values()), "texts": texts}


def measure(systems: list[str], files: list[str], args, scratch: Path) -> dict:
    runs: dict[str, list] = {label: [] for label in systems}
    for repeat in range(args.repeats):
        for label in systems if repeat % 2 == 0 else systems[::-1]:
            kind, workers, cpus = SYSTEMS[label]
            if kind == "batch":
                run = one_process(files, cpus, args.batch_size, scratch)
            else:
                run = ray_job(files, workers, cpus, args.batch_size, scratch / f"out_{len(os.listdir(scratch))}")
            runs[label].append(run)
            print(f"{label}: load {run['load_s']:.2f} s, transcribe {run['transcribe_s']:.2f} s", flush=True)
    return runs


def table(runs: dict, ray_init_s: float) -> tuple[str, dict]:
    reference = next(iter(runs.values()))[0]["texts"]
    rows, summary = [], {}
    base = None
    for label, results in runs.items():
        best = min(results, key=lambda r: r["transcribe_s"])
        throughput = best["audio_s"] / best["transcribe_s"]
        base = base or throughput
        same = sum(best["texts"][k] == v for k, v in reference.items())
        cpu = min(r["cpu_s"] for r in results)
        summary[label] = {"load_s": best["load_s"], "transcribe_s": best["transcribe_s"], "audio_s": best["audio_s"],
                          "audio_s_per_s": throughput, "cpu_s": cpu, "same_texts": same,
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
    p.add_argument("--clips", nargs="+", default=list(CLIPS))
    p.add_argument("--copies", type=int, default=3)
    p.add_argument("--batch_size", type=int, default=4)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--systems", nargs="+", default=list(SYSTEMS), choices=list(SYSTEMS))
    p.add_argument("--json", default=None)
    p.add_argument("--child", default=None, help=argparse.SUPPRESS)  # a JSON list of files: one_process_child
    p.add_argument("--threads", type=int, default=1, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        print(json.dumps(one_process_child(json.loads(Path(args.child).read_text()), args.threads, args.batch_size)))
        return
    import ray

    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    load_start = os.getloadavg()
    t0 = time.perf_counter()
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False,
             logging_level=logging.ERROR, object_store_memory=128 * 2**20)
    ray_init_s = time.perf_counter() - t0
    try:
        with tempfile.TemporaryDirectory() as tmp:
            scratch = Path(tmp)
            (scratch / "in").mkdir()
            files = inputs(scratch / "in", args.clips, args.copies)
            one_process(files[:2], 1, 1, scratch)  # warm-up: the file cache
            runs = measure(args.systems, files, args, scratch)
    finally:
        ray.shutdown()
    text, summary = table(runs, ray_init_s)
    print(text)
    if args.json:
        meta = {"date": datetime.date.today().isoformat(), "machine": platform.machine(), "cpus": os.cpu_count(),
                "python": platform.python_version(), "torch": torch.__version__, "ray": ray.__version__,
                "files": len(files), "batch_size": args.batch_size, "repeats": args.repeats,
                "load_average_end": os.getloadavg(), "load_average_start": load_start}
        Path(args.json).write_text(json.dumps({"meta": meta, "systems": summary, "ray_init_s": ray_init_s},
                                              indent=1))


if __name__ == "__main__":
    main()
