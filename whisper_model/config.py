"""Model dimensions for every published Whisper size.

Names follow openai-whisper's ``ModelDimensions`` so a checkpoint's ``dims`` dict maps one to one.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, replace


@dataclass(frozen=True)
class ModelDimensions:
    n_mels: int
    n_audio_ctx: int
    n_audio_state: int
    n_audio_head: int
    n_audio_layer: int
    n_vocab: int
    n_text_ctx: int
    n_text_state: int
    n_text_head: int
    n_text_layer: int

    @property
    def is_multilingual(self) -> bool:
        """English-only vocabularies have 51864 tokens; multilingual ones 51865 or more."""
        return self.n_vocab >= 51865

    @property
    def num_languages(self) -> int:
        """99 languages, plus Cantonese from large-v3 on (vocabulary 51866)."""
        return self.n_vocab - 51765 - int(self.is_multilingual)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "ModelDimensions":
        names = set(cls.__dataclass_fields__)
        missing = names - set(d)
        if missing:
            raise ValueError(f"model dimensions are missing {sorted(missing)}")
        return cls(**{k: int(d[k]) for k in names})


def _dims(n_mels, state, head, layers, vocab, text_layers=None) -> ModelDimensions:
    return ModelDimensions(
        n_mels=n_mels, n_audio_ctx=1500, n_audio_state=state, n_audio_head=head, n_audio_layer=layers,
        n_vocab=vocab, n_text_ctx=448, n_text_state=state, n_text_head=head,
        n_text_layer=layers if text_layers is None else text_layers,
    )


_MULTI, _EN, _V3 = 51865, 51864, 51866

MODEL_DIMS: dict[str, ModelDimensions] = {
    "tiny.en": _dims(80, 384, 6, 4, _EN),
    "tiny": _dims(80, 384, 6, 4, _MULTI),
    "base.en": _dims(80, 512, 8, 6, _EN),
    "base": _dims(80, 512, 8, 6, _MULTI),
    "small.en": _dims(80, 768, 12, 12, _EN),
    "small": _dims(80, 768, 12, 12, _MULTI),
    "medium.en": _dims(80, 1024, 16, 24, _EN),
    "medium": _dims(80, 1024, 16, 24, _MULTI),
    "large-v1": _dims(80, 1280, 20, 32, _MULTI),
    "large-v2": _dims(80, 1280, 20, 32, _MULTI),
    "large-v3": _dims(128, 1280, 20, 32, _V3),
    "large-v3-turbo": _dims(128, 1280, 20, 32, _V3, text_layers=4),
}
MODEL_DIMS["large"] = MODEL_DIMS["large-v3"]
MODEL_DIMS["turbo"] = MODEL_DIMS["large-v3-turbo"]


def dims_for(name: str) -> ModelDimensions:
    """Dimensions of a published model, by name; ValueError lists the known names."""
    try:
        return MODEL_DIMS[name]
    except KeyError:
        raise ValueError(f"unknown model {name!r}; known: {', '.join(MODEL_DIMS)}") from None


def scaled(dims: ModelDimensions, **changes) -> ModelDimensions:
    """A copy with some fields changed (tests build small models this way)."""
    return replace(dims, **changes)
