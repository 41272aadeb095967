"""Word-level timestamps against openai-whisper's ``transcribe(word_timestamps=True)``, fp32 on CPU.

Both sides run the same converted weights with the same alignment heads (the CTranslate2 checkpoint's), on the same
samples and log-mel: the same segments and words, every word's start and end within 0.02 s of openai-whisper's.
"""
from __future__ import annotations

import functools
import sys
import unittest.mock

import pytest
import torch
from parameterized import parameterized

from whisper_model.io import audio as A
from whisper_model.io.alignment_heads import read_alignment_heads
from whisper_model.transcribe import result_dict, transcribe, transcribe_batch

from _requires import openai_whisper

try:
    from ._paths import MISSING, clips, manifest
    from ._reference import clear, models, samples
except ImportError:
    from _paths import MISSING, clips, manifest
    from _reference import clear, models, samples

whisper = openai_whisper()
import whisper.transcribe  # noqa: E402,F401

REFERENCE_TRANSCRIBE = sys.modules["whisper.transcribe"]
CLIPS = clips()
LANG = {name: row["language"] for name, row in manifest().items()}
EN_CLIPS = [c for c in CLIPS if LANG.get(c) == "en"] or [MISSING]
BASE_CLIPS = [c for c in ("en_jfk.wav", "en_lecture_60s.wav", "en_asterisk_demo_instruct_8k.wav") if c in CLIPS]
DETECT_CLIPS = [c for c in ("en_f5_ref.wav", "es_asterisk_demo_instruct_8k.wav", "fr_asterisk_demo_instruct_8k.wav",
                            "zh_sentence.wav") if c in CLIPS] or [MISSING]
# the Spanish and French prompts' first 40 s where the language is detected: two windows each (the whole 86 / 71 s
# only added windows of the same kind, minutes of base on both sides; the 60 s and 73 s English clips run whole)
CUT_S = {"es_asterisk_demo_instruct_8k.wav": 40.0, "fr_asterisk_demo_instruct_8k.wav": 40.0}
CASES = ([(f"tiny_en_{c}", "tiny.en", c, "en", None) for c in EN_CLIPS]
         + [(f"base_{c}", "base", c, "en", None) for c in BASE_CLIPS or [MISSING]]
         + [(f"base_detect_{c}", "base", c, None, CUT_S.get(c)) for c in DETECT_CLIPS])
FIELDS = ("id", "seek", "text", "tokens", "temperature")
TOLERANCE = 0.02 + 1e-9  # seconds


def teardown_module():
    clear()
    _ours_with_words.cache_clear()
    _theirs_with_words.cache_clear()


def with_heads(name: str):
    """(ours, openai-whisper's) models with the checkpoint's alignment heads on both."""
    mine, ref = models(name)
    heads = read_alignment_heads(name, mine.dims)
    assert heads, f"{name}: the bundled checkpoint names its alignment heads"
    mine.alignment_heads = heads
    mask = torch.zeros(mine.dims.n_text_layer, mine.dims.n_text_head, dtype=torch.bool)
    mask[tuple(torch.tensor(heads).T)] = True
    ref.register_buffer("alignment_heads", mask.to_sparse(), persistent=False)
    return mine, ref


def reference(ref, audio, **options) -> dict:
    """openai-whisper's transcribe() with our default best_of (5, its command line's; its API's is 1 sample)."""
    options.setdefault("best_of", 5)
    torch.manual_seed(0)
    with unittest.mock.patch.object(REFERENCE_TRANSCRIBE, "log_mel_spectrogram", A.log_mel_spectrogram):
        return whisper.transcribe(ref, audio, fp16=False, **options)


def ours(model, audio, **options) -> dict:
    torch.manual_seed(0)
    return result_dict(*transcribe(model, audio, **options))


def assert_same_words(mine: dict, theirs: dict):
    assert mine["language"] == theirs["language"]
    assert [tuple(s[f] for f in FIELDS) for s in mine["segments"]] == \
        [tuple(s[f] for f in FIELDS) for s in theirs["segments"]]
    for a, b in zip(mine["segments"], theirs["segments"]):
        assert a["start"] == pytest.approx(b["start"], abs=TOLERANCE)
        assert a["end"] == pytest.approx(b["end"], abs=TOLERANCE)
        assert [w["word"] for w in a["words"]] == [w["word"] for w in b["words"]]
        for x, y in zip(a["words"], b["words"]):
            assert (x["start"], x["end"]) == pytest.approx((y["start"], y["end"]), abs=TOLERANCE), x["word"]
            assert x["probability"] == pytest.approx(y["probability"], abs=1e-3)


def ours_with_words(name: str, clip: str, language: str | None, seconds: float | None = None) -> dict:
    """Our greedy words of a clip alone (``seconds``: of its first seconds), computed once
    (test_batched_words_equal_one_at_a_time compares the batch with the same runs)."""
    return _ours_with_words(name, clip, language, seconds)


@functools.lru_cache(maxsize=None)
def _ours_with_words(name: str, clip: str, language: str | None, seconds: float | None) -> dict:
    return ours(with_heads(name)[0], head(clip, seconds), language=language, word_timestamps=True)


