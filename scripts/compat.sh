#!/usr/bin/env bash
# Compatibility run: the CPU test suite on Python >= 3.12 with the newest release of every dependency.
#   bash scripts/compat.sh                 # then pytest's arguments, if any: bash scripts/compat.sh -x tests/model
# COMPAT_PYTHON=/usr/bin/python3.12 bash scripts/compat.sh   uses that interpreter (3.12 or newer). Without it,
#   CPython 3.13 is built once from the source tarball Debian mirrors, into .compat/ (needs a C compiler and
#   libssl-dev zlib1g-dev libbz2-dev libffi-dev liblzma-dev libsqlite3-dev libreadline-dev).
# The venv is .venv-compat; every run upgrades all dependencies to their newest releases (pip constraint files
# are ignored for this). TORCH_SPEC picks another torch (default: the newest; from PyPI that is a CUDA build,
# which runs on the CPU too).
set -euo pipefail
cd "$(dirname "$0")/.."

py_version=3.13.5
py_tarball=python3.13_$py_version.orig.tar.xz
py_sha256=93e583f243454e6e9e4588ca2c2662206ad961659863277afcdb96801647d640
py_prefix=$PWD/.compat/python-$py_version

build_python() {
  local src=.compat/src
  mkdir -p "$src"
  curl -fsSL -o "$src/$py_tarball" "https://deb.debian.org/debian/pool/main/p/python3.13/$py_tarball"
  echo "$py_sha256  $src/$py_tarball" | sha256sum -c --quiet
  tar -xJf "$src/$py_tarball" -C "$src"
  (cd "$src/Python-$py_version" && ./configure -q --prefix="$py_prefix" && make -s -j"$(nproc)" && make -s install)
  rm -rf "$src"
}

python=${COMPAT_PYTHON:-$py_prefix/bin/python3.13}
if [ -z "${COMPAT_PYTHON:-}" ] && [ ! -x "$python" ]; then
  echo "building CPython $py_version into $py_prefix (a few minutes, once)"
  build_python >.compat-build.log 2>&1 || { echo "building Python failed: see .compat-build.log" >&2; exit 1; }
fi
"$python" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 12) else f"compat.sh needs Python >= 3.12, got {sys.version}")'

[ -x .venv-compat/bin/python ] || "$python" -m venv .venv-compat
export PIP_CONSTRAINT=/dev/null  # the newest releases, whatever a pip.conf pins
pip() { .venv-compat/bin/python -m pip install -q --disable-pip-version-check "$@"; }
pip --upgrade pip
pip --upgrade --upgrade-strategy eager "${TORCH_SPEC:-torch}" -e ".[weights,dev]"
# the reference implementation, without its GPU-only triton requirement (as scripts/setup.sh --dev)
pip --no-deps "openai-whisper==20250625"

.venv-compat/bin/python - <<'EOF'
import platform
from importlib.metadata import version
names = ["torch", "av", "numpy", "fastapi", "starlette", "uvicorn", "ray", "transformers", "tiktoken"]
print(f"python {platform.python_version()}, " + ", ".join(f"{n} {version(n)}" for n in names))
EOF
.venv-compat/bin/python -m pytest -q -p no:cacheprovider tests "$@"
