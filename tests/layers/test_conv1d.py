"""Conv1d parity with torch.nn.functional.conv1d evaluated in float64."""
import torch
import torch.nn.functional as F
from parameterized import parameterized

from trtllm_ext import Conv1d, init_random_

from ._helpers import assert_rel_close, load_random, randn

# (batch, in_ch, out_ch, kernel, stride, padding, dilation, groups, length, bias)
CASES = [
    (1, 3, 5, 3, 1, 0, 1, 1, 17, True),
    (2, 4, 6, 3, 2, 1, 1, 2, 16, True),
    (3, 6, 9, 5, 1, 2, 2, 3, 23, False),
    (2, 80, 16, 3, 1, 1, 1, 1, 30, True),   # Whisper conv1 shape (mel bins -> width), stride 1
    (2, 16, 16, 3, 2, 1, 1, 1, 31, True),   # Whisper conv2: stride 2 on an odd length
    (1, 8, 8, 1, 1, 0, 1, 8, 7, True),      # depthwise, kernel 1
    (2, 5, 7, 4, 3, 3, 2, 1, 11, True),     # even kernel, stride 3, dilation 2
    (4, 6, 4, 2, 1, 0, 3, 2, 9, False),     # groups 2, dilation 3
    (1, 1, 1, 1, 1, 0, 1, 1, 1, True),      # the smallest possible conv
]


@parameterized.expand(CASES)
def test_conv1d_matches_float64_reference(b, cin, cout, k, stride, pad, dil, groups, length, bias):
    seed = hash((b, cin, cout, k, stride, pad, dil, groups, length)) % 10_000
    conv = Conv1d(cin, cout, k, stride=stride, padding=pad, dilation=dil, groups=groups, bias=bias)
    w = load_random(conv, seed)
    x = randn(b, cin, length, seed=seed + 1)
    out = conv(x.float())
    ref = F.conv1d(x, w["weight"], w.get("bias"), stride, pad, dil, groups)
    assert out.dtype == torch.float32
    assert out.shape == (b, cout, conv.output_length(length))
    assert_rel_close(out, ref)


@parameterized.expand([(3,), (11,)])
def test_conv1d_init_random_matches_reference(seed):
    conv = init_random_(Conv1d(6, 4, 3, padding=1, groups=2), seed=seed)
    assert not torch.isnan(conv.weight).any() and not torch.isnan(conv.bias).any()
    x = randn(2, 6, 13, seed=seed + 100)
    ref = F.conv1d(x, conv.weight.double(), conv.bias.double(), padding=1, groups=2)
    assert_rel_close(conv(x.float()), ref)


def test_conv1d_noncontiguous_input():
    conv = Conv1d(4, 3, 3, padding=1)
    w = load_random(conv, 5)
    x = randn(2, 9, 4, seed=6).transpose(1, 2)  # [2, 4, 9], not contiguous
    assert not x.is_contiguous()
    assert_rel_close(conv(x.float()), F.conv1d(x, w["weight"], w["bias"], padding=1))


def test_conv1d_unloaded_is_nan():
    conv = Conv1d(2, 2, 1)
    assert torch.isnan(conv(torch.ones(1, 2, 3))).all()
