"""The workers on Ray: one actor per worker (``TranscriptionWorker``), files handed out as workers have room, and
every outcome back to the driver as it comes.

    with RayCluster(job) as cluster:                       # ray.init: a local Ray, or the cluster at --address
        pool = WorkerPool(job)
        for kind, data in pool.run(files):                 # ("ready", info) / ("lost", text) / ("outcome", dict)
            ...

Each worker keeps ``job.in_flight`` files on hand (twice its batch), so its scheduler always has the next files
queued when rows free up; the largest files go first. A worker whose process dies is restarted by Ray (its model
loaded again, possibly on another node: ``max_restarts``) and the files it held go back to the front of the queue,
for whichever worker has room first; a file that was on a worker that died ``MAX_ATTEMPTS`` times fails (it may
be what kills them). A worker that cannot load its model stops the job (``JobError``: exit status 2).
"""
from __future__ import annotations

import logging
import math
import os
import socket
import time
from collections import Counter, deque
from typing import Callable, Iterator

from .args import JobSpec
from .worker import TranscriptionWorker

MAX_RESTARTS = 3  # per worker
MAX_ATTEMPTS = 3  # per file: times a worker may die while holding it
WAIT_S = 0.25  # ray.wait's timeout: signals (Ctrl-C) are seen at least this often
SLOW_START_S = 60.0  # say so when no worker could start for this long


class JobError(RuntimeError):
    """The job cannot run (no Ray, a cluster too small, a model that cannot be loaded): exit status 2."""


def import_ray():
    try:
        import ray
    except ImportError:
        raise JobError("the ray package is not installed: pip install 'trtllm-whisper[distributed]' (or ray>=2.9)") \
            from None
    return ray


def check_reachable(address: str, timeout_s: float = 5.0) -> None:
    """JobError unless ``HOST:PORT`` accepts a connection (Ray itself would retry for minutes); ``auto`` and
    ``ray://`` addresses are left to Ray."""
    host, _, port = address.rpartition(":")
    if address == "auto" or "://" in address or not host or not port.isdigit():
        return
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout_s).close()
    except OSError as e:
        raise JobError(f"--address {address}: cannot reach the cluster's head node ({e.strerror or e}); is "
                       "`ray start --head` running there, on that port?") from None


class RayCluster:
    """Ray for one job: ``ray.init`` of a local Ray (``job.address`` None) or a connection to a cluster; both
    ended on exit. A Ray already initialized in this process (a Python caller's) is used and left as it is."""

    def __init__(self, job: JobSpec):
        self.job, self.ray, self.owned = job, import_ray(), False

    def __enter__(self) -> "RayCluster":
        ray = self.ray
        if not ray.is_initialized():
            if self.job.address is not None:
                check_reachable(self.job.address)
            os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")  # nothing leaves the machine
            quiet = {"log_to_driver": False, "logging_level": logging.ERROR}
            try:
                if self.job.address is None:
                    needed = math.ceil(self.job.num_workers * self.job.cpus_per_worker)
                    ray.init(address="local", num_cpus=max(os.cpu_count() or 1, needed), include_dashboard=False,
                             object_store_memory=256 * 2**20, **quiet)
                else:
                    ray.init(address=self.job.address, **quiet)
            except (ConnectionError, RuntimeError, ValueError) as e:
                where = f"--address {self.job.address}" if self.job.address else "a local Ray"
                raise JobError(f"cannot start or reach {where}: {e}") from e
            self.owned = True
        self.check_resources()
        return self

    def check_resources(self) -> None:
        """JobError when not even one worker fits in the whole cluster (it would wait forever)."""
        total = self.ray.cluster_resources()
        job = self.job
        for name, need in (("CPU", job.cpus_per_worker), ("GPU", job.gpus_per_worker)):
            if need > total.get(name, 0.0) + 1e-9:
                flag = "--cpus_per_worker" if name == "CPU" else "--gpus_per_worker"
                raise JobError(f"{flag} {need:g}: the Ray cluster has {total.get(name, 0.0):g} {name}s in all, so "
                               "no worker can start")

    def __exit__(self, *exc) -> None:
        if self.owned:
            self.ray.shutdown()


