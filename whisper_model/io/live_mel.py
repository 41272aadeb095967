"""The log-mel of a growing audio: samples appended as they arrive, each window computed from the samples kept.

    mel = LiveLogMel(n_mels=80)
    mel.append(samples)                # float32 16 kHz mono, any number of times
    x = mel.window(seek, n)            # [n_mels, N_FRAMES]: the frames [seek, seek + n) so far, zero-padded
    mel.drop_before(seek)              # the samples before ``seek`` are not needed again
    mel.end()                          # no more samples: what follows is the 30 s of zeros of the offline recipe

``io.mel_stream.StreamedLogMel`` knows the audio's length and floors every frame at the maximum of the whole audio
minus 8; a live audio has neither. Here each window is computed from the samples kept (from ``seek``, plus the
200 samples its first STFT frame reaches back; the reflect padding at the audio's start), so every frame sees the
samples the offline recipe gives it. The floor is ``M - 8`` where ``M`` is the maximum over the frames seen so
far: those dropped, and those of the current computation whose samples are all known (``settled``; every frame
once the audio ended; a window's own frames always count). Hence:

* once the audio ended, every window equals the offline one (``StreamedLogMel``) within float rounding (the same
  frames, the same maximum);
* before the end, a window differs only where the offline floor lies higher: ``M <= M_whole``, a frame below
  ``M_whole - 8`` offline is ``max(raw, M - 8)`` here, lower by at most ``(M_whole - M) / 4`` after the ``(x + 4)
  / 4`` scaling; frames at or above ``M_whole - 8`` are equal. The last frames of a window that reaches the newest
  sample see zeros where samples are still to come (as the offline padding would, at an end).
"""
from __future__ import annotations

from typing import Union

import numpy as np
import torch

from .audio import HOP_LENGTH, N_FFT, N_FRAMES, mel_filters
from .sample_blocks import SampleBlocks

CONTEXT = N_FFT // 2  # samples an STFT frame reaches either side of its centre


class LiveLogMel:
    """The log-mel of samples that keep arriving (see the module); not thread-safe (the scheduler's thread owns
    it). ``device``: where the STFT runs and the windows come back."""

    def __init__(self, n_mels: int = 80, device: Union[str, torch.device, None] = None):
        self.n_mels, self.device = n_mels, torch.device(device or "cpu")
        self.n_samples, self.ended, self.start = 0, False, 0  # start: the first frame kept
        self._held = SampleBlocks()  # samples from sample ``_base``
        self._dropped_max = torch.tensor(-np.inf, device=self.device)  # of the raw log10 mel of frames dropped
        self._window = torch.hann_window(N_FFT, device=self.device)
        self._filters = mel_filters(n_mels, self.device)

    @property
    def content_frames(self) -> int:
        """Frames of the audio so far (10 ms each)."""
        return self.n_samples // HOP_LENGTH

    @property
    def growing(self) -> bool:
        return not self.ended

    @property
    def kept_samples(self) -> int:
        """Samples held now (from the left context of ``start`` on)."""
        return self.n_samples - self._base

    @property
    def _base(self) -> int:
        """The index of the first sample kept."""
        return max(0, self.start * HOP_LENGTH - CONTEXT)

    def append(self, samples: np.ndarray) -> None:
        if self.ended:
            raise ValueError("the audio has ended: no samples can follow")
        block = np.asarray(samples, dtype=np.float32).reshape(-1)
        if block.size:
            self._held.append(block)
            self.n_samples += block.size

    def end(self) -> None:
        self.ended = True

    def _kept(self) -> np.ndarray:
        return self._held.samples()

    def settled(self) -> int:
        """Frames whose samples are all known: every frame that sees any sample once the audio ended."""
        if self.ended:
            return (self.n_samples + CONTEXT + HOP_LENGTH - 1) // HOP_LENGTH
        return 0 if self.n_samples < CONTEXT else (self.n_samples - CONTEXT) // HOP_LENGTH + 1

    def _raw(self, first: int, last: int) -> torch.Tensor:
        """Raw log10 mel [last - first, n_mels] of frames [first, last) (first >= start), zeros past the samples."""
        kept, base = self._kept(), self._base
        lo, hi = first * HOP_LENGTH - CONTEXT, (last - 1) * HOP_LENGTH + CONTEXT
        if lo < 0:  # the audio's first frames reach into the reflect padding, as in the offline recipe
            head = _zero_padded(kept[: CONTEXT + 1], CONTEXT + 1)[1:][::-1]
            x = np.concatenate([head, _zero_padded(kept[:hi], hi)])[lo + CONTEXT:]
        else:
            x = _zero_padded(kept[lo - base: hi - base], hi - lo)
        stft = torch.stft(torch.from_numpy(np.ascontiguousarray(x)).to(self.device), N_FFT, HOP_LENGTH,
                          window=self._window, center=False, return_complex=True)
        return (self._filters @ stft.abs() ** 2).clamp(min=1e-10).log10().T

    def window(self, start: int, n_frames: int = N_FRAMES) -> torch.Tensor:
        """Frames [start, start + n_frames) -> [n_mels, N_FRAMES] float32 on ``device``, zero-padded past them."""
        if start < self.start:
            raise ValueError(f"frame {start} was dropped (the audio is kept from frame {self.start})")
        n = max(0, min(n_frames, N_FRAMES))
        counted = max(self.settled(), start + n)  # frames whose maximum counts for the floor
        if counted <= start:
            return torch.zeros((self.n_mels, N_FRAMES), dtype=torch.float32, device=self.device)
        raw = self._raw(start, counted)
        floor = torch.maximum(self._dropped_max, raw.max()) - 8.0
        mel = (torch.maximum(raw[:n].T, floor) + 4.0) / 4.0
        return torch.nn.functional.pad(mel, (0, N_FRAMES - n))

    def drop_before(self, frame: int) -> None:
        """Forget the samples only frames before ``frame`` need (their maximum is kept for the floor)."""
        frame = min(frame, max(self.settled(), self.start))
        if frame <= self.start:
            return
        self._dropped_max = torch.maximum(self._dropped_max, self._raw(self.start, frame).max())
        base = self._base
        self.start = frame
        self._held.keep_from(self._base - base)


def _zero_padded(x: np.ndarray, size: int) -> np.ndarray:
    return x if x.size >= size else np.concatenate([x, np.zeros(size - x.size, np.float32)])


__all__ = ["CONTEXT", "LiveLogMel"]
