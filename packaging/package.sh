#!/usr/bin/env bash
# make package: writes dist/ from the release builds `make symbols` (Linux) and
# `make windows` (Windows) left in target/:
#   Varad.<version>.nupkg                     C# binding (netstandard2.0) + both native libraries
#   varad-<version>-py3-none-<platform>.whl   Python binding with libvarad.so inside
#   varad-<version>-py3-none-win_amd64.whl     the same with varad.dll
#   varad-<version>-x86_64-linux.tar.gz       the `make install` layout
#   varad-<version>-x86_64-windows.zip        the same for Windows: bin/varad.dll, import libraries
# The packaged libraries are copies without debug info (the release profile keeps it for
# profiling: it is most of their size). Staging happens in target/package/.
set -euo pipefail
cd "$(dirname "$0")/.."
version=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n 1)
ort_version=$(sed -n 's/^onnxruntime==//p' scripts/requirements.txt)
stage=target/package
dist=dist
linux_lib=target/release/libvarad.so
windows_dir=target/windows
WHEEL_PLATFORM=${WHEEL_PLATFORM:-manylinux_2_35_x86_64}
for f in "$linux_lib" target/release/libvarad.a "$windows_dir/bin/varad.dll" "$windows_dir/lib/varad.lib"; do
  [ -f "$f" ] || { echo "package: $f missing (make symbols windows builds it)" >&2; exit 1; }
done
rm -rf "$stage" "$dist"
mkdir -p "$stage/native" "$stage/csharp" "$dist"

step() { echo "package: $*"; }

step "native libraries without debug info"
strip --strip-debug -o "$stage/native/libvarad.so" "$linux_lib"
x86_64-w64-mingw32-strip --strip-debug -o "$stage/native/varad.dll" "$windows_dir/bin/varad.dll"

step "C# binding for netstandard2.0"
tools=$(bash packaging/nuget/mono-tools.sh target/mono-tools)
cecil_dir=$tools/usr/lib/mono/gac/Mono.Cecil/0.11.0.0__0738eb9f132ed756
mkdir -p "$stage/csharp/mscorlib"
cat > "$stage/csharp/AssemblyInfo.cs" <<CS
[assembly: System.Reflection.AssemblyVersion("$version.0")]
[assembly: System.Reflection.AssemblyFileVersion("$version.0")]
[assembly: System.Reflection.AssemblyInformationalVersion("$version")]
CS
mcs -nologo -warnaserror -optimize -target:library -out:"$stage/csharp/mscorlib/Varad.dll" \
  -doc:"$stage/csharp/Varad.xml" -nowarn:1591 bindings/csharp/Varad.cs "$stage/csharp/AssemblyInfo.cs"
mcs -nologo -warnaserror -r:"$cecil_dir/Mono.Cecil.dll" -r:System.Core.dll \
  -out:"$stage/csharp/Retarget.exe" packaging/nuget/Retarget.cs
MONO_PATH=$cecil_dir mono "$stage/csharp/Retarget.exe" "$stage/csharp/mscorlib/Varad.dll" "$stage/csharp/Varad.dll"

step "NuGet package"
python3 packaging/make_packages.py nuget --version "$version" --ort-version "$ort_version" \
  --assembly "$stage/csharp/Varad.dll" --doc "$stage/csharp/Varad.xml" \
  --dll "$stage/native/varad.dll" --so "$stage/native/libvarad.so" --out "$dist/Varad.$version.nupkg"

step "Python wheel"
# The tag auditwheel gives libvarad.so built on Debian 12: its newest glibc symbol version
# is 2.35 and it needs nothing beyond glibc and libgcc_s. test-package asks auditwheel
# again, so a build that needs more fails there instead of shipping a wrong tag.
python3 packaging/make_packages.py wheel --version "$version" --so "$stage/native/libvarad.so" \
  --platform "$WHEEL_PLATFORM" --out-dir "$dist" >/dev/null
# The same for Windows x64, with varad.dll (the binding looks for it on Windows, and for
# onnxruntime.dll in the onnxruntime package). Not run here: there is no Windows Python.
python3 packaging/make_packages.py wheel --version "$version" --so "$stage/native/varad.dll" \
  --platform win_amd64 --out-dir "$dist" >/dev/null

# The archives' pkg-config files find their prefix from their own folder, as the CMake
# packages do, so the archives unpack anywhere.
relocatable_pc() { sed -i 's|^prefix=.*|prefix=${pcfiledir}/../..|' "$1"; }

step "Linux archive"
linux=varad-$version-x86_64-linux
prefix=$stage/$linux
make --no-print-directory install-files PREFIX="$(pwd)/$prefix" PROFILE=release >/dev/null
cp "$stage/native/libvarad.so" "$prefix/lib/libvarad.so"
strip --strip-debug "$prefix/lib/libvarad.a"
relocatable_pc "$prefix/lib/pkgconfig/varad.pc"
cp LICENSE "$prefix/LICENSE"
sed "s/@VERSION@/$version/g" packaging/archive/README-linux.md > "$prefix/README.md"
tar -C "$stage" --owner=0 --group=0 --numeric-owner --sort=name -czf "$dist/$linux.tar.gz" "$linux"

step "Windows archive"
windows=varad-$version-x86_64-windows
prefix=$stage/$windows
mkdir -p "$prefix/include" "$prefix/bin" "$prefix/lib/cmake/varad" "$prefix/lib/pkgconfig"
cp include/varad.h "$prefix/include/"
cp "$stage/native/varad.dll" "$prefix/bin/"
cp "$windows_dir/lib/varad.lib" "$windows_dir/lib/libvarad.dll.a" "$windows_dir/lib/varad.def" "$prefix/lib/"
subst() { sed -e "s|@VERSION@|$version|g" -e "s|@MAJOR@|${version%%.*}|g" -e "s|@MINOR@|$(echo "$version" | cut -d. -f2)|g" -e "s|@PREFIX@|/|g" "$@"; }
subst packaging/varadConfig-windows.cmake.in > "$prefix/lib/cmake/varad/varadConfig.cmake"
subst packaging/varadConfigVersion.cmake.in > "$prefix/lib/cmake/varad/varadConfigVersion.cmake"
# MinGW links the DLL through libvarad.dll.a with -lvarad; it needs no private libraries.
subst packaging/varad.pc.in | grep -v '^Libs.private:' > "$prefix/lib/pkgconfig/varad.pc"
relocatable_pc "$prefix/lib/pkgconfig/varad.pc"
cp LICENSE "$prefix/LICENSE"
sed "s/@VERSION@/$version/g" packaging/archive/README-windows.md > "$prefix/README.md"
(cd "$stage" && python3 -m zipfile -c "../../$dist/$windows.zip" "$windows")

ls -l "$dist"
