#!/usr/bin/env bash
# The CUDA check on a machine with an NVIDIA GPU, in one go and under 8 minutes:
# environment report, the CUDA kernels' compile check, the CPU-vs-CUDA parity tests,
# predictor timings, end-to-end images/s (DINOv2 ViT-S/14 shapes at 1022x1022 with random
# weights, EfficientNet-Lite0 at 1024x1024), and training time (10 epochs x 200 images),
# then one summary block.
#
# The GPU machine has no Rust toolchain and no network: the binaries come prebuilt from
# scripts/gpu-check-prepare.sh (run it first, on a machine without a GPU), in
# out/gpu-check/ (carry that folder). The ViT backbone is written there by Python
# (numpy + onnx). ONNX Runtime, cuBLAS and NVRTC are looked for on the machine (system
# CUDA, pip wheels); what is found, and what is not, is printed.
#
# Environment: GPU_CHECK_BUDGET_S (default 470) bounds the whole run; each step also has
# its own timeout and is skipped when the budget cannot hold it. Logs and the summary go
# to $OUT (when set) or out/gpu-check/results.
set -uo pipefail
# (no -e: a failing step is recorded and the next one runs; the exit status at the end
# says whether any step failed.)

root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
prep=out/gpu-check
bin=$prep/bin
results=${OUT:-$prep/results}
mkdir -p "$results"
log=$results/gpu-check.log
summary=$results/summary.txt
: > "$log"
budget=${GPU_CHECK_BUDGET_S:-470}
start=$(date +%s)
declare -a status_lines=()
failed=0

say() { echo "$*" | tee -a "$log"; }

# step NAME TIMEOUT_S COMMAND...: runs with a timeout bounded by the remaining budget.
step() {
  local name=$1 limit=$2
  shift 2
  local now left rc
  now=$(date +%s)
  left=$((budget - (now - start)))
  if [ "$left" -lt 15 ]; then
    status_lines+=("$name: SKIPPED (time budget spent)")
    say "== $name: skipped, budget spent"
    return 0
  fi
  [ "$limit" -gt "$left" ] && limit=$left
  say "== $name (timeout ${limit}s)"
  local t0=$(date +%s)
  timeout --kill-after=5 "$limit" "$@" 2>&1 | tee -a "$log"
  rc=${PIPESTATUS[0]}
  local dt=$(($(date +%s) - t0))
  if [ "$rc" -eq 0 ]; then
    status_lines+=("$name: ok (${dt}s)")
  elif [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ]; then
    status_lines+=("$name: TIMED OUT after ${limit}s")
    failed=1
  else
    status_lines+=("$name: FAILED (exit $rc, ${dt}s)")
    failed=1
  fi
  return 0
}

# ---------------------------------------------------------------- environment
say "== environment"
say "commit of the binaries: $(cat "$prep/commit" 2>/dev/null || echo unknown); tree: $(git rev-parse --short HEAD 2>/dev/null || echo '?')"
if command -v nvidia-smi >/dev/null; then
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>&1 | tee -a "$log"
else
  say "nvidia-smi: not found"
fi
if [ ! -x "$bin/cuda_parity" ] || [ ! -x "$bin/gpu_bench" ]; then
  say "gpu-check: $bin holds no prebuilt binaries: run scripts/gpu-check-prepare.sh on the build machine and carry out/gpu-check"
  if command -v cargo >/dev/null; then
    say "cargo found here: trying an offline release build instead"
    step "build (cargo, offline)" 300 cargo build --release --offline --features internals --example gpu_bench --tests
  fi
  exit 1
fi

PY=$(command -v python3 || true)
# First existing file among the globs.
first() { for g in "$@"; do for f in $g; do [ -e "$f" ] && { echo "$f"; return 0; }; done; done; return 1; }
site_dirs=""
if [ -n "$PY" ]; then
  site_dirs=$("$PY" -c 'import site, sys; print(" ".join(site.getsitepackages() + [site.getusersitepackages()]))' 2>/dev/null || true)
fi
lib_search=(/usr/local/cuda/lib64 /usr/local/cuda/targets/x86_64-linux/lib /usr/lib/x86_64-linux-gnu)
for s in $site_dirs; do lib_search+=("$s/nvidia/cu13/lib" "$s/nvidia/cublas/lib" "$s/nvidia/cuda_nvrtc/lib"); done

find_lib() { # name pattern -> directory on stdout
  local pat=$1
  if ldconfig -p 2>/dev/null | grep -q "$pat"; then
    ldconfig -p | grep "$pat" | head -1 | sed 's/.*=> //' | xargs dirname
    return 0
  fi
  for d in "${lib_search[@]}"; do
    f=$(first "$d/$pat*") && { dirname "$f"; return 0; }
  done
  return 1
}
for lib in libcuda.so libcublas.so libcublasLt.so libnvrtc.so; do
  if d=$(find_lib "$lib"); then
    say "$lib: $d"
    case ":${LD_LIBRARY_PATH:-}:" in *":$d:"*) ;; *) export LD_LIBRARY_PATH="$d${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" ;; esac
  else
    say "$lib: NOT FOUND"
  fi
done
if nv=$(first "$(find_lib libnvrtc.so 2>/dev/null)/libnvrtc.so.13" 2>/dev/null); then
  export VARAD_NVRTC_PATH=$nv
fi