def head(clip: str, seconds: float | None = None):
    """A clip's samples, or (``seconds``) its first seconds only."""
    audio = samples(clip)
    return audio if seconds is None else audio[:round(seconds * A.SAMPLE_RATE)]


def theirs_with_words(name: str, clip: str, language: str | None, seconds: float | None = None) -> dict:
    """openai-whisper's greedy words of a clip (``seconds``: of its first seconds), computed once (an option's
    test compares them with its own)."""
    return _theirs_with_words(name, clip, language, seconds)


@functools.lru_cache(maxsize=None)
def _theirs_with_words(name: str, clip: str, language: str | None, seconds: float | None) -> dict:
    return reference(with_heads(name)[1], head(clip, seconds), language=language, word_timestamps=True)


@parameterized.expand(CASES)
def test_words_match_openai_whisper(_, name, clip, language, seconds):
    """Greedy with the default fallback chain and conditioning; language given or detected. ``seconds``: the
    clip's first seconds only (None: all of it)."""
    result = ours_with_words(name, clip, language, seconds)
    assert_same_words(result, theirs_with_words(name, clip, language, seconds))
    words = [w for s in result["segments"] for w in s["words"]]
    assert words and all(w["start"] <= w["end"] for w in words)
    if seconds is not None:  # still long-form: the second window's words are timed too
        assert len({s["seek"] for s in result["segments"]}) > 1


@parameterized.expand([
    ("beam", "tiny.en", "en_jfk.wav", None, dict(beam_size=5, best_of=5)),
    ("punctuations", "tiny.en", "en_lecture_60s.wav", None, dict(prepend_punctuations="", append_punctuations=".,")),
    ("silence_threshold_parity", "tiny.en", "en_asterisk_demo_instruct_8k.wav", None,
     dict(hallucination_silence_threshold=0.5)),
    # the lecture's first 40 s: two windows, as in the whole clip's first two. The threshold moves the second
    # window's start (the first window's last word ends 0.82 s before its end: 29.18 s -> 30.0 s) and that
    # window's first segment looks hallucinated (kept: no gap before it). The whole 60 s clip sends that window
    # through the temperature fallback to 0.4 (5 samples a temperature, on both sides: minutes on CPU).
    ("hallucination_silence_base", "base", "en_lecture_60s.wav", 40.0, dict(hallucination_silence_threshold=1.0)),
    ("clip_timestamps", "tiny.en", "en_lecture_60s.wav", None, dict(clip_timestamps="5,20.5,33,44")),
    ("clip_timestamps_open_end", "tiny.en", "en_asterisk_demo_instruct_8k.wav", None, dict(clip_timestamps="40")),
])
def test_word_options_match_openai_whisper(case, name, clip, seconds, options):
    """``stop_repetition_loops=False``: openai-whisper's loop (some of these windows repeat themselves).
    ``seconds``: the clip's first seconds only (None: all of it)."""
    mine, ref = with_heads(name)
    audio = head(clip, seconds)
    result = ours(mine, audio, language="en", word_timestamps=True, stop_repetition_loops=False, **options)
    expected = reference(ref, audio, language="en", word_timestamps=True, **options)
    assert_same_words(result, expected)
    if case.startswith(("hallucination", "clip")):  # the option changes the segments, on both sides alike
        assert set(options) <= {"hallucination_silence_threshold", "clip_timestamps"}  # plain: without them
        plain = theirs_with_words(name, clip, "en", seconds)  # test_words_match_openai_whisper's run, when it ran
        assert [s["text"] for s in expected["segments"]] != [s["text"] for s in plain["segments"]]


def test_clip_timestamps_without_words_match_openai_whisper():
    mine, ref = models("tiny.en")
    audio = samples("en_lecture_60s.wav")
    options = dict(language="en", clip_timestamps="3.5,12,31")
    result = ours(mine, audio, stop_repetition_loops=False, **options)
    expected = reference(ref, audio, **options)
    assert [(s["seek"], s["start"], s["end"], s["text"]) for s in result["segments"]] == \
        [(s["seek"], s["start"], s["end"], s["text"]) for s in expected["segments"]]
    assert "words" not in result["segments"][0]
    starts = [s["start"] for s in result["segments"]]  # the clips 3.5-12 and 31-end: nothing before or between
    assert min(starts) >= 3.5 and not [t for t in starts if 12 <= t < 31] and max(starts) >= 31


def test_batched_words_equal_one_at_a_time():
    """Several files decoded together give each file's words as decoding it alone does."""
    mine, _ = with_heads("tiny.en")
    names = [c for c in ("en_jfk.wav", "en_librivox_0870.wav", "en_lecture_60s.wav") if c in CLIPS]
    if not names:
        pytest.skip("shared clips absent")
    audios = [samples(c) for c in names]
    batched = transcribe_batch(mine, audios, batch_size=3, language="en", word_timestamps=True)
    for name, (segments, info) in zip(names, batched):
        alone = ours_with_words("tiny.en", name, "en")
        assert_same_words(result_dict(segments, info), alone)  # the batch's products round a little differently
