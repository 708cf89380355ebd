#!/usr/bin/env bash
# Runs the three examples on a generated image folder and checks their output.
#   check.sh BIN_DIR BACKBONE PYTHON OUT_DIR
# EXAMPLE_RUNNER, when set, is the command that runs each program (the Windows build runs
# under tests/windows/wine-run.sh).
set -euo pipefail
bin=$1 backbone=$2 python=$3 out=$4
run=${EXAMPLE_RUNNER:-}
rm -rf "$out" && mkdir -p "$out/heatmaps"
"$python" "$(dirname "$0")/make_images.py" "$out/images"
$run "$bin/train" --input 112 --epochs 3 "$backbone" "$out/images/good" "$out/model.varad" | tee "$out/train.log"
grep -q "^training on 8 images" "$out/train.log"
grep -q "^saved " "$out/train.log"
$run "$bin/score" "$out/model.varad" "$out/heatmaps" "$out"/images/test/*.png | tee "$out/score.log"
[ "$(grep -c ' decision=' "$out/score.log")" -eq 3 ] || { echo "score: expected 3 results"; exit 1; }
for f in "$out"/images/test/*.png; do
  [ -s "$out/heatmaps/$(basename "$f").heatmap.png" ] || { echo "no heatmap for $f"; exit 1; }
done
# Every decision is one of the three; the tiny test backbone is not trained to see defects,
# so which image scores highest is reported, not checked (tests/detection.rs checks that
# on a real backbone).
! grep ' decision=' "$out/score.log" | grep -vqE 'decision=(PASS|REVIEW|FAIL) regions=[0-9]+$' || { echo "bad score line"; exit 1; }
echo "highest score: $(grep ' score=' "$out/score.log" | sed 's/ score=\([0-9.]*\).*/ \1/' | sort -k2 -g | tail -n 1)"
$run "$bin/threads" "$out/model.varad" 4 "$out"/images/test/*.png | tee "$out/threads.log"
grep -q "identical to serial" "$out/threads.log"
echo "examples: all checks passed"
