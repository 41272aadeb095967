"""Whisper's encoder and decoder, built only from ``trtllm_ext`` layers.

Shapes: mel [b, n_mels, 2*n_audio_ctx] -> audio states xa [b, n_audio_ctx, d_audio];
tokens [b, t] (+ xa, or the cross caches) -> logits [b, t, n_vocab] (float32).
Parameter names are the project's canonical state-dict names (see ``weights.py``).
"""
from __future__ import annotations

import math
from typing import Mapping

import torch
import torch.nn.functional as F
from torch import nn

from trtllm_ext import (MLP, Attention, Conv1d, CrossAttention, Embedding, LayerNorm, Module, causal_mask,
                        check_input_pos)
from trtllm_ext.module import declare

from .config import ModelDimensions


def sinusoids(length: int, channels: int, max_timescale: float = 10000.0) -> torch.Tensor:
    """Sinusoidal positions [length, channels]: sin in the first half of the channels, cos in the second."""
    if channels % 2:
        raise ValueError(f"sinusoids need an even number of channels, got {channels}")
    log_increment = math.log(max_timescale) / (channels // 2 - 1)
    inv = torch.exp(-log_increment * torch.arange(channels // 2))
    t = torch.arange(length)[:, None] * inv[None, :]
    return torch.cat([torch.sin(t), torch.cos(t)], dim=1)


class ResidualAttentionBlock(Module):
    """Pre-norm block: x + attn(ln(x)) [+ cross_attn(ln(x))] + mlp(ln(x)). x: [b, t, d]."""

    def __init__(self, d: int, heads: int, *, cross: bool, causal: bool, dtype: torch.dtype, device=None):
        super().__init__()
        kw = dict(dtype=dtype, device=device)
        self.attn_ln = LayerNorm(d, **kw)
        self.attn = Attention(d, heads, causal=causal, **kw)
        self.cross_attn_ln = LayerNorm(d, **kw) if cross else None
        self.cross_attn = CrossAttention(d, heads, **kw) if cross else None
        self.mlp_ln = LayerNorm(d, **kw)
        self.mlp = MLP(d, 4 * d, "gelu", **kw)

    def forward(self, x: torch.Tensor, input_pos: torch.Tensor | None = None, mask: torch.Tensor | None = None,
                xa: torch.Tensor | None = None) -> torch.Tensor:
        x = x + self.attn(self.attn_ln(x), input_pos, mask)
        if self.cross_attn is not None:
            x = x + self.cross_attn(self.cross_attn_ln(x), xa)
        return x + self.mlp(self.mlp_ln(x))


class WhisperEncoder(Module):
    """mel [b, n_mels, 2*n_audio_ctx] -> [b, n_audio_ctx, n_audio_state]."""

    def __init__(self, dims: ModelDimensions, *, dtype: torch.dtype = torch.float32, device=None):
        super().__init__()
        d, kw = dims.n_audio_state, dict(dtype=dtype, device=device)
        self.n_mels, self.n_ctx, self.dtype = dims.n_mels, dims.n_audio_ctx, dtype
        self.conv1 = Conv1d(dims.n_mels, d, 3, padding=1, **kw)
        self.conv2 = Conv1d(d, d, 3, stride=2, padding=1, **kw)
        self.register_buffer("positional_embedding", sinusoids(dims.n_audio_ctx, d).to(device=device, dtype=dtype))
        self.blocks = nn.ModuleList(ResidualAttentionBlock(d, dims.n_audio_head, cross=False, causal=False, **kw)
                                    for _ in range(dims.n_audio_layer))
        self.ln_post = LayerNorm(d, **kw)

    def forward(self, mel: torch.Tensor) -> torch.Tensor:
        expected = (self.n_mels, 2 * self.n_ctx)
        if not isinstance(mel, torch.Tensor) or mel.dim() != 3 or tuple(mel.shape[1:]) != expected:
            raise ValueError(f"WhisperEncoder: mel must have shape [batch, {expected[0]}, {expected[1]}], "
                             f"got {tuple(getattr(mel, 'shape', ()))}")
        x = F.gelu(self.conv1(mel.to(self.dtype)))
        x = F.gelu(self.conv2(x))
        x = (x.transpose(1, 2) + self.positional_embedding).contiguous()
        for block in self.blocks:
            x = block(x)
        return self.ln_post(x)


class WhisperDecoder(Module):
    """tokens [b, t] -> logits [b, t, n_vocab] (float32), attending to the audio states.

    Reference mode: ``forward(tokens, xa=xa)`` runs causal attention over the whole prefix.
    Cached mode: ``setup_caches``, ``compute_cross_kv(xa [a, n_audio_ctx, d])`` once per audio, then
    ``forward(tokens [b, t], input_pos)`` with the absolute positions of the new tokens, int64 ``[t]`` (shared by
    all rows) or ``[b, t]`` (per row, distinct within a row, any order); every new K/V is written into the caches
    by position before attention, and a token at position p attends to cache positions <= p. ``b = a * g``:
    decoder row i reads audio ``i // g`` (beams / samples of an audio on consecutive rows).
    """

    def __init__(self, dims: ModelDimensions, *, dtype: torch.dtype = torch.float32, device=None):
        super().__init__()
        d, kw = dims.n_text_state, dict(dtype=dtype, device=device)
        self.n_ctx, self.n_audio_ctx, self.dtype = dims.n_text_ctx, dims.n_audio_ctx, dtype
        self.token_embedding = Embedding(dims.n_vocab, d, **kw)
        self.positional_embedding = declare(dims.n_text_ctx, d, dtype=dtype, device=device)
        self.blocks = nn.ModuleList(ResidualAttentionBlock(d, dims.n_text_head, cross=True, causal=True, **kw)
                                    for _ in range(dims.n_text_layer))
        self.ln = LayerNorm(d, **kw)

    def setup_caches(self, max_batch: int, *, max_len: int | None = None, device=None) -> None:
        """Preallocate self caches [max_batch, heads, max_len, head_dim] and cross caches for n_audio_ctx."""
        max_len = self.n_ctx if max_len is None else max_len
        if not 0 < max_len <= self.n_ctx:
            raise ValueError(f"max_len must be in [1, {self.n_ctx}], got {max_len}")
        for block in self.blocks:
            block.attn.setup_cache(max_batch, max_len, device=device)
            block.cross_attn.setup_cache(max_batch, self.n_audio_ctx, device=device)

    @property
    def has_caches(self) -> bool:
        return self.blocks[0].attn.kv_cache is not None

    def compute_cross_kv(self, xa: torch.Tensor) -> None:
        """Project audio states xa [b, n_audio_ctx, d] to every block's cross K/V, once per audio."""
        if not self.has_caches:
            raise ValueError("WhisperDecoder: call setup_caches before compute_cross_kv")
        for block in self.blocks:
            block.cross_attn.compute_kv(xa)

    def reorder_caches(self, index: torch.Tensor) -> None:
        """Beam search: row i of every self cache becomes old row index[i] (cross rows are per audio)."""
        for block in self.blocks:
            block.attn.kv_cache.reorder(index)

    def reset_caches(self) -> None:
        for block in self.blocks:
            block.attn.reset_cache()
            block.cross_attn.reset_cache()

    def forward(self, tokens: torch.Tensor, input_pos: torch.Tensor | None = None,
                xa: torch.Tensor | None = None) -> torch.Tensor:
        if not isinstance(tokens, torch.Tensor) or tokens.dim() != 2:
            raise ValueError(f"WhisperDecoder: tokens must have shape [batch, length], got "
                             f"{tuple(getattr(tokens, 'shape', ()))}")
        mask = None
        if input_pos is None:
            if xa is None:
                raise ValueError("WhisperDecoder: pass xa (reference mode) or input_pos (cached mode)")
            if tokens.shape[1] > self.n_ctx:
                raise ValueError(f"WhisperDecoder: {tokens.shape[1]} tokens exceed n_text_ctx {self.n_ctx}")
            positions = self.positional_embedding[: tokens.shape[1]]
        else:
            if not self.has_caches:
                raise ValueError("WhisperDecoder: input_pos given but no caches; call setup_caches first")
            check_input_pos("WhisperDecoder", input_pos, tokens.shape[0], tokens.shape[1])
            positions = self.positional_embedding[input_pos]  # [t, d] or [b, t, d]
            mask = causal_mask(input_pos, self.blocks[0].attn.kv_cache.max_len)
        x = self.token_embedding(tokens) + positions
        for block in self.blocks:
            x = block(x, input_pos, mask, xa)
        return self.token_embedding.logits(self.ln(x)).float()


class Whisper(Module):
    """The whole model: ``encoder`` and ``decoder``, with ``dims`` describing their sizes."""

    def __init__(self, dims: ModelDimensions, *, dtype: torch.dtype = torch.float32, device=None):
        super().__init__()
        self.dims, self.dtype = dims, dtype
        self.encoder = WhisperEncoder(dims, dtype=dtype, device=device)
        self.decoder = WhisperDecoder(dims, dtype=dtype, device=device)

    @property
    def device(self) -> torch.device:
        return self.decoder.positional_embedding.device

    @property
    def is_multilingual(self) -> bool:
        return self.dims.is_multilingual

    @property
    def num_languages(self) -> int:
        return self.dims.num_languages

    def embed_audio(self, mel: torch.Tensor) -> torch.Tensor:
        return self.encoder(mel)

    def logits(self, tokens: torch.Tensor, audio_features: torch.Tensor) -> torch.Tensor:
        """Reference (uncached) decoder pass over whole prefixes."""
        return self.decoder(tokens, xa=audio_features)

    @classmethod
    def from_state_dict(cls, dims: ModelDimensions, state_dict: Mapping[str, torch.Tensor], *,
                        dtype: torch.dtype = torch.float32, device=None) -> "Whisper":
        """Build and strictly load (every key and shape checked) from canonical-named tensors."""
        model = cls(dims, dtype=dtype, device=device)
        model.load_weights(state_dict)
        return model.eval()
