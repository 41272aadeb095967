"""Tensor-parallel sharding, checked rank-locally (no torch.distributed): ranks' parts recombine to the full layer.

ColumnLinear: concatenation of ``forward_local`` outputs == full Linear. RowLinear: sum of ``forward_local``
over input slices + bias == full. Attention / CrossAttention / MLP: each rank holds ``heads / world`` heads
(or ``ffn / world`` features); with their RowLinear run rank-locally (``forward_local``: no all-reduce, no
bias) the sum over ranks + the output bias == the full layer.
"""
import numpy as np
import torch
from parameterized import parameterized

from trtllm_ext import MLP, Attention, ColumnLinear, CrossAttention, Linear, RowLinear, tp_shard

from ._helpers import assert_rel_close, load_random, randn, random_weights, rank_local, ref_attention

WORLDS = [(2,), (4,)]


@parameterized.expand([(2, True), (4, True), (2, False), (4, False)])
def test_column_linear_shards_concatenate_to_full(world, bias):
    fin, fout = 7, 12
    full = Linear(fin, fout, bias=bias)
    w = load_random(full, 100 + world)
    x = randn(2, 3, fin, seed=101).float()
    parts = []
    for r in range(world):
        col = ColumnLinear(fin, fout, bias=bias, tp_size=world, tp_rank=r, gather_output=False)
        assert col.weight.shape == (fout // world, fin)
        shards = col.shard_weights(w)
        torch.testing.assert_close(shards["weight"], tp_shard(w["weight"], r, world, 0), rtol=0, atol=0)
        col.load_weights(shards)
        parts.append(col.forward_local(x))
        torch.testing.assert_close(col(x), parts[-1], rtol=0, atol=0)  # gather_output=False: no collective
    assert_rel_close(torch.cat(parts, dim=-1), full(x), tol=1e-6)


@parameterized.expand([(2, True), (4, True), (2, False), (4, False)])
def test_row_linear_partial_sums_plus_bias_equal_full(world, bias):
    fin, fout = 12, 5
    full = Linear(fin, fout, bias=bias)
    w = load_random(full, 200 + world)
    x = randn(3, fin, seed=201).float()
    total = 0
    for r in range(world):
        row = RowLinear(fin, fout, bias=bias, tp_size=world, tp_rank=r)
        assert row.weight.shape == (fout, fin // world)
        shards = row.shard_weights(w)
        torch.testing.assert_close(shards["weight"], tp_shard(w["weight"], r, world, 1), rtol=0, atol=0)
        if bias:  # the bias is replicated, added once after the reduce
            torch.testing.assert_close(shards["bias"], w["bias"], rtol=0, atol=0)
        row.load_weights(shards)
        total = total + row.forward_local(tp_shard(x, r, world, -1))
    if bias:
        total = total + w["bias"].float()
    assert_rel_close(total, full(x), tol=1e-6)


@parameterized.expand(WORLDS)
def test_linear_shard_weights_in_out_layout(world):
    w = randn(8, 12, seed=300 + world)  # [out, in]
    for r in range(world):
        col = ColumnLinear(12, 8, bias=False, tp_size=world, tp_rank=r)
        row = RowLinear(12, 8, bias=False, tp_size=world, tp_rank=r)
        for wt in (w.T, w.T.numpy(), np.asfortranarray(w.T.numpy())):  # the caller holds W^T
            torch.testing.assert_close(col.shard_weights({"weight": wt}, layout="in_out")["weight"],
                                       tp_shard(w, r, world, 0), rtol=0, atol=0)
            torch.testing.assert_close(row.shard_weights({"weight": wt}, layout="in_out")["weight"],
                                       tp_shard(w, r, world, 1), rtol=0, atol=0)


def test_tp_shard_owns_its_memory():
    full = torch.arange(24.0).reshape(4, 6)
    s = tp_shard(full, 1, 2, 1)
    full.fill_(-1)
    assert s.is_contiguous() and torch.equal(s, torch.tensor([[3.0, 4, 5], [9, 10, 11], [15, 16, 17], [21, 22, 23]]))
    assert torch.equal(tp_shard(np.arange(6.0), 2, 3, 0), torch.tensor([4.0, 5.0], dtype=torch.float64))


def _mlp_shards(mlp_rank, w):
    out = {}
    for name in ("fc", "proj"):
        sub = getattr(mlp_rank, name)
        local = {k.split(".", 1)[1]: v for k, v in w.items() if k.startswith(name + ".")}
        out.update({f"{name}.{k}": v for k, v in sub.shard_weights(local).items()})
    return out


@parameterized.expand(WORLDS)
def test_mlp_rank_local_sum_equals_full(world):
    hidden, ffn = 12, 40
    full = MLP(hidden, ffn)
    w = load_random(full, 400 + world)
    x = randn(2, 5, hidden, seed=401).float()
    total = 0
    for r in range(world):
        m = MLP(hidden, ffn, tp_size=world, tp_rank=r)
        assert m.fc.weight.shape == (ffn // world, hidden) and m.proj.weight.shape == (hidden, ffn // world)
        m.load_weights(_mlp_shards(m, w))
        total = total + rank_local(m)(x)
    assert_rel_close(total + w["proj.bias"].float(), full(x), tol=1e-6)


def _attn_ranks(cls, world, w, **kw):
    ranks = []
    for r in range(world):
        a = cls(24, 4, tp_size=world, tp_rank=r, **kw)
        assert a.local_heads == 4 // world
        a.load_weights(a.shard_weights(w))
        ranks.append(rank_local(a))
    return ranks


@parameterized.expand([(2, False), (4, False), (2, True), (4, True)])
def test_attention_rank_local_sum_equals_full(world, causal):
    full = Attention(24, 4, causal=causal)
    w = load_random(full, 500 + world)
    x = randn(2, 6, 24, seed=501).float()
    ranks = _attn_ranks(Attention, world, w, causal=causal)
    # the fused qkv shard of rank r holds the q, k and v rows of that rank's heads, in that order
    n, per = 24, 24 // world
    for r, a in enumerate(ranks):
        q, k, v = (w["qkv.weight"][i * n + r * per: i * n + (r + 1) * per] for i in range(3))
        torch.testing.assert_close(a.qkv.weight.double(), torch.cat([q, k, v]), rtol=0, atol=0)
    total = sum(a(x) for a in ranks) + w["dense.bias"].float()
    assert_rel_close(total, full(x))
    assert_rel_close(total, ref_attention(x.double(), w, 4, causal))


@parameterized.expand(WORLDS)
def test_attention_rank_local_cached_decoding_sum_equals_full(world):
    full = Attention(24, 4, causal=True)
    w = load_random(full, 600 + world)
    x = randn(2, 5, 24, seed=601).float()
    ranks = _attn_ranks(Attention, world, w, causal=True)
    caches = [a.new_cache(2, 5, dtype=torch.float32) for a in ranks]
    assert all(c.k.shape == (2, 4 // world, 5, 6) for c in caches)
    steps = []
    for p in [(0, 3), (3, 4), (4, 5)]:
        pos = torch.arange(*p)
        steps.append(sum(a(x[:, p[0]:p[1]], pos, cache=c) for a, c in zip(ranks, caches)))
    assert_rel_close(torch.cat(steps, dim=1) + w["dense.bias"].float(), full(x))


@parameterized.expand(WORLDS)
def test_cross_attention_rank_local_sum_equals_full(world):
    full = CrossAttention(24, 4, 10)
    w = load_random(full, 700 + world)
    x, xa = randn(2, 3, 24, seed=701).float(), randn(2, 7, 10, seed=702).float()
    ranks = _attn_ranks(CrossAttention, world, w, kv_hidden_size=10)
    ref = full(x, xa)
    assert_rel_close(sum(a(x, xa) for a in ranks) + w["dense.bias"].float(), ref)
    caches = [a.new_cache(2, 7, dtype=torch.float32) for a in ranks]
    for a, c in zip(ranks, caches):
        a.compute_kv(xa, c)
    assert_rel_close(sum(a(x, cache=c) for a, c in zip(ranks, caches)) + w["dense.bias"].float(), ref)


@parameterized.expand(WORLDS)
def test_attention_shard_weights_in_out_layout(world):
    full = Attention(24, 4)
    w = random_weights(full, 800 + world)
    w_in_out = {k: (v.T if v.dim() == 2 else v) for k, v in w.items()}
    for r in range(world):
        a = Attention(24, 4, tp_size=world, tp_rank=r)
        s1, s2 = a.shard_weights(w), a.shard_weights(w_in_out, layout="in_out")
        assert s1.keys() == s2.keys()
        for k in s1:
            torch.testing.assert_close(s1[k], s2[k], rtol=0, atol=0)
