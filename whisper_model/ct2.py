"""Reader for CTranslate2 ``model.bin`` files, including ones split into ordered parts.

Binary layout (little endian; see CTranslate2's ``specs/model_spec.py`` ``_serialize``)::

    u32 binary_version            (<= 6; >= 2 has the two fields below)
    str spec_name                 e.g. "WhisperSpec"
    u32 spec_revision
    u32 num_variables
    num_variables x { str name; u8 rank; u32 dims[rank];
                      u8 dtype_id (version >= 4) | u8 item_size (older);
                      u32 num_bytes (>= 4) | u32 num_items (older); bytes payload }
    u32 num_aliases               (version >= 3)
    num_aliases x { str alias; str target }

``str`` is ``u16 length`` (counting a trailing NUL) followed by that many bytes. Parts
(``model.bin.part1``, ``model.bin.part2``, ...) are read back to back as one stream;
nothing is written to disk.
"""
from __future__ import annotations

import os
import struct
from pathlib import Path
from typing import Sequence

import torch

MAX_BINARY_VERSION = 6

# CTranslate2's DataType enum order (include/ctranslate2/types.h).
_DTYPES = (torch.float32, torch.int8, torch.int16, torch.int32, torch.float16, torch.bfloat16)
_ITEM_SIZE_DTYPES = {4: torch.float32, 2: torch.float16, 1: torch.int8}  # binary versions < 4


class _PartStream:
    """Sequential reader over several files, as if they were concatenated."""

    def __init__(self, parts: Sequence[Path]):
        self.parts = [Path(p) for p in parts]
        self.sizes = [p.stat().st_size for p in self.parts]
        self.total = sum(self.sizes)
        self.pos = 0
        self._index = 0
        self._file = open(self.parts[0], "rb") if self.parts else None

    def describe(self) -> str:
        if len(self.parts) == 1:
            return str(self.parts[0])
        return " + ".join(str(p) for p in self.parts)

    def error(self, what: str) -> ValueError:
        return ValueError(f"corrupt or truncated CTranslate2 model {self.describe()}: {what} (at byte {self.pos})")

    def read(self, n: int, what: str) -> bytes | bytearray:
        if n > self.total - self.pos:
            raise self.error(f"{what} needs {n} bytes but only {self.total - self.pos} remain")
        out = bytearray(n)
        view, filled = memoryview(out), 0
        while filled < n:
            got = self._file.readinto(view[filled:])
            if not got:  # this part is exhausted: go on with the next one
                self._file.close()
                self._index += 1
                if self._index >= len(self.parts):
                    raise self.error(f"unexpected end of data while reading {what}")
                self._file = open(self.parts[self._index], "rb")
                continue
            filled += got
        self.pos += n
        return out

    def unpack(self, fmt: str, what: str):
        values = struct.unpack("<" + fmt, self.read(struct.calcsize("<" + fmt), what))
        return values[0] if len(values) == 1 else values

    def string(self, what: str) -> str:
        length = self.unpack("H", f"{what} length")
        if length == 0:
            raise self.error(f"{what} has length 0")
        raw = self.read(length, what)
        if raw[-1] != 0:
            raise self.error(f"{what} is not NUL terminated")
        try:
            return raw[:-1].decode("utf-8")
        except UnicodeDecodeError:
            raise self.error(f"{what} is not valid UTF-8") from None

    def close(self):
        if self._file is not None:
            self._file.close()
            self._file = None


