"""whisper_model.io.tokenizer against openai-whisper's tokenizer (reference only)."""
from __future__ import annotations

import shutil
import subprocess
import sys

import pytest
from parameterized import parameterized

from whisper_model.io import tokenizer as T
from whisper_model.io import vocab as V

from _requires import openai_whisper

try:
    from ._paths import REPO_ROOT, manifest, whisper_assets
except ImportError:
    from _paths import REPO_ROOT, manifest, whisper_assets

CONFIGS = [  # (label, get_tokenizer kwargs)
    ("english_only", dict(multilingual=False)),
    ("multi_default", dict(multilingual=True)),
    ("multi_es", dict(multilingual=True, language="es")),
    ("multi_fr_translate", dict(multilingual=True, language="French", task="translate")),
    ("multi_zh", dict(multilingual=True, language="zh")),
    ("v3_yue", dict(multilingual=True, num_languages=100, language="yue")),
]
TEXTS = {
    "en": "And so, my fellow Americans: ask not what your country can do for you!",
    "es": "Si usted desea obtener más información técnica sobre Asterisk, marque 2 ahora.",
    "fr": "Si vous préférez tester les capacités de voix sur IP d'Asterisk, composez 500.",
    "zh": "对，这就是我，万人敬仰的太乙真人。",
    "misc": "  Numbers 1234567 and symbols ♪♪ [DAVID] (( )) «ça» — 日本語 😀\n\ttabs ",
}
for _row in manifest().values():  # the shared clips' reference transcripts too
    if _row.get("reference_transcript"):
        TEXTS[f"{_row['language']}_{_row['file']}"] = _row["reference_transcript"]
ATTRS = ["eot", "sot", "sot_lm", "sot_prev", "no_speech", "no_timestamps", "timestamp_begin",
         "transcribe", "translate", "sot_sequence", "sot_sequence_including_notimestamps",
         "non_speech_tokens", "language", "task", "special_tokens"]


def _reference(kwargs):
    return openai_whisper("whisper.tokenizer").get_tokenizer(**kwargs)


@parameterized.expand(CONFIGS)
def test_special_tokens_match(_, kwargs):
    ref, ours = _reference(kwargs), T.get_tokenizer(**kwargs)
    for attr in ATTRS:
        assert getattr(ours, attr) == getattr(ref, attr), attr
    assert ours.encoding.n_vocab == ref.encoding.n_vocab
    assert set(ours.all_language_tokens) == set(ref.all_language_tokens)
    assert set(ours.all_language_codes) == set(ref.all_language_codes)
    # ours are in id order, codes aligned with tokens
    assert list(ours.all_language_tokens) == sorted(ours.all_language_tokens)
    for code, tok in zip(ours.all_language_codes, ours.all_language_tokens):
        assert ours.decode([tok]) == f"<|{code}|>"
    if ours.language:
        assert ours.language_token == ref.language_token


def test_known_ids():
    en, multi, v3 = (T.get_tokenizer(False), T.get_tokenizer(True),
                     T.get_tokenizer(True, num_languages=100))
    assert (en.eot, en.sot, en.no_timestamps, en.timestamp_begin) == (50256, 50257, 50362, 50363)
    assert (multi.eot, multi.sot, multi.language_token, multi.transcribe) == (50257, 50258,
                                                                              50259, 50359)
    assert (v3.translate, v3.timestamp_begin, v3.encoding.n_vocab) == (50359, 50365, 51866)
    assert multi.decode_with_timestamps([multi.timestamp_begin + 54]) == "<|1.08|>"


@parameterized.expand([(f"{c}_{t}", c, t) for c, _ in CONFIGS[:2] + CONFIGS[-1:] for t in TEXTS])
def test_encode_decode_match(_, config, text_key):
    kwargs = dict(CONFIGS)[config]
    ref, ours = _reference(kwargs), T.get_tokenizer(**kwargs)
    text = TEXTS[text_key]
    ids = ours.encode(text)
    assert ids == ref.encode(text)
    assert ours.decode(ids) == text
    with_specials = "<|startoftranscript|><|0.00|>" + text + "<|2.40|><|endoftext|>"
    ids = ours.encode(with_specials, allowed_special="all")
    assert ids == ref.encode(with_specials, allowed_special="all")
    assert ours.decode(ids) == ref.decode(ids) == "<|startoftranscript|>" + text + "<|endoftext|>"
    assert ours.decode_with_timestamps(ids) == with_specials


