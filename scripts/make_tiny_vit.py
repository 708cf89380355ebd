#!/usr/bin/env python3
"""Writes the tiny random-weight ViT that the Rust unit tests use (tests/data/tiny_vit.onnx).

Same builder and contract as the DINOv2 exporter, with small dimensions: patch 14,
dim 32, depth 3, 2 heads, MLP 128, an 8x8 position grid (preferred input 112x112), and
outputs block1, block2, block3. Weights are drawn from a fixed seed, so re-running this
script reproduces the committed file byte for byte.

    .deps/venv/bin/python scripts/make_tiny_vit.py --out tests/data/tiny_vit.onnx
"""

from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from backbones import vit  # noqa: E402
from backbones.onnx_graph import save  # noqa: E402

SEED = 20240611
CONFIG = vit.ViTConfig(
    name="tiny-vit",
    patch_size=14,
    dim=32,
    depth=3,
    heads=2,
    mlp_hidden=128,
    pos_grid=8,
    input_size=(112, 112),
    layers=(1, 2, 3),
    license="CC0-1.0 (random weights, no training data)",
    source=f"scripts/make_tiny_vit.py, numpy default_rng seed {SEED}",
)


def build():
    return vit.build(vit.random_state_dict(CONFIG, SEED), CONFIG)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True, help="ONNX file to write")
    args = ap.parse_args(argv)
    save(build(), args.out)
    print(f"wrote {args.out} ({os.path.getsize(args.out)} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
