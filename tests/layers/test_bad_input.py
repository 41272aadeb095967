"""Bad input is refused with a ValueError that says what is wrong; a refused load changes nothing."""
import re

import numpy as np
import pytest
import torch

from trtllm_ext import (
    MLP,
    Attention,
    ColumnLinear,
    Conv1d,
    CrossAttention,
    Embedding,
    KVCache,
    LayerNorm,
    Linear,
    RowLinear,
    init_random_,
    tp_shard,
)

from ._helpers import random_weights


def _snapshot(layer):
    return {k: v.detach().clone() for k, v in layer.state_dict().items()}


def _assert_unchanged(layer, before):
    after = layer.state_dict()
    assert after.keys() == before.keys()
    for k in before:
        assert torch.equal(after[k], before[k]), f"{k} changed by a refused load"


# ---------------------------------------------------------------------------------------------- load_weights

def test_shape_mismatch_names_the_parameter_and_both_shapes():
    lin = Linear(3, 4)
    with pytest.raises(ValueError, match=re.escape("weight 'weight' has shape (3, 4), expected (4, 3)")):
        lin.load_weights({"weight": torch.zeros(3, 4), "bias": torch.zeros(4)})
    with pytest.raises(ValueError, match=re.escape("'bias' has shape (3,), expected (4,)")):
        lin.load_weights({"weight": torch.zeros(4, 3), "bias": torch.zeros(3)})
    attn = Attention(8, 2)
    with pytest.raises(ValueError, match=re.escape("'qkv.weight' has shape (8, 8), expected (24, 8)")):
        attn.load_weights({**random_weights(attn, 0), "qkv.weight": torch.zeros(8, 8)})
    # in_out layout: the message gives the shape after the transpose, and says which layout was assumed
    with pytest.raises(ValueError, match=re.escape("'weight' has shape (3, 4), expected (4, 3) (layout='in_out')")):
        lin.load_weights({"weight": torch.zeros(4, 3), "bias": torch.zeros(4)}, layout="in_out")
    conv = Conv1d(4, 6, 3, groups=2)
    with pytest.raises(ValueError, match=re.escape("'weight' has shape (6, 4, 3), expected (6, 2, 3)")):
        conv.load_weights({"weight": torch.zeros(6, 4, 3), "bias": torch.zeros(6)})


def test_full_weights_into_a_tensor_parallel_rank_are_refused():
    col = ColumnLinear(4, 8, tp_size=2, tp_rank=1)
    with pytest.raises(ValueError, match=re.escape("'weight' has shape (8, 4), expected (4, 4)")):
        col.load_weights({"weight": torch.zeros(8, 4), "bias": torch.zeros(8)})
    attn = Attention(8, 2, tp_size=2, tp_rank=0)
    with pytest.raises(ValueError, match=re.escape("'qkv.weight' has shape (24, 8), expected (12, 8)")):
        attn.load_weights(random_weights(Attention(8, 2), 1))


def test_unknown_and_missing_names():
    lin = Linear(3, 4)
    with pytest.raises(ValueError, match=r"unknown weight names \['wieght'\]; expected \['bias', 'weight'\]"):
        lin.load_weights({"wieght": torch.zeros(4, 3), "bias": torch.zeros(4)})
    with pytest.raises(ValueError, match=r"missing weights \['bias'\]"):
        lin.load_weights({"weight": torch.zeros(4, 3)})
    lin.load_weights({"weight": torch.zeros(4, 3)}, strict=False)  # allowed when not strict
    with pytest.raises(ValueError, match="unknown weight names"):  # even when not strict
        lin.load_weights({"weight": torch.zeros(4, 3), "scale": torch.zeros(4)}, strict=False)
    mlp = MLP(4, 8)
    with pytest.raises(ValueError, match=r"unknown weight names \['mlp.0.weight'\]"):
        mlp.load_weights({**random_weights(mlp, 2), "mlp.0.weight": torch.zeros(8, 4)})
    attn = Attention(8, 2)
    with pytest.raises(ValueError, match=r"missing weights \['dense.bias', 'qkv.bias'\]"):
        attn.load_weights({"qkv.weight": torch.zeros(24, 8), "dense.weight": torch.zeros(8, 8)})


