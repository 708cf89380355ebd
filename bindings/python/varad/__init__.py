"""Python bindings for varad (industrial anomaly detection with VarAD) over its C ABI,
with ctypes: nothing to compile.

    import numpy as np, varad
    model = varad.Model("backbone.onnx", input_size=(112, 112), epochs=3)
    model.train(good_images)                  # numpy arrays, HxW or HxWxC uint8/uint16
    result = model.score(image)               # varad.ScoreResult
    result.map, result.image_score, result.decision, result.p_value, result.regions
    model.calibration_report()                # what the thresholds promise
    model.save("model.varad"); model = varad.Model.load("model.varad")

The library is found through the VARAD_LIBRARY environment variable (a path to
libvarad.so), then this package's own folder (where the wheel puts it), then the
checkout's target/{debug,release}/, then the system library path. ONNX Runtime is the
one of the installed `onnxruntime` Python package, unless a model names another
(`runtime_path=`) or ORT_DYLIB_PATH is set; without that package the library searches
(see varad.h). Errors raise VaradError (status code, name and the library's message).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import importlib.util
import os
import sys
import pathlib
from dataclasses import dataclass, field
from typing import Callable, Iterable, List, Optional, Sequence

import numpy as np

__all__ = [
    "Model",
    "ScoreResult",
    "Region",
    "Progress",
    "CalibrationReport",
    "RateReport",
    "VaradError",
    "CancelledError",
    "BusyError",
    "library_version",
    "runtime_path",
    "set_log_callback",
    "HEADER_VERSION",
]

# The C header these bindings mirror (include/varad.h, VARAD_VERSION_*).
HEADER_VERSION = (1, 4, 0)
HEADER_VERSION_NUMBER = HEADER_VERSION[0] * 1_000_000 + HEADER_VERSION[1] * 1000 + HEADER_VERSION[2]

STATUS_NAMES = {
    0: "VARAD_OK",
    1: "VARAD_ERR_INVALID_ARGUMENT",
    2: "VARAD_ERR_NULL_POINTER",
    3: "VARAD_ERR_INVALID_IMAGE",
    4: "VARAD_ERR_IMAGE_TOO_LARGE",
    5: "VARAD_ERR_IMAGE_DECODE",
    6: "VARAD_ERR_IO",
    7: "VARAD_ERR_RUNTIME_NOT_FOUND",
    8: "VARAD_ERR_RUNTIME",
    9: "VARAD_ERR_BACKBONE_CONTRACT",
    10: "VARAD_ERR_CONFIG",
    11: "VARAD_ERR_MODEL_FILE",
    12: "VARAD_ERR_CUDA",
    13: "VARAD_ERR_CANCELLED",
    14: "VARAD_ERR_BUFFER_TOO_SMALL",
    15: "VARAD_ERR_PANIC",
    16: "VARAD_ERR_INTERNAL",
    17: "VARAD_ERR_BUSY",
    18: "VARAD_ERR_NOT_CALIBRATED",
    19: "VARAD_ERR_BATCH_TOO_LARGE",
    20: "VARAD_ERR_CACHE_FULL",
    21: "VARAD_ERR_NOT_TRAINED",
}
CANCELLED, BUSY, NOT_CALIBRATED = 13, 17, 18

FORMAT_MONO8, FORMAT_MONO16, FORMAT_RGB8, FORMAT_BGR8, FORMAT_RGBA8, FORMAT_BGRA8 = 1, 2, 3, 4, 5, 6
DEVICES = {"auto": 0, "cpu": 1, "cuda": 2}
DECISIONS = {1: "pass", 2: "review", 3: "fail"}
THRESHOLDS = {"image": 1, "review": 2, "fail": 3, "pixel": 4}
BEYOND_DATA = {"log_normal_tail": 0, "refuse": 1}
BANK_SELECTION = {"random": 0, "coreset": 1}
BANK_LEVELS = {"coarsest": 0, "all": 1}
NEIGHBOUR_TERM = {"above_normal": 0, "scaled": 1}
# The VaradParams fields that take a C enum, by the names a caller may pass instead.
_NAMED = {
    "beyond_data": BEYOND_DATA,
    "neighbour_bank_selection": BANK_SELECTION,
    "neighbour_bank_levels": BANK_LEVELS,
    "neighbour_term": NEIGHBOUR_TERM,
}


class VaradError(Exception):
    """A failed varad call: `status` (the VaradStatus value), `name` and `message`."""

    def __init__(self, status: int, message: str):
        self.status = status
        self.name = STATUS_NAMES.get(status, f"status {status}")
        self.message = message
        super().__init__(f"{self.name}: {message}")


class CancelledError(VaradError):
    """Training was cancelled by the progress callback; the model is unchanged."""


class BusyError(VaradError):
    """Another thread is training the model (a second train, or a threshold change,
    meanwhile); nothing was changed."""


# ---- C structures (must match include/varad.h) ----

c_size_t = ctypes.c_size_t


class _ImageView(ctypes.Structure):
    _fields_ = [
        ("data", ctypes.c_void_p),
        ("width", ctypes.c_uint32),
        ("height", ctypes.c_uint32),
        ("stride", c_size_t),
        ("format", ctypes.c_uint32),
    ]


class _Params(ctypes.Structure):
    _fields_ = [
        ("size", c_size_t),
        ("backbone_path", ctypes.c_char_p),
        ("runtime_path", ctypes.c_char_p),
        ("levels", ctypes.c_char_p),
        ("input_width", ctypes.c_uint32),
        ("input_height", ctypes.c_uint32),
        ("resize_mode", ctypes.c_uint32),
        ("device", ctypes.c_uint32),
        ("cuda_device", ctypes.c_uint32),
        ("threads", ctypes.c_uint32),
        ("max_image_pixels", ctypes.c_uint64),
        ("seed", ctypes.c_uint64),
        ("prediction_step", ctypes.c_uint32),
        ("n_layers", ctypes.c_uint32),
        ("d_state", ctypes.c_uint32),
        ("expand", ctypes.c_uint32),
        ("d_conv", ctypes.c_uint32),
        ("detach_target", ctypes.c_uint32),
        ("epochs", ctypes.c_uint32),
        ("batch_size", ctypes.c_uint32),
        ("learning_rate", ctypes.c_double),
        ("weight_decay", ctypes.c_double),
        ("beta1", ctypes.c_double),
        ("beta2", ctypes.c_double),
        ("eps", ctypes.c_double),
        ("cache_limit_bytes", ctypes.c_uint64),
        ("calibration_fraction", ctypes.c_double),
        ("min_calibration_images", ctypes.c_uint32),
        ("min_region_area", ctypes.c_uint32),
        ("sigma", ctypes.c_float),
        ("top_k", ctypes.c_uint32),
        ("target_false_reject_rate", ctypes.c_double),
        ("review_band", ctypes.c_double),
        ("pixel_quantile", ctypes.c_double),
        ("max_batch_bytes", ctypes.c_uint64),
        ("cache_disk_limit_bytes", ctypes.c_uint64),
        ("context_mean", ctypes.c_uint32),
        ("map_norm", ctypes.c_uint32),
        ("neighbour_weight", ctypes.c_float),
        ("neighbour_bank_tokens", ctypes.c_uint32),
        ("cross_fit_folds", ctypes.c_uint32),
        ("beyond_data", ctypes.c_uint32),
        ("target_false_fail_rate", ctypes.c_double),
        ("catch_known_defects", ctypes.c_uint32),
        ("reserved", ctypes.c_uint32),
        ("neighbour_bank_selection", ctypes.c_uint32),
        ("neighbour_bank_levels", ctypes.c_uint32),
        ("neighbour_term", ctypes.c_uint32),
        ("reserved2", ctypes.c_uint32),
        ("neighbour_probes", ctypes.c_uint32),
        ("reserved3", ctypes.c_uint32),
    ]


class _LoadParams(ctypes.Structure):
    _fields_ = [
        ("size", c_size_t),
        ("backbone_path", ctypes.c_char_p),
        ("runtime_path", ctypes.c_char_p),
        ("device", ctypes.c_uint32),
        ("cuda_device", ctypes.c_uint32),
        ("threads", ctypes.c_int32),
        ("reserved", ctypes.c_uint32),
    ]


class _ScoreParams(ctypes.Structure):
    _fields_ = [
        ("size", c_size_t),
        ("roi", ctypes.c_void_p),
        ("roi_len", c_size_t),
        ("raw_map", ctypes.c_uint32),
        ("reserved", ctypes.c_uint32),
    ]


class _Region(ctypes.Structure):
    _fields_ = [
        ("area", ctypes.c_uint64),
        ("x", ctypes.c_uint32),
        ("y", ctypes.c_uint32),
        ("width", ctypes.c_uint32),
        ("height", ctypes.c_uint32),
        ("centroid_x", ctypes.c_double),
        ("centroid_y", ctypes.c_double),
        ("peak", ctypes.c_float),
        ("peak_x", ctypes.c_uint32),
        ("peak_y", ctypes.c_uint32),
        ("mean", ctypes.c_float),
    ]


class _Progress(ctypes.Structure):
    _fields_ = [
        ("size", c_size_t),
        ("epoch", ctypes.c_uint32),
        ("epochs", ctypes.c_uint32),
        ("step", ctypes.c_uint32),
        ("steps", ctypes.c_uint32),
        ("loss", ctypes.c_double),
        ("elapsed_seconds", ctypes.c_double),
        ("remaining_seconds", ctypes.c_double),
    ]


class _TrainReport(ctypes.Structure):
    _fields_ = [
        ("size", c_size_t),
        ("train_images", ctypes.c_uint32),
        ("calibration_images", ctypes.c_uint32),
        ("epochs", ctypes.c_uint32),
        ("steps", ctypes.c_uint32),
        ("final_loss", ctypes.c_double),
        ("elapsed_seconds", ctypes.c_double),
        ("cache_memory_bytes", ctypes.c_uint64),
        ("cache_spilled_bytes", ctypes.c_uint64),
    ]


def _rate_fields(prefix: str) -> list:
    return [
        (f"{prefix}_requested", ctypes.c_double),
        (f"{prefix}_threshold", ctypes.c_float),
        (f"{prefix}_extrapolated", ctypes.c_uint32),
        (f"{prefix}_expected", ctypes.c_double),
        (f"{prefix}_conformal_rate", ctypes.c_double),
        (f"{prefix}_upper_bound", ctypes.c_double),
        (f"{prefix}_images_needed", ctypes.c_uint64),
        (f"{prefix}_images_needed_confident", ctypes.c_uint64),
    ]


class _CalibrationReport(ctypes.Structure):
    _fields_ = [
        ("size", c_size_t),
        ("n", ctypes.c_uint32),
        ("cross_fitted", ctypes.c_uint32),
        ("held_out", ctypes.c_uint32),
        ("folds", ctypes.c_uint32),
        ("achievable_rate", ctypes.c_double),
    ] + _rate_fields("review") + _rate_fields("fail") + [
        ("known_defects", ctypes.c_uint32),
        ("escapes", ctypes.c_uint32),
        ("review_lowered", ctypes.c_uint32),
        ("review_lowered_from", ctypes.c_float),
    ]


_PROGRESS_CB = ctypes.CFUNCTYPE(ctypes.c_int32, ctypes.POINTER(_Progress), ctypes.c_void_p)
_LOG_CB = ctypes.CFUNCTYPE(None, ctypes.c_uint32, ctypes.c_char_p, ctypes.c_void_p)
LOG_LEVELS = {"error": 1, "warn": 2, "info": 3, "debug": 4}


# ---- the library ----


_LIBRARY_FILE = "varad.dll" if sys.platform == "win32" else "libvarad.so"


def _find_library() -> str:
    env = os.environ.get("VARAD_LIBRARY")
    if env:
        return env
    # The wheel ships the library inside the package, beside this file.
    bundled = pathlib.Path(__file__).resolve().parent / _LIBRARY_FILE
    if bundled.is_file():
        return str(bundled)
    root = pathlib.Path(__file__).resolve().parents[3]
    for profile in ("debug", "release"):
        candidate = root / "target" / profile / _LIBRARY_FILE
        if candidate.is_file():
            return str(candidate)
    found = ctypes.util.find_library("varad")
    if found:
        return found
    raise OSError("libvarad not found: set VARAD_LIBRARY to the path of libvarad.so")


def _installed_runtime() -> Optional[str]:
    """The ONNX Runtime library file of the installed `onnxruntime` Python package (the
    wheel's dependency), found without importing it; None when ORT_DYLIB_PATH is set (the
    library honours it) or the package is absent (the library then searches)."""
    if os.environ.get("ORT_DYLIB_PATH"):
        return None
    try:
        spec = importlib.util.find_spec("onnxruntime")
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    capi = pathlib.Path(list(spec.submodule_search_locations)[0]) / "capi"
    if sys.platform == "win32":
        candidates = [capi / "onnxruntime.dll"]
    else:
        # The wheel ships only the versioned name (libonnxruntime.so.1.23.2).
        candidates = sorted(capi.glob("libonnxruntime.so*"), key=_runtime_version, reverse=True)
    for candidate in candidates:
        if candidate.is_file():
            return str(candidate)
    return None


def _runtime_version(path: pathlib.Path) -> tuple:
    tail = path.name[len("libonnxruntime.so"):].lstrip(".")
    return tuple(int(part) if part.isdigit() else -1 for part in tail.split(".")) if tail else ()


def _declare(lib: ctypes.CDLL) -> None:
    P, V = ctypes.POINTER, ctypes.c_void_p
    st = ctypes.c_int
    sigs = {
        "varad_version_number": (ctypes.c_uint32, []),
        "varad_version_string": (ctypes.c_char_p, []),
        "varad_last_error_message": (ctypes.c_char_p, []),
        "varad_last_error_copy": (st, [ctypes.c_char_p, c_size_t, P(c_size_t)]),
        "varad_params_init": (st, [P(_Params), c_size_t]),
        "varad_load_params_init": (st, [P(_LoadParams), c_size_t]),
        "varad_score_params_init": (st, [P(_ScoreParams), c_size_t]),
        "varad_create": (st, [P(_Params), P(V)]),
        "varad_destroy": (None, [V]),
        "varad_save": (st, [V, ctypes.c_char_p]),
        "varad_load": (st, [ctypes.c_char_p, P(_LoadParams), P(V)]),
        "varad_active_device": (st, [V, P(ctypes.c_uint32), P(ctypes.c_uint32)]),
        "varad_get_threshold": (st, [V, ctypes.c_uint32, P(ctypes.c_float)]),
        "varad_set_threshold": (st, [V, ctypes.c_uint32, ctypes.c_float]),
        "varad_set_decision_thresholds": (st, [V, ctypes.c_float, ctypes.c_float]),
        "varad_training_set_create": (st, [V, P(V)]),
        "varad_training_set_add": (st, [V, V, P(_ImageView)]),
        "varad_training_set_add_defective": (st, [V, V, P(_ImageView)]),
        "varad_training_set_count": (st, [V, P(c_size_t)]),
        "varad_training_set_defective_count": (st, [V, P(c_size_t)]),
        "varad_get_calibration_report": (st, [V, P(_CalibrationReport)]),
        "varad_training_set_destroy": (None, [V]),
        "varad_train": (st, [V, V, _PROGRESS_CB, V, P(_TrainReport)]),
        "varad_score": (st, [V, P(_ImageView), P(_ScoreParams), P(V)]),
        "varad_score_batch": (st, [V, P(_ImageView), c_size_t, P(_ScoreParams), P(V)]),
        "varad_score_result_destroy": (None, [V]),
        "varad_result_map": (st, [V, P(P(ctypes.c_float)), P(c_size_t), P(ctypes.c_uint32), P(ctypes.c_uint32)]),
        "varad_result_raw_map": (st, [V, P(P(ctypes.c_float)), P(c_size_t), P(ctypes.c_uint32), P(ctypes.c_uint32)]),
        "varad_result_image_score": (st, [V, P(ctypes.c_float)]),
        "varad_result_normalised_score": (st, [V, P(ctypes.c_float)]),
        "varad_result_decision": (st, [V, P(ctypes.c_uint32)]),
        "varad_result_p_value": (st, [V, P(ctypes.c_double)]),
        "varad_result_regions": (st, [V, P(P(_Region)), P(c_size_t), P(c_size_t)]),
        "varad_write_heatmap_png": (st, [V, ctypes.c_char_p, ctypes.c_float]),
        "varad_set_log_callback": (st, [_LOG_CB, V, ctypes.c_uint32]),
        "varad_runtime_path": (st, [ctypes.c_char_p, c_size_t, P(c_size_t)]),
    }
    for name, (restype, argtypes) in sigs.items():
        fn = getattr(lib, name)
        fn.restype = restype
        fn.argtypes = argtypes


def _load_library() -> ctypes.CDLL:
    lib = ctypes.CDLL(_find_library())
    lib.varad_version_number.restype = ctypes.c_uint32
    lib.varad_version_string.restype = ctypes.c_char_p
    number = lib.varad_version_number()
    major, minor = number // 1_000_000, number // 1000 % 1000
    # A different major version (for 0.x: a different minor) may have another ABI; an
    # older minor version lacks functions these bindings declare. Checked before they are
    # looked up, so the error says which library it is.
    if major != HEADER_VERSION[0] or minor < HEADER_VERSION[1] or (
            major == 0 and minor != HEADER_VERSION[1]):
        raise ImportError(
            f"libvarad {lib.varad_version_string().decode()} does not match these bindings "
            f"({'.'.join(map(str, HEADER_VERSION))})"
        )
    _declare(lib)
    return lib


_lib = _load_library()


def library_version() -> str:
    """The loaded libvarad's version, e.g. "1.0.0"."""
    return _lib.varad_version_string().decode()


