"""Quantized Whisper checkpoints: one safetensors file of canonical-named tensors, read back without re-quantizing.

    save_quantized("tiny_int8.safetensors", dims, model.state_dict(), {"weight_only_precision": "int8"}, heads,
                   vocab_file)                  # the tokenizer's vocabulary file is copied beside it
    path = find_quantized(source)               # that file, or a directory holding QUANTIZED_FILE; else None
    dims, state_dict, quantization, heads = load_quantized(path)
    vocab_dir = quantized_vocab_dir(path, dims)  # the folder when it holds the model's vocabulary, else None

The tensors are the model's own state dict: each quantized projection's ``qweight`` (int8 [N, K], or uint8
[N, K // 2] for int4) and ``scales`` ([N], or [N, K // group_size]) with its float ``bias``, the other tensors as
stored (see ``trtllm_ext.quantization``). The file's metadata says what it is: ``format`` (``FORMAT``), ``dims``,
``quantization`` (``weight_only_precision``, ``group_size``) and ``alignment_heads`` (JSON). The names and shapes
are checked when a model loads them (``Whisper.load_weights``: strict, nothing written unless all are valid).
The vocabulary travels beside the file (``io.vocab``'s file names), so loading it needs nothing else.
"""
from __future__ import annotations

import filecmp
import json
import os
import shutil
from pathlib import Path
from typing import Optional

import torch

from ..config import ModelDimensions
from ..errors import CheckpointError, OptionError
from .alignment_heads import Heads, parse_heads
from .export import atomic_file
from .vocab import checkpoint_vocab_dir, vocab_name

FORMAT = "whisper_model.quantized/1"
QUANTIZED_FILE = "quantized.safetensors"  # its name inside a directory (an engine directory)


def _metadata(path: Path) -> dict:
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            return dict(f.metadata() or {})
    except (SafetensorError, OSError, RuntimeError, ValueError) as e:
        raise CheckpointError(f"{path}: cannot read safetensors file ({e})") from None


def find_quantized(source) -> Optional[Path]:
    """The quantized checkpoint ``source`` names: a safetensors file of this format, or a directory holding
    ``QUANTIZED_FILE``; None for anything else (a bundled name, another format)."""
    if not isinstance(source, (str, os.PathLike)):
        return None
    path = Path(os.fspath(source)).expanduser()
    if path.is_dir():
        return path / QUANTIZED_FILE if (path / QUANTIZED_FILE).is_file() else None
    if path.is_file() and path.suffix == ".safetensors" and _metadata(path).get("format") == FORMAT:
        return path
    return None


def save_quantized(path, dims: ModelDimensions, state_dict: dict[str, torch.Tensor], quantization: dict,
                   alignment_heads: Optional[Heads] = None, vocab_file: Optional[os.PathLike] = None) -> Path:
    """Write ``state_dict`` (a quantized model's ``state_dict()``) and what it is to one safetensors file,
    atomically (temp file, then rename), and copy ``vocab_file`` (the tokenizer's) beside it under its own name.
    FileExistsError, before anything is written, when the folder holds another file of that name."""
    from safetensors.torch import save_file

    path = Path(path).expanduser()
    vocab_dst = None if vocab_file is None else path.parent / Path(vocab_file).name
    copy_vocab = vocab_dst is not None and not vocab_dst.exists()
    if vocab_dst is not None and not copy_vocab and not filecmp.cmp(vocab_file, vocab_dst, shallow=False):
        raise FileExistsError(2, f"cannot save {path.name} there: {vocab_dst} is another model's vocabulary "
                                 f"(save into a folder of its own)", str(vocab_dst))
    path.parent.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().to("cpu").contiguous() for k, v in state_dict.items()}
    meta = {"format": FORMAT, "dims": json.dumps(dims.to_dict()),
            "quantization": json.dumps({k: quantization.get(k) for k in ("weight_only_precision", "group_size")}),
            "alignment_heads": json.dumps([list(map(int, p)) for p in alignment_heads or ()])}
    atomic_file(path, lambda tmp: save_file(tensors, tmp, metadata=meta))
    if copy_vocab:
        atomic_file(vocab_dst, lambda tmp: shutil.copyfile(vocab_file, tmp))
    return path


def quantized_vocab_dir(path: Path, dims: ModelDimensions) -> Optional[Path]:
    """The folder of the saved checkpoint ``path`` when it holds the vocabulary of ``dims``' model, else None."""
    return checkpoint_vocab_dir(Path(path).parent, vocab_name(dims.is_multilingual))


def _field(path: Path, meta: dict, key: str):
    try:
        return json.loads(meta[key])
    except (KeyError, TypeError, ValueError) as e:
        raise CheckpointError(f"{path}: quantized checkpoint metadata {key!r} is missing or not JSON ({e})") from None


def load_quantized(path) -> tuple[ModelDimensions, dict[str, torch.Tensor], dict, Optional[Heads]]:
    """``(dims, state_dict, quantization, alignment_heads)`` of a file ``save_quantized`` wrote (CheckpointError
    naming the file otherwise); ``quantization``: {"weight_only_precision", "group_size"}."""
    from safetensors import SafetensorError, safe_open

    path = Path(path)
    meta = _metadata(path)
    if meta.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not a quantized Whisper checkpoint (metadata format "
                              f"{meta.get('format')!r}, expected {FORMAT!r})")
    try:
        dims = ModelDimensions.from_dict(_field(path, meta, "dims"))
    except (TypeError, ValueError, AttributeError) as e:
        raise CheckpointError(f"{path}: bad dims in the metadata ({e})") from None
    quantization = _field(path, meta, "quantization")
    if not isinstance(quantization, dict):
        raise CheckpointError(f"{path}: metadata 'quantization' must be a JSON object, got {quantization!r}")
    heads = _field(path, meta, "alignment_heads")
    heads = parse_heads(heads, dims, str(path)) if heads else None
    try:
        with safe_open(str(path), framework="pt") as f:
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except (SafetensorError, OSError, RuntimeError, ValueError, TypeError) as e:
        raise CheckpointError(f"{path}: cannot read safetensors file ({e})") from None
    return dims, tensors, quantization, heads


def recorded_quantization(source, recorded: dict, precision: Optional[str], group_size: Optional[int]):
    """A quantized checkpoint's (precision, group size); OptionError when the caller asked for others."""
    have, have_group = recorded.get("weight_only_precision"), recorded.get("group_size")
    if precision is not None and precision != have:
        raise OptionError(f"weight_only_precision={precision!r}: {source} holds {have or 'float'} weights (its "
                          f"quantization is fixed when it is saved); leave weight_only_precision out")
    if group_size is not None and have == "int4" and group_size != have_group:
        raise OptionError(f"weight_only_group_size={group_size}: {source} holds int4 weights in groups of "
                          f"{have_group}; leave weight_only_group_size out")
    return have, have_group


__all__ = ["FORMAT", "QUANTIZED_FILE", "find_quantized", "load_quantized", "quantized_vocab_dir",
           "recorded_quantization", "save_quantized"]
