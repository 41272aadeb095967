"""The fast path (``whisper_model.fast.engine``) computes what the eager model computes.

CPU: the engine's step through the plain-PyTorch ops equals the model's reference decoder. GPU (marked
``gpu``): fused Triton kernels + captured CUDA graphs (with and without PDL), in fp16, against the model.
"""
import pytest
import torch

from trtllm_ext import KVCache, init_random_
from trtllm_ext.kernels import reference
from whisper_model.config import MODEL_DIMS, scaled
from whisper_model.fast.engine import accelerate
from whisper_model.model import Whisper

DIMS = scaled(MODEL_DIMS["tiny"], n_audio_ctx=60, n_audio_layer=2, n_text_layer=2, n_audio_state=128,
              n_text_state=128, n_audio_head=2, n_text_head=2, n_text_ctx=24)


def rel(a, b):
    a, b = a.float(), b.float()
    return float((a - b).norm() / b.norm())


def make(dtype=torch.float32, device="cpu"):
    torch.manual_seed(0)
    return init_random_(Whisper(DIMS, dtype=dtype, device=device), seed=5).eval()


def run_steps(dec, tokens, prefill):
    """Prefill ``prefill`` tokens, then one token per call: logits [B, T, V]."""
    dev = tokens.device
    out = [dec.step(tokens[:, :prefill], torch.arange(prefill, device=dev))]
    for p in range(prefill, tokens.shape[1]):
        out.append(dec.step(tokens[:, p:p + 1], torch.tensor([p], device=dev)))
    return torch.cat(out, 1)


def check_engine(model, fast, tol, device):
    mel = torch.randn(2, DIMS.n_mels, 2 * DIMS.n_audio_ctx, device=device)
    with torch.no_grad():
        xa_ref = model.encoder(mel.to(model.dtype))
        xa = fast.encoder(mel)
        assert rel(xa, xa_ref) < tol
        tokens = torch.randint(0, DIMS.n_vocab, (2, 12), device=device)
        expect = model.decoder(tokens, xa=xa_ref)
        fast.text_decoder.set_audio(xa_ref)
        assert rel(run_steps(fast.text_decoder, tokens[:, :7], 3), expect[:, :7]) < tol
        assert rel(run_steps(fast.text_decoder, tokens, 10), expect) < tol  # a long prompt runs outside the graphs
        # beams: 2 audios x 3 rows each share their audio's cross K/V; then a reorder
        fast.text_decoder.set_audio(xa_ref)
        tok3 = tokens.repeat_interleave(3, 0)
        exp3 = expect.repeat_interleave(3, 0)
        assert rel(run_steps(fast.text_decoder, tok3[:, :5], 4), exp3[:, :5]) < tol
        idx = torch.tensor([2, 0, 1, 3, 3, 5], device=device)
        fast.text_decoder.reorder(idx)
        got = fast.text_decoder.step(tok3[idx, 5:6], torch.tensor([5], device=device))
        assert rel(got, exp3[idx, 5:6]) < tol
        # fewer rows than the bucket / than the caches hold
        fast.text_decoder.set_audio(xa_ref[:1])
        assert rel(run_steps(fast.text_decoder, tokens[:1], 2), expect[:1]) < tol


def test_engine_torch_ops_match_model_on_cpu():
    model = make()
    fast = accelerate(model, max_batch_size=2, max_beam_width=3, kernels="torch")
    assert fast.text_decoder.rows == 6
    assert fast.dims == DIMS and fast.is_multilingual == model.is_multilingual
    check_engine(model, fast, 1e-5, "cpu")


def check_per_row_positions(model, fast, tol, device):
    """input_pos [B, T]: rows at different positions (a prefill whose rows are permutations, then steps) give
    each row what the reference decoder gives it alone."""
    torch.manual_seed(11)
    xa = model.encoder(torch.randn(3, DIMS.n_mels, 2 * DIMS.n_audio_ctx, device=device).to(model.dtype))
    tokens = torch.randint(0, DIMS.n_vocab, (3, 9), device=device)
    with torch.no_grad():
        expect = model.decoder(tokens, xa=xa)  # [3, 9, V]
        fast.text_decoder.set_audio(xa)
        # row i has n0 = 2, 4, 3 real tokens; the prefill is 4 wide: pad columns go after the real positions
        n0 = [2, 4, 3]
        pre_tok = torch.zeros(3, 4, dtype=torch.long, device=device)
        pre_pos = torch.zeros(3, 4, dtype=torch.long, device=device)
        for i, n in enumerate(n0):
            pad = 4 - n
            pre_tok[i, pad:] = tokens[i, :n]
            pre_pos[i] = torch.tensor(list(range(n, 4)) + list(range(n)))
        got = fast.text_decoder.step(pre_tok, pre_pos)
        for i, n in enumerate(n0):
            assert rel(got[i, 4 - n:], expect[i, :n]) < tol
        for k in range(3):  # one token per row per step, each at its own next position
            step_tok = torch.stack([tokens[i, n + k] for i, n in enumerate(n0)])[:, None]
            step_pos = torch.tensor([[n + k] for n in n0], device=device)
            got = fast.text_decoder.step(step_tok, step_pos)
            for i, n in enumerate(n0):
                assert rel(got[i, 0], expect[i, n + k]) < tol
        with pytest.raises(ValueError):
            fast.text_decoder.step(step_tok, step_pos[:2])


