#!/usr/bin/env bash
# What the Windows tests need beside the cross-built library, made once and kept:
#   - a Wine prefix under target/ (never the user's ~/.wine) with the test-only
#     bcryptprimitives.dll shim (bcryptprimitives_shim.c: Wine 8 lacks ProcessPrng,
#     which every Rust program and DLL for Windows imports);
#   - onnxruntime.dll (and onnxruntime_providers_shared.dll) from the win_amd64 wheel of
#     the ONNX Runtime version scripts/requirements.txt pins, into .deps/windows/.
# Idempotent: a step whose result is already there is skipped.
#   setup.sh PYTHON
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
python=$1
prefix=$root/target/wine-prefix
ort_dir=$root/.deps/windows

export WINEPREFIX=$prefix WINEDEBUG=-all WINEDLLOVERRIDES="mscoree,mshtml="
if [ ! -f "$prefix/system.reg" ]; then
  echo "setup: Wine prefix $prefix"
  mkdir -p "$prefix"
  wineboot -i
  wineserver -w
fi
mkdir -p "$root/target/windows-test"
shim=$root/target/windows-test/bcryptprimitives.dll
if [ ! -f "$shim" ] || [ "$shim" -ot "$root/tests/windows/bcryptprimitives_shim.c" ]; then
  x86_64-w64-mingw32-gcc -O2 -shared -o "$shim" "$root/tests/windows/bcryptprimitives_shim.c" -ladvapi32
fi
cmp -s "$shim" "$prefix/drive_c/windows/system32/bcryptprimitives.dll" ||
  cp "$shim" "$prefix/drive_c/windows/system32/bcryptprimitives.dll"

version=$(sed -n 's/^onnxruntime==\([0-9.]*\).*/\1/p' "$root/scripts/requirements.txt")
[ -n "$version" ] || { echo "setup: no onnxruntime==VERSION in scripts/requirements.txt" >&2; exit 1; }
if [ "$(cat "$ort_dir/VERSION" 2>/dev/null)" != "$version" ] || [ ! -f "$ort_dir/onnxruntime.dll" ]; then
  echo "setup: onnxruntime.dll $version from the win_amd64 wheel"
  rm -rf "$ort_dir" && mkdir -p "$ort_dir/wheel"
  "$python" -m pip download --quiet --platform win_amd64 --only-binary=:all: --no-deps \
    "onnxruntime==$version" -d "$ort_dir/wheel"
  "$python" - "$ort_dir" <<'PY'
import glob, os, sys, zipfile
out = sys.argv[1]
wheel, = glob.glob(os.path.join(out, "wheel", "*.whl"))
with zipfile.ZipFile(wheel) as z:
    names = set(z.namelist())
    for dll in ("onnxruntime.dll", "onnxruntime_providers_shared.dll"):
        member = "onnxruntime/capi/" + dll
        if member in names:
            with z.open(member) as src, open(os.path.join(out, dll), "wb") as dst:
                dst.write(src.read())
        elif dll == "onnxruntime.dll":
            sys.exit(f"{wheel} has no {member}")
PY
  rm -rf "$ort_dir/wheel"
  echo "$version" > "$ort_dir/VERSION"
fi
echo "setup: Wine prefix and onnxruntime.dll $version ready"
