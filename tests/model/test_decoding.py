"""whisper_model.decode.task / logit_filters against openai-whisper (the reference), fp32 on CPU.

Both sides run the SAME converted weights (bundled CTranslate2 packages -> ``to_openai``) on the SAME mel (our
log-mel of our decoded audio), so greedy and beam-search tokens must be identical, not merely close.
"""
from __future__ import annotations

import functools

import numpy as np
import pytest
import torch
from parameterized import parameterized

from whisper_model.decode import DecodingOptions, DecodingTask, decode, detect_language
from whisper_model.decode.logit_filters import ApplyTimestampRules, SuppressBlank, SuppressTokens
from whisper_model.io import audio as A
from whisper_model.io.tokenizer import get_tokenizer

from _requires import openai_whisper

try:
    from ._paths import AUDIO_DIR, MISSING, NO_SHARED, clips, manifest
    from ._reference import models
except ImportError:
    from _paths import AUDIO_DIR, MISSING, NO_SHARED, clips, manifest
    from _reference import models

whisper = openai_whisper()

CLIPS = clips()
LANG = {name: row["language"] for name, row in manifest().items()}
EN_CLIPS = [c for c in CLIPS if LANG.get(c) == "en"] or [MISSING]
GREEDY_CASES = [(f"tiny_en_{c}", "tiny.en", c) for c in EN_CLIPS] + [(f"base_{c}", "base", c) for c in CLIPS]
BEAM_CLIPS = ["en_jfk.wav", "en_librivox_0870.wav"]


@functools.lru_cache(maxsize=None)
def mel(clip: str, n_mels: int = 80) -> torch.Tensor:
    """[1, n_mels, 3000]: our log-mel of the clip's first 30 s, the input of both implementations."""
    if clip == MISSING or not (AUDIO_DIR / clip).is_file():
        pytest.skip(NO_SHARED)
    return A.log_mel_spectrogram(A.pad_or_trim(A.load_audio(AUDIO_DIR / clip)), n_mels)[None]


