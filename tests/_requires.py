"""Packages some tests need beyond the project's own (openai-whisper, the reference; the server's packages; Ray).

``require`` imports one. Where it is missing the test (or, called at module level, the module) is skipped with a
line saying what to install; but in CI (the environment variable ``CI`` set and not "false" / "0" / "no", as
``.ci/run`` is run) the run fails instead: CI installs everything, so a missing package there is a broken install,
not a reason to leave hundreds of comparisons unrun.
"""
from __future__ import annotations

import importlib
import os
from types import ModuleType

import pytest

INSTALL = "bash scripts/setup.sh --dev"


def strict() -> bool:
    """True in CI: a missing package fails instead of skipping."""
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def importable(*modules: str) -> bool:
    """Whether one of ``modules`` imports (an installed but broken package does not)."""
    for name in modules:
        try:
            importlib.import_module(name)
            return True
        except ImportError:
            pass
    return False


def require(module: str, package: str | None = None, *, alternatives: tuple[str, ...] = ()) -> ModuleType:
    """``module`` imported (or the first of ``alternatives`` that imports: a package's older module name).

    Missing: ``pytest.fail`` in CI, else a skip (of the whole module when called at its top); both name the pip
    ``package`` (default: the module's top name) and the install command."""
    error = None
    for name in (module, *alternatives):
        try:
            return importlib.import_module(name)
        except ImportError as e:
            error = error or e
    message = f"{package or module.split('.')[0]} is not installed ({error}): install it with {INSTALL}"
    if strict():
        pytest.fail(f"CI is set, so this fails instead of skipping: {message}", pytrace=False)
    pytest.skip(message, allow_module_level=True)


def openai_whisper(module: str = "whisper") -> ModuleType:
    """openai-whisper (the reference implementation), or one of its modules."""
    return require(module, "openai-whisper")