@pytest.mark.parametrize("value", [
    torch.zeros(4, 3, dtype=torch.int64), torch.zeros(4, 3, dtype=torch.int32), torch.zeros(4, 3, dtype=torch.bool),
    torch.zeros(4, 3, dtype=torch.complex64), torch.zeros(4, 3, dtype=torch.uint8),
    np.zeros((4, 3), dtype=np.int64), np.zeros((4, 3), dtype=np.int32), np.zeros((4, 3), dtype=bool),
    np.zeros((4, 3), dtype=np.complex128), np.zeros((4, 3), dtype=np.uint16),
], ids=lambda v: f"{type(v).__module__.split('.')[0]}-{v.dtype}")
def test_non_floating_dtypes_are_refused(value):
    lin = Linear(3, 4)
    with pytest.raises(ValueError, match=r"weight 'weight': dtype .* is not floating point"):
        lin.load_weights({"weight": value, "bias": torch.zeros(4)})


@pytest.mark.parametrize("value", [[[0.0] * 3] * 4, 1.0, None, "w"], ids=["list", "float", "None", "str"])
def test_non_array_values_are_refused(value):
    with pytest.raises(ValueError, match=r"weight 'weight': expected a torch.Tensor or numpy.ndarray"):
        Linear(3, 4).load_weights({"weight": value, "bias": torch.zeros(4)})


@pytest.mark.parametrize("layout", ["in-out", "OUT_IN", "transposed", "", None])
def test_bad_layout_string(layout):
    with pytest.raises(ValueError, match=r"layout must be one of \('out_in', 'in_out'\)"):
        Linear(3, 4).load_weights({"weight": torch.zeros(4, 3), "bias": torch.zeros(4)}, layout=layout)


def test_in_out_layout_needs_a_2d_weight():
    with pytest.raises(ValueError, match=r"Linear: weight must be 2-D, got shape \(12,\)"):
        Linear(3, 4).load_weights({"weight": torch.zeros(12), "bias": torch.zeros(4)}, layout="in_out")


@pytest.mark.parametrize("bad", ["shape", "dtype", "unknown", "missing", "numpy_int", "type"])
@pytest.mark.parametrize("position", ["first", "last"])
def test_load_weights_is_atomic(bad, position):
    attn = init_random_(Attention(8, 2), seed=3)
    before = _snapshot(attn)
    new = random_weights(attn, 4)
    bad_entry = {
        "shape": ("dense.weight", torch.zeros(8, 9)),
        "dtype": ("dense.weight", torch.zeros(8, 8, dtype=torch.int64)),
        "unknown": ("dense.scale", torch.zeros(8)),
        "missing": None,
        "numpy_int": ("qkv.bias", np.zeros(24, dtype=np.int32)),
        "type": ("dense.bias", [0.0] * 8),
    }[bad]
    if bad_entry is None:
        del new["dense.bias"]
        weights = new
    else:
        name, value = bad_entry
        rest = {k: v for k, v in new.items() if k != name}
        weights = {name: value, **rest} if position == "first" else {**rest, name: value}
    with pytest.raises(ValueError):
        attn.load_weights(weights)
    _assert_unchanged(attn, before)


def test_load_weights_is_atomic_in_in_out_layout():
    lin = init_random_(Linear(3, 4), seed=5)
    before = _snapshot(lin)
    with pytest.raises(ValueError, match="'bias' has shape"):
        lin.load_weights({"weight": torch.ones(3, 4), "bias": torch.ones(5)}, layout="in_out")
    _assert_unchanged(lin, before)


# --------------------------------------------------------------------------------------------- constructors