def runtime_path() -> Optional[str]:
    """The absolute path of the ONNX Runtime library this process loaded (on the first
    model created or loaded), or None before that."""
    needed = c_size_t()
    status = _lib.varad_runtime_path(None, 0, ctypes.byref(needed))
    if STATUS_NAMES.get(status) == "VARAD_ERR_RUNTIME_NOT_FOUND":  # not loaded yet
        return None
    buf = ctypes.create_string_buffer(needed.value)
    _check(_lib.varad_runtime_path(buf, needed.value, ctypes.byref(needed)))
    return buf.value.decode()


# The C callback in force: ctypes frees a callback that nothing references.
_log_callback = None


def set_log_callback(callback: Optional[Callable[[str, str], None]], level: str = "warn") -> None:
    """Sends what the library logs at `level` ("error", "warn", "info", "debug") and more
    severe to `callback(level, message)` (a CUDA fallback to the CPU, a model file from
    varad 1.0 without checksums); None stops it. The callback may run on any thread,
    several at once; an exception in it is printed and dropped."""
    global _log_callback
    if level not in LOG_LEVELS:
        raise ValueError(f"level must be one of {', '.join(LOG_LEVELS)}, not {level!r}")
    names = {v: k for k, v in LOG_LEVELS.items()}
    if callback is None:
        c_callback = ctypes.cast(None, _LOG_CB)
    else:
        def on_log(c_level, message, _user_data):
            callback(names.get(c_level, "debug"), message.decode("utf-8", "replace"))
        c_callback = _LOG_CB(on_log)
    _check(_lib.varad_set_log_callback(c_callback, None, LOG_LEVELS[level]))
    # Replaced only now: the library no longer calls the previous one.
    _log_callback = c_callback


