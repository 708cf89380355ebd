"""Independent f64 numpy reference of the VarAD predictor (mamba_ssm semantics).

Writes the fixtures that `tests/predictor_parity.rs` compares the Rust predictor with:
`tests/data/predictor_fixture_{name}.safetensors`, each holding the weights (f32, under
the mamba_ssm names of DESIGN.md), `input` (f32, [B, L, C]) and `expected` (f64,
[B, L, C]) computed here in f64 from exactly those f32 values, and the configuration in
`__metadata__`. numpy only; deterministic (fixed seeds).

Run from the crate root:  .deps/venv/bin/python tests/predictor_reference.py
"""

import json
import math
import pathlib
import struct

import numpy as np


def softplus(x):
    # torch.nn.functional.softplus with beta 1, threshold 20
    return np.where(x > 20.0, x, np.log1p(np.exp(np.minimum(x, 20.0))))


def silu(x):
    return x / (1.0 + np.exp(-x))


def rmsnorm(x, w, eps=1e-5):
    return x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + eps) * w


def mixer(h, p, cfg):
    """One Mamba mixer on h [B, L, C], as mamba_ssm's Mamba.forward without the fused
    kernels: selective_scan_ref semantics, one time step at a time."""
    B, L, C = h.shape
    di, n, r, k = cfg["d_inner"], cfg["d_state"], cfg["dt_rank"], cfg["d_conv"]
    xz = h @ p["in_proj.weight"].T  # [B, L, 2 Di]
    x, z = xz[..., :di], xz[..., di:]
    # Causal depthwise conv: pad k-1 zeros on the left, keep the first L outputs.
    w = p["conv1d.weight"][:, 0, :]  # [Di, k]
    xp = np.concatenate([np.zeros((B, k - 1, di)), x], axis=1)
    conv = np.zeros_like(x)
    for j in range(k):
        conv += xp[:, j : j + L, :] * w[:, j]
    u = silu(conv + p["conv1d.bias"])
    x_dbl = u @ p["x_proj.weight"].T  # [B, L, R + 2N]
    dt_low, Bm, Cm = x_dbl[..., :r], x_dbl[..., r : r + n], x_dbl[..., r + n :]
    dt = softplus(dt_low @ p["dt_proj.weight"].T + p["dt_proj.bias"])  # [B, L, Di]
    A = -np.exp(p["A_log"])  # [Di, N]
    state = np.zeros((B, di, n))
    ys = np.zeros((B, L, di))
    for t in range(L):
        dA = np.exp(dt[:, t, :, None] * A)  # [B, Di, N]
        dBx = dt[:, t, :, None] * Bm[:, t, None, :] * u[:, t, :, None]
        state = dA * state + dBx
        ys[:, t] = np.einsum("bdn,bn->bd", state, Cm[:, t]) + p["D"] * u[:, t]
    y = ys * silu(z)
    return y @ p["out_proj.weight"].T


def predictor(x, layers, cfg):
    for p in layers:
        x = x + mixer(rmsnorm(x, p["norm.weight"]), p, cfg)
    return x


def random_layers(cfg, rng):
    c, di, n, r, k = cfg["d_model"], cfg["d_inner"], cfg["d_state"], cfg["dt_rank"], cfg["d_conv"]

    def u(shape, bound):
        return rng.uniform(-bound, bound, size=shape).astype(np.float32)

    layers = []
    for _ in range(cfg["n_layers"]):
        dt = np.exp(rng.uniform(math.log(1e-3), math.log(0.5), size=di))
        layers.append(
            {
                "norm.weight": (1.0 + u((c,), 0.3)).astype(np.float32),
                "in_proj.weight": u((2 * di, c), 1 / math.sqrt(c)),
                "conv1d.weight": u((di, 1, k), 1 / math.sqrt(k)),
                "conv1d.bias": u((di,), 1 / math.sqrt(k)),
                "x_proj.weight": u((r + 2 * n, di), 1 / math.sqrt(di)),
                "dt_proj.weight": u((di, r), 1 / math.sqrt(r)),
                "dt_proj.bias": (dt + np.log(-np.expm1(-dt))).astype(np.float32),
                "A_log": (np.log(np.tile(np.arange(1, n + 1), (di, 1))) + u((di, n), 0.2)).astype(np.float32),
                "D": (1.0 + u((di,), 0.5)).astype(np.float32),
                "out_proj.weight": u((c, di), 1 / math.sqrt(di)),
            }
        )
    return layers


def write_safetensors(path, tensors, metadata):
    """The safetensors format by hand: u64 header length, JSON header, raw LE data."""
    header = {"__metadata__": metadata}
    blobs, offset = [], 0
    for name, arr in tensors.items():
        arr = np.ascontiguousarray(arr)
        dtype = {np.dtype("float32"): "F32", np.dtype("float64"): "F64"}[arr.dtype]
        data = arr.astype(arr.dtype.newbyteorder("<")).tobytes()
        header[name] = {"dtype": dtype, "shape": list(arr.shape), "data_offsets": [offset, offset + len(data)]}
        blobs.append(data)
        offset += len(data)
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    path.write_bytes(struct.pack("<Q", len(h)) + h + b"".join(blobs))


CASES = {
    # Below one scan chunk; d_inner 16 (one full vector block).
    "small": dict(d_model=8, n_layers=1, d_state=4, expand=2, d_conv=4, dt_rank=1, batch=2, len=20, seed=1),
    # Two layers, L across two chunks of 64, d_inner 24 (a block plus 8 single channels).
    "two_layers": dict(d_model=12, n_layers=2, d_state=16, expand=2, d_conv=3, dt_rank=2, batch=2, len=70, seed=2),
}


def main():
    out_dir = pathlib.Path(__file__).resolve().parent / "data"
    out_dir.mkdir(exist_ok=True)
    for name, cfg in CASES.items():
        cfg = dict(cfg)
        cfg["d_inner"] = cfg["expand"] * cfg["d_model"]
        rng = np.random.default_rng(cfg["seed"])
        layers = random_layers(cfg, rng)
        x = rng.uniform(-1.0, 1.0, size=(cfg["batch"], cfg["len"], cfg["d_model"])).astype(np.float32)
        layers64 = [{k: v.astype(np.float64) for k, v in p.items()} for p in layers]
        expected = predictor(x.astype(np.float64), layers64, cfg)
        tensors = {f"layers.{i}.{'' if k == 'norm.weight' else 'mixer.'}{k}": v for i, p in enumerate(layers) for k, v in p.items()}
        tensors["input"] = x
        tensors["expected"] = expected
        meta = {k: str(v) for k, v in cfg.items() if k != "d_inner"}
        write_safetensors(out_dir / f"predictor_fixture_{name}.safetensors", tensors, meta)
        print(name, "max |expected|", float(np.abs(expected).max()))


if __name__ == "__main__":
    main()
