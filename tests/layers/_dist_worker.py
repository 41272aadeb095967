"""One rank of the torch.distributed (gloo, CPU) tensor-parallel check; forked by test_tp_distributed.py.

Every rank builds the same full layers (same seeds), loads its shard, runs the real ``forward``
(all_gather / all_reduce) and compares with the full layer; any mismatch raises.
"""
import torch
import torch.distributed as dist

import trtllm_ext as t

from ._helpers import assert_rel_close, load_random, randn


def main(rank: int, world: int, store: str) -> None:
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=world)
    try:
        x = randn(2, 5, 24, seed=1).float()
        xa = randn(2, 7, 10, seed=2).float()

        full = t.Linear(24, 12)
        w = load_random(full, 3)
        col = t.ColumnLinear(24, 12, tp_size=world, tp_rank=rank)  # gather_output=True
        col.load_weights(col.shard_weights(w))
        assert_rel_close(col(x), full(x))

        row = t.RowLinear(24, 12, tp_size=world, tp_rank=rank)
        row.load_weights(row.shard_weights(w))
        assert_rel_close(row(t.tp_shard(x, rank, world, -1)), full(x))

        full = t.MLP(24, 40)
        w = load_random(full, 4)
        mlp = t.MLP(24, 40, tp_size=world, tp_rank=rank)
        mlp.load_weights({**{f"fc.{k}": v for k, v in mlp.fc.shard_weights(
                              {k[3:]: v for k, v in w.items() if k.startswith("fc.")}).items()},
                          **{f"proj.{k}": v for k, v in mlp.proj.shard_weights(
                              {k[5:]: v for k, v in w.items() if k.startswith("proj.")}).items()}})
        assert_rel_close(mlp(x), full(x))

        for causal in (False, True):
            full = t.Attention(24, 4, causal=causal)
            w = load_random(full, 5)
            attn = t.Attention(24, 4, causal=causal, tp_size=world, tp_rank=rank)
            attn.load_weights(attn.shard_weights(w))
            assert_rel_close(attn(x), full(x))
        cache = attn.new_cache(2, 5, dtype=torch.float32)
        steps = [attn(x[:, :3], torch.arange(3), cache=cache), attn(x[:, 3:4], torch.tensor([3]), cache=cache),
                 attn(x[:, 4:], torch.tensor([4]), cache=cache)]
        assert_rel_close(torch.cat(steps, dim=1), full(x))

        full = t.CrossAttention(24, 4, 10)
        w = load_random(full, 6)
        ca = t.CrossAttention(24, 4, 10, tp_size=world, tp_rank=rank)
        ca.load_weights(ca.shard_weights(w))
        assert_rel_close(ca(x, xa), full(x, xa))
        cache = ca.new_cache(2, 7, dtype=torch.float32)
        ca.compute_kv(xa, cache)
        assert_rel_close(ca(x, cache=cache), full(x, xa))
        dist.barrier()
    finally:
        dist.destroy_process_group()
