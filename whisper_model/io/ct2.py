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

import math
import os
import re
import struct
from pathlib import Path
from typing import Sequence

import torch

MAX_BINARY_VERSION = 6
MAX_NAME_BYTES = 1024  # names of variables, aliases and specs: CTranslate2's are well under 100

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

    def need(self, n: int, what: str) -> None:
        """ValueError unless ``n`` more bytes remain: checked before allocating anything of that size."""
        if n > self.total - self.pos:
            raise self.error(f"{what} needs {n} bytes but only {self.total - self.pos} remain")

    def read(self, n: int, what: str) -> bytearray:
        self.need(n, what)
        out = bytearray(n)
        self.readinto(memoryview(out), what)
        return out

    def readinto(self, view: memoryview, what: str) -> None:
        """Fill ``view`` from the stream, crossing part boundaries as needed."""
        n = view.nbytes
        self.need(n, what)
        filled = 0
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

    def unpack(self, fmt: str, what: str):
        values = struct.unpack("<" + fmt, self.read(struct.calcsize("<" + fmt), what))
        return values[0] if len(values) == 1 else values

    def string(self, what: str) -> str:
        length = self.unpack("H", f"{what} length")
        if not 0 < length <= MAX_NAME_BYTES:
            raise self.error(f"{what} has length {length} (expected 1..{MAX_NAME_BYTES})")
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
            name, value = _read_variable(stream, version, i)
            if name in variables:
                raise stream.error(f"variable {name!r} appears twice")
            variables[name] = value
        if version >= 3:
            _read_aliases(stream, variables)
        if stream.pos != stream.total:
            raise stream.error(f"{stream.total - stream.pos} unexpected trailing bytes")
    finally:
        stream.close()
    return spec, revision, variables


def _read_dtype(stream: _PartStream, version: int, name: str) -> tuple[torch.dtype, int]:
    """(dtype, payload bytes) of variable ``name``: a dtype id (version >= 4) or an item size."""
    if version >= 4:
        type_id = stream.unpack("B", f"dtype of {name}")
        if type_id >= len(_DTYPES):
            raise stream.error(f"variable {name!r} has unknown dtype id {type_id}")
        return _DTYPES[type_id], stream.unpack("I", f"size of {name}")
    item_size = stream.unpack("B", f"item size of {name}")
    if item_size not in _ITEM_SIZE_DTYPES:
        raise stream.error(f"variable {name!r} has unsupported item size {item_size}")
    return _ITEM_SIZE_DTYPES[item_size], stream.unpack("I", f"size of {name}") * item_size


def _read_variable(stream: _PartStream, version: int, i: int) -> tuple[str, torch.Tensor]:
    """The ``i``-th variable record: (name, tensor in its stored dtype)."""
    name = stream.string(f"name of variable {i}")
    rank = stream.unpack("B", f"rank of {name}")
    if rank > 8:
        raise stream.error(f"variable {name!r} has implausible rank {rank}")
    shape = struct.unpack(f"<{rank}I", stream.read(4 * rank, f"shape of {name}"))
    numel = math.prod(shape)
    if math.prod(d for d in shape if d) > 2**32:  # with a 0 in it, the rest could overflow torch's strides
        raise stream.error(f"variable {name!r} has implausible shape {list(shape)}")
    dtype, num_bytes = _read_dtype(stream, version, name)
    item = torch.empty((), dtype=dtype).element_size()
    if num_bytes != numel * item:
        raise stream.error(
            f"variable {name!r} of shape {list(shape)} and dtype {dtype} declares {num_bytes} bytes, "
            f"expected {numel * item}")
    stream.need(num_bytes, f"data of {name}")  # a corrupt size must not allocate gigabytes first
    raw = torch.empty(num_bytes, dtype=torch.uint8)
    stream.readinto(memoryview(raw.numpy()), f"data of {name}")
    return name, raw.view(dtype).reshape(shape)


def _read_aliases(stream: _PartStream, variables: dict[str, torch.Tensor]) -> None:
    """Add each alias record to ``variables`` as the very tensor object of its target."""
    for _ in range(stream.unpack("I", "alias count")):
        alias = stream.string("alias name")
        target = stream.string(f"target of alias {alias!r}")
        if target not in variables:
            raise stream.error(f"alias {alias!r} points to unknown variable {target!r}")
        variables[alias] = variables[target]


def _check_scale(name: str, value: torch.Tensor, scale: torch.Tensor) -> None:
    """ValueError unless ``scale`` is one scalar or one value per row of ``value``."""
    rows = value.shape[0] if value.dim() else 1
    if not (scale.numel() == 1 and scale.dim() <= 1) and tuple(scale.shape) != (rows,):
        raise ValueError(f"CTranslate2 variable {name}_scale has shape {list(scale.shape)}, expected a scalar or "
                         f"[{rows}] for {name} of shape {list(value.shape)}")


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
            _check_scale(name, value, scale)
            scale = scale.float()
            if scale.dim() == 1:
                scale = scale.reshape(-1, *([1] * (value.dim() - 1)))
            value = value.float() / scale
        elif not value.is_floating_point() and value.dim() > 0:
            raise ValueError(f"CTranslate2 variable {name!r} is {value.dtype} without a {name}_scale")
        out[name] = value
    return out


