#!/usr/bin/env bash
# Creates the project's Python environment in .deps/venv (git-ignored) and installs
# scripts/requirements.txt into it. Never touches the system Python. Idempotent: a
# stamp file records the requirements it was built from.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
venv="$root/.deps/venv"
req="$root/scripts/requirements.txt"
stamp="$venv/.requirements.stamp"
python=${PYTHON:-python3}

if [ -f "$stamp" ] && cmp -s "$req" "$stamp"; then
  exit 0
fi
mkdir -p "$root/.deps"
if [ ! -x "$venv/bin/python" ]; then
  "$python" -m venv "$venv"
fi
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r "$req"
cp "$req" "$stamp"
