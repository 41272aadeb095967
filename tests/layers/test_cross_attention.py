"""CrossAttention: float64 parity; the compute_kv cache equals recomputing K/V each step; forget; groups; the
chosen heads' scores."""
import pytest
import torch
from parameterized import parameterized

from trtllm_ext import CrossAttention, init_random_

from ._helpers import assert_rel_close, load_random, randn, ref_cross_attention

# (batch, query len, audio len, hidden, heads, kv_hidden, bias)
SHAPES = [
    (1, 1, 1, 8, 2, None, True),
    (1, 3, 11, 12, 3, None, True),
    (3, 5, 7, 20, 5, 12, True),
    (2, 4, 9, 16, 4, 24, False),
]


@parameterized.expand([(str(i), *s) for i, s in enumerate(SHAPES)])
def test_cross_attention_matches_float64_reference(_, b, t, s, hidden, heads, kv_hidden, bias):
    ca = CrossAttention(hidden, heads, kv_hidden, bias=bias)
    kvh = kv_hidden or hidden
    assert ca.kv.weight.shape == (2 * hidden, kvh) and ca.query.weight.shape == (hidden, hidden)
    seed = b + 10 * t + 100 * s
    w = load_random(ca, seed)
    x, xa = randn(b, t, hidden, seed=seed + 1), randn(b, s, kvh, seed=seed + 2)
    out = ca(x.float(), xa.float())
    assert out.shape == (b, t, hidden)
    assert_rel_close(out, ref_cross_attention(x, xa, w, heads))


def _layer(seed, hidden=16, heads=4, kv_hidden=None):
    ca = CrossAttention(hidden, heads, kv_hidden)
    load_random(ca, seed)
    return ca


@parameterized.expand([("b1", 1, 6, 1), ("b3", 3, 10, 2), ("b2_long", 2, 15, 3)])
def test_compute_kv_cache_equals_recomputing_each_step(_, b, s, chunk):
    ca = _layer(41 + s)
    xa = randn(b, s, 16, seed=42).float()
    steps = [randn(b, chunk, 16, seed=43 + i).float() for i in range(4)]
    cache = ca.new_cache(b + 1, s + 4, dtype=torch.float32)  # a larger cache: only the first s positions are used
    ca.compute_kv(xa, cache)
    for x in steps:
        assert_rel_close(ca(x, cache=cache), ca(x, xa))


def test_reset_cache_forgets_the_audio_and_a_new_audio_gives_the_new_result():
    ca = _layer(51)
    cache = ca.new_cache(2, 12, dtype=torch.float32)
    with pytest.raises(RuntimeError, match="compute_kv"):
        ca(randn(2, 1, 16, seed=0).float(), cache=cache)  # nothing cached yet
    xa1, xa2 = randn(2, 12, 16, seed=52).float(), randn(2, 7, 16, seed=53).float()
    x = randn(2, 2, 16, seed=54).float()
    ca.compute_kv(xa1, cache)
    out1 = ca(x, cache=cache)
    cache.forget()
    with pytest.raises(RuntimeError, match="no encoder K/V cached"):
        ca(x, cache=cache)
    ca.compute_kv(xa2, cache)  # a shorter audio: the stale positions 7..11 must not be attended to
    out2 = ca(x, cache=cache)
    assert_rel_close(out2, ca(x, xa2))
    assert (out2 - out1).abs().max() > 1e-3


def test_new_audio_without_reset_replaces_the_old_one():
    ca = _layer(61)
    cache = ca.new_cache(1, 10, dtype=torch.float32)
    x = randn(1, 3, 16, seed=62).float()
    ca.compute_kv(randn(1, 10, 16, seed=63).float(), cache)
    xa = randn(1, 4, 16, seed=64).float()
    ca.compute_kv(xa, cache)
    assert_rel_close(ca(x, cache=cache), ca(x, xa))


