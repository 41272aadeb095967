"""Parity with openai-whisper's MultiHeadAttention and ResidualAttentionBlock given the same weights.

openai's separate query/key/value/out map into our fused ``qkv`` ([q; k; v] rows, key bias zeros) and
``dense``; for cross attention into ``query``, fused ``kv`` ([k; v], key bias zeros) and ``dense``. The
residual block is composed here from trtllm_ext layers only (tests/layers do not depend on whisper_model):
attn_ln, attn, cross_attn_ln, cross_attn, mlp_ln, mlp (mlp.0 -> mlp.fc, mlp.2 -> mlp.proj).
openai's reference runs through both its SDPA path and its explicit softmax(QK^T + mask) path.
"""
import contextlib

import torch
from parameterized import parameterized

import trtllm_ext as t

from _requires import openai_whisper

from ._helpers import assert_rel_close, gen, randn

whisper_model = openai_whisper("whisper.model")
MultiHeadAttention = whisper_model.MultiHeadAttention
ResidualAttentionBlock = whisper_model.ResidualAttentionBlock


@contextlib.contextmanager
def openai_sdpa(flag: bool):
    old = MultiHeadAttention.use_sdpa
    MultiHeadAttention.use_sdpa = flag
    try:
        yield
    finally:
        MultiHeadAttention.use_sdpa = old


def _randomize_(module: torch.nn.Module, seed: int) -> None:
    """Fresh random non-symmetric weights for an openai module (its own init leaves LayerNorms at 1/0)."""
    g = gen(seed)
    with torch.no_grad():
        for name, p in module.named_parameters():
            if p.dim() >= 2:
                p.copy_(torch.randn(p.shape, generator=g) / p.shape[1] ** 0.5)
            elif "_ln." in name and name.endswith("weight"):
                p.copy_(1 + 0.1 * torch.randn(p.shape, generator=g))
            else:
                p.copy_(0.1 * torch.randn(p.shape, generator=g))


def map_self_attention(sd: dict, src: str = "", dst: str = "") -> dict:
    """openai ``{src}query/key/value/out`` -> our ``{dst}qkv`` ([q; k; v], key bias zeros) and ``{dst}dense``."""
    q, k, v, o = (sd[f"{src}{n}.weight"] for n in ("query", "key", "value", "out"))
    qb, vb = sd[f"{src}query.bias"], sd[f"{src}value.bias"]
    return {f"{dst}qkv.weight": torch.cat([q, k, v]), f"{dst}qkv.bias": torch.cat([qb, torch.zeros_like(qb), vb]),
            f"{dst}dense.weight": o, f"{dst}dense.bias": sd[f"{src}out.bias"]}


def map_cross_attention(sd: dict, src: str = "", dst: str = "") -> dict:
    """openai ``{src}query/key/value/out`` -> our ``{dst}query``, ``{dst}kv`` ([k; v]) and ``{dst}dense``."""
    k, v = sd[f"{src}key.weight"], sd[f"{src}value.weight"]
    vb = sd[f"{src}value.bias"]
    return {f"{dst}query.weight": sd[f"{src}query.weight"], f"{dst}query.bias": sd[f"{src}query.bias"],
            f"{dst}kv.weight": torch.cat([k, v]), f"{dst}kv.bias": torch.cat([torch.zeros_like(vb), vb]),
            f"{dst}dense.weight": sd[f"{src}out.weight"], f"{dst}dense.bias": sd[f"{src}out.bias"]}


def map_block(sd: dict, cross: bool) -> dict:
    out = {**map_self_attention(sd, "attn.", "attn."),
           "mlp.fc.weight": sd["mlp.0.weight"], "mlp.fc.bias": sd["mlp.0.bias"],
           "mlp.proj.weight": sd["mlp.2.weight"], "mlp.proj.bias": sd["mlp.2.bias"]}
    lns = ["attn_ln", "mlp_ln"] + (["cross_attn_ln"] if cross else [])
    out.update({f"{ln}.{p}": sd[f"{ln}.{p}"] for ln in lns for p in ("weight", "bias")})
    if cross:
        out.update(map_cross_attention(sd, "cross_attn.", "cross_attn."))
    return out


