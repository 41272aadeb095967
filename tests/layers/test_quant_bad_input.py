"""Weight-only quantized layers and the quantization helpers refuse bad input with a ValueError saying what is
wrong; a refused load leaves the layer exactly as it was."""
import re

import numpy as np
import pytest
import torch

from trtllm_ext import (
    WeightOnlyQuantColumnLinear,
    WeightOnlyQuantLinear,
    WeightOnlyQuantRowLinear,
    dequantize_weight,
    pack_int4,
    quantize_weight,
    unpack_int4,
)

from ._helpers import randn


def loaded(mode, fin=256, fout=8, cls=WeightOnlyQuantLinear, **kw):
    layer = cls(fin, fout, quant_mode=mode, **kw)
    layer.load_weights({"weight": randn(fout, fin, seed=1) + 0.1, "bias": randn(fout, seed=2)})
    return layer


def refused(layer, weights, match, **kw):
    before = {k: v.detach().clone() for k, v in layer.state_dict().items()}
    with pytest.raises(ValueError, match=match):
        layer.load_weights(weights, **kw)
    after = layer.state_dict()
    assert after.keys() == before.keys()
    for k, value in before.items():
        torch.testing.assert_close(after[k], value, rtol=0, atol=0, equal_nan=True,
                                   msg=f"{k} changed by a refused load")


def test_int4_k_not_a_multiple_of_the_group():
    with pytest.raises(ValueError, match=r"multiple of group_size=128, got K=100"):
        WeightOnlyQuantLinear(100, 8, quant_mode="int4")
    with pytest.raises(ValueError, match=r"multiple of group_size=64, got K=96"):
        WeightOnlyQuantLinear(96, 8, quant_mode="int4", group_size=64)
    # tensor parallel: the per-rank K must be a multiple of the group
    with pytest.raises(ValueError, match=re.escape("(in_features=256 / tp_size=4): int4 needs K (in features) to "
                                                   "be a multiple of group_size=128, got K=64")):
        WeightOnlyQuantRowLinear(256, 8, quant_mode="int4", tp_size=4, tp_rank=0)
    with pytest.raises(ValueError, match=r"group_size must be a positive even integer, got 63"):
        WeightOnlyQuantLinear(126, 8, quant_mode="int4", group_size=63)
    with pytest.raises(ValueError, match=r"got K=100"):
        quantize_weight(torch.zeros(8, 100), "int4")
    WeightOnlyQuantLinear(100, 8, quant_mode="int8")  # int8 is per channel: any K


def test_bad_constructor_arguments():
    with pytest.raises(ValueError, match=r"quant_mode must be one of \['int8', 'int4'\], got 'int2'"):
        WeightOnlyQuantLinear(128, 8, quant_mode="int2")
    with pytest.raises(ValueError, match=r"use WeightOnlyQuantColumnLinear or WeightOnlyQuantRowLinear"):
        WeightOnlyQuantLinear(128, 8, quant_mode="int8", tp_size=2)
    with pytest.raises(ValueError, match=r"out_features=9 is not divisible by tp_size=2"):
        WeightOnlyQuantColumnLinear(128, 9, quant_mode="int8", tp_size=2)
    with pytest.raises(ValueError, match=r"in_features=9 is not divisible by tp_size=2"):
        WeightOnlyQuantRowLinear(9, 8, quant_mode="int8", tp_size=2)
    with pytest.raises(ValueError, match=r"dtype must be floating point"):
        WeightOnlyQuantLinear(128, 8, quant_mode="int8", dtype=torch.int8)


