"""Output writers (txt, srt, vtt, tsv, json) for a result dict; every file is written atomically.

    write_result(result, "talk.wav", "out", "all")                                  # out/talk.txt, talk.srt, ...
    render(result, "srt", WriterOptions(max_line_width=42, max_line_count=2))      # one format's text

The text is openai-whisper's writers' for the same result and options (srt and vtt: ``subtitles``). A segment's
``words`` (word timestamps) go into the json as they are; ``WriterOptions`` only change srt and vtt.
"""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Callable, Optional

from .subtitles import WriterOptions, format_timestamp, srt_text, vtt_text

FORMATS = ("txt", "srt", "vtt", "tsv", "json")


def _txt(result: dict, options: WriterOptions) -> str:
    return "".join(seg["text"].strip() + "\n" for seg in result["segments"])


def _tsv(result: dict, options: WriterOptions) -> str:
    rows = ["start\tend\ttext"]
    for seg in result["segments"]:
        text = seg["text"].strip().replace("\t", " ")
        rows.append(f"{round(1000 * seg['start'])}\t{round(1000 * seg['end'])}\t{text}")
    return "\n".join(rows) + "\n"


def _json(result: dict, options: WriterOptions) -> str:
    return json.dumps(result, ensure_ascii=False)


_RENDER: dict[str, Callable[[dict, WriterOptions], str]] = {"txt": _txt, "vtt": vtt_text, "srt": srt_text,
                                                            "tsv": _tsv, "json": _json}


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def atomic_write_text(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` via a temporary file in the same folder and a rename: never a partial file."""
    path, tmp = Path(path), None
    try:  # any exception, KeyboardInterrupt included, removes the temporary file
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            os.fchmod(f.fileno(), 0o666 & ~_umask())  # mkstemp makes the file private; outputs get the usual mode
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)
        raise


def render(result: dict, output_format: str, options: Optional[WriterOptions] = None) -> str:
    """The text of one format (``FORMATS``) for a result dict: what ``write_result`` writes. ``options``: how
    srt and vtt cut and show words (None: ``WriterOptions()``)."""
    if output_format not in _RENDER:
        raise ValueError(f"output_format must be one of {FORMATS + ('all',)}, got {output_format!r}")
    if options is not None and not isinstance(options, WriterOptions):
        raise TypeError(f"options must be a WriterOptions, got {type(options).__name__}")
    return _RENDER[output_format](result, options or WriterOptions())


def write_result(result: dict, audio_path: str | Path, output_dir: str | Path, output_format: str,
                 options: Optional[WriterOptions] = None) -> list[Path]:
    """Render every requested format first, then write each atomically (``<output_dir>/<audio stem>.<format>``;
    ``output_format`` "all": every format); returns the written paths. ``options``: see ``render``."""
    formats = FORMATS if output_format == "all" else (output_format,)
    rendered = {fmt: render(result, fmt, options) for fmt in formats}
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    stem = Path(audio_path).stem
    paths = []
    for fmt, text in rendered.items():
        path = output_dir / f"{stem}.{fmt}"
        atomic_write_text(path, text)
        paths.append(path)
    return paths


__all__ = ["FORMATS", "WriterOptions", "atomic_write_text", "format_timestamp", "render", "write_result"]
