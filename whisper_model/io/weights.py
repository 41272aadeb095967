"""Whisper checkpoints in the project's canonical state-dict naming.

``load_checkpoint`` reads an openai-whisper ``.pt``, a Hugging Face Whisper directory (safetensors)
or a CTranslate2 Whisper directory (``model.bin`` or ``model.bin.part1``, ``.part2``, ...), checks
every key and shape, and returns ``(ModelDimensions, state_dict)`` in the canonical layout of
``layout.py`` (formats without a key bias get zeros there); ``export.py`` writes the other way.

Anything else (another kind of file, another model, mismatched shapes, a truncated or corrupt file) is a
``CheckpointError`` "not a Whisper checkpoint: <path>: <why>". Files are read by content (``filekind``); pickles
only with ``weights_only=True`` (``torchfile``); every size a file declares is checked against the file's own
size before anything of that size is allocated, so a corrupt header cannot ask for unbounded memory.
"""
from __future__ import annotations

import json
import re
import reprlib
from pathlib import Path
from typing import Sequence

import torch

from ..config import ModelDimensions
from ..errors import CheckpointError
from .ct2 import read_whisper_variables

from .layout import StateDict, expected_shapes, foreign_key, fuse
from .locate import Source, bundled_parts, checkpoint_dir, few, locate  # noqa: F401 - also weights' own API
from .torchfile import load_torch_file
from .vocab import check_vocabulary_size


# name -> (package, sub directory, file) for each ordered part of model.bin
_HF_CONFIG = {"n_audio_state": "d_model", "n_text_state": "d_model", "n_audio_layer": "encoder_layers",
              "n_text_layer": "decoder_layers", "n_mels": "num_mel_bins", "n_audio_ctx": "max_source_positions",
              "n_text_ctx": "max_target_positions", "n_vocab": "vocab_size"}  # dims field -> config.json key
_LAYER_RE = {"openai": re.compile(r"^(encoder|decoder)\.blocks\.(\d+)\."),
             "hf": re.compile(r"^model\.(encoder|decoder)\.layers\.(\d+)\."),
             "ct2": re.compile(r"^(encoder|decoder)/layer_(\d+)/")}


# ---------------------------------------------------------------------------------------------
# foreign tensors -> checked canonical state dict
def _layer_counts(fmt: str, where: str, tensors: dict[str, torch.Tensor]) -> dict[str, int]:
    """Blocks per side, from the tensor names (bounded by the tensors there are: one name cannot ask for
    a billion layers)."""
    n_layer = {"encoder": 0, "decoder": 0}
    for name in tensors:
        if m := _LAYER_RE[fmt].match(name):
            n_layer[m[1]] = max(n_layer[m[1]], int(m[2]) + 1)
    if max(n_layer.values()) > len(tensors):
        raise ValueError(f"{where}: a tensor name claims {max(n_layer.values())} layers, but there are only "
                         f"{len(tensors)} tensors")
    return n_layer


def _check_backed(where: str, sd: StateDict, names: dict[str, str], source_bytes: int | None) -> None:
    """ValueError unless every tensor is dense with its own elements (no stride-0 views of a small storage) and
    the canonical tensors hold no more elements than the files have bytes: later copies stay bounded."""
    for k, t in sd.items():
        if t.layout != torch.strided or t.numel() * t.element_size() > t.untyped_storage().nbytes():
            raise ValueError(f"{where}: tensor {names[k]!r} of shape {list(t.shape)} is not a dense tensor")
    total = sum(t.numel() for t in sd.values())
    if source_bytes is not None and total > source_bytes:
        raise ValueError(f"{where}: its tensors claim {total} elements but the files hold only {source_bytes} "
                         "bytes: they are views of shared data")


