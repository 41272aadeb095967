"""whisper_model.transcribe / pipeline against openai-whisper's ``transcribe()`` (the reference), fp32 on CPU.

Both sides run the same converted weights on the same samples (our ``load_audio``) and the same log-mel (the
reference's ``log_mel_spectrogram`` is patched to ours): text, segment boundaries, tokens, seeks and fallback
temperatures must be identical.
"""
from __future__ import annotations

import importlib
import inspect
import sys
import unittest.mock

import numpy as np
import pytest
import torch
from parameterized import parameterized

from whisper_model.errors import OptionError
from whisper_model.io import audio as A
from whisper_model.transcribe import Segment, TranscriptionInfo, TranscriptionOptions, result_dict, transcribe

from _requires import openai_whisper

try:
    from ._paths import AUDIO_DIR, MISSING, NO_SHARED, clips, manifest
    from ._reference import clear, models, pipeline, reference_transcribed, samples, transcribed
except ImportError:
    from _paths import AUDIO_DIR, MISSING, NO_SHARED, clips, manifest
    from _reference import clear, models, pipeline, reference_transcribed, samples, transcribed

whisper = openai_whisper()
import whisper.transcribe  # noqa: E402,F401  (whisper.transcribe is the function; _reference patches the module)

REFERENCE_TRANSCRIBE = sys.modules["whisper.transcribe"]

CLIPS = clips()
LANG = {name: row["language"] for name, row in manifest().items()}
EN_CLIPS = [c for c in CLIPS if LANG.get(c) == "en"] or [MISSING]
OTHER_CLIPS = [c for c in CLIPS if LANG.get(c) not in (None, "en")] or [MISSING]
CASES = ([(f"tiny_en_{c}", "tiny.en", c) for c in EN_CLIPS] + [(f"base_{c}", "base", c) for c in EN_CLIPS]
         + [(f"base_{c}", "base", c) for c in OTHER_CLIPS])
DETECT_CLIPS = [c for c in ("en_jfk.mp3", "en_bobby.wav", "en_f5_ref.wav", "en_asterisk_demo_instruct_8k.wav",
                             "es_asterisk_demo_instruct_8k.wav", "fr_asterisk_demo_instruct_8k.wav", "zh_sentence.wav")
                if c in CLIPS] or [MISSING]
FIELDS = ("id", "seek", "start", "end", "text", "tokens", "temperature", "compression_ratio")
# the Spanish and French prompts' first 40 s in the parity runs: two windows, the second prompted with the first's
# text, in each language (the whole 86 / 71 s only added windows of the same kind, minutes of base on both sides;
# the English 60 s lecture and 73 s prompt, scored by test_wer too, are transcribed whole)
CUT_S = {"es_asterisk_demo_instruct_8k.wav": 40.0, "fr_asterisk_demo_instruct_8k.wav": 40.0}
# the lecture's first 40 s in the option parity runs: two windows, the second prompted (or not) as the options say,
# as the whole clip's runs have (three for prompt_no_conditioning), the second 10 s instead of ~30 s of speech
# (measured on our side: 25-45% less time a run; carry_initial_prompt_no_conditioning's second window then falls
# back to 0.2, on both sides)
OPTION_CUT_S = {"en_lecture_60s.wav": 40.0}


def teardown_module():
    clear()


def reference(name: str, audio: np.ndarray, **options) -> dict:
    """openai-whisper's transcribe() with ``models(name)``'s reference on our samples and our log-mel, seeded as
    ``ours`` is (``_reference.reference_transcribed``: once per session)."""
    return reference_transcribed(name, audio, **options)


def ours(model, audio, **options) -> dict:
    torch.manual_seed(0)
    segments, info = transcribe(model, audio, **options)
    return result_dict(segments, info)


def shared(name: str, audio: np.ndarray, **options) -> dict:
    """``ours(models(name)[0], audio, **options)``, run once per session (``_reference.transcribed``: test_wer
    scores these runs, test_batch and test_scheduler compare with them)."""
    return result_dict(*transcribed(name, audio, **options))


def assert_same(mine: dict, theirs: dict):
    assert mine["language"] == theirs["language"]
    assert [tuple(s[f] for f in FIELDS) for s in mine["segments"]] == \
        [tuple(s[f] for f in FIELDS) for s in theirs["segments"]]
    for a, b in zip(mine["segments"], theirs["segments"]):
        assert a["avg_logprob"] == pytest.approx(b["avg_logprob"], abs=1e-4)
        assert a["no_speech_prob"] == pytest.approx(b["no_speech_prob"], abs=1e-4)
    assert mine["text"] == theirs["text"]


