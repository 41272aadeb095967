"""What the tests of the Ray job share (imported by name: tests/distributed is on sys.path, not a package)."""
from __future__ import annotations

import importlib.util
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
_spec = importlib.util.spec_from_file_location("_distributed_paths", REPO / "tests" / "model" / "_paths.py")
PATHS = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(PATHS)

CLIPS = ("en_arctic_a0007.wav", "en_bobby.wav", "en_librivox_0880.wav", "en_librivox_0930.wav")  # 1-4 s each
# greedy, one torch thread, one file at a time: the job's outputs are then byte for byte the command line's
FLAGS = ("--device", "cpu", "--beam_size", "None", "--threads", "1", "--verbose", "None")


def output_files(folder: Path) -> dict[str, bytes]:
    """Every output in ``folder`` (not the manifest), by name."""
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.name != "manifest.jsonl"}
