"""Reading a ``torch.save`` file that may be anything: always ``weights_only=True``, sizes checked before allocating,
and one short reason (no PyTorch boilerplate) when it cannot be read.

Only the zip format of ``torch.save`` (PyTorch >= 1.6, what openai-whisper ships) is read: the legacy format
allocates every storage at the size its pickle claims before reading any data. Before the real load, the zip's
entries are checked (stored, not compressed; inside the file) and the pickle is loaded once onto the ``meta``
device, which allocates nothing, so that every storage it claims can be checked against the file's size.
"""
from __future__ import annotations

import struct
import warnings
import zipfile
from pathlib import Path

import torch

from .filekind import LEGACY_PICKLE, ZIP, describe, file_kind

# the lines of torch.load's weights-only message that are advice, not the reason
_ADVICE = ("Weights only load failed", "(1)", "(2)", "Please file an issue", "Check the documentation")
_RESAVE = "load it in a trusted PyTorch and torch.save it again to get the zip format"


def _short(error: BaseException) -> str:
    """One line from torch.load's exception: the weights-only unpickler's reason without its advice text."""
    text = str(error)
    if text.startswith("Weights only load failed"):
        lines = [line.strip() for line in text.splitlines() if line.strip()]
        core = next((line for line in lines if not line.startswith(_ADVICE)), "?")
        core = core.replace("WeightsUnpickler error:", "").strip().split(". ")[0].rstrip(".")
        if "global" in core.lower():  # "Unsupported global: GLOBAL numpy.dtype was not an allowed global ..."
            return (f"its pickle holds objects other than tensors and plain containers ({core[:200]}); "
                    "pickle checkpoints are only loaded with weights_only=True")
        return f"its pickle is corrupt ({core[:200]})"
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return f"cannot be read as a PyTorch checkpoint ({type(error).__name__}: {(lines or [''])[0][:200]})"


def _check_zip(path: Path, size: int) -> None:
    """ValueError unless ``path`` is a zip of stored entries within the file with one ``*/data.pkl``."""
    try:
        with zipfile.ZipFile(path) as archive:
            entries = archive.infolist()
    except (zipfile.BadZipFile, OSError, EOFError, ValueError, struct.error, NotImplementedError,
            OverflowError) as e:
        reason = "its end-of-archive directory is missing" if "not a zip file" in str(e) else f"{e}"
        raise ValueError(f"{path}: a truncated or corrupt zip archive ({reason})") from e
    pickles = [e.filename for e in entries if e.filename.endswith("data.pkl") and e.filename.count("/") == 1]
    if len(pickles) != 1:
        raise ValueError(f"{path}: a zip archive but not a PyTorch checkpoint (it has {len(pickles)} "
                         "<name>/data.pkl entries, expected 1)")
    for e in entries:
        if e.compress_type != zipfile.ZIP_STORED or e.file_size != e.compress_size:
            raise ValueError(f"{path}: zip entry {e.filename!r} is compressed; torch.save stores its entries")
        if e.header_offset + e.file_size > size:
            raise ValueError(f"{path}: zip entry {e.filename!r} ({e.file_size} bytes) ends past the end of the "
                             f"file ({size} bytes): truncated or corrupt")


def _tensors(obj, limit: int = 1_000_000) -> list[torch.Tensor]:
    """The tensors in a loaded object of nested dicts, lists and tuples (each container visited once)."""
    found, todo, seen = [], [obj], set()
    while todo and len(seen) < limit:
        item = todo.pop()
        if isinstance(item, torch.Tensor):
            found.append(item)
        elif isinstance(item, (dict, list, tuple, set)) and id(item) not in seen:
            seen.add(id(item))
            todo.extend(item.values() if isinstance(item, dict) else item)
            if isinstance(item, dict):
                todo.extend(item.keys())
    return found


def _check_claims(path: Path, meta, size: int) -> None:
    """ValueError when a tensor is not dense or its storage claims more bytes than the file has."""
    for t in _tensors(meta):
        if t.layout != torch.strided or t.is_quantized:
            raise ValueError(f"{path}: holds a {t.layout} tensor; only dense tensors are read")
        claimed = t.untyped_storage().nbytes()
        if claimed > size:
            raise ValueError(f"{path}: a tensor of shape {list(t.shape)} claims a storage of {claimed} bytes but "
                             f"the file has only {size}: corrupt")


def _load(path: Path, map_location: str):
    try:
        with warnings.catch_warnings():  # e.g. "Detected pickle protocol 109": the outcome says it all
            warnings.simplefilter("ignore", UserWarning)
            return torch.load(path, weights_only=True, map_location=map_location)
    except Exception as e:  # noqa: BLE001 - any failure of the unpickler on foreign data means "not readable"
        raise ValueError(f"{path}: {_short(e)}") from e


def peek_torch_file(path: Path):
    """What ``load_torch_file`` would return, with every tensor on the ``meta`` device (nothing allocated): for
    reading a checkpoint's plain entries (dims, alignment heads) without its weights."""
    path = Path(path)
    if file_kind(path) != ZIP:
        raise ValueError(f"{path}: {describe(path, file_kind(path))}, not a PyTorch checkpoint (torch.save's zip "
                         "format)")
    _check_zip(path, path.stat().st_size)
    return _load(path, "meta")


def load_torch_file(path: Path):
    """``torch.load(path, weights_only=True)`` of a zip-format file, refused with a ValueError (naming the path
    and one reason) when it is another kind of file, corrupt, or claims more data than it holds."""
    path = Path(path)
    kind = file_kind(path)
    if kind == LEGACY_PICKLE:
        raise ValueError(f"{path}: {describe(path, kind)}, which is not read (it allocates what its header "
                         f"claims before reading); {_RESAVE}")
    if kind != ZIP:
        raise ValueError(f"{path}: {describe(path, kind)}, not a PyTorch checkpoint (torch.save's zip format)")
    size = path.stat().st_size
    _check_zip(path, size)
    _check_claims(path, _load(path, "meta"), size)
    return _load(path, "cpu")
