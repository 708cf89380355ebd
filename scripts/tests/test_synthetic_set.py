"""scripts/make_synthetic_set.py: layout, masks, size classes, determinism, seams.

Everything runs at 256x256 with a handful of images so the module stays fast."""

from __future__ import annotations

import hashlib
import json
import os

import numpy as np
import pytest
from PIL import Image

import make_synthetic_set as mss

SIZE = 256
N_TRAIN, N_GOOD, N_PER_TYPE = 1, 1, 3
ALL = list(mss.DEFAULT_CATEGORIES) + list(mss.STRUCTURED_CATEGORIES)


def _generate(out, categories, seed=0, extra=()):
    args = ["--out", str(out), "--size", str(SIZE), "--categories", ",".join(categories),
            "--train", str(N_TRAIN), "--test-good", str(N_GOOD), "--test-per-type", str(N_PER_TYPE),
            "--seed", str(seed), *extra]
    assert mss.main(args) == 0


def _files(root):
    out = {}
    for dp, _, fns in os.walk(root):
        for fn in fns:
            p = os.path.join(dp, fn)
            out[os.path.relpath(p, root)] = p
    return out


def _digest(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    out = tmp_path_factory.mktemp("synthetic")
    _generate(out, mss.DEFAULT_CATEGORIES, extra=("--structured",))
    return out


def test_layout_and_names_follow_mvtec(dataset):
    assert sorted(os.listdir(dataset)) == sorted(ALL)
    for cat in ALL:
        root = dataset / cat
        kinds = mss.defect_types(cat)
        assert sorted(os.listdir(root)) == ["defects.json", "ground_truth", "test", "train"]
        assert os.listdir(root / "train") == ["good"]
        assert sorted(os.listdir(root / "train" / "good")) == [f"{i:03d}.png" for i in range(N_TRAIN)]
        assert sorted(os.listdir(root / "test")) == sorted(["good", *kinds])
        assert sorted(os.listdir(root / "ground_truth")) == sorted(kinds)  # no masks for good
        assert sorted(os.listdir(root / "test" / "good")) == [f"{i:03d}.png" for i in range(N_GOOD)]
        for kind in kinds:
            stems = [f"{i:03d}" for i in range(N_PER_TYPE)]
            assert sorted(os.listdir(root / "test" / kind)) == [s + ".png" for s in stems]
            assert sorted(os.listdir(root / "ground_truth" / kind)) == [s + "_mask.png" for s in stems]
        assert not [p for p in _files(root) if p.endswith(".tmp")]


def test_images_rgb_and_masks_binary_same_size(dataset):
    for cat in ALL:
        root = dataset / cat
        for rel, path in _files(root).items():
            if not rel.endswith(".png"):
                continue
            im = Image.open(path)
            assert im.size == (SIZE, SIZE), rel
            if rel.startswith("ground_truth"):
                assert im.mode == "L", rel
                vals = set(np.unique(np.asarray(im)).tolist())
                assert vals <= {0, 255} and 255 in vals, (rel, vals)  # binary, non-empty
            else:
                assert im.mode == "RGB", rel


def test_defects_json_matches_masks(dataset):
    for cat in ALL:
        root = dataset / cat
        meta = json.loads((root / "defects.json").read_text())
        assert meta["category"] == cat and meta["size"] == SIZE and meta["seed"] == 0
        recs = meta["test"]
        listed = sorted(r["file"] for r in recs)
        on_disk = sorted(p for p in _files(root) if p.startswith("test" + os.sep))
        assert listed == [p.replace(os.sep, "/") for p in on_disk]
        for r in recs:
            if r["defect_type"] == "good":
                assert r["mask"] is None and r["area_px"] == 0 and r["bbox"] is None
                assert r["size_class"] is None
                continue
            assert r["file"].split("/")[1] == r["defect_type"]
            stem = os.path.splitext(os.path.basename(r["file"]))[0]
            assert r["mask"] == f"ground_truth/{r['defect_type']}/{stem}_mask.png"
            m = np.asarray(Image.open(root / r["mask"])) > 0
            assert r["area_px"] == int(m.sum()) > 0
            assert r["area_fraction"] == pytest.approx(m.mean(), abs=1e-6)
            ys, xs = np.nonzero(m)
            b = r["bbox"]
            assert (b["x"], b["y"]) == (xs.min(), ys.min())
            assert (b["width"], b["height"]) == (xs.max() - xs.min() + 1, ys.max() - ys.min() + 1)
            assert r["size_class"] in mss.SIZE_CLASSES


def test_size_classes(dataset):
    seen = set()
    for cat in mss.DEFAULT_CATEGORIES:
        recs = json.loads((dataset / cat / "defects.json").read_text())["test"]
        for r in recs:
            if r["defect_type"] == "good":
                continue
            f = r["area_fraction"]
            seen.add((r["defect_type"], r["size_class"]))
            if r["size_class"] == "small":
                assert 0 < f < 0.001, r
            elif r["size_class"] == "medium":
                assert 0.001 <= f < 0.01, r
            else:
                assert 0.01 <= f <= 0.06, r
    assert seen == {(k, c) for k in mss.DEFECT_TYPES for c in mss.SIZE_CLASSES}


def test_same_seed_is_byte_identical_and_subsets_agree(dataset, tmp_path):
    # a subset run (and a second process-level run of the same code) gives the same bytes
    subset = ["brick", "metal", "tiles"]
    _generate(tmp_path, subset)
    again = _files(tmp_path)
    for cat in subset:
        first = {k: v for k, v in _files(dataset).items() if k.startswith(cat + os.sep)}
        second = {k: v for k, v in again.items() if k.startswith(cat + os.sep)}
        assert sorted(first) == sorted(second)
        for k in first:
            assert _digest(first[k]) == _digest(second[k]), k


def test_different_seed_differs(dataset, tmp_path):
    _generate(tmp_path, ["gravel"], seed=1)
    for cat in ["gravel"]:
        for rel, path in _files(tmp_path / cat).items():
            if rel.endswith(".png") and not rel.startswith("ground_truth"):
                assert _digest(path) != _digest(dataset / cat / rel), rel


@pytest.mark.parametrize("category", ["grass", "metal", "tiles"])
def test_mask_is_exactly_the_changed_pixels(category):
    """Outside the mask the defective image equals the clean one bit for bit; inside, the
    defect is visible (most mask pixels change by at least 2/255 after quantisation)."""
    for kind in mss.defect_types(category):
        for index in range(N_PER_TYPE):
            clean, img, mask, rec = mss.make_test_image(category, kind, index, SIZE, seed=3)
            a, b = mss.to_uint8(clean).astype(int), mss.to_uint8(img).astype(int)
            diff = np.abs(a - b).max(axis=2)
            assert mask.any()
            assert (diff[~mask] == 0).all(), (kind, index)
            assert (diff[mask] >= 2).mean() > 0.6, (kind, index, (diff[mask] >= 2).mean())
            assert diff[mask].mean() >= 5, (kind, index, diff[mask].mean())
            assert diff.max() < 250  # not saturated to a flat black/white


# --- seams in quilted normal images ------------------------------------------------------


def seam_score(images) -> float:
    """Largest robust z-score of any column's (row's) mean absolute horizontal (vertical)
    gradient, averaged over images. Quilting puts its seams on the same grid in every image,
    so a visible seam shows up as a column/row whose gradient energy stands out (a hard seam
    adds energy, an over-blended one removes it)."""
    g = np.stack([np.asarray(im, np.float64).mean(axis=2) for im in images])
    worst = 0.0
    for axis in (2, 1):
        d = np.abs(np.diff(g, axis=axis))
        prof = d.mean(axis=(0, 1) if axis == 2 else (0, 2))
        med = np.median(prof)
        mad = 1.4826 * np.median(np.abs(prof - med))
        worst = max(worst, float(np.abs(prof - med).max() / mad))
    return worst


def naive_stitch(category: str, index: int) -> np.ndarray:
    """Random crops of the same source abutted on the quilting grid: visible seams."""
    rng = np.random.default_rng(index)
    pool = mss.photo_pool(category, mss.photo_scale(SIZE))
    patch, overlap = mss.quilt_geometry(SIZE)
    step = patch - overlap
    out = np.zeros((SIZE, SIZE), np.float32)
    for y in range(0, SIZE, step):
        for x in range(0, SIZE, step):
            p = rng.integers(len(pool))
            yy = rng.integers(0, pool.shape[1] - step)
            xx = rng.integers(0, pool.shape[2] - step)
            out[y:y + step, x:x + step] = pool[p, yy:yy + step, xx:xx + step][: SIZE - y, : SIZE - x]
    return np.repeat(out[..., None], 3, axis=2)


SEAM_LIMIT = 6.0


@pytest.mark.parametrize("category", mss.PHOTO_CATEGORIES)
def test_no_seam_artefacts_in_normal_images(category):
    images = [mss.base_image(category, SIZE, mss.image_rng(7, category, "train", "good", i, SIZE))
              for i in range(8)]
    assert seam_score(images) < SEAM_LIMIT
    # the check has teeth: plainly abutted crops on the same grid are flagged
    assert seam_score([naive_stitch(category, i) for i in range(8)]) > 2 * SEAM_LIMIT


def test_unknown_category_is_rejected(tmp_path):
    with pytest.raises(SystemExit):
        mss.main(["--out", str(tmp_path), "--categories", "brick,nope"])


# ---- the production-variation mode (--vary) ----

NO_NOISE = {**mss.VARIATION_DEFAULTS, "noise": 0.0}


@pytest.mark.parametrize("category, kind", [("brick", "scratch"), ("metal", "speck"),
                                            ("grass", "stain"), ("tiles", "missing")])
def test_a_varied_mask_marks_where_the_varied_defect_is(category, kind):
    clean, defective, mask, _ = mss.make_test_image(category, kind, 1, SIZE, 5)
    for index in range(3):
        v = mss.draw_variation(NO_NOISE, SIZE, mss.variation_rng(5, category, "test", kind, index, SIZE))
        vc, _ = mss.apply_variation(clean, None, v, np.random.default_rng(0))
        vd, vm = mss.apply_variation(defective, mask, v, np.random.default_rng(0))
        assert vm.dtype == bool and vm.any()
        diff = np.abs(vd - vc).max(axis=-1)
        # Outside the mask (grown by the interpolation's reach) nothing changed; inside, the
        # defect is still there under the new light.
        grown = mss.ndimage.binary_dilation(vm, iterations=2)
        assert (diff[~grown] < mss.CHANGE_THRESHOLD).all(), (category, kind, v)
        assert (diff[vm] > mss.CHANGE_THRESHOLD / 2).mean() > 0.7, (category, kind, v)


def test_no_variation_is_the_plain_image():
    clean, _, mask, _ = mss.make_test_image("weave", "crack", 0, SIZE, 2)
    identity = {"dx": 0.0, "dy": 0.0, "angle": 0.0, "contrast": 1.0, "brightness": 0.0,
                "blur": 0.0, "noise": 0.0}
    img, m = mss.apply_variation(clean, mask, identity, np.random.default_rng(0))
    assert np.abs(img - np.clip(clean, 0, 1)).max() < 1e-6
    assert (m == mask).all()


def test_vary_changes_every_image_within_its_bounds_and_records_it(tmp_path, dataset):
    _generate(tmp_path, ["brick"], extra=("--vary",))
    meta = json.loads((tmp_path / "brick" / "defects.json").read_text())
    d = mss.VARIATION_DEFAULTS
    draws = meta["variation"]["train"] + [r["variation"] for r in meta["test"]]
    assert meta["variation"]["settings"] == d and len(draws) == N_TRAIN + len(meta["test"])
    for v in draws:
        assert abs(v["dx"]) <= d["shift"] * SIZE and abs(v["dy"]) <= d["shift"] * SIZE
        assert abs(v["angle"]) <= d["rotate"] and abs(v["contrast"] - 1) <= d["light"]
        assert 0 <= v["blur"] <= d["blur"] * SIZE / 1024 and v["noise"] == d["noise"]
    # Same parts as the plain set with the same seed, delivered differently.
    for rel in ["train/good/000.png", "test/good/000.png", "test/scratch/000.png"]:
        plain = np.asarray(Image.open(dataset / "brick" / rel), dtype=np.float64)
        varied = np.asarray(Image.open(tmp_path / "brick" / rel), dtype=np.float64)
        assert plain.shape == varied.shape and np.abs(plain - varied).mean() > 1.0
    for r in meta["test"]:
        if r["mask"]:
            m = np.asarray(Image.open(tmp_path / "brick" / r["mask"])) > 0
            assert r["area_px"] == int(m.sum()) > 0


def test_bad_variation_settings_are_refused():
    for bad in (["--vary-shift", "0.6"], ["--vary-light", "1.5"], ["--vary-noise", "-1"]):
        with pytest.raises(SystemExit):
            mss.parse_args(["--out", "x", "--vary", *bad])
