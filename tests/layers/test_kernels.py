"""Parity of the Triton kernels (trtllm_ext.kernels.ops) with their PyTorch references, on a CUDA GPU.

Fresh random inputs per case, outputs poisoned with NaN first (every element must be written), relative
error against ``trtllm_ext.kernels.reference`` run in float32 on the same (rounded) inputs.
"""
import pytest
import torch

pytestmark = pytest.mark.gpu

DT = [torch.float16, torch.bfloat16]
TOL = {torch.float16: 2e-3, torch.bfloat16: 1.5e-2}


@pytest.fixture(scope="module")
def kops():
    from trtllm_ext import kernels

    if not kernels.available("cuda"):
        pytest.skip("needs CUDA and triton")
    from trtllm_ext.kernels import ops

    return ops


def ref():
    from trtllm_ext.kernels import reference

    return reference


def rel(a, b):
    a, b = a.float(), b.float()
    assert torch.isfinite(a).all(), "output has NaN/inf (an element was not written?)"
    return float((a - b).norm() / b.norm())


def f32(t):
    return None if t is None else t.float()


@pytest.mark.parametrize("dtype", DT)
@pytest.mark.parametrize("m", [1, 3, 16, 29, 32])
@pytest.mark.parametrize("n,k,ln,gelu,res", [(384, 384, True, False, False), (1152, 384, True, False, False),
                                             (384, 1536, False, False, True), (1536, 384, True, True, False),
                                             (1000, 200, False, False, False)])
def test_fused_linear(kops, dtype, m, n, k, ln, gelu, res):
    torch.manual_seed(m * 7 + n)
    x = (torch.randn(m, k, device="cuda") * 3 + 1).to(dtype)
    w = (torch.randn(n, k, device="cuda") * 0.05).to(dtype)
    b = (torch.randn(n, device="cuda") * 0.1).to(dtype)
    lnp = (torch.rand(k, device="cuda") + 0.5, torch.randn(k, device="cuda") * 0.1, 1e-5) if ln else None
    r = torch.randn(m, n, device="cuda").to(dtype) if res else None
    expect = ref().fused_linear(x.float(), w.float(), b.float(), ln=lnp, gelu=gelu, residual=f32(r))
    configs = [None]  # the default kernel for m rows, then the others
    if m > 1:
        configs.append(kops.LinearConfig(16 if m <= 16 else 32, 16, True, 1, 4))  # whole slice, tensor cores
    if not ln:  # K split over 3 programs, reduced by the last one to finish (counters reset for the repeat)
        configs.append(kops.LinearConfig(16, 16, True, 3, 4) if m > 1 else kops.LinearConfig(1, 4, False, 3, 4))
        if m > 1:
            configs.append(kops.LinearConfig(16 if m <= 16 else 32, 32, True, 2, 4, loop_k=128, num_stages=3))
    ws: dict = {}
    for cfg in configs:
        for pdl in ((0, 1, 2) if cfg is None else (1,)):
            y = torch.full((m, n), float("nan"), device="cuda", dtype=dtype)
            kops.fused_linear(x, w, b, ln=lnp, gelu=gelu, residual=r, out=y, pdl=pdl, config=cfg, workspace=ws)
            assert rel(y, expect) < TOL[dtype], f"pdl={pdl}, config={cfg}"


def test_fused_linear_in_place_residual_and_fp32_out(kops):
    torch.manual_seed(1)
    x = torch.randn(4, 256, device="cuda", dtype=torch.float16)
    w = torch.randn(256, 256, device="cuda", dtype=torch.float16) * 0.05
    res = torch.randn(4, 256, device="cuda", dtype=torch.float16)
    expect = ref().fused_linear(x.float(), w.float(), None, residual=res.float())
    kops.fused_linear(x, w, None, residual=res, out=res)
    assert rel(res, expect) < 2e-3
    logits = torch.full((4, 999), float("nan"), device="cuda")
    we = torch.randn(999, 256, device="cuda", dtype=torch.float16) * 0.05
    lnp = (torch.ones(256, device="cuda"), torch.zeros(256, device="cuda"), 1e-5)
    kops.fused_linear(x, we, None, ln=lnp, out=logits)
    assert rel(logits, ref().fused_linear(x.float(), we.float(), ln=lnp)) < 2e-3


@pytest.mark.parametrize("dtype", DT)
@pytest.mark.parametrize("m,n", [(1, 384), (7, 1280), (1500, 512)])
def test_add_layer_norm(kops, dtype, m, n):
    torch.manual_seed(m + n)
    x = (torch.randn(m, n, device="cuda") * 4 + 2).to(dtype)
    r = torch.randn(m, n, device="cuda").to(dtype)
    w, b = torch.rand(n, device="cuda") + 0.5, torch.randn(n, device="cuda")
    expect_x = (x.float() + r.float()).to(dtype)
    expect = ref().layer_norm(expect_x.float(), w, b, 1e-5)
    y = torch.full_like(x, float("nan"))
    kops.layer_norm(x, w, b, 1e-5, residual=r, x_out=x, out=y)
    assert torch.equal(x, expect_x)
    assert rel(y, expect) < TOL[dtype]
    assert rel(kops.layer_norm(x, w, b, 1e-5), ref().layer_norm(x.float(), w, b, 1e-5)) < TOL[dtype]


