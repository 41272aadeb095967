"""Audio to encoder states: samples -> log-mel -> 30 s windows -> ``[n_windows, n_audio_ctx, n_audio_state]``.

    enc = WhisperEncoding(model)
    mel = enc.log_mel("clip.wav")                       # [n_mels, n_frames + N_FRAMES] (30 s of silence appended)
    x = enc.encode(enc.window(mel, 0, 2000)[None])      # [1, n_audio_ctx, n_audio_state]
"""
from __future__ import annotations

import os
from typing import Union

import numpy as np
import torch

from .io.audio import N_FRAMES, N_SAMPLES, load_audio, log_mel_spectrogram, pad_or_trim

Audio = Union[str, os.PathLike, bytes, np.ndarray, torch.Tensor]


def load_samples(audio: Audio) -> Union[np.ndarray, torch.Tensor]:
    """A path / file bytes (decoded to 16 kHz mono), or samples already at 16 kHz mono [n]."""
    if isinstance(audio, (np.ndarray, torch.Tensor)):
        if audio.ndim != 1:
            raise ValueError(f"audio samples must be 16 kHz mono with shape [n], got shape {tuple(audio.shape)}")
        return audio
    if isinstance(audio, (str, os.PathLike, bytes, bytearray)) or hasattr(audio, "read"):
        return load_audio(audio)
    raise ValueError(f"audio must be a path, bytes, a file object, or a 1-D numpy/torch array of samples, "
                     f"got {type(audio).__name__}")


class WhisperEncoding:
    """The encoder side of ``model`` (``Whisper`` or an accelerated wrapper with the same interface)."""

    def __init__(self, model):
        self.model = model
        self.n_mels = model.dims.n_mels

    def log_mel(self, audio: Audio, padding: int = N_SAMPLES) -> torch.Tensor:
        """Log-mel [n_mels, (n + padding) // HOP_LENGTH] of the samples followed by ``padding`` zeros,
        computed on the model's device."""
        return log_mel_spectrogram(load_samples(audio), self.n_mels, padding=padding, device=self.model.device)

    @staticmethod
    def window(mel: torch.Tensor, start: int, n_frames: int = N_FRAMES) -> torch.Tensor:
        """Frames [start, start + n_frames) of mel [n_mels, T], zero-padded (in the log-mel domain) to N_FRAMES."""
        return pad_or_trim(mel[:, start: start + n_frames], N_FRAMES)

    @torch.no_grad()
    def encode(self, mel_windows: torch.Tensor) -> torch.Tensor:
        """mel [b, n_mels, N_FRAMES] -> encoder states [b, n_audio_ctx, n_audio_state] (the model's dtype)."""
        return self.model.embed_audio(mel_windows.to(self.model.device))
