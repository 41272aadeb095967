"""The realtime package imports without the server's extras and without ``openai`` (a fresh interpreter)."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
MODULES = ["agreement", "config", "events", "input_buffer", "intake", "server_events", "session",
           "transcript", "vad_stream"]


def test_the_package_needs_no_server_extra():
    code = (f"import sys\nfor m in {MODULES!r}: __import__('whisper_model.realtime.' + m)\n"
            "loaded = sorted(m for m in ('fastapi', 'uvicorn', 'starlette', 'sse_starlette', 'openai')\n"
            "                if m in sys.modules)\nprint(loaded)\n")
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"