class WorkerPool:
    """``job.num_workers`` actors of ``worker_class`` (``TranscriptionWorker`` or a subclass)."""

    def __init__(self, job: JobSpec, worker_class: type = TranscriptionWorker):
        self.ray = import_ray()
        self.job = job
        actor = self.ray.remote(worker_class).options(
            num_cpus=job.cpus_per_worker, num_gpus=job.gpus_per_worker, max_concurrency=job.in_flight + 2,
            max_restarts=MAX_RESTARTS, max_task_retries=0, scheduling_strategy="SPREAD")
        self.actors = [actor.remote(job.worker, f"w{i}") for i in range(job.num_workers)]
        self.state = ["starting"] * job.num_workers  # starting -> ready -> (starting after a death) ... -> dead
        self.load = [0] * job.num_workers
        self.starting: dict = {a.ready.remote(): i for i, a in enumerate(self.actors)}
        self.inflight: dict = {}  # ref -> (worker, path)
        self.queue: deque[str] = deque()
        self.attempts: Counter = Counter()
        self.failed_starts: Counter = Counter()
        self.retried = 0
        errors = self.ray.exceptions  # what says that the worker's process is gone (Ray restarts it)
        self.died = (errors.RayActorError, errors.WorkerCrashedError, errors.OutOfMemoryError, errors.NodeDiedError)

    def run(self, files: list[str], check: Callable[[], None] = lambda: None) -> Iterator[tuple[str, object]]:
        """Transcribe ``files``: yields ("ready", info), ("lost", message) and one ("outcome", dict) per file.
        ``check()`` is called after every wait (at least every ``WAIT_S``): what it raises stops the run."""
        self.queue.extend(sorted(files, key=_size, reverse=True))
        since = time.perf_counter()
        while self.queue or self.inflight:
            if all(s == "dead" for s in self.state):
                yield from (("outcome", _lost(path, "no worker is left")) for path in self._take_all())
                return
            self._hand_out()
            refs = list(self.inflight) + list(self.starting)
            done, _ = self.ray.wait(refs, num_returns=1, timeout=WAIT_S)
            check()
            if done:
                done, _ = self.ray.wait(refs, num_returns=len(refs), timeout=0)
            for ref in done:
                yield from (self._started(ref) if ref in self.starting else self._finished(ref))
            if since is not None and "ready" not in self.state and time.perf_counter() - since > SLOW_START_S:
                yield "lost", (f"note: no worker has started after {SLOW_START_S:.0f} s; each needs "
                               f"{self.job.cpus_per_worker:g} CPU and {self.job.gpus_per_worker:g} GPU: is the "
                               f"cluster busy? ({self.ray.available_resources()})")
                since = None

    def _hand_out(self) -> None:
        ready = [i for i, s in enumerate(self.state) if s == "ready"]
        alive = sum(s != "dead" for s in self.state)
        while self.queue and ready:
            i = min(ready, key=lambda k: self.load[k])
            share = math.ceil((len(self.queue) + len(self.inflight)) / alive)  # few files: spread them evenly
            if self.load[i] >= max(1, min(self.job.in_flight, share)):
                return
            path = self.queue.popleft()
            self.inflight[self.actors[i].transcribe.remote(path)] = (i, path)
            self.load[i] += 1

    def _started(self, ref) -> Iterator[tuple[str, object]]:
        i = self.starting.pop(ref)
        errors = self.ray.exceptions
        try:
            info = self.ray.get(ref)
        except (errors.ActorDiedError, errors.ActorUnschedulableError) as e:  # no restart is left
            self.state[i] = "dead"
            yield "lost", f"worker w{i} is gone: {_first_line(e)}"
            return
        except self.died as e:  # killed while starting (e.g. Ray's memory monitor), or restarting: ask again
            self.failed_starts[i] += 1
            if self.failed_starts[i] > MAX_RESTARTS:
                self.state[i] = "dead"
                yield "lost", f"worker w{i} could not start: {_first_line(e)}"
            else:
                self.starting[self.actors[i].ready.remote()] = i
            return
        if info["error"] is not None:
            raise JobError(f"worker w{i} ({info['name']}) cannot load the model: {info['error']}")
        self.state[i] = "ready"
        yield "ready", dict(info, index=i)

    def _finished(self, ref) -> Iterator[tuple[str, object]]:
        i, path = self.inflight.pop(ref)
        self.load[i] -= 1
        try:
            outcome = self.ray.get(ref)
        except self.died as e:
            yield from self._worker_died(i, path, e)
            return
        except self.ray.exceptions.RayError as e:  # the call itself failed (not the file): report it as the file's
            outcome = {"input": path, "worker": f"w{i}", "error": _first_line(e), "error_type": type(e).__name__}
        yield "outcome", outcome

    def _worker_died(self, i: int, path: str, error) -> Iterator[tuple[str, object]]:
        """The worker's process died holding ``path``: the file goes back to the queue (or fails after
        ``MAX_ATTEMPTS``); the worker is ``starting`` again until Ray has restarted it (or it is gone)."""
        self.attempts[path] += 1
        if self.state[i] == "ready":
            self.state[i] = "starting"
            self.starting[self.actors[i].ready.remote()] = i
            yield "lost", f"worker w{i} died ({_first_line(error)}); its files go back to the queue"
        if self.attempts[path] >= MAX_ATTEMPTS:
            yield "outcome", _lost(path, f"a worker died {self.attempts[path]} times while transcribing it")
        else:
            self.retried += 1
            self.queue.appendleft(path)

    def _take_all(self) -> list[str]:
        paths = list(self.queue) + [path for _, path in self.inflight.values()]
        self.queue.clear()
        self.inflight.clear()
        return paths

    def close(self) -> None:
        for actor in self.actors:
            try:
                self.ray.kill(actor, no_restart=True)
            except Exception:  # noqa: BLE001 - already gone
                pass


def _size(path: str) -> int:
    try:
        return os.path.getsize(path)
    except OSError:
        return 0


def _lost(path: str, why: str) -> dict:
    return {"input": path, "worker": None, "error": why, "error_type": "WorkerDied"}


def _first_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return text[0][:300] if text else type(error).__name__


__all__ = ["JobError", "MAX_ATTEMPTS", "MAX_RESTARTS", "RayCluster", "WorkerPool", "check_reachable", "import_ray"]
