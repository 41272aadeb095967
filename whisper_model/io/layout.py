"""The project's canonical Whisper state-dict layout, and its names in other formats.

Self-attention q/k/v are fused as ``attn.qkv`` (rows q, k, v), cross-attention k/v as ``cross_attn.kv``
and both carry a key bias. The "split" layout (openai-whisper, Hugging Face) keeps q/k/v apart and has
no key bias: ``fuse`` fills zeros there and ``unfuse`` drops it (a key bias only adds a per-query constant
to the scores, so dropping it is exact). ``foreign_key`` names a key in the openai, HF or CT2 format.
"""
from __future__ import annotations

import re

import torch

from ..config import ModelDimensions
from .ct2 import ct2_name

StateDict = dict[str, torch.Tensor]


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


def foreign_key(fmt: str, key: str) -> str:
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
