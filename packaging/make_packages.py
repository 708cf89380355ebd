#!/usr/bin/env python3
"""Writes the NuGet package and the Python wheel for `make package` from files already
built and staged. Both formats are zip files with a few metadata files, written here
directly: the nuget client is not available on Linux from the project's registries, and
the wheel's only compiled part is the library, built by cargo, not by a Python build
backend. Entries carry a fixed timestamp, so the same inputs give the same bytes.

    make_packages.py nuget --version V --ort-version V --dll D --so S --assembly A [--doc X] --out F
    make_packages.py wheel --version V --so LIB --platform TAG --out-dir DIR
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import pathlib
import zipfile

ROOT = pathlib.Path(__file__).resolve().parents[1]
FIXED_TIME = (2020, 1, 1, 0, 0, 0)


def add(archive: zipfile.ZipFile, name: str, data: bytes, executable: bool = False) -> None:
    info = zipfile.ZipInfo(name, date_time=FIXED_TIME)
    info.compress_type = zipfile.ZIP_DEFLATED
    info.external_attr = (0o755 if executable else 0o644) << 16
    archive.writestr(info, data)


# ---- NuGet ----

CONTENT_TYPES = """<?xml version="1.0" encoding="utf-8"?>
<Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types">
  <Default Extension="rels" ContentType="application/vnd.openxmlformats-package.relationships+xml" />
  <Default Extension="psmdcp" ContentType="application/vnd.openxmlformats-package.core-properties+xml" />
{defaults}</Types>
"""

RELS = """<?xml version="1.0" encoding="utf-8"?>
<Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships">
  <Relationship Type="http://schemas.microsoft.com/packaging/2010/07/manifest" Target="/Varad.nuspec" Id="R{manifest_id}" />
  <Relationship Type="http://schemas.openxmlformats.org/package/2006/relationships/metadata/core-properties" Target="/{psmdcp}" Id="R{props_id}" />
</Relationships>
"""

CORE_PROPERTIES = """<?xml version="1.0" encoding="utf-8"?>
<coreProperties xmlns:dc="http://purl.org/dc/elements/1.1/" xmlns:dcterms="http://purl.org/dc/terms/" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" xmlns="http://schemas.openxmlformats.org/package/2006/metadata/core-properties">
  <dc:creator>varad</dc:creator>
  <dc:description>High-resolution industrial anomaly detection (VarAD)</dc:description>
  <dc:identifier>Varad</dc:identifier>
  <version>{version}</version>
  <keywords>anomaly-detection defect-detection inspection onnx</keywords>
  <lastModifiedBy>make package</lastModifiedBy>
</coreProperties>
"""


def nuget(args: argparse.Namespace) -> None:
    nuspec = (ROOT / "packaging/nuget/Varad.nuspec.in").read_text()
    nuspec = nuspec.replace("@VERSION@", args.version).replace("@ORT_VERSION@", args.ort_version)
    targets = (ROOT / "packaging/nuget/Varad.targets").read_bytes()
    files = {
        "Varad.nuspec": nuspec.encode(),
        "README.md": (ROOT / "packaging/nuget/README.md").read_bytes(),
        "lib/netstandard2.0/Varad.dll": pathlib.Path(args.assembly).read_bytes(),
        "runtimes/win-x64/native/varad.dll": pathlib.Path(args.dll).read_bytes(),
        "runtimes/linux-x64/native/libvarad.so": pathlib.Path(args.so).read_bytes(),
        # buildTransitive/ for PackageReference (also in projects that reference Varad
        # through another package), build/ for packages.config and NuGet before 5.0.
        "buildTransitive/Varad.targets": targets,
        "build/Varad.targets": targets,
    }
    if args.doc:
        files["lib/netstandard2.0/Varad.xml"] = pathlib.Path(args.doc).read_bytes()
    # The package format (OPC) names every part's content type, by extension.
    extensions = sorted({name.rsplit(".", 1)[1] for name in files})
    defaults = "".join(f'  <Default Extension="{ext}" ContentType="application/octet" />\n'
                       for ext in extensions)
    digest = hashlib.sha256(args.version.encode()).hexdigest().upper()
    psmdcp = f"package/services/metadata/core-properties/{digest[:32].lower()}.psmdcp"
    with zipfile.ZipFile(args.out, "w") as archive:
        add(archive, "_rels/.rels", RELS.format(manifest_id=digest[:16], props_id=digest[16:32],
                                                 psmdcp=psmdcp).encode())
        add(archive, "Varad.nuspec", files.pop("Varad.nuspec"))
        for name, data in files.items():
            add(archive, name, data, executable=name.endswith(".so"))
        add(archive, psmdcp, CORE_PROPERTIES.format(version=args.version).encode())
        add(archive, "[Content_Types].xml", CONTENT_TYPES.format(defaults=defaults).encode())


# ---- Python wheel ----

METADATA = """Metadata-Version: 2.1
Name: varad
Version: {version}
Summary: High-resolution industrial anomaly detection (VarAD), Python bindings with the native library
License: Apache-2.0
Classifier: License :: OSI Approved :: Apache Software License
Classifier: Operating System :: {os_classifier}
Classifier: Programming Language :: Python :: 3
Requires-Python: >=3.8
Requires-Dist: numpy>=1.21
Requires-Dist: onnxruntime>=1.17
Description-Content-Type: text/markdown

