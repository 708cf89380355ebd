"""The DINOv2 ViT exporter against an independent numpy forward (always), and against a
torch forward when torch is installed. Weights are random with the official names and
shapes: no DINOv2 checkpoint can be had here."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import onnx
import pytest
from conftest import run, session, torch_or_skip

import export_dinov2
import torchsave
import vit_reference as ref
from backbones import vit

TOL = 1e-4
VITS = vit.ARCHS["vits14"]
# Small dims, but DINOv2's 37x37 position grid and patch 14: cheap interpolation checks.
SMALL37 = dataclasses.replace(VITS, name="small37", dim=32, depth=3, heads=2, mlp_hidden=64, layers=(1, 2, 3))


def _max_err(outs: dict, refs: list) -> float:
    assert len(outs) == len(refs)
    err = 0.0
    for got, want in zip(outs.values(), refs):
        assert got.shape == want.shape
        err = max(err, float(np.abs(got - want).max()))
    return err


@pytest.fixture(scope="module")
def vits():
    sd = vit.random_state_dict(VITS, seed=0)
    return sd, session(vit.build(sd, VITS))


@pytest.mark.parametrize("batch,height,width", [(2, 98, 154), (1, 224, 224)])
def test_vits14_matches_numpy_reference(vits, batch, height, width):
    sd, sess = vits
    image = np.random.default_rng(height).random((batch, 3, height, width), dtype=np.float32)
    outs = run(sess, image)
    assert list(outs) == ["block4", "block8", "block12"]
    refs = ref.forward(sd, image, 14, VITS.heads, [4, 8, 12])
    err = _max_err(outs, refs)
    scale = max(float(np.abs(r).max()) for r in refs)
    print(f"ViT-S/14 {height}x{width}: max |ORT - numpy| = {err:.2e} (values up to {scale:.1f})")
    assert outs["block4"].shape == (batch, 384, height // 14, width // 14)
    assert err < TOL


def test_vitb14_first_block_matches_numpy_reference():
    """ViT-B/14 dimensions (768, 12 heads); only block 1 is exported, so blocks 2..12 may
    stay zero, which keeps the test fast."""
    cfg = vit.ARCHS["vitb14"]
    sd = vit.random_state_dict(dataclasses.replace(cfg, depth=1), seed=1)
    for k, shape in vit.expected_shapes(cfg).items():
        sd.setdefault(k, np.zeros(shape, np.float32))
    sess = session(vit.build(sd, cfg, layers=[1]))
    image = np.random.default_rng(2).random((1, 3, 70, 42), dtype=np.float32)
    outs = run(sess, image)
    err = _max_err(outs, ref.forward(sd, image, 14, cfg.heads, [1]))
    print(f"ViT-B/14 block 1, 70x42: max error {err:.2e}")
    assert outs["block1"].shape == (1, 768, 5, 3)
    assert err < TOL


@pytest.fixture(scope="module")
def small37():
    sd = vit.random_state_dict(SMALL37, seed=3)
    return sd, session(vit.build(sd, SMALL37))


@pytest.mark.parametrize("height,width", [(518, 518), (518, 504), (504, 518), (532, 490), (14, 14), (28, 1022)])
def test_position_embedding_interpolation(small37, height, width):
    """37x37 grid: kept as is at 518x518 (DINOv2 returns pos_embed unchanged when the patch
    count matches and the image is square), bicubic with the 0.1 offset otherwise."""
    sd, sess = small37
    image = np.random.default_rng(4).random((1, 3, height, width), dtype=np.float32)
    err = _max_err(run(sess, image), ref.forward(sd, image, 14, SMALL37.heads, [1, 2, 3]))
    assert err < TOL, err


@pytest.mark.parametrize("height,width,expected", [
    (518, 518, (1.0, 1.0)),  # DINOv2 keeps pos_embed as is
    (518, 504, (37.1 / 37, 36.1 / 37)),
    (98, 154, (7.1 / 37, 11.1 / 37)),
])
def test_resize_scales_in_the_graph(height, width, expected):
    """The scales the graph hands to Resize. (ONNX Runtime's CPU Resize copies its input
    whenever the output size equals the input size, whatever the scale, so the 518x518 case
    cannot be told apart from the outputs alone there; other runtimes need the scale 1.)"""
    sd = vit.random_state_dict(dataclasses.replace(SMALL37, depth=1, layers=(1,)), seed=12)
    model = vit.build(sd, dataclasses.replace(SMALL37, depth=1, layers=(1,)))
    model.graph.output.append(onnx.helper.make_tensor_value_info("pos.scales", onnx.TensorProto.FLOAT, [4]))
    image = np.zeros((1, 3, height, width), np.float32)
    scales = run(session(model), image)["pos.scales"]
    np.testing.assert_allclose(scales, [1.0, 1.0, *expected], rtol=1e-6)


def test_reference_interpolation_is_the_dinov2_one():
    """The checks above would catch the usual mistakes: a size-based resize (scale h/M
    instead of (h + 0.1)/M) and interpolating at 37x37 too."""
    rng = np.random.default_rng(5)
    pos = rng.standard_normal((1, 1 + 37 * 37, 8))
    grid = pos[0, 1:].reshape(37, 37, 8).transpose(2, 0, 1)
    faithful = ref.interpolate_pos_encoding(pos, 7, 11, 98, 154)[0, 1:]
    size_based = ref.bicubic_scale(grid, 7 / 37, 11 / 37).transpose(1, 2, 0).reshape(-1, 8)
    assert np.abs(faithful - size_based).max() > 1e-2
    kept = ref.interpolate_pos_encoding(pos, 37, 37, 518, 518)
    np.testing.assert_array_equal(kept, pos)
    resized = ref.bicubic_scale(grid, 37.1 / 37, 37.1 / 37)
    assert np.abs(resized.transpose(1, 2, 0).reshape(-1, 8) - pos[0, 1:]).max() > 1e-2
    # 37x37 patches from a non-square image (518x531 crops to 518x518 but w != h): resized
    not_kept = ref.interpolate_pos_encoding(pos, 37, 37, 518, 531)
    assert np.abs(not_kept - pos).max() > 1e-2


def test_numpy_bicubic_matches_torch():
    torch = torch_or_skip()
    import torch.nn.functional as F

    grid = np.random.default_rng(6).standard_normal((4, 37, 37))
    for h, w in [(7, 11), (16, 16), (73, 73), (1, 2)]:
        sy, sx = (h + 0.1) / 37, (w + 0.1) / 37
        want = F.interpolate(torch.from_numpy(grid)[None], scale_factor=(sy, sx), mode="bicubic",
                             align_corners=False)[0].numpy()
        np.testing.assert_allclose(ref.bicubic_scale(grid, sy, sx), want, atol=1e-12)


def _checkpoint(tmp_path, fmt="zip", cfg=VITS, seed=8):
    sd = vit.random_state_dict(cfg, seed)
    path = str(tmp_path / f"dinov2_{fmt}.pth")
    (torchsave.save_zip if fmt == "zip" else torchsave.save_legacy)(sd, path)
    return sd, path


def test_cli_exports_a_zip_checkpoint_without_torch(tmp_path, capsys):
    sd, ckpt = _checkpoint(tmp_path)
    out = str(tmp_path / "vits.onnx")
    rc = export_dinov2.main(["--checkpoint", ckpt, "--arch", "vits14", "--out", out, "--layers", "2,5", "--no-torch"])
    assert rc == 0, capsys.readouterr().err
    assert "read with backbones.torchfile (no torch)" in capsys.readouterr().out
    model = onnx.load(out)
    assert model.opset_import[0].version == 17 and model.ir_version <= 8
    meta = {p.key: p.value for p in model.metadata_props}
    assert meta["varad.contract"] == "1"
    assert meta["varad.name"] == "dinov2-vits14"
    assert meta["varad.input_multiple"] == "14"
    assert meta["varad.input_size"] == "1022x1022"
    assert meta["varad.output_strides"] == "14,14"
    assert meta["varad.layers"] == "2,5"
    assert meta["varad.license"].startswith("Apache-2.0") and "sha256" in meta["varad.source"]
    assert [o.name for o in model.graph.output] == ["block2", "block5"]
    # blocks after the last requested one are not in the file
    assert not any(i.name.startswith("blocks.5.") for i in model.graph.initializer)
    image = np.random.default_rng(9).random((1, 3, 56, 70), dtype=np.float32)
    err = _max_err(run(session(out), image), ref.forward(sd, image, 14, VITS.heads, [2, 5]))
    assert err < TOL


def test_training_checkpoint_key_variants(tmp_path):
    """A legacy-format file with a DINOv2 training layout: {'teacher': {'backbone.blocks.0.1...'}}."""
    cfg = SMALL37
    sd = vit.random_state_dict(cfg, 10)
    chunked = {}
    for k, v in sd.items():
        if k.startswith("blocks."):
            i = int(k.split(".")[1])
            k = f"blocks.{i // 2}.{i}." + k.split(".", 2)[2]
        chunked["backbone." + k] = v
    chunked["dino_head.mlp.0.weight"] = np.zeros((2, 2), np.float32)
    path = str(tmp_path / "teacher.pth")
    torchsave.save_legacy({"teacher": chunked, "iteration": 5}, path)
    loaded, reader = export_dinov2.load_checkpoint(path, use_torch=False)
    assert "no torch" in reader
    assert sorted(loaded) == sorted(sd)
    for k in sd:
        np.testing.assert_array_equal(loaded[k], sd[k])


def test_wrong_arch_is_refused(tmp_path, capsys):
    _sd, ckpt = _checkpoint(tmp_path, cfg=SMALL37)
    rc = export_dinov2.main(["--checkpoint", ckpt, "--arch", "vitb14", "--out", str(tmp_path / "x.onnx"), "--no-torch"])
    err = capsys.readouterr().err
    assert rc == 1
    assert "wrong --arch" in err and "missing" in err


def _torch_dinov2_forward(torch, sd, image, patch, heads, layers):
    """DINOv2's forward written with torch ops (prepare_tokens_with_masks,
    interpolate_pos_encoding, Block, get_intermediate_layers(norm=True, reshape=True))."""
    import torch.nn.functional as F

    t = {k: torch.from_numpy(np.asarray(v)) for k, v in sd.items()}
    x = torch.from_numpy(image)
    mean = torch.tensor(ref.MEAN, dtype=torch.float32).view(1, 3, 1, 1)
    std = torch.tensor(ref.STD, dtype=torch.float32).view(1, 3, 1, 1)
    x = (x - mean) / std
    b, _, h, w = x.shape
    x = F.conv2d(x, t["patch_embed.proj.weight"], t["patch_embed.proj.bias"], stride=patch)
    x = x.flatten(2).transpose(1, 2)
    x = torch.cat((t["cls_token"].expand(b, -1, -1), x), dim=1)
    pos = t["pos_embed"]
    n = pos.shape[1] - 1
    if not (x.shape[1] - 1 == n and h == w):
        m = int(math.sqrt(n))
        h0, w0 = h // patch + 0.1, w // patch + 0.1
        grid = pos[:, 1:].reshape(1, m, m, -1).permute(0, 3, 1, 2)
        grid = F.interpolate(grid, scale_factor=(h0 / m, w0 / m), mode="bicubic")
        pos = torch.cat((pos[:, :1], grid.permute(0, 2, 3, 1).reshape(1, -1, grid.shape[1])), dim=1)
    x = x + pos
    d = x.shape[-1]
    outs = []
    for i in range(max(layers)):
        p = f"blocks.{i}."
        y = F.layer_norm(x, (d,), t[p + "norm1.weight"], t[p + "norm1.bias"], eps=1e-6)
        qkv = F.linear(y, t[p + "attn.qkv.weight"], t[p + "attn.qkv.bias"])
        qkv = qkv.reshape(b, -1, 3, heads, d // heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0] * (d // heads) ** -0.5, qkv[1], qkv[2]
        y = (q @ k.transpose(-2, -1)).softmax(dim=-1) @ v
        y = F.linear(y.transpose(1, 2).reshape(b, -1, d), t[p + "attn.proj.weight"], t[p + "attn.proj.bias"])
        x = x + t[p + "ls1.gamma"] * y
        y = F.layer_norm(x, (d,), t[p + "norm2.weight"], t[p + "norm2.bias"], eps=1e-6)
        y = F.linear(F.gelu(F.linear(y, t[p + "mlp.fc1.weight"], t[p + "mlp.fc1.bias"])),
                     t[p + "mlp.fc2.weight"], t[p + "mlp.fc2.bias"])
        x = x + t[p + "ls2.gamma"] * y
        if i + 1 in layers:
            o = F.layer_norm(x, (d,), t["norm.weight"], t["norm.bias"], eps=1e-6)[:, 1:]
            outs.append(o.reshape(b, h // patch, w // patch, -1).permute(0, 3, 1, 2).numpy())
    return outs


def test_torch_parity(tmp_path):
    torch = torch_or_skip()
    cfg = VITS
    sd = vit.random_state_dict(cfg, 11)
    ckpt = str(tmp_path / "dinov2_vits14_pretrain.pth")
    torch.save({k: torch.from_numpy(v) for k, v in sd.items()}, ckpt)
    out = str(tmp_path / "vits.onnx")
    assert export_dinov2.main(["--checkpoint", ckpt, "--arch", "vits14", "--out", out]) == 0
    sess = session(out)
    for h, w in [(98, 154), (518, 518), (224, 224)]:
        image = np.random.default_rng(h + w).random((1, 3, h, w), dtype=np.float32)
        with torch.no_grad():
            want = _torch_dinov2_forward(torch, sd, image, 14, cfg.heads, [4, 8, 12])
        err = _max_err(run(sess, image), want)
        print(f"torch vs ORT {h}x{w}: {err:.2e}")
        assert err < TOL
