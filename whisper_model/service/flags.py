"""The options the front ends share, in one table: the command line's (and so the Ray job's) flags, the server's
flags and its form fields are made from ``OPTIONS``, each front end giving its own defaults and help where they
differ (``add_options(parser, names, defaults=..., help=...)``).

    add_options(parser, ["model", "device", "batch_size"], defaults={"batch_size": 16})
    form_value("vad_filter", "true")             # True: a form field read as its flag is
"""
from __future__ import annotations

import argparse
from dataclasses import dataclass
from typing import Callable, Optional, Sequence

from ..chunked import CHUNKINGS
from .loading import DTYPES

BOOL = "{True,False}"
CHUNK_BATCH = 16  # --batch_size with --chunking vad when not given
TRUE_FALSE = {"true": True, "false": False, "1": True, "0": False, "yes": True, "no": False}


def str2bool(value: str) -> bool:
    if value.lower() not in TRUE_FALSE:
        raise argparse.ArgumentTypeError(f"expected True or False, got {value!r}")
    return TRUE_FALSE[value.lower()]


def optional_bool(value: str) -> Optional[bool]:
    return None if value == "None" else str2bool(value)


def optional_int(value: str) -> Optional[int]:
    return None if value == "None" else int(value)


def optional_float(value: str) -> Optional[float]:
    return None if value == "None" else float(value)


def default_batch_size(chunking: str) -> int:
    """``--batch_size`` when not given: the chunks of ``CHUNK_BATCH`` files with ``--chunking vad``, else 1."""
    return CHUNK_BATCH if chunking == "vad" else 1


@dataclass(frozen=True)
class Option:
    """One option: its flag ``--name`` (a switch when ``switch``), how its text is read (``type``, ``choices``),
    its default and help."""
    name: str
    help: str
    type: Optional[Callable[[str], object]] = None
    default: object = None
    choices: Optional[tuple] = None
    metavar: Optional[str] = None
    switch: bool = False

    def parse(self, text: str):
        """A form field's text as the flag reads it; ``ValueError`` saying what was expected."""
        try:
            value = self.type(text) if self.type is not None else text
        except (ValueError, argparse.ArgumentTypeError) as e:
            kind = {int: "an integer", optional_int: "an integer or None", float: "a number"}.get(self.type)
            raise ValueError(f"{self.name} must be {kind}, got {text!r}" if kind else f"{self.name}: {e}") from None
        if self.choices is not None and value not in self.choices:
            raise ValueError(f"{self.name} must be one of {', '.join(self.choices)}, got {text!r}")
        return value


OPTIONS = {o.name: o for o in (
    Option("model", "model name (bundled: tiny.en, base; other names are read from --model_dir) or a checkpoint: an "
           "openai-whisper .pt file, a Hugging Face directory or a CTranslate2 directory", default="tiny.en"),
    Option("model_dir", "where models are found by name, as openai-whisper stores them (<model_dir>/<name>.pt) "
           "(default: None: ~/.cache/whisper when the file is there)"),
    Option("engine_dir", "an engine built by whisper_model.build, in place of --model (default: None: no engine)"),
    Option("device", "device to run on: cpu, cuda or cuda:N (default: None: cuda when there is one)"),
    Option("dtype", "weights and activations dtype (default: None: float16 on CUDA, float32 on the CPU)",
           choices=DTYPES),
    Option("eager", "on CUDA, run the eager modules instead of the fast path (Triton kernels + CUDA graphs, the "
           "default there)", default=False, switch=True),
    Option("batch_size", "windows decoded together: of that many files (default: None: 1, one file after the "
           "other), or with --chunking vad of that many speech chunks of any of the files (default: None: "
           f"{CHUNK_BATCH})", type=int),
    Option("threads", "number of threads torch uses on the CPU (0: torch's default); supersedes "
           "MKL_NUM_THREADS/OMP_NUM_THREADS", type=optional_int, default=0),
    Option("beam_size", "number of beams in beam search, only applicable when temperature is zero (None: greedy)",
           type=optional_int, default=5),
    Option("chunking", "none: openai-whisper's sequential 30 s windows, each prompted with the text before it; "
           "vad: cut each file at speech pauses (Silero VAD) into chunks of at most 30 s decoded in parallel "
           "(--batch_size), each WITHOUT the previous chunk's text as prompt (--initial_prompt still applies to "
           "every chunk); silence, music and noise between chunks are not decoded", default="none",
           choices=CHUNKINGS),
    Option("vad_filter", "sequential decoding of the speech only: pauses of 2 s or more (Silero VAD) are removed "
           "before transcribing, times stay on the file's timeline (faster-whisper's vad_filter); not with "
           "--chunking vad", type=str2bool, default=False, metavar=BOOL),
    Option("weight_only_precision", "quantize the weights at load: int8 per output channel, int4 in groups of 128 "
           "input features (default: None: the checkpoint's; an engine or a quantized checkpoint keeps the "
           "precision it was saved with)", choices=("int8", "int4")),
    Option("int8_kv_cache", "hold the decoder's self and cross K/V caches in int8 (one scale per token and head)",
           default=False, switch=True),
)}


def add_options(parser, names: Sequence[str], *, defaults: Optional[dict] = None,
                help: Optional[dict] = None) -> None:
    """``--name`` for each of ``names`` on ``parser`` (an ``ArgumentParser`` or a group), with a front end's own
    ``defaults`` and ``help`` texts where they differ from the table's."""
    defaults, help = defaults or {}, help or {}
    for name in names:
        option = OPTIONS[name]
        kwargs = dict(help=help.get(name, option.help), default=defaults.get(name, option.default))
        if option.switch:
            kwargs["action"] = "store_true"
        else:
            kwargs.update(type=option.type, choices=option.choices, metavar=option.metavar)
        parser.add_argument(f"--{name}", **{k: v for k, v in kwargs.items() if v is not None or k == "default"})


def form_value(name: str, text: str):
    """The form field ``name`` read as its flag is (``Option.parse``)."""
    return OPTIONS[name].parse(text)


__all__ = ["BOOL", "CHUNK_BATCH", "OPTIONS", "Option", "TRUE_FALSE", "add_options", "default_batch_size",
           "form_value", "optional_bool", "optional_float", "optional_int", "str2bool"]