@pytest.mark.parametrize("mode", ["int8", "int4"])
def test_wrong_scale_shapes(mode):
    layer = loaded(mode)
    q, s = quantize_weight(randn(8, 256, seed=3), mode, scale_dtype=torch.float32)
    want = "(8,)" if mode == "int8" else "(8, 2)"
    bad = [torch.zeros(9), torch.zeros(8, 1), torch.zeros(8, 2, 1), torch.zeros(2, 8)]
    for sc in bad:
        refused(layer, {"qweight": q, "scales": sc, "bias": layer.bias},
                re.escape(f"weight 'scales' has shape {tuple(sc.shape)}, expected {want}"))
        with pytest.raises(ValueError, match=r"scales must have shape|scales of shape \(8, 1\) give group size 256"):
            dequantize_weight(q, sc, mode, group_size=None if mode == "int8" else 128)
    refused(layer, {"qweight": q, "scales": s.to(torch.int32), "bias": layer.bias}, r"'scales'.*not floating")
    refused(layer, {"qweight": q, "scales": torch.full_like(s, float("nan")), "bias": layer.bias},
            r"'scales' must be finite")
    if mode == "int8":  # per-channel scales are positive; an int4 group's scale carries the sign of its peak
        refused(layer, {"qweight": q, "scales": -s, "bias": layer.bias}, r"'scales' must be finite and non-negative")
    else:
        layer.load_weights({"qweight": q, "scales": -s, "bias": layer.bias})
        assert torch.equal(layer.dequantized_weight(), -dequantize_weight(q, s, mode))


@pytest.mark.parametrize("mode", ["int8", "int4"])
def test_wrong_qweight_dtype_or_shape(mode):
    layer = loaded(mode)
    q, s = quantize_weight(randn(8, 256, seed=4), mode, scale_dtype=torch.float32)
    want = "torch.int8" if mode == "int8" else "torch.uint8"
    other = torch.uint8 if mode == "int8" else torch.int8
    for bad in (q.view(other), q.float(), q.numpy().astype(np.int32)):
        refused(layer, {"qweight": bad, "scales": s, "bias": layer.bias},
                re.escape(f"'qweight' must be {want} for quant_mode '{mode}'"))
    unpacked = torch.zeros(8, 128 if mode == "int8" else 256, dtype=q.dtype)  # int4: K values, not K // 2 bytes
    refused(layer, {"qweight": unpacked, "scales": s, "bias": layer.bias},
            re.escape(f"'qweight' has shape {tuple(unpacked.shape)}, expected {tuple(q.shape)}"))
    refused(layer, {"qweight": q.tolist(), "scales": s, "bias": layer.bias}, r"expected a torch.Tensor or numpy")


def test_mixed_missing_and_unknown_keys():
    layer = loaded("int8")
    q, s = quantize_weight(randn(8, 256, seed=5), "int8", scale_dtype=torch.float32)
    w, b = randn(8, 256, seed=6), layer.bias
    refused(layer, {"weight": w, "qweight": q, "scales": s, "bias": b},
            r"either a float 'weight' \(quantized at load\) or 'qweight' \+ 'scales', not both")
    refused(layer, {"weight": w, "scales": s, "bias": b}, r"not both")
    refused(layer, {"qweight": q, "bias": b}, r"'qweight' and 'scales' are loaded together; missing 'scales'")
    refused(layer, {"scales": s, "bias": b}, r"missing 'qweight'")
    refused(layer, {"qweight": q, "bias": b}, r"missing 'scales'", strict=False)  # together even when not strict
    refused(layer, {"bias": b}, r"missing weights 'weight' \(or 'qweight' \+ 'scales'\)")
    refused(layer, {"weight": w}, r"missing weights 'bias'")
    refused(layer, {"weight": w, "bias": b, "per_channel_scale": s}, r"unknown weight names \['per_channel_scale'\]")
    no_bias = WeightOnlyQuantLinear(256, 8, bias=False, quant_mode="int8")
    refused(no_bias, {"weight": w, "bias": b}, r"unknown weight names \['bias'\]")
    refused(layer, {"weight": w, "bias": b}, r"layout must be one of", layout="transposed")
    # not strict: a bias alone is fine
    layer.load_weights({"bias": torch.zeros(8)}, strict=False)
    assert not layer.bias.any()


