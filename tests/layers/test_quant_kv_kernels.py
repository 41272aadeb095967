"""The Triton decode attention kernels over an int8 K/V cache (``ops.self_attention_int8`` /
``ops.cross_attention_int8``) against ``reference``'s, on a CUDA GPU.

* The int8 values and float32 scales the self-attention kernel writes equal ``quantization.quantize_kv``'s bit for
  bit (the kernel quantizes in float32 with the same correctly rounded division and rounding: half to even).
* Outputs: relative error against the reference run in float32 on the same int8 caches, within the float kernels'
  tolerance (``TOL``, as tests/layers/test_kernels.py): the kernels dequantize to the queries' dtype and round the
  softmax weights to it before the P @ V product, as the float kernels do; the reference stays in float32.
* Against float (unquantized) attention: within ``test_quant_kv_cache._attention_bound`` (quantization) plus the
  low-precision arithmetic (``_lowp_bound``).

The tests take the device from the ``dev`` fixture; a driver may call them with ``dev="cpu"`` under
``TRITON_INTERPRET=1`` (small shapes throughout).
"""
import pytest
import torch

from .test_kernels import DT, TOL, ref, rel
from .test_quant_kv_cache import SLACK, _attention_bound

pytestmark = pytest.mark.gpu

UNIT = {torch.float16: 2.0 ** -11, torch.bfloat16: 2.0 ** -8}  # unit roundoff
H, D = 4, 64


@pytest.fixture(scope="module")
def kops():
    from trtllm_ext import kernels

    if not kernels.available("cuda"):
        pytest.skip("needs CUDA and triton")
    from trtllm_ext.kernels import ops

    return ops


@pytest.fixture
def dev():
    return "cuda"


def _self_caches(b, max_len, dev):
    """Zeroed int8 K, V [b + 1, H, L, D] and float32 scales [b + 1, H, L, 1]: slices of one store each, as
    ``DecoderCaches`` lays them out ([2, rows, H, L, D]); row b is never written."""
    store = torch.zeros(2, b + 1, H, max_len, D, dtype=torch.int8, device=dev)
    scales = torch.zeros(2, b + 1, H, max_len, 1, dtype=torch.float32, device=dev)
    return [store[0], store[1], scales[0], scales[1]]


# steps of (positions, T): a prompt then decode steps; shared positions [T], or per row [B, T] (unsorted, gaps)
SCHEDULES = {
    "shared": [(list(range(5)), 5), ([5], 1), ([6], 1)],
    "per_row": [([[0, 1, 2, 3], [3, 2, 1, 0], [0, 1, 2, 3]], 4), ([[4], [70], [4]], 1),
                ([[6, 5], [71, 72], [5, 8]], 2)],  # row 1 reads two 64-position tiles
}


@pytest.mark.parametrize("dtype", DT)
@pytest.mark.parametrize("schedule", list(SCHEDULES))
def test_self_attention_int8(kops, dev, dtype, schedule):
    torch.manual_seed(len(schedule))
    b, max_len = 3, 96
    got, want = _self_caches(b, max_len, dev), _self_caches(b, max_len, dev)
    for i, (pos, t) in enumerate(SCHEDULES[schedule]):
        pos = torch.tensor(pos, device=dev)
        qkv = (torch.randn(b * t, 3 * H * D, device=dev) + 0.2).to(dtype)
        if i == 0:
            qkv[0, H * D:2 * H * D] = 0  # an all-zero token: scale 1.0, zeros
            qkv[1, H * D:H * D + 6] = torch.tensor([127, 2.5, 3.5, -2.5, 0.5, -1.5])  # scale 1.0, ties to even
        expect = ref().self_attention_int8(qkv.float(), want[0], want[1], pos, t, k_scale=want[2], v_scale=want[3])
        for pdl in (0, 1, 2):
            caches = [c.clone() for c in got]
            o = torch.full((b * t, H * D), float("nan"), device=dev, dtype=dtype)
            kops.self_attention_int8(qkv, caches[0], caches[1], pos, t, k_scale=caches[2], v_scale=caches[3], out=o,
                                     pdl=pdl)
            for c, w, name in zip(caches, want, ("k", "v", "k_scale", "v_scale")):
                assert torch.equal(c, w), f"step {i}, pdl={pdl}: {name} differs from quantize_kv's"
            assert rel(o, expect) < TOL[dtype], f"step {i}, pdl={pdl}"
        got = caches
    assert not got[0][b].any() and not got[2][b].any()  # the row beyond the batch is untouched


