"""What a checkpoint file is, from its first bytes: the loaders pick a reader by content and say what a file that
is none of theirs looks like ("a text file", "a safetensors file", ...) instead of passing it to a parser that
answers with its internals.

    file_kind(path)      -> ZIP | LEGACY_PICKLE | PICKLE | SAFETENSORS | CT2 | TEXT | EMPTY | BINARY
    describe(path, kind) -> "a text file (starts 'hello')"
"""
from __future__ import annotations

import struct
from pathlib import Path

ZIP, LEGACY_PICKLE, PICKLE = "zip", "legacy-pickle", "pickle"
SAFETENSORS, CT2, TEXT, EMPTY, BINARY = "safetensors", "ct2", "text", "empty", "binary"

_HEAD = 512
# torch.save's format before PyTorch 1.6: pickle protocol 2, then LONG1 of the magic number 0x1950a86a20f9469cfc6c
_LEGACY_MAGIC = b"\x80\x02\x8a\x0a\x6c\xfc\x9c\x46\xf9\x20\x6a\xa8\x50\x19"
_CT2_MAX_VERSION = 6


def _head(path: Path) -> tuple[bytes, int]:
    with open(path, "rb") as f:
        return f.read(_HEAD), Path(path).stat().st_size


def _is_ct2(head: bytes) -> bool:
    """A CTranslate2 model.bin of binary version >= 2: u32 version, then a NUL-terminated printable spec name."""
    if len(head) < 7:
        return False
    version, length = struct.unpack_from("<IH", head)
    name = head[6:6 + length]
    return (2 <= version <= _CT2_MAX_VERSION and 2 <= length <= 256 and len(name) == length and name[-1] == 0
            and all(32 <= b < 127 for b in name[:-1]))


def _is_safetensors(head: bytes, size: int) -> bool:
    """u64 header length, then a JSON object of that length within the file."""
    return len(head) >= 9 and 2 <= struct.unpack_from("<Q", head)[0] <= size - 8 and head[8:9] == b"{"


def _is_text(head: bytes, whole: bool) -> bool:
    """UTF-8 without control characters (``whole``: ``head`` is the whole file, else a character may be cut)."""
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError as e:
        if whole or e.start < len(head) - 3:
            return False
        text = head[:e.start].decode("utf-8")
    return all(c.isprintable() or c in "\t\n\r\f" for c in text)


def file_kind(path: Path) -> str:
    """The kind of file ``path`` is (OSError when it cannot be read)."""
    head, size = _head(path)
    if not head:
        return EMPTY
    if head.startswith((b"PK\x03\x04", b"PK\x05\x06")):
        return ZIP
    if head.startswith(_LEGACY_MAGIC):
        return LEGACY_PICKLE
    if head[:1] == b"\x80" and head[1:2] in (b"\x02", b"\x03", b"\x04", b"\x05"):
        return PICKLE
    if _is_safetensors(head, size):
        return SAFETENSORS
    if _is_ct2(head):
        return CT2
    return TEXT if _is_text(head, whole=size <= len(head)) else BINARY


def describe(path: Path, kind: str) -> str:
    """A few words on what the file is, for a message."""
    if kind == TEXT:
        first = _head(path)[0].decode("utf-8", errors="replace").strip().split("\n")[0][:40]
        return f"a text file (starts {first!r})"
    if kind == BINARY:
        return f"unrecognized binary data (first bytes {_head(path)[0][:8].hex(' ')})"
    return {ZIP: "a zip archive", LEGACY_PICKLE: "a PyTorch file in the legacy format of PyTorch < 1.6",
            PICKLE: "a plain pickle", SAFETENSORS: "a safetensors file", CT2: "a CTranslate2 model file",
            EMPTY: "an empty file (0 bytes)"}[kind]
