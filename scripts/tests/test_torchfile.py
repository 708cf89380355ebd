"""The torch-free checkpoint reader, on hand-written files of both formats, the real
EfficientNet-Lite0 file, and (when torch is installed) files torch itself wrote."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
from conftest import torch_or_skip

import torchsave
from backbones import torchfile


def _tricky_checkpoint():
    """Tensors that exercise the reader: dtypes, strides, shared storages, scalars."""
    rng = np.random.default_rng(7)
    base = rng.standard_normal(40).astype(np.float32)
    shared = torchsave.Storage(base)
    bf16_values = rng.standard_normal(6).astype(np.float32)
    bf16_bits = (bf16_values.view(np.uint32) >> 16).astype(np.uint16)
    obj = {
        "weight": rng.standard_normal((4, 3, 2)).astype(np.float32),
        "half": rng.standard_normal((5,)).astype(np.float16),
        "double": rng.standard_normal((2, 2)),
        "count": np.array(12345678901, dtype=np.int64),  # 0-d
        "mask": np.array([True, False, True]),
        # a transposed view and an offset slice of one storage
        "transposed": torchsave.Tensor(shared, 0, (5, 8), (1, 5)),
        "tail": torchsave.Tensor(shared, 30, (2, 5), (5, 1)),
        "bf16": torchsave.Tensor(torchsave.Storage(bf16_bits, bfloat16=True), 0, (2, 3), (3, 1)),
        "empty": np.zeros((0, 4), np.float32),
    }
    expected = {
        "weight": obj["weight"], "half": obj["half"], "double": obj["double"],
        "count": obj["count"], "mask": obj["mask"],
        "transposed": base.reshape(8, 5).T,
        "tail": base[30:40].reshape(2, 5),
        "bf16": (bf16_bits.astype(np.uint32) << 16).view(np.float32).reshape(2, 3),
        "empty": obj["empty"],
    }
    return obj, expected


@pytest.mark.parametrize("fmt", ["zip", "legacy"])
def test_hand_written_checkpoint_round_trips(tmp_path, fmt):
    obj, expected = _tricky_checkpoint()
    path = str(tmp_path / f"ckpt_{fmt}.pth")
    (torchsave.save_zip if fmt == "zip" else torchsave.save_legacy)(obj, path)
    loaded = torchfile.load(path)
    assert list(loaded) == list(expected)
    for k, want in expected.items():
        got = loaded[k]
        assert got.dtype == want.dtype, k
        assert got.shape == want.shape, k
        np.testing.assert_array_equal(got, want, err_msg=k)


def test_nested_containers_and_plain_values(tmp_path):
    obj = {"model": {"a": np.arange(3, dtype=np.int32)}, "epoch": 7, "names": ["x", ("y", 2.5)]}
    path = str(tmp_path / "nested.pth")
    torchsave.save_zip(obj, path, prefix="some_name")
    loaded = torchfile.load(path)
    assert loaded["epoch"] == 7 and loaded["names"] == ["x", ("y", 2.5)]
    np.testing.assert_array_equal(loaded["model"]["a"], np.arange(3))
    assert list(torchfile.unwrap_state_dict(loaded)) == ["a"]


def test_refuses_code_in_the_pickle(tmp_path):
    class Evil:
        def __reduce__(self):
            import os

            return (os.system, ("echo should-not-run",))

    path = tmp_path / "evil.pth"
    with open(path, "wb") as f:
        for header in (torchfile.LEGACY_MAGIC, torchfile.LEGACY_PROTOCOL, {"little_endian": True}):
            pickle.dump(header, f, protocol=2)
        pickle.dump({"x": Evil()}, f, protocol=2)
    with pytest.raises(torchfile.CheckpointError, match="system"):
        torchfile.load(str(path))


def test_truncated_legacy_file_is_an_error(tmp_path):
    obj, _ = _tricky_checkpoint()
    path = tmp_path / "cut.pth"
    torchsave.save_legacy(obj, str(path))
    data = path.read_bytes()
    path.write_bytes(data[:-10])
    with pytest.raises(torchfile.CheckpointError, match="ends"):
        torchfile.load(str(path))


def test_efficientnet_lite0_file_layout(efficientnet_weights):
    sd = efficientnet_weights
    assert len(sd) == 296
    assert sd["_conv_stem.weight"].shape == (32, 3, 3, 3)
    assert sd["_conv_stem.weight"].dtype == np.float32
    assert sd["_blocks.15._project_conv.weight"].shape == (320, 1152, 1, 1)
    assert sd["_fc.weight"].shape == (1000, 1280)
    assert sd["_bn0.num_batches_tracked"].dtype == np.int64
    assert sd["_bn0.num_batches_tracked"].shape == ()
    for k, v in sd.items():
        assert np.all(np.isfinite(v)), k
        if k.endswith("running_var"):
            assert np.all(v >= 0), k  # dead channels have exactly 0


@pytest.mark.parametrize("zipfmt", [True, False])
def test_reads_what_torch_writes(tmp_path, zipfmt):
    torch = torch_or_skip()
    g = torch.Generator().manual_seed(0)
    base = torch.randn(6, 4, generator=g)
    sd = {
        "w": torch.randn(3, 5, generator=g),
        "t": base.t(),  # non-contiguous view
        "row": base[2],  # offset view sharing the storage
        "h": torch.randn(4, generator=g).half(),
        "b": torch.randn(4, generator=g).bfloat16(),
        "n": torch.tensor(5),
        "p": torch.nn.Parameter(torch.randn(2, 2, generator=g)),
    }
    path = str(tmp_path / "torch.pth")
    torch.save(sd, path, _use_new_zipfile_serialization=zipfmt)
    loaded = torchfile.load(path)
    for k, v in sd.items():
        want = v.detach().float().numpy() if v.dtype == torch.bfloat16 else v.detach().numpy()
        np.testing.assert_array_equal(loaded[k], want, err_msg=k)
