#!/usr/bin/env bash
# make test-package: uses each package in dist/ as its users would.
#   NuGet   its file list and metadata; a C# consumer (bindings/csharp/VaradTest.cs)
#           compiled against the packaged lib/netstandard2.0/Varad.dll, which must
#           reference netstandard only, and run by mono on the packaged libvarad.so with
#           ONNX Runtime beside it, where Microsoft.ML.OnnxRuntime puts it
#   wheel   pip-installed into a fresh venv (onnxruntime and numpy from PyPI, at the
#           project's pinned versions) and used from outside the checkout
#   archives  their file lists; the test-install C++ consumer built against the unpacked
#           Linux archive with CMake (shared, static) and pkg-config and run; against the
#           unpacked Windows archive cross-built with MinGW through its CMake package and
#           linked once more through varad.lib (the MSVC import library)
set -euo pipefail
cd "$(dirname "$0")/../.."
root=$(pwd)
version=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n 1)
backbone=$root/tests/data/tiny_vit.onnx
venv_python=$root/.deps/venv/bin/python
work=$root/target/package-test
rm -rf "$work"
mkdir -p "$work"
unzip_to() { python3 -m zipfile -e "$1" "$2"; }
# Compares a listing (stdin) with the expected one, both sorted.
same_files() {
  local what=$1; shift
  sort > "$work/$what.actual"
  printf '%s\n' "$@" | sort > "$work/$what.expected"
  diff -u "$work/$what.expected" "$work/$what.actual" || { echo "$what: the files differ from the expected list (- expected, + found)"; exit 1; }
  echo "$what: $(wc -l < "$work/$what.actual") files as expected"
}
last=$SECONDS
took() { echo "$1: $((SECONDS - last)) s"; last=$SECONDS; }
ort_lib=$("$venv_python" -c 'import pathlib, onnxruntime; print(sorted((pathlib.Path(onnxruntime.__file__).parent / "capi").glob("libonnxruntime.so.*"))[-1])')

# ---- NuGet ----
nupkg=dist/Varad.$version.nupkg
pkg=$work/nuget/package
unzip_to "$nupkg" "$pkg"
python3 -c 'import sys, zipfile; print("\n".join(zipfile.ZipFile(sys.argv[1]).namelist()))' "$nupkg" \
  | sed 's|core-properties/[0-9a-f]*\.psmdcp|core-properties/ID.psmdcp|' | same_files nuget \
  '[Content_Types].xml' _rels/.rels Varad.nuspec README.md package/services/metadata/core-properties/ID.psmdcp \
  lib/netstandard2.0/Varad.dll lib/netstandard2.0/Varad.xml \
  runtimes/win-x64/native/varad.dll runtimes/linux-x64/native/libvarad.so \
  build/Varad.targets buildTransitive/Varad.targets
ort_pinned=$(sed -n 's/^onnxruntime==//p' scripts/requirements.txt)
python3 - "$pkg" "$version" "$ort_pinned" <<'PY'
import pathlib, sys, xml.etree.ElementTree as ET
pkg, version, ort = pathlib.Path(sys.argv[1]), sys.argv[2], sys.argv[3]
for xml in ["[Content_Types].xml", "_rels/.rels", "Varad.nuspec", "build/Varad.targets", "buildTransitive/Varad.targets"]:
    ET.parse(pkg / xml)  # well-formed
ns = {"n": "http://schemas.microsoft.com/packaging/2013/05/nuspec.xsd"}
meta = ET.parse(pkg / "Varad.nuspec").getroot().find("n:metadata", ns)
assert meta.findtext("n:id", namespaces=ns) == "Varad"
assert meta.findtext("n:version", namespaces=ns) == version
license = meta.find("n:license", ns)
assert license.get("type") == "expression" and license.text == "Apache-2.0"
deps = {d.get("id"): d.get("version") for d in meta.iter("{%s}dependency" % ns["n"])}
assert deps == {"Microsoft.ML.OnnxRuntime": ort}, deps
assert (pkg / "runtimes/win-x64/native/varad.dll").read_bytes()[:2] == b"MZ"
assert (pkg / "runtimes/linux-x64/native/libvarad.so").read_bytes()[:4] == b"\x7fELF"
print(f"nuget: Varad {version}, Apache-2.0, depends on Microsoft.ML.OnnxRuntime {ort}")
PY
MONO_PATH=target/mono-tools/usr/lib/mono/gac/Mono.Cecil/0.11.0.0__0738eb9f132ed756 \
  mono target/package/csharp/Retarget.exe --check "$pkg/lib/netstandard2.0/Varad.dll"
