"""How a Whisper model is quantized: weight-only int8 / int4 weights and an int8 K/V cache, checked once.

    q = check_quantization(dims, weight_only_precision="int4", group_size=128, int8_kv_cache=True)
    q.to_dict()   # {"weight_only_precision": "int4", "group_size": 128, "int8_kv_cache": True} (engine.json)

Weight-only: every projection of the encoder and decoder blocks (self-attention qkv and dense, cross-attention query,
kv and dense, MLP fc and proj) holds ``trtllm_ext`` weight-only quantized layers; the convolutions, LayerNorms,
embeddings and the tied vocabulary projection stay float. int8: one scale per output channel; int4: one per group
of ``group_size`` input features (it must divide every layer's in features: d and 4*d). int8 K/V cache: see
``caches.DecoderCaches``.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Optional

from ..config import ModelDimensions
from ..errors import OptionError

WEIGHT_ONLY_PRECISIONS = ("int8", "int4")
DEFAULT_GROUP_SIZE = 128


@dataclass(frozen=True)
class Quantization:
    """``weight_only_precision``: None (float weights), "int8" or "int4"; ``group_size``: int4's group (None
    otherwise); ``int8_kv_cache``: the decoder's K/V caches in int8."""

    weight_only_precision: Optional[str] = None
    group_size: Optional[int] = None
    int8_kv_cache: bool = False

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Optional[dict]) -> "Quantization":
        d = d or {}
        return cls(d.get("weight_only_precision"), d.get("group_size"), bool(d.get("int8_kv_cache", False)))

    def describe(self) -> str:
        parts = [self.weight_only_precision or "float"] + ([f"group {self.group_size}"] if self.group_size else [])
        return " ".join(parts) + (" weights, int8 K/V cache" if self.int8_kv_cache else " weights")


def check_quantization(dims: Optional[ModelDimensions], weight_only_precision: Optional[str] = None,
                       group_size: Optional[int] = DEFAULT_GROUP_SIZE, int8_kv_cache: bool = False) -> Quantization:
    """The options as a ``Quantization`` (group_size kept for int4 only); ``OptionError`` naming the option
    (``weight_only_precision``, ``weight_only_group_size``, ``int8_kv_cache``) for a value that cannot work
    (``dims`` None: before the model is known, everything but the group size against its widths)."""
    if weight_only_precision is not None and weight_only_precision not in WEIGHT_ONLY_PRECISIONS:
        raise OptionError(f"weight_only_precision must be None, 'int8' or 'int4', got {weight_only_precision!r}")
    if not isinstance(int8_kv_cache, bool):
        raise OptionError(f"int8_kv_cache must be True or False, got {int8_kv_cache!r}")
    if weight_only_precision != "int4":
        return Quantization(weight_only_precision, None, int8_kv_cache)
    if group_size is None:
        group_size = DEFAULT_GROUP_SIZE
    if not isinstance(group_size, int) or isinstance(group_size, bool) or group_size <= 0 or group_size % 2:
        raise OptionError(f"weight_only_group_size must be a positive even integer (int4 weights), got "
                          f"{group_size!r}")
    if dims is None:
        return Quantization(weight_only_precision, group_size, int8_kv_cache)
    widths = sorted({dims.n_audio_state, dims.n_text_state})
    bad = [w for w in widths if w % group_size]
    if bad:
        raise OptionError(f"weight_only_group_size={group_size} does not divide the in features of every layer "
                          f"(K = {', '.join(str(w) for w in widths)} and 4x those) of this model; int4 needs a group "
                          f"size that divides {bad[0]}, such as 128 or 64")
    return Quantization(weight_only_precision, group_size, int8_kv_cache)


__all__ = ["DEFAULT_GROUP_SIZE", "Quantization", "WEIGHT_ONLY_PRECISIONS", "check_quantization"]
