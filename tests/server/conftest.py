"""The main server of the tests (``_server.ServerProcess``), started once per session. Without the server's
packages (``pip install -e .[dev]`` has them) these tests are not collected."""
from __future__ import annotations

import importlib.util

import pytest

NEEDED = ("fastapi", "uvicorn", "multipart", "sse_starlette", "prometheus_client", "openai", "httpx")
MISSING = [name for name in NEEDED if importlib.util.find_spec(name) is None]
collect_ignore_glob = ["test_*.py"] if MISSING else []

if not MISSING:
    from ._server import ServerProcess

    @pytest.fixture(scope="session")
    def server(tmp_path_factory):
        """The main server: a batch of 8 rows, uploads up to 4 MiB."""
        srv = ServerProcess(tmp_path_factory.mktemp("server") / "tmp", "--batch_size", "8", "--max_upload_mb", "4")
        yield srv
        srv.stop()
