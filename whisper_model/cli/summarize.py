"""Word error rate (character error rate for zh/ja/ko/yue) over a manifest of audio and references.

    python -m whisper_model.summarize --manifest ../shared/data/MANIFEST.tsv --model base

The manifest is a TSV with columns ``file``, ``language`` and ``reference_transcript`` (rows without a
reference are skipped); audio paths are relative to ``--audio_dir`` (default: ``audio/`` beside it).
English is normalized with Whisper's English normalizer, other languages with its basic normalizer
(package ``whisper-normalizer``). Prints a table, the pooled totals and the real-time factor.
"""
from __future__ import annotations

import argparse
import csv
import json
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import jiwer

CHARACTER_LANGUAGES = {"zh", "ja", "ko", "yue", "th", "lo", "my"}


@dataclass
class Row:
    file: str
    language: str
    metric: str  # "WER" or "CER"
    errors: int
    ref_units: int
    audio_seconds: float
    seconds: float
    hypothesis: str

    @property
    def rate(self) -> float:
        return self.errors / max(self.ref_units, 1)


def normalizer_for(language: str):
    if language == "en":
        from whisper_normalizer.english import EnglishTextNormalizer

        return EnglishTextNormalizer()
    from whisper_normalizer.basic import BasicTextNormalizer

    return BasicTextNormalizer()


def score(reference: str, hypothesis: str, language: str) -> tuple[str, int, int]:
    """(metric, errors, reference units) after normalization; units are words, or characters for CER."""
    norm = normalizer_for(language)
    ref, hyp = norm(reference).strip(), norm(hypothesis).strip()
    if language in CHARACTER_LANGUAGES:
        ref, hyp = "".join(ref.split()), "".join(hyp.split())
        out = jiwer.process_characters(ref, hyp or "")
        metric = "CER"
    else:
        out = jiwer.process_words(ref, hyp or "")
        metric = "WER"
    errors = out.substitutions + out.deletions + out.insertions
    return metric, errors, out.substitutions + out.deletions + out.hits


def read_manifest(path: Path) -> list[dict]:
    if not path.is_file():
        raise FileNotFoundError(f"manifest not found: {path}")
    with path.open(encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f, delimiter="\t"))
    need = {"file", "language", "reference_transcript"}
    if rows and not need <= set(rows[0]):
        raise ValueError(f"{path}: manifest needs columns {sorted(need)}, has {sorted(rows[0])}")
    return [r for r in rows if (r.get("reference_transcript") or "").strip()]


def pooled(rows: list[Row]) -> float:
    """The rows' errors over their reference units (one rate for the lot, not a mean of rates)."""
    return sum(r.errors for r in rows) / max(sum(r.ref_units for r in rows), 1)


def transcribe_manifest(model, entries: list[dict], audio_dir: Path, *, detect_language: bool = False,
                        **options) -> list[Row]:
    """One scored ``Row`` per manifest entry (``read_manifest``), transcribed by ``model.transcribe_dict(audio,
    **options)`` in the entry's language (detected instead with ``detect_language``); an English-only model skips
    the other languages' entries, saying so on stderr."""
    from ..io.audio import SAMPLE_RATE, load_audio

    rows = []
    for entry in entries:
        language = entry["language"]
        if not model.is_multilingual and language != "en":
            print(f"skip {entry['file']}: the model is English-only, clip is {language}", file=sys.stderr)
            continue
        audio = load_audio(Path(audio_dir) / entry["file"])
        start = time.perf_counter()
        result = model.transcribe_dict(audio, language=None if detect_language else language, **options)
        seconds = time.perf_counter() - start
        metric, errors, units = score(entry["reference_transcript"], result["text"], language)
        rows.append(Row(entry["file"], language, metric, errors, units, len(audio) / SAMPLE_RATE, seconds,
                        result["text"].strip()))
    return rows


def format_table(rows: list[Row]) -> str:
    lines = [f"{'file':38} {'lang':4} {'metric':6} {'rate':>7} {'errors':>6} {'units':>6} {'audio s':>8} {'time s':>7}"]
    for r in rows:
        lines.append(f"{r.file:38} {r.language:4} {r.metric:6} {100 * r.rate:6.1f}% {r.errors:6d} {r.ref_units:6d} "
                     f"{r.audio_seconds:8.1f} {r.seconds:7.2f}")
    for metric in sorted({r.metric for r in rows}):
        sel = [r for r in rows if r.metric == metric]
        errors, units = sum(r.errors for r in sel), sum(r.ref_units for r in sel)
        lines.append(f"{'TOTAL (pooled)':38} {'':4} {metric:6} {100 * pooled(sel):6.1f}% {errors:6d} "
                     f"{units:6d} {sum(r.audio_seconds for r in sel):8.1f} {sum(r.seconds for r in sel):7.2f}")
    audio, seconds = sum(r.audio_seconds for r in rows), sum(r.seconds for r in rows)
    lines.append(f"real-time factor: {seconds / max(audio, 1e-9):.4f} ({seconds:.1f} s for {audio:.1f} s of audio)")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m whisper_model.summarize", description=__doc__.split("\n\n")[0])
    p.add_argument("--manifest", required=True, type=Path)
    p.add_argument("--audio_dir", type=Path, default=None, help="default: audio/ beside the manifest")
    p.add_argument("--model", default="tiny.en")
    p.add_argument("--device", choices=("cpu", "cuda"), default=None)
    p.add_argument("--beam_size", type=int, default=None, help="default: greedy")
    p.add_argument("--detect_language", action="store_true", help="ignore the manifest's language column")
    p.add_argument("--json", type=Path, default=None, help="also write the rows and totals as JSON")
    args = p.parse_args(argv)

    from ..pipeline import WhisperModel

    try:
        entries = read_manifest(args.manifest)
        model = WhisperModel(args.model, device=args.device)
    except (ValueError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    rows = transcribe_manifest(model, entries, args.audio_dir or args.manifest.parent / "audio",
                               detect_language=args.detect_language, beam_size=args.beam_size)
    print(format_table(rows))
    if args.json:
        args.json.write_text(json.dumps({"model": args.model, "rows": [asdict(r) for r in rows]}, indent=1,
                                        ensure_ascii=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