def _cross_caches(a, s, dev, big=3.0):
    """Random K/V of ``a + 1`` audios (head 0's keys ``big`` times larger: sharper scores, other scales)
    quantized into int8 views [a + 1, H, S, D] with float32 scale views [a + 1, H, S, 1] of the engine's stores
    [rows, S, 2, H, D] / [rows, 2, H, S, 1]; also the float K/V [2, a + 1, H, S, D]."""
    from trtllm_ext.quantization import quantize_kv

    kf = torch.randn(2, a + 1, H, s, D, device=dev) + 0.3
    kf[0, :, 0] *= big
    store = torch.zeros(a + 1, s, 2, H, D, dtype=torch.int8, device=dev)
    scales = torch.zeros(a + 1, 2, H, s, 1, dtype=torch.float32, device=dev)
    k, v = store.permute(2, 0, 3, 1, 4)
    ks, vs = scales.transpose(0, 1)
    for values, sc, x in ((k, ks, kf[0]), (v, vs, kf[1])):
        qx, sx = quantize_kv(x)
        values.copy_(qx)
        sc.copy_(sx)
    return (k, v, ks, vs), kf


# (audios, group, T, S, chunk, inline_combine, decoder rows b); b < audios * group: the last audio has fewer rows
CROSS = [(1, 1, 1, 1500, 128, True, 1), (2, 1, 1, 1500, 128, False, 2), (2, 5, 1, 1500, 128, True, 10),
         (3, 2, 2, 1500, 128, False, 6), (2, 3, 1, 1500, 128, True, 5), (2, 3, 1, 1500, 128, False, 4),
         (3, 1, 1, 100, 128, True, 3)]


@pytest.mark.parametrize("dtype", DT)
@pytest.mark.parametrize("a,group,t,s,chunk,inline,b", CROSS)
def test_cross_attention_int8(kops, dev, dtype, a, group, t, s, chunk, inline, b):
    torch.manual_seed(a * 13 + group + b)
    (k, v, ks, vs), _ = _cross_caches(a, s, dev)
    before = [x.clone() for x in (k, v, ks, vs)]
    q = torch.randn(b * t, H * D, device=dev).to(dtype)
    expect = ref().cross_attention_int8(q.float(), k, v, t, group, k_scale=ks, v_scale=vs)
    ws: dict = {}
    for pdl in (0, 1, 2):  # repeated calls also check that the counters were reset
        o = torch.full((b * t, H * D), float("nan"), device=dev, dtype=dtype)
        kops.cross_attention_int8(q, k, v, t, group, k_scale=ks, v_scale=vs, out=o, chunk=chunk,
                                  inline_combine=inline, workspace=ws, pdl=pdl)
        assert rel(o, expect) < TOL[dtype], f"pdl={pdl}"
    assert int(ws["cnt"].abs().sum()) == 0
    assert all(torch.equal(x, y) for x, y in zip((k, v, ks, vs), before))  # the cross cache is read only


def _lowp_bound(q, sk, sv, v, mask, dtype):
    """``_attention_bound`` with the kernels' roundings to ``dtype`` (unit u) on top: each dequantized value moves
    by at most u * amax = 127 u * scale more (the scales inflated by 1 + 254 u), the softmax weights rounded
    (a factor within 1 +- u) and the output rounded (u * max |v|): 3 u * max |v| in all, with margin."""
    u = UNIT[dtype]
    vmax = v.abs().amax(-1)[:, :, None, :].masked_fill(~mask, 0).amax(-1, keepdim=True)
    return _attention_bound(q, sk * (1 + 254 * u), sv * (1 + 254 * u), v, mask) + 3 * u * vmax


@pytest.mark.parametrize("dtype", DT)
def test_self_attention_int8_within_the_bound_of_float_attention(kops, dev, dtype):
    torch.manual_seed(5)
    b, max_len = 2, 32
    caches = _self_caches(b, max_len, dev)
    kf, vf = torch.zeros(2, b, H, max_len, D, device=dev)
    for pos, t in SCHEDULES["shared"][:2]:
        pos = torch.tensor(pos, device=dev)
        qkv = (torch.randn(b * t, 3 * H * D, device=dev) * 0.5 + 0.1).to(dtype)
        qkv[:, H * D:H * D + D] *= 10  # head 0's keys 10x larger
        o = kops.self_attention_int8(qkv, caches[0], caches[1], pos, t, k_scale=caches[2], v_scale=caches[3])
        expect = ref().self_attention(qkv.float(), kf, vf, pos, t)  # float32 caches
    q = qkv[:, :H * D].double().view(b, t, H, D).transpose(1, 2)
    mask = (torch.arange(max_len, device=dev) <= pos[:, None])[None, None]  # [1, 1, t, L]
    bound = _lowp_bound(q, caches[2][:b].double(), caches[3][:b].double(), vf.double(), mask, dtype)
    err = (o.double() - expect.double()).view(b, t, H, D).transpose(1, 2).abs()
    assert (err <= bound + SLACK).all(), f"max err - bound {(err - bound).max().item():.3e}"
    assert err.max() > 0


