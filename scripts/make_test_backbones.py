"""Writes the small ONNX files the Rust tests use to exercise the backbone contract.

`tests/data/contract/*.onnx`: one good two-level convolutional backbone and one file per
contract violation. Deterministic: re-running reproduces the committed files.
Usage: .deps/venv/bin/python scripts/make_test_backbones.py tests/data/contract
"""
import sys
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

GOOD_METADATA = {
    "varad.contract": "1",
    "varad.name": "conv-test",
    "varad.input_multiple": "8",
    "varad.input_size": "64x64",
    "varad.output_strides": "4,8",
}


def build(metadata=GOOD_METADATA, input_type=TensorProto.FLOAT, extra_input=False, wrong_stride=False):
    rng = np.random.default_rng(0)
    w1 = numpy_helper.from_array(rng.standard_normal((8, 3, 4, 4)).astype(np.float32), "w1")
    w2 = numpy_helper.from_array(rng.standard_normal((16, 8, 2, 2)).astype(np.float32), "w2")
    nodes = []
    source = "image"
    if input_type != TensorProto.FLOAT:
        nodes.append(helper.make_node("Cast", ["image"], ["image_f32"], to=TensorProto.FLOAT))
        source = "image_f32"
    nodes.append(helper.make_node("Conv", [source, "w1"], ["stride4"], strides=[4, 4]))
    second_stride = 4 if wrong_stride else 2
    nodes.append(helper.make_node("Conv", ["stride4", "w2"], ["stride8"], strides=[second_stride] * 2, pads=[0, 0, 0, 0]))
    inputs = [helper.make_tensor_value_info("image", input_type, ["batch", 3, "height", "width"])]
    if extra_input:
        inputs.append(helper.make_tensor_value_info("mask", TensorProto.FLOAT, ["batch", 1, "height", "width"]))
    outputs = [
        helper.make_tensor_value_info("stride4", TensorProto.FLOAT, ["batch", 8, None, None]),
        helper.make_tensor_value_info("stride8", TensorProto.FLOAT, ["batch", 16, None, None]),
    ]
    graph = helper.make_graph(nodes, "conv-test", inputs, outputs, [w1, w2])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="varad-tests")
    model.ir_version = 8
    for key, value in metadata.items():
        prop = model.metadata_props.add()
        prop.key, prop.value = key, value
    onnx.checker.check_model(model)
    return model


def main() -> None:
    out = Path(sys.argv[1] if len(sys.argv) > 1 else "tests/data/contract")
    out.mkdir(parents=True, exist_ok=True)
    no_name = {k: v for k, v in GOOD_METADATA.items() if k != "varad.name"}
    files = {
        "good.onnx": build(),
        "no_metadata.onnx": build(metadata={}),
        "no_name.onnx": build(metadata=no_name),
        "uint8_input.onnx": build(input_type=TensorProto.UINT8),
        "two_inputs.onnx": build(extra_input=True),
        # Declares stride 8 for an output that really has stride 16: caught at the first run.
        "wrong_stride.onnx": build(wrong_stride=True),
    }
    for name, model in files.items():
        onnx.save(model, out / name)
    (out / "not_onnx.onnx").write_bytes(b"this is not an ONNX file\n")
    print(f"wrote {len(files) + 1} files to {out}")


if __name__ == "__main__":
    main()
