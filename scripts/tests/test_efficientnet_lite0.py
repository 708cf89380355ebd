"""EfficientNet-Lite0: the weights are read right (ImageNet classification of two
scikit-image photos), the normalisation and padding are the ones these weights were
trained with, and the feature-map export follows the backbone contract."""

from __future__ import annotations

import os
import subprocess

import numpy as np
import onnx
import pytest
import skimage.data
import skimage.transform
from conftest import REPO, SCRIPTS, run, session

import export_efficientnet_lite0
from backbones import efficientnet_lite as E

CAT_CLASSES = {281: "tabby", 282: "tiger cat", 283: "Persian cat", 284: "Siamese cat", 285: "Egyptian cat"}
COFFEE_CLASSES = {967: "espresso", 968: "cup", 504: "coffee mug"}


def _resize(image: np.ndarray, size: int = 224) -> np.ndarray:
    """uint8 HxWx3 -> float32 [3, size, size] in [0, 1] (plain anti-aliased resize)."""
    x = skimage.transform.resize(image, (size, size), order=1, anti_aliasing=True)
    return x.transpose(2, 0, 1).astype(np.float32)


def _probs(sess, batch: np.ndarray) -> np.ndarray:
    logits = run(sess, batch)["logits"].astype(np.float64)
    e = np.exp(logits - logits.max(1, keepdims=True))
    return e / e.sum(1, keepdims=True)


@pytest.fixture(scope="module")
def classifier(efficientnet_weights):
    return session(E.build(efficientnet_weights, classifier=True))


def test_classifies_cat_and_coffee(classifier):
    batch = np.stack([_resize(skimage.data.chelsea()), _resize(skimage.data.coffee())])
    probs = _probs(classifier, batch)
    for p, name, wanted in zip(probs, ["chelsea", "coffee"], [CAT_CLASSES, COFFEE_CLASSES]):
        top5 = np.argsort(-p)[:5]
        print(f"{name} top-5: " + ", ".join(f"{i} ({p[i]:.3f})" for i in top5))
        assert top5[0] in wanted, f"{name}: top-1 is {top5[0]}, wanted one of {wanted}"
        assert set(top5) & set(wanted)


def _random_crops(image, rng, n):
    h, w, _ = image.shape
    out = []
    for _ in range(n):
        s = rng.uniform(0.55, 1.0)
        ch, cw = int(h * s), min(w, int(w * s * rng.uniform(0.85, 1.15)))
        y, x = rng.integers(0, h - ch + 1), rng.integers(0, w - cw + 1)
        crop = image[y : y + ch, x : x + cw]
        out.append(_resize(crop[:, ::-1] if rng.random() < 0.5 else crop))
    return np.stack(out)


def test_padding_and_normalisation_are_the_trained_ones(efficientnet_weights, classifier):
    """Over random crops, TF 'same' padding + TF scaling gives the lowest loss on the right
    classes (measured mean negative log-likelihood: 0.046 vs 0.074 with symmetric padding
    and 0.058 with ImageNet mean/std). The padding margin is wide; the normalisation one is
    narrow here, and test_stem_statistics_match_tf_scaling settles that one clearly."""
    rng = np.random.default_rng(0)
    sets = [(_random_crops(skimage.data.chelsea(), rng, 10), list(CAT_CLASSES)),
            (_random_crops(skimage.data.coffee(), rng, 10), list(COFFEE_CLASSES))]
    nll = {}
    for padding, norm in [("same", "tf"), ("symmetric", "tf"), ("same", "imagenet")]:
        sess = classifier if (padding, norm) == ("same", "tf") else session(
            E.build(efficientnet_weights, classifier=True, padding=padding, normalisation=norm))
        nll[padding, norm] = float(np.mean([-np.log(_probs(sess, x)[:, cls].sum(1)).mean() for x, cls in sets]))
    print("mean NLL of the right classes over crops:", {f"{p}/{n}": round(v, 3) for (p, n), v in nll.items()})
    best = nll["same", "tf"]
    assert best < 0.1
    assert nll["symmetric", "tf"] > 1.3 * best
    assert nll["same", "imagenet"] > best