def test_engine_per_row_positions_cpu():
    model = make()
    check_per_row_positions(model, accelerate(model, max_batch_size=4, kernels="torch"), 1e-5, "cpu")


def check_modes(model, fast, tol, device):
    """Buffers first made under inference_mode stay usable under no_grad, and the other way round: in each mode the
    encoder and a two-step decode give the model's results, and what comes back can be written in place."""
    torch.manual_seed(2)
    mel = torch.randn(1, DIMS.n_mels, 2 * DIMS.n_audio_ctx, device=device)
    tokens = torch.randint(0, DIMS.n_vocab, (1, 2), device=device)
    with torch.no_grad():
        xa_ref = model.encoder(mel.to(model.dtype))
        expect = model.decoder(tokens, xa=xa_ref)
    for first, second in ((torch.inference_mode, torch.no_grad), (torch.no_grad, torch.inference_mode)):
        fast.text_decoder.reserve(fast.text_decoder.rows + 1)  # fresh caches and steps
        for mode in (first, second):
            where = f"{mode.__name__} after {first.__name__}"
            with mode():
                xa = fast.encoder(mel)
                fast.text_decoder.set_audio(xa)
                logits = run_steps(fast.text_decoder, tokens, 1)
                assert rel(xa, xa_ref) < tol and rel(logits, expect) < tol, where
                logits[:, :, 0] = float("-inf")  # callers filter logits in place (inside the mode they ran in)
                xa.add_(1)
            assert logits[:, :, 0].isneginf().all() and rel(xa - 1, xa_ref) < tol, where


def test_engine_inference_mode_then_no_grad_cpu():
    model = make()
    check_modes(model, accelerate(model, kernels="torch"), 1e-5, "cpu")


def test_engine_setup_and_errors():
    model = make()
    fast = accelerate(model, max_batch_size=1, kernels="torch")
    dec = fast.text_decoder
    with pytest.raises(RuntimeError, match="no audio"):
        dec.step(torch.zeros(1, 1, dtype=torch.long), torch.tensor([0]))
    dec.reserve(4)
    assert dec.rows == 4 and dec.caches.self_store.shape[2] == 4 and dec.caches.self[0].max_batch == 4
    with pytest.raises(ValueError, match="do not fit 4 rows"):
        dec.set_audio(torch.zeros(5, DIMS.n_audio_ctx, DIMS.n_text_state))
    dec.set_audio(torch.randn(2, DIMS.n_audio_ctx, DIMS.n_text_state))
    with pytest.raises(ValueError, match="do not divide among 2 audio rows"):
        dec.step(torch.zeros(3, 1, dtype=torch.long), torch.tensor([0]))  # 3 rows over 2 audios
    with pytest.raises(ValueError, match="exceeds the 4 cache rows"):
        dec.step(torch.zeros(6, 1, dtype=torch.long), torch.tensor([0]))
    dec.release()
    with pytest.raises(RuntimeError, match="no audio"):
        dec.step(torch.zeros(2, 1, dtype=torch.long), torch.tensor([0]))
    with pytest.raises(ValueError):
        accelerate(model, kernels="cuda")


@pytest.mark.gpu
@pytest.mark.parametrize("pdl", [0, 1, 2])
def test_engine_triton_graphs_match_model_on_gpu(pdl):
    from trtllm_ext import kernels

    if not kernels.available("cuda"):
        pytest.skip("needs triton")
    model = make(torch.float16, "cuda")
    fast = accelerate(model, max_batch_size=2, max_beam_width=3, kernels="triton", pdl=pdl)
    check_engine(model, fast, 5e-3, "cuda")
    check_per_row_positions(model, fast, 5e-3, "cuda")
    check_modes(model, fast, 5e-3, "cuda")


