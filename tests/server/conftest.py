"""The main server of the tests (``_server.ServerProcess``), started once per session. Without the server's packages
(``bash scripts/setup.sh --dev`` installs them) each test module is skipped with a line naming what is missing,
without being imported (they import those packages); in CI it fails instead (``_requires``)."""
from __future__ import annotations

import pytest

from _requires import importable, require

PACKAGES = ["fastapi", "uvicorn", "python-multipart", "sse-starlette", "prometheus-client", "openai", "httpx"]
OLDER_NAMES = {"python-multipart": ("multipart",)}  # its module's name before python-multipart 0.0.13


def modules(package: str) -> tuple[str, ...]:
    return (package.replace("-", "_"), *OLDER_NAMES.get(package, ()))


MISSING = [p for p in PACKAGES if not importable(*modules(p))]


class NeedsPackages(pytest.Module):
    """A test module collected while a server package is missing: ``require`` skips it (or fails, in CI)."""

    def collect(self):
        for package in MISSING:
            name, *older = modules(package)
            require(name, package, alternatives=tuple(older))
        return super().collect()


def pytest_pycollect_makemodule(module_path, parent):
    if MISSING:
        return NeedsPackages.from_parent(parent, path=module_path)
    return None


@pytest.fixture(scope="session")
def server(tmp_path_factory):
    """The main server: a batch of 8 rows, uploads up to 4 MiB, decoded in two processes (``server.uploads``)."""
    from ._server import ServerProcess

    srv = ServerProcess(tmp_path_factory.mktemp("server") / "tmp", "--batch_size", "8", "--max_upload_mb", "4",
                        "--decode_processes", "2")
    yield srv
    srv.stop()
