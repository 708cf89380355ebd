"""A small helper for writing ONNX graphs node by node with onnx.helper and numpy.

Every backbone file follows one contract (DESIGN.md, "The backbone"):

* one input ``image``: float32 ``[batch, 3, height, width]``, RGB in [0, 1];
* one float32 output per hierarchy level, ``[batch, C, H/s, W/s]``, finest first;
* ``metadata_props`` with the ``varad.*`` keys built by :func:`contract_metadata`.

Files are written with opset 17 and IR version 8 so that ONNX Runtime 1.17 and later
load them. Serialisation is deterministic: the same weights and options give the same
bytes.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OPSET = 17
IR_VERSION = 8  # what opset 17 was released with; ONNX Runtime >= 1.14 reads it
PRODUCER = "varad-scripts"
CONTRACT_VERSION = "1"
INPUT_NAME = "image"


class Graph:
    """Collects nodes and initializers; names are unique and readable."""

    def __init__(self, name: str):
        self.name = name
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: list[onnx.TensorProto] = []
        self.inputs: list[onnx.ValueInfoProto] = []
        self.outputs: list[onnx.ValueInfoProto] = []
        self._names: set[str] = set()

    def _unique(self, name: str) -> str:
        if name not in self._names:
            self._names.add(name)
            return name
        i = 1
        while f"{name}_{i}" in self._names:
            i += 1
        name = f"{name}_{i}"
        self._names.add(name)
        return name

    def const(self, name: str, value, dtype=np.float32) -> str:
        """Adds an initializer (a weight or a constant) and returns its name."""
        arr = np.array(value, dtype=dtype, order="C")  # keeps 0-d arrays 0-d
        name = self._unique(name)
        self.initializers.append(numpy_helper.from_array(arr, name))
        return name

    def op(self, op_type: str, inputs: list[str], name: str, n_out: int = 1, **attrs):
        """Adds a node; returns its output name (or a list of them if n_out > 1)."""
        name = self._unique(name)
        outs = [name] if n_out == 1 else [self._unique(f"{name}:{i}") for i in range(n_out)]
        self.nodes.append(helper.make_node(op_type, inputs, outs, name=name, **attrs))
        return outs[0] if n_out == 1 else outs

    def image_input(self) -> str:
        self._names.add(INPUT_NAME)
        self.inputs.append(
            helper.make_tensor_value_info(
                INPUT_NAME, TensorProto.FLOAT, ["batch", 3, "height", "width"]
            )
        )
        return INPUT_NAME

    def output(self, tensor: str, name: str, shape: list) -> None:
        """Exposes ``tensor`` as graph output ``name`` (an Identity renames it)."""
        self._names.add(name)
        self.nodes.append(helper.make_node("Identity", [tensor], [name], name=f"{name}_out"))
        self.outputs.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, shape))

    def model(self, metadata: dict[str, str], doc: str = "") -> onnx.ModelProto:
        graph = helper.make_graph(
            self.nodes, self.name, self.inputs, self.outputs, initializer=self.initializers
        )
        model = helper.make_model(
            graph,
            opset_imports=[helper.make_opsetid("", OPSET)],
            producer_name=PRODUCER,
            doc_string=doc,
        )
        model.ir_version = IR_VERSION
        helper.set_model_props(model, metadata)
        onnx.checker.check_model(model)
        return model


def contract_metadata(
    *,
    name: str,
    input_multiple: int,
    input_size: tuple[int, int],
    output_strides: list[int],
    license: str,
    source: str,
    default_levels: list[str] | None = None,
    extra: dict[str, str] | None = None,
) -> dict[str, str]:
    """The ``varad.*`` metadata keys every backbone carries. input_size is (width, height);
    default_levels (optional) names the outputs a model uses when its configuration names
    none."""
    meta = {
        "varad.contract": CONTRACT_VERSION,
        "varad.name": name,
        "varad.input_multiple": str(input_multiple),
        "varad.input_size": f"{input_size[0]}x{input_size[1]}",
        "varad.output_strides": ",".join(str(s) for s in output_strides),
        "varad.license": license,
        "varad.source": source,
    }
    if default_levels:
        meta["varad.default_levels"] = ",".join(default_levels)
    meta.update(extra or {})
    return meta


def save(model: onnx.ModelProto, path: str) -> None:
    """Writes the model atomically (temp file + rename)."""
    import os
    import tempfile

    data = model.SerializeToString(deterministic=True)
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".onnx", dir=directory)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
