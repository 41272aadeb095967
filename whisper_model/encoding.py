"""Audio to encoder states: samples -> log-mel -> 30 s windows -> ``[n_windows, n_audio_ctx, n_audio_state]``.

    enc = WhisperEncoding(model)
    mel = enc.stream_mel("clip.wav")                    # computed block by block, read back a window at a time
    x = enc.encode(mel.window(0, 2000)[None])           # [1, n_audio_ctx, n_audio_state]
    whole = enc.log_mel("clip.wav")                     # the whole-file reference: [n_mels, n_frames + N_FRAMES]
    assert torch.allclose(enc.window(whole, 0, 2000), mel.window(0, 2000), atol=1e-6)
"""
from __future__ import annotations

import os
from typing import Iterator, Union

import numpy as np
import torch

from .io.audio import N_FRAMES, N_SAMPLES, iter_audio, load_audio, log_mel_spectrogram, pad_or_trim
from .io.mel_stream import StreamedLogMel

Audio = Union[str, os.PathLike, bytes, np.ndarray, torch.Tensor]


def _is_file(audio: Audio) -> bool:
    """Whether ``audio`` is something to decode (a path, file bytes, a file object); ValueError for what is
    neither that nor 16 kHz mono samples [n]."""
    if isinstance(audio, (np.ndarray, torch.Tensor)):
        if audio.ndim != 1:
            raise ValueError(f"audio samples must be 16 kHz mono with shape [n], got shape {tuple(audio.shape)}")
        return False
    if isinstance(audio, (str, os.PathLike, bytes, bytearray)) or hasattr(audio, "read"):
        return True
    raise ValueError(f"audio must be a path, bytes, a file object, or a 1-D numpy/torch array of samples, "
                     f"got {type(audio).__name__}")


def load_samples(audio: Audio) -> Union[np.ndarray, torch.Tensor]:
    """A path / file bytes (decoded to 16 kHz mono), or samples already at 16 kHz mono [n]."""
    return load_audio(audio) if _is_file(audio) else audio


def sample_blocks(audio: Audio, block: int = N_SAMPLES) -> Iterator[np.ndarray]:
    """``audio``'s 16 kHz mono samples in order, ``block`` at a time (the last one shorter): a file is decoded
    as it is read (``io.audio.iter_audio``), never whole."""
    if _is_file(audio):
        yield from iter_audio(audio, block=block)
        return
    samples = audio.detach().cpu().float().numpy() if isinstance(audio, torch.Tensor) else audio
    for start in range(0, samples.shape[0], block):
        yield samples[start: start + block]


class WhisperEncoding:
    """The encoder side of ``model`` (``Whisper`` or an accelerated wrapper with the same interface)."""

    def __init__(self, model):
        self.model = model
        self.n_mels = model.dims.n_mels

    def log_mel(self, audio: Audio, padding: int = N_SAMPLES) -> torch.Tensor:
        """Log-mel [n_mels, (n + padding) // HOP_LENGTH] of the samples followed by ``padding`` zeros,
        computed on the model's device."""
        return log_mel_spectrogram(load_samples(audio), self.n_mels, padding=padding, device=self.model.device)

    def stream_mel(self, audio: Audio) -> StreamedLogMel:
        """The log-mel of ``audio`` computed block by block on the model's device (``io.mel_stream``: bounded
        memory at any length), its windows equal to ``window(log_mel(audio), ...)``'s."""
        return StreamedLogMel(sample_blocks(audio), self.n_mels, device=self.model.device)

    @staticmethod
    def window(mel: torch.Tensor, start: int, n_frames: int = N_FRAMES) -> torch.Tensor:
        """Frames [start, start + n_frames) of mel [n_mels, T], zero-padded (in the log-mel domain) to N_FRAMES."""
        return pad_or_trim(mel[:, start: start + n_frames], N_FRAMES)

    @torch.no_grad()
    def encode(self, mel_windows: torch.Tensor) -> torch.Tensor:
        """mel [b, n_mels, N_FRAMES] -> encoder states [b, n_audio_ctx, n_audio_state] (the model's dtype)."""
        return self.model.embed_audio(mel_windows.to(self.model.device))
