"""Word-level timestamps: a window's words and their times from the cross-attention of the alignment heads.

``Word`` is what a ``Segment`` carries (faster-whisper's ``Segment.words`` shape).

The same algorithm, constants and heuristics as openai-whisper's word timestamps (``whisper/timing.py``), without
the model: ``alignment_matrix`` turns the alignment heads' cross-attention logits of a window's final tokens into
the token x audio matrix, ``find_words`` times the window's words by DTW over it (``dtw.py``), and ``place_words``
puts them onto the window's segments (long words cut, punctuation merged, segment edges adjusted).
"""
from __future__ import annotations

import string
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from ..io.tokenizer import Tokenizer
from .batched_matrices import batched_alignment_matrices
from .dtw import dtw_many, median_filter


@dataclass(frozen=True)
class Word:
    start: float  # seconds on the audio's timeline, rounded to 0.01
    end: float
    word: str  # with its leading space (space-separated languages) and merged punctuation
    probability: float  # mean probability of the word's tokens


PREPEND_PUNCTUATIONS = "\"'“¿([{-"  # merged into the word that follows them
APPEND_PUNCTUATIONS = "\"'.。,，!！?？:：”)]}、"  # merged into the word before them
SENTENCE_END_MARKS = ".。!！?？"
TOKENS_PER_SECOND = 50  # audio positions of the encoder output per second (20 ms each)
UNICODE_SPLIT_LANGUAGES = frozenset({"zh", "ja", "th", "lo", "my", "yue"})  # no spaces between words
MAX_MEDIAN_DURATION = 0.7  # seconds: the median word duration used by the heuristics is capped at this
REPLACEMENT_CHAR = "\ufffd"


@dataclass
class WordTiming:
    """One word of a window as aligned: its text and tokens, times in seconds relative to the window."""
    word: str
    tokens: list[int]
    start: float
    end: float
    probability: float


# -- words from tokens ---------------------------------------------------------------------------------------------

def split_tokens_on_unicode(tokenizer: Tokenizer, tokens: list[int]) -> tuple[list[str], list[list[int]]]:
    """Cut ``tokens`` wherever the tokens so far decode to whole characters: a piece ends at the first token after
    which its text has no U+FFFD, or only U+FFFD that the whole sequence's text has at that place too."""
    full = tokenizer.decode_with_timestamps(tokens)
    words: list[str] = []
    word_tokens: list[list[int]] = []
    pending: list[int] = []
    offset = 0  # characters of ``full`` covered by the pieces so far
    for token in tokens:
        pending.append(token)
        text = tokenizer.decode_with_timestamps(pending)
        if REPLACEMENT_CHAR not in text or full[offset + text.index(REPLACEMENT_CHAR)] == REPLACEMENT_CHAR:
            words.append(text)
            word_tokens.append(pending)
            pending = []
            offset += len(text)
    return words, word_tokens


def split_tokens_on_spaces(tokenizer: Tokenizer, tokens: list[int]) -> tuple[list[str], list[list[int]]]:
    """Whole-character pieces joined into words: a new word starts at a special token (>= eot), at a piece
    with a leading space, and at a piece that is punctuation (or blank) once stripped."""
    words: list[str] = []
    word_tokens: list[list[int]] = []
    for piece, piece_tokens in zip(*split_tokens_on_unicode(tokenizer, tokens)):
        starts_word = (piece_tokens[0] >= tokenizer.eot or piece.startswith(" ")
                       or piece.strip() in string.punctuation or not words)
        if starts_word:
            words.append(piece)
            word_tokens.append(piece_tokens)
        else:
            words[-1] += piece
            word_tokens[-1].extend(piece_tokens)
    return words, word_tokens


def split_to_word_tokens(tokenizer: Tokenizer, tokens: list[int]) -> tuple[list[str], list[list[int]]]:
    """tokens -> (words, each word's tokens): per character sequence for languages written without spaces
    (``UNICODE_SPLIT_LANGUAGES``), else on spaces and punctuation."""
    if tokenizer.language in UNICODE_SPLIT_LANGUAGES:
        return split_tokens_on_unicode(tokenizer, tokens)
    return split_tokens_on_spaces(tokenizer, tokens)


# -- the alignment -------------------------------------------------------------------------------------------------

