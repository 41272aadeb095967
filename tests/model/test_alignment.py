"""The word-alignment pass through the decoder seam (``TextDecoder.align``) and the checkpoints' alignment heads.

CPU: the eager decoder's and the engine's ``align`` equal a float64 reference of the same forward (the scores are
q.k / sqrt(head_dim) of the chosen heads, the probabilities the next tokens' under a softmax over ids < limit).
GPU (``gpu``): the fp16 engine's word times are within 0.1 s of the fp32 CPU ones on the shared clips.
"""
import json
import os
import warnings
from pathlib import Path

import pytest
import torch

from trtllm_ext import init_random_
from whisper_model.config import MODEL_DIMS, scaled
from whisper_model.decode.alignment import heads_of
from whisper_model.errors import CheckpointError
from whisper_model.fast.engine import accelerate
from whisper_model.io.alignment_heads import default_heads, parse_heads, read_alignment_heads
from whisper_model.io.export import save_hf, save_openai
from whisper_model.model import Whisper

try:
    from ._paths import MISSING, clips
except ImportError:
    from _paths import MISSING, clips

DIMS = scaled(MODEL_DIMS["tiny"], n_audio_ctx=40, n_audio_layer=2, n_text_layer=3, n_audio_state=64,
              n_text_state=64, n_audio_head=4, n_text_head=4, n_text_ctx=24)
HEADS = ((0, 3), (1, 0), (2, 1), (2, 2))


def make(dtype=torch.float32, device="cpu"):
    return init_random_(Whisper(DIMS, dtype=dtype, device=device), seed=3).eval()


def reference_align(model, xa, tokens, heads, limit):
    """Float64: every layer written out from the model's weights (whole sequences, causal)."""
    import torch.nn.functional as F

    dec = model.decoder
    d = lambda t: t.detach().double()  # noqa: E731
    lin = lambda x, layer: F.linear(x, d(layer.weight), d(layer.bias))  # noqa: E731
    norm = lambda x, ln: F.layer_norm(x, (x.shape[-1],), d(ln.weight), d(ln.bias), ln.eps)  # noqa: E731
    b, t = tokens.shape
    hd = DIMS.n_text_state // DIMS.n_text_head
    x = d(dec.token_embedding.weight)[tokens] + d(dec.positional_embedding)[:t]
    causal = torch.ones(t, t, dtype=torch.bool).tril()
    found = {}

    def split(y):  # [b, s, d] -> [b, h, s, hd]
        return y.view(b, y.shape[1], DIMS.n_text_head, hd).transpose(1, 2)

    for i, blk in enumerate(dec.blocks):
        q, k, v = (split(p) for p in lin(norm(x, blk.attn_ln), blk.attn.qkv).chunk(3, dim=-1))
        att = (q @ k.transpose(-1, -2) / hd ** 0.5).masked_fill(~causal, float("-inf")).softmax(-1)
        x = x + lin((att @ v).transpose(1, 2).reshape(b, t, -1), blk.attn.dense)
        q = split(lin(norm(x, blk.cross_attn_ln), blk.cross_attn.query))
        kc, vc = (split(p) for p in lin(xa.double(), blk.cross_attn.kv).chunk(2, dim=-1))
        s = q @ kc.transpose(-1, -2) / hd ** 0.5
        for layer, head in heads:
            if layer == i:
                found[(layer, head)] = s[:, head]
        x = x + lin((s.softmax(-1) @ vc).transpose(1, 2).reshape(b, t, -1), blk.cross_attn.dense)
        x = x + lin(F.gelu(lin(norm(x, blk.mlp_ln), blk.mlp.fc)), blk.mlp.proj)
    logits = norm(x, dec.ln) @ d(dec.token_embedding.weight).T
    p = logits[:, :-1, :limit].softmax(-1)
    nxt = tokens[:, 1:]
    probs = p.gather(-1, nxt.clamp(max=limit - 1)[..., None])[..., 0].masked_fill(nxt >= limit, 0)
    return probs, torch.stack([found[h] for h in heads], 1)


def rel(a, b):
    return float((a.double() - b.double()).norm() / b.double().norm())