@pytest.mark.parametrize("mode", ["int8", "int4"])
def test_bad_float_weights(mode):
    layer = loaded(mode, fin=256, fout=128)
    w, b = randn(128, 256, seed=7), layer.bias
    refused(layer, {"weight": w.T, "bias": b}, re.escape("weight 'weight' has shape (256, 128), expected (128, 256)"))
    refused(layer, {"weight": w, "bias": b}, re.escape("has shape (256, 128), expected (128, 256) (layout='in_out')"),
            layout="in_out")
    refused(layer, {"weight": w, "bias": torch.zeros(7)}, re.escape("weight 'bias' has shape (7,), expected (128,)"))
    bad = w.clone()
    bad[3, 5] = float("inf")
    refused(layer, {"weight": bad, "bias": b}, r"weight 'weight': .*non-finite values")
    refused(layer, {"weight": w.to(torch.int32), "bias": b}, r"'weight'.*not floating point")
    refused(layer, {"weight": randn(128, 256, 1, seed=8), "bias": b}, r"has shape \(128, 256, 1\)")
    q, s = quantize_weight(w, mode, scale_dtype=torch.float32)
    refused(layer, {"qweight": q, "scales": s, "bias": b}, r"layout='in_out' applies to a float 'weight'",
            layout="in_out")


def test_shard_weights_bad_input():
    col = WeightOnlyQuantColumnLinear(256, 8, quant_mode="int4", tp_size=2, tp_rank=1)
    w = randn(8, 256, seed=9)
    q, s = quantize_weight(w, "int4")
    with pytest.raises(ValueError, match=r"either a float 'weight' or 'qweight' \+ 'scales'"):
        col.shard_weights({"weight": w, "qweight": q})
    with pytest.raises(ValueError, match=re.escape("'weight' has shape (4, 256), expected (8, 256)")):
        col.shard_weights({"weight": w[:4]})  # a rank's slice where the full weight is expected
    with pytest.raises(ValueError, match=r"unknown weight name 'weights'"):
        col.shard_weights({"weights": w})
    with pytest.raises(ValueError, match=r"not divisible by tp size 2"):
        col.shard_weights({"qweight": q[:7], "scales": s[:7]})
    with pytest.raises(ValueError, match=re.escape("'qweight' has shape (8, 128), expected (4, 128)")):
        col.load_weights({"qweight": q, "scales": s, "bias": torch.zeros(4)})  # full weights into a rank


@pytest.mark.parametrize("mode", ["int8", "int4"])
def test_bad_forward_inputs(mode):
    layer = loaded(mode)
    with pytest.raises(ValueError, match=r"expected last dimension 256, got shape \(2, 255\)"):
        layer(torch.zeros(2, 255))
    with pytest.raises(ValueError, match=r"input dtype torch.float64 does not match the layer's dtype torch.float32"):
        layer(torch.zeros(2, 256, dtype=torch.float64))
    with pytest.raises(ValueError, match=r"expected a torch.Tensor input"):
        layer(np.zeros((2, 256), dtype=np.float32))


def test_unloaded_layer_gives_nan():
    layer = WeightOnlyQuantLinear(128, 4, quant_mode="int4")
    assert torch.isnan(layer(torch.ones(1, 128))).all()


def test_helpers_bad_input():
    with pytest.raises(ValueError, match=r"w \[N, K\] must be 2-D, got shape \(4,\)"):
        quantize_weight(torch.zeros(4), "int8")
    with pytest.raises(ValueError, match=r"must be floating point, got torch.int8"):
        quantize_weight(torch.zeros(4, 4, dtype=torch.int8), "int8")
    with pytest.raises(ValueError, match=r"non-finite"):
        quantize_weight(torch.tensor([[1.0, float("nan")]]), "int8")
    q, s = quantize_weight(torch.randn(4, 128), "int4")
    with pytest.raises(ValueError, match=r"int4 qweight must be a 2-D torch.uint8 tensor, got torch.int8"):
        dequantize_weight(q.view(torch.int8), s, "int4")
    with pytest.raises(ValueError, match=r"holds K=128, expected K=256"):
        dequantize_weight(q, s, "int4", 256)
    with pytest.raises(ValueError, match=r"scales must be a floating-point tensor, got NoneType"):
        dequantize_weight(q, None, "int4")
    with pytest.raises(ValueError, match=r"values must lie in \[-8, 7\], got \[-9, 3\]"):
        pack_int4(torch.tensor([[-9, 3]]))
    with pytest.raises(ValueError, match=r"last dimension must be even"):
        pack_int4(torch.tensor([[1, 2, 3]]))
    with pytest.raises(ValueError, match=r"packed int4 weights must be uint8, got torch.int8"):
        unpack_int4(torch.zeros(2, dtype=torch.int8))