@pytest.mark.parametrize("make, match", [
    (lambda: Conv1d(4, 6, 3, groups=3), r"groups=3 must divide in_channels=4 and out_channels=6"),
    (lambda: Conv1d(6, 4, 3, groups=3), r"groups=3 must divide in_channels=6 and out_channels=4"),
    (lambda: Conv1d(0, 4, 3), r"in_channels must be a positive integer, got 0"),
    (lambda: Conv1d(4, -1, 3), r"out_channels must be a positive integer, got -1"),
    (lambda: Conv1d(4, 4, 0), r"kernel_size must be a positive integer, got 0"),
    (lambda: Conv1d(4, 4, 3, stride=0), r"stride must be a positive integer, got 0"),
    (lambda: Conv1d(4, 4, 3, dilation=0), r"dilation must be a positive integer, got 0"),
    (lambda: Conv1d(4, 4, 3, groups=0), r"groups must be a positive integer, got 0"),
    (lambda: Conv1d(4, 4, 3, padding=-1), r"padding must be a non-negative integer, got -1"),
    (lambda: Conv1d(4, 4, 2.5), r"kernel_size must be a positive integer, got 2.5"),
    (lambda: Conv1d(4, 4, True), r"kernel_size must be a positive integer, got True"),
    (lambda: Conv1d(4, 4, 3, dtype=torch.int32), r"parameter dtype must be floating point"),
    (lambda: Linear(0, 4), r"in_features must be a positive integer, got 0"),
    (lambda: Linear(4, -2), r"out_features must be a positive integer, got -2"),
    (lambda: Linear(4, 4, tp_rank=1), r"tp_rank must be in \[0, 1\), got 1"),
    (lambda: ColumnLinear(4, 8, tp_size=2, tp_rank=2), r"tp_rank must be in \[0, 2\), got 2"),
    (lambda: RowLinear(8, 4, tp_size=4, tp_rank=-1), r"tp_rank must be in \[0, 4\), got -1"),
    (lambda: ColumnLinear(4, 6, tp_size=4), r"out_features=6 is not divisible by tp_size=4"),
    (lambda: RowLinear(6, 4, tp_size=4), r"in_features=6 is not divisible by tp_size=4"),
    (lambda: ColumnLinear(4, 8, tp_size=0), r"tp_size must be a positive integer, got 0"),
    (lambda: RowLinear(4, 8, tp_size=0), r"tp_size must be a positive integer, got 0"),
    (lambda: Linear(4, 8, tp_size=-1), r"tp_size must be a positive integer, got -1"),
    (lambda: Linear(4, 4, dtype=torch.int64), r"parameter dtype must be floating point"),
    (lambda: LayerNorm(0), r"normalized_shape must be a positive integer, got 0"),
    (lambda: LayerNorm(8, eps=0.0), r"eps must be positive, got 0.0"),
    (lambda: LayerNorm(8, eps=-1e-5), r"eps must be positive"),
    (lambda: LayerNorm(8, eps=float("nan")), r"eps must be positive"),
    (lambda: MLP(0, 8), r"hidden_size must be a positive integer, got 0"),
    (lambda: MLP(8, 0), r"ffn_hidden_size must be a positive integer, got 0"),
    (lambda: MLP(8, 16, "swish"), r"activation must be one of \['gelu', 'gelu_tanh', 'relu'\], got 'swish'"),
    (lambda: MLP(8, 16, tp_size=2, tp_rank=2), r"tp_rank must be in \[0, 2\), got 2"),
    (lambda: MLP(8, 6, tp_size=4), r"out_features=6 is not divisible by tp_size=4"),
    (lambda: MLP(8, 16, tp_size=0), r"tp_size must be a positive integer, got 0"),
    (lambda: Embedding(0, 4), r"num_embeddings must be a positive integer, got 0"),
    (lambda: Embedding(4, -4), r"embedding_dim must be a positive integer, got -4"),
    (lambda: Attention(10, 3), r"hidden_size=10 is not divisible by num_heads=3"),
    (lambda: Attention(0, 2), r"hidden_size must be a positive integer, got 0"),
    (lambda: Attention(8, 0), r"num_heads must be a positive integer, got 0"),
    (lambda: Attention(12, 3, tp_size=2), r"num_heads=3 is not divisible by tp_size=2"),
    (lambda: Attention(8, 2, tp_size=2, tp_rank=2), r"tp_rank must be in \[0, 2\), got 2"),
    (lambda: Attention(8, 2, tp_size=0), r"tp_size must be a positive integer, got 0"),
    (lambda: CrossAttention(10, 4), r"hidden_size=10 is not divisible by num_heads=4"),
    (lambda: CrossAttention(8, 2, 0), r"kv_hidden_size must be a positive integer, got 0"),
    (lambda: CrossAttention(8, 2, tp_size=2, tp_rank=-1), r"tp_rank must be in \[0, 2\), got -1"),
    (lambda: KVCache(0, 2, 4, 8), r"max_batch must be a positive integer, got 0"),
    (lambda: KVCache(1, 2, 0, 8), r"max_len must be a positive integer, got 0"),
])
def test_bad_constructor_arguments(make, match):
    with pytest.raises(ValueError, match=match):
        make()