def test_get_tokenizer_cached_and_normalized():
    assert T.get_tokenizer(True) is T.get_tokenizer(True)
    assert T.get_tokenizer(True, language="Mandarin").language == "zh"
    assert T.get_tokenizer(True, language="EN").language == "en"
    en = T.get_tokenizer(False, language="fr", task="translate")
    assert (en.language, en.task, en.sot_sequence) == (None, None, (50257,))


def test_errors():
    with pytest.raises(ValueError, match="'xx'.*LANGUAGES"):
        T.get_tokenizer(True, language="xx")
    with pytest.raises(ValueError, match="yue"):
        T.get_tokenizer(True, language="yue")  # needs num_languages=100
    with pytest.raises(ValueError, match="summarize"):
        T.get_tokenizer(True, task="summarize")
    with pytest.raises(ValueError, match="no language"):
        T.Tokenizer(T.get_encoding("gpt2")).language_token
    with pytest.raises(FileNotFoundError, match="vocab_path"):
        T.get_tokenizer(True, vocab_path="/nonexistent/vocab.tiktoken")


def test_missing_vocab_says_what_to_do(monkeypatch):
    monkeypatch.setattr(V.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(FileNotFoundError, match="openai-whisper.*vocab_path"):
        V.find_vocab_file("multilingual")


@parameterized.expand([("gpt2", False), ("multilingual", True)])
def test_explicit_tiktoken_copy(name, multilingual):
    import tempfile
    assets = whisper_assets()
    if assets is None:
        pytest.skip("openai-whisper assets not found")
    with tempfile.TemporaryDirectory() as tmp:
        shutil.copy(assets / f"{name}.tiktoken", tmp)
        by_dir = T.get_tokenizer(multilingual, vocab_path=tmp)
        by_file = T.get_tokenizer(multilingual, vocab_path=f"{tmp}/{name}.tiktoken")
    default = T.get_tokenizer(multilingual)
    text = TEXTS["fr"] + TEXTS["zh"]
    assert by_dir.encode(text) == by_file.encode(text) == default.encode(text)
    assert by_dir.encoding.n_vocab == default.encoding.n_vocab


CT2_WHEELS = [  # (label, bundled model name, vocabulary, multilingual)
    ("tiny_en", "tiny.en", "gpt2", False),
    ("base_multilingual", "base", "multilingual", True),
]


def _ct2_vocabulary(model_name: str, dest) -> str:
    """vocabulary.txt of an installed CTranslate2 weight package (pip extra ``weights``)."""
    try:
        directory = V.checkpoint_vocab_dir(model_name)
    except (ValueError, FileNotFoundError) as e:
        pytest.skip(f"weight package for {model_name} not installed: {e}")
    return str(directory / V.CT2_VOCABULARY)


@parameterized.expand(CT2_WHEELS)
def test_ct2_vocabulary_equals_tiktoken(_, prefix, name, multilingual):
    import tempfile
    from pathlib import Path
    if whisper_assets() is None:
        pytest.skip("openai-whisper assets not found")
    with tempfile.TemporaryDirectory() as tmp:
        vocab = _ct2_vocabulary(prefix, Path(tmp))
        ranks = T.load_ranks(vocab)  # also checks its special tokens (HF spellings allowed)
        assert ranks == T.load_ranks(V.find_vocab_file(name))
        ours = T.get_tokenizer(multilingual, vocab_path=vocab)
        ref = T.get_tokenizer(multilingual)
        if multilingual:
            with pytest.raises(ValueError, match="num_languages=100"):
                T.load_ranks(vocab, num_languages=100)
        else:
            with pytest.raises(ValueError, match="50256 BPE ranks"):
                T.get_tokenizer(True, vocab_path=vocab)
    for text in TEXTS.values():
        assert ours.encode(text) == ref.encode(text)
    assert ours.special_tokens == ref.special_tokens


def test_whisper_model_never_imports_openai_whisper():
    code = ("import sys, numpy as np\n"
            "import whisper_model.io.audio as a, whisper_model.io.tokenizer as t\n"
            "t.get_tokenizer(True); t.get_tokenizer(False)\n"
            "a.log_mel_spectrogram(np.zeros(1000, np.float32))\n"
            "assert 'whisper' not in sys.modules, 'openai-whisper was imported'\n")
    res = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True,
                         text=True, timeout=120)
    assert res.returncode == 0, res.stderr
