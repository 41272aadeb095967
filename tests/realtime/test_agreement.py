"""LocalAgreement-2 on scripted hypothesis sequences: stable prefixes early, a changed word only once two
hypotheses agree, nothing retracted, the deltas joined == the final transcript."""
from __future__ import annotations

import random

import pytest

from whisper_model.realtime.agreement import LocalAgreement, split_words


def run(hypotheses, final=None):
    agreement = LocalAgreement()
    deltas = [agreement.update(h) for h in hypotheses]
    deltas.append(agreement.finish(final))
    assert "".join(deltas) == agreement.text
    return deltas, agreement


def test_split_words_keeps_the_text():
    assert split_words(" Hello  world, again. ") == [" Hello", "  world,", " again."]
    assert split_words([" Hel", "lo", " world"]) == [" Hello", " world"]  # tokens' texts joined first
    assert split_words("") == []


def test_a_stable_prefix_is_committed_as_soon_as_two_hypotheses_agree():
    deltas, agreement = run([" Hello", " Hello world", " Hello world this", " Hello world this is"],
                            " Hello world this is a test.")
    assert deltas == ["", "Hello", " world", " this", " is a test."]
    assert agreement.text == "Hello world this is a test."


def test_a_changed_word_waits_until_two_hypotheses_agree():
    deltas, _ = run([" I scream", " Ice cream is", " Ice cream is good", " Ice cream is good for"])
    assert deltas == ["", "", "Ice cream is", " good", " for"]  # nothing while "I" / "Ice" disagree


def test_punctuation_is_part_of_the_word():
    deltas, _ = run([" Yes", " Yes, we", " Yes, we can"], " Yes, we can.")
    assert deltas == ["", "", "Yes, we", " can."]


def test_committed_words_are_never_retracted():
    deltas, agreement = run([" Ice cream is", " Ice cream is good", " I scream is good for",
                             " I scream is good for you"],
                            " I scream is good for you.")
    assert deltas[:3] == ["", "Ice cream is", " good"]
    assert agreement.text == "Ice cream is good for you."  # the later "I scream" does not change "Ice cream"


def test_a_respelled_committed_part_is_found_by_its_letters():
    agreement = LocalAgreement()
    agreement.update(" Ice cream is")
    assert agreement.update(" Ice cream is good") == "Ice cream is"
    assert agreement.new_words(split_words(" Ice-cream is good for")) == [" good", " for"]
    assert agreement.update(" Ice-cream is good for") == " good"
    assert agreement.finish(" Ice-cream is good for you.") == " for you."
    assert agreement.text == "Ice cream is good for you."


def test_finish_without_a_hypothesis_commits_the_last_one_and_ends():
    agreement = LocalAgreement()
    agreement.update(" One two")
    assert agreement.finish() == "One two"
    with pytest.raises(RuntimeError, match="finished"):
        agreement.update(" One two three")
    assert LocalAgreement().finish() == ""  # an utterance with no words


@pytest.mark.parametrize("seed", range(20))
def test_random_sequences_keep_the_invariants(seed):
    """Hypotheses that grow word by word, each word sometimes misheard: what is committed only grows, every
    committed word was agreed on by the two hypotheses before, and the deltas add up to the transcript."""
    rng = random.Random(seed)
    truth = [f" w{i}" for i in range(30)]
    agreement, deltas, texts, hypotheses = LocalAgreement(), [], [], []
    for n in range(1, len(truth) + 1, rng.choice([1, 2])):
        hypothesis = [w if rng.random() > 0.2 else w + "x" for w in truth[:n]]
        hypotheses.append(hypothesis)
        before = list(agreement.committed)
        deltas.append(agreement.update("".join(hypothesis)))
        assert agreement.committed[:len(before)] == before
        new = agreement.committed[len(before):]
        if new:
            at = slice(len(before), len(agreement.committed))
            assert hypotheses[-1][at] == new and hypotheses[-2][at] == new
        texts.append(agreement.text)
    deltas.append(agreement.finish("".join(truth)))
    assert all(agreement.text.startswith(t) for t in texts)
    assert "".join(deltas) == agreement.text and len(agreement.committed) == len(truth)


def test_a_word_added_or_dropped_before_the_end_of_the_committed_words_moves_the_new_part():
    agreement = LocalAgreement()
    agreement.update(" So the cat sat")
    assert agreement.update(" So the cat sat on") == "So the cat sat"
    assert agreement.new_words(split_words(" So, um, the cat sat on the mat")) == [" on", " the", " mat"]
    assert agreement.new_words(split_words(" The cat sat on the mat")) == [" on", " the", " mat"]
    assert agreement.new_words(split_words(" So the cap sat on")) == [" on"]  # a misheard word stands for one


def test_commit_makes_the_rest_final_and_updates_go_on():
    agreement = LocalAgreement()
    agreement.update(" one two three")
    assert agreement.commit(" one two three four") == "one two three four"
    assert agreement.update(" one two three four five") == ""  # compared with the committed hypothesis
    assert agreement.update(" one two three four five six") == " five"
    assert agreement.text == "one two three four five"


def test_drop_keeps_the_text_and_later_hypotheses_cover_the_rest():
    agreement = LocalAgreement()
    agreement.update(" one two three")
    agreement.update(" one two three four")
    assert agreement.committed == [" one", " two", " three"]
    agreement.drop(2)  # " one two" left the window
    assert agreement.committed == [" three"] and agreement.text == "one two three"
    assert agreement.update(" three four five") == " four"  # the previous hypothesis lost its first 2 words too
    assert agreement.finish(" three four five six") == " five six"
    assert agreement.text == "one two three four five six"
    with pytest.raises(RuntimeError):
        agreement.update(" x")


def test_drop_refuses_more_than_committed():
    agreement = LocalAgreement()
    with pytest.raises(ValueError, match="cannot drop 1 of 0"):
        agreement.drop(1)