def _check(status: int) -> None:
    if status == 0:
        return
    message = _lib.varad_last_error_message()
    text = message.decode("utf-8", "replace") if message else ""
    cls = {CANCELLED: CancelledError, BUSY: BusyError}.get(status, VaradError)
    raise cls(status, text)


def _init(struct, init):
    """A size-tagged params struct filled by its varad_*_init call with this binding's
    size: the library writes only that many bytes and defaults the fields it lacks."""
    value = struct()
    _check(init(ctypes.byref(value), ctypes.sizeof(value)))
    return value


def _encode(path) -> Optional[bytes]:
    return None if path is None else os.fsencode(path)


# ---- images ----


def _view(image: np.ndarray, bgr: bool) -> tuple:
    """A C view of `image` and the array that owns the memory (keep it alive)."""
    a = np.asarray(image)
    if a.ndim == 2:
        if a.dtype == np.uint8:
            fmt = FORMAT_MONO8
        elif a.dtype == np.uint16:
            fmt = FORMAT_MONO16
        else:
            raise TypeError(f"a grey image must be uint8 or uint16, not {a.dtype}")
        channels = 1
    elif a.ndim == 3 and a.shape[2] in (3, 4):
        if a.dtype != np.uint8:
            raise TypeError(f"a colour image must be uint8, not {a.dtype}")
        channels = a.shape[2]
        fmt = {(3, False): FORMAT_RGB8, (3, True): FORMAT_BGR8,
               (4, False): FORMAT_RGBA8, (4, True): FORMAT_BGRA8}[(channels, bgr)]
    else:
        raise ValueError(f"an image is HxW or HxWx3/4, not shape {a.shape}")
    # Rows may be padded (a crop of a larger array); pixels within a row must be packed.
    item = a.dtype.itemsize
    packed_row = a.strides[1] == item * channels and (a.ndim == 2 or a.strides[2] == item)
    if not packed_row or a.strides[0] < a.shape[1] * item * channels:
        a = np.ascontiguousarray(a)
    view = _ImageView(a.ctypes.data, a.shape[1], a.shape[0], a.strides[0], fmt)
    return view, a


