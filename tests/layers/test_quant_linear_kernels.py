"""The Triton weight-only linear (``ops.weight_only_linear``: int8 per channel, int4 in groups, dequantized in
registers) against ``reference.fused_linear`` in float32 on the very weights ``dequantize_weight`` gives, on a
CUDA GPU: every kernel variant (one row on the CUDA cores, rows on the tensor cores with the whole K slice, the
pipelined K loop, split K reduced by the last program), LayerNorm / GELU / residual fusions, a square weight."""
import pytest
import torch

from trtllm_ext.quantization import dequantize_weight, quantize_weight

from .test_kernels import rel

pytestmark = pytest.mark.gpu

TOL = 2e-3  # fp16 output rounding (the weights themselves are the reference's, bit for bit)


@pytest.fixture(scope="module")
def kops():
    from trtllm_ext import kernels

    if not kernels.available("cuda"):
        pytest.skip("needs CUDA and triton")
    from trtllm_ext.kernels import ops

    return ops


def configs(kops, m, k, ln):
    """The default kernel for m rows, then every other variant that applies."""
    out = [None]
    bm = 16 if m <= 16 else 32
    if m > 1:
        out.append(kops.LinearConfig(bm, 32, True, 1, 4, loop_k=128, num_stages=3))
        if k <= 2048:  # the whole K slice of bm rows in registers (shared memory for the product's operands)
            out.append(kops.LinearConfig(bm, 16, True, 1, 4))
    if not ln:
        out.append(kops.LinearConfig(bm, 16, True, 3, 4) if m > 1 else kops.LinearConfig(1, 4, False, 3, 4))
        if m > 1:
            out.append(kops.LinearConfig(bm, 16, True, 2, 4, loop_k=128, num_stages=3))
    return out


@pytest.mark.parametrize("mode", ["int8", "int4"])
@pytest.mark.parametrize("m", [1, 3, 16, 29])
@pytest.mark.parametrize("n,k,ln,gelu,res", [(384, 384, True, False, False), (1152, 384, True, False, False),
                                             (384, 1536, False, False, True), (1536, 384, True, True, False),
                                             (1280, 5120, False, False, True), (640, 256, False, False, False)])
def test_weight_only_linear_matches_the_dequantized_reference(kops, mode, m, n, k, ln, gelu, res):
    from trtllm_ext.kernels import reference

    torch.manual_seed(m * 13 + n + k)
    x = (torch.randn(m, k, device="cuda") * 3 + 1).half()
    w = torch.randn(n, k, device="cuda") * 0.05 + torch.linspace(-0.02, 0.03, k, device="cuda")  # not symmetric
    qweight, scales = quantize_weight(w.half(), mode, 128)
    group = 128 if mode == "int4" else None
    b = (torch.randn(n, device="cuda") * 0.1).half()
    lnp = (torch.rand(k, device="cuda") + 0.5, torch.randn(k, device="cuda") * 0.1, 1e-5) if ln else None
    r = torch.randn(m, n, device="cuda").half() if res else None
    wd = dequantize_weight(qweight, scales, mode, k, dtype=torch.float16)
    expect = reference.fused_linear(x.float(), wd.float(), b.float(), ln=lnp, gelu=gelu,
                                    residual=None if r is None else r.float())
    for cfg in configs(kops, m, k, ln):
        ws = {}
        for repeat in range(2):  # the split-K counters are reset by the last program for the repeat
            y = torch.full((m, n), float("nan"), device="cuda", dtype=torch.float16)
            kops.weight_only_linear(x, qweight, scales, b, mode=mode, group_size=group, ln=lnp, gelu=gelu,
                                    residual=r, out=y, config=cfg, workspace=ws)
            assert rel(y, expect) < TOL, (cfg, repeat)


def test_weight_only_linear_refuses_what_it_cannot_read(kops):
    x = torch.randn(2, 256, device="cuda").half()
    qweight, scales = quantize_weight(torch.randn(64, 256, device="cuda").half(), "int4", 128)
    with pytest.raises(ValueError, match="group size"):
        kops.weight_only_linear(x, qweight, scales, mode="int4", group_size=64)
    with pytest.raises(ValueError, match="K=256"):
        kops.weight_only_linear(torch.randn(2, 128, device="cuda").half(), qweight, scales, mode="int4")
    q8, s8 = quantize_weight(torch.randn(64, 256, device="cuda").half(), "int8")
    with pytest.raises(ValueError, match=r"one per output channel"):
        kops.weight_only_linear(x, q8, s8[:32], mode="int8")


@pytest.mark.parametrize("mode", ["int8", "int4"])
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32])
@pytest.mark.parametrize("n,k", [(70, 384), (1280, 1280), (33, 256)])
def test_dequantize_weight_gives_the_reference_weights_bit_for_bit(kops, mode, dtype, n, k):
    torch.manual_seed(n + k)
    w = torch.randn(n, k, device="cuda") * torch.rand(n, 1, device="cuda") + 0.01  # not symmetric, rows unequal
    qweight, scales = quantize_weight(w, mode, 128, scale_dtype=dtype)
    group = 128 if mode == "int4" else None
    got = kops.dequantize_weight(qweight, scales, mode, k, group_size=group)
    assert got.dtype == dtype and got.shape == (n, k)
    assert torch.equal(got, dequantize_weight(qweight, scales, mode, k, group_size=group))


@pytest.mark.parametrize("mode", ["int8", "int4"])
def test_weight_only_linear_of_many_rows_dequantizes_once_then_multiplies(kops, mode, monkeypatch):
    """More rows than MAX_M (the encoder, prompts): the Triton dequantizing pass, then reference.fused_linear on
    that weight; the same numbers as the reference op on the reference's dequantized weight."""
    from trtllm_ext import KernelBackend
    from trtllm_ext.kernels import reference
    from trtllm_ext.quant_linear import WeightOnlyQuantLinear

    torch.manual_seed(3)
    layer = WeightOnlyQuantLinear(384, 1152, quant_mode=mode, dtype=torch.float16, device="cuda")
    layer.load_weights({"weight": torch.randn(1152, 384) * 0.05 + 0.01, "bias": torch.randn(1152) * 0.1})
    x = (torch.randn(kops.MAX_M + 40, 384, device="cuda") * 2 + 0.5).half()
    r = torch.randn(x.shape[0], 1152, device="cuda").half()
    lnp = (torch.rand(384, device="cuda") + 0.5, torch.randn(384, device="cuda") * 0.1, 1e-5)
    wd = layer.dequantized_weight()
    expect = reference.fused_linear(x, wd, layer.bias, ln=lnp, gelu=True, residual=r)
    calls, triton_pass = [], kops.dequantize_weight
    monkeypatch.setattr(kops, "dequantize_weight", lambda *a, **kw: calls.append(a) or triton_pass(*a, **kw))
    got = kops.weight_only_linear(x, layer.qweight, layer.scales, layer.bias, mode=mode, group_size=layer.group_size,
                                  ln=lnp, gelu=True, residual=r)
    assert len(calls) == 1 and torch.equal(got, expect)
    calls.clear()
    via_backend = layer(x, backend=KernelBackend(kops))  # the layer's forward on the Triton backend
    assert len(calls) == 1 and torch.equal(via_backend, reference.fused_linear(x, wd, layer.bias))
