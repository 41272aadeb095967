"""Helpers of the GPU micro-benches (bench_grid_barrier, bench_gemv): capture a graph, write the JSON."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import torch
import triton


def capture(run) -> torch.cuda.CUDAGraph:
    """``run()`` once on a side stream (compile, warm up), then captured as a graph on that stream."""
    side = torch.cuda.Stream()
    with torch.cuda.stream(side):
        run()
    torch.cuda.synchronize()
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph, stream=side):
        run()
    return graph


def write_json(path, rows: list[dict]) -> None:
    """``{"env": device, versions, argv; "rows": rows}`` to ``path`` (folders made)."""
    env = {"device": torch.cuda.get_device_name(0), "torch": torch.__version__, "triton": triton.__version__,
           "argv": sys.argv[1:]}
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(json.dumps({"env": env, "rows": rows}, indent=1))
