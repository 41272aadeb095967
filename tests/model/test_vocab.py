"""whisper_model.io.vocab: which directories hold a vocabulary, which file serves it, and its size check."""
from __future__ import annotations

import re

import pytest

from whisper_model.io import vocab as V


def _touch(directory, *names):
    for name in names:
        (directory / name).write_text("x\n")
    return directory


def test_checkpoint_vocab_dir_ct2(tmp_path):
    _touch(tmp_path, "model.bin", "config.json", "tokenizer.json", "vocabulary.txt")
    assert V.checkpoint_vocab_dir(tmp_path) == tmp_path
    assert V.checkpoint_vocab_dir(str(tmp_path / "model.bin")) == tmp_path  # a checkpoint file: its directory
    assert V.checkpoint_vocab_dir([tmp_path / "model.bin"]) == tmp_path
    for name in ("gpt2", "multilingual"):  # vocabulary.txt serves either vocabulary
        assert V.checkpoint_vocab_dir(tmp_path, name) == tmp_path


def test_checkpoint_vocab_dir_tiktoken(tmp_path):
    _touch(tmp_path, "model.safetensors", "config.json", "multilingual.tiktoken")
    assert V.checkpoint_vocab_dir(tmp_path) == tmp_path
    assert V.checkpoint_vocab_dir(tmp_path / "model.safetensors") == tmp_path
    assert V.checkpoint_vocab_dir(tmp_path, "multilingual") == tmp_path
    assert V.checkpoint_vocab_dir(tmp_path, "gpt2") is None  # the other vocabulary's file does not count
    assert V.find_vocab_file("multilingual", tmp_path) == tmp_path / "multilingual.tiktoken"


def test_checkpoint_vocab_dir_none(tmp_path):
    _touch(tmp_path, "model.safetensors", "config.json", "tokenizer.json")  # nothing the tokenizer reads
    assert V.checkpoint_vocab_dir(tmp_path) is None
    assert V.checkpoint_vocab_dir(tmp_path / "model.safetensors") is None
    with pytest.raises(FileNotFoundError, match="multilingual.tiktoken nor vocabulary.txt"):
        V.find_vocab_file("multilingual", tmp_path)
    with pytest.raises(ValueError, match="unknown vocabulary 'large'"):
        V.checkpoint_vocab_dir(tmp_path, "large")


def test_find_vocab_file_prefers_tiktoken(tmp_path):
    _touch(tmp_path, "vocabulary.txt", "gpt2.tiktoken")
    assert V.find_vocab_file("gpt2", tmp_path) == tmp_path / "gpt2.tiktoken"
    assert V.find_vocab_file("multilingual", tmp_path) == tmp_path / "vocabulary.txt"


def test_copy_vocab_files(tmp_path):
    src, dst = tmp_path / "src", tmp_path / "dst"
    src.mkdir()
    dst.mkdir()
    _touch(src, "vocabulary.txt", "gpt2.tiktoken", "tokenizer.json", "model.bin")
    assert V.copy_vocab_files(src, dst) == ["vocabulary.txt", "gpt2.tiktoken"]
    assert sorted(p.name for p in dst.iterdir()) == ["gpt2.tiktoken", "vocabulary.txt"]
    assert V.checkpoint_vocab_dir(dst) == dst


def test_check_vocabulary_size(tmp_path):
    V.check_vocabulary_size(tmp_path, 5)  # no vocabulary.txt: nothing to check
    (tmp_path / "vocabulary.txt").write_text("a\nb\nc\n")
    V.check_vocabulary_size(tmp_path, 3)
    with pytest.raises(ValueError) as err:
        V.check_vocabulary_size(tmp_path, 51865)
    msg = str(err.value)
    assert str(tmp_path / "vocabulary.txt") in msg
    assert re.search(r"\b3 tokens\b", msg) and "n_vocab=51865" in msg