@pytest.mark.parametrize("call, match", [
    (lambda: tp_shard(torch.zeros(4, 6), 2, 2, 0), r"tp rank must be in \[0, 2\), got 2"),
    (lambda: tp_shard(torch.zeros(4, 6), 0, 0, 0), r"tp world size must be a positive integer, got 0"),
    (lambda: tp_shard(torch.zeros(4, 6), 0, 4, 1), r"dimension 1 of shape \(4, 6\) is not divisible by tp size 4"),
    (lambda: tp_shard(np.zeros((4, 6), dtype=np.int64), 0, 2, 0), r"dtype int64 is not floating point"),
])
def test_bad_tp_shard_arguments(call, match):
    with pytest.raises(ValueError, match=match):
        call()


# ------------------------------------------------------------------------------------------- forward inputs

@pytest.fixture
def layers():
    return {
        "conv": init_random_(Conv1d(4, 6, 3, padding=1)),
        "linear": init_random_(Linear(4, 6)),
        "row": init_random_(RowLinear(4, 6)),
        "ln": init_random_(LayerNorm(4)),
        "ln16": init_random_(LayerNorm(4, dtype=torch.float16)),
        "mlp": init_random_(MLP(4, 8)),
        "emb": init_random_(Embedding(10, 4)),
        "attn": init_random_(Attention(8, 2, causal=True)),
        "cross": init_random_(CrossAttention(8, 2, 6)),
    }


@pytest.mark.parametrize("name, args, match", [
    ("conv", (torch.zeros(4, 9),), r"Conv1d: expected a 3-D input, got shape \(4, 9\)"),
    ("conv", (torch.zeros(1, 5, 9),), r"Conv1d: expected 4 input channels, got shape \(1, 5, 9\)"),
    ("conv", (torch.zeros(1, 4, 9, dtype=torch.float64),), r"Conv1d: input dtype torch.float64 does not match"),
    ("conv", (torch.zeros(1, 4, 9, dtype=torch.int64),), r"Conv1d: input dtype torch.int64 does not match"),
    ("conv", (np.zeros((1, 4, 9), dtype=np.float32),), r"Conv1d: expected a torch.Tensor input, got ndarray"),
    ("linear", (torch.zeros(2, 5),), r"Linear: expected last dimension 4, got shape \(2, 5\)"),
    ("linear", (torch.zeros(2, 4, dtype=torch.float16),), r"Linear: input dtype torch.float16 does not match"),
    ("row", (torch.zeros(3, 3),), r"RowLinear: expected last dimension 4, got shape \(3, 3\)"),
    ("ln", (torch.zeros(2, 5),), r"LayerNorm: expected last dimension 4, got shape \(2, 5\)"),
    ("ln", (torch.zeros(2, 4, dtype=torch.float16),), r"LayerNorm: input dtype torch.float16 does not match"),
    ("ln16", (torch.zeros(2, 4),), r"LayerNorm: input dtype torch.float32 does not match .* torch.float16"),
    ("mlp", (torch.zeros(2, 8),), r"ColumnLinear: expected last dimension 4, got shape \(2, 8\)"),
    ("emb", (torch.zeros(3),), r"Embedding: ids must be an int32/int64 tensor, got torch.float32"),
    ("emb", (torch.zeros(3, dtype=torch.int16),), r"Embedding: ids must be an int32/int64 tensor, got torch.int16"),
    ("emb", ([1, 2],), r"Embedding: ids must be an int32/int64 tensor, got list"),
    ("attn", (torch.zeros(5, 8),), r"Attention: expected a 3-D input, got shape \(5, 8\)"),
    ("attn", (torch.zeros(1, 5, 6),), r"Attention: expected last dimension 8, got shape \(1, 5, 6\)"),
    ("attn", (torch.zeros(1, 5, 8, dtype=torch.float64),), r"Attention: input dtype torch.float64 does not match"),
    ("attn", (torch.zeros(1, 2, 8), torch.arange(2)), r"input_pos given but no cache; pass cache=KVCache"),
    ("cross", (torch.zeros(1, 2, 8), torch.zeros(1, 3, 8)),
     r"CrossAttention: expected last dimension 6, got shape \(1, 3, 8\)"),
    ("cross", (torch.zeros(1, 2, 8), torch.zeros(3, 6)), r"CrossAttention: expected a 3-D input, got shape \(3, 6\)"),
    ("cross", (torch.zeros(2, 8),), r"CrossAttention: expected a 3-D input, got shape \(2, 8\)"),
])
def test_bad_forward_inputs(layers, name, args, match):
    with pytest.raises(ValueError, match=match):
        layers[name](*args)


