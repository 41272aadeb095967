"""LocalAgreement-2: which words of a growing window's transcript are final (whisper_streaming's policy).

    agreement = LocalAgreement()
    for hypothesis in hypotheses:               # the utterance so far, transcribed again as its audio grows
        send(agreement.update(hypothesis))      # the newly final words ("" when none): a transcription delta
    send(agreement.commit(hypothesis))          # a window that must move on: its rest is final now
    agreement.drop(n)                           # the first n committed words left the window (it was trimmed)
    send(agreement.finish(last_hypothesis))     # the end of the utterance: the rest is final
    agreement.text                              # == every delta joined: the completed transcript

A hypothesis is the window's text (its tokens' text joined); words are split at spaces, each keeping the spaces
before it, so joined words give the text back. A word is committed once the last two hypotheses agree on it and
on every word before it, beyond what is already committed (the longest common prefix of the two); committed words
are never retracted. Each hypothesis covers the whole window (the utterance, or its part after the words
dropped), so the committed words are first found in it:
where it starts with them, its new part follows them; where it has them otherwise, the words (their letters and
digits, lower case) are aligned with ``difflib``: its new part starts as many words after the last run of words in
common (within ``MAX_DRIFT`` words of where it stood) as the committed words went on after it (a misheard word
stands for one word); with no word in common ("Ice cream" -> "Ice-cream") it starts at the word boundary nearest
to as many letters as the committed words have. The first word's leading spaces are dropped (the transcript
starts with its first letter).
"""
from __future__ import annotations

import itertools
import re
from difflib import SequenceMatcher
from typing import Optional, Sequence, Union

_WORD = re.compile(r"\s*\S+")
_NOT_ALNUM = re.compile(r"[\W_]+")
MAX_DRIFT = 3  # words a committed word may have moved in a later hypothesis and still be found there

Hypothesis = Union[str, Sequence[str]]  # a text, or its tokens' texts


def split_words(hypothesis: Hypothesis) -> list[str]:
    """Words with the spaces before each (``" Hello world."`` -> ``[" Hello", " world."]``); trailing spaces go."""
    text = hypothesis if isinstance(hypothesis, str) else "".join(hypothesis)
    return _WORD.findall(text)


def _letters(word: str) -> str:
    """A word's letters and digits, lower case: what is compared to find the committed words again."""
    return _NOT_ALNUM.sub("", word).lower()


def common_prefix(a: Sequence[str], b: Sequence[str]) -> int:
    """How many leading words ``a`` and ``b`` share (compared exactly)."""
    n = 0
    while n < min(len(a), len(b)) and a[n] == b[n]:
        n += 1
    return n


class LocalAgreement:
    """One utterance's commit policy. ``committed``: the final words of the window (see ``drop``); ``text``: every
    final word joined."""

    def __init__(self):
        self.committed: list[str] = []  # the final words of the window (all of them until ``drop``)
        self._dropped: list[str] = []  # final words before the window
        self.finished = False
        self._previous: Optional[list[str]] = None  # the last hypothesis, as words

    @property
    def text(self) -> str:
        return "".join(self._dropped + self.committed).lstrip()

    def new_words(self, words: Sequence[str]) -> list[str]:
        """The part of a hypothesis (as words) after the committed words, found as the module says."""
        n = len(self.committed)
        if list(words[:n]) == self.committed:
            return list(words[n:])
        mine, theirs = [_letters(w) for w in self.committed], [_letters(w) for w in words]
        blocks = SequenceMatcher(None, mine, theirs, autojunk=False).get_matching_blocks()
        near = [b for b in blocks if b.size and abs(b.b - b.a) <= MAX_DRIFT]
        if near:  # the committed words after the last run in common stand for as many words of the hypothesis
            return list(words[near[-1].b + n - near[-1].a:])
        ends = list(itertools.accumulate(map(len, theirs), initial=0))  # letters before word k
        target = sum(map(len, mine))
        return list(words[min(range(len(words) + 1), key=lambda k: abs(ends[k] - target)):])

    def update(self, hypothesis: Hypothesis) -> str:
        """The text of the words this hypothesis makes final (what the last two agree on); "" when none."""
        self._open()
        words = split_words(hypothesis)
        previous, self._previous = self._previous, words
        if previous is None:
            return ""
        mine, theirs = self.new_words(words), self.new_words(previous)
        return self._commit(mine[:common_prefix(mine, theirs)])

    def commit(self, hypothesis: Hypothesis) -> str:
        """The rest of ``hypothesis`` (after the committed words) becomes final now, agreed or not (a window that
        must move on); returns its text. Updates go on, compared with this hypothesis."""
        self._open()
        words = split_words(hypothesis)
        self._previous = words
        return self._commit(self.new_words(words))

    def finish(self, hypothesis: Optional[Hypothesis] = None) -> str:
        """The end of the utterance: the rest of ``hypothesis`` (the final transcript; default: the last one
        given) becomes final. Returns its text; no update follows."""
        delta = self.commit(hypothesis if hypothesis is not None else self._previous or [])
        self.finished = True
        return delta

    def drop(self, n: int) -> None:
        """The first ``n`` committed words (where the last hypothesis starts with them) left the window: later
        hypotheses cover only what follows them. ``text`` keeps them."""
        if not 0 <= n <= len(self.committed):
            raise ValueError(f"cannot drop {n} of {len(self.committed)} committed words")
        if self._previous is not None:
            self._previous = self._previous[n:] if self._previous[:n] == self.committed[:n] else None
        self._dropped += self.committed[:n]
        self.committed = self.committed[n:]

    def _commit(self, words: list[str]) -> str:
        if not words:
            return ""
        first = not self.committed and not self._dropped
        self.committed += words
        text = "".join(words)
        return text.lstrip() if first else text

    def _open(self) -> None:
        if self.finished:
            raise RuntimeError("this utterance is finished: start a new LocalAgreement for the next one")


__all__ = ["MAX_DRIFT", "LocalAgreement", "common_prefix", "split_words"]