# ---- results ----


@dataclass
class Region:
    """A connected defect region (pixels above the pixel threshold)."""

    area: int
    x: int
    y: int
    width: int
    height: int
    centroid_x: float
    centroid_y: float
    peak: float
    peak_x: int
    peak_y: int
    mean: float


@dataclass
class ScoreResult:
    """One image's result. `normalised_score`, `decision`, `regions` and `p_value` are None
    for an uncalibrated model; `raw_map` is None unless asked for. `p_value` is the
    conformal p-value of the image score against the calibration's normal scores,
    (1 + #{normal scores >= score}) / (n + 1): small is unlike any good part."""

    map: np.ndarray
    image_score: float
    normalised_score: Optional[float]
    decision: Optional[str]
    regions: Optional[List[Region]]
    regions_found: Optional[int]
    raw_map: Optional[np.ndarray] = None
    p_value: Optional[float] = None


@dataclass
class RateReport:
    """What one decision threshold promises about good parts (rates are fractions).

    `requested`: the rate asked for (0 for a fail threshold from `review_band`);
    `expected`: the rate to expect (the requested one when `extrapolated`, an assumption
    of a log-normal tail, else `conformal_rate`); `conformal_rate`: the
    distribution-free rate on average; `upper_bound`: its 95% upper bound for this
    calibration; `images_needed` / `images_needed_confident`: good images the requested
    rate needs on average / with 95% confidence."""

    requested: float
    threshold: float
    expected: float
    conformal_rate: float
    upper_bound: float
    extrapolated: bool
    images_needed: int
    images_needed_confident: int