@pytest.mark.gpu
def test_engine_torch_ops_graphs_match_model_on_gpu():
    model = make(torch.float16, "cuda")
    fast = accelerate(model, max_batch_size=2, max_beam_width=3, kernels="torch")
    check_engine(model, fast, 5e-3, "cuda")


@pytest.mark.gpu
def test_warm_up_captures_every_bucket_and_large_encoder_batches_run_eagerly():
    """After ``warm_up(rows)`` a decode of any row count up to ``rows`` (sot prompt, then one token per step)
    captures nothing new; encoder batches above ``MAX_GRAPH_BATCH`` run eagerly with the same result as a
    captured batch's rows."""
    from whisper_model.fast.engine import FastEncoder

    model = make(torch.float16, "cuda")
    fast = accelerate(model, max_batch_size=12, max_beam_width=1)
    assert fast.warm_up(12, prompt_lens=(3, 4)) > 0
    dec = fast.text_decoder
    steps, graphs = set(dec._steps), set(fast.encoder._graphs)
    assert {k[0] for k in steps} == {1, 2, 4, 8, 12} and {k[1] for k in steps} == {1, 3, 4}
    assert graphs == set(range(1, FastEncoder.MAX_GRAPH_BATCH + 1))
    mel = torch.randn(12, DIMS.n_mels, 2 * DIMS.n_audio_ctx, device="cuda")
    for b in (1, 3, 5, 12):
        xa = fast.encoder(mel[:b])
        dec.set_audio(xa)
        run_steps(dec, torch.randint(0, DIMS.n_vocab, (b, 6), device="cuda"), 3)
    assert set(dec._steps) == steps and set(fast.encoder._graphs) == graphs
    big, small = fast.encoder(mel), fast.encoder(mel[:4])
    assert rel(big[:4], small) < 5e-3 and rel(big, model.encoder(mel.half())) < 5e-3


@pytest.mark.gpu
def test_growing_the_rows_drops_the_graphs_and_their_pool():
    """``reserve`` beyond the rows (sampling with best_of on an engine sized for fewer rows) captures new graphs in
    a new pool: capturing into the dropped graphs' pool failed in the allocator (seen in the server on an H100)."""
    model = make(torch.float16, "cuda")
    fast = accelerate(model, max_batch_size=2, max_beam_width=1)
    dec = fast.text_decoder
    mel = torch.randn(2, DIMS.n_mels, 2 * DIMS.n_audio_ctx, device="cuda")
    xa = fast.encoder(mel)
    tokens = torch.randint(0, DIMS.n_vocab, (2, 6), device="cuda")
    dec.set_audio(xa)
    first = run_steps(dec, tokens, 3)
    for _ in range(2):  # grow twice: each time the graphs so far go
        dec.reserve(dec.rows * 4)
        dec.set_audio(xa)
        assert rel(run_steps(dec, tokens, 3), first) < 5e-3
        dec.set_audio(xa.repeat_interleave(4, 0))  # more rows than before, four per audio
        got = run_steps(dec, tokens.repeat_interleave(4, 0), 3)
        assert rel(got, first.repeat_interleave(4, 0)) < 5e-3


@pytest.mark.gpu
def test_the_alignment_pass_is_captured_per_shape_and_equals_the_eager_pass():
    """``align`` pads the tokens to a multiple of ``ALIGN_WIDTH`` (16; the context, 24, at most) and replays one
    graph per (audio rows, width, heads): the probabilities and scores of the eager model's pass on the unpadded
    tokens; another length of the same width replays the same graph."""
    model = make(torch.float16, "cuda")
    fast = accelerate(model, max_batch_size=3, max_beam_width=1)
    dec, ref = fast.text_decoder, model.decoder
    heads, eot = ((0, 1), (1, 0), (1, 1)), 50257
    xa = fast.encoder(torch.randn(3, DIMS.n_mels, 2 * DIMS.n_audio_ctx, device="cuda"))
    ref.reserve(3)
    for a, t in ((1, 5), (3, 9), (3, 20), (2, 24), (1, 13)):
        tokens = torch.randint(0, eot, (a, t), device="cuda")
        dec.set_audio(xa[:a])
        ref.set_audio(xa[:a])
        probs, scores = dec.align(tokens, heads, eot)
        want_probs, want_scores = ref.align(tokens, heads, eot)
        assert probs.shape == (a, t - 1) and scores.shape == (a, len(heads), t, DIMS.n_audio_ctx)
        assert rel(probs, want_probs) < 5e-3 and rel(scores, want_scores) < 5e-3
    assert sorted(k[:2] for k in dec._aligns) == [(1, 16), (2, 24), (3, 16), (3, 24)]


