"""Int8KVCache (int8 values, one float32 scale per row, head and position) against the float KVCache.

Element bound: round-to-nearest gives ``|x - x'| <= scale / 2`` with ``scale = amax over head_dim / 127``.
Attention bound, per (row, head, query), over the keys j it may see: with ``eps = max_j |q|_1 * sk_j / 2 /
sqrt(D)`` (the largest score error), ``|o' - o| <= max_j sv_j / 2 + (exp(2 eps) - 1) * max_j |v_j|``
(softmax weights move by a factor within exp(+-2 eps), so their total change is at most exp(2 eps) - 1).
"""
import math

import pytest
import torch

from trtllm_ext import Attention, CrossAttention, Int8KVCache, KVCache, dequantize_kv, quantize_kv

from ._helpers import assert_rel_close, load_random, randn

SLACK = 1e-5  # float32 arithmetic on top of the quantization bound


def _kv(b, h, t, d, seed):
    # non-symmetric, with one head 10x larger, so per-head / per-token scales differ
    k, v = randn(b, h, t, d, seed=seed) + 0.3, randn(b, h, t, d, seed=seed + 1) - 0.2
    k[:, 0] *= 10
    return k.float(), v.float()


def test_quantize_kv_error_is_at_most_half_a_scale():
    x = randn(2, 3, 5, 8, seed=1) * torch.logspace(-3, 2, 5, dtype=torch.float64)[:, None]
    x[0, 1, 2] = 0  # an all-zero token: zeros
    q, s = quantize_kv(x.float())
    assert q.dtype == torch.int8 and q.shape == x.shape
    assert s.dtype == torch.float32 and s.shape == (2, 3, 5, 1)
    assert q.abs().max() <= 127 and not q[0, 1, 2].any()
    err = (x.float().double() - dequantize_kv(q, s, torch.float64)).abs()
    assert (err <= s.double() / 2 * (1 + 1e-12)).all()
    amax = x.float().double().abs().amax(-1, keepdim=True)
    assert (q.abs().amax(-1, keepdim=True)[amax > 0] == 127).all()  # every token uses the full range
    # a given per-head scale [H, 1, 1]: values beyond 127 * scale clip
    head = torch.tensor([1e-3, 1e-2, 1.0])[:, None, None]
    q2, s2 = quantize_kv(x.float(), head)
    assert s2 is head
    inside = x.float().double().abs() <= 127 * head.double()
    err2 = (x.float().double() - dequantize_kv(q2, head, torch.float64)).abs()
    assert (err2[inside] <= (head.double() / 2).expand_as(x)[inside] * (1 + 1e-12)).all()
    assert (q2[~inside].abs() == 127).all()


def test_int8_cache_starts_zero_and_is_not_a_weight():
    c = Int8KVCache(2, 3, 5, 4)
    assert c.k.shape == (2, 3, 5, 4) and c.k.dtype == torch.int8
    assert c.k_scale.shape == (2, 3, 5, 1) and c.k_scale.dtype == torch.float32
    k, v = c.read(2)
    assert not k.any() and not v.any() and k.dtype == torch.float32
    assert len(c.state_dict()) == 0
    assert (c.max_batch, c.max_len) == (2, 5)


def _within_half_scale(read, want, scale):
    assert ((read.double() - want.double()).abs() <= scale.double() / 2 + 1e-7 * want.double().abs()).all()


def test_int8_cache_update_matches_float_cache_within_half_a_scale():
    f, c = KVCache(3, 2, 6, 8), Int8KVCache(3, 2, 6, 8)
    for pos, seed in ((torch.tensor([1, 4]), 1), (torch.tensor([[0, 3], [5, 2]]), 3)):
        k, v = _kv(2, 2, 2, 8, seed)
        fk, fv = f.update(pos, k, v)
        ck, cv = c.update(pos, k, v)
        assert ck.shape == fk.shape == (2, 2, 6, 8) and ck.dtype == torch.float32
        _within_half_scale(ck, fk, c.k_scale[:2])
        _within_half_scale(cv, fv, c.v_scale[:2])
    assert not c.k[2].any() and not c.k_scale[2].any()  # rows beyond the batch are untouched
    # unwritten positions read back as zeros, as in the float cache
    assert not c.k[0, :, [2, 5]].any() and not c.v[1, :, [0, 3]].any()


