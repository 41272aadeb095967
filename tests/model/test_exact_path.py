"""The exact path (``stop_repetition_loops=False``) inside repetition loops (issue 24 item 3).

A window that loops fails the compression check at every temperature of the fallback, so it is decoded greedily,
then sampled ``best_of`` rows at a time for up to 224 tokens per temperature: thousands of draws, each following
openai-whisper's only where our logits round as its do. What our side controls is checked bit for bit here:

* the prefill's kept logits (``TextDecoder.step(..., keep)``, its start-of-transcript and last columns) are those
  of the full vocabulary projection, the product openai-whisper computes: a product of only the kept rows is
  another matrix shape, which the BLAS rounds otherwise (up to ~2.5e-6 in base's logits), enough to flip a draw
  of a looping window;
* the streamed log-mel (bounded memory) is the whole-file log-mel in every window of every shared clip, loaded
  block by block as ``transcribe`` loads a path.
"""
from __future__ import annotations

import pytest
import torch

from whisper_model.encoding import WhisperEncoding
from whisper_model.io import audio as A
from whisper_model.io.mel_stream import StreamedLogMel

try:
    from ._paths import AUDIO_DIR, MISSING, NO_SHARED, clips
    from ._reference import clear, models
except ImportError:
    from _paths import AUDIO_DIR, MISSING, NO_SHARED, clips
    from _reference import clear, models


def teardown_module():
    clear()


def _prefill(decoder, features, tokens, keep=None):
    decoder.reserve(tokens.shape[0])
    decoder.set_audio(features)
    try:
        return decoder.step(tokens, torch.arange(tokens.shape[1]), keep)
    finally:
        decoder.release()


@pytest.mark.parametrize("group", [1, 5])
@pytest.mark.parametrize("n0", [3, 4, 9, 50, 226])
def test_prefill_kept_logits_are_the_full_projection_bit_for_bit(n0, group):
    """base, real weights: a window's prompt of ``n0`` initial tokens (the start-of-transcript at n0 - 3), its rows
    repeated ``group`` times as for best_of / beam search."""
    model, _ = models("base")
    gen = torch.Generator().manual_seed(n0)
    features = torch.randn(1, model.dims.n_audio_ctx, model.dims.n_audio_state, generator=gen)
    tokens = torch.randint(0, 50000, (1, n0), generator=gen).repeat(group, 1)
    keep = torch.tensor([[n0 - 3, n0 - 1]] * group)
    with torch.no_grad():
        full = _prefill(model.text_decoder, features, tokens)
        kept = _prefill(model.text_decoder, features, tokens, keep)
    expected = full[torch.arange(group)[:, None], keep]
    assert torch.equal(kept, expected), (kept - expected).abs().max()


@pytest.mark.parametrize("clip", clips())
def test_streamed_mel_is_the_whole_file_mel_in_every_window(clip):
    """CPU, fp32: equal, not only within the 1e-6 that other block splits are held to (test_mel_stream)."""
    if clip == MISSING or not (AUDIO_DIR / clip).is_file():
        pytest.skip(NO_SHARED)
    whole = A.log_mel_spectrogram(A.load_audio(AUDIO_DIR / clip), 80, padding=A.N_SAMPLES)
    streamed = StreamedLogMel(A.iter_audio(AUDIO_DIR / clip), 80)
    for seek in range(0, streamed.content_frames, 100):
        size = min(A.N_FRAMES, streamed.content_frames - seek)
        assert torch.equal(streamed.window(seek, size), WhisperEncoding.window(whole, seek, size)), seek
