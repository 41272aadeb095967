"""Repetition loops: a window whose text has started repeating itself ("Thank you. Thank you. ...", one phrase
again and again on noise or music) is ended at once instead of running to ``sample_len``.

openai-whisper decodes such a window to its 224-token limit at every temperature of the fallback schedule (with
beam search or best_of rows each), then rejects it for its compression ratio; on noise that is minutes of CPU for
one 30 s window. Here a row whose sampled text ends in a block of 1..``MAX_PERIOD`` tokens repeated at least
``MIN_REPEATS`` times, spanning at least ``MIN_SPAN`` tokens, gets only end-of-text as its next token
(``StopRepetitionLoops``), a candidate that looped is never chosen over one that did not (``unlooped_first``),
and the result says ``looped``, which the transcription's fallback treats like a failed compression check.
Timestamp tokens all compare equal (a loop's timestamps advance while its text repeats).

Bound against the exact path: a window in which no such loop occurs decodes exactly as openai-whisper's (the
filter never masks anything); a looping window stops within one token of the loop reaching ``MIN_SPAN`` tokens,
so its text is a prefix of the exact path's text. Only the final candidate of a window that loops at every
temperature differs: a prefix, not the 224-token repetition.

The exact path (the stop off) follows openai-whisper's tokens as far as the logits round alike. On the CPU in fp32
the streamed log-mel windows are bit-identical to its (tested on every shared clip), so were the encoder states on the
windows measured, and the prefill's logits come from
the same full vocabulary projection; the decoder's fused and cached products still differ from its by rounding
(up to ~5e-5 in base's logits, measured on a looping window), far below the greedy margins seen in loops (>= 0.25)
but not nothing for sampling: a looping window is sampled through the whole fallback (up to 5 temperatures x
best_of rows x 224 tokens), and a draw that falls within that much probability of a token's edge takes its
neighbour (tests/model/test_exact_path.py).
"""
from __future__ import annotations

from typing import Sequence

import torch

from .logit_filters import NEG_INF, LogitFilter

MAX_PERIOD = 32  # longest repeated block, in tokens
MIN_REPEATS = 4  # the block at least this many times in a row
MIN_SPAN = 48  # and the repetition at least this many tokens long


def _repeats_needed(period: int) -> int:
    return max(MIN_REPEATS, -(-MIN_SPAN // period))


def ends_in_loop(ids: torch.Tensor, timestamp_begin: int) -> torch.Tensor:
    """ids [n, t] (sampled tokens) -> [n] bool: whether each row ends in a repetition loop (see the module)."""
    n, t = ids.shape
    looping = torch.zeros(n, dtype=torch.bool, device=ids.device)
    if t < 2:
        return looping
    x = ids[:, -(MAX_PERIOD * MIN_REPEATS + MIN_SPAN):].clamp(max=timestamp_begin)  # every timestamp alike
    reach = min(MAX_PERIOD, t - 1)
    # a period p needs the last token to equal the one p back: one comparison finds the periods worth checking
    same = (x[:, -1:] == x[:, -1 - reach:-1].flip(1)).any(dim=0).nonzero().flatten().tolist()
    for period in (k + 1 for k in same):
        span = period * _repeats_needed(period)
        if span <= t:
            tail = x[:, -span:]
            looping |= (tail[:, period:] == tail[:, :-period]).all(dim=1)
    return looping


def sequence_loops(ids: Sequence[int], timestamp_begin: int) -> bool:
    """``ends_in_loop`` of one sampled sequence (a result's tokens)."""
    return bool(ends_in_loop(torch.tensor([list(ids)], dtype=torch.long), timestamp_begin)[0]) if ids else False


def unlooped_first(scores: list[list[float]], looped: list[list[bool]]) -> list[list[float]]:
    """Per audio, its candidates' scores with those that looped at -inf when any candidate did not loop (a
    stopped loop is short and likely: it would win the ranking over real text)."""
    return [[float("-inf") if loop and not all(loops) else score for score, loop in zip(group, loops)]
            for group, loops in zip(scores, looped)]


class StopRepetitionLoops(LogitFilter):
    """Rows whose sampled text (after ``sample_begin``) ends in a repetition loop may only end the text."""

    def __init__(self, tokenizer, sample_begin: int):
        self.sample_begin, self.eot, self.timestamp_begin = sample_begin, tokenizer.eot, tokenizer.timestamp_begin
        self.shortest = min(p * _repeats_needed(p) for p in range(1, MAX_PERIOD + 1))

    def apply(self, logits: torch.Tensor, tokens: torch.Tensor) -> None:
        if tokens.shape[1] - self.sample_begin < self.shortest:
            return
        rows = ends_in_loop(tokens[:, self.sample_begin:], self.timestamp_begin).nonzero().flatten()
        if rows.numel():
            eot = logits[rows, self.eot].clone()
            logits[rows] = NEG_INF
            logits[rows, self.eot] = torch.where(torch.isinf(eot), torch.zeros_like(eot), eot)


__all__ = ["MAX_PERIOD", "MIN_REPEATS", "MIN_SPAN", "StopRepetitionLoops", "ends_in_loop", "sequence_loops",
           "unlooped_first"]
