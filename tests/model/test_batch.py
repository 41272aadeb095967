"""transcribe_batch (the scheduler over many audios): audios of any length transcribed together equal
``transcribe()`` of each alone.

fp32 on CPU, real weights. The reference is our own ``transcribe()`` (itself equal to openai-whisper's, see
test_transcribe.py): segments must have the same ids, seeks, start/end, text, tokens, temperatures and
compression ratios; the log-probabilities agree to 1e-4 (batched matrix products round differently).
"""
from __future__ import annotations

import json
import unittest.mock
from pathlib import Path

import numpy as np
import pytest
from parameterized import parameterized

from whisper_model import longform as LF
from whisper_model import scheduler as S
from whisper_model.cli import run
from whisper_model.errors import AudioError, OptionError
from whisper_model.io import audio as A
from whisper_model.transcribe import iter_transcribe_batch, transcribe_batch

try:
    from ._paths import AUDIO_DIR, NO_SHARED
    from ._reference import clear, models, pipeline, samples, transcribed
except ImportError:
    from _paths import AUDIO_DIR, NO_SHARED
    from _reference import clear, models, pipeline, samples, transcribed

REPO = Path(__file__).resolve().parents[2]
SAMPLE = REPO / "samples" / "jfk.mp3"
FIELDS = ("id", "seek", "start", "end", "text", "tokens", "temperature", "compression_ratio")
# a 60 s file (3 windows, each prompted with the text before) first; the short ones fill the other rows, and
# the last joins mid-way, beside the long file's later windows (prompts of different lengths in one batch)
EN_MIX = ("en_lecture_60s.wav", "en_jfk.wav", "en_librivox_0880.wav", "en_bobby.wav")
# languages detected per file: a 40 s French file goes on while the Chinese one ends and the English one joins
MULTI_MIX = ("zh_sentence.wav", "fr_asterisk_demo_instruct_8k.wav", "en_jfk.wav")
# the French clip's first 40 s: two windows, the second beside the English file's (the whole 70 s only added
# windows of the same kind, with base, each decoded in the batch and alone)
CUT_S = {"fr_asterisk_demo_instruct_8k.wav": 40.0}


def teardown_module():
    clear()


def alone(name: str, clip: str, **options):
    """``transcribe(models(name)[0], ...)`` of one clip, computed once per session per (model, clip, options)
    (``_reference.transcribed``): the greedy mix and the engine's batch compare with the same runs, and
    test_scheduler / test_transcribe with some of them."""
    return transcribed(name, audio(clip), **options)


def audio(clip: str) -> np.ndarray:
    """The clip's samples, cut to ``CUT_S`` where it names the clip."""
    return samples(clip)[: int(CUT_S[clip] * A.SAMPLE_RATE)] if clip in CUT_S else samples(clip)


def assert_same(batched, single):
    (segments, info), (ref_segments, ref_info) = batched, single
    assert [tuple(getattr(s, f) for f in FIELDS) for s in segments] == \
        [tuple(getattr(s, f) for f in FIELDS) for s in ref_segments]
    for a, b in zip(segments, ref_segments):
        assert a.avg_logprob == pytest.approx(b.avg_logprob, abs=1e-4)
        assert a.no_speech_prob == pytest.approx(b.no_speech_prob, abs=1e-4)
    assert (info.language, info.duration, info.options) == (ref_info.language, ref_info.duration, ref_info.options)
    assert info.language_probability == pytest.approx(ref_info.language_probability, abs=1e-5)
    if ref_info.all_language_probs is None:
        assert info.all_language_probs is None
    else:
        assert info.all_language_probs == pytest.approx(ref_info.all_language_probs, abs=1e-5)


@parameterized.expand([
    ("greedy", "tiny.en", EN_MIX, 3, dict()),
    ("beam", "tiny.en", EN_MIX, 3, dict(beam_size=5)),
    ("detected_languages", "base", MULTI_MIX, 2, dict(language=None)),
])
def test_batch_equals_each_file_alone(_, name, clips, batch_size, options):
    """Default options otherwise (temperature fallback chain, timestamps, condition_on_previous_text=True)."""
    model, _ref = models(name)
    got = transcribe_batch(model, [audio(c) for c in clips], batch_size=batch_size, **options)
    assert len(got) == len(clips)
    for clip, result in zip(clips, got):
        assert_same(result, alone(name, clip, **options))
    assert max(len({s.seek for s in segments}) for segments, _ in got) > 1  # one file is long-form
    if name == "base":
        assert [info.language for _, info in got] == ["zh", "fr", "en"]