class Block(t.Module):
    """Whisper's pre-LN residual block, composed from trtllm_ext layers as whisper_model composes it: each
    LayerNorm in its projection's prologue (``ln=``), each residual add in its epilogue (``residual=``)."""

    def __init__(self, n_state: int, n_head: int, cross_attention: bool = False, causal: bool = False):
        super().__init__()
        self.attn = t.Attention(n_state, n_head, causal=causal)
        self.attn_ln = t.LayerNorm(n_state)
        self.cross_attn = t.CrossAttention(n_state, n_head) if cross_attention else None
        self.cross_attn_ln = t.LayerNorm(n_state) if cross_attention else None
        self.mlp = t.MLP(n_state, 4 * n_state)
        self.mlp_ln = t.LayerNorm(n_state)

    def forward(self, x, xa=None, input_pos=None, caches=(None, None)):
        x = self.attn(x, input_pos, cache=caches[0], ln=self.attn_ln, residual=x)
        if self.cross_attn is not None:
            x = self.cross_attn(x, xa, cache=caches[1], ln=self.cross_attn_ln, residual=x)
        return self.mlp(x, ln=self.mlp_ln, residual=x)


def _mask(n: int) -> torch.Tensor:
    """openai's decoder mask (it slices [:n_ctx, :n_ctx])."""
    return torch.empty(n, n).fill_(float("-inf")).triu_(1)


SHAPES = [("b1_n1", 1, 1, 8, 2), ("b2_odd", 2, 7, 12, 3), ("b3", 3, 5, 16, 4)]
PATHS = [("sdpa", True), ("manual", False)]
CASES = [(f"{s[0]}_{p[0]}", *s[1:], p[1]) for s in SHAPES for p in PATHS]


@parameterized.expand(CASES)
def test_self_attention_matches_openai(_, b, n, n_state, n_head, sdpa):
    ref = MultiHeadAttention(n_state, n_head)
    _randomize_(ref, n * 31 + n_state)
    assert ref.key.bias is None
    x = randn(b, n, n_state, seed=n).float()
    for causal, mask in ((False, None), (True, _mask(n + 2))):
        ours = t.Attention(n_state, n_head, causal=causal)
        ours.load_weights(map_self_attention(ref.state_dict()))
        with torch.no_grad(), openai_sdpa(sdpa):
            expected = ref(x, mask=mask)[0]
        assert_rel_close(ours(x), expected)


@parameterized.expand(CASES)
def test_cross_attention_matches_openai(_, b, n, n_state, n_head, sdpa):
    ref = MultiHeadAttention(n_state, n_head)
    _randomize_(ref, n * 37 + n_state)
    ours = t.CrossAttention(n_state, n_head)
    ours.load_weights(map_cross_attention(ref.state_dict()))
    x, xa = randn(b, n, n_state, seed=n).float(), randn(b, 2 * n + 3, n_state, seed=n + 1).float()
    with torch.no_grad(), openai_sdpa(sdpa):
        expected = ref(x, xa)[0]
    assert_rel_close(ours(x, xa), expected)
    cache = ours.new_cache(b, 2 * n + 3, dtype=torch.float32)
    ours.compute_kv(xa, cache)
    assert_rel_close(ours(x, cache=cache), expected)


@parameterized.expand(CASES)
def test_encoder_block_matches_openai(_, b, n, n_state, n_head, sdpa):
    ref = ResidualAttentionBlock(n_state, n_head)
    _randomize_(ref, n * 41 + n_state)
    ours = Block(n_state, n_head)
    ours.load_weights(map_block(ref.state_dict(), cross=False))
    x = randn(b, n, n_state, seed=n + 2).float()
    with torch.no_grad(), openai_sdpa(sdpa):
        expected = ref(x)
    assert_rel_close(ours(x), expected)


@parameterized.expand(CASES)
def test_decoder_block_matches_openai(_, b, n, n_state, n_head, sdpa):
    ref = ResidualAttentionBlock(n_state, n_head, cross_attention=True)
    _randomize_(ref, n * 43 + n_state)
    ours = Block(n_state, n_head, cross_attention=True, causal=True)
    ours.load_weights(map_block(ref.state_dict(), cross=True))
    x, xa = randn(b, n, n_state, seed=n + 3).float(), randn(b, 9, n_state, seed=n + 4).float()
    with torch.no_grad(), openai_sdpa(sdpa):
        expected = ref(x, xa, mask=_mask(n + 1))
    assert_rel_close(ours(x, xa), expected)
    # the same block decoding with both caches (a prefix, then single tokens) gives the same rows
    caches = ours.attn.new_cache(b, n, dtype=torch.float32), ours.cross_attn.new_cache(b, 9, dtype=torch.float32)
    ours.cross_attn.compute_kv(xa, caches[1])
    p0 = max(1, n // 2)
    steps = [ours(x[:, :p0], input_pos=torch.arange(p0), caches=caches)]
    steps += [ours(x[:, i:i + 1], input_pos=torch.tensor([i]), caches=caches) for i in range(p0, n)]
    assert_rel_close(torch.cat(steps, dim=1), expected)
