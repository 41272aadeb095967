"""Tensor parallelism through the real collectives: 2 CPU processes, torch.distributed with gloo.

The rank-local tests (test_tensor_parallel.py) check the sharding maths; this one checks that ``forward``
(ColumnLinear all_gather, RowLinear all_reduce + bias once, MLP, Attention incl. the KV cache,
CrossAttention incl. compute_kv) recombines to the full layer on every rank. The ranks are forked from
the test process (torch is already imported: a fresh interpreter per rank would cost seconds).
"""
import multiprocessing as mp
import queue
import time
import traceback

import pytest
import torch
import torch.distributed as dist

from ._dist_worker import main

WORLD = 2


def _rank(rank: int, store: str, errors) -> None:
    try:
        torch.set_num_threads(1)  # no OpenMP pool in a forked child
        main(rank, WORLD, store)
    except BaseException:
        errors.put(f"rank {rank}:\n{traceback.format_exc()}")
        raise SystemExit(1)
    errors.put(None)


@pytest.mark.skipif(not (dist.is_available() and dist.is_gloo_available()), reason="torch.distributed gloo missing")
@pytest.mark.skipif("fork" not in mp.get_all_start_methods(), reason="needs the fork start method")
def test_tensor_parallel_forward_over_gloo_two_ranks(tmp_path):
    ctx = mp.get_context("fork")
    errors = ctx.Queue()
    procs = [ctx.Process(target=_rank, args=(r, str(tmp_path / "store"), errors)) for r in range(WORLD)]
    for p in procs:
        p.start()
    reports = []
    try:
        deadline = time.monotonic() + 60
        while len(reports) < WORLD:
            try:
                reports.append(errors.get(timeout=max(0.1, deadline - time.monotonic())))
            except queue.Empty:
                pytest.fail(f"ranks timed out after 60 s ({len(reports)} of {WORLD} reported)")
            if reports[-1] is not None:
                break  # one rank failed: the others may wait forever in a collective
        else:
            for p in procs:
                p.join(timeout=30)
    finally:
        for p in procs:
            if p.is_alive():
                p.kill()
                p.join()
    failures = [r for r in reports if r is not None]
    assert not failures, "\n".join(failures)
    assert [p.exitcode for p in procs] == [0] * WORLD