def test_engine_batch_equals_each_file_alone_on_the_model():
    """The fast path's decoder (``engine.accelerate``; its plain-PyTorch ops on CPU) takes the batch's per-row
    positions (prompts of different lengths) and gives each file what the eager model gives it alone."""
    from whisper_model.fast.engine import accelerate
    from whisper_model.model import Whisper

    model, _ref = models("tiny.en")
    fast = accelerate(Whisper.from_state_dict(model.dims, model.state_dict()), max_batch_size=2, kernels="torch")
    got = transcribe_batch(fast, [samples(c) for c in EN_MIX], batch_size=3)
    for clip, result in zip(EN_MIX, got):
        assert_same(result, alone("tiny.en", clip))
    assert fast.text_decoder.rows >= 3  # the caches grew past max_batch_size for the batch


def test_fallback_rows_are_decoded_again_together():
    """A deterministic fallback (a second temperature of 0): the windows whose average log-probability is below
    the threshold are decoded again as a smaller batch; every file still equals its run alone."""
    model, _ref = models("tiny.en")
    clips = ("en_jfk.wav", "en_librivox_0870.wav", "en_bobby.wav")
    options = dict(temperature=(0.0, 0.0), logprob_threshold=-0.3)
    rows, real = [], LF.DecodingTask

    def counting(model_, options_, tokenizer=None, **kw):
        rows.append(len(kw["prompts"]))
        return real(model_, options_, tokenizer, **kw)

    with unittest.mock.patch.object(LF, "DecodingTask", counting):
        got = transcribe_batch(model, [samples(c) for c in clips], batch_size=3, **options)
    assert rows[0] == 3 and 0 < rows[1] < 3  # some, not all, rows needed the fallback
    for clip, result in zip(clips, got):
        assert_same(result, alone("tiny.en", clip, **options))


# ---------------------------------------------------------------------------------------------------------------
# API: WhisperModel, errors
def test_pipeline_batch_and_failed_loads():
    model = pipeline("tiny.en")
    clips = [str(AUDIO_DIR / "en_librivox_0880.wav"), str(SAMPLE)]
    if not Path(clips[0]).is_file():
        pytest.skip(NO_SHARED)
    got = model.transcribe_batch(clips, batch_size=2)
    for path, result in zip(clips, got):
        segments, info = model.transcribe(path)
        assert_same(result, (list(segments), info))
    missing = str(AUDIO_DIR / "no_such_clip.wav")
    with pytest.raises(AudioError, match=r"audio 1 \(.*no_such_clip.wav\)"):  # an AudioError is a ValueError
        model.transcribe_batch([clips[0], missing], batch_size=2)
    items = list(model.iter_transcribe_batch([missing, clips[0], b"not audio"], batch_size=2))
    by_index = {item.index: item for item in items}
    assert sorted(by_index) == [0, 1, 2]
    assert isinstance(by_index[0].error, AudioError) and by_index[0].info is None
    assert isinstance(by_index[0].error.__cause__, FileNotFoundError)
    assert isinstance(by_index[2].error, AudioError) and not by_index[2].segments
    assert by_index[1].error is None and by_index[1].segments and by_index[1].info.language == "en"


def test_empty_and_silent_audio_in_a_batch():
    model, _ref = models("tiny.en")
    audios = [np.zeros(0, np.float32), samples("en_bobby.wav"), np.zeros(5 * A.SAMPLE_RATE, np.float32)]
    got = transcribe_batch(model, audios, batch_size=2)
    assert [info.duration for _, info in got] == [len(a) // A.HOP_LENGTH * A.HOP_LENGTH / A.SAMPLE_RATE
                                                  for a in audios]
    assert got[0][0] == [] and all(s.text == "" for s in got[2][0])
    assert "".join(s.text for s in got[1][0]).strip()