# The packaged libraries (copies without debug info) still export exactly the header's
# functions.
grep -v -e '^ *//' -e '^ *[/]*\*' include/varad.h | sed -n 's/.*\b\(varad_[a-z0-9_]*\)(.*/\1/p' | sort -u > "$work/declared.txt"
nm -D --defined-only "$pkg/runtimes/linux-x64/native/libvarad.so" | awk '{print $3}' | sort > "$work/exported-so.txt"
x86_64-w64-mingw32-objdump -p "$pkg/runtimes/win-x64/native/varad.dll" > "$work/objdump-dll.txt"
awk '/\[Ordinal\/Name Pointer\] Table/ {t=1; next} t && /^\t\[/ {print $NF; next} t {t=0}' "$work/objdump-dll.txt" | sort > "$work/exported-dll.txt"
for exported in "$work/exported-so.txt" "$work/exported-dll.txt"; do
  diff -u "$work/declared.txt" "$exported" || { echo "nuget: $exported differs from the header's functions"; exit 1; }
done
echo "nuget: both native libraries export the header's $(wc -l < "$work/declared.txt") functions"

# The build targets, under xbuild for want of MSBuild: a .NET Framework x64 build gets
# varad.dll in its output folder, a .NET (Core) build does not (it reads runtimes/), and
# 32-bit builds fail with the reason.
targets_case() {  # expect (copies|nothing|fails) NAME, then MSBuild properties
  local expect=$1 name=$2; shift 2
  local out=$work/nuget/targets/$name/ status=0
  xbuild /nologo /v:minimal tests/package/targets-consumer.proj /p:VaradTargets="$pkg/buildTransitive/Varad.targets" \
    /p:OutDir="$out" "$@" > "$work/nuget/targets-$name.log" 2>&1 || status=$?
  case $expect in
    copies) [ $status -eq 0 ] && [ -f "$out/varad.dll" ] ;;
    nothing) [ $status -eq 0 ] && [ ! -e "$out/varad.dll" ] ;;
    fails) [ $status -ne 0 ] && grep -q "error : Varad: varad.dll is built for x64 only" "$work/nuget/targets-$name.log" ;;
  esac || { echo "nuget targets: $name should have $expect:"; cat "$work/nuget/targets-$name.log"; exit 1; }
}
targets_case copies netfx-x64 /p:TargetFrameworkIdentifier=.NETFramework /p:PlatformTarget=x64
targets_case copies netfx-anycpu-library /p:TargetFrameworkIdentifier=.NETFramework /p:PlatformTarget=AnyCPU /p:Prefer32Bit=true /p:OutputType=Library
targets_case nothing netcore-x64 /p:TargetFrameworkIdentifier=.NETCoreApp /p:PlatformTarget=x64
targets_case fails netfx-x86 /p:TargetFrameworkIdentifier=.NETFramework /p:PlatformTarget=x86
targets_case fails netfx-prefer32 /p:TargetFrameworkIdentifier=.NETFramework /p:PlatformTarget=AnyCPU /p:Prefer32Bit=true /p:OutputType=Exe
targets_case fails netcore-win-x86 /p:TargetFrameworkIdentifier=.NETCoreApp /p:RuntimeIdentifier=win-x86
cmp -s "$pkg/buildTransitive/Varad.targets" "$pkg/build/Varad.targets" || { echo "nuget: build/ and buildTransitive/ targets differ"; exit 1; }
echo "nuget targets: varad.dll copied for .NET Framework x64 only; x86 and 32-bit-preferring builds refused (xbuild)"

