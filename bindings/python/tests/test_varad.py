"""Tests of the ctypes bindings on the tiny test ViT (trains in seconds)."""

import pathlib
import sys

import numpy as np
import pytest

ROOT = pathlib.Path(__file__).resolve().parents[3]
sys.path.insert(0, str(ROOT / "bindings" / "python"))

import varad  # noqa: E402

TINY = ROOT / "tests" / "data" / "tiny_vit.onnx"


def texture(seed: int, size: int = 128) -> np.ndarray:
    phase = seed * 37 % 17
    y, x = np.mgrid[0:size, 0:size]
    v = np.where(((x + phase) // 6 + y // 9) % 2 == 0, 180, 60).astype(np.uint8)
    return np.stack([v, v // 2 + 20, 255 - v], axis=-1).astype(np.uint8)


def tiny_model(**extra) -> varad.Model:
    params = dict(input_size=(112, 112), threads=2, prediction_step=2, d_state=4, epochs=3,
                  learning_rate=2e-3, seed=5)
    params.update(extra)
    return varad.Model(TINY, **params)


@pytest.fixture(scope="module")
def trained():
    model = tiny_model()
    steps = []
    report = model.train((texture(i) for i in range(6)), progress=lambda p: steps.append(p) and False)
    assert report["train_images"] + report["calibration_images"] == 6
    assert len(steps) == report["steps"] and steps[-1].step == steps[-1].steps
    yield model
    model.close()


def test_version_matches():
    assert varad.library_version() == ".".join(map(str, varad.HEADER_VERSION))


def test_score_train_save_load(trained, tmp_path):
    image = texture(30)
    result = trained.score(image, raw_map=True, heatmap=str(tmp_path / "h.png"))
    assert result.map.shape == (128, 128) and result.map.dtype == np.float32
    assert result.decision in ("pass", "review", "fail")
    assert result.normalised_score > 0 and result.raw_map.shape == (8, 8)
    assert (tmp_path / "h.png").stat().st_size > 0
    assert isinstance(result.regions, list)
    batch = trained.score_batch([image, texture(31)])
    np.testing.assert_array_equal(batch[0].map, result.map)
    trained.save(tmp_path / "m.varad")
    with varad.Model.load(tmp_path / "m.varad") as loaded:
        np.testing.assert_array_equal(loaded.score(image).map, result.map)
        assert loaded.get_threshold("fail") == trained.get_threshold("fail")
        assert loaded.active_device == "cpu"


def test_formats_and_strides(trained):
    rgb = texture(32)
    bgr = np.ascontiguousarray(rgb[:, :, ::-1])
    np.testing.assert_array_equal(trained.score(bgr, bgr=True).map, trained.score(rgb).map)
    big = np.zeros((140, 150, 3), np.uint8)
    big[5:133, 7:135] = rgb
    crop = big[5:133, 7:135]  # padded rows, no copy
    np.testing.assert_array_equal(trained.score(crop).map, trained.score(rgb).map)
    grey = trained.score(rgb[:, :, 0])
    assert grey.map.shape == (128, 128)
    assert trained.score((rgb[:, :, 0].astype(np.uint16) * 257)).map.shape == (128, 128)


def test_roi_and_thresholds(trained):
    image = texture(33)
    roi = np.zeros((128, 128), np.uint8)
    roi[10:20, 10:20] = 1
    assert trained.score(image, roi=roi).image_score <= trained.score(image).image_score
    with pytest.raises(varad.VaradError) as e:
        trained.score(image, roi=np.ones((4, 4), np.uint8))
    assert e.value.name == "VARAD_ERR_INVALID_ARGUMENT" and "ROI" in e.value.message
    review, fail = trained.get_threshold("review"), trained.get_threshold("fail")
    with pytest.raises(varad.VaradError):
        trained.set_threshold("review", fail + 1)
    assert trained.get_threshold("review") == review


def test_errors_carry_the_message(tmp_path):
    with pytest.raises(varad.VaradError) as e:
        varad.Model(tmp_path / "missing.onnx")
    assert "missing.onnx" in str(e.value)
    with pytest.raises(varad.VaradError) as e:
        varad.Model.load(tmp_path / "missing.varad")
    assert e.value.name == "VARAD_ERR_IO"
    with pytest.raises(TypeError):
        tiny_model(no_such_parameter=1)
    model = tiny_model()
    with pytest.raises(varad.VaradError) as e:
        model.get_threshold("image")
    assert e.value.name == "VARAD_ERR_NOT_CALIBRATED"
    with pytest.raises(varad.VaradError) as e:
        model.score(texture(1))
    assert e.value.name == "VARAD_ERR_NOT_TRAINED"
    with pytest.raises(ValueError):
        model.score(np.zeros((4, 4, 2), np.uint8))
    model.close()
    with pytest.raises(ValueError):
        model.score(texture(1))


def test_out_of_range_settings_are_refused_before_the_backbone_is_opened(tmp_path):
    missing = tmp_path / "missing.onnx"
    with pytest.raises(varad.VaradError) as e:
        varad.Model(missing, sigma=5000.0, epochs=0, review_band=float("nan"))
    assert e.value.name == "VARAD_ERR_CONFIG"
    for named in ("params.sigma 5000", "params.epochs 0", "params.review_band NaN"):
        assert named in e.value.message
    # Values ctypes would wrap into valid ones are refused by the binding itself.
    for name, value in (("epochs", 2**32 + 3), ("threads", -1), ("seed", 2**64)):
        with pytest.raises(ValueError, match=f"params.{name}"):
            varad.Model(missing, **{name: value})
    # In range, the call gets as far as the missing backbone.
    with pytest.raises(varad.VaradError) as e:
        varad.Model(missing, sigma=1000.0, epochs=10000)
    assert e.value.name == "VARAD_ERR_IO"


def test_cancel_leaves_the_model_unchanged():
    model = tiny_model()
    with pytest.raises(varad.CancelledError):
        model.train((texture(i) for i in range(5)), progress=lambda p: p.step >= 1)
    with pytest.raises(varad.VaradError) as e:
        model.score(texture(40))
    assert e.value.name == "VARAD_ERR_NOT_TRAINED"
    model.train(texture(i) for i in range(5))
    before = model.score(texture(40)).map
    review = model.get_threshold("review")
    with pytest.raises(varad.CancelledError):
        model.train((texture(i) for i in range(10, 15)), progress=lambda p: p.step >= 1)
    np.testing.assert_array_equal(model.score(texture(40)).map, before)
    assert model.get_threshold("review") == review
    with pytest.raises(RuntimeError):
        model.train((texture(i) for i in range(5)), progress=lambda p: (_ for _ in ()).throw(RuntimeError("stop")))
    model.close()


def header_fields(name: str) -> list:
    """The field names of `typedef struct name { ... } name;` in include/varad.h, in order."""
    import re

    text = (ROOT / "include" / "varad.h").read_text()
    body = text[text.index(f"typedef struct {name} {{"):text.index(f"}} {name};")]
    return re.findall(r"^\s+[^/\s][^;]*?\b(\w+);$", body, flags=re.M)


@pytest.mark.parametrize("struct, name", [
    (varad._ImageView, "VaradImageView"),
    (varad._Params, "VaradParams"),
    (varad._LoadParams, "VaradLoadParams"),
    (varad._ScoreParams, "VaradScoreParams"),
    (varad._Region, "VaradRegion"),
    (varad._Progress, "VaradProgress"),
    (varad._TrainReport, "VaradTrainReport"),
    (varad._CalibrationReport, "VaradCalibrationReport"),
])
def test_the_binding_structs_mirror_the_header_field_for_field(struct, name):
    assert [f for f, _ in struct._fields_] == header_fields(name)


def test_params_come_from_the_init_calls_with_the_bindings_size():
    p = varad._init(varad._Params, varad._lib.varad_params_init)
    assert p.size == varad.ctypes.sizeof(varad._Params)
    assert p.epochs == 10 and p.map_norm == 4
    assert (p.cross_fit_folds, p.beyond_data, p.target_false_fail_rate, p.catch_known_defects) == (5, 0, 0.001, 0)
    lp = varad._init(varad._LoadParams, varad._lib.varad_load_params_init)
    assert (lp.device, lp.threads, lp.reserved) == (255, -1, 0)
    bad = varad._Params()
    with pytest.raises(varad.VaradError, match="varad_params_init"):
        varad._check(varad._lib.varad_params_init(varad.ctypes.byref(bad), 4))


def test_the_log_callback_receives_the_warning_of_a_model_file_without_checksums():
    received = []
    with pytest.raises(ValueError):
        varad.set_log_callback(received.append, level="loud")
    varad.set_log_callback(lambda level, message: received.append((level, message)), level="warn")
    try:
        old = ROOT / "fuzz" / "corpus" / "model_file" / "seed-tiny-format1.safetensors"
        model = varad.Model.load(old, backbone=ROOT / "tests" / "data" / "tiny_vit.onnx", device="cpu")
        model.close()
        warnings = [m for level, m in received if level == "warn" and "no checksums" in m]
        assert len(warnings) == 1, received
    finally:
        varad.set_log_callback(None)
    model = varad.Model.load(old, backbone=ROOT / "tests" / "data" / "tiny_vit.onnx", device="cpu")
    model.close()
    assert len([m for _, m in received if "no checksums" in m]) == 1


def defective(seed: int) -> np.ndarray:
    image = texture(seed)
    image[50:90, 40:80] = 255
    return image


def test_the_calibration_report_p_values_and_known_defects(trained, tmp_path):
    report = trained.calibration_report()
    assert report.n >= 3 and report.n == report.cross_fitted + report.held_out
    assert report.achievable_rate == pytest.approx(1 / (report.n + 1))
    assert (report.review.requested, report.fail.requested) == (0.01, 0.001)
    assert report.review.threshold == trained.get_threshold("review")
    assert report.fail.threshold == trained.get_threshold("fail")
    assert report.review.threshold <= report.fail.threshold
    for rate in (report.review, report.fail):
        assert 0 < rate.expected <= 1 and 0 < rate.conformal_rate <= rate.upper_bound <= 1
    assert (report.review.images_needed, report.fail.images_needed) == (99, 999)
    assert report.fail.extrapolated and report.fail.images_needed_confident > 999
    assert (report.known_defects, report.escapes, report.review_lowered_from) == (0, 0, None)
    result = trained.score(texture(34))
    assert report.achievable_rate <= result.p_value <= 1
    trained.save(tmp_path / "m.varad")
    with varad.Model.load(tmp_path / "m.varad") as loaded:
        assert loaded.calibration_report() == report

    with tiny_model() as untrained:
        with pytest.raises(varad.VaradError) as e:
            untrained.calibration_report()
        assert e.value.status == varad.NOT_CALIBRATED

    with tiny_model(catch_known_defects=True, beyond_data="log_normal_tail", cross_fit_folds=3,
                    target_false_fail_rate=0.002) as model:
        model.train((texture(i) for i in range(6)), defective=(defective(50 + i) for i in range(2)))
        caught = model.calibration_report()
        assert (caught.known_defects, caught.escapes) == (2, 0)
        assert caught.fail.requested == 0.002
        if caught.review_lowered_from is not None:
            assert caught.review_lowered_from > caught.review.threshold
    with pytest.raises(ValueError, match="beyond_data"):
        tiny_model(beyond_data="guess")
    with pytest.raises(varad.VaradError, match="params.target_false_fail_rate"):
        tiny_model(target_false_fail_rate=1.0)


def test_the_runtime_is_the_installed_onnxruntime_package(trained, monkeypatch):
    # The test venv has the onnxruntime wheel: its library is what a model runs on
    # (the one the `trained` fixture loaded), found without ORT_DYLIB_PATH.
    monkeypatch.delenv("ORT_DYLIB_PATH", raising=False)
    installed = varad._installed_runtime()
    assert installed is not None and pathlib.Path(installed).is_file()
    assert pathlib.Path(installed).parent.name == "capi"
    assert pathlib.Path(varad.runtime_path()).samefile(installed)
    monkeypatch.setenv("ORT_DYLIB_PATH", installed)
    assert varad._installed_runtime() is None


def test_a_library_beside_the_package_comes_before_the_checkouts(monkeypatch, tmp_path):
    package = tmp_path / "varad"
    package.mkdir()
    (package / "libvarad.so").write_bytes(b"")
    monkeypatch.delenv("VARAD_LIBRARY", raising=False)
    monkeypatch.setattr(varad, "__file__", str(package / "__init__.py"))
    assert varad._find_library() == str(package / "libvarad.so")