# ---------------------------------------------------------------------------------------------
# Whisper in CTranslate2 (WhisperSpec): variable names and the checks around them
_BLOCK = {"attn_ln": "self_attention/layer_norm", "attn.qkv": "self_attention/linear_0",
          "attn.dense": "self_attention/linear_1", "mlp_ln": "ffn/layer_norm", "mlp.fc": "ffn/linear_0",
          "mlp.proj": "ffn/linear_1", "cross_attn_ln": "attention/layer_norm", "cross_attn.query": "attention/linear_0",
          "cross_attn.kv": "attention/linear_1", "cross_attn.dense": "attention/linear_2"}
_GLOBAL = {"encoder.positional_embedding": "encoder/position_encodings/encodings",
           "encoder.ln_post": "encoder/layer_norm",
           "decoder.token_embedding": "decoder/embeddings",
           "decoder.positional_embedding": "decoder/position_encodings/encodings", "decoder.ln": "decoder/layer_norm"}
_BLOCK_RE = re.compile(r"^(encoder|decoder)\.blocks\.(\d+)\.(.+)\.(weight|bias)$")


def ct2_name(key: str) -> str:
    """CTranslate2 variable name of a canonical key (``encoder.blocks.0.attn.qkv.weight`` ->
    ``encoder/layer_0/self_attention/linear_0/weight``; layer norms use gamma / beta)."""
    if key in _GLOBAL:
        return _GLOBAL[key]
    if m := _BLOCK_RE.match(key):
        mod, param = f"{m[1]}/layer_{m[2]}/{_BLOCK[m[3]]}", m[4]
    else:
        mod, param = key.rsplit(".", 1)
        mod = _GLOBAL.get(mod, mod.replace(".", "/"))
    if mod.endswith("layer_norm"):
        param = {"weight": "gamma", "bias": "beta"}[param]
    return f"{mod}/{param}"


def find_parts(directory: Path) -> list[Path] | None:
    """``[model.bin]``, or ``model.bin.part1..N`` in order, or None when the directory has neither."""
    if (directory / "model.bin").is_file():
        return [directory / "model.bin"]
    numbered = {int(m[1]): p for p in directory.iterdir() if (m := re.fullmatch(r"model\.bin\.part(\d+)", p.name))}
    if not numbered:
        return None
    if sorted(numbered) != list(range(1, len(numbered) + 1)):
        raise ValueError(f"{directory}: model.bin parts {sorted(numbered)} are not numbered 1..{len(numbered)}")
    return [numbered[i] for i in sorted(numbered)]


def _heads(where: str, name: str, value: torch.Tensor) -> int:
    """A head count stored as a scalar: a positive integer, else ValueError."""
    number = value.item()  # int, float or bool
    whole = isinstance(number, int) or (math.isfinite(number) and float(number).is_integer())
    if isinstance(number, bool) or not whole or int(number) <= 0:
        raise ValueError(f"{where}: {name} is {number!r}, expected a positive number of heads")
    return int(number)


def read_whisper_variables(parts: Sequence[Path]) -> tuple[dict[str, torch.Tensor], tuple, list[str]]:
    """(float variables, (encoder heads, decoder heads) or None each, names to ignore: the scalars and a
    tied output projection). ValueError for another architecture or an untied projection."""
    where = " + ".join(map(str, parts))
    spec, _, variables = read_ct2_model(parts)
    if spec != "WhisperSpec":
        raise ValueError(f"{where}: CTranslate2 model of spec {spec!r}, not a Whisper model (WhisperSpec)")
    try:
        variables = dequantize(variables)
    except ValueError as e:
        raise ValueError(f"{where}: {e}") from None
    scalars = [k for k, v in variables.items() if v.dim() == 0]
    heads = tuple(_heads(where, k, variables[k]) if k in scalars else None
                  for k in ("encoder/num_heads", "decoder/num_heads"))
    emb, ignore = variables.get("decoder/embeddings/weight"), scalars
    for name in ("decoder/projection/weight", "decoder/projection/bias"):
        value = variables.get(name)
        if value is None:
            continue
        if name.endswith("bias"):
            tied = not value.any()
        else:  # normally an alias of the embedding, i.e. the very same tensor
            tied = value is emb or (emb is not None and value.shape == emb.shape and torch.equal(value, emb))
        if not tied:
            raise ValueError(f"{where}: {name} is not tied to the token embedding; unsupported")
        ignore.append(name)
    return variables, heads, ignore

