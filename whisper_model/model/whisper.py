"""Whisper's encoder and decoder, built only from ``trtllm_ext`` layers.

Shapes: mel [b, n_mels, 2*n_audio_ctx] -> audio states xa [b, n_audio_ctx, d_audio];
tokens [b, t] (+ xa, or the cross caches) -> logits [b, t, n_vocab] (float32).
Parameter names are the project's canonical state-dict names (see ``io/weights.py``); a weight-only quantized
model (``quant.py``) holds ``qweight`` + ``scales`` in place of each projection's ``weight``, and runs the same forward.
"""
from __future__ import annotations

import math
from typing import Mapping, Optional, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from trtllm_ext import (
    MLP,
    TORCH_BACKEND,
    Attention,
    Conv1d,
    CrossAttention,
    Embedding,
    KVCache,
    LayerNorm,
    Module,
    OpBackend,
)
from trtllm_ext.module import declare

from ..config import ModelDimensions
from .caches import DecoderCaches
from .quant import DEFAULT_GROUP_SIZE, Quantization, check_quantization
from .scores import CrossScores


def sinusoids(length: int, channels: int, max_timescale: float = 10000.0) -> torch.Tensor:
    """Sinusoidal positions [length, channels]: sin in the first half of the channels, cos in the second."""
    if channels % 2:
        raise ValueError(f"sinusoids need an even number of channels, got {channels}")
    log_increment = math.log(max_timescale) / (channels // 2 - 1)
    inv = torch.exp(-log_increment * torch.arange(channels // 2))
    t = torch.arange(length)[:, None] * inv[None, :]
    return torch.cat([torch.sin(t), torch.cos(t)], dim=1)


class EncoderBlock(Module):
    """Pre-norm block x + attn(ln(x)) + mlp(ln(x)), x: [b, t, d], with the residual adds fused into the next
    LayerNorm: ``forward(h, x, next_ln)`` takes LN(x) and the stream x and gives (next_ln(x'), x')."""

    def __init__(self, d: int, heads: int, *, causal: bool, dtype: torch.dtype, device=None,
                 quantization: Quantization = Quantization()):
        super().__init__()
        kw = dict(dtype=dtype, device=device)
        qkw = dict(kw, quant_mode=quantization.weight_only_precision,
                   group_size=quantization.group_size or DEFAULT_GROUP_SIZE)
        self.attn_ln = LayerNorm(d, **kw)
        self.attn = Attention(d, heads, causal=causal, **qkw)
        self.mlp_ln = LayerNorm(d, **kw)
        self.mlp = MLP(d, 4 * d, "gelu", **qkw)

    def forward(self, h: torch.Tensor, x: torch.Tensor, next_ln: LayerNorm,
                backend: OpBackend) -> tuple[torch.Tensor, torch.Tensor]:
        h, x = self.mlp_ln(self.attn(h, backend=backend), x, backend=backend)
        return next_ln(self.mlp(h, backend=backend), x, backend=backend)


class DecoderBlock(EncoderBlock):
    """x + attn(ln(x)) + cross_attn(ln(x)) + mlp(ln(x)), each LayerNorm in its projection's prologue and each add
    in its epilogue; self K/V written into ``self_cache`` at ``pos``, audio K/V read from ``cross_cache``."""

    def __init__(self, d: int, heads: int, *, dtype: torch.dtype, device=None,
                 quantization: Quantization = Quantization()):
        super().__init__(d, heads, causal=True, dtype=dtype, device=device, quantization=quantization)
        qkw = dict(dtype=dtype, device=device, quant_mode=quantization.weight_only_precision,
                   group_size=quantization.group_size or DEFAULT_GROUP_SIZE)
        self.cross_attn_ln = LayerNorm(d, dtype=dtype, device=device)
        self.cross_attn = CrossAttention(d, heads, **qkw)

    def forward(self, x: torch.Tensor, self_cache: KVCache, cross_cache: KVCache, pos: torch.Tensor, group: int,
                backend: OpBackend, score_heads: Optional[list[int]] = None):
        """x [b, t, d] -> (x' [b, t, d], the cross-attention logits of ``score_heads`` or None)."""
        x = self.attn(x, pos, cache=self_cache, ln=self.attn_ln, residual=x, backend=backend)
        out = self.cross_attn(x, cache=cross_cache, group=group, ln=self.cross_attn_ln, residual=x,
                              score_heads=score_heads, backend=backend)
        x, scores = out if score_heads else (out, None)
        return self.mlp(x, ln=self.mlp_ln, residual=x, backend=backend), scores


class WhisperEncoder(Module):
    """mel [b, n_mels, 2*n_audio_ctx] -> [b, n_audio_ctx, n_audio_state]."""

    def __init__(self, dims: ModelDimensions, *, dtype: torch.dtype = torch.float32, device=None,
                 quantization: Quantization = Quantization()):
        super().__init__()
        d, kw = dims.n_audio_state, dict(dtype=dtype, device=device)
        self.n_mels, self.n_ctx, self.dtype = dims.n_mels, dims.n_audio_ctx, dtype
        self.conv1 = Conv1d(dims.n_mels, d, 3, padding=1, **kw)
        self.conv2 = Conv1d(d, d, 3, stride=2, padding=1, **kw)
        self.register_buffer("positional_embedding", sinusoids(dims.n_audio_ctx, d).to(device=device, dtype=dtype))
        self.blocks = nn.ModuleList(EncoderBlock(d, dims.n_audio_head, causal=False, **kw, quantization=quantization)
                                    for _ in range(dims.n_audio_layer))
        self.ln_post = LayerNorm(d, **kw)

    def forward(self, mel: torch.Tensor, backend: OpBackend = TORCH_BACKEND) -> torch.Tensor:
        """The residual stream x carries each block's sum into the next LayerNorm (a fused add + LayerNorm)."""
        expected = (self.n_mels, 2 * self.n_ctx)
        if not isinstance(mel, torch.Tensor) or mel.dim() != 3 or tuple(mel.shape[1:]) != expected:
            raise ValueError(f"WhisperEncoder: mel must have shape [batch, {expected[0]}, {expected[1]}], "
                             f"got {tuple(getattr(mel, 'shape', ()))}")
        x = F.gelu(self.conv1(mel.to(self.dtype)))
        x = F.gelu(self.conv2(x))
        b, d, n = x.shape
        res = torch.empty(b, n, d, dtype=x.dtype, device=x.device)  # the residual stream, row-major
        x = torch.add(x.transpose(1, 2), self.positional_embedding, out=res)
        blocks = list(self.blocks)
        h = blocks[0].attn_ln(x, backend=backend)
        for i, blk in enumerate(blocks):
            nxt = blocks[i + 1].attn_ln if i + 1 < len(blocks) else self.ln_post
            h, x = blk(h, x, nxt, backend)
        return h


class WhisperDecoder(Module):
    """tokens [b, t] -> logits [b, t, n_vocab] (float32), attending to the audio states.

    ``compute`` is the decoder's forward, stated once: new tokens at positions (int64 ``[t]``, shared by all rows,
    or ``[b, t]``, distinct within a row, any order) over ``DecoderCaches``; every new K/V is written by position
    before attention, and a token at position p attends to cache positions <= p. Decoder row i reads audio
    ``i // group`` (beams / samples of an audio on consecutive rows).

    The module is also the eager implementation of the decoding seam (``decode.protocol.TextDecoder``):
    ``reserve(rows)``, ``set_audio(xa)``, ``step(tokens, positions)``, ``reorder(index)``, ``release()``, over
    caches it owns. ``forward(tokens, xa)`` decodes whole prefixes at once (reference mode). ``kv_dtype``
    (torch.int8 with ``quantization.int8_kv_cache``, else None) is the storage of the caches it makes.
    """

    def __init__(self, dims: ModelDimensions, *, dtype: torch.dtype = torch.float32, device=None,
                 quantization: Quantization = Quantization()):
        super().__init__()
        d, kw = dims.n_text_state, dict(dtype=dtype, device=device)
        self.n_ctx, self.n_audio_ctx, self.dtype = dims.n_text_ctx, dims.n_audio_ctx, dtype
        self.token_embedding = Embedding(dims.n_vocab, d, **kw,
                                         int8_logits=quantization.weight_only_precision == "int8")
        self.positional_embedding = declare(dims.n_text_ctx, d, dtype=dtype, device=device)
        self.blocks = nn.ModuleList(DecoderBlock(d, dims.n_text_head, **kw, quantization=quantization)
                                    for _ in range(dims.n_text_layer))
        self.ln = LayerNorm(d, **kw)
        self.kv_dtype: Optional[torch.dtype] = torch.int8 if quantization.int8_kv_cache else None
        self.caches: Optional[DecoderCaches] = None

    # -- the forward ----------------------------------------------------------------------------------------
    def compute(self, backend: OpBackend, caches: DecoderCaches, tokens: torch.Tensor, pos: torch.Tensor,
                group: int, keep: Optional[torch.Tensor] = None,
                scores: Optional[CrossScores] = None) -> torch.Tensor:
        """tokens [b, t] at positions pos ([t] or [b, t]) -> logits [b*t, n_vocab] (float32); ``keep``: flat
        indices [m] of the token rows (of b*t) whose logits are wanted -> [m, n_vocab], taken from the projection of
        all b*t rows (a product of other rows rounds otherwise: see ``step``); ``scores``: collects the
        cross-attention logits of its heads (word alignment)."""
        x = self.token_embedding(tokens, pos, self.positional_embedding, backend=backend)
        for i, blk in enumerate(self.blocks):
            heads = scores.heads_of(i) if scores is not None else None
            x, found = blk(x, caches.self[i], caches.cross[i], pos, group, backend, score_heads=heads)
            if found is not None:
                scores.record(i, found)
        logits = self.token_embedding.logits(x, ln=self.ln, out_dtype=torch.float32, backend=backend)
        logits = logits.view(-1, logits.shape[-1])
        return logits if keep is None else logits[keep]

    def set_audio_on(self, caches: DecoderCaches, xa: torch.Tensor, backend: OpBackend = TORCH_BACKEND) -> None:
        """xa [a, n_audio_ctx, d] -> every layer's cross K/V of audio rows 0..a-1 in ``caches`` (one product per
        layer; quantized once here for an int8 cache)."""
        caches.check_audio(xa)
        states = xa.to(self.dtype)
        for blk, cache in zip(self.blocks, caches.cross):
            blk.cross_attn.compute_kv(states, cache, backend=backend)
        caches.audio_written(xa)

    def new_caches(self, rows: int, n_ctx: Optional[int] = None) -> DecoderCaches:
        attn = self.blocks[0].attn
        return DecoderCaches(len(self.blocks), attn.local_heads, attn.head_dim, n_ctx or self.n_ctx,
                             self.n_audio_ctx, rows=rows, dtype=self.dtype, device=self.positional_embedding.device,
                             kv_dtype=self.kv_dtype)

    @torch.no_grad()
    def forward(self, tokens: torch.Tensor, xa: torch.Tensor) -> torch.Tensor:
        """Reference mode: whole prefixes tokens [b, t] over audio states xa [a, n_audio_ctx, d] (b = a * g)."""
        if not isinstance(tokens, torch.Tensor) or tokens.dim() != 2:
            raise ValueError(f"WhisperDecoder: tokens must have shape [batch, length], got "
                             f"{tuple(getattr(tokens, 'shape', ()))}")
        b, t = tokens.shape
        if t > self.n_ctx:
            raise ValueError(f"WhisperDecoder: {t} tokens exceed n_text_ctx {self.n_ctx}")
        caches = self.new_caches(max(b, xa.shape[0]), t)
        self.set_audio_on(caches, xa)
        pos = torch.arange(t, device=tokens.device)
        group = caches.begin_step("WhisperDecoder", tokens, pos)
        return self.compute(TORCH_BACKEND, caches, tokens, pos, group).view(b, t, -1)

    # -- the decoding seam (eager) ----------------------------------------------------------------------------
    def reserve(self, rows: int) -> None:
        """Caches for ``rows`` decoder rows over the whole text context (kept while they fit)."""
        device = self.positional_embedding.device
        if self.caches is None or not self.caches.fits(rows, self.dtype, device, self.kv_dtype):
            self.caches = None  # free the old storage first
            self.caches = self.new_caches(rows)

    def set_audio(self, xa: torch.Tensor) -> None:
        """xa [a, n_audio_ctx, d]: every layer's cross K/V of audio rows 0..a-1, once per audio."""
        self.set_audio_on(self._reserved("set_audio"), xa)

    def reuse_audio(self, xa: torch.Tensor) -> bool:
        """``TextDecoder.reuse_audio``: the cross K/V of this very ``xa`` again, if the caches still hold them."""
        return self._reserved("reuse_audio").recall_audio(xa)

    @torch.no_grad()
    def step(self, tokens: torch.Tensor, positions: torch.Tensor,
             keep: Optional[torch.Tensor] = None) -> torch.Tensor:
        """tokens [b, t] at positions ([t] or [b, t]) -> logits [b, t, n_vocab] (float32); ``keep`` [b, k]
        (columns of each row): only those logits, [b, k, n_vocab]. They are taken from the vocabulary projection of
        all b*t rows, the product openai-whisper computes: a product of only the kept rows is another matrix shape,
        which the BLAS rounds otherwise (up to ~2.5e-6 in base's logits), enough to flip a sampled token in a
        window that loops through the whole temperature fallback."""
        caches = self._reserved("step")
        group = caches.begin_step("WhisperDecoder.step", tokens, positions)
        b, t = tokens.shape
        if keep is None:
            return self.compute(TORCH_BACKEND, caches, tokens, positions, group).view(b, t, -1)
        flat = (torch.arange(b, device=keep.device)[:, None] * t + keep).flatten()
        return self.compute(TORCH_BACKEND, caches, tokens, positions, group, flat).view(b, keep.shape[1], -1)

    @torch.no_grad()
    def align(self, tokens: torch.Tensor, heads: Sequence[tuple[int, int]],
              vocab_limit: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The word-alignment pass (``decode.protocol.TextDecoder.align``) on the torch backend."""
        return self.align_on(TORCH_BACKEND, self._reserved("align"), tokens, heads, vocab_limit)

    def align_on(self, backend: OpBackend, caches: DecoderCaches, tokens: torch.Tensor,
                 heads: Sequence[tuple[int, int]], vocab_limit: int) -> tuple[torch.Tensor, torch.Tensor]:
        """tokens [a, t] (row i over audio row i, from position 0) -> (probs [a, t-1]: probability of token j+1
        after tokens 0..j under a softmax over the first ``vocab_limit`` ids (0 for ids past it), scores [a,
        len(heads), t, n_audio_ctx]: the cross-attention logits of ``heads`` (layer, head))."""
        b, t = tokens.shape
        pos = torch.arange(t, device=tokens.device)
        caches.begin_step("align", tokens, pos)
        if b != caches.audio_rows:
            raise ValueError(f"align: {b} token rows for {caches.audio_rows} audio rows (one row per audio)")
        scores = CrossScores(heads)
        logits = self.compute(backend, caches, tokens, pos, 1, scores=scores).view(b, t, -1)[:, :-1, :vocab_limit]
        nxt = tokens[:, 1:, None]
        probs = logits.softmax(dim=-1).gather(-1, nxt.clamp(max=vocab_limit - 1))[..., 0]
        return probs.masked_fill(nxt[..., 0] >= vocab_limit, 0.0), scores.stacked()

    def reorder(self, index: torch.Tensor) -> None:
        self._reserved("reorder").reorder(index)

    def release(self) -> None:
        if self.caches is not None:
            self.caches.release()

    def _reserved(self, what: str) -> DecoderCaches:
        if self.caches is None:
            raise RuntimeError(f"WhisperDecoder.{what}: call reserve(rows) first")
        return self.caches


class Whisper(Module):
    """The whole model: ``encoder`` and ``decoder``, with ``dims`` describing their sizes.

    ``weight_only_precision`` ("int8" / "int4", int4 in groups of ``weight_only_group_size``) and ``int8_kv_cache``:
    see ``quant.py`` (``OptionError`` naming a bad one)."""

    def __init__(self, dims: ModelDimensions, *, dtype: torch.dtype = torch.float32, device=None,
                 weight_only_precision: Optional[str] = None, weight_only_group_size: int = DEFAULT_GROUP_SIZE,
                 int8_kv_cache: bool = False):
        super().__init__()
        quantization = check_quantization(dims, weight_only_precision, weight_only_group_size, int8_kv_cache)
        self.dims, self.dtype = dims, dtype
        self.alignment_heads: Optional[tuple[tuple[int, int], ...]] = None  # (layer, head) pairs, if known
        self.encoder = WhisperEncoder(dims, dtype=dtype, device=device, quantization=quantization)
        self.decoder = WhisperDecoder(dims, dtype=dtype, device=device, quantization=quantization)
        self.weight_only_precision = quantization.weight_only_precision
        self.weight_only_group_size = quantization.group_size  # int4 only

    @property
    def quantization(self) -> Quantization:
        """The weights' quantization and whether the decoder's caches are int8 (``decoder.kv_dtype``)."""
        return Quantization(self.weight_only_precision, self.weight_only_group_size,
                            self.decoder.kv_dtype == torch.int8)

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

    @property
    def text_decoder(self) -> "WhisperDecoder":
        """The decoding seam (``decode.protocol.TextDecoder``): here the eager decoder itself."""
        return self.decoder

    @classmethod
    def from_state_dict(cls, dims: ModelDimensions, state_dict: Mapping[str, torch.Tensor], *,
                        dtype: torch.dtype = torch.float32, device=None, **quantization) -> "Whisper":
        """Build and strictly load (every key and shape checked) from canonical-named tensors; ``quantization``:
        the constructor's options. A quantized model takes float weights (quantized here) or its own
        ``qweight`` + ``scales`` (a quantized state dict, loaded as is)."""
        model = cls(dims, dtype=dtype, device=device, **quantization)
        model.load_weights(state_dict)
        return model.eval()
