"""Many audios of any length transcribed together: their 30 s windows encoded and decoded in batches.

    results = transcribe_batch(model, ["a.wav", "b.mp3", samples], batch_size=8, beam_size=5)
    for segments, info in results:          # one (list of segments, info) per input, in input order
        print(info.language, "".join(s.text for s in segments))

Each round takes the current window of up to ``batch_size`` active audios, encodes them in one batch (with the
first 30 s of audios that just joined and need their language detected), decodes them in one batch
(``transcribe.decode_with_fallback``: each audio with its own prompt and language; rows that need a temperature
fallback are decoded again together) and advances each audio's own ``transcribe.FileState``, exactly as
``transcribe`` does for one audio. Audios that finish drop out and waiting ones take their place.

Deterministic decoding (temperature 0: greedy or beam search) gives each audio what ``transcribe`` gives it alone,
up to floating-point differences between batched and unbatched matrix products (none seen in fp32 on CPU). Rows
sampled at temperature > 0 draw from the global torch RNG in batch order, so their samples differ from a run of
that audio alone (drawn from the same distributions).
"""
from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Iterator, Optional, Sequence

import torch
import tqdm

from .audio import N_FRAMES
from .decoding import detect_language, tokenizer_for
from .encoding import Audio, WhisperEncoding
from .tokenizer import Tokenizer
from .transcribe import (FileState, Segment, TranscriptionInfo, TranscriptionOptions, decode_with_fallback,
                         file_info, transcription_options)

LOAD_ERRORS = (ValueError, OSError, RuntimeError)  # what loading one audio may raise (AudioDecodeError: ValueError)


@dataclass(frozen=True)
class BatchItem:
    """One audio's outcome: ``index`` into the inputs, then its ``segments`` and ``info``, or the ``error`` that
    kept its audio from loading (``segments`` empty, ``info`` None)."""

    index: int
    segments: list[Segment] = field(default_factory=list)
    info: Optional[TranscriptionInfo] = None
    error: Optional[Exception] = None


@dataclass
class _Active:
    index: int
    state: FileState
    info: TranscriptionInfo
    features: Optional[torch.Tensor] = None  # [n_audio_ctx, d] of the current window, when already encoded
    segments: list[Segment] = field(default_factory=list)


def iter_transcribe_batch(model, audios: Sequence[Audio], *, batch_size: int = 8,
                          tokenizer: Optional[Tokenizer] = None, progress: bool = False,
                          **options) -> Iterator[BatchItem]:
    """Transcribe ``audios`` (paths, file bytes, or 16 kHz mono samples [n]) ``batch_size`` at a time: one
    ``BatchItem`` per audio, yielded as each completes (in completion order). An audio that cannot be loaded
    gives a ``BatchItem`` with its ``error``; the others go on.

    ``options``: those of ``transcribe.transcription_options`` (``transcribe``'s), checked now, before any audio
    is loaded: ValueError names the offending option (``batch_size`` included), TypeError an unknown one.
    """
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    opts, language = transcription_options(model, tokenizer, **options)
    return _rounds(model, list(audios), batch_size, tokenizer, opts, language, progress)


def transcribe_batch(model, audios: Sequence[Audio], *, batch_size: int = 8, tokenizer: Optional[Tokenizer] = None,
                     progress: bool = False, **options) -> list[tuple[list[Segment], TranscriptionInfo]]:
    """``(segments, info)`` per audio, in input order; see ``iter_transcribe_batch``. An audio that cannot be
    loaded raises ValueError naming it (use ``iter_transcribe_batch`` to go on without it)."""
    audios = list(audios)
    results: list = [None] * len(audios)
    for item in iter_transcribe_batch(model, audios, batch_size=batch_size, tokenizer=tokenizer, progress=progress,
                                      **options):
        if item.error is not None:
            raise ValueError(f"audio {item.index} ({_describe(audios[item.index])}): {item.error}") from item.error
        results[item.index] = (item.segments, item.info)
    return results


def _describe(audio: Audio) -> str:
    if isinstance(audio, (bytes, bytearray)):
        return f"{len(audio)} bytes"
    if hasattr(audio, "shape"):
        return f"samples of shape {tuple(audio.shape)}"
    return str(audio)


def _rounds(model, audios: list, batch_size: int, tokenizer: Optional[Tokenizer], opts: TranscriptionOptions,
            language: Optional[str], progress: bool) -> Iterator[BatchItem]:
    encoding = WhisperEncoding(model)
    pending, active = deque(range(len(audios))), []
    with tqdm.tqdm(total=len(audios), unit="audio", disable=not progress) as pbar:
        while pending or active:
            joined = []  # (index, mel [n_mels, content_frames + N_FRAMES])
            while pending and len(active) + len(joined) < batch_size:
                index = pending.popleft()
                try:
                    joined.append((index, encoding.log_mel(audios[index])))
                except LOAD_ERRORS as e:
                    pbar.update(1)
                    yield BatchItem(index, error=e)
            active += _join(model, encoding, joined, tokenizer, opts, language)
            for entry in [a for a in active if a.state.done]:  # no content at all
                active.remove(entry)
                pbar.update(1)
                yield BatchItem(entry.index, entry.segments, entry.info)
            if not active:
                continue
            features = _encode_windows(encoding, active)
            results = decode_with_fallback(model, tokenizer, opts, features, [a.state.prompt for a in active],
                                           [a.info.language for a in active])
            for entry, result in zip(active, results):
                entry.segments += entry.state.advance(result)
            for entry in [a for a in active if a.state.done]:
                active.remove(entry)
                pbar.update(1)
                yield BatchItem(entry.index, entry.segments, entry.info)


def _join(model, encoding: WhisperEncoding, joined: list, tokenizer: Optional[Tokenizer],
          opts: TranscriptionOptions, language: Optional[str]) -> list[_Active]:
    """New audios' states; their languages detected together (on the padded mel's first 30 s) when not given."""
    if not joined:
        return []
    detect = language is None and model.is_multilingual
    firsts, probs = None, [None] * len(joined)
    if detect:
        firsts = encoding.encode(torch.stack([encoding.window(mel, 0) for _, mel in joined]))
        _, probs = detect_language(model, firsts, tokenizer)
    out = []
    for k, (index, mel) in enumerate(joined):
        content_frames = mel.shape[-1] - N_FRAMES
        tok = tokenizer_for(model, max(probs[k], key=probs[k].get) if detect else language, opts.task, tokenizer)
        info = file_info(opts, tok, content_frames, probs[k])
        entry = _Active(index, FileState(mel, content_frames, info.options, tok, model.dims.n_audio_ctx), info)
        if detect and content_frames >= N_FRAMES:  # the first window is the detection window: reuse it
            entry.features = firsts[k]
        out.append(entry)
    return out


def _encode_windows(encoding: WhisperEncoding, active: list[_Active]) -> torch.Tensor:
    """Encoder states [len(active), n_audio_ctx, d] of every active audio's current window (one encoder batch)."""
    todo = [a for a in active if a.features is None]
    encoded = encoding.encode(torch.stack([a.state.window() for a in todo])) if todo else None
    if len(todo) == len(active):
        features = encoded
    else:
        for a, x in zip(todo, encoded if todo else []):
            a.features = x
        features = torch.stack([a.features for a in active])
    for a in active:
        a.features = None  # the next window is another one
    return features