def test_int8_cache_write_reorder_reset():
    f, c = KVCache(4, 2, 8, 8), Int8KVCache(4, 2, 8, 8)
    k, v = _kv(4, 2, 8, 8, 7)
    f.write(k, v)
    c.write(k, v)
    k2, v2 = _kv(2, 2, 5, 8, 9)
    fk, _ = f.write(k2, v2)
    ck, _ = c.write(k2, v2)  # views of the int8 storage, as written() gives
    assert ck.shape == (2, 2, 5, 8) and ck.values.data_ptr() == c.k.data_ptr()
    _within_half_scale(ck.dequantize(), fk, c.k_scale[:2, :, :5])
    _within_half_scale(c.read(4)[0], f.k, c.k_scale)  # the rest kept
    idx = torch.tensor([3, 0, 0])
    before_k, before_v = c.read(4)
    c.reorder(idx)  # values and their scales move together
    k, v = c.read(4)
    assert torch.equal(k[:3], before_k[idx]) and torch.equal(v[:3], before_v[idx])
    assert torch.equal(k[3], before_k[3])
    c.reset()
    assert not c.k.any() and not c.k_scale.any() and not c.v.any()


def _attention_bound(q, sk, sv, v, mask):
    """The bound of the module docstring: q [b, h, t, D] float64, scales [b, h, L, 1], v [b, h, L, D], mask
    [b, 1, t, L] (True: visible) -> [b, h, t, 1]."""
    d = q.shape[-1]
    score_err = q.abs().sum(-1, keepdim=True) * sk.squeeze(-1)[:, :, None, :] / 2 / math.sqrt(d)  # [b, h, t, L]
    eps = score_err.masked_fill(~mask, 0).amax(-1, keepdim=True)
    dv = (sv.squeeze(-1)[:, :, None, :] / 2).masked_fill(~mask, 0).amax(-1, keepdim=True)
    vmax = v.abs().amax(-1)[:, :, None, :].masked_fill(~mask, 0).amax(-1, keepdim=True)
    return dv + torch.expm1(2 * eps) * vmax


def test_int8_cache_attention_within_the_stated_bound():
    b, h, length, d = 3, 2, 10, 16
    f, c = KVCache(b, h, length, d), Int8KVCache(b, h, length, d)
    pos = torch.tensor([[0, 1, 2, 3, 4, 5], [4, 5, 6, 7, 8, 9], [9, 8, 7, 6, 5, 4]])
    k, v = _kv(b, h, 6, d, 11)
    f.update(pos, k, v)
    ck, cv = c.update(pos, k, v)
    q = randn(b, h, 6, d, seed=13) * 0.5 + 0.1
    seen = torch.zeros(b, 1, 1, length, dtype=torch.bool)
    seen[torch.arange(b)[:, None], 0, 0, pos] = True
    mask = seen & (torch.arange(length) <= pos[:, None, :, None])  # [b, 1, t, L]
    ref = ref_sdpa_masked(q, f.k.double(), f.v.double(), mask)
    out = torch.nn.functional.scaled_dot_product_attention(q.float(), ck, cv, attn_mask=mask)
    bound = _attention_bound(q, c.k_scale, c.v_scale, f.v.double(), mask)
    err = (out.double() - ref).abs()
    assert (err <= bound + SLACK).all(), f"max err - bound {(err - bound).max().item():.3e}"
    assert err.max() > 0  # the bound is not met trivially
    assert (err / ref.abs().amax()).max() < 2e-2


def ref_sdpa_masked(q, k, v, mask):
    scores = (q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1])).masked_fill(~mask, float("-inf"))
    return torch.softmax(scores, -1) @ v


def test_attention_layer_with_int8_cache_tracks_the_float_cache():
    """Attention decodes with an Int8KVCache in place of a KVCache: prefill then steps, per-row positions."""
    hidden, heads, rows, length = 32, 4, 2, 8
    layer = Attention(hidden, heads, causal=True)
    load_random(layer, 21)
    caches = [layer.new_cache(rows, length, dtype=torch.float32, int8=int8) for int8 in (False, True)]
    assert isinstance(caches[1], Int8KVCache)
    x = randn(rows, 5, hidden, seed=22).float()
    steps = [(x[:, :3], torch.arange(3)), (x[:, 3:4], torch.tensor([3])), (x[:, 4:5], torch.tensor([[4], [4]]))]
    for xs, pos in steps:
        fo, qo = (layer(xs, pos, cache=c) for c in caches)
        assert_rel_close(qo, fo, tol=2e-2)
    # the layer's own K/V, in the cache, within half a scale
    _within_half_scale(caches[1].read(rows)[0], caches[0].k, caches[1].k_scale)