def test_embedding_logits_bad_input(layers):
    with pytest.raises(ValueError, match=r"Embedding.logits: expected last dimension 4, got shape \(2, 5\)"):
        layers["emb"].logits(torch.zeros(2, 5))
    with pytest.raises(ValueError, match=r"Embedding.logits: input dtype torch.float64 does not match"):
        layers["emb"].logits(torch.zeros(2, 4, dtype=torch.float64))


def test_conv1d_input_too_short():
    conv = init_random_(Conv1d(2, 2, 5, dilation=2))
    with pytest.raises(ValueError, match=r"input length 8 is too short for kernel 5, dilation 2, padding 0"):
        conv(torch.zeros(1, 2, 8))
    assert conv(torch.zeros(1, 2, 9)).shape == (1, 2, 1)


def test_attention_cache_misuse(layers):
    attn = layers["attn"]
    cache = attn.new_cache(2, 4, dtype=torch.float32)
    with pytest.raises(ValueError, match=r"input_pos must have shape \[3\] or \[1, 3\], got \(2,\)"):
        attn(torch.zeros(1, 3, 8), torch.arange(2), cache=cache)
    with pytest.raises(ValueError, match=r"input_pos must have shape \[1\] or \[1, 1\], got \(2, 1\)"):
        attn(torch.zeros(1, 1, 8), torch.zeros(2, 1, dtype=torch.long), cache=cache)  # rows != batch
    with pytest.raises(ValueError, match=r"input_pos must have shape \[2\] or \[2, 2\], got \(2, 2, 1\)"):
        attn(torch.zeros(2, 2, 8), torch.zeros(2, 2, 1, dtype=torch.long), cache=cache)
    with pytest.raises(ValueError, match=r"input_pos must be int64, got torch.float32"):
        attn(torch.zeros(2, 2, 8), torch.zeros(2, 2), cache=cache)
    with pytest.raises(ValueError, match=r"3 rows x 1 tokens do not fit a cache of 2 rows x 4 positions"):
        attn(torch.zeros(3, 1, 8), torch.tensor([0]), cache=cache)
    with pytest.raises(ValueError, match=r"a cache needs input_pos"):
        attn(torch.zeros(1, 1, 8), cache=cache)


def test_cross_attention_cache_misuse(layers):
    ca = layers["cross"]
    with pytest.raises(ValueError, match=r"pass the audio states xa or a cache filled by compute_kv"):
        ca(torch.zeros(1, 1, 8))
    cache = ca.new_cache(2, 4, dtype=torch.float32)
    with pytest.raises(ValueError, match=r"KVCache: 5 positions exceed the cache's max_len 4"):
        ca.compute_kv(torch.zeros(1, 5, 6), cache)
    with pytest.raises(ValueError, match=r"KVCache: batch 3 exceeds the cache's max_batch 2"):
        ca.compute_kv(torch.zeros(3, 4, 6), cache)
    with pytest.raises(ValueError, match=r"CrossAttention: expected last dimension 6"):
        ca.compute_kv(torch.zeros(1, 4, 8), cache)
    with pytest.raises(RuntimeError, match=r"no encoder K/V cached"):
        ca(torch.zeros(1, 1, 8), cache=cache)
    ca.compute_kv(torch.zeros(2, 4, 6), cache)
    with pytest.raises(ValueError, match=r"3 decoder rows are not a multiple of the 2 audio rows"):
        ca(torch.zeros(3, 1, 8), cache=cache)  # rows are read in groups: 2 audios x g rows
    with pytest.raises(ValueError, match=r"3 decoder rows are not a multiple of the 2 audio rows"):
        ca(torch.zeros(3, 1, 8), torch.zeros(2, 4, 6))  # the same rule when K/V are recomputed