@pytest.mark.parametrize("which", ["eager", "engine"])
def test_align_matches_float64_reference(which):
    """Rows of different lengths padded at the end (the padding never changes the real positions)."""
    torch.manual_seed(0)
    model = make()
    xa = torch.randn(3, DIMS.n_audio_ctx, DIMS.n_text_state)
    tokens = torch.randint(0, DIMS.n_vocab, (3, 11))
    limit = DIMS.n_vocab - 100
    tokens[0, 4] = limit + 5  # an id past the limit: probability 0
    dec = model.text_decoder if which == "eager" else accelerate(model, max_batch_size=4, kernels="torch").text_decoder
    dec.reserve(3)
    dec.set_audio(xa)
    dec.step(torch.randint(0, 100, (3, 2)), torch.arange(2))  # an earlier decode in the same caches
    probs, scores = dec.align(tokens, HEADS, limit)
    ref_probs, ref_scores = reference_align(model, xa, tokens, HEADS, limit)
    assert probs.shape == (3, 10) and scores.shape == (3, len(HEADS), 11, DIMS.n_audio_ctx)
    assert probs.dtype == scores.dtype == torch.float32
    assert rel(scores, ref_scores) < 1e-5 and rel(probs, ref_probs) < 1e-5
    assert probs[0, 3] == 0
    short = tokens[1:2, :6]  # row 1 alone, shorter: its scores are the first 6 positions of the batch's
    dec.set_audio(xa[1:2])
    _, alone = dec.align(short, HEADS, limit)
    assert rel(alone[0], scores[1, :, :6]) < 1e-5


def test_align_refuses_rows_that_are_not_one_per_audio():
    model = make()
    dec = model.text_decoder
    dec.reserve(4)
    dec.set_audio(torch.randn(2, DIMS.n_audio_ctx, DIMS.n_text_state))
    with pytest.raises(ValueError, match="one row per audio"):
        dec.align(torch.zeros(4, 3, dtype=torch.long), HEADS, 100)
    with pytest.raises(ValueError, match="layers the decoder does not have"):
        dec.align(torch.zeros(2, 3, dtype=torch.long), ((5, 0),), 100)
    with pytest.raises(ValueError, match="do not exist"):
        dec.align(torch.zeros(2, 3, dtype=torch.long), ((0, 9),), 100)


def test_alignment_heads_of_each_checkpoint_format(tmp_path):
    """CTranslate2 config.json (the bundled models), Hugging Face generation_config.json and an openai .pt
    written by our exporters; none recorded: None, and the fallback with one warning."""
    from whisper_model.io.weights import load_checkpoint

    dims, sd = load_checkpoint("tiny.en")
    heads = read_alignment_heads("tiny.en", dims)
    assert heads == ((1, 0), (2, 0), (2, 5), (3, 0), (3, 1), (3, 2), (3, 3), (3, 4))
    save_hf(dims, sd, tmp_path / "hf", dtype=torch.float16, alignment_heads=heads)
    assert read_alignment_heads(tmp_path / "hf", dims) == heads
    save_openai(dims, sd, tmp_path / "a.pt", alignment_heads=heads)
    assert read_alignment_heads(tmp_path / "a.pt", dims) == heads
    save_openai(dims, sd, tmp_path / "plain" / "b.pt")
    assert read_alignment_heads(tmp_path / "plain" / "b.pt", dims) is None
    model = make()
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        assert heads_of(model) == default_heads(DIMS) == tuple((layer, h) for layer in (1, 2) for h in range(4))
        heads_of(model)
    assert len([w for w in seen if "alignment heads" in str(w.message)]) == 1
    model.alignment_heads = HEADS
    assert heads_of(model) == HEADS


@pytest.mark.parametrize("value, match", [
    ([[0, 1], [3, 0]], "outside"), ([[0, -1]], "outside"), ([], "non-empty"), ([[0, 1, 2]], "pairs"),
    ("0,1", "pairs"), ([[0.5, 1]], "pairs"), (torch.ones(2, 4, dtype=torch.bool), r"\[3, 4\]"),
])
def test_bad_alignment_heads_are_named(value, match):
    with pytest.raises(CheckpointError, match=match):
        parse_heads(value, DIMS, "x/config.json")
    assert parse_heads(torch.eye(3, 4, dtype=torch.bool), DIMS, "m") == ((0, 0), (1, 1), (2, 2))


