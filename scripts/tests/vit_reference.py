"""A plain numpy (float64) DINOv2 ViT forward, written independently of the ONNX builder,
to check the exported graphs against. It follows the DINOv2 PyTorch code line by line:
prepare_tokens_with_masks, interpolate_pos_encoding, Block, get_intermediate_layers."""

from __future__ import annotations

import math

import numpy as np

MEAN = np.array([0.485, 0.456, 0.406])
STD = np.array([0.229, 0.224, 0.225])


def _cubic_weights(t: float, a: float = -0.75) -> list[float]:
    """torch's get_cubic_upsample_coefficients: taps at -1, 0, +1, +2 around floor(src)."""

    def near(x):  # |x| <= 1
        return ((a + 2) * x - (a + 3)) * x * x + 1

    def far(x):  # 1 < |x| < 2
        return ((a * x - 5 * a) * x + 8 * a) * x - 4 * a

    return [far(t + 1), near(t), near(1 - t), far(2 - t)]


def _bicubic_matrix(n_in: int, n_out: int, scale: float) -> np.ndarray:
    """[n_out, n_in] matrix of torch's bicubic (align_corners=False, given scale_factor):
    src = (dst + 0.5) / scale - 0.5, taps clamped to the border."""
    mat = np.zeros((n_out, n_in))
    for d in range(n_out):
        src = (d + 0.5) / scale - 0.5
        i0 = math.floor(src)
        for tap, wgt in zip(range(i0 - 1, i0 + 3), _cubic_weights(src - i0)):
            mat[d, min(max(tap, 0), n_in - 1)] += wgt
    return mat


def bicubic_scale(img: np.ndarray, scale_h: float, scale_w: float) -> np.ndarray:
    """F.interpolate(img [C, H, W], scale_factor=(scale_h, scale_w), mode='bicubic')."""
    c, h, w = img.shape
    oh, ow = math.floor(h * scale_h), math.floor(w * scale_w)
    mh, mw = _bicubic_matrix(h, oh, scale_h), _bicubic_matrix(w, ow, scale_w)
    return np.einsum("oh,chw,pw->cop", mh, img, mw)


def interpolate_pos_encoding(pos_embed: np.ndarray, gh: int, gw: int, img_h: int, img_w: int) -> np.ndarray:
    """DINOv2 ViT.interpolate_pos_encoding (interpolate_offset=0.1, no antialias).
    Returns [1, 1 + gh*gw, D]."""
    n = pos_embed.shape[1] - 1
    if gh * gw == n and img_h == img_w:
        return pos_embed
    m = int(math.sqrt(n))
    assert m * m == n
    d = pos_embed.shape[-1]
    grid = pos_embed[0, 1:].reshape(m, m, d).transpose(2, 0, 1)
    sy, sx = (gh + 0.1) / m, (gw + 0.1) / m
    out = bicubic_scale(grid, sy, sx)
    assert out.shape[1:] == (gh, gw), out.shape
    patch = out.transpose(1, 2, 0).reshape(1, gh * gw, d)
    return np.concatenate([pos_embed[:, :1], patch], axis=1)


def _layer_norm(x, w, b, eps=1e-6):
    mu = x.mean(-1, keepdims=True)
    var = ((x - mu) ** 2).mean(-1, keepdims=True)
    return (x - mu) / np.sqrt(var + eps) * w + b


def _gelu(x):
    try:
        from scipy.special import erf  # scikit-image depends on scipy
    except ImportError:  # pragma: no cover
        erf = np.vectorize(math.erf)
    return 0.5 * x * (1.0 + erf(x / math.sqrt(2.0)))


def _softmax(x):
    x = x - x.max(-1, keepdims=True)
    e = np.exp(x)
    return e / e.sum(-1, keepdims=True)


def forward(sd: dict, image: np.ndarray, patch: int, heads: int, layers: list[int]) -> list[np.ndarray]:
    """image: [B, 3, H, W] in [0, 1]. Returns [B, D, H/p, W/p] per 1-based layer."""
    sd = {k: np.asarray(v, np.float64) for k, v in sd.items()}
    x = (image.astype(np.float64) - MEAN[None, :, None, None]) / STD[None, :, None, None]
    bsz, _, img_h, img_w = x.shape
    gh, gw = img_h // patch, img_w // patch
    x = x[:, :, : gh * patch, : gw * patch]
    # patch embedding: [B, 3, gh, p, gw, p] -> [B, gh, gw, 3*p*p] @ W^T
    cols = x.reshape(bsz, 3, gh, patch, gw, patch).transpose(0, 2, 4, 1, 3, 5).reshape(bsz, gh * gw, -1)
    w = sd["patch_embed.proj.weight"]
    tok = cols @ w.reshape(w.shape[0], -1).T + sd["patch_embed.proj.bias"]
    d = tok.shape[-1]
    cls = np.broadcast_to(sd["cls_token"], (bsz, 1, d))
    x = np.concatenate([cls, tok], axis=1)
    x = x + interpolate_pos_encoding(sd["pos_embed"], gh, gw, img_h, img_w)
    hd = d // heads
    outs = []
    for i in range(max(layers)):
        p = f"blocks.{i}."
        y = _layer_norm(x, sd[p + "norm1.weight"], sd[p + "norm1.bias"])
        qkv = y @ sd[p + "attn.qkv.weight"].T + sd[p + "attn.qkv.bias"]
        qkv = qkv.reshape(bsz, -1, 3, heads, hd).transpose(2, 0, 3, 1, 4)
        q, k, v = qkv[0] * hd ** -0.5, qkv[1], qkv[2]
        a = _softmax(q @ k.transpose(0, 1, 3, 2))
        y = (a @ v).transpose(0, 2, 1, 3).reshape(bsz, -1, d)
        y = y @ sd[p + "attn.proj.weight"].T + sd[p + "attn.proj.bias"]
        x = x + sd[p + "ls1.gamma"] * y
        y = _layer_norm(x, sd[p + "norm2.weight"], sd[p + "norm2.bias"])
        y = _gelu(y @ sd[p + "mlp.fc1.weight"].T + sd[p + "mlp.fc1.bias"])
        y = y @ sd[p + "mlp.fc2.weight"].T + sd[p + "mlp.fc2.bias"]
        x = x + sd[p + "ls2.gamma"] * y
        if i + 1 in layers:
            o = _layer_norm(x, sd["norm.weight"], sd["norm.bias"])[:, 1:]
            outs.append(o.reshape(bsz, gh, gw, d).transpose(0, 3, 1, 2))
    return outs