def test_cross_attention_with_int8_cache_quantizes_once_per_audio():
    hidden, heads, audios, group, s = 32, 4, 2, 3, 12
    layer = CrossAttention(hidden, heads)
    load_random(layer, 31)
    caches = [layer.new_cache(audios, s, dtype=torch.float32, int8=int8) for int8 in (False, True)]
    xa = randn(audios, s, hidden, seed=32).float()
    for cache in caches:
        layer.compute_kv(xa, cache)
    int8 = caches[1]
    stored = int8.k.clone(), int8.k_scale.clone()
    _within_half_scale(int8.read(audios)[0], caches[0].k, int8.k_scale)
    for step in range(3):  # every step reads the same quantized K/V; nothing is re-quantized
        x = randn(audios * group, 1, hidden, seed=33 + step).float()
        assert_rel_close(layer(x, cache=int8), layer(x, cache=caches[0]), tol=2e-2)
        assert torch.equal(int8.k, stored[0]) and torch.equal(int8.k_scale, stored[1])
    k, v = int8.read(audios, s)
    assert k.shape == (audios, heads, s, hidden // heads)
    _within_half_scale(v, caches[0].v, int8.v_scale)


def test_int8_cache_reads_in_its_dtype():
    c = Int8KVCache(1, 2, 4, 8, dtype=torch.float16)
    k, v = _kv(1, 2, 4, 8, 41)
    c.write(k.double(), v.double())
    ck, _ = c.read(1, 4)
    assert ck.dtype == torch.float16
    _within_half_scale(ck, k, c.k_scale + 1e-3 * k.abs().amax())


# ------------------------------------------------------------------------------------------------ bad input

def test_int8_cache_bad_input():
    c = Int8KVCache(2, 2, 4, 8)
    k, v = _kv(2, 2, 1, 8, 51)
    q, s = quantize_kv(k)
    with pytest.raises(ValueError, match=r"k must be floating point \(quantized on write\), got torch.int8; int8 "
                                         r"K/V without their float scales cannot be stored"):
        c.update(torch.tensor([0]), q, v)
    with pytest.raises(ValueError, match=r"v must be floating point"):
        c.write(k, quantize_kv(v)[0])
    with pytest.raises(ValueError, match=r"int8 K/V of shape \(2, 2, 1, 8\) need their float scales, got None"):
        dequantize_kv(q, None)
    with pytest.raises(ValueError, match=r"scales must be floating point, got torch.int32"):
        dequantize_kv(q, s.to(torch.int32))
    with pytest.raises(ValueError, match=r"scales of shape \(2, 2, 3, 1\) do not broadcast to \(2, 2, 1, 8\)"):
        dequantize_kv(q, torch.ones(2, 2, 3, 1))
    with pytest.raises(ValueError, match=r"q must be an int8 tensor, got torch.float32"):
        dequantize_kv(k, s)
    with pytest.raises(ValueError, match=r"do not fit cache \(2, 2, 4, 8\)"):
        c.update(torch.tensor([0]), k[..., :4], v[..., :4])
    with pytest.raises(ValueError, match=r"batch 3 exceeds the cache's max_batch 2"):
        c.update(torch.tensor([0]), *_kv(3, 2, 1, 8, 53))
    with pytest.raises(ValueError, match=r"input_pos must be int64, got torch.int32"):
        c.update(torch.tensor([0], dtype=torch.int32), k, v)
    with pytest.raises(ValueError, match=r"input_pos must have shape \[1\] or \[2, 1\], got \(2,\)"):
        c.update(torch.tensor([0, 1]), k, v)
    with pytest.raises(ValueError, match=r"5 positions exceed the cache's max_len 4"):
        c.write(*_kv(1, 2, 5, 8, 55))
    with pytest.raises(ValueError, match=r"dtype \(what reads dequantize to\) must be floating point"):
        Int8KVCache(1, 1, 1, 1, dtype=torch.int8)
    with pytest.raises(ValueError, match=r"quantize_kv: x \[..., L, head_dim\] must be floating point"):
        quantize_kv(q)
    with pytest.raises(ValueError, match=r"scale of shape \(3,\) does not broadcast"):
        quantize_kv(k, torch.ones(3))
    with pytest.raises(ValueError, match=r"a given scale must be positive"):
        quantize_kv(k, torch.zeros(2, 1, 1))
    assert not c.k.any() and not c.k_scale.any()  # nothing was written by the refused calls
