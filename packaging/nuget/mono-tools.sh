#!/usr/bin/env bash
# Unpacks the two Debian files the NuGet build needs beyond mono-mcs and mono-runtime,
# into DIR (default target/mono-tools), without installing them: mono-devel's
# Facades/netstandard.dll (consumers compile against it) and Mono.Cecil from
# libmono-cecil-private-cil (Retarget.cs rewrites the assembly reference with it).
# Installing mono-devel would pull in some fifty packages for these two files.
# Idempotent: prints DIR once both are there.
set -euo pipefail
dir=${1:-target/mono-tools}
facade=$dir/usr/lib/mono/4.5/Facades/netstandard.dll
cecil=$dir/usr/lib/mono/gac/Mono.Cecil/0.11.0.0__0738eb9f132ed756/Mono.Cecil.dll
if [ -f "$facade" ] && [ -f "$cecil" ]; then
  echo "$dir"; exit 0
fi
mkdir -p "$dir/debs"
cd "$dir/debs"
# apt-get download writes into the current folder; on a fresh machine the package
# lists may be missing, hence one update before a retry.
download() { apt-get download -qq "$@" 2>/dev/null || { apt-get update -qq >/dev/null && apt-get download -qq "$@"; }; }
download mono-devel libmono-cecil-private-cil
for deb in mono-devel_*.deb libmono-cecil-private-cil_*.deb; do dpkg-deb -x "$deb" .. && rm -f "$deb"; done
cd - >/dev/null
[ -f "$facade" ] && [ -f "$cecil" ] || { echo "mono-tools: $facade or $cecil missing after unpacking" >&2; exit 1; }
echo "$dir"
