"""io.live_mel.LiveLogMel against the offline log-mel (io.mel_stream.StreamedLogMel): equal once the audio ended
(at any seek, after dropping), and before the end lower only below the offline floor, by at most the gap between
the maxima (the bound the module states)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from whisper_model.io.audio import HOP_LENGTH, N_FRAMES, N_SAMPLES
from whisper_model.io.live_mel import CONTEXT, LiveLogMel
from whisper_model.io.mel_stream import StreamedLogMel

try:
    from ._reference import samples
except ImportError:
    from _reference import samples

PIECE = 1600  # 100 ms


def fed(audio: np.ndarray, piece: int = PIECE) -> LiveLogMel:
    mel = LiveLogMel(80)
    for start in range(0, audio.size, piece):
        mel.append(audio[start: start + piece])
    return mel


@pytest.mark.parametrize("n", [150, 3 * PIECE + 7, 11 * 16000 + 5])
def test_ended_windows_equal_offline_at_every_seek_after_drops(n):
    audio = samples("en_lecture_60s.wav")[:n]
    offline, mel = StreamedLogMel([audio], 80), fed(audio)
    mel.end()
    frames = n // HOP_LENGTH
    for seek in sorted({0, 1, frames // 3, frames // 2, max(0, frames - 5)}):
        mel.drop_before(seek)
        assert mel.start == seek and mel.kept_samples == n - max(0, seek * HOP_LENGTH - CONTEXT)
        size = frames - seek
        torch.testing.assert_close(mel.window(seek, size), offline.window(seek, size), atol=1e-6, rtol=0)


def test_a_full_window_before_the_end_differs_only_below_the_offline_floor():
    audio = samples("en_lecture_60s.wav")
    offline, mel = StreamedLogMel([audio], 80), fed(audio[: N_SAMPLES + CONTEXT])
    assert mel.settled() >= N_FRAMES and mel.content_frames == N_FRAMES + 1
    live, ref = mel.window(0), offline.window(0)
    whole, seen = float(offline.max), float(mel._raw(0, mel.settled()).max())
    assert seen <= whole
    gap = ref - live
    assert float(gap.min()) >= -1e-6 and float(gap.max()) <= (whole - seen) / 4 + 1e-6
    above = ref > (whole - 8 + 4) / 4 + 1e-6  # above the offline floor: equal
    torch.testing.assert_close(live[above], ref[above], atol=1e-6, rtol=0)


def test_a_partial_window_is_zero_padded_and_dropped_frames_refuse():
    mel = fed(samples("en_jfk.wav")[:16000])
    x = mel.window(0, mel.content_frames)
    assert x.shape == (80, N_FRAMES) and bool((x[:, mel.content_frames:] == 0).all())
    mel.drop_before(50)
    with pytest.raises(ValueError, match="dropped"):
        mel.window(10, 100)
    mel.end()
    with pytest.raises(ValueError, match="ended"):
        mel.append(np.zeros(10, np.float32))
