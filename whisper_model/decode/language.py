"""Languages and tasks a model can decode, the tokenizer for them, and spoken-language detection."""
from __future__ import annotations

import functools
from typing import Optional

import numpy as np
import torch

from ..io.tokenizer import LANGUAGES, TASKS, Tokenizer, get_tokenizer, normalize_language


def resolve_language(model, language: Optional[str], task: str) -> Optional[str]:
    """The language code ``model`` decodes ``language`` (a code or name; None: "en" on a multilingual model) in,
    None on an English-only model. Raises ValueError naming ``language`` or ``task`` for what it cannot do."""
    try:
        language = normalize_language(language)
    except ValueError as e:
        raise ValueError(f"language={language!r}: {e}") from None
    if task not in TASKS:
        raise ValueError(f"task must be one of {TASKS}, got {task!r}")
    if not model.is_multilingual:
        if task != "transcribe":
            raise ValueError(f"task={task!r} needs a multilingual model; this one is English-only")
        if language not in (None, "en"):
            raise ValueError(f"language={language!r}: this model is English-only (use 'en' or None)")
        return None
    language = language or "en"
    if language not in list(LANGUAGES)[: model.num_languages]:
        raise ValueError(f"language={language!r} is not one of this model's {model.num_languages} languages")
    return language


def tokenizer_for(model, language: Optional[str], task: str, base: Optional[Tokenizer] = None) -> Tokenizer:
    """The tokenizer for ``model`` with this language and task; ``base`` (if given) supplies the vocabulary.

    Raises ValueError naming ``language`` or ``task`` for what the model cannot do.
    """
    language = resolve_language(model, language, task)
    if language is None:
        task = None
    if base is None:
        return get_tokenizer(model.is_multilingual, num_languages=model.num_languages, language=language, task=task)
    expected = "multilingual" if model.is_multilingual else "gpt2"
    if base.encoding.name != expected or base.encoding.n_vocab != model.dims.n_vocab:
        raise ValueError(f"tokenizer {base!r} does not fit this model ({expected}, n_vocab={model.dims.n_vocab})")
    if base.language == language and base.task == task:
        return base
    return _variant(base, language, task)


@functools.lru_cache(maxsize=256)
def _variant(base: Tokenizer, language: Optional[str], task: Optional[str]) -> Tokenizer:
    """``base``'s vocabulary with another language / task, made once (its cached properties are then reused)."""
    return Tokenizer(base.encoding, num_languages=base.num_languages, language=language, task=task)


def features_of(model, mel_or_features: torch.Tensor) -> torch.Tensor:
    """mel [n, n_mels, 2*n_audio_ctx] (encoded here) or features [n, n_audio_ctx, n_audio_state] -> features."""
    dims = model.dims
    if mel_or_features.dim() == 3 and tuple(mel_or_features.shape[1:]) == (dims.n_audio_ctx, dims.n_audio_state):
        return mel_or_features.to(device=model.device, dtype=model.dtype)
    return model.embed_audio(mel_or_features.to(model.device))


@torch.no_grad()
def detect_language(model, mel_or_features: torch.Tensor, tokenizer: Optional[Tokenizer] = None):
    """Spoken language of each audio: ``(language tokens [n], [{code: probability}] * n)``.

    ``mel_or_features``: mel [n, n_mels, 2*n_audio_ctx] or encoder states [n, n_audio_ctx, n_audio_state].
    One decoder step over ``<|startoftranscript|>``, softmax over the language tokens only.
    """
    if not model.is_multilingual:
        raise ValueError("this model is English-only: it has no language tokens to detect a language with")
    tokenizer = tokenizer_for(model, None, "transcribe", tokenizer)
    features = features_of(model, mel_or_features)
    n, decoder = features.shape[0], model.text_decoder
    sot = torch.full((n, 1), tokenizer.sot, dtype=torch.long, device=features.device)
    decoder.reserve(n)
    decoder.set_audio(features)
    try:
        logits = decoder.step(sot, torch.zeros(1, dtype=torch.long, device=features.device))[:, 0]  # [n, n_vocab]
    finally:
        decoder.release()
    mask = torch.ones(logits.shape[-1], dtype=torch.bool, device=logits.device)
    mask[list(tokenizer.all_language_tokens)] = False
    logits[:, mask] = -np.inf
    language_tokens = logits.argmax(dim=-1)
    probs = logits.softmax(dim=-1).cpu()[:, list(tokenizer.all_language_tokens)].tolist()
    codes = tokenizer.all_language_codes
    return language_tokens, [dict(zip(codes, row)) for row in probs]
