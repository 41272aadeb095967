"""The loading contract in general: load_state_dict / load_weights copy, cast, and leave no alias behind."""
import numpy as np
import pytest
import torch

from trtllm_ext import MLP, Attention, Conv1d, CrossAttention, Embedding, LayerNorm, Linear, RowLinear, init_random_

from ._helpers import random_weights

FACTORIES = {
    "conv": (lambda: Conv1d(4, 6, 3, padding=1), lambda: torch.randn(2, 4, 7)),
    "linear": (lambda: Linear(5, 3), lambda: torch.randn(2, 5)),
    "row": (lambda: RowLinear(5, 3), lambda: torch.randn(2, 5)),
    "layernorm": (lambda: LayerNorm(6), lambda: torch.randn(2, 6)),
    "mlp": (lambda: MLP(4, 12), lambda: torch.randn(2, 3, 4)),
    "embedding": (lambda: Embedding(9, 4), lambda: torch.tensor([[1, 8, 0]])),
    "attention": (lambda: Attention(8, 2, causal=True), lambda: torch.randn(2, 3, 8)),
    "cross": (lambda: CrossAttention(8, 2, 6), lambda: (torch.randn(2, 3, 8), torch.randn(2, 5, 6))),
}


def _run(layer, x):
    return layer(*x) if isinstance(x, tuple) else layer(x)


@pytest.mark.parametrize("name", list(FACTORIES))
def test_load_state_dict_copies(name):
    make, inp = FACTORIES[name]
    torch.manual_seed(0)
    x = inp()
    src = {k: v.float() for k, v in random_weights(make(), 7).items()}
    a, b = make(), make()
    a.load_state_dict(src)
    b.load_weights(src)
    expected = _run(b, x)
    assert torch.equal(_run(a, x), expected)
    for v in src.values():  # mutate the source afterwards: no effect on the layer
        v.fill_(float("nan"))
    assert torch.equal(_run(a, x), expected)
    assert torch.equal(_run(b, x), expected)
    for k, p in a.state_dict().items():
        assert not torch.isnan(p).any(), k


@pytest.mark.parametrize("name", list(FACTORIES))
def test_load_weights_from_numpy_then_overwrite(name):
    make, inp = FACTORIES[name]
    torch.manual_seed(1)
    x = inp()
    w = random_weights(make(), 8)
    ref = make()
    ref.load_weights(w)
    expected = _run(ref, x)
    arrays = {k: v.numpy().copy() for k, v in w.items()}
    layer = make()
    layer.load_weights(arrays)
    for a in arrays.values():
        a[...] = np.nan
    assert torch.equal(_run(layer, x), expected)


@pytest.mark.parametrize("name", list(FACTORIES))
def test_unloaded_layers_are_nan_and_init_random_fills_them(name):
    make, inp = FACTORIES[name]
    layer = make()
    assert all(torch.isnan(p).all() for p in layer.parameters())
    if name != "embedding":  # a lookup of NaN rows is NaN too, but only ids that are read
        assert torch.isnan(_run(layer, inp())).all()
    init_random_(layer, seed=3)
    assert all(torch.isfinite(p).all() for p in layer.parameters())
    assert torch.isfinite(_run(layer, inp())).all()


def test_init_random_is_deterministic_per_seed():
    a, b, c = (init_random_(Attention(8, 2), seed=s) for s in (5, 5, 6))
    for k in a.state_dict():
        assert torch.equal(a.state_dict()[k], b.state_dict()[k])
        assert not torch.equal(a.state_dict()[k], c.state_dict()[k])


def test_load_weights_casts_to_the_declared_dtype():
    lin = Linear(3, 2, dtype=torch.float16)
    w = torch.tensor([[1.0 + 2 ** -12, 2.0, 3.0], [4.0, 5.0, 6.0]], dtype=torch.float64)
    lin.load_weights({"weight": w, "bias": np.array([0.5, -0.5], dtype=np.float32)})
    assert lin.weight.dtype == lin.bias.dtype == torch.float16
    assert torch.equal(lin.weight, w.half())  # rounded once, from float64
    lin32 = Linear(3, 2)
    lin32.load_weights({"weight": w.half(), "bias": torch.zeros(2, dtype=torch.bfloat16)})
    assert lin32.weight.dtype == torch.float32 and torch.equal(lin32.weight, w.half().float())


def test_load_weights_non_strict_leaves_the_rest():
    attn = init_random_(Attention(8, 2), seed=9)
    before = {k: v.clone() for k, v in attn.state_dict().items()}
    new = torch.randn(8, 8, dtype=torch.float64)
    attn.load_weights({"dense.weight": new}, strict=False)
    assert torch.equal(attn.dense.weight, new.float())
    for k in ("qkv.weight", "qkv.bias", "dense.bias"):
        assert torch.equal(attn.state_dict()[k], before[k])


def test_caches_are_not_weights():
    attn, ca = init_random_(Attention(8, 2)), init_random_(CrossAttention(8, 2))
    keys = (set(attn.state_dict()), set(ca.state_dict()))
    caches = attn.new_cache(2, 4, dtype=torch.float32), ca.new_cache(2, 4, dtype=torch.float32)
    ca.compute_kv(torch.zeros(2, 4, 8), caches[1])
    assert all(len(c.state_dict()) == 0 for c in caches)
    assert (set(attn.state_dict()), set(ca.state_dict())) == keys
    attn.load_weights(random_weights(Attention(8, 2), 1))  # no cache names demanded
    attn.load_state_dict({k: v.float() for k, v in random_weights(Attention(8, 2), 2).items()})


def test_parameters_are_inference_only():
    layer = init_random_(MLP(4, 8))
    assert not any(p.requires_grad for p in layer.parameters())
