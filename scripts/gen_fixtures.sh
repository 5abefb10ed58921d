#!/usr/bin/env bash
# Regenerate the reference fixtures with pinned Hugging Face transformers/torch/Pillow.
#
#   scripts/gen_fixtures.sh [STEP ...] [--images-dir DIR] [--all-images] [--allow-other-versions]
#
# Creates (or reuses) a virtualenv (default: <repo>/.venv, override with VTOWER_FIXTURES_VENV),
# installs scripts/requirements-fixtures.txt into it when the pinned versions are not already there,
# then runs the package scripts/fixtures (`python -m fixtures` in scripts/): every step (test images,
# the resample corpus, then each model family), or only the STEPs named (see scripts/fixtures/__main__.py).
# CI never runs this; the generated files are committed.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${VTOWER_FIXTURES_VENV:-$ROOT/.venv}"
REQ="$ROOT/scripts/requirements-fixtures.txt"
PY="$VENV/bin/python"

if [ ! -x "$PY" ]; then
    "${PYTHON:-python3}" -m venv "$VENV"
fi

if ! "$PY" - "$REQ" <<'PYEOF'
import sys
from importlib.metadata import version, PackageNotFoundError
ok = True
for line in open(sys.argv[1]):
    line = line.split("#", 1)[0].strip()
    if not line:
        continue
    name, want = line.split("==")
    try:
        have = version(name)
    except PackageNotFoundError:
        have = None
    if have is None or have.split("+")[0] != want:
        print(f"{name}: have {have}, want {want}")
        ok = False
sys.exit(0 if ok else 1)
PYEOF
then
    "$PY" -m pip install -r "$REQ"
fi

cd "$ROOT/scripts"
"$PY" -m fixtures "$@"