# ---------------------------------------------------------------------------------------------------------------
# long-form transcription against openai-whisper on real clips
@parameterized.expand(CASES)
def test_transcription_matches_openai_whisper(_, name, clip):
    """Default options (temperature fallback chain, timestamps, conditioning on previous text), language fixed;
    ``CUT_S``: the clip's first seconds."""
    audio = samples(clip)[: int(CUT_S[clip] * A.SAMPLE_RATE)] if clip in CUT_S else samples(clip)
    options = dict(language=LANG[clip], best_of=5)
    result = shared(name, audio, **options)
    assert_same(result, reference(name, audio, **options))
    assert result["text"].strip()
    if clip in CUT_S:  # still long-form: the second window is transcribed too
        assert len({s["seek"] for s in result["segments"]}) > 1


@parameterized.expand([(c,) for c in DETECT_CLIPS])
def test_detected_language_matches_openai_whisper(clip):
    """transcribe(language=None) detects on the first 30 s of the padded log-mel, as openai-whisper does; the
    segments generator is not consumed (detection happens before transcribe returns). One clip per language and
    sample rate (test_decoding compares detection on every clip's short-form mel)."""
    mine, ref = models("base")
    audio = samples(clip)
    _, info = transcribe(mine, audio)
    mel = A.log_mel_spectrogram(audio, 80, padding=A.N_SAMPLES)
    _, probs = ref.detect_language(A.pad_or_trim(mel, A.N_FRAMES))
    assert info.language == max(probs, key=probs.get) == LANG[clip]
    assert info.language_probability == pytest.approx(probs[info.language], abs=1e-5)
    assert info.all_language_probs == pytest.approx(probs, abs=1e-5)


def test_detected_language_then_transcription_matches():
    audio = samples("zh_sentence.wav")
    assert_same(shared("base", audio), reference("base", audio))


@parameterized.expand([
    # fallback: every window fails at temperature 0 and is sampled again (seeded alike on both sides)
    ("fallback_compression", "tiny.en", "en_jfk.wav",
     dict(compression_ratio_threshold=1.2, best_of=2, temperature=(0.0, 0.6))),
    ("fallback_logprob", "tiny.en", "en_librivox_0870.wav",
     dict(logprob_threshold=-0.2, best_of=2, temperature=(0.0, 0.3))),
    ("beam", "tiny.en", "en_jfk.wav", dict(beam_size=5, best_of=5)),
    ("prompt_no_conditioning", "tiny.en", "en_lecture_60s.wav",
     dict(initial_prompt="A lecture about Dublin.", condition_on_previous_text=False, best_of=5)),
    ("without_timestamps", "tiny.en", "en_lecture_60s.wav", dict(without_timestamps=True, best_of=5)),
    ("carry_initial_prompt", "tiny.en", "en_lecture_60s.wav",
     dict(initial_prompt="A lecture about Dublin.", carry_initial_prompt=True, best_of=5)),
    ("carry_initial_prompt_no_conditioning", "tiny.en", "en_lecture_60s.wav",
     dict(initial_prompt="Dublin.", carry_initial_prompt=True, condition_on_previous_text=False, best_of=5)),
    # beam search is used at temperature 0 only: a schedule without 0 samples with best_of (openai-whisper too)
    ("beam_size_above_zero", "tiny.en", "en_jfk.wav", dict(temperature=(0.4, 0.8), beam_size=5, best_of=2)),
    ("translate", "base", "zh_sentence.wav", dict(task="translate", language="zh", temperature=0.0)),
])
def test_options_match_openai_whisper(_, name, clip, options):
    """``OPTION_CUT_S``: the clip's first seconds."""
    audio = samples(clip)[: int(OPTION_CUT_S[clip] * A.SAMPLE_RATE)] if clip in OPTION_CUT_S else samples(clip)
    result = shared(name, audio, **options)
    assert_same(result, reference(name, audio, **options))
    if _.startswith("fallback"):
        assert all(s["temperature"] > 0 for s in result["segments"])
    if clip in OPTION_CUT_S:  # still long-form: the prompt, the conditioning and the seeks act on a second window
        assert len({s["seek"] for s in result["segments"]}) > 1


