"""Seed inputs for the loader fuzzers (tests/fuzz): tiny but valid Whisper checkpoints in every format the loaders
read, and short valid audio files cut from the shared clips. Everything is built here, from nothing but the
project's own writers (and a test-only CTranslate2 writer), so the corpus needs no download.
"""
from __future__ import annotations

import io
import json
import tempfile
import wave
from functools import lru_cache
from pathlib import Path

import torch

from _ct2_file import ct2_bytes  # noqa: F401 (re-exported to the fuzz tests)
from whisper_model.config import ModelDimensions
from whisper_model.io.ct2 import ct2_name
from whisper_model.io.export import hf_config, save_openai, to_hf
from whisper_model.io.layout import expected_shapes

REPO = Path(__file__).resolve().parents[2]
AUDIO_DIR = REPO / ".." / "shared" / "data" / "audio"
JFK_MP3 = REPO / "samples" / "jfk.mp3"


def tiny_dims() -> ModelDimensions:
    """The smallest shapes the loaders accept: 1 block each side, width 8 (2 heads), 4 mels."""
    return ModelDimensions(n_mels=4, n_audio_ctx=3, n_audio_state=8, n_audio_head=2, n_audio_layer=1,
                           n_vocab=6, n_text_ctx=4, n_text_state=8, n_text_head=2, n_text_layer=1)


def state_dict(dims: ModelDimensions, seed: int = 0) -> dict[str, torch.Tensor]:
    """Random float16 canonical tensors, zero where the split formats have no key bias (so they round-trip)."""
    g = torch.Generator().manual_seed(seed)
    sd = {k: torch.randn(shape, generator=g).half() for k, shape in expected_shapes(dims).items()}
    d, t = dims.n_audio_state, dims.n_text_state
    for i in range(dims.n_audio_layer):
        sd[f"encoder.blocks.{i}.attn.qkv.bias"][d:2 * d] = 0
    for i in range(dims.n_text_layer):
        sd[f"decoder.blocks.{i}.attn.qkv.bias"][t:2 * t] = 0
        sd[f"decoder.blocks.{i}.cross_attn.kv.bias"][:t] = 0
    return sd


def ct2_variables(dims: ModelDimensions, sd: dict[str, torch.Tensor], int8: bool = False) -> dict[str, torch.Tensor]:
    """CTranslate2's names for ``sd``, with the head counts as scalars; ``int8``: 2-D weights quantized per row."""
    out = {"encoder/num_heads": torch.tensor(dims.n_audio_head, dtype=torch.int16),
           "decoder/num_heads": torch.tensor(dims.n_text_head, dtype=torch.int16)}
    for key, value in sd.items():
        name = ct2_name(key)
        if int8 and value.dim() == 2 and name.endswith("/weight"):
            scale = 127 / value.float().abs().amax(dim=1).clamp(min=1e-6)
            out[name] = (value.float() * scale[:, None]).round().to(torch.int8)
            out[name + "_scale"] = scale
        else:
            out[name] = value
    return out


@lru_cache(maxsize=None)
def checkpoint_seeds() -> dict[str, bytes]:
    """name -> file bytes: 'ct2' (model.bin, projection aliased), 'ct2_int8', 'openai' (.pt), 'safetensors'
    (the weights of a Hugging Face directory whose config is ``hf_config_text()``)."""
    dims, sd = tiny_dims(), state_dict(tiny_dims())
    alias = [("decoder/projection/weight", "decoder/embeddings/weight")]
    seeds = {"ct2": ct2_bytes(ct2_variables(dims, sd), alias),
             "ct2_int8": ct2_bytes(ct2_variables(dims, sd, int8=True))}
    with tempfile.TemporaryDirectory() as tmp:
        seeds["openai"] = save_openai(dims, sd, Path(tmp) / "tiny.pt").read_bytes()
    from safetensors.torch import save as save_safetensors

    seeds["safetensors"] = save_safetensors({k: v.contiguous() for k, v in to_hf(dims, sd).items()},
                                            metadata={"format": "pt"})
    return seeds


def hf_config_text() -> str:
    return json.dumps(hf_config(tiny_dims()), indent=2)


def audio_files() -> list[Path]:
    """Every shared clip (wav and mp3, 8 / 16 / 24 / 48 kHz) and the bundled samples/jfk.mp3."""
    shared = sorted(p for p in AUDIO_DIR.iterdir() if p.suffix in (".wav", ".mp3")) if AUDIO_DIR.is_dir() else []
    return shared + [JFK_MP3]


def _short_wav(path: Path, frames: int) -> bytes:
    with wave.open(str(path)) as w:
        params, data = w.getparams(), w.readframes(frames)
    buf = io.BytesIO()
    with wave.open(buf, "wb") as out:
        out.setparams(params)
        out.writeframes(data)
    return buf.getvalue()


@lru_cache(maxsize=None)
def audio_seeds(max_bytes: int = 12000) -> dict[str, bytes]:
    """Short valid files of every shared format: each WAV's first ~0.25 s (its own rate and header), each MP3's
    first ``max_bytes`` (MP3 frames need no header); small, so a fuzzer mutates them fast."""
    seeds = {}
    for path in audio_files():
        if path.suffix == ".wav":
            with wave.open(str(path)) as w:
                frames = max(1, max_bytes // (w.getsampwidth() * w.getnchannels()) // 2)
            seeds[path.name] = _short_wav(path, frames)
        else:
            seeds[f"{path.parent.name}_{path.name}"] = path.read_bytes()[:max_bytes]
    return seeds
