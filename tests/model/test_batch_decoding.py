"""DecodingTask with per-audio prompts and languages: each row gives what decoding it alone gives.

Rows with prompts of different lengths share one token matrix (right-aligned, per-row decoder positions). A small
random-weight model (text context of 24) makes rows run into their own text-context limit at different steps
(it rarely ends a text), and the real tiny.en checks the same on speech.
"""
from __future__ import annotations

import functools

import pytest
import torch
from parameterized import parameterized

from trtllm_ext import init_random_
from whisper_model.config import MODEL_DIMS, scaled
from whisper_model.decode import DecodingOptions, DecodingTask
from whisper_model.io import audio as A
from whisper_model.model import Whisper

try:
    from ._paths import AUDIO_DIR, NO_SHARED
    from ._reference import models
except ImportError:
    from _paths import AUDIO_DIR, NO_SHARED
    from _reference import models

DIMS = scaled(MODEL_DIMS["tiny"], n_audio_ctx=60, n_audio_layer=2, n_text_layer=2, n_audio_state=128,
              n_text_state=128, n_audio_head=2, n_text_head=2, n_text_ctx=24)
# initial tokens 3, 6, 15 (the prompt's last 11 ids + <|startofprev|>), 12: with sample_len 12 the third row
# reaches the end of its text context of 24 two steps before the others would
PROMPTS = [[], [1000, 1001], list(range(2000, 2014)), list(range(3000, 3008))]


@functools.lru_cache(maxsize=None)
def random_model() -> Whisper:
    return init_random_(Whisper(DIMS), seed=5).eval()


def random_features(n: int, seed: int) -> torch.Tensor:
    return torch.randn(n, DIMS.n_audio_ctx, DIMS.n_audio_state, generator=torch.Generator().manual_seed(seed))


def teardown_module():
    random_model.cache_clear()


def alone(model, features, prompt, language, **options):
    """Row decoded by itself, with the shared options (``prompt`` / ``language`` as DecodingOptions)."""
    return DecodingTask(model, DecodingOptions(prompt=prompt, language=language, **options)).run(features)[0]


def assert_rows_as_alone(model, features, prompts, languages, **options):
    batched = DecodingTask(model, DecodingOptions(**options), prompts=prompts, languages=languages).run(features)
    assert len(batched) == features.shape[0]
    for i, got in enumerate(batched):
        prompt = prompts[i] if prompts is not None else None
        language = languages[i] if languages is not None else options.get("language")
        one = alone(model, features[i:i + 1], prompt, language,
                    **{k: v for k, v in options.items() if k != "language"})
        assert got.tokens == one.tokens, f"row {i}"
        assert (got.text, got.language, got.temperature) == (one.text, one.language, one.temperature)
        assert got.sum_logprob == pytest.approx(one.sum_logprob, abs=1e-4)
        assert got.no_speech_prob == pytest.approx(one.no_speech_prob, abs=1e-5)
    return batched


@parameterized.expand([
    ("greedy", dict()),
    ("greedy_long_sample", dict(sample_len=30)),  # every row ends at its own text-context limit
    ("beam", dict(beam_size=3)),
    ("beam_patience", dict(beam_size=2, patience=2.0)),
    ("beam_text_only", dict(beam_size=3, without_timestamps=True)),
    ("prefix", dict(prefix=[500, 501, 502], beam_size=2)),
])
def test_rows_with_different_prompt_lengths_decode_as_alone(_, options):
    model = random_model()
    batched = assert_rows_as_alone(model, random_features(4, 11), PROMPTS, None, language="en", **options)
    if options.get("sample_len") == 30:  # the random model does not end: each row stops at its own limit
        n0 = [len(p) and 1 + min(len(p), DIMS.n_text_ctx // 2 - 1) for p in PROMPTS]
        assert [len(r.tokens) for r in batched] == [DIMS.n_text_ctx + 1 - 3 - n for n in n0]


def test_rows_with_their_own_languages_and_prompts_decode_as_alone():
    model = random_model()
    languages = ["fr", "en", "de", "zh"]
    got = assert_rows_as_alone(model, random_features(4, 12), PROMPTS, languages, beam_size=2)
    assert [r.language for r in got] == languages
    got = assert_rows_as_alone(model, random_features(2, 13), None, ["Japanese", "es"])  # names are accepted
    assert [r.language for r in got] == ["ja", "es"]


def test_equal_prompt_lengths_keep_shared_positions():
    """Rows with as many initial tokens each are not padded: the decoder gets 1-D positions as before."""
    model = random_model()
    seen = []
    real = model.decoder.step

    def spy(tokens, positions, keep=None):
        seen.append(positions.dim())
        return real(tokens, positions, keep)

    model.decoder.step = spy
    try:
        assert_rows_as_alone(model, random_features(2, 14), [[7, 8], [9, 10]], None, language="en", sample_len=3)
        assert set(seen) == {1}
        seen.clear()
        DecodingTask(model, DecodingOptions(language="en", sample_len=3), prompts=[[7], [9, 10]]).run(
            random_features(2, 14))
        assert set(seen) == {2}
    finally:
        del model.decoder.step


@pytest.mark.parametrize("kwargs, options, match", [
    (dict(prompts=[[1], [2]]), dict(prompt=[3]), "prompts: give per-audio prompts or DecodingOptions.prompt"),
    (dict(languages=["en"]), dict(language="en"), "languages: give per-audio languages or DecodingOptions.language"),
    (dict(prompts=[[1], [2]], languages=["en"]), dict(), "prompts and languages need one entry per audio each"),
    (dict(prompts=[]), dict(), "prompts: need one entry per audio"),
    (dict(languages=["en", "klingon"]), dict(), "language='klingon'"),
])
def test_bad_per_audio_arguments_raise(kwargs, options, match):
    with pytest.raises(ValueError, match=match):
        DecodingTask(random_model(), DecodingOptions(**options), **kwargs)


def test_per_audio_entries_must_match_the_audios():
    task = DecodingTask(random_model(), DecodingOptions(language="en"), prompts=[[1], [2, 3]])
    with pytest.raises(ValueError, match="prompts/languages: 2 per-audio entries for 3 audios"):
        task.run(random_features(3, 15))


def test_english_only_model_takes_english_languages_only():
    model, _ = models("tiny.en")
    with pytest.raises(ValueError, match="English-only"):
        DecodingTask(model, DecodingOptions(), languages=["en", "fr"])


# ---------------------------------------------------------------------------------------------------------------
# the real tiny.en on speech
@functools.lru_cache(maxsize=None)
def speech_features() -> torch.Tensor:
    clips = ("en_jfk.wav", "en_librivox_0870.wav", "en_librivox_0880.wav")
    if not all((AUDIO_DIR / c).is_file() for c in clips):
        pytest.skip(NO_SHARED)
    mel = torch.stack([A.log_mel_spectrogram(A.pad_or_trim(A.load_audio(AUDIO_DIR / c)), 80) for c in clips])
    with torch.no_grad():
        return models("tiny.en")[0].embed_audio(mel)


@parameterized.expand([("greedy", dict()), ("beam", dict(beam_size=5))])
def test_speech_with_prompts_of_different_lengths_decodes_as_alone(_, options):
    model, _ref = models("tiny.en")
    prompts = ["Kennedy's inaugural address, January 1961.", None, "Sense and Sensibility."]
    got = assert_rows_as_alone(model, speech_features(), prompts, ["en"] * 3, **options)
    assert "country" in got[0].text and got[1].text and got[2].text
