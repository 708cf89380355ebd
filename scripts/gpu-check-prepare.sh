#!/usr/bin/env bash
# Builds, on a machine WITHOUT a GPU, everything scripts/gpu-check.sh needs on the GPU
# machine (which has no Rust toolchain and no network), into out/gpu-check/:
#   bin/cuda_parity, bin/cuda_kernels_compile   the CUDA test binaries (release, stripped)
#   bin/gpu_bench                               examples/gpu_bench.rs (release, stripped)
#   efficientnet_lite0.onnx                     the bundled backbone (from make setup)
# The ViT-S/14 backbone (88 MB of random weights) is not carried: the GPU machine's Python
# writes it (scripts/make_bench_vits14.py).
#
# Then, from the session that has the GPU tool:
#   run(command="bash scripts/gpu-check.sh", carry=["out/gpu-check"], timeout_s=560)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
out=out/gpu-check
rm -rf "$out"
mkdir -p "$out/bin"

echo "== building release test and bench binaries"
# --message-format=json names the test executables (their file names carry a hash).
cargo test --release --features internals --no-run --test cuda_parity --test cuda_kernels_compile \
  --message-format=json 2>/dev/null |
  python3 -c '
import json, sys, shutil
for line in sys.stdin:
    try:
        m = json.loads(line)
    except ValueError:
        continue
    exe = m.get("executable")
    if m.get("reason") == "compiler-artifact" and exe and m["target"]["kind"] == ["test"]:
        shutil.copy(exe, sys.argv[1] + "/" + m["target"]["name"])
        print("  ", m["target"]["name"])
' "$out/bin"
cargo build --release --features internals --example gpu_bench
cp target/release/examples/gpu_bench "$out/bin/"
for f in "$out"/bin/*; do
  strip --strip-debug "$f"
done
[ -x "$out/bin/cuda_parity" ] && [ -x "$out/bin/cuda_kernels_compile" ] ||
  { echo "gpu-check-prepare: the test binaries were not found" >&2; exit 1; }

backbone=.deps/backbones/efficientnet_lite0.onnx
if [ -f "$backbone" ]; then
  cp "$backbone" "$out/"
else
  echo "gpu-check-prepare: $backbone missing (run make setup); EfficientNet-Lite0 will be skipped" >&2
fi
git rev-parse HEAD > "$out/commit"
du -sh "$out"
echo "gpu-check-prepare: done; carry out/gpu-check (64 MiB limit with the tree)"
