"""Accuracy against people's transcripts: the pooled WER over ``../shared/data/MANIFEST.tsv``'s English clips that
have a ``reference_transcript``, per model and long-form mode, scored by ``whisper_model.summarize`` (Whisper's
English normalizer, jiwer). The token-identity tests hold only openai-whisper's own path; a path that is not
token-identical to it (VAD chunks here; quantized or streamed ones later) is held to a bound instead.

Sequential decoding is scored on every such clip; VAD chunking only on the clips longer than one 30 s window (the
73 s Asterisk prompt): a shorter clip is one chunk, and it scored the same as sequential decoding on every one of
them when measured, so they would only add minutes. Each bound is the WER measured on 2026-12-06 (CPU, fp32,
greedy) plus 1.5 points absolute: room for a token flipped by another CPU's rounding, not for a path that loses
accuracy.
"""
from __future__ import annotations

import pytest

try:
    from ._paths import AUDIO_DIR, MANIFEST, NO_SHARED
    from ._reference import models, transcribed
except ImportError:
    from _paths import AUDIO_DIR, MANIFEST, NO_SHARED
    from _reference import models, transcribed

from whisper_model.cli.summarize import format_table, pooled, read_manifest, transcribe_manifest
from whisper_model.transcribe import result_dict

MARGIN = 0.015
WINDOW_S = 30.0
# (model, chunking) -> (word errors, reference words) measured on 2026-12-06
MEASURED = {
    ("tiny.en", "none"): (11, 300),  # 3.67%
    ("tiny.en", "vad"): (13, 176),  # 7.39% (sequential on the same clip: 8)
    ("base", "none"): (14, 300),  # 4.67%
    ("base", "vad"): (15, 176),  # 8.52% (sequential on the same clip: 13)
}


class Shared:
    """The model ``transcribe_manifest`` calls: ``transcribe_dict`` is ``WhisperModel.transcribe_dict`` (
    ``result_dict`` of ``transcribe``) on ``models(name)``'s fp32 weights, each (clip, options) run once per session
    (``_reference.transcribed``): test_transcribe's parity runs of the English clips, in their language with the
    default options, are the sequential runs scored here."""

    def __init__(self, name: str):
        self.name = name
        self.is_multilingual = models(name)[0].is_multilingual

    def transcribe_dict(self, audio, **kwargs) -> dict:
        return result_dict(*transcribed(self.name, audio, **kwargs))


def entries(chunking: str) -> list[dict]:
    """The English manifest entries with a transcript; for chunking, those longer than one window."""
    if not MANIFEST.is_file():
        pytest.skip(NO_SHARED)
    english = [e for e in read_manifest(MANIFEST) if e["language"] == "en"]
    return english if chunking == "none" else [e for e in english if float(e["seconds"] or 0) > WINDOW_S]


@pytest.mark.parametrize("name, chunking", list(MEASURED), ids=[f"{n}-{c}" for n, c in MEASURED])
def test_pooled_wer_stays_within_the_measured_value_plus_a_margin(name, chunking):
    chosen = entries(chunking)
    rows = transcribe_manifest(Shared(name), chosen, AUDIO_DIR, chunking=chunking)
    assert [r.file for r in rows] == [e["file"] for e in chosen]  # every clip scored, none skipped
    errors, words = MEASURED[name, chunking]
    assert sum(r.ref_units for r in rows) == words  # the transcripts the bound was measured on
    wer = pooled(rows)
    assert wer <= errors / words + MARGIN, (f"{name}, chunking={chunking!r}: WER {wer:.4f}, measured "
                                            f"{errors / words:.4f}\n{format_table(rows)}")
