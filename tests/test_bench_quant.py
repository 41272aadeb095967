"""bench/bench_quant.py end to end on the CPU, on a cut-down tiny (short audio context, two layers a side): every
config x batch is measured and written, quantization really applied (the projections' bytes, the caches' bytes),
the B=1 engine rows and the targets are there, and ``--report`` reprints the JSON."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch

from whisper_model.config import MODEL_DIMS, scaled
from whisper_model.fast import build

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench import bench_quant  # noqa: E402

DIMS = scaled(MODEL_DIMS["tiny"], n_audio_ctx=40, n_audio_layer=2, n_text_layer=2, n_audio_state=128,
              n_text_state=128, n_audio_head=2, n_text_head=2, n_text_ctx=16)
CONFIGS = bench_quant.DEFAULT_CONFIGS.split(",")


@pytest.fixture()
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def test_bench_quant_measures_every_config_and_batch(tmp_path, monkeypatch, capsys, one_thread):
    monkeypatch.setattr(build, "dims_for", lambda name: DIMS)
    out_file = tmp_path / "quant.json"
    argv = ["--model", "tiny", "--device", "cpu", "--dtype", "float32", "--batch", "1", "2", "--tokens", "3",
            "--repeats", "1", "--json", str(out_file)]
    assert bench_quant.main(argv) == 0
    out = json.loads(out_file.read_text())
    assert "errors" not in out
    assert out["meta"]["configs"][0] == "fp16" and out["meta"]["command"]
    rows = {(r["config"], r["batch"]): r for r in out["results"]}
    assert set(rows) == {(c, b) for c in CONFIGS for b in (1, 2)}
    assert all(r["tokens_ok"] and "step_ratio" in r and "peak_mem_gb" not in r for r in rows.values())  # CPU
    for b in (1, 2):
        for c in CONFIGS:
            r, fp16 = rows[c, b], rows["fp16", b]
            weights, kv8 = c.split("+")[0], c.endswith("+kv8")
            # the projections: what weight-only quantization replaces (tiny's float embedding is half its bytes)
            limit = {"fp16": 1.0, "int8": 0.6, "int4": 0.4}[weights]
            assert r["linear_ratio"] < limit if weights != "fp16" else r["linear_ratio"] == 1.0
            assert (r["weight_ratio"] < 1.0) == (weights != "fp16")
            assert (r["cache_bytes"] < 0.6 * fp16["cache_bytes"]) == kv8
        assert rows["fp16+kv8", b]["weight_bytes"] == rows["fp16", b]["weight_bytes"]
        assert rows["fp16", b]["tokens_equal_fp16"] == 1.0
    assert [r["config"] for r in out["b1"]] == out["meta"]["configs"]
    assert all(r["engine_rows"] == 1 and r["cache_bytes"] < rows[r["config"], 1]["cache_bytes"] for r in out["b1"])
    assert {t["config"] for t in out["targets"]} == set(CONFIGS)
    assert {t["status"] for t in out["targets"] if "peak memory" in t["target"]} == {"n/a"}  # CPU: no allocator
    printed = capsys.readouterr().out
    assert "B=2 (tiny" in printed and "peak memory B=1 (B=1 engine)" in printed
    assert bench_quant.main(["--report", str(out_file)]) == 0
    assert capsys.readouterr().out.count("\ntargets\n") == 1


def test_bench_quant_memory_bookkeeping_on_a_fake_allocator(tmp_path, monkeypatch, one_thread):
    """The CUDA-only arithmetic (peak minus the allocation before the model, peak over the weight bytes, the peak
    target's why) on the CPU: the allocator's counters faked, the device left the CPU for everything else."""
    monkeypatch.setattr(build, "dims_for", lambda name: DIMS)
    monkeypatch.setattr(bench_quant, "is_cuda", lambda device: True)
    monkeypatch.setattr(bench_quant, "fused_quant_ops", lambda device: dict.fromkeys(bench_quant.QUANT_OPS, False))
    fake = dict(memory_allocated=lambda: 2**30, max_memory_allocated=lambda: 2**30 + 2**28,
                reset_peak_memory_stats=lambda: None, synchronize=lambda: None, empty_cache=lambda: None)
    for name, fn in fake.items():
        monkeypatch.setattr(torch.cuda, name, fn)
    out_file = tmp_path / "quant.json"
    argv = ["--model", "tiny", "--device", "cpu", "--dtype", "float32", "--batch", "1", "--tokens", "2", "--repeats",
            "1", "--configs", "int4,fp16", "--json", str(out_file)]
    assert bench_quant.main(argv) == 0
    out = json.loads(out_file.read_text())
    assert [r["config"] for r in out["results"]] == ["fp16", "int4"]
    for r in out["results"] + out["b1"]:
        assert r["peak_abs_gb"] == pytest.approx(1.25)
    for r in out["b1"]:
        assert r["peak_mem_gb"] == pytest.approx(0.25) and r["peak_over_weights"] == 2**28 / r["weight_bytes"]
    assert out["results"][0]["model_alloc_gb"] == 0.0
    peak = [t for t in out["targets"] if "peak memory" in t["target"]]
    assert len(peak) == 2 and all(t["status"].startswith("missed by") and "K/V caches" in t["why"] for t in peak)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal on a machine without CUDA")
@pytest.mark.parametrize("script, config", [("bench_step_kernels.py", "fp16"), ("bench_peak_memory.py", "int8")])
def test_the_cuda_only_benches_refuse_a_machine_without_cuda(script, config):
    import subprocess

    path = Path(__file__).resolve().parents[1] / "bench" / script
    run = subprocess.run([sys.executable, str(path), "--configs", config], capture_output=True, text=True,
                         timeout=120)
    assert run.returncode != 0 and "needs a CUDA GPU" in run.stderr


def test_the_peak_trace_finds_what_is_live_at_the_highest_point():
    """bench_peak_memory's replay of an allocator trace: the peak's live set, grouped by the repository frames."""
    from bench import bench_peak_memory as bpm

    root = str(bpm.ROOT)
    here = [{"filename": f"{root}/trtllm_ext/kernels/ops.py", "line": 5, "name": "f"},
            {"filename": "/usr/lib/python3/x.py", "line": 1, "name": "g"}]
    there = [{"filename": f"{root}/whisper_model/model/caches.py", "line": 43, "name": "__init__"}]
    ev = lambda action, addr, size, frames=here: dict(action=action, addr=addr, size=size, frames=frames)  # noqa
    trace = [ev("alloc", 1, 100, there), ev("alloc", 2, 50), ev("free_requested", 2, 50), ev("free_completed", 2, 50),
             ev("alloc", 3, 70), ev("alloc", 4, 10, []), ev("free_requested", 3, 70), ev("alloc", 5, 20)]
    peak, live = bpm.live_at_peak(trace)
    assert peak == 180 and sorted(e["addr"] for e in live) == [1, 3, 4]
    assert [(g["source"], g["bytes"], g["blocks"]) for g in bpm.by_source(live)] == [
        ("whisper_model/model/caches.py:43:__init__", 100, [100]), ("trtllm_ext/kernels/ops.py:5:f", 70, [70]),
        ("(outside the repository)", 10, [10])]
    assert bpm.source(live[-1], 12) == "(outside the repository)" and bpm.source(live[0], 1).endswith("__init__")
