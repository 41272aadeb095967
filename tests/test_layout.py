"""The house rules of docs/ARCHITECTURE.md, checked on the source: imports only go down the floors, the decode loop
knows the model only through its seam, no module imports another's private names, files and functions stay short,
``trtllm_ext`` knows nothing of Whisper, and neither package imports openai-whisper."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FLOORS = {  # module prefix (under whisper_model) -> floor; a module may import its own floor or lower ones
    "config": 0, "errors": 0, "io": 1, "model": 2, "decode": 3, "encoding": 3, "fast": 3,
    "options": 4, "words": 4, "longform": 4, "scheduler": 4, "chunked": 4, "chunk_plan": 4, "speech_filter": 4,
    "results": 4, "transcribe": 4, "realtime": 4, "live": 4, "scheduler_events": 4, "pipeline": 5, "calibration": 5,
    "service": 6,
    "cli": 7, "run": 7, "stream": 7, "build": 7, "summarize": 7, "server": 7, "serve": 7, "distributed": 7,
}
MAX_FILE_LINES, MAX_FUNCTION_LINES = 400, 60


def sources(package: str) -> list[Path]:
    return sorted((ROOT / package).rglob("*.py"))


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path, package: str | None = None) -> list[tuple[str, list[str]]]:
    """Every import of the file (also inside functions), as (absolute module, imported names); relative imports
    are resolved in ``package`` (default: the file's own)."""
    if package is None:
        package = module_name(path) if path.name == "__init__.py" else module_name(path).rpartition(".")[0]
    out = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            out += [(alias.name, []) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = package.split(".")[: len(package.split(".")) - node.level + 1] if node.level else []
            module = ".".join(base + ([node.module] if node.module else []))
            out.append((module, [alias.name for alias in node.names]))
    return out


def floor(module: str) -> int | None:
    parts = module.split(".")
    return FLOORS.get(parts[1]) if parts[0] == "whisper_model" and len(parts) > 1 else None


def whisper_model_targets(module: str, names: list[str]) -> list[str]:
    """``from whisper_model.x import y`` may import the module ``x.y``; count both."""
    return [module] + [f"{module}.{n}" for n in names if floor(f"{module}.{n}") is not None and module.count(".") == 0]


@pytest.mark.parametrize("path", sources("whisper_model"), ids=lambda p: module_name(p))
def test_imports_go_down_the_floors(path):
    here = module_name(path)
    if here == "whisper_model":
        return  # the package's lazy exports
    mine = floor(here)
    assert mine is not None, f"{here}: not placed on a floor in tests/test_layout.py"
    for module, names in imports(path):
        for target in whisper_model_targets(module, names):
            theirs = floor(target)
            assert theirs is None or theirs <= mine, f"{here} (floor {mine}) imports {target} (floor {theirs})"
            if here.startswith("whisper_model.decode"):
                assert not target.startswith(("whisper_model.model", "whisper_model.fast")), \
                    f"{here}: the decode loop talks to the model only through decode.protocol.TextDecoder"


@pytest.mark.parametrize("package", ["whisper_model", "trtllm_ext"])
def test_no_private_imports_and_no_reference_imports(package):
    for path in sources(package):
        for module, names in imports(path):
            assert module.split(".")[0] != "whisper", f"{path}: imports openai-whisper (tests and bench only)"
            if package == "trtllm_ext":
                assert module.split(".")[0] != "whisper_model", f"{path}: trtllm_ext must not know Whisper"
            private = [n for n in names if n.startswith("_") and not n.startswith("__")]
            assert not private, f"{path}: imports private names {private} from {module}"


@pytest.mark.parametrize("package", ["whisper_model", "trtllm_ext"])
def test_files_and_functions_stay_short(package):
    for path in sources(package):
        if "kernels" in path.parts:
            continue  # Triton kernels: long by nature, tuned as a whole
        text = path.read_text(encoding="utf-8")
        assert text.count("\n") <= MAX_FILE_LINES, f"{path}: {text.count(chr(10))} lines"
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                length = node.end_lineno - node.lineno + 1
                assert length <= MAX_FUNCTION_LINES, f"{path}:{node.lineno} {node.name}: {length} lines"


def test_the_rules_catch_a_violation(tmp_path):
    """The checker itself: an upward import and a private import are seen."""
    bad = tmp_path / "bad.py"
    bad.write_text("from ..pipeline import WhisperModel\nfrom .audio import _x\n")
    found = imports(bad, "whisper_model.io")
    assert ("whisper_model.pipeline", ["WhisperModel"]) in found
    assert floor("whisper_model.pipeline") > floor("whisper_model.io.audio")
    assert ("whisper_model.io.audio", ["_x"]) in found


def test_no_two_modules_import_each_other():
    """A pair of modules that import each other (even inside a function) is one module cut in two: join them or
    move what both need below them (``io.locate`` for ``io.vocab`` and ``io.weights``)."""
    graph = {module_name(p): {t for m, names in imports(p) for t in whisper_model_targets(m, names)}
             for p in sources("whisper_model")}
    pairs = sorted((a, b) for a, targets in graph.items() for b in targets if a < b and a in graph.get(b, ()))
    assert not pairs, f"modules that import each other: {pairs}"