@dataclass
class CalibrationReport:
    """What a calibration was fitted on and what its thresholds promise
    (varad_get_calibration_report): `n` normal scores (`cross_fitted` training images
    scored out-of-sample in `folds` folds, `held_out` images), the smallest supported
    rate `achievable_rate` = 1 / (n + 1), the `review` and `fail` thresholds' RateReport,
    the known-defective examples scored and how many of them pass (`escapes`), and the
    review threshold before it was lowered to catch them (None when it was not)."""

    n: int
    cross_fitted: int
    held_out: int
    folds: int
    achievable_rate: float
    review: RateReport
    fail: RateReport
    known_defects: int
    escapes: int
    review_lowered_from: Optional[float]


def _rate_report(c: _CalibrationReport, prefix: str) -> RateReport:
    def get(name):
        return getattr(c, f"{prefix}_{name}")
    return RateReport(get("requested"), get("threshold"), get("expected"), get("conformal_rate"),
                      get("upper_bound"), bool(get("extrapolated")), get("images_needed"),
                      get("images_needed_confident"))


@dataclass
class Progress:
    epoch: int
    epochs: int
    step: int
    steps: int
    loss: float
    elapsed_seconds: float
    remaining_seconds: float


def _read_result(handle: ctypes.c_void_p, heatmap: Optional[str] = None) -> ScoreResult:
    ptr = ctypes.POINTER(ctypes.c_float)()
    n, w, h = c_size_t(), ctypes.c_uint32(), ctypes.c_uint32()
    _check(_lib.varad_result_map(handle, ctypes.byref(ptr), ctypes.byref(n), ctypes.byref(w), ctypes.byref(h)))
    heat = np.ctypeslib.as_array(ptr, shape=(n.value,)).copy().reshape(h.value, w.value)
    score = ctypes.c_float()
    _check(_lib.varad_result_image_score(handle, ctypes.byref(score)))
    norm, decision, p_value = ctypes.c_float(), ctypes.c_uint32(), ctypes.c_double()
    status = _lib.varad_result_normalised_score(handle, ctypes.byref(norm))
    normalised = decision_name = regions = found_n = p = None
    if status == 0:
        normalised = norm.value
        _check(_lib.varad_result_p_value(handle, ctypes.byref(p_value)))
        p = p_value.value
        _check(_lib.varad_result_decision(handle, ctypes.byref(decision)))
        decision_name = DECISIONS[decision.value]
        rptr = ctypes.POINTER(_Region)()
        count, found = c_size_t(), c_size_t()
        _check(_lib.varad_result_regions(handle, ctypes.byref(rptr), ctypes.byref(count), ctypes.byref(found)))
        regions = [
            Region(**{name: getattr(rptr[i], name) for name, _ in _Region._fields_})
            for i in range(count.value)
        ]
        found_n = found.value
    elif status != NOT_CALIBRATED:
        _check(status)
    raw = None
    rw, rh = ctypes.c_uint32(), ctypes.c_uint32()
    if _lib.varad_result_raw_map(handle, ctypes.byref(ptr), ctypes.byref(n), ctypes.byref(rw), ctypes.byref(rh)) == 0:
        raw = np.ctypeslib.as_array(ptr, shape=(n.value,)).copy().reshape(rh.value, rw.value)
    if heatmap is not None:
        _check(_lib.varad_write_heatmap_png(handle, _encode(heatmap), 0.0))
    return ScoreResult(heat, score.value, normalised, decision_name, regions, found_n, raw, p)


