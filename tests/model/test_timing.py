"""decode/timing.py against openai-whisper's word timestamps (``whisper.timing``, ``whisper.tokenizer``) as the
oracle: word splitting, the alignment matrix, DTW word times (openai's ``find_alignment`` run on a stand-in model
that returns given cross-attention scores), punctuation merging and the placement of words on segments
(``add_word_timestamps`` with ``find_alignment`` patched to return a given alignment)."""
from __future__ import annotations

import copy
import random
from types import SimpleNamespace
from unittest import mock

import numpy as np
import pytest
import torch
from torch import nn

from whisper_model.decode import timing as T
from whisper_model.decode.timing import Word, WordTiming
from whisper_model.io.tokenizer import get_tokenizer

from _requires import openai_whisper

reference = openai_whisper("whisper.timing")
ref_tokenizer = openai_whisper("whisper.tokenizer")

TEXTS = {
    "en": " Hello, world! It's a test-case: (really) \"quoted\" words... 1,234.5 dollars? Yes-no; ok.",
    "fr": " Bonjour, l'été est là ! « Très » bien... Qu'est-ce que c'est ? Aujourd'hui, 20 h 30.",
    "es": " ¿Cómo estás? ¡Muy bien! Él dijo: «sí», y luego — «no». Año 2024.",
    "zh": "对，这就是我，万人敬仰的太乙真人。龘靐齉😀好！",
    "ja": "こんにちは、世界！今日は良い天気ですね。「東京」へ行きます😀。",
    "th": "สวัสดีครับ วันนี้อากาศดีมาก",
}


def tokenizers(language: str, multilingual: bool = True):
    kwargs = dict(multilingual=multilingual, language=language, task="transcribe")
    return get_tokenizer(**kwargs), ref_tokenizer.get_tokenizer(**kwargs)


def outcome(fn, *args):
    try:
        return fn(*args)
    except Exception as e:  # the same failure counts as the same behaviour
        return type(e)


# -- split_to_word_tokens ------------------------------------------------------------------------------------------

def token_lists(ours, text: str) -> list[list[int]]:
    ids = ours.encode(text)
    ts = ours.timestamp_begin
    return [ids, ids + [ours.eot], [ts] + ids[:5] + [ts + 50] + ids[5:] + [ours.eot],
            ids[:-1], ids[1:], ids[:3], [ours.eot], []]


@pytest.mark.parametrize("language", ["en", "fr", "es", "zh", "ja", "th"])
def test_split_to_word_tokens_is_openai(language):
    ours, theirs = tokenizers(language)
    for text in [TEXTS[language], TEXTS["en"], TEXTS["zh"], "a\ufffdb 对\ufffd这 x"]:
        for tokens in token_lists(ours, text):
            want = outcome(theirs.split_to_word_tokens, list(tokens))
            assert outcome(T.split_to_word_tokens, ours, list(tokens)) == want, (language, tokens)


def test_split_partial_utf8_pieces():
    """Characters spread over several tokens stay one piece; a piece is cut only at whole characters."""
    ours, theirs = tokenizers("zh")
    ids = ours.encode("龘靐齉😀")
    assert all("\ufffd" in ours.decode_with_timestamps([i]) for i in ids)  # every token a partial character
    words, word_tokens = T.split_to_word_tokens(ours, ids)
    assert words == ["龘", "靐", "齉", "😀"] and sum(word_tokens, []) == ids
    assert (words, word_tokens) == theirs.split_to_word_tokens(ids)


def test_split_english_only_tokenizer():
    ours, theirs = get_tokenizer(False), ref_tokenizer.get_tokenizer(multilingual=False)
    for tokens in token_lists(ours, TEXTS["en"]):
        assert T.split_to_word_tokens(ours, tokens) == theirs.split_to_word_tokens(tokens)


# -- the alignment matrix and DTW word times -----------------------------------------------------------------------