# ONNX Runtime: the Python wheel's library, GPU build preferred.
ort_info=""
if [ -n "$PY" ]; then
  ort_info=$("$PY" - <<'PYEOF' 2>/dev/null
import glob, os
import onnxruntime as ort
d = os.path.join(os.path.dirname(ort.__file__), "capi")
libs = sorted(glob.glob(os.path.join(d, "libonnxruntime.so*")))
print(ort.__version__, ",".join(ort.get_available_providers()), libs[-1] if libs else "")
PYEOF
)
fi
if [ -n "$ort_info" ]; then
  read -r ort_version ort_providers ort_lib <<<"$ort_info"
  say "onnxruntime (Python wheel) $ort_version, providers: $ort_providers"
  [ -n "${ort_lib:-}" ] && export ORT_DYLIB_PATH=${ORT_DYLIB_PATH:-$ort_lib}
  case "$ort_providers" in
    *CUDAExecutionProvider*) say "ONNX Runtime has the CUDA execution provider: the backbone can run on the GPU" ;;
    *) say "ONNX Runtime has NO CUDA execution provider (onnxruntime-gpu is not installed): the backbone runs on the CPU, so end-to-end numbers are bounded by the CPU backbone" ;;
  esac
else
  say "onnxruntime: not found in Python; ORT_DYLIB_PATH=${ORT_DYLIB_PATH:-unset}"
fi
say "ORT_DYLIB_PATH=${ORT_DYLIB_PATH:-unset}"
say "LD_LIBRARY_PATH=${LD_LIBRARY_PATH:-}"
say "VARAD_NVRTC_PATH=${VARAD_NVRTC_PATH:-unset}"

# ---------------------------------------------------------------- tests
step "kernels compile (NVRTC)" 60 "$bin/cuda_kernels_compile" --nocapture
# The emulator's tests (CI runs them on every push) need a C++ compiler and minutes of CPU:
# here the GPU itself is checked.
step "CUDA parity tests" 150 "$bin/cuda_parity" --nocapture --test-threads=1 --skip emulated
if grep -q "SKIPPED on CUDA" "$log"; then
  status_lines+=("CUDA parity tests: the CUDA side SKIPPED (see the reason in the log)")
  failed=1
fi

# ---------------------------------------------------------------- benchmarks
export RUST_LOG=${RUST_LOG:-info}
step "predictor timings (ViT-S/14 shapes)" 90 "$bin/gpu_bench" predictor 73 384 3

vit=/tmp/dinov2_vits14_random.onnx
if [ -n "$PY" ]; then
  step "write ViT-S/14 ONNX (random weights)" 90 "$PY" scripts/make_bench_vits14.py --out "$vit"
fi
# A CPU backbone takes about a second per 1022 px image: fewer images then.
n_score=24
case "${ort_providers:-}" in *CUDAExecutionProvider*) ;; *) n_score=4 ;; esac
if [ -f "$vit" ]; then
  step "end to end, ViT-S/14 at 1022" 120 "$bin/gpu_bench" score "$vit" 1022 "$n_score"
else
  status_lines+=("end to end, ViT-S/14: SKIPPED (no ONNX: python3 with numpy + onnx needed)")
fi
if [ -f "$prep/efficientnet_lite0.onnx" ]; then
  step "end to end, EfficientNet-Lite0 at 1024" 90 "$bin/gpu_bench" score "$prep/efficientnet_lite0.onnx" 1024 "$n_score"
else
  status_lines+=("end to end, EfficientNet-Lite0: SKIPPED (not carried)")
fi
if [ -f "$vit" ]; then
  # Caching 200 images needs the backbone on the GPU to fit the budget; with a CPU
  # backbone, train on 20 images and scale the fit time by 10 (marked as such).
  if grep -q "RESULT backbone_dinov2_vits14_random_device=cuda" "$log"; then
    step "training 10 epochs x 200 images (ViT-S/14, 1022)" 200 "$bin/gpu_bench" train "$vit" 1022 200 10
  else
    step "training 10 epochs x 20 images (ViT-S/14, 1022; CPU backbone)" 150 "$bin/gpu_bench" train "$vit" 1022 20 10
  fi
fi

# ---------------------------------------------------------------- summary
result() { grep -o "RESULT $1=[^ ]*" "$log" | tail -1 | cut -d= -f2; }
vit_ips=$(result score_dinov2_vits14_random_1022_images_per_s)
fit200=$(result train_fit_10x200_s)
fit20=$(result train_fit_10x20_s)
pred_train=$(result predictor_train_10x200_s)
{
  echo "================ varad GPU check summary ================"
  echo "elapsed: $(($(date +%s) - start)) s of a ${budget} s budget"
  nvidia-smi --query-gpu=name,driver_version --format=csv,noheader 2>/dev/null | sed 's/^/gpu: /'
  echo "onnxruntime: ${ort_version:-none} (providers: ${ort_providers:-?})"
  for l in "${status_lines[@]}"; do echo "step  $l"; done
  grep -o "RESULT .*" "$log" | sed 's/^RESULT /value /'
  echo "target ViT-S/14 1022 end to end >= 60 images/s: ${vit_ips:-not measured}"
  if [ -n "$fit200" ]; then
    echo "target 10 epochs x 200 images <= 60 s: fit took $fit200 s (plus token caching, see train_cache)"
  elif [ -n "$fit20" ]; then
    echo "target 10 epochs x 200 images <= 60 s: ~$(awk "BEGIN{print $fit20*10}") s extrapolated from 20 images (CPU backbone)"
  else
    echo "target 10 epochs x 200 images <= 60 s: not measured end to end"
  fi
  echo "predictor-only training, 10 x 200 images extrapolated: ${pred_train:-not measured} s"
  echo "========================================================="
} | tee "$summary" | tee -a "$log"
exit $failed
