"""The command line's flags: openai-whisper's ``whisper`` (names, short forms, types, defaults, meaning), plus ours.

openai-whisper's word-level flags are here: ``--word_timestamps`` with ``--prepend_punctuations`` /
``--append_punctuations`` and ``--hallucination_silence_threshold``, the srt/vtt flags that need it
(``--highlight_words``, ``--max_line_width``, ``--max_line_count``, ``--max_words_per_line``: without
``--word_timestamps True`` a usage error, as openai-whisper's), and ``--clip_timestamps`` (not with VAD).
``--model`` defaults to ``tiny.en`` (openai-whisper's default, turbo, is not bundled). Ours on top:
``--input_file`` (the audio paths again, as older scripts give them), ``--engine_dir``, ``--dtype``, ``--eager``,
``--without_timestamps``, ``--batch_size``, ``--chunking``, ``--vad_filter``, ``--stop_repetition_loops``;
``--language auto`` and ``--verbose None`` are accepted too. The flags the server and the Ray job share come from
``service.flags``' table. A value that cannot work is an ``OptionError`` whose message names the flag.
"""
from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path
from typing import Optional

import numpy as np

from ..errors import OptionError
from ..io.tokenizer import LANGUAGES, TO_LANGUAGE_CODE
from ..decode.timing import APPEND_PUNCTUATIONS, PREPEND_PUNCTUATIONS
from ..io.writers import FORMATS
from ..service.flags import (
    BOOL,
    add_options,
    optional_bool,
    optional_float,
    optional_int,
    str2bool,
)
from ..service.loading import model_source  # noqa: F401 - --model in --model_dir

WRITER_FLAGS = ("highlight_words", "max_line_width", "max_line_count", "max_words_per_line")  # need word timestamps


def language(value: str) -> str | None:
    """A language code or English name (any case) as given; None / auto: detect it."""
    if value.lower() in ("none", "auto"):
        return None
    if value.lower() not in LANGUAGES and value.lower() not in TO_LANGUAGE_CODE:
        raise argparse.ArgumentTypeError(f"unknown language {value!r}: give a code such as en, fr, de, zh or an "
                                         "English name such as French (--help lists the codes)")
    return value


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows ``(default: X)`` after each option's help unless the help says what its default means itself."""

    def _get_help_string(self, action):
        text = action.help or ""
        if "(default:" in text or action.default in (None, argparse.SUPPRESS) or not action.option_strings:
            return text
        return text + " (default: %(default)s)"


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):
        """One line (the usage is 30 lines long: --help shows it), exit status 2."""
        self.exit(2, f"{self.prog}: error: {message}\n")


def prog_name() -> str:
    """``whisper-trtllm`` when run as the installed script, else how ``python -m`` runs it."""
    name = Path(sys.argv[0]).name if sys.argv and sys.argv[0] else ""
    return "python -m whisper_model.run" if name in ("", "run.py", "__main__.py", "-c") else name


def build_parser(*, help: Optional[dict] = None) -> argparse.ArgumentParser:
    """The command line's parser; ``help``: other help texts for some flags ({dest: text}; the Ray job's)."""
    import torch  # here, not at import: a Ctrl-C while torch loads is already handled by main

    p = _Parser(
        prog=prog_name(), formatter_class=_HelpFormatter,
        description="Transcribe or translate audio files and write txt/srt/vtt/tsv/json (openai-whisper's flags).",
        epilog="Exit status: 0 when every input was transcribed; 1 when an input failed or was missing (the others "
               "are still transcribed); 2 for a bad option or a model that cannot be loaded; 130 / 143 when "
               "interrupted by Ctrl-C / SIGTERM (outputs of the inputs already done are kept).")
    p.add_argument("audio", nargs="*", help="audio or video file(s) to transcribe")
    p.add_argument("--input_file", nargs="+", action="extend", default=None, metavar="AUDIO",
                   help="more audio files (the same as the positional paths)")
    add_options(p, ["model", "model_dir", "device"], defaults={"device": "cuda" if torch.cuda.is_available() else "cpu"},
                help={"device": "device to run on: cpu, cuda or cuda:N", **(help or {})})
    p.add_argument("--output_dir", "-o", default=".", help="directory to save the outputs")
    p.add_argument("--output_format", "-f", default="all", choices=FORMATS + ("all",),
                   help="format of the output file(s); all: every format")
    p.add_argument("--verbose", type=optional_bool, default=True, metavar="{True,False,None}",
                   help=(help or {}).get("verbose", "True: print each segment as it is decoded; False: show a "
                                         "progress bar over the audio seconds instead; None: print neither"))
    p.add_argument("--task", default="transcribe", choices=("transcribe", "translate"),
                   help="X->X speech recognition ('transcribe') or X->English translation ('translate')")
    p.add_argument("--language", type=language, default=None, metavar="LANGUAGE", help="language spoken in the "
                   "audio: a code or an English name, any case (default: None, or auto: detect it on the first "
                   f"30 s). Codes: {', '.join(sorted(LANGUAGES))}")
    _decoding_flags(p)
    _word_flags(p)
    _ours(p)
    return p


