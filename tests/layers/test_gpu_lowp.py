"""fp16 / bf16 on CUDA against float64 references (computed on CPU from the exact low-precision weights and
inputs the layer holds). Relative error ||out - ref|| / ||ref|| <= ~1e-3 (fp16) / ~1e-2 (bf16); layers with
several rounded intermediates (MLP, attention) get twice that. Skipped without CUDA (see tests/conftest.py).

The checks take the device as an argument so they can also be exercised on CPU while developing.
"""
import pytest
import torch
import torch.nn.functional as F

from trtllm_ext import MLP, Attention, ColumnLinear, Conv1d, CrossAttention, Embedding, LayerNorm, Linear, RowLinear

from ._helpers import (
    LOWP_TOL,
    assert_rel_close,
    load_random,
    randn,
    ref_attention,
    ref_cross_attention,
    ref_layernorm,
    ref_linear,
    ref_mlp,
)

pytestmark = pytest.mark.gpu

DTYPES = pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=["fp16", "bf16"])


def _input(*shape, seed, dtype, device, scale=1.0):
    x = randn(*shape, seed=seed, scale=scale).to(dtype)
    return x.to(device), x.double()  # the layer's input, and the same values in float64 for the reference


def check_conv1d(device, dtype):
    for seed, (b, cin, cout, k, s, p, d, g, n) in enumerate([(2, 80, 64, 3, 1, 1, 1, 1, 61),
                                                            (1, 64, 64, 3, 2, 1, 1, 1, 61),
                                                            (3, 12, 18, 5, 1, 4, 2, 3, 17)]):
        conv = Conv1d(cin, cout, k, s, p, d, g, dtype=dtype, device=device)
        w = load_random(conv, seed)
        x, x64 = _input(b, cin, n, seed=seed + 50, dtype=dtype, device=device)
        out = conv(x)
        assert out.dtype == dtype and out.device.type == torch.device(device).type
        assert_rel_close(out, F.conv1d(x64, w["weight"], w["bias"], s, p, d, g), LOWP_TOL[dtype])


def check_linear_family(device, dtype):
    for seed, (cls, lead, fin, fout) in enumerate([(Linear, (3, 7), 64, 96), (ColumnLinear, (1, 1), 33, 17),
                                                   (RowLinear, (2, 5), 128, 64), (Linear, (4,), 7, 5)]):
        layer = cls(fin, fout, dtype=dtype, device=device)
        w = load_random(layer, seed)
        x, x64 = _input(*lead, fin, seed=seed + 60, dtype=dtype, device=device)
        assert_rel_close(layer(x), ref_linear(x64, w["weight"], w["bias"]), LOWP_TOL[dtype])


def check_layernorm(device, dtype):
    n = 384
    ln = LayerNorm(n, dtype=dtype, device=device)
    w = load_random(ln, 70)
    x, x64 = _input(2, 9, n, seed=71, dtype=dtype, device=device, scale=4.0)
    out = ln(x)
    assert out.dtype == dtype
    # computed in fp32 and rounded once
    assert torch.equal(out, F.layer_norm(x.float(), (n,), ln.weight.float(), ln.bias.float(), ln.eps).to(dtype))
    assert_rel_close(out, ref_layernorm(x64, w["weight"], w["bias"]), LOWP_TOL[dtype])
    big, big64 = _input(2, n, seed=72, dtype=dtype, device=device, scale=1000.0)  # squares overflow fp16
    assert_rel_close(ln(big), ref_layernorm(big64, w["weight"], w["bias"]), LOWP_TOL[dtype])


def check_mlp(device, dtype):
    mlp = MLP(64, 256, dtype=dtype, device=device)
    w = load_random(mlp, 80)
    x, x64 = _input(2, 7, 64, seed=81, dtype=dtype, device=device)
    assert_rel_close(mlp(x), ref_mlp(x64, w), 2 * LOWP_TOL[dtype])


def check_embedding(device, dtype):
    emb = Embedding(1000, 64, dtype=dtype, device=device)
    w = load_random(emb, 90)
    ids = torch.randint(0, 1000, (3, 5), generator=torch.Generator().manual_seed(91))
    assert torch.equal(emb(ids.to(device)).cpu(), w["weight"].to(dtype)[ids])
    x, x64 = _input(3, 5, 64, seed=92, dtype=dtype, device=device)
    assert_rel_close(emb.logits(x), ref_linear(x64, w["weight"]), LOWP_TOL[dtype])


def check_attention(device, dtype):
    tol = 2 * LOWP_TOL[dtype]
    for causal in (False, True):
        attn = Attention(64, 4, causal=causal, dtype=dtype, device=device)
        w = load_random(attn, 100 + causal)
        x, x64 = _input(2, 11, 64, seed=102, dtype=dtype, device=device)
        full = attn(x)
        assert full.dtype == dtype
        assert_rel_close(full, ref_attention(x64, w, 4, causal), tol)
    cache = attn.new_cache(2, 16, dtype=dtype, device=device)  # causal: a prefix, then token by token
    steps = [attn(x[:, :4], torch.arange(4, device=device), cache=cache)]
    steps += [attn(x[:, i:i + 1], torch.tensor([i], device=device), cache=cache) for i in range(4, 11)]
    assert_rel_close(torch.cat(steps, dim=1), ref_attention(x64, w, 4, True), tol)


def check_cross_attention(device, dtype):
    tol = 2 * LOWP_TOL[dtype]
    ca = CrossAttention(64, 4, 48, dtype=dtype, device=device)
    w = load_random(ca, 110)
    x, x64 = _input(2, 3, 64, seed=111, dtype=dtype, device=device)
    xa, xa64 = _input(2, 30, 48, seed=112, dtype=dtype, device=device)
    ref = ref_cross_attention(x64, xa64, w, 4)
    assert_rel_close(ca(x, xa), ref, tol)
    cache = ca.new_cache(2, 32, dtype=dtype, device=device)
    ca.compute_kv(xa, cache)
    assert_rel_close(ca(x, cache=cache), ref, tol)


@DTYPES
def test_conv1d_lowp_cuda(dtype):
    check_conv1d("cuda", dtype)


@DTYPES
def test_linear_family_lowp_cuda(dtype):
    check_linear_family("cuda", dtype)


@DTYPES
def test_layernorm_lowp_cuda(dtype):
    check_layernorm("cuda", dtype)


@DTYPES
def test_mlp_lowp_cuda(dtype):
    check_mlp("cuda", dtype)


@DTYPES
def test_embedding_lowp_cuda(dtype):
    check_embedding("cuda", dtype)


@DTYPES
def test_attention_lowp_cuda(dtype):
    check_attention("cuda", dtype)


@DTYPES
def test_cross_attention_lowp_cuda(dtype):
    check_cross_attention("cuda", dtype)
