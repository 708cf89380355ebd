#!/usr/bin/env bash
# Runs a Windows program under Wine in the test prefix (target/wine-prefix, made by
# tests/windows/setup.sh), never in the user's ~/.wine, with Wine's own diagnostics off.
# Also the runner cargo uses for the Windows target (CARGO_TARGET_X86_64_PC_WINDOWS_GNU_RUNNER).
#   wine-run.sh PROGRAM[.exe] ARG...
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
export WINEPREFIX=${VARAD_WINEPREFIX:-$root/target/wine-prefix}
export WINEDEBUG=-all
# No Mono or Gecko installer prompts: nothing here needs .NET or a browser engine.
export WINEDLLOVERRIDES="mscoree,mshtml="
[ -d "$WINEPREFIX/drive_c/windows/system32" ] || { echo "wine-run: no Wine prefix at $WINEPREFIX (run tests/windows/setup.sh)" >&2; exit 1; }
# Debian's `wine` wrapper warns on every start that the 32-bit half is missing; the
# 64-bit loader it calls is all a 64-bit program needs.
wine=wine
[ -x /usr/lib/wine/wine64 ] && wine=/usr/lib/wine/wine64
program=$1; shift
[ -f "$program" ] || [ ! -f "$program.exe" ] || program=$program.exe
# Windows programs end their lines with CR LF; the checks read them as Unix text.
"$wine" "$program" "$@" | tr -d '\r'
exit "${PIPESTATUS[0]}"