def _decoding_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--temperature", type=float, default=0, help="temperature to sample with; beam search "
                   "(--beam_size) is used only at temperature 0, --best_of samples above it")
    p.add_argument("--best_of", type=optional_int, default=5, help="number of candidates when sampling with "
                   "non-zero temperature")
    add_options(p, ["beam_size"])
    p.add_argument("--patience", type=optional_float, default=None, help="beam search patience, as in "
                   "https://arxiv.org/abs/2204.05424 (default: None: 1.0, conventional beam search)")
    p.add_argument("--length_penalty", type=optional_float, default=None, help="token length penalty alpha, as "
                   "in https://arxiv.org/abs/1609.08144 (default: None: simple length normalization)")
    p.add_argument("--suppress_tokens", default="-1", help="comma-separated token ids to suppress during "
                   "sampling; -1: most special characters except common punctuation")
    p.add_argument("--initial_prompt", default=None, help="text to provide as a prompt for the first window "
                   "(default: None: no prompt)")
    p.add_argument("--carry_initial_prompt", type=str2bool, metavar=BOOL, default=False,
                   help="prepend --initial_prompt to every window's prompt, not only the first one's (the previous "
                   "text follows it as far as it fits); may weaken --condition_on_previous_text")
    p.add_argument("--condition_on_previous_text", type=str2bool, metavar=BOOL, default=True, action=_Given,
                   help="provide the previous output as a prompt for the next window; False makes the text less "
                   "consistent across windows but less prone to getting stuck in a failure loop; with --chunking "
                   "vad the chunks never see the previous text: giving True there is an error")
    p.add_argument("--fp16", type=str2bool, metavar=BOOL, default=True,
                   help="run in float16 on CUDA (float32 on the CPU); --dtype, when given, decides instead")
    p.add_argument("--temperature_increment_on_fallback", type=optional_float, default=0.2, help="temperature "
                   "to add when a window fails the thresholds below and is decoded again (None: no fallback)")
    p.add_argument("--compression_ratio_threshold", type=optional_float, default=2.4, help="if the gzip "
                   "compression ratio is higher than this value, treat the decoding as failed")
    p.add_argument("--logprob_threshold", type=optional_float, default=-1.0, help="if the average log "
                   "probability is lower than this value, treat the decoding as failed")
    p.add_argument("--no_speech_threshold", type=optional_float, default=0.6, help="if the probability of the "
                   "no-speech token is higher than this value and the decoding failed --logprob_threshold, "
                   "consider the window silence")
    add_options(p, ["threads"])


def _word_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--word_timestamps", type=str2bool, metavar=BOOL, default=False, help="time every word (from the "
                   "cross-attention of the alignment heads) and move the segments' edges onto them; the json then "
                   "lists each segment's words, and srt/vtt can cut and underline them (the flags below)")
    p.add_argument("--prepend_punctuations", default=PREPEND_PUNCTUATIONS, help="with --word_timestamps True: "
                   "these marks are joined to the word after them")
    p.add_argument("--append_punctuations", default=APPEND_PUNCTUATIONS, help="with --word_timestamps True: "
                   "these marks are joined to the word before them")
    p.add_argument("--highlight_words", type=str2bool, metavar=BOOL, default=False, help="(needs --word_timestamps "
                   "True) srt and vtt: underline each word while it is spoken")
    p.add_argument("--max_line_width", type=optional_int, default=None, help="(needs --word_timestamps True) srt "
                   "and vtt: break a line before it grows past this many characters (default: None: one line per "
                   "segment)")
    p.add_argument("--max_line_count", type=optional_int, default=None, help="(needs --word_timestamps True and "
                   "--max_line_width) srt and vtt: at most this many lines in a subtitle, which then no longer "
                   "follows the segments (default: None: a subtitle per segment)")
    p.add_argument("--max_words_per_line", type=optional_int, default=None, help="(needs --word_timestamps True; "
                   "no effect with --max_line_width and --max_line_count) srt and vtt: start a new subtitle after "
                   "this many words of a segment (default: None: no limit)")
    p.add_argument("--clip_timestamps", default="0", help="the parts of each file to transcribe, in seconds: "
                   "start,end,start,end,... (an odd count: the last part runs to the end of the file); 0: the whole "
                   "file; not with --chunking vad or --vad_filter True")
    p.add_argument("--hallucination_silence_threshold", type=optional_float, default=None, help="with "
                   "--word_timestamps True (no effect without it): when a segment looks hallucinated, skip the "
                   "silence around it if longer than this many seconds (default: None: no skipping)")