def _convert(fmt: str, where: str, tensors: dict[str, torch.Tensor], heads: tuple[int | None, int | None],
             declared: dict | None = None, ignore: Sequence[str] = (),
             source_bytes: int | None = None) -> tuple[ModelDimensions, StateDict]:
    """Foreign tensors -> checked canonical state dict. ``declared`` holds dims a file states; ``source_bytes``
    the size of the files the tensors come from."""
    fused = fmt == "ct2"
    n_layer = _layer_counts(fmt, where, tensors)
    # key check first: it needs only the layer counts
    probe = ModelDimensions(1, 1, 1, 1, n_layer["encoder"], 1, 1, 1, 1, n_layer["decoder"])
    names = {k: foreign_key(fmt, k) for k in expected_shapes(probe, fused)}
    declared = declared or {}
    missing = [f for f in names.values() if f not in tensors]
    unexpected = sorted(set(tensors) - set(names.values()) - set(ignore))
    if missing or unexpected or not all(n_layer.values()):
        problems = ["no encoder/decoder blocks"] if not all(n_layer.values()) else []
        problems += [f"{len(v)} {what} tensors ({few(v)})"
                     for what, v in (("missing", missing), ("unexpected", unexpected)) if v]
        raise ValueError(f"{where}: not a complete Whisper checkpoint: " + "; ".join(problems))
    sd = {k: tensors[f] for k, f in names.items()}
    _check_backed(where, sd, names, source_bytes)
    for k in ("encoder.conv1.weight", "decoder.token_embedding.weight", "encoder.positional_embedding",
              "decoder.positional_embedding"):
        if sd[k].dim() != (3 if k.endswith("conv1.weight") else 2):
            raise ValueError(f"{where}: tensor {names[k]!r} has shape {list(sd[k].shape)}, wrong rank")
    d, t = sd["encoder.conv1.weight"].shape[0], sd["decoder.token_embedding.weight"].shape[1]
    dims = ModelDimensions(
        n_mels=sd["encoder.conv1.weight"].shape[1], n_audio_ctx=sd["encoder.positional_embedding"].shape[0],
        n_audio_state=d, n_audio_head=heads[0] or d // 64, n_audio_layer=n_layer["encoder"],
        n_vocab=sd["decoder.token_embedding.weight"].shape[0], n_text_ctx=sd["decoder.positional_embedding"].shape[0],
        n_text_state=t, n_text_head=heads[1] or t // 64, n_text_layer=n_layer["decoder"])
    for field, value in declared.items():
        if getattr(dims, field) != value:
            raise ValueError(f"{where}: declares {field}={value} but the tensors give {getattr(dims, field)}")
    for k, shape in expected_shapes(dims, fused).items():
        if tuple(sd[k].shape) != shape:
            raise ValueError(f"{where}: tensor {names[k]!r} (canonical {k}) has shape {list(sd[k].shape)}, "
                             f"expected {list(shape)}")
        if not sd[k].is_floating_point():
            raise ValueError(f"{where}: tensor {names[k]!r} has non-float dtype {sd[k].dtype}")
    if not fused:
        sd = fuse(dims, sd)
    check_state_dict(dims, sd, where)
    return dims, sd


def check_state_dict(dims: ModelDimensions, sd: StateDict, where: str = "state dict") -> None:
    """ValueError unless ``sd`` has exactly the canonical keys with the right shapes."""
    expected = expected_shapes(dims)
    missing, unexpected = sorted(set(expected) - set(sd)), sorted(set(sd) - set(expected))
    if missing or unexpected:
        raise ValueError(f"{where}: missing keys [{few(missing)}], unexpected keys [{few(unexpected)}]")
    for key, shape in expected.items():
        if tuple(sd[key].shape) != shape:
            raise ValueError(f"{where}: {key} has shape {list(sd[key].shape)}, expected {list(shape)}")
    for side in ("audio", "text"):
        state, heads = getattr(dims, f"n_{side}_state"), getattr(dims, f"n_{side}_head")
        if heads <= 0 or state % heads:
            raise ValueError(f"{where}: n_{side}_state={state} is not divisible by n_{side}_head={heads}")


# ---------------------------------------------------------------------------------------------
# readers
def _read_json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError) as e:  # RecursionError: nesting
        raise ValueError(f"{path}: cannot read JSON ({e})") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a JSON object")
    return data


def _holds(obj) -> str:
    """What a loaded object is, in a few words."""
    if isinstance(obj, dict):
        return f"a dict with keys [{few([reprlib.repr(k) for k in obj])}]"
    return f"a {type(obj).__name__}"


def _int_field(where: str, what: str, value, optional: bool = False) -> int | None:
    """``value`` as a positive int (None passes when ``optional``), else ValueError naming ``what``."""
    if value is None and optional:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(f"{where}: {what} is {reprlib.repr(value)}, expected a positive integer")
    return value


def _load_openai(path: Path) -> tuple[ModelDimensions, StateDict]:
    ckpt = load_torch_file(path)
    if not isinstance(ckpt, dict) or "model_state_dict" not in ckpt or "dims" not in ckpt:
        raise ValueError(f"{path}: a PyTorch file but not an openai-whisper checkpoint (a dict with 'dims' and "
                         f"'model_state_dict'); it holds {_holds(ckpt)}")
    dims, tensors = ckpt["dims"], ckpt["model_state_dict"]
    fields = list(ModelDimensions.__dataclass_fields__)
    if not isinstance(dims, dict) or sorted(set(fields) - set(dims)):
        raise ValueError(f"{path}: 'dims' is {_holds(dims)}, expected a dict of {', '.join(fields)}")
    declared = {k: _int_field(str(path), f"dims[{k!r}]", dims[k]) for k in fields}
    if not isinstance(tensors, dict) or not all(isinstance(k, str) and isinstance(v, torch.Tensor)
                                                for k, v in tensors.items()):
        raise ValueError(f"{path}: 'model_state_dict' is not a dict of named tensors; it is {_holds(tensors)}")
    return _convert("openai", str(path), dict(tensors), (declared["n_audio_head"], declared["n_text_head"]),
                    declared, source_bytes=path.stat().st_size)


