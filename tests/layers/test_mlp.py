"""MLP (ColumnLinear -> activation -> RowLinear) parity with a float64 reference."""
import torch
from parameterized import parameterized

from trtllm_ext import MLP, init_random_

from ._helpers import assert_rel_close, load_random, randn, ref_mlp


@parameterized.expand([
    ("gelu_b1", (1, 1), 8, 32, "gelu", True),
    ("gelu_odd", (2, 7), 12, 20, "gelu", True),
    ("gelu_tanh", (3, 5), 16, 64, "gelu_tanh", True),
    ("relu_nobias", (2, 3), 9, 15, "relu", False),
    ("gelu_3d", (4,), 24, 96, "gelu", True),
])
def test_mlp_matches_float64_reference(_, lead, hidden, ffn, activation, bias):
    mlp = MLP(hidden, ffn, activation, bias)
    assert set(mlp.state_dict()) == ({"fc.weight", "fc.bias", "proj.weight", "proj.bias"} if bias
                                     else {"fc.weight", "proj.weight"})
    w = load_random(mlp, hidden * ffn)
    x = randn(*lead, hidden, seed=ffn)
    out = mlp(x.float())
    assert out.shape == x.shape and out.dtype == torch.float32
    assert_rel_close(out, ref_mlp(x, w, activation))


def test_mlp_default_activation_is_exact_gelu():
    mlp = init_random_(MLP(8, 16), seed=2, std=1.0)  # large weights so that erf and tanh GELU differ
    w = {k: v.double() for k, v in mlp.state_dict().items()}
    x = randn(2, 8, seed=3)
    out = mlp(x.float())
    assert_rel_close(out, ref_mlp(x, w, "gelu"))
    assert (out.double() - ref_mlp(x, w, "gelu_tanh")).abs().max() > 1e-4