# The output folder a build would make: the assembly, the native library and ONNX Runtime
# side by side.
app=$work/nuget/app
mkdir -p "$app"
cp "$pkg/lib/netstandard2.0/Varad.dll" "$pkg/runtimes/linux-x64/native/libvarad.so" "$app/"
cp "$ort_lib" "$app/"
mcs -nologo -warnaserror -r:"$app/Varad.dll" -r:target/mono-tools/usr/lib/mono/4.5/Facades/netstandard.dll \
  -out:"$app/VaradTest.exe" bindings/csharp/VaradTest.cs
# mono finds netstandard.dll (in-box on .NET Framework 4.7.2 and later) in mono-devel's
# facades; DllImport("varad") finds libvarad.so through LD_LIBRARY_PATH.
facades=$root/target/mono-tools/usr/lib/mono/4.5/Facades
(cd "$work" && env -u ORT_DYLIB_PATH MONO_PATH="$facades" LD_LIBRARY_PATH="$app" mono "$app/VaradTest.exe" "$backbone") \
  | tee "$work/nuget/run.log"
grep -q "loaded ONNX Runtime .* from $app/.* (ModuleFolder)" "$work/nuget/run.log" \
  || { echo "nuget: ONNX Runtime was not loaded from beside the packaged libvarad.so"; exit 1; }

took "nuget checks"

# ---- wheel ----
wheel_platform=manylinux_2_35_x86_64
wheel=dist/varad-$version-py3-none-$wheel_platform.whl
windows_wheel=dist/varad-$version-py3-none-win_amd64.whl
python3 -c 'import sys, zipfile; print("\n".join(zipfile.ZipFile(sys.argv[1]).namelist()))' "$wheel" | same_files wheel \
  varad/__init__.py varad/libvarad.so "varad-$version.dist-info/"{METADATA,WHEEL,LICENSE,RECORD}
python3 -c 'import sys, zipfile; print("\n".join(zipfile.ZipFile(sys.argv[1]).namelist()))' "$windows_wheel" | same_files windows-wheel \
  varad/__init__.py varad/varad.dll "varad-$version.dist-info/"{METADATA,WHEEL,LICENSE,RECORD}
for w in "$wheel" "$windows_wheel"; do python3 - "$w" <<'PY'
import base64, hashlib, sys, zipfile
wheel = zipfile.ZipFile(sys.argv[1])
record = [line.split(",") for line in wheel.read(next(n for n in wheel.namelist() if n.endswith("/RECORD"))).decode().splitlines()]
for name, digest, size in record:
    if name.endswith("/RECORD"):
        continue
    data = wheel.read(name)
    expected = "sha256=" + base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    assert digest == expected and int(size) == len(data), f"RECORD is wrong for {name}"
assert len(record) == len(wheel.namelist()), "RECORD does not list every file"
tag = wheel.filename.rsplit("-", 1)[1][: -len(".whl")]
meta = wheel.read(next(n for n in wheel.namelist() if n.endswith("/WHEEL"))).decode()
assert f"Tag: py3-none-{tag}" in meta.splitlines(), meta
print(f"wheel {tag}: RECORD matches its {len(record)} files, WHEEL names the file's tag")
PY
done
python3 -m venv "$work/wheel/venv"
grep -E '^(onnxruntime|numpy)==' scripts/requirements.txt > "$work/wheel/constraints.txt"
"$work/wheel/venv/bin/pip" install --quiet --disable-pip-version-check -c "$work/wheel/constraints.txt" "$root/$wheel"
outside=$(mktemp -d)
(cd "$outside" && env -u VARAD_LIBRARY -u ORT_DYLIB_PATH -u PYTHONPATH "$work/wheel/venv/bin/python" "$root/tests/package/wheel_check.py" "$backbone")
rm -rf "$outside"
# The platform tag is the one auditwheel (PyPI's manylinux checker) finds for the library.
"$work/wheel/venv/bin/pip" install --quiet --disable-pip-version-check auditwheel==6.8.2
"$work/wheel/venv/bin/auditwheel" show --json "$wheel" 2>/dev/null > "$work/wheel/auditwheel.json"
audited=$(python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["overall_tag"])' "$work/wheel/auditwheel.json")
[ "$audited" = "$wheel_platform" ] \
  || { echo "wheel: tagged $wheel_platform, but auditwheel finds the library consistent with $audited"; exit 1; }