def _shard_names(index: Path) -> list[str]:
    """The safetensors files of a sharded checkpoint's index (plain file names of this directory)."""
    weight_map = _read_json(index).get("weight_map")
    if not isinstance(weight_map, dict) or not weight_map:
        raise ValueError(f"{index}: 'weight_map' is {_holds(weight_map)}, expected a dict of tensor -> file")
    files = sorted({str(v) for v in weight_map.values()})
    bad = [f for f in files if not f.endswith(".safetensors") or Path(f).name != f]
    if bad:
        raise ValueError(f"{index}: weight_map names {reprlib.repr(bad[0])}, not a *.safetensors file of this "
                         "directory")
    return files


def _load_hf(directory: Path) -> tuple[ModelDimensions, StateDict]:
    from safetensors import SafetensorError, safe_open

    cfg = _read_json(directory / "config.json")
    if cfg.get("model_type") != "whisper":
        raise ValueError(f"{directory / 'config.json'}: model_type {reprlib.repr(cfg.get('model_type'))} is not a "
                         "Whisper model")
    index = directory / "model.safetensors.index.json"
    if index.is_file():
        files = _shard_names(index)
    elif (directory / "model.safetensors").is_file():
        files = ["model.safetensors"]
    else:
        files = sorted(p.name for p in directory.glob("*.safetensors"))
    if not files:
        raise ValueError(f"{directory}: Hugging Face Whisper config.json but no *.safetensors weights")
    tensors: dict[str, torch.Tensor] = {}
    for name in files:
        try:
            with safe_open(directory / name, framework="pt") as f:
                tensors.update({k: f.get_tensor(k) for k in f.keys()})
        except (SafetensorError, OSError, RuntimeError, ValueError, TypeError) as e:  # TypeError: unknown dtype
            raise ValueError(f"{directory / name}: cannot read safetensors file ({e})") from None
    tensors = {k if k.startswith(("model.", "proj_out.")) else f"model.{k}": v for k, v in tensors.items()}
    emb = tensors.get("model.decoder.embed_tokens.weight")
    proj = tensors.pop("proj_out.weight", None)
    if proj is not None and emb is not None and not torch.equal(proj, emb):
        raise ValueError(f"{directory}: proj_out.weight differs from embed_tokens (untied output is unsupported)")
    where = str(directory / "config.json")
    declared = {field: _int_field(where, key, cfg[key])
                for field, key in _HF_CONFIG.items() if cfg.get(key) is not None}
    heads = tuple(_int_field(where, k, cfg.get(k), optional=True)
                  for k in ("encoder_attention_heads", "decoder_attention_heads"))
    return _convert("hf", str(directory), tensors, heads, declared,
                    source_bytes=sum((directory / name).stat().st_size for name in files))


def _load_ct2(parts: list[Path]) -> tuple[ModelDimensions, StateDict]:
    where = str(parts[0]) if len(parts) == 1 else " + ".join(map(str, parts))
    variables, heads, ignore = read_whisper_variables(parts)
    dims, sd = _convert("ct2", where, variables, heads, ignore=ignore,
                        source_bytes=sum(p.stat().st_size for p in parts))
    check_vocabulary_size(parts[0].parent, dims.n_vocab)
    return dims, sd


def load_checkpoint(name_or_path: Source, *, dtype: torch.dtype | None = None) -> tuple[ModelDimensions, StateDict]:
    """Load Whisper weights as ``(dims, canonical state dict)``.

    ``name_or_path``: a bundled name ('tiny.en', 'base'), an openai-whisper ``.pt`` file, a Hugging
    Face Whisper directory, a CTranslate2 directory (or its model.bin), or a list of ordered
    model.bin part files. ``dtype`` casts every tensor; None keeps the stored dtype (CT2 int8
    weights come back float32). Raises ``CheckpointError`` (a ValueError) "not a Whisper checkpoint: <path>:
    <why>" for anything that is not one, or an unknown name; FileNotFoundError for a missing path or package.
    """
    try:
        fmt, where = locate(name_or_path)
        dims, sd = {"ct2": _load_ct2, "hf": _load_hf, "openai": _load_openai}[fmt](where)
    except CheckpointError:
        raise
    except ValueError as e:  # the readers' reasons, each naming its file; one line, whatever a file holds
        raise CheckpointError("not a Whisper checkpoint: " + " ".join(str(e).splitlines())) from e
    if dtype is not None:
        sd = {k: v.to(dtype) for k, v in sd.items()}
    return dims, sd


