"""Shared fixtures. The tests import the exporters from scripts/ and need only the
packages in scripts/requirements.txt; torch is optional (its tests skip with a reason)."""

from __future__ import annotations

import os
import sys

import numpy as np
import pytest

SCRIPTS = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
REPO = os.path.dirname(SCRIPTS)
for p in (SCRIPTS, os.path.dirname(os.path.abspath(__file__))):
    if p not in sys.path:
        sys.path.insert(0, p)


def session(model_or_path):
    """An ONNX Runtime CPU session for a ModelProto or a file path."""
    import onnxruntime as ort

    src = model_or_path if isinstance(model_or_path, str) else model_or_path.SerializeToString()
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 2
    return ort.InferenceSession(src, opts, providers=["CPUExecutionProvider"])


def run(sess, image: np.ndarray) -> dict[str, np.ndarray]:
    names = [o.name for o in sess.get_outputs()]
    return dict(zip(names, sess.run(names, {"image": image.astype(np.float32)})))


def torch_or_skip():
    try:
        import torch
    except ImportError:
        pytest.skip("torch is not installed: torch parity check skipped (the numpy checks still ran)")
    return torch


@pytest.fixture(scope="session")
def efficientnet_weights():
    from backbones import efficientnet_lite

    return efficientnet_lite.load_weights()
