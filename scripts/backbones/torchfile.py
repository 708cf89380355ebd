"""Reads PyTorch checkpoints (``torch.save`` files) into numpy arrays, without torch.

Two on-disk formats exist and both are handled here:

* the legacy format (torch < 1.6, or ``_use_new_zipfile_serialization=False``): five
  pickles back to back (magic number, protocol version, system info, the object itself,
  the list of storage keys), followed by the raw storages in that key order, each one as
  a little-endian int64 element count and then the bytes;
* the zip format (torch >= 1.6): a zip archive holding ``<prefix>/data.pkl`` (the object)
  and one file ``<prefix>/data/<key>`` per storage, plus ``<prefix>/byteorder``.

In both, the object pickle refers to storages through persistent ids
``('storage', StorageType, key, location, numel[, view_metadata])`` and builds tensors
with ``torch._utils._rebuild_tensor_v2(storage, offset, size, stride, ...)``. The
unpickler below resolves only a short allow-list of globals (these rebuild functions,
storage types, ``OrderedDict``); anything else is refused, so a checkpoint cannot run
code while it is read.

Only tensors, dicts, lists, tuples and plain Python values come back; tensors are
``numpy.ndarray`` with the storage's dtype (bfloat16 is widened to float32).
"""

from __future__ import annotations

import collections
import io
import pickle
import struct
import zipfile
from dataclasses import dataclass
from typing import Any, BinaryIO

import numpy as np

LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
LEGACY_PROTOCOL = 1001

# Storage class name -> (numpy dtype as stored, element size). bfloat16 has no numpy
# dtype; it is read as uint16 and widened afterwards.
STORAGE_DTYPES = {
    "FloatStorage": np.dtype("<f4"),
    "DoubleStorage": np.dtype("<f8"),
    "HalfStorage": np.dtype("<f2"),
    "BFloat16Storage": np.dtype("<u2"),
    "LongStorage": np.dtype("<i8"),
    "IntStorage": np.dtype("<i4"),
    "ShortStorage": np.dtype("<i2"),
    "CharStorage": np.dtype("i1"),
    "ByteStorage": np.dtype("u1"),
    "BoolStorage": np.dtype("?"),
    "UntypedStorage": np.dtype("u1"),
}


class CheckpointError(ValueError):
    """The file is not a checkpoint this reader understands."""


@dataclass
class _Storage:
    """A storage named by the pickle; its bytes arrive later (legacy) or on demand (zip)."""

    key: str
    type_name: str
    numel: int
    data: np.ndarray | None = None  # 1-D, filled by the loader


@dataclass
class _StorageView:
    """A legacy view into a bigger storage: elements [offset, offset + size) of root."""

    root: _Storage
    offset: int
    size: int


@dataclass
class _LazyTensor:
    storage: _Storage | _StorageView
    offset: int
    size: tuple
    stride: tuple


@dataclass(frozen=True)
class _StorageType:
    name: str


def _rebuild_tensor(storage, storage_offset, size, stride, *_ignored):
    return _LazyTensor(storage, int(storage_offset), tuple(size), tuple(stride))


def _rebuild_parameter(data, *_ignored):
    return data


_ALLOWED_GLOBALS = {
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
    ("torch._utils", "_rebuild_tensor"): _rebuild_tensor,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    ("torch._utils", "_rebuild_parameter_with_state"): _rebuild_parameter,
}


class _Unpickler(pickle.Unpickler):
    def __init__(self, file: BinaryIO, storages: dict[str, _Storage]):
        super().__init__(file, encoding="utf-8")
        self.storages = storages

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _ALLOWED_GLOBALS:
            return _ALLOWED_GLOBALS[(module, name)]
        if module in ("torch", "torch.storage") and name in STORAGE_DTYPES:
            return _StorageType(name)
        raise CheckpointError(
            f"checkpoint refers to {module}.{name}; only tensors, dicts and lists of them "
            "can be read without torch (is this a pickled module instead of a state_dict?)"
        )

    def persistent_load(self, pid: Any) -> Any:
        if not isinstance(pid, tuple) or not pid:
            raise CheckpointError(f"unexpected persistent id {pid!r}")
        kind = pid[0].decode("ascii") if isinstance(pid[0], bytes) else pid[0]
        if kind != "storage":
            raise CheckpointError(f"unsupported persistent id kind {kind!r}")
        storage_type, key, _location, numel = pid[1:5]
        view = pid[5] if len(pid) > 5 else None
        if not isinstance(storage_type, _StorageType):
            raise CheckpointError(f"unexpected storage type {storage_type!r}")
        key = str(key)
        root = self.storages.get(key)
        if root is None:
            root = _Storage(key, storage_type.name, int(numel))
            self.storages[key] = root
        if view is not None:
            _view_key, offset, size = view
            return _StorageView(root, int(offset), int(size))
        return root


def _storage_array(storage: _Storage | _StorageView) -> np.ndarray:
    if isinstance(storage, _StorageView):
        return _storage_array(storage.root)[storage.offset : storage.offset + storage.size]
    if storage.data is None:
        raise CheckpointError(f"storage {storage.key} has no data")
    return storage.data