def test_build_writes_an_engine_that_loads(tmp_path):
    from whisper_model.fast.build import build
    from whisper_model.fast.engine import ENGINE_FILE, load_engine

    meta = build(None, tmp_path / "eng", dtype="float32", max_batch_size=2, max_beam_width=2,
                 random_weights="tiny.en", warm=False)
    assert (tmp_path / "eng" / ENGINE_FILE).is_file() and meta["max_beam_width"] == 2
    fast = load_engine(tmp_path / "eng", "cpu")
    assert fast.dims == MODEL_DIMS["tiny.en"] and fast.text_decoder.rows == 4
    assert fast.text_decoder.kernels is reference
    xa = torch.randn(1, fast.dims.n_audio_ctx, fast.dims.n_audio_state)
    fast.text_decoder.set_audio(xa)
    logits = fast.text_decoder.step(torch.tensor([[50257, 50362]]), torch.arange(2))
    expect = fast.model.decoder(torch.tensor([[50257, 50362]]), xa=xa)
    assert rel(logits, expect) < 1e-5
    logits[:, :, 0] = float("-inf")  # callers filter logits in place: no inference-mode tensors come back
    fast.encoder(torch.zeros(1, fast.dims.n_mels, 3000)).add_(1)


@pytest.mark.parametrize("engine", [False, True])
def test_reuse_audio_takes_back_the_cross_kv_of_the_same_tensor_only(engine):
    """After a decode's ``release`` the word-alignment pass takes back the cross K/V of the same features
    (``reuse_audio``): the same logits as a fresh ``set_audio``; another tensor (even with equal values), a later
    ``set_audio`` of other audio, or caches grown since are not reused."""
    model = make()
    dec = accelerate(model, max_batch_size=2, kernels="torch").text_decoder if engine else model.decoder
    xa = torch.randn(2, DIMS.n_audio_ctx, DIMS.n_audio_state)
    other = torch.randn(2, DIMS.n_audio_ctx, DIMS.n_audio_state)
    tokens = torch.randint(0, DIMS.n_vocab, (2, 5))
    dec.reserve(2)
    dec.set_audio(xa)
    want = dec.step(tokens, torch.arange(5))
    dec.release()
    assert not dec.reuse_audio(xa.clone())
    assert dec.reuse_audio(xa)
    assert torch.equal(dec.step(tokens, torch.arange(5)), want)
    dec.release()
    dec.set_audio(other)
    dec.release()
    assert not dec.reuse_audio(xa)
    dec.set_audio(xa)
    dec.release()
    dec.reserve(8)  # larger caches: their cross K/V were never written
    assert not dec.reuse_audio(xa)


def test_both_decoders_implement_the_seam_and_own_their_caches():
    """The eager decoder and the engine each implement ``TextDecoder``; the engine never touches the eager
    layers' state (their caches stay unset) and the two keep separate caches."""
    from whisper_model.decode import SpeechModel, TextDecoder

    model = make()
    fast = accelerate(model, max_batch_size=2, kernels="torch")
    assert isinstance(model, SpeechModel) and isinstance(fast, SpeechModel)
    assert isinstance(model.text_decoder, TextDecoder) and isinstance(fast.text_decoder, TextDecoder)
    xa = torch.randn(2, DIMS.n_audio_ctx, DIMS.n_text_state)
    tokens = torch.randint(0, DIMS.n_vocab, (2, 5))
    fast.text_decoder.set_audio(xa)
    got = run_steps(fast.text_decoder, tokens, 3)
    assert not any(isinstance(b, KVCache) for b in model.modules())  # the layers own no cache
    assert model.decoder.caches is None
    model.text_decoder.reserve(2)
    model.text_decoder.set_audio(xa)
    assert model.decoder.caches is not fast.text_decoder.caches
    assert rel(run_steps(model.text_decoder, tokens, 3), got) < 1e-6
    assert rel(got, model.decoder(tokens, xa)) < 1e-5


def test_eager_and_engine_run_one_forward(monkeypatch):
    """Both paths run ``WhisperDecoder.compute`` (the forward stated once), each with its own op-set."""
    from whisper_model.model import WhisperDecoder

    model = make()
    fast = accelerate(model, max_batch_size=1, kernels="torch")
    seen = []
    real = WhisperDecoder.compute

    def spy(self, ops, caches, tokens, pos, group):
        seen.append((ops, caches))
        return real(self, ops, caches, tokens, pos, group)

    monkeypatch.setattr(WhisperDecoder, "compute", spy)
    xa = torch.randn(1, DIMS.n_audio_ctx, DIMS.n_text_state)
    tok = torch.zeros(1, 1, dtype=torch.long)
    for dec in (model.text_decoder, fast.text_decoder):
        dec.reserve(1)
        dec.set_audio(xa)
        dec.step(tok, torch.tensor([0]))
    assert [c for _, c in seen] == [model.decoder.caches, fast.text_decoder.caches]


