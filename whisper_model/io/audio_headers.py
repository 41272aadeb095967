"""What an audio file's header promises, and the check that the decoded audio kept the promise.

FFmpeg clamps a WAV's data size to the file and estimates durations it cannot read, so a cut-off download decodes
without an error; ``check_not_truncated`` compares the samples decoded with what the header declares.
"""
from __future__ import annotations

import io
import os
from typing import Optional


class AudioDecodeError(ValueError):
    """The input exists but is not decodable audio (not a media file, corrupt, truncated,
    empty, or without an audio stream). The message names the file and the problem."""


def wav_data_sizes(src) -> Optional[tuple]:
    """For a RIFF/WAVE input: (data bytes the header declares, data bytes present), else None.

    FFmpeg silently clamps a WAV's data size to the file size, so truncation is detected here.
    Streaming headers (size 0 or 0xFFFFFFFF) and non-seekable inputs give None.
    """
    try:
        if isinstance(src, str):
            with open(src, "rb") as f:
                head, total = f.read(1 << 16), os.fstat(f.fileno()).st_size
        elif hasattr(src, "seek") and hasattr(src, "tell") and src.seekable():
            pos = src.tell()
            head, total = src.read(1 << 16), src.seek(0, io.SEEK_END) - pos
            src.seek(pos)
        else:
            return None
    except (OSError, AttributeError, ValueError):
        return None
    if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
        return None
    off = 12
    while off + 8 <= len(head):
        cid, size = head[off:off + 4], int.from_bytes(head[off + 4:off + 8], "little")
        if cid == b"data":
            if size in (0, 0xFFFFFFFF):
                return None
            return size, max(0, total - off - 8)
        off += 8 + size + (size & 1)  # chunks are word aligned
    return None


# Demuxers whose duration comes from a header (sample count / chunk sizes), so a decoded
# length far below it means the file was cut short rather than the estimate being off.
HEADER_DURATION_FORMATS = ("wav", "w64", "aiff", "caf", "flac", "mov", "mp4", "matroska")


def check_not_truncated(what: str, got: float, wav_sizes: Optional[tuple], declared: Optional[float]) -> None:
    """AudioDecodeError when the header promises more audio than ``got`` seconds decoded."""
    hint = "(pass allow_truncated=True to load the decodable part)"
    if wav_sizes is not None and wav_sizes[1] < wav_sizes[0] * 0.99:
        raise AudioDecodeError(f"WAV file {what} is truncated: its header declares "
                               f"{wav_sizes[0]} bytes of samples but only {wav_sizes[1]} "
                               f"are present {hint}")
    if declared and got < 0.5 * declared and declared - got > 0.1:
        raise AudioDecodeError(f"{what} looks truncated: its header declares "
                               f"{declared:.2f} s but only {got:.2f} s decoded {hint}")


def declared_seconds(container, stream) -> Optional[float]:
    """Duration promised by the file header, or None when the demuxer only estimates it."""
    fmt = container.format.name
    if not any(name in fmt.split(",") for name in HEADER_DURATION_FORMATS):
        return None
    if stream.duration is not None and stream.time_base is not None:
        return float(stream.duration * stream.time_base)
    if container.duration is not None:
        return container.duration / 1_000_000  # AV_TIME_BASE units
    return None


__all__ = ["AudioDecodeError", "HEADER_DURATION_FORMATS", "check_not_truncated", "declared_seconds",
           "wav_data_sizes"]
