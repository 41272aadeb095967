"""The decoder seam: the only interface the decode loop (``decode.task.DecodingTask``) talks to.

Implemented by the eager model (``model.WhisperDecoder``, plain PyTorch) and by the GPU engine
(``fast.engine.FastDecoder``: fused kernels, captured CUDA graphs); each owns its caches. A model hands its seam out as
``model.text_decoder``. One decoding call:

    dec = model.text_decoder
    dec.reserve(n_rows)                          # caches for n_rows decoder rows (kept across calls while they fit)
    dec.set_audio(features)                      # [n_audio, n_audio_ctx, d]: cross K/V of audio rows 0..n_audio-1
    logits = dec.step(prompt, arange(n0), keep)  # prefill: [n_rows, n0] tokens -> [n_rows, k, n_vocab] (k kept)
    logits = dec.step(next_tokens, tensor([n0])) # then one token per row and step
    dec.reorder(source_rows)                     # beam search: row i continues old row source_rows[i]
    probs, scores = dec.align(tokens, heads, eot) # word timestamps: one pass over a window's final tokens
    dec.release()                                # done with these rows and audios

``put_audio(dec, features)`` sets the audio unless ``dec.reuse_audio(features)`` can take back the cross K/V of that
very tensor (a word-alignment pass right after the decode of the same windows).
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Optional, Protocol, Sequence, runtime_checkable

import torch

if TYPE_CHECKING:
    from ..config import ModelDimensions


@runtime_checkable
class TextDecoder(Protocol):
    """Rows: ``n_rows = n_audio * group``; decoder row i reads audio row ``i // group`` (the beams or samples of an
    audio on consecutive rows; ``group = n_rows // n_audio``). Positions are absolute within a row's text context:
    int64 ``[t]`` (shared by all rows) or ``[n_rows, t]`` (per row, distinct within a row, any order); a token at
    position p attends to the row's positions <= p, and every new token's K/V is written before attention."""

    n_ctx: int  # positions per row (the text context)

    def reserve(self, rows: int) -> None:
        """Make room for ``rows`` decoder rows."""

    def set_audio(self, features: torch.Tensor) -> None:
        """features [n_audio, n_audio_ctx, d]: project every layer's cross K/V of audio rows 0..n_audio-1, once."""

    def reuse_audio(self, features: torch.Tensor) -> bool:
        """If the caches still hold the cross K/V of this very tensor (the last ``set_audio``, released since, no
        audio set after it; the caller vouches ``features`` was not modified in place), make them current again
        and return True (``set_audio`` then need not run); else False."""

    def step(self, tokens: torch.Tensor, positions: torch.Tensor,
             keep: Optional[torch.Tensor] = None) -> torch.Tensor:
        """tokens [n_rows, t] at ``positions`` -> logits [n_rows, t, n_vocab] (float32, the caller's to modify);
        ``keep`` [n_rows, k] int64 (columns of each row): only those logits, [n_rows, k, n_vocab]."""

    def reorder(self, index: torch.Tensor) -> None:
        """index [n_rows] int64: row i becomes old row index[i] (its self K/V; cross rows stay per audio)."""

    def align(self, tokens: torch.Tensor, heads: Sequence[tuple[int, int]],
              vocab_limit: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Word alignment: whole sequences tokens [a, t] (row i over audio row i, positions 0..t-1; rows padded at
        the end) -> (probs [a, t-1] float32: each next token's probability under a softmax over ids <
        ``vocab_limit`` (0 for an id past it), scores [a, len(heads), t, n_audio_ctx] float32: the pre-softmax
        cross-attention logits of the (layer, head) pairs ``heads``). Overwrites the self K/V of rows 0..a-1."""

    def release(self) -> None:
        """Forget the rows and audios (the storage is kept for the next call)."""


@runtime_checkable
class SpeechModel(Protocol):
    """A model as decoding and the scheduler see it: ``Whisper`` (eager) and the engine's ``AcceleratedWhisper``."""

    dims: "ModelDimensions"
    text_decoder: TextDecoder

    @property
    def device(self) -> torch.device: ...

    @property
    def dtype(self) -> torch.dtype: ...

    @property
    def is_multilingual(self) -> bool: ...

    @property
    def num_languages(self) -> int: ...

    def embed_audio(self, mel: torch.Tensor) -> torch.Tensor:
        """mel [n, n_mels, 2*n_audio_ctx] -> encoder states [n, n_audio_ctx, n_audio_state]."""


def put_audio(decoder: TextDecoder, features: torch.Tensor) -> None:
    """``decoder.set_audio(features)``, unless the decoder still holds the cross K/V of this very tensor (the
    language detection or the decode before, on the same features)."""
    if not decoder.reuse_audio(features):
        decoder.set_audio(features)
