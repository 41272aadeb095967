"""The atheris harness (fuzz_loaders.py) runs every target for a few seconds in CI, each in its own process (a
crash of native code kills that process, not pytest): libFuzzer must finish its time with no crash."""
from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

HARNESS = Path(__file__).with_name("fuzz_loaders.py")
TARGETS = ["audio", "ct2", "openai", "openai_pickle", "safetensors", "hf_config", "any"]
SECONDS = 2

pytestmark = pytest.mark.skipif(importlib.util.find_spec("atheris") is None,
                                reason="atheris is not installed (the dev extra installs it on Linux, where it has "
                                       "wheels; elsewhere `pip install atheris` needs clang and libFuzzer)")


def _fuzz(target: str, tmp: Path) -> subprocess.CompletedProcess:
    """One target for SECONDS; its corpus, crash files and scratch files all under ``tmp`` (libFuzzer ends the
    process with exit(), so nothing the harness made would be cleaned up otherwise)."""
    (tmp / target).mkdir()
    return subprocess.run([sys.executable, str(HARNESS), target, f"-max_total_time={SECONDS}", "-timeout=20"],
                          capture_output=True, text=True, timeout=120, env={**os.environ, "TMPDIR": str(tmp / target)})


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, subprocess.CompletedProcess]:
    tmp = tmp_path_factory.mktemp("fuzz")
    with ThreadPoolExecutor(max_workers=2) as pool:  # two at a time: CI machines have few cores
        return dict(zip(TARGETS, pool.map(_fuzz, TARGETS, [tmp] * len(TARGETS))))


def test_the_harness_lists_exactly_these_targets():
    listed = subprocess.run([sys.executable, str(HARNESS), "list"], capture_output=True, text=True, timeout=120)
    assert listed.returncode == 0, listed.stderr[-2000:]
    assert listed.stdout.split("TARGET: ")[1].strip().split(", ") == TARGETS


@pytest.mark.parametrize("target", TARGETS)
def test_fuzz_target_runs_clean(runs, target):
    run = runs[target]
    log = run.stdout + run.stderr
    assert run.returncode == 0 and "Uncaught Python exception" not in log, log[-4000:]
    done = re.search(r"Done (\d+) runs in (\d+) second", log)
    assert done and int(done[1]) > 10, log[-2000:]  # it really ran, well beyond the seeds