def test_embed(kops):
    tokens = torch.randint(0, 500, (3, 4), device="cuda")
    pos = torch.tensor([5, 6, 7, 8], device="cuda")
    emb, pemb = torch.randn(500, 384, device="cuda").half(), torch.randn(20, 384, device="cuda").half()
    assert torch.equal(kops.embed(tokens, pos, emb, pemb), ref().embed(tokens, pos, emb, pemb))


@pytest.mark.parametrize("dtype", DT)
@pytest.mark.parametrize("b,t,pos0", [(1, 1, 0), (3, 1, 130), (2, 4, 0), (5, 3, 57), (1, 1, 447)])
def test_self_attention(kops, dtype, b, t, pos0):
    torch.manual_seed(b * 100 + pos0)
    h, d, max_len = 6, 64, 448
    caches = torch.randn(2, b + 1, h, max_len, d, device="cuda").to(dtype)  # K and V before the step
    kc_ref, vc_ref = caches.float().clone()
    qkv = torch.randn(b * t, 3 * h * d, device="cuda").to(dtype)
    pos = torch.arange(pos0, pos0 + t, device="cuda")
    expect = ref().self_attention(qkv.float(), kc_ref, vc_ref, pos, t)  # writes the step's K/V into kc_ref, vc_ref
    for pdl in (0, 1, 2):  # each level on fresh caches, checked on its own
        kc, vc = caches.clone()
        o = torch.full((b * t, h * d), float("nan"), device="cuda", dtype=dtype)
        kops.self_attention(qkv, kc, vc, pos, t, out=o, pdl=pdl)
        assert rel(o, expect) < TOL[dtype], f"pdl={pdl}"
        assert torch.equal(kc.float(), kc_ref) and torch.equal(vc.float(), vc_ref), f"pdl={pdl}: other K/V written"


@pytest.mark.parametrize("b,t,pos0", [(1, 1, 64), (2, 1, 5), (2, 3, 70), (1, 16, 40)])
def test_self_attention_reads_no_stale_cache_at_the_new_positions(kops, b, t, pos0):
    """A one-token step fetches its first cache tile before the new K/V are stored (steps of several tokens store
    first): whatever the cache held at the new positions (NaN here, as a reused cache may) must not reach the
    output."""
    torch.manual_seed(b + t + pos0)
    h, d, max_len = 4, 64, 160
    caches = torch.randn(2, b, h, max_len, d, device="cuda").half()
    caches[:, :, :, pos0:] = float("nan")
    kc_ref, vc_ref = caches.float().nan_to_num().clone()
    qkv = torch.randn(b * t, 3 * h * d, device="cuda").half()
    pos = torch.arange(pos0, pos0 + t, device="cuda")
    expect = ref().self_attention(qkv.float(), kc_ref, vc_ref, pos, t)
    for pdl in (0, 1, 2):
        kc, vc = caches.clone()
        o = kops.self_attention(qkv, kc, vc, pos, t, pdl=pdl)
        assert rel(o, expect) < TOL[torch.float16], f"pdl={pdl}"


@pytest.mark.parametrize("int8", [False, True])
@pytest.mark.parametrize("b,pos0", [(1, 0), (2, 37), (1, 63), (3, 64), (2, 300)])
def test_a_one_token_step_fetching_its_first_tile_early_equals_reading_it_after_the_store(kops, int8, b, pos0):
    """PDL level 1 (and 0) fetch a one-token step's first cache tile before the new K/V are stored and put the new
    row in from registers; level 2 reads the tile after the store: the outputs and caches are the same bits."""
    torch.manual_seed(b + pos0)
    h, d, max_len = 4, 64, 448
    qkv = torch.randn(b, 3 * h * d, device="cuda").half()
    pos = torch.full((1,), pos0, device="cuda")
    if int8:
        store = torch.randint(-127, 128, (2, b, h, max_len, d), device="cuda", dtype=torch.int8)
        scales = torch.rand(2, b, h, max_len, 1, device="cuda") * 0.01
    else:
        store = torch.randn(2, b, h, max_len, d, device="cuda").half()
    runs = []
    for pdl in (0, 1, 2):
        kv = store.clone()
        if int8:
            sc = scales.clone()
            o = kops.self_attention_int8(qkv, kv[0], kv[1], pos, 1, k_scale=sc[0], v_scale=sc[1], pdl=pdl)
            runs.append((o, kv, sc))
        else:
            runs.append((kops.self_attention(qkv, kv[0], kv[1], pos, 1, pdl=pdl), kv))
    for pdl, run in zip((0, 1), runs):
        assert all(torch.equal(x, y) for x, y in zip(run, runs[2])), f"pdl={pdl} differs from level 2"


