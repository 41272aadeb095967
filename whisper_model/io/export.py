"""Writing canonical Whisper state dicts in other formats: openai-whisper ``.pt`` and Hugging Face.

``to_openai`` / ``to_hf`` rename and split the tensors (see ``layout.py``); ``save_openai`` and
``save_hf`` write the result atomically. ``weights.load_checkpoint`` reads either back.
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

import torch

from ..config import ModelDimensions
from .layout import StateDict, foreign_key, unfuse
from .weights import check_state_dict


def to_openai(dims: ModelDimensions, sd: StateDict, alignment_heads=None) -> dict:
    """An openai-whisper checkpoint dict: {"dims": {...}, "model_state_dict": {...}} (+ "alignment_heads": [[layer,
    head], ...] when given; openai-whisper ignores the extra key)."""
    check_state_dict(dims, sd)
    ckpt = {"dims": dims.to_dict(),
            "model_state_dict": {foreign_key("openai", k): v for k, v in unfuse(dims, sd).items()}}
    if alignment_heads:
        ckpt["alignment_heads"] = [list(map(int, p)) for p in alignment_heads]
    return ckpt


def to_hf(dims: ModelDimensions, sd: StateDict) -> StateDict:
    """Hugging Face ``WhisperForConditionalGeneration`` tensors (proj_out is tied, so omitted)."""
    check_state_dict(dims, sd)
    return {foreign_key("hf", k): v for k, v in unfuse(dims, sd).items()}


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


def atomic_dir(out_dir: Path, overwrite: bool, write) -> Path:
    """Write a directory through ``write(tmp_dir)`` into a temporary sibling, then move it into place (an existing
    non-empty ``out_dir`` only with ``overwrite``)."""
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
            dtype: torch.dtype | None = torch.float16, *, overwrite: bool = False, alignment_heads=None) -> Path:
    """Write a Hugging Face Whisper directory (config.json + model.safetensors, + generation_config.json with
    ``alignment_heads`` [[layer, head], ...] when given) atomically."""
    from safetensors.torch import save_file

    tensors = {k: (v if dtype is None else v.to(dtype)).contiguous() for k, v in to_hf(dims, state_dict).items()}
    config = hf_config(dims, dtype)

    def write(tmp: Path):
        save_file(tensors, str(tmp / "model.safetensors"), metadata={"format": "pt"})
        (tmp / "config.json").write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
        if alignment_heads:
            heads = {"alignment_heads": [list(map(int, p)) for p in alignment_heads]}
            (tmp / "generation_config.json").write_text(json.dumps(heads, indent=2) + "\n", encoding="utf-8")

    return atomic_dir(Path(out_dir), overwrite, write)


def atomic_file(path: Path, write) -> None:
    """``write(tmp)`` into a temporary file beside ``path``, then renamed to it (removed if ``write`` fails)."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.tmp-", dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def save_openai(dims: ModelDimensions, state_dict: StateDict, path: str | os.PathLike, alignment_heads=None) -> Path:
    """Write an openai-whisper ``.pt`` checkpoint atomically (temp file then rename)."""
    path = Path(path).expanduser()
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_file(path, lambda tmp: torch.save(to_openai(dims, state_dict, alignment_heads), tmp))
    return path