def test_unreadable_sidecar_is_named(tmp_path):
    from whisper_model.io.weights import load_checkpoint

    dims, sd = load_checkpoint("tiny.en")
    out = save_hf(dims, sd, tmp_path / "hf", dtype=torch.float16)
    (out / "generation_config.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="generation_config.json"):
        read_alignment_heads(out, dims)
    (out / "generation_config.json").write_text(json.dumps({"alignment_heads": [[9, 9]]}))
    with pytest.raises(CheckpointError, match="outside"):
        read_alignment_heads(out, dims)


GPU_CLIPS = [c for c in ("en_jfk.wav", "en_lecture_60s.wav", "en_librivox_0870.wav",
                         "en_asterisk_demo_instruct_8k.wav") if c in clips()] or [MISSING]


@pytest.mark.gpu
def test_engine_fp16_words_within_a_tenth_of_a_second_of_cpu_fp32(tmp_path):
    """The engine (fp16, Triton kernels + graphs) against the eager fp32 CPU model, both with word timestamps;
    on segments whose text is the same (fp16 may pick another word now and then), every word within 0.1 s.
    ``WHISPER_TEST_TINY_EN``: tiny.en as a built engine directory (where the bundled package is not installed)."""
    from trtllm_ext import kernels
    from whisper_model.fast.build import build
    from whisper_model.io.audio import load_audio
    from whisper_model.pipeline import WhisperModel

    try:
        from ._paths import AUDIO_DIR
    except ImportError:
        from _paths import AUDIO_DIR
    if GPU_CLIPS == [MISSING] or not kernels.available("cuda"):
        pytest.skip("needs the shared clips and triton")
    source = os.environ.get("WHISPER_TEST_TINY_EN", "tiny.en")  # the device: an engine dir carried there
    engine = Path(source) if (Path(source) / "engine.json").is_file() else tmp_path / "eng"
    if engine == tmp_path / "eng":
        build(source, engine, dtype="float16", max_batch_size=4, warm=False)
    gpu, cpu = WhisperModel.from_engine(engine), WhisperModel(engine if source != "tiny.en" else source, device="cpu")
    assert gpu.model.alignment_heads == cpu.model.alignment_heads
    audios = [load_audio(AUDIO_DIR / c) for c in GPU_CLIPS]
    fast = gpu.transcribe_batch(audios, batch_size=4, language="en", word_timestamps=True)
    compared, worst = 0, 0.0
    for audio, (segments, _) in zip(audios, fast):
        exact, _ = cpu.transcribe(audio, language="en", word_timestamps=True)
        by_text = {(s.seek, s.text): s for s in exact}
        for s in segments:
            other = by_text.get((s.seek, s.text))
            if other is None or [w.word for w in s.words] != [w.word for w in other.words]:
                continue
            for a, b in zip(s.words, other.words):
                worst = max(worst, abs(a.start - b.start), abs(a.end - b.end))
                compared += 1
    print(f"{compared} words compared, worst difference {worst:.3f} s")
    assert compared >= 100 and worst <= 0.1 + 1e-9


def test_the_alignment_pass_takes_back_the_decodes_cross_kv(monkeypatch):
    """A window decoded at temperature 0 then word-timed computes its cross K/V once (the alignment pass takes
    them back, ``put_audio``), with the same words and times as when they are computed again."""
    from whisper_model import WhisperModel
    from whisper_model.model.caches import DecoderCaches
    from whisper_model.model.whisper import WhisperDecoder

    sample = str(Path(__file__).resolve().parents[2] / "samples" / "jfk.mp3")
    model = WhisperModel("tiny.en", device="cpu")
    calls = []
    set_audio_on = WhisperDecoder.set_audio_on

    def counted(self, caches, xa, **kw):
        calls.append(xa.shape[0])
        return set_audio_on(self, caches, xa, **kw)

    monkeypatch.setattr(WhisperDecoder, "set_audio_on", counted)

    def words():
        segments, _ = model.transcribe(sample, language="en", word_timestamps=True, temperature=0.0)
        return [(w.word, w.start, w.end, w.probability) for s in segments for w in s.words]

    reused = words()
    assert reused and calls == [1]  # one 30 s window: its decode's set_audio, none for the alignment
    monkeypatch.setattr(DecoderCaches, "recall_audio", lambda self, xa: False)
    assert words() == reused and calls == [1, 1, 1]