def test_embed_and_self_attention_per_row_positions(kops):
    """pos [B, T]: row i's tokens at its own positions (unsorted within a row) equal that row run alone."""
    torch.manual_seed(3)
    b, t, h, d, max_len = 3, 4, 6, 64, 448
    pos = torch.tensor([[0, 1, 2, 3], [7, 4, 6, 5], [300, 301, 302, 303]], device="cuda")
    tokens = torch.randint(0, 500, (b, t), device="cuda")
    emb, pemb = torch.randn(500, 384, device="cuda").half(), torch.randn(max_len, 384, device="cuda").half()
    got = kops.embed(tokens, pos, emb, pemb).view(b, t, -1)
    for i in range(b):
        assert torch.equal(got[i], ref().embed(tokens[i:i + 1], pos[i], emb, pemb))
    kc = torch.randn(b, h, max_len, d, device="cuda").half()
    vc = torch.randn_like(kc)
    kc_ref, vc_ref = kc.float().clone(), vc.float().clone()
    qkv = torch.randn(b * t, 3 * h * d, device="cuda").half()
    o = kops.self_attention(qkv, kc, vc, pos, t, pdl=1).view(b, t, -1)
    for i in range(b):
        expect = ref().self_attention(qkv[i * t:(i + 1) * t].float(), kc_ref[i:i + 1], vc_ref[i:i + 1], pos[i], t)
        assert rel(o[i], expect) < TOL[torch.float16]
    assert torch.equal(kc.float(), kc_ref) and torch.equal(vc.float(), vc_ref)
    with pytest.raises(ValueError):
        kops.self_attention(qkv, kc, vc, pos[:, :3], t)


@pytest.mark.parametrize("dtype", DT)
@pytest.mark.parametrize("a,group,t,s,chunk,inline", [(1, 1, 1, 1500, 256, True), (2, 1, 1, 1500, 128, False),
                                                      (2, 5, 1, 1500, 256, True), (3, 2, 4, 1500, 512, True),
                                                      (4, 1, 1, 100, 256, True), (1, 3, 2, 1500, 1024, False)])
def test_cross_attention(kops, dtype, a, group, t, s, chunk, inline):
    torch.manual_seed(a * 13 + group + s)
    h, d = 8, 64
    store = torch.randn(a + 1, s, 2, h, d, device="cuda").to(dtype)  # the engine's [rows, S, 2, H, D] layout
    k, v = store.permute(2, 0, 3, 1, 4)
    q = torch.randn(a * group * t, h * d, device="cuda").to(dtype)
    expect = ref().cross_attention(q.float(), k[:a].float(), v[:a].float(), t, group)
    ws: dict = {}
    for pdl in (0, 1, 2):  # repeated calls also check that the counters were reset
        o = torch.full((a * group * t, h * d), float("nan"), device="cuda", dtype=dtype)
        kops.cross_attention(q, k, v, t, group, out=o, chunk=chunk, inline_combine=inline, workspace=ws, pdl=pdl)
        assert rel(o, expect) < TOL[dtype], f"pdl={pdl}"
    assert int(ws["cnt"].abs().sum()) == 0


@pytest.mark.parametrize("level", [1, 2])
def test_kernels_in_a_cuda_graph_with_pdl(kops, level):
    """A chain linear -> self-attn -> linear -> cross-attn captured with PDL gives the eager result."""
    torch.manual_seed(3)
    h, d, hd = 4, 256, 64
    x = torch.randn(2, d, device="cuda", dtype=torch.float16)
    wqkv = torch.randn(3 * d, d, device="cuda", dtype=torch.float16) * 0.05
    wo = torch.randn(d, d, device="cuda", dtype=torch.float16) * 0.05
    kc = torch.zeros(2, h, 32, hd, device="cuda", dtype=torch.float16)
    vc = torch.zeros_like(kc)
    ck = torch.randn(2, h, 300, hd, device="cuda", dtype=torch.float16)
    cv = torch.randn_like(ck)
    pos = torch.tensor([3], device="cuda")
    ws: dict = {}
    bufs = dict(qkv=torch.empty(2, 3 * d, device="cuda", dtype=torch.float16),
                o=torch.empty(2, d, device="cuda", dtype=torch.float16), y=torch.empty(2, d, device="cuda",
                                                                                       dtype=torch.float16))

    def chain():
        kops.fused_linear(x, wqkv, None, out=bufs["qkv"], pdl=level)
        kops.self_attention(bufs["qkv"], kc, vc, pos, 1, out=bufs["o"], pdl=level)
        kops.fused_linear(bufs["o"], wo, None, out=bufs["y"], pdl=level)
        kops.cross_attention(bufs["y"], ck, cv, 1, out=bufs["o"], workspace=ws, chunk=128, pdl=level)

    chain()
    eager = bufs["o"].clone()
    g = torch.cuda.CUDAGraph()
    with torch.cuda.graph(g):
        chain()
    bufs["o"].fill_(float("nan"))
    g.replay()
    torch.cuda.synchronize()
    assert torch.equal(bufs["o"], eager)
