"""A model spec -> a ready model, by one rule for every front end (command line, server, Ray workers).

    spec = ModelSpec("base", device=None)            # CUDA here: float16 and the fast path; the CPU: float32
    model = load_model(spec)                         # a WhisperModel; CheckpointError / OptionError when it cannot be

The rule: ``device`` None is ``cuda`` when this machine has one, else ``cpu``. ``dtype`` None is float16 on CUDA
(unless ``fp16`` is False) and float32 on the CPU; a given ``dtype`` decides. On CUDA the model runs on the fast
path (``fast.engine.accelerate``: Triton kernels + CUDA graphs, sized for ``max_batch_size`` x ``max_beam_width``
rows) unless ``fast`` is False; ``engine_dir`` (what ``python -m whisper_model.build`` wrote) is the fast path
already. ``warm`` (a server): the fast path captures its graphs for every batch size at load, so no request
waits on a capture. Errors name the options as the front ends' flags (``--device``, ``--dtype``, ``--fp16``).
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import torch

from ..errors import OptionError
from ..io.tokenizer import normalize_language
from ..pipeline import WhisperModel

OPENAI_FILES = {"large": "large-v3", "turbo": "large-v3-turbo"}  # openai-whisper's names for its .pt files
DTYPES = ("float32", "float16", "bfloat16")


@dataclass(frozen=True)
class ModelSpec:
    """What to load: ``model`` (a bundled name, a checkpoint path, or a name in ``model_dir``) or ``engine_dir``;
    where and how (see the module's docstring); ``weight_only_precision`` / ``int8_kv_cache``: quantization
    (``model/quant.py``)."""

    model: str = "tiny.en"
    model_dir: Optional[str] = None
    engine_dir: Optional[str] = None
    device: Optional[str] = None
    dtype: Optional[str] = None
    fp16: bool = True
    fast: Optional[bool] = None
    weight_only_precision: Optional[str] = None
    int8_kv_cache: bool = False
    max_batch_size: int = 1
    max_beam_width: int = 1
    warm: bool = False  # fast path: capture every batch size's graphs at load (a server), not while serving

    @property
    def resolved_device(self) -> str:
        return resolve_device(self.device)

    @property
    def resolved_dtype(self) -> str:
        return resolve_dtype(self.resolved_device, self.dtype, self.fp16)


def resolve_device(device: Optional[str]) -> str:
    """``device``, checked (``check_device``); None: cuda when this machine has one, else cpu."""
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    check_device(device)
    return device


def check_device(device: str) -> None:
    """OptionError unless ``device`` is the CPU or a CUDA device this machine has."""
    try:
        dev = torch.device(device)
    except RuntimeError:
        raise OptionError(f"--device {device}: not a device; use cpu, cuda or cuda:N") from None
    if dev.type not in ("cpu", "cuda"):
        raise OptionError(f"--device {device}: only cpu and cuda are supported")
    if dev.type == "cuda" and not torch.cuda.is_available():
        why = "no GPU is visible" if torch.version.cuda else f"torch {torch.__version__} is built without CUDA"
        raise OptionError(f"--device {device}: CUDA is not available on this machine ({why}); use --device cpu")
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        raise OptionError(f"--device {device}: this machine has {torch.cuda.device_count()} CUDA device(s)")


def resolve_dtype(device: str, dtype: Optional[str], fp16: bool = True) -> str:
    """``dtype`` when given (``fp16`` False with another dtype than float32 is an ``OptionError``), else float16
    on CUDA with ``fp16`` (openai-whisper's rule), else float32."""
    if dtype is not None:
        if dtype not in DTYPES:
            raise OptionError(f"--dtype {dtype}: expected one of {', '.join(DTYPES)}")
        if not fp16 and dtype != "float32":
            raise OptionError(f"--fp16 False contradicts --dtype {dtype}")
        return dtype
    return "float16" if fp16 and torch.device(device).type == "cuda" else "float32"


def default_model_dir() -> Path:
    """Where openai-whisper keeps its models: $XDG_CACHE_HOME/whisper, else ~/.cache/whisper."""
    return Path(os.getenv("XDG_CACHE_HOME", Path.home() / ".cache")) / "whisper"


def model_source(model: str, model_dir: Optional[str]) -> str:
    """``model`` as a path when it names a checkpoint in ``model_dir`` (``<name>`` or openai-whisper's
    ``<name>.pt``), else as given (a path, or a bundled name)."""
    if Path(model).expanduser().exists():
        return model
    folder = Path(model_dir).expanduser() if model_dir else default_model_dir()
    for candidate in (folder / model, folder / f"{OPENAI_FILES.get(model, model)}.pt"):
        if candidate.exists():
            return str(candidate)
    return model


def load_model(spec: ModelSpec) -> WhisperModel:
    """The model of ``spec``, ready (see the module's docstring): ``CheckpointError`` when the weights cannot be
    read, ``OptionError`` for a device, dtype or quantization that cannot be used."""
    device = spec.resolved_device
    quant = dict(weight_only_precision=spec.weight_only_precision) if spec.weight_only_precision else {}
    if spec.engine_dir:  # the engine's recorded dtype and quantization; int8_kv_cache turns its caches int8
        model = WhisperModel.from_engine(spec.engine_dir, device=device, **quant,
                                         **(dict(int8_kv_cache=True) if spec.int8_kv_cache else {}))
    else:
        model = WhisperModel(model_source(spec.model, spec.model_dir), device=device,
                             dtype=getattr(torch, spec.resolved_dtype), int8_kv_cache=spec.int8_kv_cache, **quant)
        if torch.device(device).type == "cuda" and spec.fast is not False:
            model.accelerate(max_batch_size=spec.max_batch_size, max_beam_width=spec.max_beam_width)
    if spec.warm:
        warm_up(model.model, model.tokenizer)
    return model


def warm_up(model, tokenizer) -> Optional[float]:
    """The fast path's graphs captured now (``AcceleratedWhisper.warm_up``: every row bucket of the engine, the sot
    prompts with and without timestamps, the one-token steps, the encoder's graph sizes): seconds taken; None for
    a model without graphs (the eager modules)."""
    from ..fast.engine import AcceleratedWhisper

    if not isinstance(model, AcceleratedWhisper):
        return None
    n_sot = len(tokenizer.sot_sequence)
    return model.warm_up(prompt_lens=(n_sot, n_sot + 1))


def english_only_language(language: Optional[str], multilingual: bool,
                          label: str) -> tuple[Optional[str], Optional[str]]:
    """The language to transcribe with, and a warning when an English-only model (``label``) was given another
    one: it uses English."""
    if language is not None and not multilingual and normalize_language(language) != "en":
        return "en", (f"warning: {label} is an English-only model but got --language {language}; using English "
                      "instead")
    return language, None


__all__ = ["DTYPES", "ModelSpec", "check_device", "default_model_dir", "english_only_language", "load_model",
           "model_source", "resolve_device", "resolve_dtype", "warm_up"]
