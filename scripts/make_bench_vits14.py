#!/usr/bin/env python3
"""Writes a DINOv2 ViT-S/14 backbone with random weights (the real architecture, shapes
and outputs block4, block8, block12 at 1022x1022 -> 73x73 tokens) for timing only: no
checkpoint exists on these machines, and speed does not depend on the weights' values.

    python3 scripts/make_bench_vits14.py --out /tmp/dinov2_vits14_random.onnx

Needs numpy and onnx only (scripts/gpu-check.sh runs it on the GPU machine, whose Python
has both).
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from backbones import vit  # noqa: E402
from backbones.onnx_graph import save  # noqa: E402

SEED = 14


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True, help="ONNX file to write")
    args = ap.parse_args(argv)
    cfg = dataclasses.replace(
        vit.ARCHS["vits14"],
        name="dinov2-vits14-random",
        license="CC0-1.0 (random weights, for timing only)",
        source=f"scripts/make_bench_vits14.py, numpy default_rng seed {SEED}",
    )
    save(vit.build(vit.random_state_dict(cfg, SEED), cfg, list(cfg.layers)), args.out)
    print(f"wrote {args.out} ({os.path.getsize(args.out) / 1e6:.1f} MB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