@pytest.mark.parametrize("kwargs, error, match", [
    (dict(batch_size=0), OptionError, "batch_size must be a positive integer, got 0"),
    (dict(batch_size=2.0), OptionError, "batch_size"),
    (dict(batch_size=True), OptionError, "batch_size"),
    (dict(language="fr"), OptionError, "language"),
    (dict(temperature=-1.0), OptionError, "temperature"),
    (dict(beam_size=0), OptionError, "beam_size"),
    (dict(word_timestamps="yes"), OptionError, "word_timestamps"),
    (dict(clip_timestamps="5,2"), OptionError, "clip_timestamps"),
    (dict(hallucination_silence_threshold=-1.0), OptionError, "hallucination_silence_threshold"),
])
def test_bad_options_raise_before_any_audio_is_loaded(kwargs, error, match):
    model, _ref = models("tiny.en")
    with unittest.mock.patch.object(S.WhisperEncoding, "log_mel", side_effect=AssertionError("loaded")):
        with pytest.raises(error, match=match):
            iter_transcribe_batch(model, ["never_loaded.wav"], **kwargs)
        with pytest.raises(error, match=match):
            transcribe_batch(model, ["never_loaded.wav"], **kwargs)


# ---------------------------------------------------------------------------------------------------------------
# the command line
CPU = ["--device", "cpu", "--dtype", "float32", "--verbose", "False", "--beam_size", "None"]


def _cli(capsys, *argv):
    code = run.main([str(a) for a in argv])
    return code, capsys.readouterr()


def test_cli_batch_size_2_writes_what_batch_size_1_writes(tmp_path, capsys):
    clips = [SAMPLE, AUDIO_DIR / "en_librivox_0880.wav", AUDIO_DIR / "en_bobby.wav"]
    if not all(Path(c).is_file() for c in clips):
        pytest.skip(NO_SHARED)
    outputs = {}
    for n in (1, 2):
        code, out = _cli(capsys, "--input_file", *clips, "--output_dir", tmp_path / str(n), "--batch_size", n, *CPU)
        assert code == 0, out.err
        outputs[n] = {p.name: p.read_text(encoding="utf-8") for p in (tmp_path / str(n)).iterdir()}
    assert sorted(outputs[2]) == sorted(outputs[1]) == sorted(f"{Path(c).stem}.{f}" for c in clips
                                                              for f in ("json", "srt", "tsv", "txt", "vtt"))
    for name, text in outputs[1].items():
        if name.endswith(".json"):  # floats (log-probabilities) agree to 1e-4, everything else exactly
            one, two = json.loads(text), json.loads(outputs[2][name])
            assert one["text"] == two["text"] and one["language"] == two["language"]
            for a, b in zip(one["segments"], two["segments"], strict=True):
                assert {k: a[k] for k in FIELDS} == {k: b[k] for k in FIELDS}
                assert a["avg_logprob"] == pytest.approx(b["avg_logprob"], abs=1e-4)
        else:
            assert outputs[2][name] == text, name
    assert "ask not what your country can do for you" in outputs[2]["jfk.txt"].lower()


def test_cli_batch_reports_a_bad_file_and_writes_the_others(tmp_path, capsys):
    bad = tmp_path / "bad.wav"
    bad.write_text("this is not audio")
    out_dir = tmp_path / "o"
    code, out = _cli(capsys, "--input_file", bad, SAMPLE, "--output_dir", out_dir, "--output_format", "txt",
                     "--batch_size", 2, *CPU)
    assert code == 1
    assert "bad.wav" in out.err and "jfk.mp3: language=en" in out.err
    assert sorted(p.name for p in out_dir.iterdir()) == ["jfk.txt"]  # nothing, not even partial, for bad.wav


def test_cli_bad_batch_size_is_a_clear_error(tmp_path, capsys):
    code, out = _cli(capsys, "--input_file", SAMPLE, "--output_dir", tmp_path / "o", "--batch_size", 0, *CPU)
    assert code == 2 and "--batch_size must be a positive integer, got 0" in out.err
    assert not (tmp_path / "o").exists()
