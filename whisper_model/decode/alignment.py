"""The word-alignment pass: windows' final text through the decoder seam once more, their words timed.

    alignments = align_windows(model, tokenizers, features, texts, num_frames)   # one list of WordTiming per window

Each window's sequence is openai-whisper's: ``sot_sequence + [no_timestamps] + text + [eot]`` over the window's
encoder states, all windows in one ``TextDecoder.align`` call (rows padded with end-of-text at the end, which the
causal self-attention keeps from the real tokens). ``decode.timing`` turns the cross-attention of the alignment
heads into word times (one batched DTW for all windows).
"""
from __future__ import annotations

import warnings
from typing import Optional, Sequence

import torch

from ..io.alignment_heads import Heads, default_heads
from ..io.tokenizer import Tokenizer
from .protocol import put_audio
from .timing import WordTiming, alignment_matrices, find_words_many

MEDFILT_WIDTH = 7  # openai-whisper's median filter over the scores, in audio positions
_warned: set[int] = set()


def heads_of(model) -> Heads:
    """The model's alignment heads, or openai-whisper's fallback (all heads of the last half of the decoder's
    layers) with a warning, once per model, that the word times may be rough."""
    heads: Optional[Heads] = getattr(model, "alignment_heads", None)
    if heads:
        return heads
    if id(model) not in _warned:
        _warned.add(id(model))
        warnings.warn("the checkpoint names no alignment heads: word timestamps use every head of the last half "
                      "of the decoder's layers (as openai-whisper does), which times words less precisely",
                      stacklevel=3)
    return default_heads(model.dims)


def alignment_tokens(tokenizers: Sequence[Tokenizer], texts: Sequence[list[int]],
                     device) -> tuple[list[list[int]], torch.Tensor]:
    """Each window's sequence ``sot_sequence + [no_timestamps] + text + [eot]`` and the rows of the alignment pass
    [n, longest] (padded with end-of-text at the end)."""
    seqs = [[*tok.sot_sequence, tok.no_timestamps, *text, tok.eot] for tok, text in zip(tokenizers, texts)]
    width = max(len(s) for s in seqs)
    eot = tokenizers[0].eot
    return seqs, torch.tensor([s + [eot] * (width - len(s)) for s in seqs], device=device)


@torch.no_grad()
def align_windows(model, tokenizers: Sequence[Tokenizer], features: torch.Tensor, texts: Sequence[list[int]],
                  num_frames: Sequence[int]) -> list[list[WordTiming]]:
    """Per window i: the words of ``texts[i]`` (text ids, < eot) timed on its encoder states ``features[i]``
    ([n, n_audio_ctx, d]) within its first ``num_frames[i]`` mel frames; seconds from the window's start.
    Windows without text get []."""
    rows = [i for i, text in enumerate(texts) if text]
    out: list[list[WordTiming]] = [[] for _ in texts]
    if not rows:
        return out
    seqs, tokens = alignment_tokens([tokenizers[i] for i in rows], [texts[i] for i in rows], features.device)
    eot = tokenizers[rows[0]].eot
    dec = model.text_decoder
    dec.reserve(len(rows))
    x = features if len(rows) == features.shape[0] else features[torch.tensor(rows, device=features.device)]
    put_audio(dec, x)  # the decode of these windows has usually just computed their cross K/V
    try:
        probs, scores = dec.align(tokens, heads_of(model), eot)
    finally:
        dec.release()
    # the matrices on the scores' device (the softmax and median filter over [heads, tokens, 1500] are the
    # costly part on a CPU); only the small [tokens, frames] matrices travel, in one copy
    n_sots = [len(tokenizers[i].sot_sequence) for i in rows]
    matrices = alignment_matrices(scores.float(), [len(s) for s in seqs], [num_frames[i] for i in rows], n_sots,
                                  MEDFILT_WIDTH)
    probs = probs.float().cpu().tolist()
    token_probs = [probs[r][n_sot:n_sot + len(texts[i])] for r, (i, n_sot) in enumerate(zip(rows, n_sots))]
    found = find_words_many([tokenizers[i] for i in rows], matrices, [texts[i] for i in rows], token_probs)
    for i, words in zip(rows, found):
        out[i] = words
    return out


__all__ = ["MEDFILT_WIDTH", "align_windows", "alignment_tokens", "heads_of"]
