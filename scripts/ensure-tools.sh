#!/usr/bin/env bash
# Makes sure the named commands exist, installing their Debian packages when missing and
# when allowed (root with apt-get); idempotent and quiet. Usage: ensure-tools.sh CMD...
#   cmake -> cmake, mcs -> mono-mcs, mono -> mono-runtime,
#   x86_64-w64-mingw32-gcc -> gcc-mingw-w64-x86-64 (with binutils: objdump, dlltool),
#   x86_64-w64-mingw32-g++ -> g++-mingw-w64-x86-64, pkg-config -> pkg-config,
#   xbuild -> mono-xbuild (mono's MSBuild clone: runs the NuGet package's build targets),
#   wine -> wine64 wine (Wine 8 on Debian 12: runs the Windows build's tests; wine64 has
#   the 64-bit loader, wine the commands wine, wineboot and wineserver)
set -euo pipefail
missing=()
for cmd in "$@"; do
  command -v "$cmd" >/dev/null 2>&1 && continue
  case "$cmd" in
    cmake) missing+=(cmake) ;;
    mcs) missing+=(mono-mcs) ;;
    mono) missing+=(mono-runtime) ;;
    x86_64-w64-mingw32-gcc) missing+=(gcc-mingw-w64-x86-64) ;;
    x86_64-w64-mingw32-g++) missing+=(g++-mingw-w64-x86-64) ;;
    pkg-config) missing+=(pkg-config) ;;
    xbuild) missing+=(mono-xbuild) ;;
    wine) missing+=(wine64 wine) ;;
    *) echo "ensure-tools: no package known for $cmd" >&2; exit 1 ;;
  esac
done
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null 2>&1; then
  echo "ensure-tools: please install: ${missing[*]}" >&2
  exit 1
fi
echo "ensure-tools: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq >/dev/null
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