def test_fewer_decoder_rows_than_cached_rows():
    ca = _layer(71)
    cache = ca.new_cache(3, 5, dtype=torch.float32)
    xa = randn(3, 5, 16, seed=72).float()
    ca.compute_kv(xa, cache)
    x = randn(2, 1, 16, seed=73).float()
    assert_rel_close(ca(x, cache=cache), ca(x, xa[:2]))


def test_cross_attention_kv_hidden_differs():
    ca = init_random_(CrossAttention(12, 3, 20), seed=91)
    cache = ca.new_cache(2, 4, dtype=torch.float32)
    xa = randn(2, 4, 20, seed=92).float()
    ca.compute_kv(xa, cache)
    x = randn(2, 3, 12, seed=93).float()
    w = {k: v.double() for k, v in ca.state_dict().items()}
    assert_rel_close(ca(x, cache=cache), ref_cross_attention(x, xa, w, 3))


@parameterized.expand([("g2_t1", 2, 2, 1), ("g3_t4", 3, 3, 4), ("g5_a1", 1, 5, 2)])
def test_grouped_rows_read_their_audio(_, a, g, t):
    """b = a * g decoder rows: row i reads audio i // g; == K/V repeated per row, cached and recomputed."""
    ca = _layer(201 + g, kv_hidden=12)
    xa = randn(a, 7, 12, seed=202).float()
    x = randn(a * g, t, 16, seed=203).float()
    expect = ca(x, xa.repeat_interleave(g, dim=0))
    assert_rel_close(ca(x, xa), expect)
    cache = ca.new_cache(a * g, 7, dtype=torch.float32)
    ca.compute_kv(xa, cache)
    assert cache.rows == a
    assert_rel_close(ca(x, cache=cache), expect)
    w = {k: v.double() for k, v in ca.state_dict().items()}
    assert_rel_close(ca(x, cache=cache), ref_cross_attention(x, xa.repeat_interleave(g, dim=0), w, 4))


def test_rows_not_a_multiple_of_the_audios_raise():
    ca = _layer(211)
    cache = ca.new_cache(6, 5, dtype=torch.float32)
    ca.compute_kv(randn(2, 5, 16, seed=212).float(), cache)
    with pytest.raises(ValueError, match="5 decoder rows are not a multiple of the 2 audio rows"):
        ca(randn(5, 1, 16, seed=213).float(), cache=cache)
    with pytest.raises(ValueError, match="3 decoder rows are not a multiple of the 2 audio rows"):
        ca(randn(3, 1, 16, seed=214).float(), randn(2, 5, 16, seed=215).float())


def test_score_heads_are_the_chosen_heads_logits_in_float64():
    """score_heads: q.k / sqrt(head_dim) of those heads (before the softmax), cached or not, per audio group."""
    ca = _layer(221, kv_hidden=12)
    a, g, t, s = 2, 2, 3, 5
    xa, x = randn(a, s, 12, seed=222).float(), randn(a * g, t, 16, seed=223).float()
    out, scores = ca(x, xa, score_heads=[3, 1])
    assert_rel_close(out, ca(x, xa))
    w = {k: v.double() for k, v in ca.state_dict().items()}
    q = x.double() @ w["query.weight"].T + w["query.bias"]
    k = (xa.double() @ w["kv.weight"].T + w["kv.bias"])[..., :16].repeat_interleave(g, dim=0)
    qh, kh = q.view(a * g, t, 4, 4).transpose(1, 2), k.view(a * g, s, 4, 4).transpose(1, 2)
    expect = (qh @ kh.transpose(-1, -2) / 2.0)[:, [3, 1]]
    assert scores.shape == (a * g, 2, t, s) and scores.dtype == torch.float32
    assert_rel_close(scores, expect)
    cache = ca.new_cache(a, s, dtype=torch.float32)
    ca.compute_kv(xa, cache)
    assert_rel_close(ca(x, cache=cache, score_heads=[3, 1])[1], expect)
    with pytest.raises(ValueError, match=r"score_heads \[4\] do not exist \(the layer has 4 heads\)"):
        ca(x, xa, score_heads=[4])
