"""Self-attention: float64 parity (non-causal, causal) and cached incremental decoding == full causal."""
import torch
from parameterized import parameterized

from trtllm_ext import Attention, causal_mask, init_random_

from ._helpers import assert_rel_close, load_random, randn, random_weights, ref_attention

# (batch, seq, hidden, heads, bias)
SHAPES = [
    (1, 1, 8, 2, True),
    (1, 7, 12, 3, True),
    (3, 5, 20, 5, True),
    (2, 9, 16, 1, False),
    (2, 4, 24, 6, True),
]


@parameterized.expand([(f"{'causal' if c else 'full'}_{i}", c, *s) for c in (False, True)
                       for i, s in enumerate(SHAPES)])
def test_attention_matches_float64_reference(_, causal, b, t, hidden, heads, bias):
    attn = Attention(hidden, heads, bias=bias, causal=causal)
    assert set(attn.state_dict()) == ({"qkv.weight", "qkv.bias", "dense.weight", "dense.bias"} if bias
                                      else {"qkv.weight", "dense.weight"})
    assert attn.qkv.weight.shape == (3 * hidden, hidden)
    seed = b * 100 + t * 10 + hidden
    w = load_random(attn, seed)
    x = randn(b, t, hidden, seed=seed + 1)
    out = attn(x.float())
    assert out.shape == (b, t, hidden)
    assert_rel_close(out, ref_attention(x, w, heads, causal))


def test_causal_differs_from_full():
    full, causal = Attention(8, 2), Attention(8, 2, causal=True)
    w = random_weights(full, 3)
    full.load_weights(w)
    causal.load_weights(w)
    x = randn(1, 4, 8, seed=4).float()
    a, c = full(x), causal(x)
    assert (a - c).abs().max() > 1e-3
    torch.testing.assert_close(a[:, -1], c[:, -1])  # the last query sees every key in both


def test_causal_mask_values():
    m = causal_mask(torch.tensor([2, 3]), 5)
    assert m.dtype == torch.bool
    assert m.tolist() == [[True, True, True, False, False], [True, True, True, True, False]]


def _decode(attn, x, chunks):
    """Feed ``x [b, T, hidden]`` in ``chunks`` (lengths) through the cache; concatenated outputs."""
    outs, p = [], 0
    for n in chunks:
        pos = torch.arange(p, p + n)
        outs.append(attn(x[:, p:p + n], input_pos=pos))
        p += n
    return torch.cat(outs, dim=1)


@parameterized.expand([
    ("token_by_token_b1", 1, 6, [1] * 6),
    ("token_by_token_b3", 3, 7, [1] * 7),
    ("prefix_then_tokens", 2, 9, [4, 1, 1, 1, 1, 1]),
    ("prefix_only", 2, 5, [5]),
    ("mixed_chunks", 2, 10, [3, 1, 2, 1, 3]),
])
def test_cached_decoding_equals_full_causal(_, b, T, chunks):
    hidden, heads = 20, 4
    attn = Attention(hidden, heads, causal=True)
    w = load_random(attn, T * 7 + b)
    x = randn(b, T, hidden, seed=T).float()
    full = attn(x)
    attn.setup_cache(max_batch=b + 1, max_len=T + 3)  # larger than needed: unwritten slots are masked
    assert attn.kv_cache.k.shape == (b + 1, heads, T + 3, hidden // heads)
    inc = _decode(attn, x, chunks)
    assert_rel_close(inc, full)
    assert_rel_close(inc, ref_attention(x, w, heads, causal=True))


def test_cached_decoding_with_explicit_mask():
    attn = init_random_(Attention(8, 2, causal=True), seed=5)
    x = randn(2, 4, 8, seed=6).float()
    full = attn(x)
    attn.setup_cache(2, 6)
    pos = torch.arange(4)
    out = attn(x, input_pos=pos, mask=causal_mask(pos, 6))
    assert_rel_close(out, full)


def test_cached_decoding_after_reorder_continues_the_reordered_rows():
    """Beam search: reorder the self-attention cache, then decode on: == full causal over reordered histories."""
    hidden, heads, b, T0, T1 = 12, 3, 3, 4, 3
    attn = Attention(hidden, heads, causal=True)
    load_random(attn, 17)
    hist = randn(b, T0, hidden, seed=18).float()
    new = randn(b, T1, hidden, seed=19).float()
    attn.setup_cache(b, T0 + T1)
    _decode(attn, hist, [T0])
    index = torch.tensor([2, 2, 0])
    attn.kv_cache.reorder(index)
    outs = [attn(new[:, i:i + 1], input_pos=torch.tensor([T0 + i])) for i in range(T1)]
    full = attn(torch.cat([hist[index], new], dim=1))
    assert_rel_close(torch.cat(outs, dim=1), full[:, T0:])


def test_reset_cache_then_a_new_sequence():
    attn = init_random_(Attention(8, 2, causal=True), seed=21)
    attn.setup_cache(2, 5)
    a, b = randn(2, 5, 8, seed=22).float(), randn(2, 3, 8, seed=23).float()
    _decode(attn, a, [5])
    attn.reset_cache()
    assert not attn.kv_cache.k.any() and not attn.kv_cache.v.any()
    assert_rel_close(_decode(attn, b, [1, 1, 1]), attn(b))


def test_cache_with_fewer_rows_than_max_batch():
    attn = init_random_(Attention(8, 2, causal=True), seed=31)
    attn.setup_cache(4, 6)
    x = randn(2, 6, 8, seed=32).float()
    assert_rel_close(_decode(attn, x, [2, 1, 1, 1, 1]), attn(x))