def _materialise(t: _LazyTensor) -> np.ndarray:
    flat = _storage_array(t.storage)
    shape, stride = t.size, t.stride
    if len(shape) != len(stride):
        raise CheckpointError(f"tensor size {shape} and stride {stride} disagree")
    if any(n == 0 for n in shape):
        out = np.zeros(shape, flat.dtype)
    else:
        last = t.offset + sum((n - 1) * s for n, s in zip(shape, stride))
        if t.offset < 0 or any(s < 0 for s in stride) or last >= flat.size:
            raise CheckpointError(
                f"tensor of size {shape} stride {stride} offset {t.offset} does not fit "
                f"its storage of {flat.size} elements"
            )
        isz = flat.dtype.itemsize
        out = np.lib.stride_tricks.as_strided(
            flat[t.offset :], shape=shape, strides=[s * isz for s in stride]
        ).copy()
    return out


def _type_name(storage: _Storage | _StorageView) -> str:
    return storage.root.type_name if isinstance(storage, _StorageView) else storage.type_name


def _resolve(obj: Any) -> Any:
    """Replaces every lazy tensor in a loaded structure by its numpy array."""
    if isinstance(obj, _LazyTensor):
        arr = _materialise(obj)
        if _type_name(obj.storage) == "BFloat16Storage":
            arr = (arr.astype(np.uint32) << 16).view(np.float32)
        return arr.astype(arr.dtype.newbyteorder("="), copy=False)
    if isinstance(obj, collections.OrderedDict):
        return collections.OrderedDict((k, _resolve(v)) for k, v in obj.items())
    if isinstance(obj, dict):
        return {k: _resolve(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_resolve(v) for v in obj]
    if isinstance(obj, tuple):
        return tuple(_resolve(v) for v in obj)
    return obj


def _bytes_to_array(raw: bytes, storage: _Storage, byteorder: str) -> np.ndarray:
    dtype = STORAGE_DTYPES[storage.type_name]
    if byteorder == "big":
        dtype = dtype.newbyteorder(">")
    if len(raw) != storage.numel * dtype.itemsize:
        raise CheckpointError(
            f"storage {storage.key}: {len(raw)} bytes for {storage.numel} elements of "
            f"{storage.type_name}"
        )
    return np.frombuffer(raw, dtype=dtype)


def _load_legacy(f: BinaryIO) -> Any:
    magic = pickle.load(f)
    if magic != LEGACY_MAGIC:
        raise CheckpointError("not a PyTorch checkpoint (bad magic number)")
    protocol = pickle.load(f)
    if protocol != LEGACY_PROTOCOL:
        raise CheckpointError(f"unsupported legacy protocol version {protocol}")
    sys_info = pickle.load(f)
    byteorder = "little" if sys_info.get("little_endian", True) else "big"
    storages: dict[str, _Storage] = {}
    result = _Unpickler(f, storages).load()
    keys = pickle.load(f)
    for key in keys:
        key = str(key)
        if key not in storages:
            raise CheckpointError(f"storage {key} listed but never used")
        storage = storages[key]
        head = f.read(8)
        if len(head) != 8:
            raise CheckpointError(f"file ends before storage {key}")
        (numel,) = struct.unpack("<q" if byteorder == "little" else ">q", head)
        if numel != storage.numel:
            raise CheckpointError(f"storage {key}: header says {numel} elements, pickle {storage.numel}")
        nbytes = numel * STORAGE_DTYPES[storage.type_name].itemsize
        raw = f.read(nbytes)
        if len(raw) != nbytes:
            raise CheckpointError(f"file ends inside storage {key}")
        storage.data = _bytes_to_array(raw, storage, byteorder)
    return _resolve(result)


def _load_zip(zf: zipfile.ZipFile) -> Any:
    names = zf.namelist()
    pkl = [n for n in names if n.endswith("data.pkl") and n.count("/") == 1]
    if len(pkl) != 1:
        raise CheckpointError("zip checkpoint without exactly one <prefix>/data.pkl")
    prefix = pkl[0][: -len("data.pkl")]
    byteorder = "little"
    if prefix + "byteorder" in names:
        byteorder = zf.read(prefix + "byteorder").decode("ascii").strip()
    storages: dict[str, _Storage] = {}
    result = _Unpickler(io.BytesIO(zf.read(pkl[0])), storages).load()
    for key, storage in storages.items():
        member = f"{prefix}data/{key}"
        if member not in names:
            raise CheckpointError(f"zip checkpoint lacks storage file {member}")
        storage.data = _bytes_to_array(zf.read(member), storage, byteorder)
    return _resolve(result)


def load(path: str) -> Any:
    """Loads a ``torch.save`` file (legacy or zip format) with numpy arrays for tensors."""
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as zf:
            return _load_zip(zf)
    with open(path, "rb") as f:
        return _load_legacy(f)


def load_state_dict(path: str) -> dict[str, np.ndarray]:
    """Loads a checkpoint holding a state_dict (possibly wrapped as {'model': ...} etc.)."""
    obj = load(path)
    return unwrap_state_dict(obj)


def unwrap_state_dict(obj: Any) -> dict[str, np.ndarray]:
    if isinstance(obj, dict):
        for wrapper in ("state_dict", "model", "teacher"):
            if wrapper in obj and isinstance(obj[wrapper], dict):
                if not any(isinstance(v, np.ndarray) for v in obj.values()):
                    obj = obj[wrapper]
                    break
    if not isinstance(obj, dict) or not all(isinstance(v, np.ndarray) for v in obj.values()):
        raise CheckpointError("checkpoint is not a state_dict (a mapping of names to tensors)")
    return dict(obj)
