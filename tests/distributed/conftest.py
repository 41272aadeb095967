"""Fixtures of the Ray job's tests (CPU, tiny.en, no network): a few short shared clips, what the single-process
command line writes for them (the reference every job's outputs must equal), and a local Ray in this process
(2 CPUs, no dashboard) that is shut down at the end of the module even when a test fails."""
from __future__ import annotations

import logging
import os
import shutil
import signal
import tempfile
from pathlib import Path

import pytest
import torch

from _distributed_common import CLIPS, FLAGS, PATHS, REPO
from _requires import require



@pytest.fixture(scope="session", autouse=True)
def ray_environment():
    """Every Ray of these tests is their own (no address inherited), keeps its files in a folder of theirs
    (short: Ray's socket paths must stay under 108 characters), reports no usage, uses no token (none is written
    to ~/.ray), and kills no worker for the memory other processes of a shared machine use."""
    saved = dict(os.environ)
    folder = tempfile.mkdtemp(prefix="rayt-", dir="/tmp")
    os.environ.pop("RAY_ADDRESS", None)
    os.environ.update(RAY_TMPDIR=folder, RAY_USAGE_STATS_ENABLED="0", RAY_memory_monitor_refresh_ms="0",
                      RAY_AUTH_MODE="disabled")  # no token written to ~/.ray
    try:
        yield folder
    finally:
        os.environ.clear()
        os.environ.update(saved)
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="session")
def clips() -> list[str]:
    if not PATHS.AUDIO_DIR.is_dir():
        pytest.skip(PATHS.NO_SHARED)
    return [str(PATHS.AUDIO_DIR / name) for name in CLIPS] + [str(REPO / "samples" / "jfk.mp3")]


@pytest.fixture(scope="session")
def reference(tmp_path_factory, clips) -> Path:
    """The outputs (every format) of ``python -m whisper_model.run`` on the clips, run in this process."""
    from whisper_model.cli import run

    out = tmp_path_factory.mktemp("reference")
    threads = torch.get_num_threads()
    try:
        assert run.main([*clips, "-o", str(out), *FLAGS]) == 0
    finally:
        torch.set_num_threads(threads)  # --threads 1 set it for this process
    return out


@pytest.fixture(scope="module")
def local_ray():
    """Ray in this process for the jobs run in it (they use it and leave it running)."""
    ray = require("ray")
    handler = signal.getsignal(signal.SIGTERM)  # ray.init installs its own
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level=logging.ERROR,
             object_store_memory=128 * 2**20)
    try:
        yield ray
    finally:
        ray.shutdown()
        signal.signal(signal.SIGTERM, handler)

