"""Where the tests in tests/model find shared inputs (no conftest: plain helpers).

The shared folder sits beside the repository root: ``<repo>/../shared/data``.
"""
from __future__ import annotations

import csv
import importlib.util
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
SHARED_DATA = REPO_ROOT / ".." / "shared" / "data"
AUDIO_DIR = SHARED_DATA / "audio"
MANIFEST = SHARED_DATA / "MANIFEST.tsv"

NO_SHARED = f"shared audio not found at {AUDIO_DIR.resolve()} (expected <repo>/../shared/data)"
MISSING = "<no shared clips>"  # placeholder parameter so parameterized lists are never empty


def manifest() -> dict[str, dict]:
    """MANIFEST.tsv rows by file name ({} when absent)."""
    if not MANIFEST.is_file():
        return {}
    with open(MANIFEST, encoding="utf-8", newline="") as f:
        return {row["file"]: row for row in csv.DictReader(f, delimiter="\t")}


def clips(suffixes=(".wav", ".mp3")) -> list[str]:
    """Names of the shared clips, or ``[MISSING]`` so that tests skip with NO_SHARED."""
    if not AUDIO_DIR.is_dir():
        return [MISSING]
    names = sorted(p.name for p in AUDIO_DIR.iterdir() if p.suffix.lower() in suffixes)
    return names or [MISSING]


def whisper_assets() -> Path | None:
    """openai-whisper's assets/ directory (the package is not imported), or None."""
    spec = importlib.util.find_spec("whisper")
    for root in (spec.submodule_search_locations or []) if spec else []:
        if (Path(root) / "assets" / "mel_filters.npz").is_file():
            return Path(root) / "assets"
    return None
