"""Choosing tokens and candidates: ``TokenDecoder`` (greedy / sampling, beam search) and ``SequenceRanker``.

Same rules as openai-whisper's ``whisper/decoding.py``. ``DecodingTask`` (``task.py``) drives them: one
``update`` per step over the batch's rows (each audio's ``n_group`` beams / samples on consecutive rows),
``close`` for audios whose rows reached their length limit before the others (rows with different prompt
lengths in one batch), then ``finalize`` and ``rank``.
"""
from __future__ import annotations

from typing import Optional, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch.distributions import Categorical


class SequenceRanker:
    def rank(self, tokens: list[list[list[int]]], sum_logprobs: list[list[float]]) -> list[int]:
        """Per audio, the index of the chosen candidate (tokens: [n_audio][n_candidates][length])."""
        raise NotImplementedError


class MaximumLikelihoodRanker(SequenceRanker):
    """Highest ``logprob / penalty``: penalty = length, or ((5 + length) / 6) ** length_penalty (Google NMT)."""

    def __init__(self, length_penalty: Optional[float]):
        self.length_penalty = length_penalty

    def _score(self, logprob: float, length: int) -> float:
        if self.length_penalty is None:
            return logprob / length if length else logprob  # an empty candidate is not divided by zero
        return logprob / ((5 + length) / 6) ** self.length_penalty

    def rank(self, tokens, sum_logprobs):
        return [int(np.argmax([self._score(lp, len(t)) for t, lp in zip(ts, lps)]))
                for ts, lps in zip(tokens, sum_logprobs)]


class TokenDecoder:
    """Chooses the next tokens. ``update`` gets tokens [n_batch, length] (CPU), the step's filtered logits
    [n_batch, n_vocab] and the running sum_logprobs [n_batch] (updated in place) and returns
    ``(next_tokens [n_batch] (CPU), source rows or None, completed)``: when source rows are given, row i
    continues old row source[i] (the caller reorders its tokens and caches before appending).

    ``close(audios, ...)`` ends those audios now, as if decoding had stopped for them after the last update
    (what ``finalize`` would make of them); later updates leave their candidates and sum_logprobs unchanged
    and give them end-of-text."""

    def reset(self) -> None:
        pass

    def update(self, tokens: torch.Tensor, logits: torch.Tensor, sum_logprobs: torch.Tensor):
        raise NotImplementedError

    def close(self, audios: Sequence[int], tokens: torch.Tensor, sum_logprobs: torch.Tensor) -> None:
        """audios: indices of audios to end; tokens [n_batch, length], sum_logprobs [n_batch] so far."""
        raise NotImplementedError

    def finalize(self, tokens: torch.Tensor, sum_logprobs: torch.Tensor):
        """tokens [n_audio, n_group, length], sum_logprobs [n_audio, n_group] -> per audio, candidate
        sequences (each ending in end-of-text) and their sum_logprobs."""
        raise NotImplementedError


class GreedyDecoder(TokenDecoder):
    """Argmax at temperature 0, else one sample from softmax(logits / temperature); finished rows repeat eot."""

    def __init__(self, temperature: float, eot: int, n_group: int = 1):
        self.temperature, self.eot, self.n_group = temperature, eot, n_group
        self.closed: Optional[torch.Tensor] = None  # bool [n_batch]: rows of closed audios

    def reset(self) -> None:
        self.closed = None

    def close(self, audios, tokens, sum_logprobs):
        if self.closed is None:
            self.closed = torch.zeros(tokens.shape[0], dtype=torch.bool, device=sum_logprobs.device)
        for i in audios:
            self.closed[i * self.n_group: (i + 1) * self.n_group] = True

    def update(self, tokens, logits, sum_logprobs):
        if self.temperature == 0:
            next_tokens = logits.argmax(dim=-1)
        else:
            next_tokens = Categorical(logits=logits / self.temperature).sample()
        logprobs = F.log_softmax(logits.float(), dim=-1)
        current = logprobs[torch.arange(logprobs.shape[0], device=logprobs.device), next_tokens]
        finished = (tokens[:, -1] == self.eot).to(logits.device)
        if self.closed is not None:
            finished |= self.closed
        sum_logprobs += current * ~finished
        next_tokens[finished] = self.eot
        next_tokens = next_tokens.cpu()
        return next_tokens, None, bool((next_tokens == self.eot).all())

    def finalize(self, tokens, sum_logprobs):
        sequences = [[row + [self.eot] for row in group] for group in tokens.tolist()]
        return sequences, sum_logprobs.tolist()


