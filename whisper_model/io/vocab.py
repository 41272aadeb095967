"""Vocabulary files: their names and where to find them. No other module spells them.

A Whisper vocabulary is ``"gpt2"`` (English-only models) or ``"multilingual"``; ``tokenizer.load_ranks``
reads it from either

* ``{name}.tiktoken``: ``base64(token) rank`` per line, BPE ranks only (openai-whisper ships both in its
  ``assets/`` directory), or
* a CTranslate2 ``vocabulary.txt``: every token of the model, special ones included, one per line in id order.

A checkpoint directory may carry either (``VOCAB_FILES``): ``checkpoint_vocab_dir`` finds that directory,
``copy_vocab_files`` takes the files along into an engine directory (``build``), ``find_vocab_file`` picks
the file for one vocabulary, falling back to openai-whisper's installed ``assets/`` (located with
``importlib.util.find_spec``; openai-whisper is never imported).
"""
from __future__ import annotations

import importlib.util
import os
import shutil
from pathlib import Path
from typing import Optional, Union

from .locate import Source, checkpoint_dir

PathLike = Union[str, os.PathLike]

BPE_RANKS = {"gpt2": 50256, "multilingual": 50257}  # number of BPE entries per vocabulary
CT2_VOCABULARY = "vocabulary.txt"
#: the vocabulary files a checkpoint (or engine) directory may carry, all readable by ``tokenizer.load_ranks``
VOCAB_FILES = (CT2_VOCABULARY, *(f"{name}.tiktoken" for name in BPE_RANKS))


def vocab_name(multilingual: bool) -> str:
    """The vocabulary of a model: "multilingual", or "gpt2" for English-only models."""
    return "multilingual" if multilingual else "gpt2"


def _files_for(name: Optional[str]) -> tuple[str, ...]:
    """The file names that can serve vocabulary ``name`` (any vocabulary when None), preferred first."""
    if name is None:
        return VOCAB_FILES
    if name not in BPE_RANKS:
        raise ValueError(f"unknown vocabulary {name!r}; expected one of {sorted(BPE_RANKS)}")
    return f"{name}.tiktoken", CT2_VOCABULARY


def checkpoint_vocab_dir(name_or_path: Source, name: Optional[str] = None) -> Optional[Path]:
    """The directory of a checkpoint (see ``weights.load_checkpoint``; a directory is taken as is) when it
    holds a vocabulary file the tokenizer can read, else None (then openai-whisper's assets serve).

    ``name`` ("gpt2" or "multilingual"): count only the files that can serve that vocabulary
    (``{name}.tiktoken`` or ``vocabulary.txt``); None: any of ``VOCAB_FILES``.
    """
    files = _files_for(name)
    directory = checkpoint_dir(name_or_path)
    return directory if any((directory / f).is_file() for f in files) else None


def copy_vocab_files(src_dir: PathLike, dst_dir: PathLike) -> list[str]:
    """Copy the vocabulary files ``src_dir`` has (of ``VOCAB_FILES``) into ``dst_dir``; their names."""
    src, dst = Path(src_dir), Path(dst_dir)
    copied = [name for name in VOCAB_FILES if (src / name).is_file()]
    for name in copied:
        shutil.copyfile(src / name, dst / name)
    return copied


def find_vocab_file(name: str, vocab_path: Optional[PathLike] = None) -> Path:
    """Locate the vocabulary ``name`` ("gpt2" or "multilingual").

    ``vocab_path`` may be the file itself or a directory holding ``{name}.tiktoken`` or a
    CTranslate2 ``vocabulary.txt``. Without it, openai-whisper's installed ``assets/`` directory
    is searched (located with ``importlib.util.find_spec``; openai-whisper is not imported).
    """
    files = _files_for(name)
    if vocab_path is not None:
        p = Path(vocab_path)
        if p.is_file():
            return p
        if p.is_dir():
            for cand in files:
                if (p / cand).is_file():
                    return p / cand
            raise FileNotFoundError(2, f"vocab_path directory {str(p)!r} has neither "
                                       f"{' nor '.join(files)}", str(p))
        raise FileNotFoundError(2, f"vocab_path does not exist: {str(p)!r}", str(p))
    spec = importlib.util.find_spec("whisper")
    for root in (spec.submodule_search_locations or []) if spec else []:
        cand = Path(root) / "assets" / files[0]
        if cand.is_file():
            return cand
    raise FileNotFoundError(
        2, f"whisper_model.io.tokenizer: cannot find the {name!r} vocabulary ({files[0]}). "
           f"Install openai-whisper (`pip install --no-deps openai-whisper`; only its assets/ "
           f"are read), or pass vocab_path= pointing to {files[0]} or a CTranslate2 "
           f"{CT2_VOCABULARY} (or the directory holding it)")


def check_vocabulary_size(directory: PathLike, n_vocab: int) -> None:
    """ValueError when ``directory``'s ``vocabulary.txt`` (if any) does not list ``n_vocab`` tokens.

    (A ``.tiktoken`` file holds the BPE ranks only, not the special tokens, so it has no size to check.)
    """
    vocab = Path(directory) / CT2_VOCABULARY
    if vocab.is_file():
        with open(vocab, "rb") as f:
            lines = sum(1 for _ in f)
        if lines != n_vocab:
            raise ValueError(f"{vocab}: {lines} tokens but the model has n_vocab={n_vocab}")