def openai_matrix(scores, num_frames, n_sot, medfilt_width=7, qk_scale=1.0):
    """openai-whisper's find_alignment steps between the stacked heads and the DTW, written out."""
    weights = scores[:, :, : num_frames // 2]
    weights = (weights * qk_scale).softmax(dim=-1)
    std, mean = torch.std_mean(weights, dim=-2, keepdim=True, unbiased=False)
    weights = (weights - mean) / std
    weights = reference.median_filter(weights, medfilt_width)
    return weights.mean(axis=0)[n_sot:-1]


@pytest.mark.parametrize("num_frames,n_sot,width,qk_scale", [(3000, 3, 7, 1.0), (1234, 3, 7, 1.0), (777, 1, 5, 2.5),
                                                             (3000, 2, 1, 0.5), (12, 3, 7, 1.0)])
def test_alignment_matrix_is_openai(num_frames, n_sot, width, qk_scale):
    g = torch.Generator().manual_seed(num_frames + n_sot)
    n_text = 17
    scores = torch.randn(6, n_sot + 1 + n_text + 1, 1500, generator=g) * 3
    got = T.alignment_matrix(scores, num_frames, n_sot, width, qk_scale)
    want = openai_matrix(scores, num_frames, n_sot, width, qk_scale)
    assert got.shape == (n_text + 1, num_frames // 2) == want.shape
    torch.testing.assert_close(got, want, atol=1e-6, rtol=0)


@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(
    not torch.cuda.is_available(), reason="needs CUDA"))])
