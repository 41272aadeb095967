"""``WhisperModel``: weights + tokenizer + transcription in one object (faster-whisper's shape).

    model = WhisperModel("base")                            # or "tiny.en", or a checkpoint path
    segments, info = model.transcribe("clip.wav", beam_size=5)
    print(info.language, [s.text for s in segments])        # segments is a lazy generator
    results = model.transcribe_batch(["a.wav", "b.mp3"], batch_size=8)   # [(segments, info)] in input order
    model.transcribe_dict("clip.wav")                       # openai-whisper's result dict
    scheduler = model.scheduler(batch_size=8)               # streams added at any time, events as they come
    segments, info = model.transcribe("hour.mp3", chunking="vad", batch_size=16)   # VAD chunks decoded in parallel
    model = WhisperModel("base", weight_only_precision="int8", int8_kv_cache=True)  # quantized (see model/quant.py)
    model.save("base_int8.safetensors")                     # WhisperModel("base_int8.safetensors") loads it back

Every transcription method takes ``options=TranscriptionOptions(...)`` or its fields as keywords (openai-whisper's
names and defaults; ``inspect.signature`` lists them), plus the per-call ``language`` and ``initial_prompt``,
and ``chunking`` / ``vad_filter`` / ``vad_options`` (``chunked``: voice activity detection for long files).
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Iterator, Optional, Sequence, Union

import torch

from .calibration import calibrated_state_dict, calibration_windows
from .chunked import make_scheduler
from .encoding import Audio, WhisperEncoding
from .errors import CheckpointError, OptionError
from .io import weights
from .io.alignment_heads import read_alignment_heads
from .io.quantized import find_quantized, load_quantized, quantized_vocab_dir, recorded_quantization, save_quantized
from .io.tokenizer import Tokenizer, get_tokenizer
from .io.vad import VadOptions
from .io.vocab import checkpoint_vocab_dir, find_vocab_file, vocab_name
from .longform import detect_languages, load_mel
from .model import Whisper, check_quantization
from .options import TranscriptionOptions, option_keywords
from .scheduler import ProgressCallback
from .transcribe import (
    BatchItem,
    Segment,
    TranscriptionInfo,
    iter_transcribe_batch,
    result_dict,
    transcribe,
    transcribe_batch,
)


class WhisperModel:
    """A Whisper model ready to transcribe.

    ``name_or_path``: a bundled name ("tiny.en", "base") or a checkpoint (see ``weights.load_checkpoint``), or a
    quantized checkpoint (``save``; ``io.quantized``); ``device``: default "cuda" when available, else "cpu";
    ``dtype``: default float16 on CUDA, float32 on CPU. ``weight_only_precision`` ("int8" / "int4", int4 in groups
    of ``weight_only_group_size`` input features, default 128): quantize the weights at load (a quantized
    checkpoint is loaded as it is; a different precision is an ``OptionError``); ``calibration_audio`` (files or
    16 kHz arrays, with ``weight_only_precision``): round the weights by GPTQ on what the float model computes
    over that audio instead of to nearest (``calibration.py``; ``save`` keeps the result); ``int8_kv_cache``: the
    decoder's K/V caches in int8 (see ``model/quant.py``).
    """

    def __init__(self, name_or_path: Union[str, os.PathLike] = "tiny.en", *, device=None,
                 dtype: Optional[torch.dtype] = None, weight_only_precision: Optional[str] = None,
                 int8_kv_cache: bool = False, weight_only_group_size: Optional[int] = None,
                 calibration_audio: Optional[Sequence[Audio]] = None):
        check_quantization(None, weight_only_precision, weight_only_group_size, int8_kv_cache)  # before loading
        if calibration_audio is not None and weight_only_precision is None:
            raise OptionError("calibration_audio calibrates quantized weights: give weight_only_precision too")
        windows = None if calibration_audio is None else calibration_windows(calibration_audio)
        device = torch.device(device if device is not None else ("cuda" if torch.cuda.is_available() else "cpu"))
        if dtype is None:
            dtype = torch.float16 if device.type == "cuda" else torch.float32
        dims, state_dict, recorded, heads, vocab_dir = _read_checkpoint(name_or_path)
        if recorded is not None:  # a quantized checkpoint: its own precision and group size
            if windows is not None:
                raise OptionError(f"calibration_audio: {name_or_path} holds quantized weights already; calibrate "
                                  f"from its float checkpoint")
            weight_only_precision, weight_only_group_size = recorded_quantization(
                name_or_path, recorded, weight_only_precision, weight_only_group_size)
        if windows is not None:
            state_dict = _calibrated(dims, state_dict, vocab_dir, windows, weight_only_precision,
                                     check_quantization(dims, weight_only_precision, weight_only_group_size).group_size,
                                     device, dtype)
        try:
            model = Whisper.from_state_dict(dims, state_dict, dtype=dtype, device=device,
                                            weight_only_precision=weight_only_precision,
                                            weight_only_group_size=weight_only_group_size, int8_kv_cache=int8_kv_cache)
        except ValueError as e:
            if recorded is None or isinstance(e, OptionError):
                raise
            raise CheckpointError(f"{name_or_path}: {e}") from e
        model.alignment_heads = heads
        self._setup(model, vocab_dir)

    @classmethod
    def from_engine(cls, engine_dir: Union[str, os.PathLike], *, device="cuda", **overrides) -> "WhisperModel":
        """The fast path (``fast.engine.load_engine``): what ``python -m whisper_model.build`` wrote, with the
        quantization recorded there (``int8_kv_cache=`` overrides the engine's cache format)."""
        from .fast.engine import load_engine

        self = cls.__new__(cls)
        try:
            engine = load_engine(engine_dir, device=device, **overrides)
        except (CheckpointError, OptionError):
            raise
        except (ValueError, OSError) as e:
            raise CheckpointError(str(e)) from e
        self._setup(engine, checkpoint_vocab_dir(engine_dir, vocab_name(engine.is_multilingual)))
        return self

    def _setup(self, model, vocab_dir: Optional[Path]) -> None:
        """``vocab_dir``: the checkpoint's own vocabulary, if it has one (else openai-whisper's installed assets)."""
        self.model = model
        self.dims = model.dims
        self._vocab_dir = vocab_dir
        self.tokenizer: Tokenizer = get_tokenizer(model.is_multilingual, num_languages=model.num_languages,
                                                  vocab_path=vocab_dir)
        self.encoding = WhisperEncoding(model)

    def accelerate(self, max_batch_size: int = 1, max_beam_width: int = 1) -> "WhisperModel":
        """Run on the fast path from now on (``fast.engine.accelerate``: Triton kernels + CUDA graphs, rows for
        ``max_batch_size`` audios of ``max_beam_width`` beams or samples each; the weights are shared); returns
        ``self``."""
        from .fast.engine import accelerate

        self.model = accelerate(self.model, max_batch_size=max_batch_size, max_beam_width=max_beam_width)
        self.encoding = WhisperEncoding(self.model)
        return self

    @property
    def device(self) -> torch.device:
        return self.model.device

    @property
    def dtype(self) -> torch.dtype:
        return self.model.dtype

    @property
    def is_multilingual(self) -> bool:
        return self.model.is_multilingual

    @option_keywords
    def transcribe(self, audio: Audio, *, options: Optional[TranscriptionOptions] = None,
                   language: Optional[str] = None, initial_prompt: Optional[str] = None,
                   progress: bool = False, chunking: str = "none", vad_filter: bool = False,
                   vad_options: Optional[VadOptions] = None,
                   batch_size: int = 8) -> tuple[Iterator[Segment], TranscriptionInfo]:
        """``(segments, info)``: segments is a lazy generator (see ``transcribe.transcribe``; ``chunking="vad"``:
        the audio's speech chunks decoded ``batch_size`` at a time)."""
        return transcribe(self.model, audio, options=options, language=language, initial_prompt=initial_prompt,
                          tokenizer=self.tokenizer, progress=progress, chunking=chunking, vad_filter=vad_filter,
                          vad_options=vad_options, batch_size=batch_size)

    @option_keywords
    def transcribe_batch(self, audios: Sequence[Audio], *, options: Optional[TranscriptionOptions] = None,
                         batch_size: int = 8, language: Optional[str] = None, initial_prompt: Optional[str] = None,
                         progress: bool = False, chunking: str = "none", vad_filter: bool = False,
                         vad_options: Optional[VadOptions] = None) -> list[tuple[list[Segment], TranscriptionInfo]]:
        """``(segments, info)`` per audio, in input order: ``batch_size`` audios of any length decoded together
        (see ``transcribe.transcribe_batch``)."""
        return transcribe_batch(self.model, audios, options=options, batch_size=batch_size, language=language,
                                initial_prompt=initial_prompt, tokenizer=self.tokenizer, progress=progress,
                                chunking=chunking, vad_filter=vad_filter, vad_options=vad_options)

    @option_keywords
    def iter_transcribe_batch(self, audios: Sequence[Audio], *, options: Optional[TranscriptionOptions] = None,
                              batch_size: int = 8, language: Optional[str] = None,
                              initial_prompt: Optional[str] = None, progress: bool = False, chunking: str = "none",
                              vad_filter: bool = False, vad_options: Optional[VadOptions] = None,
                              ) -> Iterator[BatchItem]:
        """One ``BatchItem`` per audio as each completes; an audio that fails to load gives its error and the
        others go on (see ``transcribe.iter_transcribe_batch``)."""
        return iter_transcribe_batch(self.model, audios, options=options, batch_size=batch_size, language=language,
                                     initial_prompt=initial_prompt, tokenizer=self.tokenizer, progress=progress,
                                     chunking=chunking, vad_filter=vad_filter, vad_options=vad_options)

    @option_keywords
    def transcribe_dict(self, audio: Audio, *, options: Optional[TranscriptionOptions] = None,
                        language: Optional[str] = None, initial_prompt: Optional[str] = None,
                        progress: bool = False, chunking: str = "none", vad_filter: bool = False,
                        vad_options: Optional[VadOptions] = None, batch_size: int = 8) -> dict:
        """openai-whisper's result dict: {"text", "segments", "language"}."""
        return result_dict(*self.transcribe(audio, options=options, language=language,
                                            initial_prompt=initial_prompt, progress=progress, chunking=chunking,
                                            vad_filter=vad_filter, vad_options=vad_options, batch_size=batch_size))

    def scheduler(self, batch_size: int = 8, *, chunking: str = "none", vad_filter: bool = False,
                  vad_options: Optional[VadOptions] = None, on_progress: Optional[ProgressCallback] = None):
        """A ``scheduler.Scheduler`` on this model: add streams (each with its options, language and prompt) at
        any time and iterate its events. With ``chunking="vad"`` or ``vad_filter=True`` a
        ``chunked.ChunkedScheduler`` (same ``add`` and ``events``): each file's speech chunks are streams, its
        events per file. ``on_progress(stream_id, seconds)``: how far each stream has come, as its windows are
        decoded."""
        return make_scheduler(self.model, batch_size=batch_size, tokenizer=self.tokenizer, chunking=chunking,
                              vad_filter=vad_filter, vad_options=vad_options, on_progress=on_progress)

    def save(self, path: Union[str, os.PathLike]) -> Path:
        """Write the weights as they are held (quantized ones as qweight + scales) to one safetensors file, with
        the dims, quantization and alignment heads, and the tokenizer's vocabulary file beside it;
        ``WhisperModel(path)`` loads it back without re-quantizing."""
        whisper = self.model if isinstance(self.model, Whisper) else self.model.model  # an engine's modules
        vocab_file = find_vocab_file(vocab_name(self.is_multilingual), self._vocab_dir)
        return save_quantized(path, whisper.dims, whisper.state_dict(), whisper.quantization.to_dict(),
                              whisper.alignment_heads, vocab_file)

    @staticmethod
    def result_dict(segments, info: TranscriptionInfo) -> dict:
        return result_dict(segments, info)

    def detect_language(self, audio: Audio) -> tuple[str, float, dict[str, float]]:
        """Language of the first 30 s: ``(code, probability, {code: probability})`` (``AudioError`` when the audio
        cannot be loaded; ValueError on an English-only model)."""
        (probs,), _ = detect_languages(self.model, self.encoding, [load_mel(self.encoding, audio)], self.tokenizer)
        language = max(probs, key=probs.get)
        return language, probs[language], probs


def _read_checkpoint(name_or_path):
    """(dims, state dict, recorded quantization or None, alignment heads, vocabulary directory or None)."""
    try:
        quantized = find_quantized(name_or_path)
        if quantized is not None:
            dims, state_dict, recorded, heads = load_quantized(quantized)
            return dims, state_dict, recorded, heads, quantized_vocab_dir(quantized, dims)
        dims, state_dict = weights.load_checkpoint(name_or_path)
        vocab_dir = checkpoint_vocab_dir(name_or_path, vocab_name(dims.is_multilingual))
        return dims, state_dict, None, read_alignment_heads(name_or_path, dims), vocab_dir
    except CheckpointError:  # "not a Whisper checkpoint: <path>: <why>", or an unknown name
        raise
    except (ValueError, OSError) as e:  # not found, unreadable
        raise CheckpointError(str(e)) from e


def _calibrated(dims, state_dict, vocab_dir, windows, precision: str, group_size: Optional[int], device, dtype):
    """A quantized state dict rounded by GPTQ (``calibration.py``) on the float32 model's run over ``windows``."""
    float_model = WhisperModel.__new__(WhisperModel)
    float_model._setup(Whisper.from_state_dict(dims, state_dict, dtype=torch.float32, device=device), vocab_dir)
    return calibrated_state_dict(float_model, windows, precision, group_size, dtype)


__all__ = ["BatchItem", "Segment", "TranscriptionInfo", "TranscriptionOptions", "WhisperModel"]
