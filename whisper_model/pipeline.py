"""``WhisperModel``: weights + tokenizer + transcription in one object (faster-whisper's shape).

    model = WhisperModel("base")                            # or "tiny.en", or a checkpoint path
    segments, info = model.transcribe("clip.wav", beam_size=5)
    print(info.language, [s.text for s in segments])        # segments is a lazy generator
    results = model.transcribe_batch(["a.wav", "b.mp3"], batch_size=8)   # [(segments, info)] in input order
    model.transcribe_dict("clip.wav")                       # openai-whisper's result dict
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Iterator, Optional, Sequence, Union

import torch

from . import weights
from .batch import BatchItem, iter_transcribe_batch, transcribe_batch
from .decoding import detect_language
from .encoding import Audio, WhisperEncoding
from .model import Whisper
from .tokenizer import Tokenizer, get_tokenizer
from .transcribe import Segment, TranscriptionInfo, result_dict, transcribe


def _vocab_dir(directory: Optional[Path], multilingual: bool) -> Optional[Path]:
    """The checkpoint's own vocabulary (CTranslate2 vocabulary.txt or a .tiktoken file), if it has one."""
    name = "multilingual" if multilingual else "gpt2"
    if directory is not None and any((directory / f).is_file() for f in ("vocabulary.txt", f"{name}.tiktoken")):
        return directory
    return None  # openai-whisper's installed assets/


class WhisperModel:
    """A Whisper model ready to transcribe.

    ``name_or_path``: a bundled name ("tiny.en", "base") or a checkpoint (see ``weights.load_checkpoint``);
    ``device``: default "cuda" when available, else "cpu"; ``dtype``: default float16 on CUDA, float32 on CPU.
    """

    def __init__(self, name_or_path: Union[str, os.PathLike] = "tiny.en", *, device=None,
                 dtype: Optional[torch.dtype] = None):
        device = torch.device(device if device is not None else ("cuda" if torch.cuda.is_available() else "cpu"))
        if dtype is None:
            dtype = torch.float16 if device.type == "cuda" else torch.float32
        dims, state_dict = weights.load_checkpoint(name_or_path)
        model = Whisper.from_state_dict(dims, state_dict, dtype=dtype, device=device)
        self._setup(model, weights.model_dir_for_tokenizer(name_or_path))

    @classmethod
    def from_engine(cls, engine_dir: Union[str, os.PathLike], *, device="cuda", **overrides) -> "WhisperModel":
        """The fast path (``engine.load_engine``): what ``python -m whisper_model.build`` wrote."""
        from .engine import load_engine

        self = cls.__new__(cls)
        self._setup(load_engine(engine_dir, device=device, **overrides), Path(engine_dir))
        return self

    def _setup(self, model, vocab_dir: Optional[Path]) -> None:
        self.model = model
        self.dims = model.dims
        self.tokenizer: Tokenizer = get_tokenizer(model.is_multilingual, num_languages=model.num_languages,
                                                  vocab_path=_vocab_dir(vocab_dir, model.is_multilingual))
        self.encoding = WhisperEncoding(model)

    @property
    def device(self) -> torch.device:
        return self.model.device

    @property
    def dtype(self) -> torch.dtype:
        return self.model.dtype

    @property
    def is_multilingual(self) -> bool:
        return self.model.is_multilingual

    def transcribe(self, audio: Audio, **options):
        """``(segments, info)``: see ``transcribe.transcribe`` for the options; segments is a lazy generator."""
        return transcribe(self.model, audio, tokenizer=self.tokenizer, **options)

    def transcribe_batch(self, audios: Sequence[Audio], *, batch_size: int = 8, progress: bool = False,
                         **options) -> list[tuple[list[Segment], TranscriptionInfo]]:
        """``(segments, info)`` per audio, in input order: ``batch_size`` audios of any length decoded together
        (see ``batch.transcribe_batch``; the options are ``transcribe``'s)."""
        return transcribe_batch(self.model, audios, batch_size=batch_size, tokenizer=self.tokenizer,
                                progress=progress, **options)

    def iter_transcribe_batch(self, audios: Sequence[Audio], *, batch_size: int = 8, progress: bool = False,
                              **options) -> Iterator[BatchItem]:
        """One ``BatchItem`` per audio as each completes; an audio that fails to load gives its error and the
        others go on (see ``batch.iter_transcribe_batch``)."""
        return iter_transcribe_batch(self.model, audios, batch_size=batch_size, tokenizer=self.tokenizer,
                                     progress=progress, **options)

    def transcribe_dict(self, audio: Audio, **options) -> dict:
        """openai-whisper's result dict: {"text", "segments", "language"}."""
        segments, info = self.transcribe(audio, **options)
        return result_dict(segments, info)

    @staticmethod
    def result_dict(segments, info: TranscriptionInfo) -> dict:
        return result_dict(segments, info)

    def detect_language(self, audio: Audio) -> tuple[str, float, dict[str, float]]:
        """Language of the first 30 s: ``(code, probability, {code: probability})``."""
        mel = self.encoding.log_mel(audio)
        features = self.encoding.encode(self.encoding.window(mel, 0)[None])
        _, (probs,) = detect_language(self.model, features, self.tokenizer)
        language = max(probs, key=probs.get)
        return language, probs[language], probs


__all__ = ["BatchItem", "Segment", "TranscriptionInfo", "WhisperModel"]