def check_word_flags(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """openai-whisper's rules for the srt/vtt word flags: without ``--word_timestamps True`` a usage error (exit
    status 2), and a warning (one line on stderr) for a combination where one of them has no effect."""
    if not args.word_timestamps:
        for name in WRITER_FLAGS:
            if getattr(args, name):
                parser.error(f"--{name} requires --word_timestamps True (srt and vtt cut and underline words only "
                             "when the words are timed)")
    for line in word_flag_warnings(args):
        print(line, file=sys.stderr, flush=True)


def word_flag_warnings(args: argparse.Namespace) -> list[str]:
    """The warnings openai-whisper gives for its srt/vtt word flags (the same cases), as lines for a shell user."""
    lines = []
    if args.max_line_count and not args.max_line_width:
        lines.append("warning: --max_line_count has no effect without --max_line_width")
    if args.max_words_per_line and args.max_line_width:
        lines.append("warning: --max_words_per_line has no effect with --max_line_width and --max_line_count"
                     if args.max_line_count else
                     f"warning: --max_words_per_line with --max_line_width: each subtitle still ends after "
                     f"{args.max_words_per_line} words of a segment, and its lines break at {args.max_line_width} "
                     "characters")
    return lines


def _ours(p: argparse.ArgumentParser) -> None:
    add_options(p, ["engine_dir", "dtype", "eager"], help={"dtype": "weights and activations dtype (default: None: "
                                                             "from --fp16 and --device)"})
    p.add_argument("--without_timestamps", action="store_true", help="decode text only (no timestamp tokens)")
    add_options(p, ["batch_size"])
    p.add_argument("--stop_repetition_loops", type=str2bool, metavar=BOOL, default=True, help="end a window's "
                   "decoding as soon as its text repeats one block of tokens (4+ times, 48+ tokens: a loop on noise "
                   "or music) and fall back to the next temperature; False: decode every window to 224 tokens as "
                   "openai-whisper does (the same text wherever no loop occurs)")
    add_options(p, ["chunking", "vad_filter", "weight_only_precision", "int8_kv_cache"])


class _Given(argparse.Action):
    """Stores the value and notes that the flag was given (``args.given``), so that a default can yield to
    another flag while an explicit value cannot."""

    def __call__(self, parser, namespace, values, option_string=None):
        setattr(namespace, self.dest, values)
        namespace.given = getattr(namespace, "given", set()) | {self.dest}


def parse_args(argv: list[str] | None = None, parser: argparse.ArgumentParser | None = None, *,
               inputs: str = "the audio files") -> argparse.Namespace:
    """The parsed flags (``parser``: default ``build_parser()``'s); ``audio``: the positional paths then those of
    ``--input_file``; none is a usage error (``inputs``: what to pass)."""
    parser = parser or build_parser()
    args = parser.parse_args(argv)
    args.audio = list(args.audio) + list(args.input_file or [])
    args.given = getattr(args, "given", set())
    if not args.audio:
        parser.error(f"no audio given: pass {inputs} as arguments (or after --input_file)")
    check_word_flags(parser, args)
    return args


def temperatures(start: float, increment: float | None) -> tuple[float, ...]:
    """openai-whisper's fallback schedule: start, start + increment, ... up to 1.0 (just ``start`` when there is
    no increment, or when ``start`` is already above 1)."""
    if increment is None:
        return (float(start),)
    if increment <= 0:
        raise OptionError(f"--temperature_increment_on_fallback must be positive or None, got {increment}")
    return tuple(float(t) for t in np.arange(start, 1.0 + 1e-6, increment)) or (float(start),)


_FLAG_NAMES = ("best_of", "beam_size", "length_penalty", "suppress_tokens", "initial_prompt", "suppress_blank",
               "condition_on_previous_text", "compression_ratio_threshold", "logprob_threshold", "no_speech_threshold",
               "without_timestamps", "batch_size", "max_initial_timestamp", "chunking", "vad_filter",
               "word_timestamps", "prepend_punctuations", "append_punctuations", "clip_timestamps",
               "hallucination_silence_threshold", *WRITER_FLAGS)
_PLAIN_NAMES = ("task", "language", "temperature", "patience")  # also plain words: a flag only as a subject
_VALUE = r"(?:=(\S+?)(?=[:;,)]|\s|$))"
_FLAG_RE = re.compile(rf"(?<![\w.-])(?:({'|'.join(_FLAG_NAMES)})\b{_VALUE}?|({'|'.join(_PLAIN_NAMES)})"
                      rf"(?:{_VALUE}|(?= (?:must|requires|needs?|and|or|can)\b)))")


def for_shell(message: str) -> str:
    """An option error as a shell user reads it: ``beam_size=0`` -> ``--beam_size 0``, ``patience requires`` ->
    ``--patience requires``."""
    def flag(m: re.Match) -> str:
        name, value = (m[1], m[2]) if m[1] else (m[3], m[4])
        return f"--{name}" + (f" {value.strip(chr(39))}" if value else "")
    return _FLAG_RE.sub(flag, message)


def usage_error(e: Exception) -> int:
    """A bad option or a model that cannot be loaded: one line for a shell user (``for_shell``), exit status 2."""
    print(f"error: {for_shell(str(e))}", file=sys.stderr, flush=True)
    return 2
