"""DINOv2-style Vision Transformer as an ONNX backbone, built from a state_dict with numpy.

The state_dict uses the official DINOv2 key names (``cls_token``, ``pos_embed``,
``patch_embed.proj``, ``blocks.{i}.norm1 / attn.qkv / attn.proj / ls1.gamma / norm2 /
mlp.fc1 / mlp.fc2 / ls2.gamma``, ``norm``; ``mask_token`` is read and ignored). The same
builder makes the real ViT-S/14 and ViT-B/14 and the tiny random ViT for unit tests.

Each output ``block{L}`` is what DINOv2's
``get_intermediate_layers(x, n=[L-1, ...], reshape=True, norm=True)`` returns for block
L (1-based): the patch tokens after block L, passed through the final LayerNorm, as
``[B, D, H/p, W/p]``. The graph:

* normalises with ImageNet mean/std: ``(x - mean) / std``;
* embeds patches (a p x p, stride p convolution), prepends the class token;
* adds the position embedding, interpolated as DINOv2's ``interpolate_pos_encoding``
  does it (below);
* runs blocks ``x = x + ls1 * attn(norm1(x)); x = x + ls2 * mlp(norm2(x))``, LayerNorm
  eps 1e-6, exact (erf) GELU, softmax attention with ``q * head_dim**-0.5``.

Position embedding. DINOv2 keeps a ``M x M`` grid (37 x 37 for 518-pixel training) and,
for an input of ``h x w`` patches, returns it unchanged when ``h*w == M*M`` and the image
is square; otherwise it calls ``F.interpolate(grid, scale_factor=((h + 0.1) / M,
(w + 0.1) / M), mode="bicubic", align_corners=False)``. Two details matter and are kept
here: the output size is ``floor(M * scale) = h`` (the 0.1 offset guards that floor), and
because a scale factor (not a size) is given, torch maps output pixel ``d`` to input
coordinate ``(d + 0.5) / scale - 0.5`` with that same scale, i.e. ``(d + 0.5) * M /
(h + 0.1) - 0.5`` rather than ``... * M / h``. ONNX ``Resize`` given ``scales`` does
exactly the same (output floor(M * scale), half_pixel coordinates divided by scale), with
mode cubic, ``cubic_coeff_a = -0.75`` and ``exclude_outside = 0`` (torch's bicubic clamps
the taps to the border, as ONNX Runtime does). The unchanged case is a Resize with scale
1, which is an exact identity for this kernel. (ONNX Runtime's CPU Resize also copies when
the output size equals the input size, whatever the scale; torch does not. Within the
contract, sides multiple of 14, the two never disagree: see scripts/README.md.)
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .onnx_graph import Graph, contract_metadata

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
LN_EPS = 1e-6
INTERPOLATE_OFFSET = 0.1
CUBIC_A = -0.75


@dataclass(frozen=True)
class ViTConfig:
    name: str
    patch_size: int
    dim: int
    depth: int
    heads: int
    mlp_hidden: int
    pos_grid: int  # M: pos_embed holds 1 + M*M entries
    input_size: tuple[int, int]  # preferred (width, height)
    layers: tuple[int, ...] = (4, 8, 12)  # 1-based blocks to output
    license: str = ""
    source: str = ""
    extra_meta: dict = field(default_factory=dict)

    @property
    def head_dim(self) -> int:
        return self.dim // self.heads


ARCHS = {
    "vits14": ViTConfig("dinov2-vits14", 14, 384, 12, 6, 1536, 37, (1022, 1022)),
    "vitb14": ViTConfig("dinov2-vitb14", 14, 768, 12, 12, 3072, 37, (1022, 1022)),
}


def expected_shapes(cfg: ViTConfig) -> dict[str, tuple]:
    """Names and shapes of every tensor the builder reads (official DINOv2 names)."""
    d, p, m, f = cfg.dim, cfg.patch_size, cfg.pos_grid, cfg.mlp_hidden
    shapes = {
        "cls_token": (1, 1, d),
        "pos_embed": (1, 1 + m * m, d),
        "patch_embed.proj.weight": (d, 3, p, p),
        "patch_embed.proj.bias": (d,),
        "norm.weight": (d,),
        "norm.bias": (d,),
    }
    for i in range(cfg.depth):
        b = f"blocks.{i}"
        shapes.update({
            f"{b}.norm1.weight": (d,), f"{b}.norm1.bias": (d,),
            f"{b}.attn.qkv.weight": (3 * d, d), f"{b}.attn.qkv.bias": (3 * d,),
            f"{b}.attn.proj.weight": (d, d), f"{b}.attn.proj.bias": (d,),
            f"{b}.ls1.gamma": (d,),
            f"{b}.norm2.weight": (d,), f"{b}.norm2.bias": (d,),
            f"{b}.mlp.fc1.weight": (f, d), f"{b}.mlp.fc1.bias": (f,),
            f"{b}.mlp.fc2.weight": (d, f), f"{b}.mlp.fc2.bias": (d,),
            f"{b}.ls2.gamma": (d,),
        })
    return shapes


IGNORED_KEYS = {"mask_token"}


def check_state_dict(sd: dict[str, np.ndarray], cfg: ViTConfig) -> None:
    """Raises ValueError naming every missing, misshapen or unexpected tensor."""
    want = expected_shapes(cfg)
    problems = []
    if "pos_embed" in sd and "cls_token" in sd:
        d = sd["cls_token"].shape[-1]
        if d != cfg.dim:
            problems.append(f"embedding dim is {d}, but {cfg.name} has {cfg.dim} (wrong --arch?)")
    if any(k.startswith("register_tokens") for k in sd):
        problems.append("checkpoint has register tokens (a *_reg model), which this exporter does not support")
    missing = [k for k in want if k not in sd]
    if missing:
        problems.append(f"missing {len(missing)} tensors, e.g. {missing[:5]}")
    for k, shape in want.items():
        if k in sd and tuple(sd[k].shape) != shape:
            problems.append(f"{k}: shape {tuple(sd[k].shape)}, expected {shape}")
    unexpected = sorted(k for k in sd if k not in want and k not in IGNORED_KEYS)
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected tensors, e.g. {unexpected[:5]}")
    if problems:
        raise ValueError(f"state_dict does not fit {cfg.name}:\n  " + "\n  ".join(problems))


def random_state_dict(cfg: ViTConfig, seed: int) -> dict[str, np.ndarray]:
    """Random float32 weights with the official names and shapes, scaled so that every
    part of the network (attention patterns included) does visible work."""
    rng = np.random.default_rng(seed)
    sd = {}
    for k, shape in expected_shapes(cfg).items():
        if k.endswith("norm1.weight") or k.endswith("norm2.weight") or k == "norm.weight":
            a = 1.0 + 0.2 * rng.standard_normal(shape)
        elif k.endswith(".gamma"):
            a = rng.uniform(0.1, 1.0, shape)
        elif k.endswith(".bias"):
            a = 0.1 * rng.standard_normal(shape)
        elif k in ("cls_token", "pos_embed"):
            a = rng.standard_normal(shape)
        else:  # weights: fan-in scaling, a bit hot so attention is not uniform
            fan_in = int(np.prod(shape[1:]))
            a = 1.5 * rng.standard_normal(shape) / np.sqrt(fan_in)
        sd[k] = a.astype(np.float32)
    sd["mask_token"] = np.zeros((1, cfg.dim), np.float32)
    return sd


class _Builder:
    def __init__(self, sd: dict[str, np.ndarray], g: Graph):
        self.sd, self.g = sd, g

    def w(self, key: str) -> np.ndarray:
        return np.asarray(self.sd[key], dtype=np.float32)

    def linear(self, x: str, prefix: str) -> str:
        wt = self.g.const(f"{prefix}.weight.T", self.w(f"{prefix}.weight").T)
        y = self.g.op("MatMul", [x, wt], f"{prefix}.matmul")
        return self.g.op("Add", [y, self.g.const(f"{prefix}.bias", self.w(f"{prefix}.bias"))], prefix)

    def layer_norm(self, x: str, prefix: str) -> str:
        return self.g.op(
            "LayerNormalization",
            [x, self.g.const(f"{prefix}.weight", self.w(f"{prefix}.weight")),
             self.g.const(f"{prefix}.bias", self.w(f"{prefix}.bias"))],
            prefix, axis=-1, epsilon=LN_EPS,
        )

    def i64(self, name: str, values) -> str:
        return self.g.const(name, np.asarray(values, np.int64), dtype=np.int64)


def _slice1(g: Graph, b: _Builder, shape: str, i: int, name: str) -> str:
    return g.op("Slice", [shape, b.i64(f"{name}.start", [i]), b.i64(f"{name}.end", [i + 1])], name)


def build(sd: dict[str, np.ndarray], cfg: ViTConfig, layers: list[int] | None = None):
    """Returns the ONNX model with one output ``block{L}`` per requested layer."""
    layers = list(cfg.layers if layers is None else layers)
    if not layers or sorted(set(layers)) != layers or layers[0] < 1 or layers[-1] > cfg.depth:
        raise ValueError(f"layers must be increasing block numbers in 1..{cfg.depth}, got {layers}")
    check_state_dict(sd, cfg)
    g = Graph(cfg.name.replace("-", "_"))
    b = _Builder(sd, g)
    d, p, m, hd = cfg.dim, cfg.patch_size, cfg.pos_grid, cfg.head_dim

    image = g.image_input()
    x = g.op("Mul", [image, g.const("normalise.scale", (1.0 / np.array(IMAGENET_STD)).reshape(1, 3, 1, 1))],
             "normalise.mul")
    x = g.op("Add", [x, g.const("normalise.shift", (-np.array(IMAGENET_MEAN) / np.array(IMAGENET_STD)).reshape(1, 3, 1, 1))],
             "normalise.add")
    patches = g.op("Conv", [x, g.const("patch_embed.proj.weight", b.w("patch_embed.proj.weight")),
                            g.const("patch_embed.proj.bias", b.w("patch_embed.proj.bias"))],
                   "patch_embed.proj", kernel_shape=[p, p], strides=[p, p])
    grid_shape = g.op("Shape", [patches], "grid_shape")  # [B, D, h, w]
    batch = _slice1(g, b, grid_shape, 0, "batch")
    gh = _slice1(g, b, grid_shape, 2, "grid_h")
    gw = _slice1(g, b, grid_shape, 3, "grid_w")
    x = g.op("Reshape", [patches, b.i64("tokens.shape", [0, d, -1])], "tokens.flat")
    x = g.op("Transpose", [x], "tokens", perm=[0, 2, 1])  # [B, h*w, D]
    cls_shape = g.op("Concat", [batch, b.i64("cls.shape_tail", [1, d])], "cls.shape", axis=0)
    cls = g.op("Expand", [g.const("cls_token", b.w("cls_token")), cls_shape], "cls.expand")
    x = g.op("Concat", [cls, x], "tokens.with_cls", axis=1)

    # Position embedding, interpolated as DINOv2's interpolate_pos_encoding (module doc).
    pos = b.w("pos_embed")
    grid = pos[0, 1:].reshape(m, m, d).transpose(2, 0, 1)[None]  # [1, D, M, M]
    image_shape = g.op("Shape", [image], "image_shape")
    img_h = _slice1(g, b, image_shape, 2, "image_h")
    img_w = _slice1(g, b, image_shape, 3, "image_w")
    same_count = g.op("Equal", [g.op("Mul", [gh, gw], "grid_count"), b.i64("pos.count", [m * m])], "pos.same_count")
    square = g.op("Equal", [img_h, img_w], "pos.square")
    keep = g.op("And", [same_count, square], "pos.keep")
    one = g.const("pos.one", [1.0])
    offset = g.const("pos.offset", [INTERPOLATE_OFFSET])
    scales = []
    for axis, n in (("h", gh), ("w", gw)):
        nf = g.op("Cast", [n], f"pos.{axis}_float", to=1)
        s = g.op("Div", [g.op("Add", [nf, offset], f"pos.{axis}_plus"), g.const(f"pos.grid_{axis}", [float(m)])],
                 f"pos.scale_{axis}")
        scales.append(g.op("Where", [keep, one, s], f"pos.scale_{axis}_or_1"))
    scale4 = g.op("Concat", [g.const("pos.scale_nc", [1.0, 1.0]), *scales], "pos.scales", axis=0)
    grid_r = g.op("Resize", [g.const("pos_embed.grid", grid), "", scale4], "pos.resize",
                  mode="cubic", cubic_coeff_a=CUBIC_A, coordinate_transformation_mode="half_pixel",
                  exclude_outside=0)
    pe = g.op("Reshape", [grid_r, b.i64("pos.flat_shape", [1, d, -1])], "pos.flat")
    pe = g.op("Transpose", [pe], "pos.tokens", perm=[0, 2, 1])
    pe = g.op("Concat", [g.const("pos_embed.cls", pos[:, :1]), pe], "pos.with_cls", axis=1)
    x = g.op("Add", [x, pe], "tokens.pos")

    scale = g.const("attn.scale", [hd ** -0.5])
    qkv_shape = b.i64("attn.qkv_shape", [0, 0, 3, cfg.heads, hd])
    merge_shape = b.i64("attn.merge_shape", [0, 0, d])
    half = g.const("gelu.half", [0.5])
    one_f = g.const("gelu.one", [1.0])
    inv_sqrt2 = g.const("gelu.inv_sqrt2", [1.0 / np.sqrt(2.0)])
    norm_w, norm_b = g.const("norm.weight", b.w("norm.weight")), g.const("norm.bias", b.w("norm.bias"))
    starts, ends, axes = b.i64("patch.start", [1]), b.i64("patch.end", [np.iinfo(np.int64).max]), b.i64("patch.axis", [1])
    for i in range(max(layers)):
        blk = f"blocks.{i}"
        y = b.layer_norm(x, f"{blk}.norm1")
        qkv = g.op("Reshape", [b.linear(y, f"{blk}.attn.qkv"), qkv_shape], f"{blk}.attn.qkv.split")
        qkv = g.op("Transpose", [qkv], f"{blk}.attn.qkv.heads", perm=[2, 0, 3, 1, 4])  # [3,B,H,T,hd]
        q, k, v = (g.op("Gather", [qkv, b.i64(f"{blk}.attn.{n}.index", j)], f"{blk}.attn.{n}", axis=0)
                   for j, n in enumerate("qkv"))
        q = g.op("Mul", [q, scale], f"{blk}.attn.q_scaled")
        kt = g.op("Transpose", [k], f"{blk}.attn.k_t", perm=[0, 1, 3, 2])
        a = g.op("Softmax", [g.op("MatMul", [q, kt], f"{blk}.attn.logits")], f"{blk}.attn.softmax", axis=-1)
        y = g.op("MatMul", [a, v], f"{blk}.attn.mix")
        y = g.op("Transpose", [y], f"{blk}.attn.mix_t", perm=[0, 2, 1, 3])
        y = g.op("Reshape", [y, merge_shape], f"{blk}.attn.merge")
        y = b.linear(y, f"{blk}.attn.proj")
        y = g.op("Mul", [y, g.const(f"{blk}.ls1.gamma", b.w(f"{blk}.ls1.gamma"))], f"{blk}.ls1")
        x = g.op("Add", [x, y], f"{blk}.residual1")
        y = b.layer_norm(x, f"{blk}.norm2")
        y = b.linear(y, f"{blk}.mlp.fc1")
        erf = g.op("Erf", [g.op("Mul", [y, inv_sqrt2], f"{blk}.mlp.gelu.scaled")], f"{blk}.mlp.gelu.erf")
        gate = g.op("Mul", [g.op("Add", [erf, one_f], f"{blk}.mlp.gelu.plus1"), half], f"{blk}.mlp.gelu.gate")
        y = g.op("Mul", [y, gate], f"{blk}.mlp.gelu")
        y = b.linear(y, f"{blk}.mlp.fc2")
        y = g.op("Mul", [y, g.const(f"{blk}.ls2.gamma", b.w(f"{blk}.ls2.gamma"))], f"{blk}.ls2")
        x = g.op("Add", [x, y], f"{blk}.residual2")
        if i + 1 in layers:
            o = g.op("LayerNormalization", [x, norm_w, norm_b], f"block{i + 1}.norm", axis=-1, epsilon=LN_EPS)
            o = g.op("Slice", [o, starts, ends, axes], f"block{i + 1}.patch_tokens")
            o = g.op("Transpose", [o], f"block{i + 1}.channels_first", perm=[0, 2, 1])
            o = g.op("Reshape", [o, grid_shape], f"block{i + 1}.grid")
            g.output(o, f"block{i + 1}", ["batch", d, f"height/{p}", f"width/{p}"])

    meta = contract_metadata(
        name=cfg.name,
        input_multiple=p,
        input_size=cfg.input_size,
        output_strides=[p] * len(layers),
        license=cfg.license,
        source=cfg.source,
        extra={
            "varad.layers": ",".join(str(L) for L in layers),
            "varad.normalisation": f"imagenet: (x - mean) / std, mean={list(IMAGENET_MEAN)}, std={list(IMAGENET_STD)}",
            "varad.pos_embed": (f"DINOv2 interpolate_pos_encoding: grid {m}x{m}, bicubic a={CUBIC_A}, "
                                f"half-pixel, scale (n+{INTERPOLATE_OFFSET})/{m}, no antialias"),
            **cfg.extra_meta,
        },
    )
    return g.model(meta, f"{cfg.name}: patch tokens of blocks {layers} after the final LayerNorm")