@functools.lru_cache(maxsize=None)
def features(name: str, clip: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Encoder states [1, 1500, d] of the same mel: (ours, openai-whisper's). Both ``decode`` functions take
    encoder states in place of a mel (and then skip the encoder), so each clip is encoded once per side."""
    ours, ref = models(name)
    x = mel(clip)
    with torch.no_grad():
        return ours.embed_audio(x), ref.embed_audio(x)


@functools.lru_cache(maxsize=None)
def greedy_batch(name: str, language: str) -> dict:
    """{clip: (ours, reference)} results of one batched greedy decode over every clip in ``language``."""
    names = [c for c in (EN_CLIPS if name.endswith(".en") else CLIPS) if LANG.get(c) == language]
    ours, ref = models(name)
    mine = decode(ours, torch.cat([features(name, c)[0] for c in names]), DecodingOptions(language=language))
    theirs = reference_decode(ref, torch.cat([features(name, c)[1] for c in names]), language=language)
    return dict(zip(names, zip(mine, theirs)))


def teardown_module():
    for cached in (mel, features, greedy_batch):  # the models stay loaded for the session's other files
        cached.cache_clear()


def reference_decode(ref, mel_or_features: torch.Tensor, **options):
    return whisper.decode(ref, mel_or_features, whisper.DecodingOptions(fp16=False, **options))


def assert_same(ours, theirs):
    assert len(ours) == len(theirs)
    for a, b in zip(ours, theirs):
        assert a.tokens == b.tokens, f"\nours: {a.text!r}\nref:  {b.text!r}"
        assert a.text == b.text and a.language == b.language
        assert a.avg_logprob == pytest.approx(b.avg_logprob, abs=1e-4)
        assert a.no_speech_prob == pytest.approx(b.no_speech_prob, abs=1e-4)
        assert a.compression_ratio == b.compression_ratio and a.temperature == b.temperature


# ---------------------------------------------------------------------------------------------------------------
# against openai-whisper on real clips
@parameterized.expand(GREEDY_CASES)
def test_greedy_matches_openai_whisper(_, name, clip):
    """Timestamps on, language fixed; all clips of a language decoded as one batch on each side."""
    if clip == MISSING:
        pytest.skip(NO_SHARED)
    mine, theirs = greedy_batch(name, LANG[clip])[clip]
    assert_same([mine], [theirs])


def test_greedy_from_mel_batch_without_timestamps_detecting_language():
    """mel input, several audios in one batch, language detected per audio (language=None), text only."""
    ours, ref = models("base")
    x = torch.cat([mel(c) for c in ("zh_sentence.wav", "en_bobby.wav")])
    got = decode(ours, x, DecodingOptions(without_timestamps=True))
    assert_same(got, reference_decode(ref, x, without_timestamps=True))
    assert [r.language for r in got] == ["zh", "en"]
    assert all(abs(sum(r.language_probs.values()) - 1) < 1e-4 for r in got)


@parameterized.expand([(c,) for c in CLIPS])
def test_detect_language_matches_openai_whisper(clip):
    ours, ref = models("base")
    mine, theirs = features("base", clip)
    tokens, probs = detect_language(ours, mine)
    ref_tokens, ref_probs = whisper.detect_language(ref, theirs)
    assert tokens.tolist() == ref_tokens.tolist()
    assert max(probs[0], key=probs[0].get) == max(ref_probs[0], key=ref_probs[0].get) == LANG[clip]
    assert probs[0] == pytest.approx(ref_probs[0], abs=1e-5)


@parameterized.expand([(f"{m}_{c}", m, c) for m in ("tiny.en",) for c in BEAM_CLIPS])
def test_beam_search_matches_openai_whisper(_, name, clip):
    ours, ref = models(name)
    mine, theirs = features(name, clip)
    assert_same(decode(ours, mine, DecodingOptions(language="en", beam_size=5)),
                reference_decode(ref, theirs, language="en", beam_size=5))


@parameterized.expand([
    ("patience", dict(beam_size=3, patience=2.0)),
    ("length_penalty", dict(beam_size=4, length_penalty=0.5, without_timestamps=True)),
    ("prompt_prefix", dict(prompt="Kennedy's inaugural address.", prefix="And so, my")),
    ("prompt_ids_sample_len", dict(prompt=[1002, 1003, 1004], sample_len=6)),
    ("suppress_none", dict(suppress_tokens="", suppress_blank=False)),
    ("suppress_list", dict(suppress_tokens=[11, 13], max_initial_timestamp=None)),
])
def test_options_match_openai_whisper(_, options):
    ours, ref = models("tiny.en")
    mine, theirs = features("tiny.en", "en_jfk.wav")
    assert_same(decode(ours, mine, DecodingOptions(language="en", **options)),
                reference_decode(ref, theirs, language="en", **options))


def test_best_of_sampling_matches_openai_whisper_with_the_same_seed():
    ours, ref = models("tiny.en")
    mine, theirs = features("tiny.en", "en_librivox_0890.wav")
    torch.manual_seed(1234)
    got = decode(ours, mine, DecodingOptions(language="en", temperature=0.8, best_of=3))
    torch.manual_seed(1234)
    assert_same(got, reference_decode(ref, theirs, language="en", temperature=0.8, best_of=3))


def test_batched_beam_search_and_cache_reuse():
    """Beam search over two audios at once matches openai-whisper's one audio at a time (its batched beam search
    fails in 20250625: the audio features are not repeated per beam); the caches grown for those 10 rows are
    then reused by a 1-row greedy decode, which gives the same tokens as before."""
    ours, ref = models("tiny.en")
    clips_ = ("en_jfk.wav", "en_librivox_0880.wav")
    first = decode(ours, features("tiny.en", clips_[0])[0], DecodingOptions(language="en"))
    mine = torch.cat([features("tiny.en", c)[0] for c in clips_])
    theirs = [reference_decode(ref, features("tiny.en", c)[1], language="en", beam_size=5)[0] for c in clips_]
    assert_same(decode(ours, mine, DecodingOptions(language="en", beam_size=5)), theirs)
    again = decode(ours, features("tiny.en", clips_[0])[0], DecodingOptions(language="en"))
    assert first[0].tokens == again[0].tokens


def test_max_initial_timestamp_zero_forces_the_first_timestamp():
    """Divergence from openai-whisper (where 0 means "no limit"): 0.0 allows only <|0.00|> first."""
    ours, _ = models("tiny.en")
    tok = get_tokenizer(False)
    result = decode(ours, features("tiny.en", "en_jfk.wav")[0],
                    DecodingOptions(language="en", max_initial_timestamp=0.0))[0]
    assert result.tokens[0] == tok.timestamp_begin


# ---------------------------------------------------------------------------------------------------------------
# logit filters against openai-whisper's on random logits and token histories (no model)
def _random_histories(rng, tok, n_rows: int, sample_begin: int, length: int) -> torch.Tensor:
    rows = []
    for _ in range(n_rows):
        sampled, t = [], tok.timestamp_begin + int(rng.integers(0, 20))
        for _ in range(length - sample_begin):
            if rng.random() < 0.35:
                t += int(rng.integers(0, 30))
                sampled.append(min(t, tok.timestamp_begin + 1500))
            else:
                sampled.append(int(rng.integers(0, tok.eot)))
        rows.append([tok.sot] * sample_begin + sampled)
    return torch.tensor(rows)


@parameterized.expand([(f"len{n}_{seed}", n, seed) for n in (3, 4, 5, 9) for seed in range(3)])
def test_logit_filters_match_openai_whisper(_, length, seed):
    import whisper.decoding as wd

    rng = np.random.default_rng(seed)
    ours_tok, ref_tok = get_tokenizer(True, language="en"), whisper.tokenizer.get_tokenizer(True, language="en")
    sample_begin = 3
    tokens = _random_histories(rng, ours_tok, 6, sample_begin, length)
    logits = torch.from_numpy(rng.normal(0, 3, (6, 51865)).astype(np.float32))
    logits[:, ours_tok.timestamp_begin:] += float(rng.normal(2, 1))  # make timestamps competitive
    suppress = [11, 13, 220, ours_tok.no_speech]
    pairs = [
        (SuppressBlank(ours_tok, sample_begin), wd.SuppressBlank(ref_tok, sample_begin)),
        (SuppressTokens(suppress), wd.SuppressTokens(suppress)),
        (ApplyTimestampRules(ours_tok, sample_begin, 50), wd.ApplyTimestampRules(ref_tok, sample_begin, 50)),
        (ApplyTimestampRules(ours_tok, sample_begin, None), wd.ApplyTimestampRules(ref_tok, sample_begin, None)),
    ]
    for ours_filter, ref_filter in pairs:
        a, b = logits.clone(), logits.clone()
        ours_filter.apply(a, tokens)
        ref_filter.apply(b, tokens)
        assert torch.equal(a, b), type(ours_filter).__name__


# ---------------------------------------------------------------------------------------------------------------
# options: invalid combinations raise ValueError naming the option
@parameterized.expand([
    ("task", dict(task="lang_id")),
    ("temperature", dict(temperature=-0.1)),
    ("beam_size", dict(beam_size=0)),
    ("best_of", dict(best_of=2)),  # at temperature 0
    ("beam_size", dict(beam_size=2, temperature=0.5)),
    ("best_of", dict(beam_size=2, best_of=2, temperature=0.5)),
    ("patience", dict(patience=1.5)),
    ("length_penalty", dict(length_penalty=1.5)),
    ("sample_len", dict(sample_len=0)),
    ("max_initial_timestamp", dict(max_initial_timestamp=-1.0)),
])
def test_invalid_options_raise(option, kwargs):
    with pytest.raises(ValueError, match=option):
        DecodingOptions(**kwargs)


@parameterized.expand([
    ("task", "tiny.en", dict(task="translate")),
    ("language", "tiny.en", dict(language="fr")),
    ("language", "base", dict(language="klingon")),
    ("language", "base", dict(language="yue")),  # only in large-v3's 100 languages
    ("prefix", "base", dict(prefix=list(range(500)))),
])
def test_options_the_model_cannot_do_raise(option, name, kwargs):
    ours, _ = models(name)
    with pytest.raises(ValueError, match=option):
        DecodingTask(ours, DecodingOptions(**kwargs))


def test_english_only_model_cannot_detect_language():
    ours, _ = models("tiny.en")
    with pytest.raises(ValueError, match="English-only"):
        detect_language(ours, torch.zeros(1, 80, 3000))