class BeamSearchDecoder(TokenDecoder):
    """Beam search: each step keeps the ``beam_size`` best unfinished continuations per audio out of every
    beam's top ``beam_size + 1`` tokens; stops once every audio has ``round(beam_size * patience)`` finished."""

    def __init__(self, beam_size: int, eot: int, patience: Optional[float] = None):
        self.beam_size, self.eot = beam_size, eot
        self.max_candidates = round(beam_size * (patience or 1.0))
        self.finished: Optional[list[dict[tuple, float]]] = None
        self.closed: set[int] = set()

    def reset(self) -> None:
        self.finished, self.closed = None, set()

    def close(self, audios, tokens, sum_logprobs):
        beam, n_audio = self.beam_size, tokens.shape[0] // self.beam_size
        if self.finished is None:
            self.finished = [{} for _ in range(n_audio)]
        tokens, sum_logprobs = tokens.view(n_audio, beam, -1), sum_logprobs.cpu().view(n_audio, beam)
        for i in audios:
            self._fill(i, tokens[i], sum_logprobs[i])
            self.closed.add(i)

    def update(self, tokens, logits, sum_logprobs):
        beam, n_audio = self.beam_size, tokens.shape[0] // self.beam_size
        if self.finished is None:
            self.finished = [{} for _ in range(n_audio)]
        sums = sum_logprobs.tolist() if self.closed else None
        logprobs = F.log_softmax(logits.float(), dim=-1)
        top_logprobs, top_tokens = logprobs.topk(beam + 1)  # [n_batch, beam + 1]
        new_scores = (sum_logprobs[:, None] + top_logprobs).tolist()  # float32 sums, as one step adds them
        top_tokens = top_tokens.tolist()
        prefixes = [tuple(row) for row in tokens.tolist()]
        next_tokens, sources, new_sums = [], [], []
        for i in range(n_audio):
            if i in self.closed:  # its rows carry on unchanged, appending end-of-text
                rows = range(i * beam, (i + 1) * beam)
                next_tokens += [self.eot] * beam
                sources += rows
                new_sums += [sums[r] for r in rows]
                continue
            # candidates keyed by sequence: identical beams (the first step) collapse, keeping the first position
            candidates: dict[tuple, tuple[float, int]] = {}
            for idx in range(i * beam, (i + 1) * beam):
                for score, token in zip(new_scores[idx], top_tokens[idx]):
                    candidates[prefixes[idx] + (token,)] = (score, idx)
            newly_finished = {}
            for seq in sorted(candidates, key=lambda s: candidates[s][0], reverse=True):  # stable for ties
                score, idx = candidates[seq]
                if seq[-1] == self.eot:
                    newly_finished[seq] = score
                    continue
                new_sums.append(score)
                next_tokens.append(seq[-1])
                sources.append(idx)
                if len(next_tokens) == (i + 1) * beam:
                    break
            done = self.finished[i]
            for seq in sorted(newly_finished, key=newly_finished.get, reverse=True):
                if len(done) >= self.max_candidates:
                    break
                done[seq] = newly_finished[seq]
        sum_logprobs.copy_(torch.tensor(new_sums, dtype=sum_logprobs.dtype))
        completed = all(i in self.closed or len(done) >= self.max_candidates for i, done in enumerate(self.finished))
        return torch.tensor(next_tokens, dtype=torch.long), sources, completed

    def _fill(self, i: int, tokens: torch.Tensor, sum_logprobs: torch.Tensor) -> None:
        """Audio i with too few finished candidates gets its best unfinished beams (tokens [beam, length])."""
        done = self.finished[i]
        if len(done) < self.beam_size:
            for j in list(np.argsort(sum_logprobs.numpy()))[::-1]:
                done[tuple(tokens[j].tolist()) + (self.eot,)] = sum_logprobs[j].item()
                if len(done) >= self.beam_size:
                    break

    def finalize(self, tokens, sum_logprobs):
        sum_logprobs = sum_logprobs.cpu()
        for i in range(len(self.finished)):
            if i not in self.closed:  # closed audios were filled when they were closed
                self._fill(i, tokens[i], sum_logprobs[i])
        return [[list(seq) for seq in done] for done in self.finished], [list(d.values()) for d in self.finished]
