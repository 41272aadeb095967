"""The log-mel of an audio of any length in bounded memory: computed block by block as the samples arrive, kept
(as raw log10 power, frame-major) in memory up to a few windows and in an anonymous temporary file beyond, and read
back one window at a time.

    mel = StreamedLogMel(blocks, n_mels=80)        # blocks: float32 16 kHz mono sample arrays, in order
    mel.content_frames                             # frames of the audio itself (10 ms each)
    x = mel.window(seek, 3000)                     # [n_mels, N_FRAMES]: what the whole-file computation gives

What it equals: ``log_mel_spectrogram(samples, n_mels, padding=N_SAMPLES)`` (openai-whisper's recipe: centred
STFT with reflect padding, power, mel filters, log10, floored at the maximum minus 8, then ``(x + 4) / 4``) over
the whole audio, sliced to the window and zero-padded to N_FRAMES as ``WhisperEncoding.window`` does. The STFT
frames at block edges see the samples of the neighbouring blocks (the stream keeps the 240 samples a frame
reaches back), the left edge gets the same reflect padding, the 30 s of zeros are appended at the end, and the
floor uses the maximum over the whole audio: windows are read only once every block has been seen. Equal within
float rounding of the FFT and the filter product over different block sizes (<= 1e-6; tested).
"""
from __future__ import annotations

import tempfile
from typing import Iterable, Union

import numpy as np
import torch

from .audio import HOP_LENGTH, N_FFT, N_FRAMES, N_SAMPLES, mel_filters

BLOCK_FRAMES = N_FRAMES  # frames computed per STFT call (one window)
MEMORY_FRAMES = 4 * N_FRAMES  # frames kept in memory before the rest goes to a temporary file


class FrameStore:
    """Rows ``[n, width]`` float32 appended in order and read back by range: the first ``memory_rows`` in memory on
    ``device`` (a chunk or a short file never leaves the GPU), the rest in an anonymous temporary file (deleted by
    the system when closed, also if the process dies)."""

    def __init__(self, width: int, memory_rows: int = MEMORY_FRAMES, device: Union[str, torch.device] = "cpu"):
        self.width, self.memory_rows, self.rows, self.device = width, memory_rows, 0, torch.device(device)
        self.head = torch.empty((memory_rows, width), dtype=torch.float32, device=self.device)
        self.file = None

    def append(self, block: torch.Tensor) -> None:
        """block [k, width] (any device)."""
        take = max(0, min(len(block), self.memory_rows - self.rows))
        self.head[self.rows: self.rows + take] = block[:take]
        if take < len(block):
            if self.file is None:
                self.file = tempfile.TemporaryFile(prefix="whisper_mel_")
            self.file.seek(0, 2)
            self.file.write(block[take:].float().contiguous().cpu().numpy().tobytes())
        self.rows += len(block)

    def read(self, start: int, stop: int) -> torch.Tensor:
        """Rows [start, stop) (clipped to what is stored) -> [k, width] on ``device``."""
        start, stop = max(0, start), min(stop, self.rows)
        if stop <= start:
            return torch.zeros((0, self.width), dtype=torch.float32, device=self.device)
        parts = [self.head[start: min(stop, self.memory_rows)]] if start < self.memory_rows else []
        if stop > self.memory_rows:
            first = max(start, self.memory_rows) - self.memory_rows
            self.file.seek(first * self.width * 4)
            count = (stop - self.memory_rows - first) * self.width
            rows = np.frombuffer(self.file.read(count * 4), np.float32).reshape(-1, self.width)
            parts.append(torch.from_numpy(rows.copy()).to(self.device))
        return torch.cat(parts) if len(parts) > 1 else parts[0].clone()

    def close(self) -> None:
        if self.file is not None:
            self.file.close()
            self.file = None


class StreamedLogMel:
    """The log-mel of the audio in ``blocks`` (see the module). ``device``: where the STFT runs, the first frames
    are kept and the windows come back."""

    def __init__(self, blocks: Iterable[np.ndarray], n_mels: int = 80,
                 device: Union[str, torch.device, None] = None, block_frames: int = BLOCK_FRAMES):
        self.n_mels, self.device = n_mels, torch.device(device or "cpu")
        self.store = FrameStore(n_mels, device=self.device)
        self.max = torch.tensor(-np.inf, device=self.device)  # of the raw log10 mel: no device sync per block
        self._window = torch.hann_window(N_FFT, device=self.device)
        self._filters = mel_filters(n_mels, self.device)
        n = self._compute(blocks, block_frames)
        self.n_samples = n
        self.content_frames = n // HOP_LENGTH
        self.n_frames = (n + N_SAMPLES) // HOP_LENGTH  # what log_mel_spectrogram(padding=N_SAMPLES) gives

    def _compute(self, blocks: Iterable[np.ndarray], block_frames: int) -> int:
        """Frames of the padded stream (reflect head, samples, N_SAMPLES zeros), ``block_frames`` at a time."""
        pending, n, head = np.zeros(0, np.float32), 0, None
        step = block_frames * HOP_LENGTH
        for block in blocks:
            block = np.asarray(block, np.float32).reshape(-1)
            n += block.size
            pending = np.concatenate([pending, block])
            if head is None:
                if pending.size <= N_FFT // 2:
                    continue  # the reflect padding needs samples 1..200
                head = pending[1: N_FFT // 2 + 1][::-1]
                pending = np.concatenate([head, pending])
            while pending.size >= step + N_FFT:
                self._frames(pending[: step + N_FFT - HOP_LENGTH])
                pending = pending[step:]
        zeros = np.zeros(N_SAMPLES + N_FFT // 2, np.float32)  # the appended 30 s, then the right reflect of zeros
        if head is None:  # a very short audio: the reflect reaches into the appended zeros
            padded = np.concatenate([pending, zeros])
            pending = np.concatenate([padded[1: N_FFT // 2 + 1][::-1], padded])
        else:
            pending = np.concatenate([pending, zeros])
        total = (n + N_SAMPLES) // HOP_LENGTH  # frames to produce in all
        while self.store.rows < total:
            k = min(block_frames, total - self.store.rows)
            self._frames(pending[: (k - 1) * HOP_LENGTH + N_FFT])
            pending = pending[k * HOP_LENGTH:]
        return n

    def _frames(self, samples: np.ndarray) -> None:
        """STFT frames of ``samples`` (their first frame starts at samples[0]) -> raw log10 mel rows stored."""
        x = torch.from_numpy(np.ascontiguousarray(samples)).to(self.device)
        stft = torch.stft(x, N_FFT, HOP_LENGTH, window=self._window, center=False, return_complex=True)
        log_spec = (self._filters @ stft.abs() ** 2).clamp(min=1e-10).log10()  # [n_mels, k]
        self.max = torch.maximum(self.max, log_spec.max())
        self.store.append(log_spec.T)

    def window(self, start: int, n_frames: int = N_FRAMES) -> torch.Tensor:
        """Frames [start, start + n_frames) -> [n_mels, N_FRAMES] float32 on the STFT's device, zero-padded past
        them (as ``WhisperEncoding.window`` of the whole-file log-mel)."""
        raw = self.store.read(start, start + min(n_frames, N_FRAMES)).T
        mel = (torch.maximum(raw, self.max - 8.0) + 4.0) / 4.0
        return torch.nn.functional.pad(mel, (0, N_FRAMES - mel.shape[1]))

    def close(self) -> None:
        self.store.close()


__all__ = ["FrameStore", "StreamedLogMel"]
