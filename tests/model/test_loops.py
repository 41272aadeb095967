"""Repetition loops (decode/loops.py): the detector on token sequences, the filter that ends a looping row, and the
transcription path: a looping window falls back at once, real speech decodes exactly as before (the openai-whisper
parity tests run with the stop on, the default)."""
import numpy as np
import pytest
import torch

from whisper_model.decode import loops as L
from whisper_model.decode.options import DecodingResult
from whisper_model.options import TranscriptionOptions

try:
    from ._reference import models
except ImportError:
    from _reference import models

TS = 50364  # timestamp_begin of the English vocabulary


def test_detector_needs_enough_repeats_and_span():
    assert L.sequence_loops([7] * L.MIN_SPAN, TS) and not L.sequence_loops([7] * (L.MIN_SPAN - 1), TS)
    block = [11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22]  # period 12: 4 repeats = 48 tokens
    assert L.sequence_loops([1, 2, 3] + block * 4, TS)
    assert not L.sequence_loops(block * 3 + block[:11], TS)
    assert not L.sequence_loops(block * 4 + [99], TS)  # the loop was broken: only the tail counts
    period3 = [5, 6, 7] * 16  # 48 tokens
    assert L.sequence_loops(period3, TS) and not L.sequence_loops(period3[1:], TS)
    long_block = list(range(100, 100 + L.MAX_PERIOD + 1))  # longer than MAX_PERIOD: never a loop
    assert not L.sequence_loops(long_block * 6, TS)
    assert not L.sequence_loops([], TS) and not L.sequence_loops(list(range(200)), TS)


def test_timestamps_compare_equal_so_advancing_timestamps_still_loop():
    phrase = [2, 3, 4, 5, 6, 7]  # " Thank you." and its timestamps, again and again
    seq = []
    for k in range(10):
        seq += [TS + 2 * k] + phrase + [TS + 2 * k + 2]
    assert L.sequence_loops(seq, TS)
    assert not L.sequence_loops(seq, TS + 10 ** 6)  # timestamps compared as themselves: no loop


def test_filter_leaves_only_end_of_text_for_looping_rows():
    class Tok:
        eot, timestamp_begin = 50256, TS

    f = L.StopRepetitionLoops(Tok(), sample_begin=3)
    tokens = torch.tensor([[1, 2, 3] + [9] * 60, [1, 2, 3] + list(range(60))])
    logits = torch.randn(2, 51864)
    logits[0, Tok.eot] = float("-inf")  # even when end-of-text was masked before
    before = logits.clone()
    f.apply(logits, tokens)
    assert torch.isfinite(logits[0]).sum() == 1 and logits[0].argmax() == Tok.eot
    assert torch.equal(logits[1], before[1])
    short = torch.tensor([[1, 2, 3] + [9] * 10])
    row = torch.randn(1, 51864)
    copy = row.clone()
    f.apply(row, short)
    assert torch.equal(row, copy)


def test_a_looped_result_falls_back_only_with_a_repetition_check():
    looped = DecodingResult(language="en", tokens=[1], text="a", avg_logprob=-0.1, no_speech_prob=0.0,
                            compression_ratio=1.0, looped=True)
    assert TranscriptionOptions().needs_fallback(looped)
    assert not TranscriptionOptions(compression_ratio_threshold=None).needs_fallback(looped)
    assert [d.stop_loops for d in TranscriptionOptions().decoding] == [True] * 6
    assert not any(d.stop_loops for d in TranscriptionOptions(stop_repetition_loops=False).decoding)
    assert not any(d.stop_loops for d in TranscriptionOptions(compression_ratio_threshold=None).decoding)


def test_noise_windows_are_bounded_and_fall_back():
    """tiny.en loops on noise (beam search on loud noise runs to 224 tokens; greedy on low noise repeats ". . .").
    With the stop, greedy ends in the same loop sooner (its tokens a prefix of the exact ones) and is marked for
    the fallback; beam search stops its looping beams and chooses a beam that did not loop."""
    from whisper_model.decode import DecodingOptions, decode
    from whisper_model.io.audio import log_mel_spectrogram

    model, _ = models("tiny.en")
    rng = np.random.default_rng(0)
    loud, low = (rng.normal(0, std, 30 * 16000).astype(np.float32) for std in (0.1, 0.003))
    ts = 50363  # tiny.en's timestamp_begin
    for audio, beam_size in ((loud, 5), (low, None)):
        mel = log_mel_spectrogram(audio, 80)[None]
        exact, = decode(model, mel, DecodingOptions(language="en", beam_size=beam_size))
        stopped, = decode(model, mel, DecodingOptions(language="en", beam_size=beam_size, stop_loops=True))
        assert L.sequence_loops(exact.tokens, ts) and not exact.looped, beam_size
        assert len(stopped.tokens) < len(exact.tokens)
        if beam_size is None:
            assert stopped.looped and L.sequence_loops(stopped.tokens, ts)
            assert stopped.tokens == exact.tokens[: len(stopped.tokens)]
            assert TranscriptionOptions().needs_fallback(stopped)
        else:
            assert len(exact.tokens) == 224
            assert not stopped.looped and not L.sequence_loops(stopped.tokens, ts)


def test_a_looped_candidate_loses_to_any_that_did_not_loop():
    scores = [[-1.0, -5.0, -2.0], [-1.0, -2.0]]
    ranked = L.unlooped_first(scores, [[True, False, True], [True, True]])
    assert ranked == [[float("-inf"), -5.0, float("-inf")], [-1.0, -2.0]]  # all looped: ranked as they are
    assert L.unlooped_first(scores, [[False] * 3, [False] * 2]) == scores