def test_the_engine_projects_the_cross_kv_on_its_kernel_module(monkeypatch):
    """set_audio's K/V products run on the engine's kernels (on CUDA a quantized weight is dequantized there in
    one pass, in the activations' dtype), not on the eager op-set; the K/V written equal the eager model's."""
    from whisper_model.model import WhisperDecoder

    model = make()
    fast = accelerate(model, max_batch_size=1, kernels="torch")
    seen = []
    real = WhisperDecoder.set_audio_on

    def spy(self, caches, xa, backend=None):
        seen.append(backend)
        return real(self, caches, xa, *([backend] if backend is not None else []))

    monkeypatch.setattr(WhisperDecoder, "set_audio_on", spy)
    xa = torch.randn(1, DIMS.n_audio_ctx, DIMS.n_text_state)
    for dec in (model.text_decoder, fast.text_decoder):
        dec.reserve(1)
        dec.set_audio(xa)
    assert seen[1] is not None and seen[1].kernels is fast.text_decoder.kernels
    for eager, engine in zip(model.decoder.caches.cross, fast.text_decoder.caches.cross):
        assert all(torch.equal(a, b) for a, b in zip(eager.written(), engine.written()))


@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=pytest.mark.gpu)])
def test_step_keep_gives_only_the_kept_columns(device):
    """``step(tokens, positions, keep)``: the prefill asks for two columns per row (its start-of-transcript and its
    last token); both decoders give exactly those columns of the full logits (the eager one skips the vocabulary
    projection of the others)."""
    dtype = torch.float32 if device == "cpu" else torch.float16
    model = make(dtype, device)
    fast = accelerate(model, max_batch_size=2, kernels="torch")
    xa = torch.randn(2, DIMS.n_audio_ctx, DIMS.n_text_state, device=device, dtype=dtype)
    tokens = torch.randint(0, DIMS.n_vocab, (2, 6), device=device)
    keep = torch.tensor([[1, 5], [3, 5]], device=device)
    for decoder in (model.text_decoder, fast.text_decoder):
        decoder.reserve(2)
        decoder.set_audio(xa)
        full = decoder.step(tokens, torch.arange(6, device=device))
        decoder.release()
        decoder.reserve(2)
        decoder.set_audio(xa)
        kept = decoder.step(tokens, torch.arange(6, device=device), keep)
        decoder.release()
        assert kept.shape == (2, 2, DIMS.n_vocab)
        expect = full[torch.arange(2, device=device)[:, None], keep]
        assert rel(kept, expect) < (1e-6 if device == "cpu" else 5e-3)


@pytest.mark.gpu
def test_every_capture_warms_up_and_captures_on_one_side_stream(monkeypatch):
    """The encoder's graphs, the steps' and the alignment pass's are all warmed up and captured on the module's
    one capture stream: cuBLAS holds a workspace per stream it ran on, for good (32 MiB each on Hopper), so a
    stream per capture grew the engine's memory with every many-row shape it captured."""
    from whisper_model.fast import engine as engine_module

    made = []
    real = torch.cuda.Stream

    def counted(*args, **kwargs):
        stream = real(*args, **kwargs)
        if not args and "stream_id" not in kwargs:  # a new stream (current_stream() wraps an existing one)
            made.append(stream)
        return stream

    model = make(torch.float16, "cuda")
    monkeypatch.setattr(torch.cuda, "Stream", counted)
    fast = accelerate(model, max_batch_size=12, max_beam_width=1)
    fast.warm_up(12, prompt_lens=(3, 4))  # 12 rows x 4 tokens: products past the fused kernels' 32 rows (cuBLAS)
    mel = torch.randn(2, DIMS.n_mels, 2 * DIMS.n_audio_ctx, device="cuda")
    fast.text_decoder.set_audio(fast.encoder(mel))
    heads = [[0, 0], [1, 1]]
    fast.text_decoder.align(torch.randint(0, DIMS.n_vocab, (2, 5), device="cuda"), heads, DIMS.n_vocab)
    assert len(fast.encoder._graphs) == engine_module.FastEncoder.MAX_GRAPH_BATCH and len(fast.text_decoder._steps) > 5
    ours = [s for s in made if s is not torch.cuda.graph.default_capture_stream]  # torch makes that one, unused
    assert len(ours) <= 1 and all(s is engine_module.capture_stream() for s in ours)