# ---------------------------------------------------------------------------------------------------------------
# API shape, laziness, edge cases, errors
def test_segments_are_lazy_and_info_is_ready():
    mine, _ = models("tiny.en")
    module, calls = importlib.import_module("whisper_model.longform"), []

    def counting(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    real = module.DecodingTask
    with unittest.mock.patch.object(module, "DecodingTask", counting):
        segments, info = transcribe(mine, samples("en_jfk.wav"))
        assert inspect.isgenerator(segments) and not calls  # nothing decoded yet
        first = next(segments)
        assert calls
    assert isinstance(info, TranscriptionInfo)
    assert (info.language, info.language_probability, info.all_language_probs) == ("en", 1.0, None)
    assert info.duration == pytest.approx(11.0, abs=0.01)
    assert info.options == TranscriptionOptions() and info.options.temperature == (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)
    assert isinstance(first, Segment) and first.id == 0 and first.start == 0.0
    rest = list(segments)
    assert [s.id for s in rest] == list(range(1, len(rest) + 1))


@parameterized.expand([("tiny.en",), ("base",)])
def test_empty_and_silent_audio_give_no_text(name):
    mine, _ = models(name)
    for audio in (np.zeros(0, np.float32), np.zeros(100, np.float32), np.zeros(5 * A.SAMPLE_RATE, np.float32)):
        segments, info = transcribe(mine, audio, language="en")
        result = result_dict(segments, info)
        assert result["text"] == "" and all(s["text"] == "" for s in result["segments"])
        assert info.duration == pytest.approx(len(audio) // A.HOP_LENGTH * A.HOP_LENGTH / A.SAMPLE_RATE)


@parameterized.expand([
    ("task", "tiny.en", dict(task="translate")),
    ("language", "tiny.en", dict(language="fr")),
    ("language", "tiny.en", dict(language="xx")),
    ("language", "base", dict(language="xx")),
    ("language", "base", dict(language="yue")),
    ("task", "base", dict(task="summarize")),
    ("temperature", "base", dict(temperature=-0.5)),
    ("temperature", "base", dict(temperature=())),
    ("carry_initial_prompt", "base", dict(carry_initial_prompt="yes")),
    ("patience", "base", dict(patience=2.0)),
    ("length_penalty", "base", dict(length_penalty=2.0)),
    ("clip_timestamps", "tiny.en", dict(clip_timestamps="1,2", chunking="vad")),
    ("clip_timestamps", "tiny.en", dict(clip_timestamps=(0.5,), vad_filter=True)),
    ("clip_timestamps", "tiny.en", dict(clip_timestamps="3,1")),
    ("hallucination_silence_threshold", "tiny.en", dict(hallucination_silence_threshold=0)),
])
def test_invalid_options_raise_before_decoding(option, name, kwargs):
    mine, _ = models(name)
    with pytest.raises(OptionError, match=option):  # an OptionError is a ValueError
        transcribe(mine, np.zeros(16000, np.float32), **kwargs)


def test_unknown_keyword_is_rejected():
    mine, _ = models("tiny.en")
    with pytest.raises(TypeError, match="word_timestamp\\b"):
        transcribe(mine, np.zeros(16000, np.float32), word_timestamp=True)
    with pytest.raises(TypeError, match="not both"):
        transcribe(mine, np.zeros(16000, np.float32), options=TranscriptionOptions(), beam_size=5)


def test_options_object_equals_keywords_and_signatures_list_the_options():
    """``options=TranscriptionOptions(...)`` and the same options as keywords give the same transcription; every
    entry point's signature lists each option with openai-whisper's default."""
    from whisper_model.pipeline import WhisperModel
    from whisper_model.transcribe import iter_transcribe_batch, transcribe_batch

    mine, _ = models("tiny.en")
    audio = samples("en_jfk.wav")
    options = TranscriptionOptions(beam_size=2, temperature=(0.0, 0.5))
    assert ours(mine, audio, beam_size=2, temperature=(0.0, 0.5)) == ours(mine, audio, options=options)
    defaults = TranscriptionOptions()
    for fn in (transcribe, transcribe_batch, iter_transcribe_batch, WhisperModel.transcribe,
               WhisperModel.transcribe_batch, WhisperModel.iter_transcribe_batch, WhisperModel.transcribe_dict):
        params = inspect.signature(fn).parameters
        for name in ("task", "temperature", "beam_size", "best_of", "patience", "length_penalty",
                     "compression_ratio_threshold", "logprob_threshold", "no_speech_threshold",
                     "condition_on_previous_text", "without_timestamps", "suppress_tokens", "suppress_blank",
                     "max_initial_timestamp", "word_timestamps", "prepend_punctuations", "append_punctuations",
                     "hallucination_silence_threshold"):
            assert params[name].default == getattr(defaults, name), (fn, name)
            assert params[name].kind is inspect.Parameter.KEYWORD_ONLY
        assert params["language"].default is None and params["initial_prompt"].default is None
    assert (defaults.best_of, defaults.compression_ratio_threshold, defaults.logprob_threshold,
            defaults.no_speech_threshold, defaults.suppress_tokens, defaults.max_initial_timestamp) == \
        (5, 2.4, -1.0, 0.6, "-1", 1.0)


# ---------------------------------------------------------------------------------------------------------------
# the word-timestamp options (no model needed)
@pytest.mark.parametrize("clips, expected", [
    ("0", (0.0,)), ("", ()), ("1.5,10,20", (1.5, 10.0, 20.0)), (" 1 , 2 ", (1.0, 2.0)), ([0, 30.5], (0.0, 30.5)),
    ((np.float32(1.0), 2), (1.0, 2.0)), ((), ()),
])
def test_clip_timestamps_become_a_tuple_of_seconds(clips, expected):
    options = TranscriptionOptions(clip_timestamps=clips)
    assert options.clip_timestamps == expected and all(type(t) is float for t in options.clip_timestamps)
    assert options.clipped == (expected not in ((), (0.0,)))
    assert {options: 1}[TranscriptionOptions(clip_timestamps=expected)] == 1  # hashable, equal once normalised


@pytest.mark.parametrize("clips, message", [
    ("a,b", "comma-separated seconds"), ("1,,2", "comma-separated seconds"), ("1;2", "comma-separated seconds"),
    ("-1", "seconds >= 0"), ([0, -2.5], "seconds >= 0"), ("nan", "seconds >= 0"), ("inf", "seconds >= 0"),
    ("5,3", "each clip must end after its start"), ("0,10,20,20", "each clip must end after its start"),
    (5, "a sequence of seconds"), ([1, "2"], "a sequence of seconds"), ([True, 2], "a sequence of seconds"),
    (None, "a sequence of seconds"),
])
def test_bad_clip_timestamps(clips, message):
    with pytest.raises(OptionError, match="clip_timestamps") as e:
        TranscriptionOptions(clip_timestamps=clips)
    assert message in str(e.value)


@pytest.mark.parametrize("kwargs, name", [
    (dict(hallucination_silence_threshold=0), "hallucination_silence_threshold"),
    (dict(hallucination_silence_threshold=-1.5), "hallucination_silence_threshold"),
    (dict(hallucination_silence_threshold=float("nan")), "hallucination_silence_threshold"),
    (dict(hallucination_silence_threshold=True), "hallucination_silence_threshold"),
    (dict(hallucination_silence_threshold="2"), "hallucination_silence_threshold"),
    (dict(word_timestamps=1), "word_timestamps"), (dict(word_timestamps="True"), "word_timestamps"),
    (dict(prepend_punctuations=None), "prepend_punctuations"), (dict(append_punctuations=list(".,")),
                                                                  "append_punctuations"),
])
def test_bad_word_options(kwargs, name):
    with pytest.raises(OptionError, match=name):
        TranscriptionOptions(**kwargs)


def test_word_options_have_openai_whisper_defaults_and_are_keywords():
    from whisper_model.options import option_keywords

    defaults = TranscriptionOptions()
    reference = inspect.signature(REFERENCE_TRANSCRIBE.transcribe).parameters
    for name in ("word_timestamps", "prepend_punctuations", "append_punctuations", "clip_timestamps",
                 "hallucination_silence_threshold"):
        assert inspect.signature(transcribe).parameters[name].default == reference[name].default, name
    assert defaults.clip_timestamps == (0.0,) and not defaults.clipped
    assert TranscriptionOptions(hallucination_silence_threshold=2).hallucination_silence_threshold == 2.0
    assert TranscriptionOptions(hallucination_silence_threshold=2) != defaults  # accepted without word timestamps

    @option_keywords
    def fn(audio, *, options=None):
        return options

    assert fn(None, word_timestamps=True, clip_timestamps="1,2", hallucination_silence_threshold=1) == \
        TranscriptionOptions(word_timestamps=True, clip_timestamps=[1, 2], hallucination_silence_threshold=1.0)


# ---------------------------------------------------------------------------------------------------------------
# WhisperModel
def test_pipeline_transcribes_and_detects():
    model = pipeline("tiny.en")
    assert (model.device.type, model.dtype) == ("cpu", torch.float32)
    path = AUDIO_DIR / "en_jfk.wav"
    if not path.is_file():
        pytest.skip(NO_SHARED)
    result = model.transcribe_dict(str(path), progress=True)
    # the shared run may come from another file of the session, at another torch thread count: probabilities
    # equal to rounding, the rest exactly
    assert_same(result, shared("tiny.en", samples("en_jfk.wav")))
    assert "ask not what your country can do for you" in result["text"]
    assert set(result) == {"text", "segments", "language"}
    assert set(result["segments"][0]) == {"id", "seek", "start", "end", "text", "tokens", "temperature",
                                          "avg_logprob", "compression_ratio", "no_speech_prob"}
    with pytest.raises(ValueError, match="English-only"):
        model.detect_language(str(path))


def test_pipeline_multilingual_detect_language():
    model = pipeline("base")
    path = AUDIO_DIR / "zh_sentence.wav"
    if not path.is_file():
        pytest.skip(NO_SHARED)
    language, probability, probs = model.detect_language(str(path))
    assert language == "zh" and probability == max(probs.values()) > 0.5
    segments, info = model.transcribe(str(path))
    assert info.language == "zh" and info.language_probability == pytest.approx(probability, abs=1e-6)