def test_kv_cache_bad_updates():
    c = KVCache(2, 2, 4, 3)
    with pytest.raises(ValueError, match=r"KVCache: input_pos must have shape \[1\] or \[2, 1\], got \(1, 1\)"):
        c.update(torch.zeros(1, 1, dtype=torch.long), torch.zeros(2, 2, 1, 3), torch.zeros(2, 2, 1, 3))
    with pytest.raises(ValueError, match=r"KVCache: input_pos must be int64, got torch.int32"):
        c.update(torch.zeros(2, 1, dtype=torch.int32), torch.zeros(2, 2, 1, 3), torch.zeros(2, 2, 1, 3))
    with pytest.raises(ValueError, match=r"KVCache: batch 3 exceeds the cache's max_batch 2"):
        c.update(torch.tensor([0]), torch.zeros(3, 2, 1, 3), torch.zeros(3, 2, 1, 3))
    with pytest.raises(ValueError, match=r"do not fit cache \(2, 2, 4, 3\)"):
        c.update(torch.tensor([0]), torch.zeros(1, 3, 1, 3), torch.zeros(1, 3, 1, 3))
    with pytest.raises(ValueError, match=r"do not fit cache"):
        c.update(torch.tensor([0]), torch.zeros(1, 2, 1, 4), torch.zeros(1, 2, 1, 4))
    with pytest.raises(ValueError, match=r"k/v of shape \(1, 2, 1, 3\)/\(1, 2, 2, 3\)"):
        c.update(torch.tensor([0]), torch.zeros(1, 2, 1, 3), torch.zeros(1, 2, 2, 3))
    with pytest.raises(ValueError, match=r"5 positions exceed the cache's max_len 4"):
        c.write(torch.zeros(1, 2, 5, 3), torch.zeros(1, 2, 5, 3))
    with pytest.raises(ValueError, match=r"batch 3 exceeds"):
        c.reorder(torch.tensor([0, 1, 0]))


# ---------------------------------------------------------------------------------------------- gaps closed later

def test_loading_a_layers_own_transposed_weight_is_atomic_and_correct():
    lin = Linear(5, 5)
    w = random_weights(lin, 11)
    lin.load_weights(w)
    before = lin.weight.detach().clone()
    lin.load_weights({"weight": lin.weight.t(), "bias": lin.bias}, layout="in_out")  # aliases the target
    assert torch.equal(lin.weight, before)  # W^T given as in_out is W again
    lin.load_weights({"weight": lin.weight.t(), "bias": lin.bias})  # aliasing, and really transposing
    assert torch.equal(lin.weight, before.t())


def test_float128_numpy_weight_is_a_value_error():
    if not hasattr(np, "float128"):
        pytest.skip("numpy has no float128 on this platform")
    with pytest.raises(ValueError, match="not floating point"):
        Linear(2, 2).load_weights({"weight": np.zeros((2, 2), dtype=np.float128), "bias": np.zeros(2)})


def test_plain_linear_refuses_tensor_parallel():
    with pytest.raises(ValueError, match="ColumnLinear or RowLinear"):
        Linear(4, 4, tp_size=2)


def test_int32_positions_are_a_value_error():
    attn = Attention(8, 2, causal=True)
    init_random_(attn)
    with pytest.raises(ValueError, match="input_pos must be int64"):
        attn(torch.randn(1, 1, 8), torch.tensor([0], dtype=torch.int32), cache=attn.new_cache(1, 4, dtype=torch.float32))


def test_shard_weights_unknown_name():
    with pytest.raises(ValueError, match="unknown weight name 'bogus.weight'"):
        Attention(8, 2, tp_size=2).shard_weights({"bogus.weight": torch.zeros(2, 2)})
    with pytest.raises(ValueError, match="unknown weight name 'qkv.weight'"):
        CrossAttention(8, 2, tp_size=2).shard_weights({"qkv.weight": torch.zeros(24, 8)})
    with pytest.raises(ValueError, match="unknown weight name 'up.weight'"):
        MLP(8, 16, tp_size=2).shard_weights({"up.weight": torch.zeros(16, 8)})


def test_mlp_shard_weights_splits_fc_by_rows_and_proj_by_columns():
    full = MLP(8, 16)
    w = random_weights(full, 5)
    shard = MLP(8, 16, tp_size=2, tp_rank=1).shard_weights(w)
    assert torch.equal(shard["fc.weight"], w["fc.weight"][8:])
    assert torch.equal(shard["fc.bias"], w["fc.bias"][8:])
    assert torch.equal(shard["proj.weight"], w["proj.weight"][:, 8:])
    assert torch.equal(shard["proj.bias"], w["proj.bias"])
