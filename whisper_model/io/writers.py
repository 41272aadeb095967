"""Output writers (txt, srt, vtt, tsv, json) for a result dict; every file is written atomically."""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Callable

FORMATS = ("txt", "srt", "vtt", "tsv", "json")


def format_timestamp(seconds: float, *, always_hours: bool = False, marker: str = ".") -> str:
    """12.345 -> '00:12.345' (or '00:00:12.345' with hours); srt uses ',' as the decimal marker."""
    if seconds < 0:
        raise ValueError(f"timestamps must be non-negative, got {seconds}")
    ms = round(seconds * 1000.0)
    hours, ms = divmod(ms, 3_600_000)
    minutes, ms = divmod(ms, 60_000)
    secs, ms = divmod(ms, 1000)
    head = f"{hours:02d}:" if always_hours or hours else ""
    return f"{head}{minutes:02d}:{secs:02d}{marker}{ms:03d}"


def _txt(result: dict) -> str:
    return "".join(seg["text"].strip() + "\n" for seg in result["segments"])


def _vtt(result: dict) -> str:
    lines = ["WEBVTT", ""]
    for seg in result["segments"]:
        lines += [f"{format_timestamp(seg['start'])} --> {format_timestamp(seg['end'])}",
                  seg["text"].strip().replace("-->", "->"), ""]
    return "\n".join(lines)


def _srt(result: dict) -> str:
    lines = []
    for i, seg in enumerate(result["segments"], start=1):
        start = format_timestamp(seg["start"], always_hours=True, marker=",")
        end = format_timestamp(seg["end"], always_hours=True, marker=",")
        lines += [str(i), f"{start} --> {end}", seg["text"].strip().replace("-->", "->"), ""]
    return "\n".join(lines)


def _tsv(result: dict) -> str:
    rows = ["start\tend\ttext"]
    for seg in result["segments"]:
        text = seg["text"].strip().replace("\t", " ")
        rows.append(f"{round(1000 * seg['start'])}\t{round(1000 * seg['end'])}\t{text}")
    return "\n".join(rows) + "\n"


def _json(result: dict) -> str:
    return json.dumps(result, ensure_ascii=False)


_RENDER: dict[str, Callable[[dict], str]] = {"txt": _txt, "vtt": _vtt, "srt": _srt, "tsv": _tsv, "json": _json}


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


def render(result: dict, output_format: str) -> str:
    """The text of one format (``FORMATS``) for a result dict: what ``write_result`` writes."""
    if output_format not in _RENDER:
        raise ValueError(f"output_format must be one of {FORMATS + ('all',)}, got {output_format!r}")
    return _RENDER[output_format](result)


def write_result(result: dict, audio_path: str | Path, output_dir: str | Path, output_format: str) -> list[Path]:
    """Render every requested format first, then write each atomically; returns the written paths."""
    formats = FORMATS if output_format == "all" else (output_format,)
    rendered = {fmt: render(result, fmt) for fmt in formats}
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    stem = Path(audio_path).stem
    paths = []
    for fmt, text in rendered.items():
        path = output_dir / f"{stem}.{fmt}"
        atomic_write_text(path, text)
        paths.append(path)
    return paths