def test_stem_statistics_match_tf_scaling(efficientnet_weights):
    """With the right input scaling, the stem convolution's raw outputs on photos have
    about the variance its BatchNorm was trained on; ImageNet mean/std is ~2.2x too large."""
    sd = efficientnet_weights
    w = sd["_conv_stem.weight"].astype(np.float64).reshape(32, 27)
    live = sd["_bn0.running_var"] > 1e-3
    ratios = {}
    for norm, (mean, std) in E.NORMALISATIONS.items():
        outs = []
        for image in (skimage.data.chelsea(), skimage.data.coffee(), skimage.data.astronaut()):
            x = (_resize(image).transpose(1, 2, 0) * 255.0 - np.array(mean)) / np.array(std)
            h, wd, _ = x.shape
            cols = np.stack([x[i : h - 2 + i, j : wd - 2 + j] for i in range(3) for j in range(3)], -1)
            outs.append(cols.reshape(-1, 27) @ w.T)  # columns ordered (c, ky, kx) like the weight
        var = np.concatenate(outs).var(0)
        ratios[norm] = float(np.median(var[live] / sd["_bn0.running_var"][live]))
    print("median variance ratio (photos / BatchNorm running_var):", ratios)
    assert abs(np.log(ratios["tf"])) < abs(np.log(ratios["imagenet"]))
    assert 0.4 < ratios["tf"] < 2.0


def test_feature_export_follows_the_contract(tmp_path):
    out = str(tmp_path / "eff.onnx")
    assert export_efficientnet_lite0.main(["--out", out, "--strides", "4,8,16,32"]) == 0
    model = onnx.load(out)
    onnx.checker.check_model(model)
    assert model.opset_import[0].version == 17 and model.ir_version <= 8
    meta = {p.key: p.value for p in model.metadata_props}
    assert meta["varad.contract"] == "1"
    assert meta["varad.name"] == "efficientnet-lite0"
    assert meta["varad.input_multiple"] == "32"
    assert meta["varad.input_size"] == "1024x1024"
    assert meta["varad.output_strides"] == "4,8,16,32"
    assert meta["varad.default_levels"] == "stride8,stride16"
    assert "Apache-2.0" in meta["varad.license"] and meta["varad.source"]
    assert [i.name for i in model.graph.input] == ["image"]
    dims = [d.dim_param or d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim]
    assert dims == ["batch", 3, "height", "width"]
    sess = session(out)
    image = np.random.default_rng(0).random((2, 3, 96, 160), dtype=np.float32)
    outs = run(sess, image)
    assert list(outs) == ["stride4", "stride8", "stride16", "stride32"]
    for (name, arr), (s, c) in zip(outs.items(), [(4, 24), (8, 40), (16, 112), (32, 320)]):
        assert arr.shape == (2, c, 96 // s, 160 // s), name
        assert arr.dtype == np.float32 and np.all(np.isfinite(arr))
    # batch items are independent
    single = run(sess, image[1:])
    np.testing.assert_allclose(single["stride16"][0], outs["stride16"][1], atol=1e-4)


def test_default_export_is_small_and_deterministic(efficientnet_weights):
    a = E.build(efficientnet_weights).SerializeToString(deterministic=True)
    b = E.build(efficientnet_weights).SerializeToString(deterministic=True)
    assert a == b
    assert len(a) < 4_000_000  # stages after stride 16 are not in the file
    model = onnx.load_from_string(a)
    assert [o.name for o in model.graph.output] == ["stride4", "stride8", "stride16"]


def test_bad_strides_are_refused(tmp_path, capsys):
    with pytest.raises(SystemExit):
        export_efficientnet_lite0.main(["--out", str(tmp_path / "x.onnx"), "--strides", "4,64"])
    assert "--strides" in capsys.readouterr().err


def test_setup_backbones_script(tmp_path):
    script = os.path.join(SCRIPTS, "setup-backbones.sh")
    first = subprocess.run([script, str(tmp_path)], capture_output=True, text=True, cwd=REPO)
    assert first.returncode == 0, first.stderr
    out = tmp_path / "efficientnet_lite0.onnx"
    assert out.is_file() and list(os.listdir(tmp_path)) == ["efficientnet_lite0.onnx"]
    second = subprocess.run([script, str(tmp_path)], capture_output=True, text=True, cwd=REPO)
    assert second.returncode == 0 and "up to date" in second.stdout
    meta = {p.key: p.value for p in onnx.load(str(out)).metadata_props}
    assert meta["varad.output_strides"] == "4,8,16"