@pytest.mark.parametrize("dtype", DT)
@pytest.mark.parametrize("group", [1, 2])  # one query per audio: the CUDA-core products; two: the tensor cores'
def test_cross_attention_int8_within_the_bound_of_float_attention(kops, dev, dtype, group):
    torch.manual_seed(6)
    a, s = 2, 300
    (k, v, ks, vs), kf = _cross_caches(a, s, dev, big=10.0)
    q = (torch.randn(a * group, H * D, device=dev) * 0.5 + 0.1).to(dtype)
    o = kops.cross_attention_int8(q, k, v, 1, group, k_scale=ks, v_scale=vs, chunk=128)
    expect = ref().cross_attention(q.float(), kf[0], kf[1], 1, group)
    rows = torch.arange(a * group, device=dev) // group  # the audio each decoder row reads
    mask = torch.ones(1, 1, 1, s, dtype=torch.bool, device=dev)
    qh = q.double().view(a * group, 1, H, D).transpose(1, 2)
    bound = _lowp_bound(qh, ks[rows].double(), vs[rows].double(), kf[1][rows].double(), mask, dtype)
    err = (o.double() - expect.double()).view(a * group, 1, H, D).transpose(1, 2).abs()
    assert (err <= bound + SLACK).all(), f"max err - bound {(err - bound).max().item():.3e}"
    assert err.max() > 0


def test_int8_launchers_check_the_caches_and_scales(kops, dev):
    k, v, ks, vs = _self_caches(1, 8, dev)
    qkv = torch.zeros(1, 3 * H * D, device=dev, dtype=torch.float16)
    pos = torch.tensor([0], device=dev)
    with pytest.raises(ValueError, match=r"int8 K/V \[rows, H, L, D\] with float32 scales \[rows, H, L, 1\], got "
                                         r"torch.int8 \(2, 4, 8, 64\) and torch.float16 \(2, 4, 8, 1\)"):
        kops.self_attention_int8(qkv, k, v, pos, 1, k_scale=ks.half(), v_scale=vs)
    with pytest.raises(ValueError, match=r"got torch.float16 \(2, 4, 8, 64\) and torch.float32"):
        kops.self_attention_int8(qkv, k.half(), v, pos, 1, k_scale=ks, v_scale=vs)
    with pytest.raises(ValueError, match=r"cross_attention_int8: .* torch.float32 \(2, 4, 7, 1\)"):
        kops.cross_attention_int8(qkv[:, :H * D], k, v, 1, k_scale=ks, v_scale=vs[:, :, :7])


def test_quantize_kv_kernel_is_the_reference_bit_for_bit(kops, dev):
    """``ops.quantize_kv`` (the int8 cache's cross K/V, once per audio) into strided views like the engine's cross
    storage ``[rows, S, 2, H, D]``: the same int8 values and float32 scales as ``quantize_kv``, zero rows (scale 1)
    and exact halves (ties to even) included."""
    from trtllm_ext.quantization import quantize_kv

    a, s = 3, 1500
    store = torch.zeros(a, s, 2, H, D, dtype=torch.int8, device=dev)
    scales = torch.zeros(a, s, 2, H, 1, device=dev)
    k_view, k_scales = store.permute(2, 0, 3, 1, 4)[0], scales.permute(2, 0, 3, 1, 4)[0]
    gen = torch.Generator().manual_seed(5)
    x = (torch.randn(a, s, H, D, generator=gen) * torch.rand(a, s, H, 1, generator=gen) * 4).half()
    x = x.to(dev).permute(0, 2, 1, 3)  # [a, H, s, D], the projection's strides
    x[0, 1, 2] = 0
    x[1, 0, 0] = torch.arange(-D // 2, D // 2, device=dev).half() * 127 / (D // 2) / 2  # many x / scale = k + 1/2
    kops.quantize_kv(x, k_view, k_scales)
    q, sc = quantize_kv(x)
    assert torch.equal(k_view, q) and torch.equal(k_scales, sc)
    assert k_scales[0, 1, 2].item() == 1.0
    assert not store[:, :, 1].any()  # the V half untouched
    with pytest.raises(ValueError, match="quantize_kv"):
        kops.quantize_kv(x, k_view[:2], k_scales)
