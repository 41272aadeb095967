"""bench/bench_cpu_step.py: fixed-work decoding steps and encoder windows by precision (a bench; no timed asserts)."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench import bench_cpu_step  # noqa: E402


def test_the_step_bench_times_every_precision_on_the_same_work(tmp_path, capsys):
    out = tmp_path / "step.json"
    assert bench_cpu_step.main(["--precisions", "fp32", "int8", "--steps", "2", "--repeats", "2",
                                "--json", str(out)]) == 0
    data = json.loads(out.read_text())
    assert [r["precision"] for r in data["rows"]] == ["fp32", "int8"]
    for r in data["rows"]:
        assert len(r["runs"]["step_ms"]) == 2 and r["step_ms_best"] == min(r["runs"]["step_ms"]) > 0
        assert r["encoder_ms_best"] > 0
    assert "| int8 |" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        bench_cpu_step.main(["--steps", "446"])
