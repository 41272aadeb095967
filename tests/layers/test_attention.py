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


def _cache(attn, rows, length):
    return attn.new_cache(rows, length, dtype=torch.float32)


def _decode(attn, cache, x, chunks):
    """Feed ``x [b, T, hidden]`` in ``chunks`` (lengths) through ``cache``; concatenated outputs."""
    outs, p = [], 0
    for n in chunks:
        pos = torch.arange(p, p + n)
        outs.append(attn(x[:, p:p + n], pos, cache=cache))
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
    cache = _cache(attn, b + 1, T + 3)  # larger than needed: unwritten slots are masked
    assert cache.k.shape == (b + 1, heads, T + 3, hidden // heads)
    inc = _decode(attn, cache, x, chunks)
    assert_rel_close(inc, full)
    assert_rel_close(inc, ref_attention(x, w, heads, causal=True))


def test_cached_decoding_after_reorder_continues_the_reordered_rows():
    """Beam search: reorder the self-attention cache, then decode on: == full causal over reordered histories."""
    hidden, heads, b, T0, T1 = 12, 3, 3, 4, 3
    attn = Attention(hidden, heads, causal=True)
    load_random(attn, 17)
    hist = randn(b, T0, hidden, seed=18).float()
    new = randn(b, T1, hidden, seed=19).float()
    cache = _cache(attn, b, T0 + T1)
    _decode(attn, cache, hist, [T0])
    index = torch.tensor([2, 2, 0])
    cache.reorder(index)
    outs = [attn(new[:, i:i + 1], torch.tensor([T0 + i]), cache=cache) for i in range(T1)]
    full = attn(torch.cat([hist[index], new], dim=1))
    assert_rel_close(torch.cat(outs, dim=1), full[:, T0:])


def test_reset_cache_then_a_new_sequence():
    attn = init_random_(Attention(8, 2, causal=True), seed=21)
    cache = _cache(attn, 2, 5)
    a, b = randn(2, 5, 8, seed=22).float(), randn(2, 3, 8, seed=23).float()
    _decode(attn, cache, a, [5])
    cache.reset()
    assert not cache.k.any() and not cache.v.any()
    assert_rel_close(_decode(attn, cache, b, [1, 1, 1]), attn(b))


def test_cache_with_fewer_rows_than_max_batch():
    attn = init_random_(Attention(8, 2, causal=True), seed=31)
    x = randn(2, 6, 8, seed=32).float()
    assert_rel_close(_decode(attn, _cache(attn, 4, 6), x, [2, 1, 1, 1, 1]), attn(x))


# ---------------------------------------------------------------------------------------------------------------
# per-row positions: input_pos [b, t]
def test_causal_mask_per_row_values():
    m = causal_mask(torch.tensor([[2, 0], [1, 3]]), 4)
    assert m.shape == (2, 1, 2, 4) and m.dtype == torch.bool
    assert m[:, 0].tolist() == [[[True, True, True, False], [True, False, False, False]],
                                [[True, True, False, False], [True, True, True, True]]]


def _row_permutations(b, t, seed):
    g = torch.Generator().manual_seed(seed)
    return torch.stack([torch.randperm(t, generator=g) for _ in range(b)])


def test_per_row_positions_equal_each_row_alone_and_the_float64_reference():
    """Each row's t tokens at its own permutation of 0..t-1, in one call: == that row alone with 1-D positions,
    and == causal attention over the row's tokens sorted by position (float64)."""
    hidden, heads, b, t = 20, 4, 3, 6
    attn = Attention(hidden, heads, causal=True)
    w = load_random(attn, 101)
    x = randn(b, t, hidden, seed=102)
    pos = _row_permutations(b, t, 103)
    out = attn(x.float(), pos, cache=_cache(attn, b, t + 2))
    for i in range(b):
        alone = Attention(hidden, heads, causal=True)
        alone.load_weights(w)
        assert_rel_close(out[i:i + 1], alone(x[i:i + 1].float(), pos[i], cache=_cache(alone, 1, t + 2)))
        order = pos[i].argsort()  # column holding position 0, 1, ...
        ref = ref_attention(x[i:i + 1, order], w, heads, causal=True)
        assert_rel_close(out[i:i + 1], ref[:, pos[i]])


def test_right_aligned_rows_then_steps_equal_each_row_alone():
    """Rows with n_i = 2, 5, 3 real tokens in a call of 5 columns: pads first, at positions n_i..4 (beyond the
    row's tokens), then single steps at each row's next positions overwrite the pads' cache slots."""
    hidden, heads, t, steps = 16, 2, 5, 3
    lengths = [2, 5, 3]
    b = len(lengths)
    attn = Attention(hidden, heads, causal=True)
    w = load_random(attn, 111)
    x = randn(b, t + steps, hidden, seed=112).float()
    pads = torch.tensor([t - n for n in lengths])[:, None]
    cols = torch.arange(t + steps)[None, :] - pads
    pos = torch.where(cols < 0, cols + t, cols)  # pad columns at n_i .. t-1
    cache = _cache(attn, b, t + steps)
    outs = [attn(x[:, :t], pos[:, :t], cache=cache)]
    outs += [attn(x[:, c:c + 1], pos[:, c:c + 1], cache=cache) for c in range(t, t + steps)]
    out = torch.cat(outs, dim=1)
    for i, n in enumerate(lengths):
        alone = Attention(hidden, heads, causal=True)
        alone.load_weights(w)
        real = x[i:i + 1, t - n:]  # the row's real tokens, then its steps
        expect = _decode(alone, _cache(alone, 1, t + steps), real, [n] + [1] * steps)
        assert_rel_close(out[i:i + 1, t - n:], expect)
        assert_rel_close(out[i:i + 1, t - n:], ref_attention(real.double(), w, heads, causal=True))


def test_permuted_columns_give_the_same_result():
    hidden, heads, b, t = 12, 3, 2, 5
    attn = init_random_(Attention(hidden, heads, causal=True), seed=121)
    x = randn(b, t, hidden, seed=122).float()
    pos = torch.arange(t).repeat(b, 1)
    cache = _cache(attn, b, t)
    ordered = attn(x, pos, cache=cache)
    perm = _row_permutations(b, t, 123)
    rows = torch.arange(b)[:, None]
    cache.reset()
    shuffled = attn(x[rows, perm], pos[rows, perm], cache=cache)
    assert_rel_close(shuffled, ordered[rows, perm])
    assert_rel_close(ordered, attn(x))  # per-row positions 0..t-1 == full causal attention


def test_fused_layer_norm_and_residual_equal_the_unfused_layers():
    """``ln=`` (a LayerNorm in the qkv projection's prologue) and ``residual=`` (added in dense's epilogue) == the
    LayerNorm layer, then the attention, then the add."""
    from trtllm_ext import LayerNorm

    attn = init_random_(Attention(12, 3, causal=True), seed=141)
    ln = init_random_(LayerNorm(12), seed=142)
    x = randn(2, 5, 12, seed=143).float()
    pos = torch.arange(5)
    fused = attn(x, pos, cache=_cache(attn, 2, 5), ln=ln, residual=x)
    torch.testing.assert_close(fused, x + attn(ln(x), pos, cache=_cache(attn, 2, 5)), rtol=0, atol=0)
    torch.testing.assert_close(attn(x, ln=ln, residual=x), x + attn(ln(x)), rtol=0, atol=0)