# ---- the model ----


def _check_fits(struct, name, value):
    """ValueError unless the integer `value` fits the C integer type of field `name`:
    ctypes wraps it silently otherwise (2**32 + 3 becomes 3, -1 the largest value)."""
    ctype = dict(struct._fields_)[name]
    if not isinstance(value, int) or ctype in (ctypes.c_float, ctypes.c_double):
        return
    bits = 8 * ctypes.sizeof(ctype)
    signed = ctype(-1).value == -1
    low, high = (-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if signed else (0, (1 << bits) - 1)
    if not low <= value <= high:
        raise ValueError(f"params.{name} = {value} does not fit its C type "
                         f"({'int' if signed else 'uint'}{bits}_t: {low} to {high})")


class Model:
    """A varad model. Scoring may be called from many threads at once, also while training
    or a threshold change runs: each score comes entirely from the model as it was when
    the score started, and training publishes the new model atomically when it ends. A
    second train, or a threshold change, while training runs raises BusyError."""

    def __init__(self, backbone, *, input_size=None, device="cpu", cuda_device=0,
                 runtime_path=None, **params):
        """Creates an untrained model on the `backbone` ONNX file. `params` are fields of
        the C VaradParams (epochs=3, learning_rate=2e-3, prediction_step=2, seed=...),
        each with the range its documentation in varad.h states. A value outside it
        raises VaradError VARAD_ERR_CONFIG naming every such field (`params.sigma`), before
        the backbone is opened; an integer the field's C type cannot hold raises
        ValueError (ctypes would silently wrap it into another, perhaps valid, value).
        `beyond_data` takes "log_normal_tail" or "refuse", `neighbour_bank_selection`
        "random" or "coreset", `neighbour_bank_levels` "coarsest" or "all", `neighbour_term`
        "above_normal" or "scaled" (each or the C value), and `catch_known_defects` a bool."""
        p = _init(_Params, _lib.varad_params_init)
        if runtime_path is None:
            runtime_path = _installed_runtime()
        keep = [_encode(backbone), _encode(runtime_path)]
        p.backbone_path, p.runtime_path = keep
        if input_size is not None:
            p.input_width, p.input_height = input_size
        p.device = DEVICES[device]
        p.cuda_device = cuda_device
        known = {name for name, _ in _Params._fields_}
        for key, value in params.items():
            if key not in known or key in ("size", "backbone_path", "runtime_path", "levels"):
                raise TypeError(f"unknown model parameter {key!r}")
            if key in _NAMED and isinstance(value, str):
                names = _NAMED[key]
                if value not in names:
                    raise ValueError(f"{key} must be one of {', '.join(names)}, not {value!r}")
                value = names[value]
            if isinstance(value, bool):
                value = int(value)
            _check_fits(_Params, key, value)
            setattr(p, key, value)
        handle = ctypes.c_void_p()
        _check(_lib.varad_create(ctypes.byref(p), ctypes.byref(handle)))
        self._handle = handle

    @classmethod
    def load(cls, path, *, backbone=None, device=None, threads=None) -> "Model":
        """Loads a model file; `backbone`, `device` and `threads` override what was saved."""
        lp = _init(_LoadParams, _lib.varad_load_params_init)
        keep = [_encode(backbone), _encode(_installed_runtime())]
        lp.backbone_path, lp.runtime_path = keep
        if device is not None:
            lp.device = DEVICES[device]
        if threads is not None:
            lp.threads = threads
        handle = ctypes.c_void_p()
        _check(_lib.varad_load(_encode(path), ctypes.byref(lp), ctypes.byref(handle)))
        model = cls.__new__(cls)
        model._handle = handle
        return model

    def _h(self) -> ctypes.c_void_p:
        if not self._handle:
            raise ValueError("the model is closed")
        return self._handle

    def close(self) -> None:
        """Frees the model now (also done when it is garbage collected)."""
        handle, self._handle = getattr(self, "_handle", None), None
        if handle:
            _lib.varad_destroy(handle)

    def __del__(self):
        self.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def save(self, path) -> None:
        _check(_lib.varad_save(self._h(), _encode(path)))

    def train(self, images: Iterable[np.ndarray], progress: Optional[Callable[[Progress], bool]] = None,
              bgr: bool = False, defective: Iterable[np.ndarray] = ()) -> dict:
        """Trains on good images (each added, then no longer needed). `defective`: images
        of bad parts, never trained on: calibration scores them and the calibration
        report counts those that would pass (with catch_known_defects=True the review
        threshold is lowered until none does). `progress` gets a Progress after every
        step; returning True cancels (CancelledError, model unchanged). Returns the
        training report as a dict."""
        s = ctypes.c_void_p()
        _check(_lib.varad_training_set_create(self._h(), ctypes.byref(s)))
        try:
            for add, group in ((_lib.varad_training_set_add, images),
                               (_lib.varad_training_set_add_defective, defective)):
                for image in group:
                    view, keep = _view(image, bgr)
                    _check(add(s, self._h(), ctypes.byref(view)))
                    del keep
            raised: list = []

            def on_progress(p, _user):
                if progress is None:
                    return 0
                try:
                    q = p.contents
                    return 1 if progress(Progress(q.epoch, q.epochs, q.step, q.steps, q.loss,
                                                  q.elapsed_seconds, q.remaining_seconds)) else 0
                except BaseException as e:  # re-raised after the C call returns
                    raised.append(e)
                    return 1

            callback = _PROGRESS_CB(on_progress)
            report = _TrainReport(size=ctypes.sizeof(_TrainReport))
            status = _lib.varad_train(self._h(), s, callback, None, ctypes.byref(report))
            if raised:
                raise raised[0]
            _check(status)
            return {name: getattr(report, name) for name, _ in _TrainReport._fields_ if name != "size"}
        finally:
            _lib.varad_training_set_destroy(s)

    def _score_params(self, roi, raw_map):
        sp = _init(_ScoreParams, _lib.varad_score_params_init)
        keep = None
        if roi is not None:
            keep = np.ascontiguousarray(roi, dtype=np.uint8)
            sp.roi, sp.roi_len = keep.ctypes.data, keep.size
        sp.raw_map = 1 if raw_map else 0
        return sp, keep

    def score(self, image: np.ndarray, *, roi: Optional[np.ndarray] = None, raw_map: bool = False,
              bgr: bool = False, heatmap: Optional[str] = None) -> ScoreResult:
        """Scores one image. `roi`: HxW mask, nonzero = inspect. `heatmap`: a PNG path."""
        view, keep = _view(image, bgr)
        sp, keep_roi = self._score_params(roi, raw_map)
        handle = ctypes.c_void_p()
        _check(_lib.varad_score(self._h(), ctypes.byref(view), ctypes.byref(sp), ctypes.byref(handle)))
        try:
            return _read_result(handle, heatmap)
        finally:
            _lib.varad_score_result_destroy(handle)
            del keep, keep_roi

    def score_batch(self, images: Sequence[np.ndarray], *, roi=None, raw_map=False, bgr=False) -> List[ScoreResult]:
        """Scores several images in one call."""
        pairs = [_view(im, bgr) for im in images]
        views = (_ImageView * len(pairs))(*[v for v, _ in pairs])
        sp, keep_roi = self._score_params(roi, raw_map)
        handles = (ctypes.c_void_p * len(pairs))()
        _check(_lib.varad_score_batch(self._h(), views, len(pairs), ctypes.byref(sp), handles))
        try:
            return [_read_result(ctypes.c_void_p(h)) for h in handles]
        finally:
            for h in handles:
                _lib.varad_score_result_destroy(h)
            del pairs, keep_roi

    def get_threshold(self, which: str) -> float:
        """One of "image", "review", "fail", "pixel" (VaradError NOT_CALIBRATED before training)."""
        value = ctypes.c_float()
        _check(_lib.varad_get_threshold(self._h(), THRESHOLDS[which], ctypes.byref(value)))
        return value.value

    def set_threshold(self, which: str, value: float) -> None:
        _check(_lib.varad_set_threshold(self._h(), THRESHOLDS[which], value))

    def set_decision_thresholds(self, review: float, fail: float) -> None:
        _check(_lib.varad_set_decision_thresholds(self._h(), review, fail))

    def calibration_report(self) -> CalibrationReport:
        """What the calibration rests on and what its thresholds promise (VaradError
        NOT_CALIBRATED before training)."""
        c = _CalibrationReport(size=ctypes.sizeof(_CalibrationReport))
        _check(_lib.varad_get_calibration_report(self._h(), ctypes.byref(c)))
        return CalibrationReport(
            c.n, c.cross_fitted, c.held_out, c.folds, c.achievable_rate,
            _rate_report(c, "review"), _rate_report(c, "fail"), c.known_defects, c.escapes,
            c.review_lowered_from if c.review_lowered else None)

    @property
    def active_device(self) -> str:
        """"cpu" or "cuda:N": where the backbone actually runs."""
        device, index = ctypes.c_uint32(), ctypes.c_uint32()
        _check(_lib.varad_active_device(self._h(), ctypes.byref(device), ctypes.byref(index)))
        return "cpu" if device.value == DEVICES["cpu"] else f"cuda:{index.value}"
