"""Processes the tests start (a job as a command, ``ray start`` nodes), each in a session of its own, and how they
are ended: by the ids of the processes in that session (Ray's helpers keep the session of the command that
started them), never by name."""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
RAY = Path(sys.executable).with_name("ray")


def env() -> dict:
    """The environment of the processes the tests start: no usage report, no token, an immediate shutdown on
    SIGTERM (no 30 s drain), no Ray memory monitor (other processes on a shared machine), Ray's files in the
    tests' own RAY_TMPDIR (see conftest), no cluster address inherited."""
    out = dict(os.environ, RAY_USAGE_STATS_ENABLED="0", RAY_AUTH_MODE="disabled",
               RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S="0", PYTHONUNBUFFERED="1", RAY_memory_monitor_refresh_ms="0")
    out.pop("RAY_ADDRESS", None)
    return out


def session_pids(sid: int) -> list[int]:
    """The processes of session ``sid`` that are still alive."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[3]) == sid and fields[0] != "Z":  # after the name: state, ppid, pgrp, session
            pids.append(int(entry.name))
    return pids


def end_session(process: subprocess.Popen, grace_s: float = 10.0) -> list[int]:
    """SIGTERM to ``process`` (the leader of its session), then SIGKILL to whatever of its session is left after
    ``grace_s``; returns the pids that had to be killed."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(grace_s)
        except subprocess.TimeoutExpired:
            pass
    return kill_session(process, grace_s)


def kill_session(process: subprocess.Popen, wait_s: float = 10.0) -> list[int]:
    """Waits up to ``wait_s`` for the rest of the session of ``process`` to go, then kills what is left."""
    deadline = time.monotonic() + wait_s
    while session_pids(process.pid) and time.monotonic() < deadline:
        time.sleep(0.2)
    left = session_pids(process.pid)
    for pid in left:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    if process.poll() is None:
        process.kill()
    process.wait(10)
    return left


def start(args: list[str], log: Path) -> subprocess.Popen:
    return subprocess.Popen([str(a) for a in args], cwd=REPO, env=env(), stdout=open(log, "w"),
                            stderr=subprocess.STDOUT, start_new_session=True)


def job_command(*argv) -> list[str]:
    return [sys.executable, "-m", "whisper_model.distributed", *argv]


def gated_job_command(gated: str, *argv) -> list[str]:
    """``job_command(*argv)`` whose workers never finish the input ``gated`` (``_gated_job.py``)."""
    return [sys.executable, str(REPO / "tests" / "distributed" / "_gated_job.py"), gated, *argv]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def ray_node(log: Path, *extra: str) -> subprocess.Popen:
    """``ray start --block`` of one node with 1 CPU and no GPU, every port its own (two nodes on one machine)."""
    ports = [f"--{name}={free_port()}" for name in ("dashboard-agent-listen-port", "dashboard-agent-grpc-port",
                                                    "runtime-env-agent-port", "metrics-export-port")]
    return start([RAY, "start", "--block", "--num-cpus=1", "--num-gpus=0", "--node-ip-address=127.0.0.1",
                  f"--object-store-memory={100 * 2**20}", "--disable-usage-stats", *ports, *extra], log)


def wait_for_text(log: Path, text: str, process: subprocess.Popen, timeout_s: float = 90.0) -> None:
    """Until ``text`` is in ``log``; AssertionError (with the log) when ``process`` ended or time ran out."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        content = log.read_text(errors="replace") if log.exists() else ""
        if text in content:
            return
        assert process.poll() is None, f"{process.args[:3]} ended ({process.returncode}):\n{content[-3000:]}"
        time.sleep(0.2)
    raise AssertionError(f"no {text!r} after {timeout_s:.0f} s:\n{content[-3000:]}")
