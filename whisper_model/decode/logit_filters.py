"""Logit filters: rules applied in place to the next-token logits before a token is chosen.

Each filter sees ``logits [n_batch, n_vocab]`` (float32, the current step only) and ``tokens [n_batch, length]``
(everything in the context so far: prompt, start-of-transcript sequence, prefix and the sampled tokens), and
masks forbidden tokens with ``-inf``. The rules are openai-whisper's (``whisper/decoding.py``):

* ``SuppressBlank``: at the first sampled position, forbid a blank (the space token) and end-of-text.
* ``SuppressTokens``: always forbid a fixed set of tokens.
* ``ApplyTimestampRules``: timestamps come in pairs, never decrease, start the text, respect
  ``max_initial_timestamp``; and when the timestamps together are likelier than any text token, take one.
"""
from __future__ import annotations

from typing import Optional, Sequence

import torch
import torch.nn.functional as F

NEG_INF = float("-inf")


class LogitFilter:
    """A rule that masks ``logits [n_batch, n_vocab]`` in place given ``tokens [n_batch, length]``."""

    def apply(self, logits: torch.Tensor, tokens: torch.Tensor) -> None:
        raise NotImplementedError


class SuppressBlank(LogitFilter):
    """At the first sampled position (``length == sample_begin``) forbid the space token and end-of-text."""

    def __init__(self, tokenizer, sample_begin: int):
        self.sample_begin = sample_begin
        self.blank_tokens = list(tokenizer.encode(" ")) + [tokenizer.eot]

    def apply(self, logits: torch.Tensor, tokens: torch.Tensor) -> None:
        if tokens.shape[1] == self.sample_begin:
            logits[:, self.blank_tokens] = NEG_INF


class SuppressTokens(LogitFilter):
    """Forbid the given token ids at every step."""

    def __init__(self, suppress_tokens: Sequence[int]):
        self.suppress_tokens = list(suppress_tokens)

    def apply(self, logits: torch.Tensor, tokens: torch.Tensor) -> None:
        logits[:, self.suppress_tokens] = NEG_INF


class ApplyTimestampRules(LogitFilter):
    """Keep sampled timestamps well formed.

    * ``<|notimestamps|>`` is never sampled (text-only decoding puts it in the prompt instead);
    * after a timestamp that closes a pair (or opens the text) comes text; after one that opens a pair
      comes a timestamp or end-of-text, never text;
    * timestamps never decrease, and a segment that was just opened cannot close at its own start;
    * the first sampled token is a timestamp no later than ``max_initial_timestamp_index`` (if given);
    * if the total probability of the timestamps beats every single text token, a timestamp is forced.
    """

    def __init__(self, tokenizer, sample_begin: int, max_initial_timestamp_index: Optional[int]):
        self.sample_begin = sample_begin
        self.max_initial_timestamp_index = max_initial_timestamp_index
        self.eot = tokenizer.eot
        self.no_timestamps = tokenizer.no_timestamps
        self.timestamp_begin = tokenizer.timestamp_begin

    def apply(self, logits: torch.Tensor, tokens: torch.Tensor) -> None:
        ts_begin = self.timestamp_begin
        if self.no_timestamps is not None:
            logits[:, self.no_timestamps] = NEG_INF

        for k in range(tokens.shape[0]):
            sampled = tokens[k, self.sample_begin:].tolist()
            last_was_timestamp = len(sampled) >= 1 and sampled[-1] >= ts_begin
            penultimate_was_timestamp = len(sampled) < 2 or sampled[-2] >= ts_begin
            if last_was_timestamp:
                if penultimate_was_timestamp:  # a pair just closed (or the text just opened): text next
                    logits[k, ts_begin:] = NEG_INF
                else:  # a pair is open: close it or end the text
                    logits[k, : self.eot] = NEG_INF

            timestamps = [t for t in sampled if t >= ts_begin]
            if timestamps:
                # never go back in time; a segment just opened must not close at its own start
                last = timestamps[-1] if last_was_timestamp and not penultimate_was_timestamp else timestamps[-1] + 1
                logits[k, ts_begin:last] = NEG_INF

        if tokens.shape[1] == self.sample_begin:
            logits[:, :ts_begin] = NEG_INF  # the text starts with a timestamp
            if self.max_initial_timestamp_index is not None:
                logits[:, ts_begin + self.max_initial_timestamp_index + 1:] = NEG_INF

        logprobs = F.log_softmax(logits.float(), dim=-1)
        timestamp_logprob = logprobs[:, ts_begin:].logsumexp(dim=-1)  # [n_batch]
        max_text_logprob = logprobs[:, :ts_begin].max(dim=-1).values
        force = (timestamp_logprob > max_text_logprob)[:, None]  # no host sync: masked in place on the device
        logits[:, :ts_begin].masked_fill_(force, NEG_INF)
