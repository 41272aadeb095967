"""One exception type per kind of failure, shared by the library and the command line.

    try:
        segments, info = model.transcribe("clip.wav", beam_size=5)
    except OptionError:   # a bad option: nothing was loaded or decoded
        ...
    except AudioError:    # the file could not be read or decoded as audio
        ...

Each is also the built-in type callers caught before (``ValueError`` / ``OSError`` / ``RuntimeError``), and keeps
the original exception as its ``__cause__``.
"""
from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator


class WhisperError(Exception):
    """Base of this package's errors."""


class OptionError(WhisperError, ValueError):
    """An option (or a combination of options) the model or the decoder cannot do; its message names it."""


class AudioError(WhisperError, ValueError):
    """An audio that cannot be read or decoded (missing file, not a media file, corrupt data, bad samples)."""


class CheckpointError(WhisperError, ValueError):
    """Weights or an engine that cannot be found or loaded."""


class DecodingError(WhisperError, RuntimeError):
    """Encoding or decoding a batch of windows failed (e.g. out of device memory)."""


class OutputError(WhisperError, OSError):
    """An output file that cannot be written."""


@contextmanager
def audio_errors() -> Iterator[None]:
    """Inside: the ways loading audio fails (a missing file, ``AudioDecodeError``, no audio stream, bad samples:
    ``ValueError``, ``OSError``, ``RuntimeError``) become an ``AudioError`` with the same message."""
    try:
        yield
    except AudioError:
        raise
    except (ValueError, OSError, RuntimeError) as e:
        raise AudioError(str(e)) from e


__all__ = ["AudioError", "CheckpointError", "DecodingError", "OptionError", "OutputError", "WhisperError", "audio_errors"]