{readme}"""

WHEEL = """Wheel-Version: 1.0
Generator: varad make package
Root-Is-Purelib: false
Tag: {tag}
"""

WHEEL_README = """# varad

High-resolution industrial anomaly detection (VarAD) from Python, over varad's C ABI
(ctypes: nothing to compile). The native library is inside the package; ONNX Runtime is
the one of the `onnxruntime` package this wheel depends on (or `runtime_path=`, or the
`ORT_DYLIB_PATH` environment variable).

    import varad
    model = varad.Model("backbone.onnx", input_size=(224, 224), epochs=3)
    model.train(good_images)              # numpy arrays, HxW or HxWxC uint8/uint16
    result = model.score(image)           # map, image_score, decision, p_value, regions
    model.save("model.varad"); model = varad.Model.load("model.varad")
"""


def record_line(name: str, data: bytes) -> str:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return f"{name},sha256={digest},{len(data)}"


def wheel(args: argparse.Namespace) -> None:
    tag = f"py3-none-{args.platform}"
    info = f"varad-{args.version}.dist-info"
    files = {
        "varad/__init__.py": (ROOT / "bindings/python/varad/__init__.py").read_bytes(),
        f"varad/{pathlib.Path(args.so).name}": pathlib.Path(args.so).read_bytes(),
        f"{info}/METADATA": METADATA.format(
            version=args.version, readme=WHEEL_README,
            os_classifier="Microsoft :: Windows" if args.platform.startswith("win") else "POSIX :: Linux",
        ).encode(),
        f"{info}/WHEEL": WHEEL.format(tag=tag).encode(),
        f"{info}/LICENSE": (ROOT / "LICENSE").read_bytes(),
    }
    record = "".join(record_line(name, data) + "\n" for name, data in files.items())
    record += f"{info}/RECORD,,\n"
    out = pathlib.Path(args.out_dir) / f"varad-{args.version}-{tag}.whl"
    with zipfile.ZipFile(out, "w") as archive:
        for name, data in files.items():
            add(archive, name, data, executable=name.endswith((".so", ".dll")))
        add(archive, f"{info}/RECORD", record.encode())
    print(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    n = sub.add_parser("nuget")
    n.add_argument("--version", required=True)
    n.add_argument("--ort-version", required=True)
    n.add_argument("--assembly", required=True)
    n.add_argument("--doc")
    n.add_argument("--dll", required=True)
    n.add_argument("--so", required=True)
    n.add_argument("--out", required=True)
    w = sub.add_parser("wheel")
    w.add_argument("--version", required=True)
    w.add_argument("--so", required=True, help="libvarad.so, or varad.dll for a Windows wheel")
    # The platform tag (manylinux_2_35_x86_64: see package.sh).
    w.add_argument("--platform", required=True)
    w.add_argument("--out-dir", required=True)
    args = parser.parse_args()
    {"nuget": nuget, "wheel": wheel}[args.command](args)


if __name__ == "__main__":
    main()