def alignment_matrix(scores: torch.Tensor, num_frames: int, n_sot: int, medfilt_width: int = 7,
                     qk_scale: float = 1.0) -> torch.Tensor:
    """The token-to-audio matrix DTW runs on (negated): scores [H, T, n_audio_ctx] float32, the alignment heads'
    cross-attention logits (scaled by 1/sqrt(head_dim), before softmax) for ``sot_sequence (n_sot tokens) +
    [no_timestamps] + text_tokens + [eot]`` -> [len(text_tokens) + 1, num_frames // 2].

    Per head: softmax over the window's first num_frames // 2 audio positions, standardised over the tokens,
    median-filtered over time; then the mean over heads, without the sot rows and the eot row."""
    weights = (scores[:, :, : num_frames // 2] * qk_scale).softmax(dim=-1)
    std, mean = torch.std_mean(weights, dim=-2, keepdim=True, unbiased=False)
    weights = median_filter((weights - mean) / std, medfilt_width)
    return weights.mean(dim=0)[n_sot:-1]


def alignment_matrices(scores: torch.Tensor, lengths: Sequence[int], num_frames: Sequence[int],
                       n_sots: Sequence[int], medfilt_width: int = 7) -> list[torch.Tensor]:
    """``alignment_matrix`` of each row of scores [n, H, T, n_audio_ctx] (row r: its first lengths[r] tokens, of
    which n_sots[r] sot tokens, within num_frames[r] mel frames) on the scores' device, brought to the CPU in one
    copy -> per row [lengths[r] - n_sots[r] - 1, num_frames[r] // 2] float32 (views of one CPU tensor).

    On the CPU one call per row: a call on several rows at once is not bit-identical to it (the mean over the heads
    of a larger tensor sums in another order). On a GPU all rows at once (``batched_matrices``: a dozen launches
    per window otherwise), equal up to that order."""
    if scores.device.type == "cpu":
        matrices = [alignment_matrix(scores[r, :, :length], frames, n_sot, medfilt_width)
                    for r, (length, frames, n_sot) in enumerate(zip(lengths, num_frames, n_sots))]
    else:
        matrices = batched_alignment_matrices(scores, lengths, num_frames, n_sots, medfilt_width)
    flat = torch.cat([matrix.flatten() for matrix in matrices]).cpu()
    chunks = flat.split([matrix.numel() for matrix in matrices])
    return [chunk.view(matrix.shape) for chunk, matrix in zip(chunks, matrices)]


def _as_cost(matrix: torch.Tensor | np.ndarray) -> np.ndarray:
    """-matrix as float64 numpy (the DTW's cost; numpy's conversion: torch's wakes its thread pool per matrix)."""
    if isinstance(matrix, torch.Tensor):
        matrix = matrix.detach().cpu().numpy()
    return -np.asarray(matrix).astype(np.float64)


def _timings(words: list[str], word_tokens: list[list[int]], path: tuple[np.ndarray, np.ndarray],
             token_probs: Sequence[float]) -> list[WordTiming]:
    """Words (the last one, eot, dropped) timed by the DTW path: a word starts where the path first reaches its
    first token and ends where it reaches the next word's first token; its probability is np.mean of its tokens'
    (``np.add.reduce`` of the slice over its length, which is what np.mean computes)."""
    text_indices, time_indices = path
    boundaries = np.pad(np.cumsum([len(t) for t in word_tokens[:-1]]), (1, 0))
    jumps = np.pad(np.diff(text_indices), (1, 0), constant_values=1).astype(bool)
    jump_times = time_indices[jumps] / TOKENS_PER_SECOND
    starts, ends = jump_times[boundaries[:-1]].tolist(), jump_times[boundaries[1:]].tolist()
    probs, add = np.asarray(token_probs, dtype=np.float64), np.add.reduce
    bounds = boundaries.tolist()
    return [WordTiming(word, tokens, start, end, float(add(probs[i:j])) / (j - i))
            for word, tokens, start, end, i, j in zip(words, word_tokens, starts, ends, bounds[:-1], bounds[1:])]


def find_words_many(tokenizer: Tokenizer | Sequence[Tokenizer], matrices: Sequence[torch.Tensor | np.ndarray],
                    text_tokens: Sequence[list[int]],
                    token_probs: Sequence[Sequence[float]]) -> list[list[WordTiming]]:
    """``find_words`` of several windows (one tokenizer, or one per window), with one ``dtw_many`` for all."""
    n = len(matrices)
    tokenizers = list(tokenizer) if isinstance(tokenizer, (list, tuple)) else [tokenizer] * n
    if not len(tokenizers) == len(text_tokens) == len(token_probs) == n:
        raise ValueError("find_words_many needs one matrix, token list and probability list per window")
    splits = [split_to_word_tokens(tok, list(tokens) + [tok.eot]) if tokens else ([], [])
              for tok, tokens in zip(tokenizers, text_tokens)]
    todo = [k for k, (_, word_tokens) in enumerate(splits) if len(word_tokens) > 1]
    costs = [_as_cost(matrices[k]) for k in todo]
    for k, cost in zip(todo, costs):
        if cost.ndim != 2 or cost.shape[0] != len(text_tokens[k]) + 1 or len(token_probs[k]) != len(text_tokens[k]):
            raise ValueError(f"window {k}: {len(text_tokens[k])} text tokens need a matrix of "
                             f"{len(text_tokens[k]) + 1} rows and as many probabilities, got {tuple(cost.shape)} "
                             f"and {len(token_probs[k])}")
    paths = dtw_many(costs)
    out: list[list[WordTiming]] = [[] for _ in range(n)]
    for k, path in zip(todo, paths):
        out[k] = _timings(*splits[k], path, token_probs[k])
    return out


def find_words(tokenizer: Tokenizer, matrix: torch.Tensor | np.ndarray, text_tokens: list[int],
               token_probs: Sequence[float]) -> list[WordTiming]:
    """A window's words timed by DTW: matrix [len(text_tokens) + 1, frames] (``alignment_matrix``), token_probs[i]
    the probability of text_tokens[i]. Times in seconds from the window's start; a word's probability is the mean
    of its tokens'. [] when the text has no word, or one (as openai-whisper)."""
    return find_words_many(tokenizer, [matrix], [text_tokens], [token_probs])[0]


def _merge_marks(words: list[str], tokens: list[list[int]], prepended: str, appended: str) -> None:
    """``merge_punctuations`` on parallel lists (each entry's text, its tokens), in place; token lists are replaced,
    never modified."""
    target = len(words) - 1
    for k in range(len(words) - 2, -1, -1):  # right to left, so that runs of marks gather on one word
        if words[k].startswith(" ") and words[k].strip() in prepended:
            words[target], tokens[target] = words[k] + words[target], tokens[k] + tokens[target]
            words[k], tokens[k] = "", []
        else:
            target = k
    target = 0
    for k in range(1, len(words)):  # left to right
        if not words[target].endswith(" ") and words[k] in appended:
            words[target], tokens[target] = words[target] + words[k], tokens[target] + tokens[k]
            words[k], tokens[k] = "", []
        else:
            target = k


def merge_punctuations(alignment: list[WordTiming], prepended: str, appended: str) -> None:
    """In place: a word that is a prepended mark (after a space) joins the word after it, and an appended mark the
    word before it; the marks' own entries are left empty (word "", no tokens) with their times."""
    words, tokens = [t.word for t in alignment], [t.tokens for t in alignment]
    _merge_marks(words, tokens, prepended, appended)
    for timing, word, word_tokens in zip(alignment, words, tokens):
        timing.word, timing.tokens = word, word_tokens


# -- words onto segments -------------------------------------------------------------------------------------------

def _typical_durations(durations: np.ndarray) -> tuple[float, float]:
    """durations [n] seconds -> (median duration capped at MAX_MEDIAN_DURATION, twice that): zero durations left
    out, 0.0 when none is left."""
    durations = durations[durations.nonzero()]
    median = min(MAX_MEDIAN_DURATION, float(np.median(durations))) if len(durations) > 0 else 0.0
    return median, median * 2


def _truncate_at_sentence_marks(words: list[str], starts: np.ndarray, ends: np.ndarray, max_duration: float) -> None:
    """In place on starts / ends [n] (seconds; words[k]'s): a word longer than max_duration that is a sentence mark
    keeps only its first max_duration, one right after a sentence mark only its last (the first word is left as it
    is); nothing changes when every word has zero duration."""
    durations = ends - starts
    if not durations.any():
        return
    for k in (np.flatnonzero(durations[1:] > max_duration) + 1).tolist():
        if words[k] in SENTENCE_END_MARKS:
            ends[k] = starts[k] + max_duration
        elif words[k - 1] in SENTENCE_END_MARKS:
            starts[k] = ends[k] - max_duration


def _segment_end(counts: list[int], index: int, n_tokens: int) -> int:
    """The index after the entries, from ``index`` on, that make up a segment of n_tokens text tokens (counts[k]:
    entry k's tokens; merged-away entries count 0 and are taken only before the segment is full)."""
    taken = 0
    while index < len(counts) and taken < n_tokens:
        taken += counts[index]
        index += 1
    return index


def _fit_edges(words: list[list], start: float, end: float, median: float, max_duration: float,
               last_speech: float) -> tuple[float, float]:
    """In place on the segment's words [start, end, ...]: the first word(s) after a pause shortened to
    max_duration, an edge word that reaches well beyond the segment's start / end cut to it (else the segment's
    start / end moved to the word's); returns the segment's (start, end)."""
    first, last = words[0], words[-1]
    second = words[1] if len(words) > 1 else None
    if first[1] - last_speech > median * 4 and (
            first[1] - first[0] > max_duration or (second is not None and second[1] - first[0] > max_duration * 2)):
        if second is not None and second[1] - second[0] > max_duration:
            first[1] = second[0] = max(second[1] / 2, second[1] - max_duration)
        first[0] = max(0, first[1] - max_duration)
    if start < first[1] and start - 0.5 > first[0]:
        first[0] = max(0, min(first[1] - median, start))
    else:
        start = first[0]
    if end > last[0] and end + 0.5 < last[1]:
        last[1] = max(last[0] + median, end)
    else:
        end = last[1]
    return float(start), float(end)


def place_words(alignment: list[WordTiming], segments: Sequence[tuple[float, float, list[int]]], time_offset: float,
                last_speech_timestamp: float, prepend_punctuations: str = PREPEND_PUNCTUATIONS,
                append_punctuations: str = APPEND_PUNCTUATIONS) -> tuple[list[tuple[float, float, list[Word]]], float]:
    """A window's aligned words (``find_words``, seconds from the window start at ``time_offset``) onto its
    segments, as openai-whisper's ``add_word_timestamps`` places them.

    segments: (start, end, text tokens (< eot)) each, in order, their tokens together those of the alignment.
    Long words are cut (sentence marks; after a pause; against the segment's edges), punctuation merged, and
    each segment with words gets its start / end from them where they fit. Returns per segment (start, end,
    words) (a segment without words keeps its times and gets []) and the last_speech_timestamp after the window:
    the end of its last segment with words (the input when none has words). ``alignment`` is not modified.

    The words' times are worked on as arrays [n] (float64, the same arithmetic as per word), their texts and
    tokens as lists; each word becomes a mutable [start, end, word, probability] (seconds of the audio, rounded
    to 0.01 as numpy rounds) for ``_fit_edges``."""
    starts = np.array([t.start for t in alignment], dtype=np.float64)
    ends = np.array([t.end for t in alignment], dtype=np.float64)
    words, tokens = [t.word for t in alignment], [t.tokens for t in alignment]
    median, max_duration = _typical_durations(ends - starts)
    _truncate_at_sentence_marks(words, starts, ends, max_duration)
    _merge_marks(words, tokens, prepend_punctuations, append_punctuations)
    entries = [[start, end, word, float(t.probability)] for start, end, word, t in
               zip(np.round(time_offset + starts, 2).tolist(), np.round(time_offset + ends, 2).tolist(), words,
                   alignment)]
    counts = [len(t) for t in tokens]
    placed: list[tuple[float, float, list[Word]]] = []
    index = 0
    for start, end, segment_tokens in segments:
        stop = _segment_end(counts, index, len(segment_tokens))
        seg_words = [entries[k] for k in range(index, stop) if words[k]]
        index = stop
        if seg_words:
            start, end = _fit_edges(seg_words, start, end, median, max_duration, last_speech_timestamp)
            last_speech_timestamp = end
        placed.append((float(start), float(end), [Word(float(a), float(b), w, p) for a, b, w, p in seg_words]))
    return placed, last_speech_timestamp


__all__ = ["APPEND_PUNCTUATIONS", "PREPEND_PUNCTUATIONS", "TOKENS_PER_SECOND", "Word", "WordTiming",
           "alignment_matrices", "alignment_matrix", "find_words", "find_words_many", "merge_punctuations",
           "place_words", "split_to_word_tokens", "split_tokens_on_spaces", "split_tokens_on_unicode"]
