"""The layers' fused arguments against float64, and the Triton backend against the torch backend.

Every layer computes through an op backend (``trtllm_ext.backend``): the fusions a model uses (a LayerNorm in a
projection's prologue, GELU and a residual add in its epilogue, the add + LayerNorm of the residual stream,
token + position embedding, the logits in float32) are checked here against float64 references on the CPU; on a
GPU, every layer on ``KernelBackend(kernels.ops, pdl=...)`` against the same layer on ``TORCH_BACKEND``, each pdl
level on fresh caches.
"""
import pytest
import torch

from trtllm_ext import MLP, TORCH_BACKEND, Attention, CrossAttention, Embedding, KernelBackend, LayerNorm, Linear

from ._helpers import assert_rel_close, load_random, randn, ref_layernorm, ref_linear, ref_mlp


def test_linear_with_layer_norm_gelu_residual_and_float32_out():
    lin, ln = Linear(12, 12), LayerNorm(12)
    w, wl = load_random(lin, 1), load_random(ln, 2)
    x, r = randn(3, 4, 12, seed=3), randn(3, 4, 12, seed=4)
    out = lin(x.float(), ln=ln, gelu=True, residual=r.float())
    h = ref_linear(ref_layernorm(x, wl["weight"], wl["bias"]), w["weight"], w["bias"])
    assert out.shape == (3, 4, 12)
    assert_rel_close(out, r + torch.nn.functional.gelu(h))
    half = Linear(12, 5, dtype=torch.float64)
    load_random(half, 5)
    assert half(x, out_dtype=torch.float32).dtype == torch.float32


def test_layer_norm_with_a_residual_adds_in_place():
    ln = LayerNorm(16)
    w = load_random(ln, 11)
    y, x = randn(2, 5, 16, seed=12).float(), randn(2, 5, 16, seed=13).float()
    stream = x.clone()
    h, out = ln(y, stream)
    assert out is stream
    torch.testing.assert_close(stream, x + y, rtol=0, atol=0)
    assert_rel_close(h, ref_layernorm((x + y).double(), w["weight"], w["bias"]))
    with pytest.raises(ValueError, match=r"residual must be a contiguous tensor of x's shape \(2, 5, 16\)"):
        ln(y, stream.transpose(0, 1).contiguous())


def test_mlp_with_layer_norm_and_residual():
    mlp, ln = MLP(8, 32), LayerNorm(8)
    w, wl = load_random(mlp, 21), load_random(ln, 22)
    x = randn(4, 8, seed=23)
    out = mlp(x.float(), ln=ln, residual=x.float())
    assert_rel_close(out, x + ref_mlp(ref_layernorm(x, wl["weight"], wl["bias"]), w))
    relu = MLP(8, 32, "relu")
    wr = load_random(relu, 24)
    assert_rel_close(relu(x.float(), residual=x.float()), x + ref_mlp(x, wr, "relu"))


def test_embedding_with_positions_and_logits_through_a_layer_norm():
    emb, ln = Embedding(50, 8), LayerNorm(8)
    w, wl = load_random(emb, 31), load_random(ln, 32)
    table = randn(10, 8, seed=33)
    ids = torch.tensor([[3, 7, 49], [0, 1, 2]])
    for pos in (torch.tensor([4, 5, 6]), torch.tensor([[1, 0, 2], [9, 8, 7]])):
        out = emb(ids, pos, table.float())
        assert out.shape == (2, 3, 8)
        assert_rel_close(out, w["weight"][ids] + table[pos.expand(2, 3)])
    x = randn(2, 3, 8, seed=34)
    logits = emb.logits(x.float(), ln=ln, out_dtype=torch.float32)
    assert logits.shape == (2, 3, 50)
    assert_rel_close(logits, ref_linear(ref_layernorm(x, wl["weight"], wl["bias"]), w["weight"]))
    with pytest.raises(ValueError, match=r"positions need ids \[batch, length\] and a position_table \[n, 8\]"):
        emb(ids[0], pos[0], table.float())


# ------------------------------------------------------------------------------------------------ GPU: Triton

@pytest.fixture(scope="module")
def kernel_ops():
    from trtllm_ext import kernels

    if not kernels.available("cuda"):
        pytest.skip("needs CUDA and triton")
    from trtllm_ext.kernels import ops

    return ops


def _rel(a, b):
    assert torch.isfinite(a).all()
    return float((a.float() - b.float()).norm() / b.float().norm())


@pytest.mark.gpu
@pytest.mark.parametrize("pdl", [0, 1, 2])
def test_every_layer_on_the_triton_backend_equals_the_torch_backend(kernel_ops, pdl):
    """A decoder block's layers, fp16, one prompt step then two single-token steps: Triton == torch within fp16
    rounding, with the K/V each backend wrote into its own (fresh) caches equal too."""
    dev, dt, d, heads, b, s = "cuda", torch.float16, 64, 4, 2, 24
    kw = dict(dtype=dt, device=dev)
    emb, ln = Embedding(100, d, **kw), LayerNorm(d, **kw)
    attn, cross, mlp = Attention(d, heads, causal=True, **kw), CrossAttention(d, heads, **kw), MLP(d, 4 * d, **kw)
    for i, layer in enumerate((emb, ln, attn, cross, mlp)):
        load_random(layer, 40 + i)
    table = randn(16, d, seed=50).to(dev, dt)
    xa = randn(b, s, d, seed=51).to(dev, dt)
    ids = torch.randint(0, 100, (b, 6), generator=torch.Generator().manual_seed(52)).to(dev)
    results = []
    for backend in (TORCH_BACKEND, KernelBackend(kernel_ops, pdl=pdl)):
        caches = attn.new_cache(b, 8, dtype=dt, device=dev), cross.new_cache(b, s, dtype=dt, device=dev)
        cross.compute_kv(xa, caches[1], backend=backend)
        outs = []
        for cols in ((0, 4), (4, 5), (5, 6)):
            pos = torch.arange(*cols, device=dev)
            x = emb(ids[:, cols[0]:cols[1]], pos, table, backend=backend)
            x = attn(x, pos, cache=caches[0], ln=ln, residual=x, backend=backend)
            x = cross(x, cache=caches[1], ln=ln, residual=x, backend=backend)
            x = mlp(x, ln=ln, residual=x, backend=backend)
            outs.append(emb.logits(x, ln=ln, out_dtype=torch.float32, backend=backend))
        results.append((torch.cat(outs, dim=1), caches[0].k[:, :, :6].clone()))
    (ref, k_ref), (got, k_got) = results
    assert _rel(got, ref) < 5e-3, f"pdl={pdl}"
    assert _rel(k_got, k_ref) < 2e-3, f"pdl={pdl}"