echo "wheel: auditwheel agrees with its tag $wheel_platform"

took "wheel checks (a fresh venv, onnxruntime and numpy from PyPI)"

# ---- archives ----
linux=varad-$version-x86_64-linux
tar -tzf "dist/$linux.tar.gz" | grep -v '/$' | same_files linux-archive \
  "$linux/"{LICENSE,README.md,include/varad.h,lib/libvarad.so,lib/libvarad.a,lib/pkgconfig/varad.pc} \
  "$linux/lib/cmake/varad/"{varadConfig.cmake,varadConfigVersion.cmake}
windows=varad-$version-x86_64-windows
python3 -c 'import sys, zipfile; print("\n".join(n for n in zipfile.ZipFile(sys.argv[1]).namelist() if not n.endswith("/")))' "dist/$windows.zip" \
  | same_files windows-archive \
  "$windows/"{LICENSE,README.md,include/varad.h,bin/varad.dll,lib/varad.lib,lib/libvarad.dll.a,lib/varad.def,lib/pkgconfig/varad.pc} \
  "$windows/lib/cmake/varad/"{varadConfig.cmake,varadConfigVersion.cmake}

# Unpacked somewhere other than where it was staged: the CMake and pkg-config files must
# find their folder themselves.
mkdir -p "$work/linux"
tar -C "$work/linux" -xzf "dist/$linux.tar.gz"
prefix=$work/linux/$linux
cmake -S tests/install -B "$work/linux/build" -DCMAKE_PREFIX_PATH="$prefix" -DCMAKE_BUILD_TYPE=Release > "$work/linux/cmake.log"
cmake --build "$work/linux/build" > "$work/linux/build.log"
LD_LIBRARY_PATH=$prefix/lib "$work/linux/build/consumer" "$backbone" 112
"$work/linux/build/consumer_static" "$backbone" 112
include_dir=$(PKG_CONFIG_PATH=$prefix/lib/pkgconfig pkg-config --cflags-only-I varad | sed 's/^ *-I//; s/ *$//')
[ "$(realpath "$include_dir")" = "$prefix/include" ] \
  || { echo "linux archive: pkg-config's include folder is $include_dir, not the unpacked $prefix/include"; exit 1; }
c++ -std=c++17 -Wall -Wextra -Wpedantic -Werror tests/install/main.cpp \
  $(PKG_CONFIG_PATH=$prefix/lib/pkgconfig pkg-config --cflags --libs varad) -o "$work/linux/consumer_pc"
LD_LIBRARY_PATH=$prefix/lib "$work/linux/consumer_pc" "$backbone" 112

mkdir -p "$work/windows"
unzip_to "dist/$windows.zip" "$work/windows"
prefix=$work/windows/$windows
cmake -S tests/install -B "$work/windows/build" -DCMAKE_SYSTEM_NAME=Windows \
  -DCMAKE_CXX_COMPILER=x86_64-w64-mingw32-g++ -DCMAKE_PREFIX_PATH="$prefix" -DCMAKE_BUILD_TYPE=Release > "$work/windows/cmake.log"
cmake --build "$work/windows/build" > "$work/windows/build.log"
x86_64-w64-mingw32-g++ -std=c++17 -Wall -Wextra -Wpedantic -Werror -I"$prefix/include" tests/install/main.cpp \
  "$prefix/lib/varad.lib" -o "$work/windows/consumer_msvc_implib.exe"
for exe in "$work/windows/build/consumer.exe" "$work/windows/consumer_msvc_implib.exe"; do
  x86_64-w64-mingw32-objdump -p "$exe" > "$exe.objdump"
  grep -q 'DLL Name: varad.dll' "$exe.objdump" \
    || { echo "windows archive: $exe does not import varad.dll"; exit 1; }
done
echo "windows archive: the test-install consumer links varad.dll through the CMake package and through varad.lib"
took "archive checks"
echo "test-package: NuGet package, wheels and both archives checked in $SECONDS s"