def read_ct2_model(parts: Sequence[str | os.PathLike]) -> tuple[str, int, dict[str, torch.Tensor]]:
    """Read a CTranslate2 model.bin (or its ordered parts) as ``(spec_name, revision, variables)``.

    Aliases are resolved: an alias maps to the same tensor object as its target. Tensors keep
    their stored dtype (int8 / int16 weights come with their ``*_scale`` variables, see
    :func:`dequantize`). Any inconsistency raises ValueError naming the file(s).
    """
    paths = [Path(p) for p in parts]
    if not paths:
        raise ValueError("no CTranslate2 model.bin parts given")
    for p in paths:
        if not p.is_file():
            raise FileNotFoundError(f"CTranslate2 model part not found: {p}")
    stream = _PartStream(paths)
    try:
        version = stream.unpack("I", "binary version")
        if not 1 <= version <= MAX_BINARY_VERSION:
            raise stream.error(f"unsupported binary version {version} (expected 1..{MAX_BINARY_VERSION})")
        spec, revision = "", 1
        if version >= 2:
            spec = stream.string("spec name")
            revision = stream.unpack("I", "spec revision")
        count = stream.unpack("I", "variable count")
        variables: dict[str, torch.Tensor] = {}
        for i in range(count):
            name = stream.string(f"name of variable {i}")
            rank = stream.unpack("B", f"rank of {name}")
            if rank > 8:
                raise stream.error(f"variable {name!r} has implausible rank {rank}")
            shape = struct.unpack(f"<{rank}I", stream.read(4 * rank, f"shape of {name}"))
            numel = 1
            for dim in shape:
                numel *= dim
            if version >= 4:
                type_id = stream.unpack("B", f"dtype of {name}")
                if type_id >= len(_DTYPES):
                    raise stream.error(f"variable {name!r} has unknown dtype id {type_id}")
                dtype = _DTYPES[type_id]
                num_bytes = stream.unpack("I", f"size of {name}")
            else:
                item_size = stream.unpack("B", f"item size of {name}")
                if item_size not in _ITEM_SIZE_DTYPES:
                    raise stream.error(f"variable {name!r} has unsupported item size {item_size}")
                dtype = _ITEM_SIZE_DTYPES[item_size]
                num_bytes = stream.unpack("I", f"size of {name}") * item_size
            item = torch.empty((), dtype=dtype).element_size()
            if num_bytes != numel * item:
                raise stream.error(
                    f"variable {name!r} of shape {list(shape)} and dtype {dtype} declares {num_bytes} bytes, "
                    f"expected {numel * item}")
            payload = stream.read(num_bytes, f"data of {name}")
            if name in variables:
                raise stream.error(f"variable {name!r} appears twice")
            tensor = torch.frombuffer(payload, dtype=dtype) if num_bytes else torch.empty(0, dtype=dtype)
            variables[name] = tensor.reshape(shape)
        if version >= 3:
            for _ in range(stream.unpack("I", "alias count")):
                alias = stream.string("alias name")
                target = stream.string(f"target of alias {alias!r}")
                if target not in variables:
                    raise stream.error(f"alias {alias!r} points to unknown variable {target!r}")
                variables[alias] = variables[target]
        if stream.pos != stream.total:
            raise stream.error(f"{stream.total - stream.pos} unexpected trailing bytes")
    finally:
        stream.close()
    return spec, revision, variables


def dequantize(variables: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Replace int8/int16 ``X/weight`` + ``X/weight_scale`` pairs by float32 ``X/weight``.

    CTranslate2 quantizes as ``q = round(w * scale)`` (int8: one scale per output row, int16: one
    scalar), so ``w = q / scale``.
    """
    out = {}
    for name, value in variables.items():
        if name.endswith("_scale") and name[: -len("_scale")] in variables:
            continue
        if name.endswith("_zero") and name[: -len("_zero")] in variables:
            raise ValueError(f"CTranslate2 variable {name!r}: zero-point (AWQ) quantization is not supported")
        scale = variables.get(name + "_scale")
        if scale is not None and not value.is_floating_point():
            scale = scale.float()
            if scale.dim() == 1:
                scale = scale.reshape(-1, *([1] * (value.dim() - 1)))
            value = value.float() / scale
        elif not value.is_floating_point() and value.dim() > 0:
            raise ValueError(f"CTranslate2 variable {name!r} is {value.dtype} without a {name}_scale")
        out[name] = value
    return out
