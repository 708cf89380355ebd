"""The committed tests/data/tiny_vit.onnx: reproducible byte for byte, small, on contract,
and numerically the ViT it claims to be."""

from __future__ import annotations

import os

import numpy as np
import onnx
import pytest
from conftest import REPO, run, session

import make_tiny_vit
import vit_reference as ref
from backbones import vit

COMMITTED = os.path.join(REPO, "tests", "data", "tiny_vit.onnx")


def test_script_reproduces_the_committed_file(tmp_path):
    out = str(tmp_path / "tiny_vit.onnx")
    assert make_tiny_vit.main(["--out", out]) == 0
    with open(out, "rb") as f:
        fresh = f.read()
    with open(COMMITTED, "rb") as f:
        committed = f.read()
    assert fresh == committed, (
        "tests/data/tiny_vit.onnx differs from what scripts/make_tiny_vit.py writes now; "
        "if the change is intended, regenerate it with "
        "`.deps/venv/bin/python scripts/make_tiny_vit.py --out tests/data/tiny_vit.onnx`"
    )


def test_committed_file_is_small_and_on_contract():
    assert os.path.getsize(COMMITTED) < 300_000
    model = onnx.load(COMMITTED)
    onnx.checker.check_model(model)
    assert model.opset_import[0].version == 17 and model.ir_version <= 8
    meta = {p.key: p.value for p in model.metadata_props}
    assert meta["varad.contract"] == "1"
    assert meta["varad.name"] == "tiny-vit"
    assert meta["varad.input_multiple"] == "14"
    assert meta["varad.input_size"] == "112x112"
    assert meta["varad.output_strides"] == "14,14,14"
    assert meta["varad.license"] and meta["varad.source"]
    assert [i.name for i in model.graph.input] == ["image"]
    assert [o.name for o in model.graph.output] == ["block1", "block2", "block3"]


@pytest.mark.parametrize("batch,height,width", [(1, 112, 112), (2, 70, 126), (1, 224, 98)])
def test_committed_file_matches_numpy_reference(batch, height, width):
    sd = vit.random_state_dict(make_tiny_vit.CONFIG, make_tiny_vit.SEED)
    image = np.random.default_rng(height * width).random((batch, 3, height, width), dtype=np.float32)
    outs = run(session(COMMITTED), image)
    refs = ref.forward(sd, image, 14, make_tiny_vit.CONFIG.heads, [1, 2, 3])
    for (name, got), want in zip(outs.items(), refs):
        assert got.shape == (batch, 32, height // 14, width // 14), name
        np.testing.assert_allclose(got, want, atol=1e-4, rtol=0, err_msg=name)
    # the three maps differ (each block does work)
    assert np.abs(outs["block1"] - outs["block3"]).mean() > 0.1
