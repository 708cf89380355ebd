#!/usr/bin/env python3
"""Exports a DINOv2 ViT-S/14 or ViT-B/14 checkpoint as a varad backbone ONNX file.

Needs the official pretrained weights, e.g. dinov2_vits14_pretrain.pth (not downloaded
here: bring your own file). Outputs block4, block8, block12 by default: the patch tokens
of those blocks after the final LayerNorm, as [B, D, H/14, W/14] (what DINOv2's
get_intermediate_layers(x, n=[3, 7, 11], reshape=True, norm=True) returns).

    .deps/venv/bin/python scripts/export_dinov2.py --checkpoint dinov2_vits14_pretrain.pth \\
        --arch vits14 --out out/dinov2_vits14.onnx

The checkpoint is read with torch when torch is importable, else with the torch-free
reader in backbones/torchfile.py (zip or legacy torch.save format).
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import os
import re
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from backbones import torchfile, vit  # noqa: E402
from backbones.onnx_graph import save  # noqa: E402

LICENSE = "Apache-2.0 (DINOv2 pretrained weights, Meta AI)"


def load_checkpoint(path: str, use_torch: bool | None = None) -> tuple[dict[str, np.ndarray], str]:
    """Returns (state_dict as float32 numpy arrays, which reader was used)."""
    torch = None
    if use_torch is not False:
        try:
            import torch  # noqa: F401
        except ImportError:
            if use_torch:
                raise
    if torch is not None:
        obj = torch.load(path, map_location="cpu", weights_only=True)
        if isinstance(obj, dict):
            obj = {k: (v.detach().float().numpy() if torch.is_tensor(v) else v) for k, v in _unwrap(obj).items()}
        reader = f"torch {torch.__version__}"
    else:
        obj = torchfile.load(path)
        reader = "backbones.torchfile (no torch)"
    sd = torchfile.unwrap_state_dict(_unwrap(obj))
    return normalise_keys(sd), reader


def _unwrap(obj):
    if isinstance(obj, dict) and "teacher" in obj and isinstance(obj["teacher"], dict):
        return obj["teacher"]
    if isinstance(obj, dict) and "model" in obj and isinstance(obj["model"], dict):
        return obj["model"]
    return obj


def normalise_keys(sd: dict) -> dict[str, np.ndarray]:
    """Accepts the official names, plus two variants of DINOv2 training checkpoints:
    a 'backbone.' prefix (teacher/student dicts) and chunked blocks 'blocks.{c}.{i}.'."""
    out = {}
    for k, v in sd.items():
        if k.startswith("backbone."):
            k = k[len("backbone."):]
        elif k.startswith(("dino_head.", "ibot_head.")):
            continue
        k = re.sub(r"^blocks\.\d+\.(\d+)\.", r"blocks.\1.", k)
        out[k] = np.asarray(v, dtype=np.float32)
    return out


def parse_layers(text: str) -> list[int]:
    try:
        layers = [int(s) for s in text.split(",") if s.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"--layers wants integers like 4,8,12, got {text!r}")
    if not layers or sorted(set(layers)) != layers or layers[0] < 1 or layers[-1] > 12:
        raise argparse.ArgumentTypeError(f"--layers wants increasing block numbers in 1..12, got {text!r}")
    return layers


def sha256(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def export(checkpoint: str, arch: str, out: str, layers: list[int], use_torch: bool | None = None) -> str:
    sd, reader = load_checkpoint(checkpoint, use_torch)
    cfg = dataclasses.replace(
        vit.ARCHS[arch],
        license=LICENSE,
        source=f"DINOv2 checkpoint {os.path.basename(checkpoint)} (sha256 {sha256(checkpoint)})",
    )
    model = vit.build(sd, cfg, layers)
    save(model, out)
    return reader


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--checkpoint", required=True, help="DINOv2 state_dict (.pth), e.g. dinov2_vits14_pretrain.pth")
    ap.add_argument("--arch", required=True, choices=sorted(vit.ARCHS), help="vits14 or vitb14")
    ap.add_argument("--out", required=True, help="ONNX file to write")
    ap.add_argument("--layers", type=parse_layers, default=[4, 8, 12],
                    help="1-based blocks to output, increasing (default 4,8,12)")
    ap.add_argument("--no-torch", action="store_true", help="read the checkpoint without torch even if it is installed")
    args = ap.parse_args(argv)
    try:
        reader = export(args.checkpoint, args.arch, args.out, args.layers, False if args.no_torch else None)
    except (ValueError, torchfile.CheckpointError, OSError) as e:
        print(f"export_dinov2: {e}", file=sys.stderr)
        return 1
    print(f"wrote {args.out} ({os.path.getsize(args.out) / 1e6:.1f} MB; "
          f"outputs {', '.join(f'block{L}' for L in args.layers)}; checkpoint read with {reader})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
