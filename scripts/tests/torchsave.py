"""Writes torch.save-format files without torch, for testing the torch-free reader.

It reproduces what torch.save writes (protocol-2 pickle, storages as persistent ids
``('storage', torch.XStorage, key, 'cpu', numel)``, tensors via
``torch._utils._rebuild_tensor_v2``) in both containers: the zip archive and the legacy
stream. The pickle names torch's globals by writing GLOBAL opcodes directly, so torch
need not be importable.
"""

from __future__ import annotations

import collections
import io
import pickle
import struct
import zipfile
from dataclasses import dataclass

import numpy as np

_TYPE_NAMES = {
    np.dtype("<f4"): "FloatStorage",
    np.dtype("<f8"): "DoubleStorage",
    np.dtype("<f2"): "HalfStorage",
    np.dtype("<i8"): "LongStorage",
    np.dtype("<i4"): "IntStorage",
    np.dtype("<i2"): "ShortStorage",
    np.dtype("i1"): "CharStorage",
    np.dtype("u1"): "ByteStorage",
    np.dtype("?"): "BoolStorage",
}


@dataclass(eq=False)
class Storage:
    """One storage: a flat array; ``bfloat16`` marks uint16 data holding bfloat16 bits."""

    data: np.ndarray
    bfloat16: bool = False

    @property
    def type_name(self) -> str:
        return "BFloat16Storage" if self.bfloat16 else _TYPE_NAMES[self.data.dtype]


@dataclass(eq=False)
class Tensor:
    """A view of a storage: element offset, shape and strides (in elements)."""

    storage: Storage
    offset: int
    shape: tuple
    stride: tuple

    @staticmethod
    def of(array: np.ndarray) -> "Tensor":
        a = np.array(array, order="C")  # (ascontiguousarray would make 0-d arrays 1-d)
        stride, acc = [], 1
        for n in reversed(a.shape):
            stride.insert(0, acc)
            acc *= n
        return Tensor(Storage(a.reshape(-1)), 0, a.shape, tuple(stride))


class _Global:
    def __init__(self, module: str, name: str):
        self.module, self.name = module, name

    def __call__(self, *args):  # pickle wants reduce functions to be callable
        raise NotImplementedError


class _Pickler(pickle._Pickler):
    dispatch = dict(pickle._Pickler.dispatch)

    def __init__(self, f, storages: dict):
        super().__init__(f, protocol=2)
        self.storages = storages  # id(storage) -> (key, storage), in first-use order

    def _save_global_ref(self, obj):
        self.write(pickle.GLOBAL + f"{obj.module}\n{obj.name}\n".encode("ascii"))
        self.memoize(obj)

    dispatch[_Global] = _save_global_ref

    def persistent_id(self, obj):
        if isinstance(obj, Storage):
            if id(obj) not in self.storages:
                self.storages[id(obj)] = (str(len(self.storages)), obj)
            key = self.storages[id(obj)][0]
            return ("storage", _Global("torch", obj.type_name), key, "cpu", obj.data.size)
        return None

    def reducer_override(self, obj):
        if isinstance(obj, np.ndarray):
            obj = Tensor.of(obj)
        if isinstance(obj, Tensor):
            args = (obj.storage, obj.offset, tuple(obj.shape), tuple(obj.stride), False,
                    collections.OrderedDict())
            return _Global("torch._utils", "_rebuild_tensor_v2"), args
        return NotImplemented


def _pickle(obj) -> tuple[bytes, list]:
    buf = io.BytesIO()
    storages: dict = {}
    _Pickler(buf, storages).dump(obj)
    return buf.getvalue(), list(storages.values())


def save_zip(obj, path: str, prefix: str = "archive") -> None:
    data, storages = _pickle(obj)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as zf:
        zf.writestr(f"{prefix}/data.pkl", data)
        zf.writestr(f"{prefix}/byteorder", "little")
        for key, storage in storages:
            zf.writestr(f"{prefix}/data/{key}", storage.data.tobytes())
        zf.writestr(f"{prefix}/version", "3\n")


def save_legacy(obj, path: str) -> None:
    data, storages = _pickle(obj)
    with open(path, "wb") as f:
        for header in (0x1950A86A20F9469CFC6C, 1001,
                       {"protocol_version": 1001, "little_endian": True,
                        "type_sizes": {"short": 2, "int": 4, "long": 4}}):
            pickle.dump(header, f, protocol=2)
        f.write(data)
        pickle.dump([key for key, _ in storages], f, protocol=2)
        for _key, storage in storages:
            f.write(struct.pack("<q", storage.data.size))
            f.write(storage.data.tobytes())