def test_alignment_matrices_are_alignment_matrix_per_row(device):
    """Rows of different lengths, frames and sot lengths: each row's matrix, bit for bit on the CPU; on a GPU
    (all rows at once, ``batched_matrices``) up to the order of float32 sums."""
    g = torch.Generator().manual_seed(3)
    lengths, frames, n_sots = [9, 23, 23, 5, 40], [3000, 3000, 1234, 12, 777], [3, 4, 3, 1, 3]
    scores = (torch.randn(len(lengths), 6, 42, 1500, generator=g) * 3).to(device)
    got = T.alignment_matrices(scores, lengths, frames, n_sots, 5)
    for r, (length, num_frames, n_sot) in enumerate(zip(lengths, frames, n_sots)):
        want = T.alignment_matrix(scores[r, :, :length], num_frames, n_sot, 5).cpu()
        assert got[r].device.type == "cpu" and got[r].shape == (length - n_sot - 1, num_frames // 2)
        if device == "cpu":
            assert torch.equal(got[r], want)
        else:
            torch.testing.assert_close(got[r], want, rtol=1e-5, atol=1e-5)


class _CrossAttention(nn.Module):
    def __init__(self, qk: torch.Tensor):
        super().__init__()
        self.qk = qk  # [n_head, T, n_ctx]

    def forward(self):
        return None, self.qk[None]


class StandInModel(nn.Module):
    """What openai's find_alignment touches of a Whisper: blocks whose cross-attention returns given scores,
    alignment heads, dims, device, and logits from the forward."""

    def __init__(self, qks: torch.Tensor, heads: torch.Tensor, logits: torch.Tensor):
        super().__init__()
        self.decoder = nn.Module()
        self.decoder.blocks = nn.ModuleList(nn.Module() for _ in range(qks.shape[0]))
        for block, qk in zip(self.decoder.blocks, qks):
            block.cross_attn = _CrossAttention(qk)
        self.dims = SimpleNamespace(n_text_layer=qks.shape[0])
        self.alignment_heads = heads.to_sparse()
        self.logits = logits

    device = torch.device("cpu")

    def forward(self, mel, tokens):
        for block in self.decoder.blocks:
            block.cross_attn()
        return self.logits[None]


def window(ours, text: str, num_frames: int, seed: int):
    """A window's text tokens, stand-in model, and our inputs: (text_tokens, model, matrix, token_probs)."""
    g = torch.Generator().manual_seed(seed)
    text_tokens = ours.encode(text)
    n_sot, n_tok = len(ours.sot_sequence), len(ours.sot_sequence) + len(text_tokens) + 2
    ramp = torch.linspace(0, num_frames // 2 - 1, n_tok)[:, None] - torch.arange(1500)[None, :]
    qks = -(ramp.abs() / 20) + torch.randn(4, 6, n_tok, 1500, generator=g)  # near-diagonal, noisy [L, H, T, C]
    heads = torch.rand(4, 6, generator=g) < 0.4
    heads[-1, 0] = True
    logits = torch.randn(n_tok, ours.encoding.n_vocab, generator=g) * 4
    stacked = torch.stack([qks[layer, head] for layer, head in heads.nonzero().tolist()])
    probs = logits[n_sot:, : ours.eot].softmax(dim=-1)[np.arange(len(text_tokens)), text_tokens].tolist()
    return text_tokens, StandInModel(qks, heads, logits), T.alignment_matrix(stacked, num_frames, n_sot), probs


def as_tuples(alignment):
    return [(t.word, list(t.tokens), float(t.start), float(t.end), float(t.probability)) for t in alignment]


@pytest.mark.parametrize("language,num_frames", [("en", 3000), ("fr", 1800), ("es", 2400), ("zh", 3000),
                                                 ("ja", 901)])
def test_find_words_is_openai_find_alignment(language, num_frames):
    ours, theirs = tokenizers(language)
    text_tokens, model, matrix, probs = window(ours, TEXTS[language], num_frames, seed=num_frames)
    want = reference.find_alignment(model, theirs, text_tokens, torch.zeros(80, 3000), num_frames)
    got = T.find_words(ours, matrix, text_tokens, probs)
    assert len(got) > 3 and all(isinstance(t, WordTiming) for t in got)
    assert as_tuples(got) == as_tuples(want)
    assert as_tuples(T.find_words(ours, matrix.numpy(), text_tokens, np.float32(probs))) == as_tuples(want)


def test_find_words_many_is_find_words_per_window():
    windows = [("en", 3000, TEXTS["en"]), ("zh", 2000, TEXTS["zh"]), ("en", 3000, " One."), ("fr", 600, TEXTS["fr"])]
    toks, inputs = [], []
    for k, (language, frames, text) in enumerate(windows):
        ours, _ = tokenizers(language)
        toks.append(ours)
        inputs.append(window(ours, text, frames, seed=k))
    many = T.find_words_many(toks, [w[2] for w in inputs], [w[0] for w in inputs], [w[3] for w in inputs])
    for ours, (text_tokens, _, matrix, probs), got in zip(toks, inputs, many):
        assert as_tuples(got) == as_tuples(T.find_words(ours, matrix, text_tokens, probs))
    en = toks[0]
    assert T.find_words(en, torch.zeros(1, 10), [], []) == []
    assert T.find_words_many(en, [], [], []) == []
    with pytest.raises(ValueError):
        T.find_words_many(en, [torch.zeros(1, 10)], [], [])
    with pytest.raises(ValueError, match="rows"):
        T.find_words(en, torch.zeros(5, 10), en.encode(" two words"), [0.5, 0.5])


# -- merge_punctuations and place_words ----------------------------------------------------------------------------

def alignment_of(*words) -> list[WordTiming]:
    """(word, n_tokens, start, end[, probability]) -> WordTiming with np.float64 times, as find_alignment gives."""
    out, next_token = [], 100
    for w in words:
        word, n, start, end, *p = w
        out.append(WordTiming(word, list(range(next_token, next_token + n)), np.float64(start), np.float64(end),
                              np.float64(p[0] if p else 0.9)))
        next_token += n
    return out


def openai_place(alignment, segments, seek, last_speech, prepend, append):
    dicts = [dict(seek=seek, start=start, end=end, tokens=[50364] + list(tokens) + [50257, 50400])
             for start, end, tokens in segments]
    with mock.patch.object(reference, "find_alignment", lambda *a, **k: copy.deepcopy(alignment)):
        reference.add_word_timestamps(segments=dicts, model=None, tokenizer=SimpleNamespace(eot=50257), mel=None,
                                      num_frames=3000, prepend_punctuations=prepend, append_punctuations=append,
                                      last_speech_timestamp=last_speech)
    expected_last = next((d["end"] for d in reversed(dicts) if d.get("words")), last_speech)
    return [(d["start"], d["end"], [(w["start"], w["end"], w["word"], w["probability"]) for w in d.get("words", [])])
            for d in dicts], expected_last


def assert_placed_like_openai(alignment, segments, seek, last_speech, prepend=T.PREPEND_PUNCTUATIONS,
                              append=T.APPEND_PUNCTUATIONS):
    before = as_tuples(alignment)
    plain = [WordTiming(t.word, list(t.tokens), float(t.start), float(t.end), float(t.probability)) for t in alignment]
    placed, last = T.place_words(plain, segments, seek * 160 / 16000, last_speech, prepend, append)  # as find_words
    assert T.place_words(alignment, segments, seek * 160 / 16000, last_speech, prepend, append) == (placed, last)
    assert as_tuples(alignment) == before == as_tuples(plain)  # not modified
    want, want_last = openai_place(alignment, segments, seek, last_speech, prepend, append)
    got = [(s, e, [(w.start, w.end, w.word, w.probability) for w in words]) for s, e, words in placed]
    assert got == want
    assert last == want_last
    for s, e, words in placed:
        assert all(isinstance(w, Word) and type(w.start) is float and type(w.end) is float for w in words)
        assert type(s) is float and type(e) is float
    return placed, last


def tokens_of(alignment, *cuts):
    """The alignment's tokens cut into segments at the given token counts."""
    flat = [t for w in alignment for t in w.tokens]
    bounds = [0, *cuts, len(flat)]
    return [flat[a:b] for a, b in zip(bounds[:-1], bounds[1:])]


def test_sentence_mark_truncation_both_ways():
    a = alignment_of((" Hello", 1, 0.0, 0.4), (" world", 1, 0.4, 0.8), (".", 1, 0.8, 3.0), (" Then", 2, 3.0, 6.2),
                     (" it", 1, 6.2, 6.5), ("!", 1, 6.5, 6.6), (" Long", 1, 6.6, 9.0))
    placed, _ = assert_placed_like_openai(a, [(0.0, 3.0, tokens_of(a)[0])], seek=0, last_speech=0.0)
    words = {w.word: w for w in placed[0][2]}
    assert words[" world."].end == 0.8  # the merged mark's end was cut, the merged word keeps its own
    assert words[" Then"].start == round(6.2 - 0.8, 2) and words[" Long"].start == round(9.0 - 0.8, 2)


def test_long_first_words_after_a_pause():
    a = alignment_of((" So", 1, 5.0, 8.0), (" well", 1, 8.0, 8.3), (" yes", 1, 8.3, 8.6), (" no", 1, 8.6, 8.9))
    assert_placed_like_openai(a, [(5.0, 9.0, tokens_of(a)[0])], seek=100, last_speech=0.5)
    b = alignment_of((" So", 1, 5.0, 5.3), (" well", 1, 5.3, 8.0), (" yes", 1, 8.0, 8.3), (" no", 1, 8.3, 8.6))
    assert_placed_like_openai(b, [(5.0, 9.0, tokens_of(b)[0])], seek=100, last_speech=0.5)
    c = alignment_of((" So", 1, 0.2, 0.5), (" well", 1, 0.5, 0.9), (" yes", 1, 0.9, 1.1))  # pause, not long
    assert_placed_like_openai(c, [(0.0, 2.0, tokens_of(c)[0])], seek=0, last_speech=-5.0)
    d = alignment_of((" Alone", 2, 3.0, 7.0), (" x", 1, 7.0, 7.1), (" y", 1, 7.1, 7.2))  # first word only
    assert_placed_like_openai(d, [(3.0, 6.0, tokens_of(d)[0])], seek=0, last_speech=0.0)
    e = alignment_of((" Over", 1, 0.0, 0.5), (" lap", 1, 0.1, 0.7), *[(" z", 1, 0.7 + k / 5, 0.9 + k / 5)
                                                                       for k in range(5)])
    placed, _ = assert_placed_like_openai(e, [(0.0, 2.0, tokens_of(e)[0])], seek=0, last_speech=-2.0)
    assert placed[0][2][0].end == 0.35  # half the second word's end, which is later than its end - max_duration


def test_segment_edges_preferred_when_edge_words_are_too_long():
    a = alignment_of((" Early", 1, 0.0, 2.0), (" mid", 1, 2.0, 2.3), (" late", 1, 2.3, 5.0))
    placed, last = assert_placed_like_openai(a, [(1.0, 3.0, tokens_of(a)[0])], seek=0, last_speech=0.9)
    start, end, words = placed[0]
    assert (start, end) == (1.0, 3.0) and words[0].start == 1.0 and words[-1].end == 3.0 and last == 3.0
    b = alignment_of((" Fits", 1, 1.0, 1.3), (" well", 1, 1.3, 1.6))  # segment times taken from the words
    placed, _ = assert_placed_like_openai(b, [(0.0, 4.0, tokens_of(b)[0])], seek=250, last_speech=3.0)
    assert placed[0][:2] == (3.5, 4.1)
    c = alignment_of((" One", 1, 0.0, 3.0))  # one word is first and last
    assert_placed_like_openai(c, [(1.0, 2.0, tokens_of(c)[0])], seek=0, last_speech=0.0)


def test_segments_without_words_and_empty_words():
    a = alignment_of((" (", 1, 0.0, 0.1), ("Hi", 1, 0.1, 0.5), (")", 1, 0.5, 0.6), (" \"", 1, 0.6, 0.7),
                     ("You", 2, 0.7, 1.0), ("\"", 1, 1.0, 1.2), (",", 1, 1.2, 1.2), (" ok", 1, 1.2, 1.5))
    segs = tokens_of(a, 1, 3, 3, 8)  # a segment of one token, one of no tokens, one past the alignment
    segments = [(0.0, 0.2, segs[0]), (0.2, 0.6, segs[1]), (0.6, 0.6, segs[2]), (0.6, 1.6, segs[3]),
                (1.6, 2.0, [7, 8, 9])]
    placed, _ = assert_placed_like_openai(a, segments, seek=0, last_speech=0.0)
    assert [w.word for w in placed[0][2]] == [" (Hi)"]  # "(" merged away: its entry has no tokens left
    assert placed[2][2] == [] and placed[-1] == (1.6, 2.0, [])
    assert assert_placed_like_openai([], segments, seek=30, last_speech=1.5) == \
        ([(s, e, []) for s, e, _ in segments], 1.5)
    zero = alignment_of((" a", 1, 1.0, 1.0), (" b", 1, 1.0, 1.0), (".", 1, 1.0, 1.0))
    assert_placed_like_openai(zero, [(0.5, 1.5, tokens_of(zero)[0])], seek=7, last_speech=0.0)
    assert T.place_words(a, [], 0.0, 2.0) == ([], 2.0)


def test_merge_punctuations_is_openai():
    rng = random.Random(0)
    pool = [" \"", "\"", " (", ")", " ¿", "¿", "“", " “", "”", ".", "。", ",", " -", "-", "!", " !", "", " ", "'",
            " Hi", "there", " you", "you ", " '", "、", "]}", "?"]
    for case in range(400):
        words = [(rng.choice(pool), rng.randint(1, 3), 0.0, 0.0) for _ in range(rng.randint(0, 9))]
        ours, theirs = alignment_of(*words), alignment_of(*words)
        prepended, appended = (T.PREPEND_PUNCTUATIONS, T.APPEND_PUNCTUATIONS) if case % 4 else ("\"'(", ".,)")
        T.merge_punctuations(ours, prepended, appended)
        reference.merge_punctuations(theirs, prepended, appended)
        assert as_tuples(ours) == as_tuples(theirs), words


def random_case(rng: random.Random):
    pool = [" the", " cat", "sat", ".", ",", " \"", "\"", " (", ")", "!", "?", "。", " -", " 'tis", "'", " on",
            " a", " mat", "s", " 42", "!", "", "？"]
    t, words = rng.choice([0.0, 0.02, 1.5]), []
    for _ in range(rng.randint(0, 14)):
        t += rng.choice([0.0, 0.0, 0.02, 0.1, rng.uniform(0, 3)])
        duration = rng.choice([0.0, 0.02, 0.14, 0.3, 0.46, rng.uniform(0, 1), rng.uniform(1, 6)])
        grid = rng.choice([50, 50, 200, None])  # DTW's 20 ms steps; 5 ms (half-way cases of the rounding); none
        if grid:
            t, duration = round(t * grid) / grid, round(duration * grid) / grid
        words.append((rng.choice(pool), rng.randint(1, 3), t, t + duration, rng.random()))
        t += duration
    alignment = alignment_of(*words)
    n_tokens = sum(len(w.tokens) for w in alignment) + rng.choice([0, 0, 0, -1, 2])
    cuts = sorted(rng.randint(0, max(n_tokens, 0)) for _ in range(rng.randint(0, 4)))
    segs = tokens_of(alignment, *cuts)
    if n_tokens > len(sum(segs, [])):
        segs[-1] = segs[-1] + [1] * (n_tokens - len(sum(segs, [])))
    seek = rng.randint(0, 300000)
    edges = [0.0] + [x for w in words for x in w[2:4]]
    near = [-0.55, -0.5, -0.45, 0.0, 0.45, 0.5, 0.55]  # about the 0.5 s margins of the segment-edge rules
    times = sorted(round(seek / 100 + rng.choice(edges) + (rng.choice(near) if rng.random() < 0.6 else
                                                           rng.uniform(-1, 2)), 2) for _ in range(2 * len(segs)))
    segments = [(max(0.0, a), b, s) for a, b, s in zip(times[::2], times[1::2], segs)]
    last_speech = rng.choice([0.0, seek / 100 + rng.uniform(-5, 2), rng.uniform(0, 5)])
    return alignment, segments, seek, last_speech


def test_place_words_is_openai_on_random_alignments():
    rng = random.Random(1234)
    for _ in range(600):
        alignment, segments, seek, last_speech = random_case(rng)
        assert_placed_like_openai(alignment, segments, seek, last_speech)


def test_words_and_placement_end_to_end_like_add_word_timestamps():
    """find_words + place_words == openai's add_word_timestamps on the stand-in model."""
    ours, theirs = tokenizers("en")
    text_tokens, model, matrix, probs = window(ours, TEXTS["en"], 2600, seed=5)
    cut = len(text_tokens) // 2
    segments = [(12.0, 20.0, text_tokens[:cut]), (20.0, 39.0, text_tokens[cut:])]
    placed, last = T.place_words(T.find_words(ours, matrix, text_tokens, probs), segments, 1200 * 160 / 16000, 11.0)
    dicts = [dict(seek=1200, start=s, end=e, tokens=list(toks)) for s, e, toks in segments]
    reference.add_word_timestamps(segments=dicts, model=model, tokenizer=theirs, mel=torch.zeros(80, 3000),
                                  num_frames=2600, last_speech_timestamp=11.0)
    assert [(s, e, [(w.start, w.end, w.word, w.probability) for w in words]) for s, e, words in placed] == \
        [(d["start"], d["end"], [(w["start"], w["end"], w["word"], w["probability"]) for w in d["words"]])
         for d in dicts]
    assert last == dicts[-1]["end"]


def test_constants_are_openai():
    import inspect
    defaults = inspect.signature(reference.add_word_timestamps).parameters
    assert T.PREPEND_PUNCTUATIONS == defaults["prepend_punctuations"].default
    assert T.APPEND_PUNCTUATIONS == defaults["append_punctuations"].default
    assert T.TOKENS_PER_SECOND == reference.TOKENS_PER_SECOND
