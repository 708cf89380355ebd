"""Run by tests/package/check.sh with the Python of a fresh venv the wheel was installed
into, from a folder outside the checkout, with neither VARAD_LIBRARY nor ORT_DYLIB_PATH
set: the installed package must bring its library and find ONNX Runtime in the installed
onnxruntime package. Usage: python wheel_check.py BACKBONE.onnx"""

import os
import pathlib
import sys
import sysconfig

import numpy as np

import varad

assert "VARAD_LIBRARY" not in os.environ and "ORT_DYLIB_PATH" not in os.environ
site = pathlib.Path(sysconfig.get_paths()["platlib"]).resolve()
package = pathlib.Path(varad.__file__).resolve().parent
assert package == site / "varad", f"varad imported from {package}, not the venv's {site}"
assert pathlib.Path(varad._find_library()) == package / "libvarad.so", varad._find_library()


def texture(seed: int, size: int = 128) -> np.ndarray:
    phase = seed * 37 % 17
    y, x = np.mgrid[0:size, 0:size]
    v = np.where(((x + phase) // 6 + y // 9) % 2 == 0, 180, 60).astype(np.uint8)
    return np.stack([v, v // 2 + 20, 255 - v], axis=-1).astype(np.uint8)


model = varad.Model(sys.argv[1], input_size=(112, 112), threads=2, prediction_step=2, d_state=4,
                    epochs=3, learning_rate=2e-3, seed=5)
report = model.train(texture(i) for i in range(6))
assert report["train_images"] + report["calibration_images"] == 6, report

runtime = pathlib.Path(varad.runtime_path()).resolve()
assert runtime.parent == site / "onnxruntime" / "capi", f"ONNX Runtime loaded from {runtime}"

good = model.score(texture(30))
bad_image = texture(31)
bad_image[50:90, 40:80] = 255
bad = model.score(bad_image)
assert good.map.shape == (128, 128) and good.map.dtype == np.float32
assert good.decision in ("pass", "review", "fail")
assert bad.image_score > good.image_score, (bad.image_score, good.image_score)
print(f"wheel: varad {varad.library_version()} from {package}, ONNX Runtime {runtime}; "
      f"image score good {good.image_score:.3f} < defective {bad.image_score:.3f}")
