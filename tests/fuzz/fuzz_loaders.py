"""atheris (libFuzzer) harness over the loaders: audio, the CTranslate2 reader, openai .pt, safetensors / Hugging
Face config, and a file of unknown kind. The property is in _targets.py; an input that breaks it is a crash.

    python tests/fuzz/fuzz_loaders.py TARGET [libFuzzer flags] [CORPUS_DIR ...]
    python tests/fuzz/fuzz_loaders.py ct2 -max_total_time=600          # ten minutes on the CTranslate2 reader
    python tests/fuzz/fuzz_loaders.py list                             # the targets

TARGET: audio, ct2, openai, openai_pickle (the pickle inside a valid zip), safetensors, hf_config, any.
Without a CORPUS_DIR the seeds of _seeds.py (tiny valid checkpoints in each format, short cuts of every shared
audio clip) are written to a temporary corpus. Defaults added unless given: -timeout=20 (seconds per input: a
hang), -rss_limit_mb=2048 (a memory blow-up), -artifact_prefix=<temp dir>/ (where a crashing input is saved).
libFuzzer ends with "Done N runs in S second(s)"; a crash prints the input's traceback and exits non-zero.
"""
from __future__ import annotations

import io
import sys
import tempfile
import zipfile
from pathlib import Path

import atheris

sys.path[:0] = [str(Path(__file__).resolve().parent), str(Path(__file__).resolve().parents[1])]  # _seeds, _ct2_file
with atheris.instrument_imports(include=["whisper_model"]):
    import _seeds
    import _targets


def seeds(target: str) -> dict[str, bytes]:
    ckpt = _seeds.checkpoint_seeds()
    if target == "audio":
        return _seeds.audio_seeds()
    if target == "ct2":
        return {k: v for k, v in ckpt.items() if k.startswith("ct2")}
    if target in ("openai", "safetensors"):
        return {target: ckpt[target]}
    if target == "openai_pickle":
        with zipfile.ZipFile(io.BytesIO(ckpt["openai"])) as archive:
            return {"data.pkl": archive.read(next(n for n in archive.namelist() if n.endswith("/data.pkl")))}
    if target == "hf_config":
        return {"config.json": _seeds.hf_config_text().encode()}
    return {**ckpt, "text": b"not a checkpoint\n"}


def main(argv: list[str]) -> None:
    if len(argv) < 2 or argv[1] not in _targets.TARGETS:
        print(f"usage: {argv[0]} TARGET [libFuzzer flags] [CORPUS_DIR ...]; TARGET: {', '.join(_targets.TARGETS)}")
        sys.exit(0 if len(argv) > 1 and argv[1] == "list" else 2)
    target, rest = argv[1], argv[2:]
    flags = [a for a in rest if a.startswith("-")]
    if not any(not a.startswith("-") for a in rest):
        corpus = Path(tempfile.mkdtemp(prefix=f"fuzz-{target}-"))
        for name, data in seeds(target).items():
            (corpus / name).write_bytes(data)
        rest = rest + [str(corpus)]
    defaults = {"-timeout": "20", "-rss_limit_mb": "2048",
                "-artifact_prefix": tempfile.mkdtemp(prefix=f"fuzz-{target}-crash-") + "/"}
    extra = [f"{k}={v}" for k, v in defaults.items() if not any(f.startswith(k + "=") for f in flags)]
    fn = _targets.TARGETS[target]
    atheris.Setup([argv[0], *extra, *rest], lambda data: fn(bytes(data)))
    atheris.Fuzz()


if __name__ == "__main__":
    main(sys.argv)
