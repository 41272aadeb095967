"""What the command line checks of its paths before any weights are loaded: the inputs (files, or directories of
media files, readable) and the output folder (there, or makeable, and writable).

    found, problems = expand_inputs(["talk.mp3", "recordings/", "nope.wav"])   # directories -> their media files
    check_output_dir("out/srt")                                              # OptionError naming --output_dir
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import OptionError

# what a directory given as an input expands to (by extension, any case): audio and video containers FFmpeg reads
MEDIA_SUFFIXES = frozenset(
    ".wav .mp3 .flac .m4a .aac .ogg .oga .opus .wma .aiff .aif .amr .ac3 .mka .webm .mp4 .m4v .mkv .mov .avi .wmv "
    ".mpeg .mpg .ts .3gp".split())


@dataclass
class Inputs:
    """``files``: the inputs to transcribe, in order (a directory's media files sorted by name, in its place);
    ``problems``: one line per input that cannot be read (it is skipped); ``notes``: what directories expanded to."""
    files: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def expand_inputs(paths: list[str]) -> Inputs:
    """Each path: a readable file is kept; a directory gives its media files (not recursive); anything else is a
    problem line (missing, unreadable, a directory without media files)."""
    inputs = Inputs()
    for path in paths:
        p = Path(path)
        if p.is_dir():
            media = sorted(str(f) for f in p.iterdir() if f.suffix.lower() in MEDIA_SUFFIXES and f.is_file())
            if not media:
                inputs.problems.append(f"{path}: a directory with no media files "
                                       f"({', '.join(sorted(s[1:] for s in MEDIA_SUFFIXES)[:6])}, ...)")
                continue
            inputs.notes.append(f"{path}: {len(media)} media file{'s' * (len(media) != 1)}")
            paths_ok = [f for f in media if _readable(f, inputs.problems)]
            inputs.files += paths_ok
        elif not p.exists():
            inputs.problems.append(f"{path}: no such file")
        elif not p.is_file():
            inputs.problems.append(f"{path}: not a regular file")
        elif _readable(path, inputs.problems):
            inputs.files.append(path)
    return inputs


def _readable(path: str, problems: list[str]) -> bool:
    if os.access(path, os.R_OK):
        return True
    problems.append(f"{path}: permission denied (not readable)")
    return False


def check_output_dir(path: str) -> None:
    """OptionError unless ``path`` is a writable directory, or could be made as one (its nearest existing parent
    is a writable directory). Nothing is created here."""
    p = Path(path).expanduser().absolute()
    if p.exists():
        if not p.is_dir():
            raise OptionError(f"--output_dir {path}: exists and is not a directory")
        if not os.access(p, os.W_OK | os.X_OK):
            raise OptionError(f"--output_dir {path}: permission denied (not writable)")
        return
    parent = next(a for a in p.parents if a.exists())
    if not parent.is_dir():
        raise OptionError(f"--output_dir {path}: cannot be made: {parent} is not a directory")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise OptionError(f"--output_dir {path}: cannot be made: {parent} is not writable")


__all__ = ["Inputs", "MEDIA_SUFFIXES", "check_output_dir", "expand_inputs"]
