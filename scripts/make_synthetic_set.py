#!/usr/bin/env python3
"""Deterministic synthetic anomaly-detection dataset in the MVTec AD layout.

    <out>/<category>/train/good/000.png
    <out>/<category>/test/good/000.png
    <out>/<category>/test/<defect_type>/000.png
    <out>/<category>/ground_truth/<defect_type>/000_mask.png   (uint8 0/255, same size)
    <out>/<category>/defects.json                               (one entry per test image)

Categories: ``brick``, ``grass``, ``gravel`` (normal images quilted from the CC0 texture
photographs bundled with scikit-image) and ``weave``, ``metal`` (procedural). With
``--structured`` (or when named in ``--categories``) also ``tiles``: a regular grid of parts
whose anomalies are only visible in context.

Every image is a pure function of (seed, category, split, defect type, index, size): the
same seed gives byte-identical PNGs, and a category subset gives the same images as the
full run. Only numpy, scipy (a scikit-image dependency), scikit-image and Pillow are used.

``--vary`` makes the production-variation version of the same set: every image, good or
defective, training or test, is shifted (up to ``--vary-shift`` of the side, default 3%),
rotated (up to ``--vary-rotate`` degrees, default 2), put under drifting light (brightness
and contrast up to ``--vary-light``, default +-8%), slightly defocused and given sensor
noise, as parts arrive on a line; each mask gets the same geometric transform as its
image. The variation comes from its own random stream, so the underlying parts and
defects are those of the plain set with the same seed, and the plain set is unchanged.
"""

from __future__ import annotations

import argparse
import functools
import json
import math
import os
import sys
import time
import zlib

import numpy as np
from PIL import Image
from scipy import ndimage
from skimage import data as skdata
from skimage import transform as sktf

PHOTO_CATEGORIES = ("brick", "grass", "gravel")
PROCEDURAL_CATEGORIES = ("weave", "metal")
DEFAULT_CATEGORIES = PHOTO_CATEGORIES + PROCEDURAL_CATEGORIES
STRUCTURED_CATEGORIES = ("tiles",)
ALL_CATEGORIES = DEFAULT_CATEGORIES + STRUCTURED_CATEGORIES

DEFECT_TYPES = ("scratch", "stain", "speck", "crack", "foreign", "distortion")
STRUCTURED_DEFECT_TYPES = ("shifted_row", "missing", "swapped", "rotated")
SIZE_CLASSES = ("small", "medium", "large")

# Accepted mask area, as a fraction of the image area, per size class. "small" is strictly
# below 0.1 % of the image; the gaps between classes keep them distinct.
CLASS_RANGES = {
    "small": (0.0, 0.00095),
    "medium": (0.0012, 0.009),
    "large": (0.011, 0.06),
}
CLASS_TARGETS = {"small": (0.0002, 0.0007), "medium": (0.002, 0.006), "large": (0.015, 0.035)}
MIN_DEFECT_PX = 8
# A pixel belongs to the mask when the defect can change it by at least this much (of 1.0).
CHANGE_THRESHOLD = 0.02

TINTS = {
    "brick": (1.10, 0.96, 0.88),
    "grass": (0.92, 1.05, 0.84),
    "gravel": (1.03, 1.00, 0.96),
}
FOREIGN_SOURCES = {
    "brick": ("gravel", "grass", "metal"),
    "grass": ("gravel", "brick", "weave"),
    "gravel": ("grass", "brick", "metal"),
    "weave": ("metal", "gravel", "grass"),
    "metal": ("weave", "gravel", "brick"),
    "tiles": ("gravel", "weave"),
}


def _code(name: str) -> int:
    return zlib.crc32(name.encode()) & 0x7FFFFFFF


def image_rng(seed: int, category: str, split: str, kind: str, index: int, size: int) -> np.random.Generator:
    return np.random.default_rng(
        np.random.SeedSequence([seed, _code(category), _code(split), _code(kind), index, size])
    )


# ---------------------------------------------------------------------------------------
# small helpers


def _cubic_weights(n_out: int, n_in: int, corr: float, offset: float) -> np.ndarray:
    """(n_out, n_in) Catmull-Rom interpolation weights sampling a grid of spacing corr."""
    pos = (np.arange(n_out) + 0.5) / corr + 1 + offset
    i0 = np.floor(pos).astype(np.int64)
    t = pos - i0
    w = np.zeros((n_out, n_in))
    taps = [(-1, -0.5 * t ** 3 + t ** 2 - 0.5 * t), (0, 1.5 * t ** 3 - 2.5 * t ** 2 + 1),
            (1, -1.5 * t ** 3 + 2 * t ** 2 + 0.5 * t), (2, 0.5 * t ** 3 - 0.5 * t ** 2)]
    rows = np.arange(n_out)
    for d, wt in taps:
        np.add.at(w, (rows, np.clip(i0 + d, 0, n_in - 1)), wt)
    return w


def smooth_noise(shape, corr: float, rng: np.random.Generator) -> np.ndarray:
    """Zero-mean, unit-std noise with correlation length ~corr pixels (separable cubic
    interpolation of a coarse random grid)."""
    h, w = shape
    gh = max(2, int(math.ceil(h / corr)) + 4)
    gw = max(2, int(math.ceil(w / corr)) + 4)
    g = rng.standard_normal((gh, gw))
    oy, ox = rng.uniform(0, 1, 2)
    out = _cubic_weights(h, gh, corr, oy) @ g @ _cubic_weights(w, gw, corr, ox).T
    s = out.std()
    return ((out - out.mean()) / (s if s > 0 else 1.0)).astype(np.float32)


def smoothstep(e0, e1, x):
    t = np.clip((x - e0) / (e1 - e0), 0.0, 1.0)
    return t * t * (3 - 2 * t)


def to_uint8(img: np.ndarray) -> np.ndarray:
    return np.round(np.clip(img, 0.0, 1.0) * 255.0).astype(np.uint8)


def save_png(path: str, arr: np.ndarray) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    mode = "L" if arr.ndim == 2 else "RGB"
    tmp = path + ".tmp"
    Image.fromarray(arr, mode=mode).save(tmp, format="PNG", compress_level=1)
    os.replace(tmp, path)


def colourise(grey: np.ndarray, tint) -> np.ndarray:
    return np.clip(grey[..., None] * np.asarray(tint, np.float32)[None, None, :], 0.0, 1.0)


# ---------------------------------------------------------------------------------------
# photo textures: image quilting (Efros & Freeman 2001) from the bundled photographs


def unit(size: int) -> float:
    """Pixel unit: 1.0 at 1024, so features keep their share of the image at any size."""
    return size / 1024.0


def photo_scale(size: int) -> float:
    """Scale applied to the 512x512 photo: one 1024 image covers 2x2 photo widths; never
    upscaled more than 1.5x (at 2048 and above), downscaled for small images."""
    return float(np.clip(unit(size), 0.5, 1.5))


# Keystone of skimage's brick photo (vertical courses converging): x_src = x + S (y - cy)
# + K (x - cx)(y - cy). Found by maximising the sharpness of the column profile of the
# horizontal gradient over a grid of (K, S); after it the courses are vertical and evenly
# spaced, so patches from anywhere in the photo line up.
BRICK_KEYSTONE = (6.75e-4, 0.0225)


def rectify_brick(src: np.ndarray) -> np.ndarray:
    h, w = src.shape
    k, sh = BRICK_KEYSTONE
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    xs = xx + sh * (yy - h / 2) + k * (xx - w / 2) * (yy - h / 2)
    out = ndimage.map_coordinates(src, [yy, xs], order=3, mode="nearest").astype(np.float32)
    valid = ((xs >= 0) & (xs <= w - 1)).all(axis=0)
    cols = np.flatnonzero(valid)
    return out[:, cols.min():cols.max() + 1]


@functools.lru_cache(maxsize=16)
def photo_pool(name: str, scale: float) -> np.ndarray:
    """The photo, flattened (slow illumination removed), rescaled, and its allowed
    orientations stacked: (P, H, W) float32 in [0, 1]."""
    src = getattr(skdata, name)().astype(np.float32) / 255.0
    if name == "brick":
        src = rectify_brick(src)
    low = ndimage.gaussian_filter(src, 40.0, mode="reflect")
    src = src - 0.85 * (low - src.mean())
    if scale != 1.0:
        src = sktf.rescale(src, scale, order=3, anti_aliasing=scale < 1.0, mode="reflect").astype(np.float32)
    if name == "brick":
        # the wall is photographed in perspective with vertical courses: keep its orientation
        pool = [src]
    else:
        pool = []
        for k in range(4):
            r = np.rot90(src, k)
            pool += [r, r[:, ::-1]]
    return np.ascontiguousarray(np.stack(pool)).astype(np.float32)


def quilt_geometry(size: int) -> tuple[int, int]:
    """(patch, overlap) in output pixels for a photo category at this image size."""
    s = photo_scale(size)
    patch = max(24, int(round(224 * s)))
    overlap = max(6, patch // 4)
    return patch, overlap


def _seam_dp(err: np.ndarray) -> list[list[int]]:
    """Minimum-error vertical cuts through err (n, rows, cols): for each of the n strips,
    the column of the cut in every row."""
    n, rows, cols = err.shape
    cum = err.astype(np.float64)
    tmp = np.empty((n, cols))
    for r in range(1, rows):
        prev = cum[:, r - 1]
        tmp[:] = prev
        np.minimum(tmp[:, 1:], prev[:, :-1], out=tmp[:, 1:])
        np.minimum(tmp[:, :-1], prev[:, 1:], out=tmp[:, :-1])
        cum[:, r] += tmp
    paths = []
    for strip in cum.tolist():
        row = strip[-1]
        idx = min(range(cols), key=row.__getitem__)
        path = [0] * rows
        path[-1] = idx
        for r in range(rows - 2, -1, -1):
            row = strip[r]
            best = idx
            if idx > 0 and row[idx - 1] < row[best]:
                best = idx - 1
            if idx < cols - 1 and row[idx + 1] < row[best]:
                best = idx + 1
            idx = best
            path[r] = idx
        paths.append(path)
    return paths


class _FullSearch:
    """Exhaustive overlap-SSD search over every patch position of a single source image,
    at half resolution, by FFT correlation (used for brick, whose regular mortar grid
    needs well-matched neighbours)."""

    def __init__(self, src: np.ndarray, patch: int, overlap: int):
        lr = src[: src.shape[0] // 2 * 2, : src.shape[1] // 2 * 2]
        lr = 0.25 * (lr[0::2, 0::2] + lr[1::2, 0::2] + lr[0::2, 1::2] + lr[1::2, 1::2])
        self.shape = lr.shape
        self.b = patch // 2
        self.o = max(2, overlap // 2)
        self.f_src = np.fft.rfft2(lr)
        f_sq = np.fft.rfft2(lr * lr)
        self.energy = {}
        for kind in ("left", "top", "both"):
            w = self._weight(kind)
            self.energy[kind] = np.fft.irfft2(f_sq * np.conj(np.fft.rfft2(w, s=self.shape)), s=self.shape)

    def _weight(self, kind):
        w = np.zeros((self.b, self.b))
        if kind in ("left", "both"):
            w[:, : self.o] = 1
        if kind in ("top", "both"):
            w[: self.o, :] = 1
        return w

    def search(self, canvas_patch: np.ndarray, kind: str, rng, tolerance: float):
        t = canvas_patch[: self.b * 2 : 2, : self.b * 2 : 2][: self.b, : self.b] * self._weight(kind)
        cross = np.fft.irfft2(self.f_src * np.conj(np.fft.rfft2(t, s=self.shape)), s=self.shape)
        vy, vx = self.shape[0] - self.b + 1, self.shape[1] - self.b + 1
        ssd = (self.energy[kind] - 2 * cross)[:vy, :vx] + float((t * t).sum())
        best = ssd.min()
        ok = np.flatnonzero(ssd.ravel() <= best + tolerance * abs(best) + 1e-6)
        k = int(ok[rng.integers(0, len(ok))])
        return 2 * (k // vx), 2 * (k % vx)


def quilt(pool: np.ndarray, size: int, patch: int, overlap: int, rng: np.random.Generator,
          candidates: int = 80, tolerance: float = 0.1, full_search: bool = False) -> np.ndarray:
    p_n, ph, pw = pool.shape
    searcher = _FullSearch(pool[0], patch, overlap) if full_search else None
    step = patch - overlap
    n = int(math.ceil((size - overlap) / step))
    full = n * step + overlap
    canvas = np.zeros((full, full), np.float32)
    # every other pixel of each candidate's overlap strips, as strided views (no copies)
    st = pool.strides
    ph2, pw2 = ph - patch + 1, pw - patch + 1
    left_view = np.lib.stride_tricks.as_strided(
        pool, (p_n, ph2, pw2, (patch + 1) // 2, (overlap + 1) // 2), st + (2 * st[1], 2 * st[2]), writeable=False)
    top_view = np.lib.stride_tricks.as_strided(
        pool, (p_n, ph2, pw2, (overlap + 1) // 2, (patch + 1) // 2), st + (2 * st[1], 2 * st[2]), writeable=False)
    full_view = np.lib.stride_tricks.sliding_window_view(pool, (patch, patch), axis=(1, 2))
    feather = max(0.75, overlap / 24.0)
    for i in range(n):
        prev_top = None
        for j in range(n):
            y0, x0 = i * step, j * step
            pi = rng.integers(0, p_n, candidates)
            ys = rng.integers(0, ph - patch + 1, candidates)
            xs = rng.integers(0, pw - patch + 1, candidates)
            if i == 0 and j == 0:
                k = 0
            elif searcher is not None:
                kind = "both" if (i > 0 and j > 0) else ("left" if j > 0 else "top")
                ys[0], xs[0] = searcher.search(canvas[y0:y0 + patch, x0:x0 + patch], kind, rng, tolerance)
                pi[0] = 0
                k = 0
            else:
                err = np.zeros(candidates, np.float32)
                if j > 0:
                    old = canvas[y0:y0 + patch:2, x0:x0 + overlap:2]
                    c = left_view[pi, ys, xs]
                    err += ((c - old[None]) ** 2).sum(axis=(1, 2))
                if i > 0:
                    old = canvas[y0:y0 + overlap:2, x0:x0 + patch:2]
                    c = top_view[pi, ys, xs]
                    err += ((c - old[None]) ** 2).sum(axis=(1, 2))
                best = err.min()
                ok = np.flatnonzero(err <= best * (1 + tolerance) + 1e-6)
                k = int(ok[rng.integers(0, len(ok))])
            new = full_view[pi[k], ys[k], xs[k]].astype(np.float32)
            if i == 0 and j == 0:
                canvas[y0:y0 + patch, x0:x0 + patch] = new
                continue
            old = canvas[y0:y0 + patch, x0:x0 + patch]
            e = (new - old) ** 2
            # keep the cuts off the overlap's borders, so the ramp across them fits inside
            margin = min(int(math.ceil(2 * feather)) + 1, overlap // 3)

            def cut_through(strip):
                strip = strip[None].copy()
                strip[:, :, :margin] += 1e3
                strip[:, :, overlap - margin:] += 1e3
                return strip

            paths = []
            if j > 0:
                paths.append(_seam_dp(cut_through(e[:, :overlap]))[0])
            if i > 0:
                top = cut_through(e[:overlap, :].T)
                if j > 0 and prev_top is not None:
                    # in the corner shared with the left neighbour, reuse that patch's top cut
                    # and continue from it: the two horizontal cuts then join, and no edge
                    # of the neighbour is left exposed between them
                    corner = prev_top[step:]
                    rest = top[:, overlap:].copy()
                    start = corner[-1]
                    rest[:, 0, :] += 1e3
                    rest[:, 0, max(0, start - 1):start + 2] -= 1e3
                    paths.append(list(corner) + _seam_dp(rest)[0])
                else:
                    paths.append(_seam_dp(top)[0])
                prev_top = paths[-1]
            else:
                prev_top = None
            cols = np.arange(patch, dtype=np.float32)
            alpha = np.ones((patch, patch), np.float32)
            s = 0
            if j > 0:  # right of the cut: new patch, with a narrow ramp across the cut
                cut = np.asarray(paths[s], np.float32)
                alpha *= np.clip((cols[None, :] - cut[:, None]) / (2 * feather) + 0.5, 0, 1)
                s += 1
            if i > 0:  # below the cut: new patch
                cut = np.asarray(paths[s], np.float32)
                alpha *= np.clip((cols[:, None] - cut[None, :]) / (2 * feather) + 0.5, 0, 1)
            # only the overlap is blended; the rest of the patch is new content
            inside = np.ones((patch, patch), bool)
            if j > 0:
                inside[:, :overlap] = False
            if i > 0:
                inside[:overlap, :] = False
            alpha[inside] = 1.0
            canvas[y0:y0 + patch, x0:x0 + patch] = alpha * new + (1 - alpha) * old
    return canvas[:size, :size]


def photo_grey(name: str, size: int, rng: np.random.Generator) -> np.ndarray:
    pool = photo_pool(name, photo_scale(size))
    patch, overlap = quilt_geometry(size)
    g = quilt(pool, size, patch, overlap, rng, full_search=(name == "brick"))
    if name == "brick" and rng.random() < 0.5:
        g = g[:, ::-1]
    return np.ascontiguousarray(g)


# ---------------------------------------------------------------------------------------
# procedural textures


def weave_rgb(h: int, w: int, u: float, rng: np.random.Generator) -> np.ndarray:
    """Plain-weave fabric: warp (vertical) and weft (horizontal) threads alternating over
    and under, with smooth irregularity of the thread paths, thickness and shade."""
    period = rng.uniform(15.0, 17.0) * max(u, 0.35)
    disp = 0.18 * period
    dx = smooth_noise((h, w), 10 * period, rng) * disp
    dy = smooth_noise((h, w), 10 * period, rng) * disp
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    U = (xx + dx) / period
    V = (yy + dy) / period
    j = np.floor(U).astype(np.int64)
    i = np.floor(V).astype(np.int64)
    fu = U - j
    fv = V - i
    nt = int(max(h, w) / period) + 8
    j = j - j.min()
    i = i - i.min()
    thick_h = (rng.uniform(0.80, 0.92, nt + 8)).astype(np.float32)
    thick_v = (rng.uniform(0.80, 0.92, nt + 8)).astype(np.float32)
    shade_h = (1 + 0.05 * rng.standard_normal(nt + 8)).astype(np.float32)
    shade_v = (1 + 0.05 * rng.standard_normal(nt + 8)).astype(np.float32)
    # fibre noise along each thread (correlated along it, independent across threads)
    fib_len = int(max(h, w) / max(u, 0.35) / 2) + 4
    fib_h = ndimage.gaussian_filter1d(rng.standard_normal((nt + 8, fib_len)), 1.5, axis=1)
    fib_v = ndimage.gaussian_filter1d(rng.standard_normal((nt + 8, fib_len)), 1.5, axis=1)
    fib_h = (fib_h / fib_h.std()).astype(np.float32)
    fib_v = (fib_v / fib_v.std()).astype(np.float32)
    xi = np.clip((xx / (2 * max(u, 0.35))).astype(np.int64), 0, fib_len - 1)
    yi = np.clip((yy / (2 * max(u, 0.35))).astype(np.int64), 0, fib_len - 1)
    im, jm = i % (nt + 8), j % (nt + 8)
    th = thick_h[im]
    tv = thick_v[jm]
    ah = np.clip(1 - ((fv - 0.5) / (0.5 * th)) ** 2, 0, 1)  # cross-section of the weft
    av = np.clip(1 - ((fu - 0.5) / (0.5 * tv)) ** 2, 0, 1)  # cross-section of the warp
    # twist of the yarn: faint diagonal striation
    twist_h = 0.5 + 0.5 * np.cos(2 * np.pi * (3 * fu + 1.5 * fv))
    twist_v = 0.5 + 0.5 * np.cos(2 * np.pi * (3 * fv - 1.5 * fu))
    lum_h = np.sqrt(ah) * (0.6 + 0.4 * np.sin(np.pi * fu)) * shade_h[im] * (1 + 0.06 * fib_h[im, xi]) * (0.93 + 0.07 * twist_h)
    lum_v = np.sqrt(av) * (0.6 + 0.4 * np.sin(np.pi * fv)) * shade_v[jm] * (1 + 0.06 * fib_v[jm, yi]) * (0.93 + 0.07 * twist_v)
    weft_on_top = ((i + j) % 2) == 0
    top_v = (~weft_on_top) & (av > 0)
    use_h = (weft_on_top & (ah > 0)) | ((~top_v) & (ah >= av) & (ah > 0))
    c_warp = (np.array([0.50, 0.47, 0.40]) * rng.uniform(0.97, 1.03, 3) * 1.25).astype(np.float32)
    c_weft = (np.array([0.60, 0.56, 0.47]) * rng.uniform(0.97, 1.03, 3) * 1.25).astype(np.float32)
    gap = np.array([0.16, 0.14, 0.12], np.float32)
    lum = np.where(use_h, lum_h, lum_v).astype(np.float32)[..., None]
    col = np.where(use_h[..., None], c_weft, c_warp)
    return np.maximum(lum * col, gap)


def metal_rgb(h: int, w: int, u: float, rng: np.random.Generator) -> np.ndarray:
    """Brushed metal: streaks long along x and thin along y, faint tool marks, soft
    lighting gradient and a cool tint."""
    angle = np.deg2rad(rng.uniform(-1.5, 1.5))
    f = 8
    pad = int(abs(math.tan(angle)) * w) + 4
    hh = h + pad
    coarse = rng.standard_normal((hh, w // f + 8))
    coarse = ndimage.gaussian_filter1d(coarse, 6.0, axis=1, mode="wrap")
    coarse = ndimage.gaussian_filter1d(coarse, 0.7 * max(u, 0.5), axis=0, mode="wrap")
    xs = (np.arange(w) + 0.5) / f + 4
    x0 = np.floor(xs).astype(np.int64)
    fx = (xs - x0).astype(np.float32)
    streak = coarse[:, x0] * (1 - fx) + coarse[:, x0 + 1] * fx
    fine = ndimage.gaussian_filter1d(rng.standard_normal((hh, w), dtype=np.float32), 2.5 * max(u, 0.5), axis=1, mode="wrap")
    field = streak / streak.std() + 0.5 * fine / fine.std()
    # shear the streaks by a slight angle, with linear interpolation between rows
    shift = np.arange(w) * math.tan(angle)
    shift = shift - shift.min() + 1
    r0 = np.floor(shift).astype(np.int64)
    fr = (shift - r0).astype(np.float32)
    rows = np.arange(h)[:, None]
    field = field[rows + r0[None, :], np.arange(w)[None, :]] * (1 - fr) + \
        field[np.clip(rows + r0[None, :] + 1, 0, hh - 1), np.arange(w)[None, :]] * fr
    yy = np.arange(h, dtype=np.float32)[:, None]
    tool = 0.5 + 0.5 * np.sin(2 * np.pi * yy / (7.0 * max(u, 0.6)) + rng.uniform(0, 6.3))
    light = smooth_noise((h, w), 0.7 * max(h, w), rng)
    xx = np.linspace(-1, 1, w, dtype=np.float32)[None, :]
    grey = 0.56 + 0.045 * field + 0.012 * tool + 0.035 * light + rng.uniform(-0.04, 0.04) * xx
    tint = np.array([0.96, 0.99, 1.04], np.float32)
    return np.clip(grey[..., None] * tint, 0, 1).astype(np.float32)


# ---------------------------------------------------------------------------------------
# structured category: a regular grid of identical parts (anomalies only visible in context)


def _tile_part(cell: int, u: float) -> np.ndarray:
    """One part (RGB, cell x cell): a rounded square plate with an off-centre hole and a
    notch, so that a rotation is visible but only by comparison with its neighbours."""
    yy, xx = np.mgrid[0:cell, 0:cell].astype(np.float32) + 0.5
    c = cell / 2
    half = cell * 0.38
    rr = cell * 0.1
    qx = np.maximum(np.abs(xx - c) - (half - rr), 0)
    qy = np.maximum(np.abs(yy - c) - (half - rr), 0)
    d_plate = np.hypot(qx, qy) - rr
    plate = np.clip(0.5 - d_plate, 0, 1)
    d_hole = np.hypot(xx - (c + cell * 0.14), yy - (c - cell * 0.12)) - cell * 0.09
    hole = np.clip(0.5 - d_hole, 0, 1)
    d_dot = np.hypot(xx - (c - cell * 0.18), yy - (c + cell * 0.18)) - cell * 0.045
    dot = np.clip(0.5 - d_dot, 0, 1)
    notch = np.clip(0.5 - np.maximum(np.abs(xx - c) - cell * 0.05, yy - ((c - half) + cell * 0.12)), 0, 1)
    bevel = np.clip(-d_plate / (cell * 0.05), 0, 1)
    lum = 0.25 + plate * (0.35 + 0.25 * bevel) - plate * hole * 0.45 - plate * notch * 0.4 + plate * dot * 0.2
    colour = np.array([0.95, 0.9, 0.8], np.float32)
    return np.clip(lum[..., None] * colour, 0, 1).astype(np.float32)


def tiles_geometry(size: int) -> tuple[int, int]:
    cell = max(16, int(round(size / 8)))
    return cell, size // cell


def tiles_rgb(size: int, rng: np.random.Generator) -> np.ndarray:
    cell, n = tiles_geometry(size)
    part = _tile_part(cell, unit(size))
    out = np.full((size, size, 3), 0.2, np.float32)
    out[: n * cell, : n * cell] = np.tile(part, (n, n, 1))
    out *= 1 + 0.04 * smooth_noise((size, size), size / 2, rng)[..., None]
    return out


# ---------------------------------------------------------------------------------------
# normal images


def base_image(category: str, size: int, rng: np.random.Generator) -> np.ndarray:
    """A normal image (H, W, 3) float32 in [0, 1], with the per-image jitter and noise."""
    u = unit(size)
    if category in PHOTO_CATEGORIES:
        grey = photo_grey(category, size, rng)
        tint = np.asarray(TINTS[category], np.float32) * rng.uniform(0.98, 1.02, 3).astype(np.float32)
        img = colourise(grey, tint)
    elif category == "weave":
        img = weave_rgb(size, size, u, rng)
    elif category == "metal":
        img = metal_rgb(size, size, u, rng)
    elif category == "tiles":
        img = tiles_rgb(size, rng)
    else:
        raise ValueError(f"unknown category {category!r}")
    img = np.asarray(img, np.float32)
    m = float(img.mean())
    gain = np.float32(rng.uniform(0.93, 1.07))
    img = img * gain + np.float32(m * (1 - gain) + rng.uniform(-0.03, 0.03))
    img += rng.standard_normal(img.shape, dtype=np.float32) * np.float32(1.2 / 255)
    return np.clip(img, 0, 1, out=img)


def texture_patch(name: str, h: int, w: int, rng: np.random.Generator, size: int) -> np.ndarray:
    """A (h, w, 3) crop of another texture, at the scale it has in a `size` image."""
    if name in PHOTO_CATEGORIES:
        pool = photo_pool(name, photo_scale(size))
        p, ph, pw = pool.shape
        if h > ph or w > pw:
            g = photo_grey(name, max(h, w), rng)[:h, :w]
        else:
            y = rng.integers(0, ph - h + 1)
            x = rng.integers(0, pw - w + 1)
            g = pool[rng.integers(0, p), y:y + h, x:x + w]
        return colourise(g, TINTS[name])
    if name == "weave":
        return weave_rgb(h, w, unit(size), rng)
    if name == "metal":
        return metal_rgb(h, w, unit(size), rng)
    raise ValueError(name)


# ---------------------------------------------------------------------------------------
# defect primitives


def stamp_discs(shape, ys, xs, radii, soft: float = 0.5) -> np.ndarray:
    """Coverage (max over discs) of discs at float centres, anti-aliased edge of ~2*soft px."""
    alpha = np.zeros(shape, np.float32)
    if len(ys) == 0:
        return alpha
    ys = np.asarray(ys, np.float32)
    xs = np.asarray(xs, np.float32)
    radii = np.broadcast_to(np.asarray(radii, np.float32), ys.shape)
    # group by window size to keep the stamping vectorised and cheap
    reach = np.ceil(radii + 2 * soft + 1).astype(np.int64)
    for rmax in np.unique(reach):
        sel = reach == rmax
        offs = np.arange(-rmax, rmax + 1)
        cy = np.floor(ys[sel]).astype(np.int64)
        cx = np.floor(xs[sel]).astype(np.int64)
        iy = cy[:, None, None] + offs[None, :, None]
        ix = cx[:, None, None] + offs[None, None, :]
        d = np.hypot(iy - ys[sel][:, None, None], ix - xs[sel][:, None, None])
        cov = np.clip((radii[sel][:, None, None] - d) / (2 * soft) + 0.5, 0, 1)
        iy, ix = np.broadcast_arrays(iy, ix)
        ok = (cov > 0) & (iy >= 0) & (iy < shape[0]) & (ix >= 0) & (ix < shape[1])
        np.maximum.at(alpha, (iy[ok], ix[ok]), cov[ok].astype(np.float32))
    return alpha


def curve_points(length: float, rng: np.random.Generator, wiggle: float, jag: float = 0.0):
    """Points (y, x) every 0.5 px along a smooth random curve of the given length, centred."""
    n = max(4, int(length * 2))
    theta0 = rng.uniform(0, 2 * np.pi)
    t = np.linspace(0, 1, n)
    curv = rng.uniform(-1, 1) * wiggle
    bend = curv * t + 0.3 * wiggle * np.sin(2 * np.pi * (t * rng.uniform(0.5, 1.5) + rng.uniform()))
    theta = theta0 + bend
    if jag > 0:
        # a slow random walk of the direction (persistence ~150 px, no loops) plus jagged
        # short-range kinks that do not accumulate
        walk = np.cumsum(rng.standard_normal(n)) * math.sqrt(0.5 / 150.0)
        kinks = ndimage.gaussian_filter1d(rng.standard_normal(n), 3.0)
        theta = theta + walk + jag * kinks / max(float(kinks.std()), 1e-6)
    y = np.cumsum(0.5 * np.sin(theta))
    x = np.cumsum(0.5 * np.cos(theta))
    return y - (y.max() + y.min()) / 2, x - (x.max() + x.min()) / 2, theta


def place(extent_y: float, extent_x: float, size: int, rng: np.random.Generator, margin: float = 0.04):
    """A centre such that an object of the given half-extents stays inside when possible."""
    m = margin * size
    lo_y, hi_y = m + extent_y, size - m - extent_y
    lo_x, hi_x = m + extent_x, size - m - extent_x
    cy = rng.uniform(lo_y, hi_y) if hi_y > lo_y else size / 2
    cx = rng.uniform(lo_x, hi_x) if hi_x > lo_x else size / 2
    return cy, cx


def blob_alpha(size: int, cy: float, cx: float, radius: float, soft: float,
               rng: np.random.Generator, irregular: float = 0.25, inner: float = 0.0):
    """An irregular soft-edged blob: (alpha over the whole image, window slices)."""
    elong = rng.uniform(1.0, 1.8)
    rot = rng.uniform(0, np.pi)
    ext = radius * elong * (1 + 2 * irregular) + 3 * soft + 2
    y0, y1 = max(0, int(cy - ext)), min(size, int(cy + ext) + 1)
    x0, x1 = max(0, int(cx - ext)), min(size, int(cx + ext) + 1)
    yy, xx = np.mgrid[y0:y1, x0:x1].astype(np.float32)
    dy, dx = yy + 0.5 - cy, xx + 0.5 - cx
    a = dx * np.cos(rot) + dy * np.sin(rot)
    b = -dx * np.sin(rot) + dy * np.cos(rot)
    a /= math.sqrt(elong)
    b *= math.sqrt(elong)
    r = np.hypot(a, b)
    phi = np.arctan2(b, a)
    rho = np.ones_like(r)
    for k in range(2, 6):
        rho += irregular / k * rng.uniform(0.3, 1.0) * np.cos(k * phi + rng.uniform(0, 2 * np.pi))
    sd = (rho * radius - r)  # >0 inside, in (roughly) pixels
    al = smoothstep(-soft, soft, sd).astype(np.float32)
    if inner > 0:
        h, w = al.shape
        tex = smooth_noise((h, w), max(3.0, radius / 3), rng)
        al *= np.clip(1 - inner * 0.5 * (1 + np.tanh(tex)), 0, 1)
    alpha = np.zeros((size, size), np.float32)
    alpha[y0:y1, x0:x1] = al
    return alpha


# ---------------------------------------------------------------------------------------
# defects: each returns (defective image, potential-change map or mask, info)


def defect_scratch(img, target_px, rng, size):
    u = unit(size)
    width = rng.uniform(1.0, 3.0)
    strands = 1
    total = target_px / max(width * 0.85, 0.8)
    if total > 0.6 * size:  # a long scratch or a scuff of several parallel ones
        strands = int(np.clip(math.ceil(total / (0.6 * size)), 1, 40))
    length = total / strands
    ys_all, xs_all, rs_all = [], [], []
    y, x, theta = curve_points(length, rng, wiggle=rng.uniform(0.1, 0.8))
    spread = max(6 * u, 3) * strands
    cy, cx = place(np.ptp(y) / 2 + spread, np.ptp(x) / 2 + spread, size, rng)
    nrm = np.stack([np.cos(theta), -np.sin(theta)])  # normal to the path (y, x)
    for s in range(strands):
        off = rng.uniform(-spread, spread) if strands > 1 else 0.0
        keep = slice(int(rng.uniform(0, 0.3) * len(y)) if strands > 1 else 0,
                     len(y) - (int(rng.uniform(0, 0.3) * len(y)) if strands > 1 else 0))
        w = width * rng.uniform(0.6, 1.0) if strands > 1 else width
        t = np.linspace(0, 1, len(y))[keep]
        taper = np.clip(np.minimum(t, 1 - t) * 8, 0.35, 1.0) if len(t) > 1 else np.ones(1)
        ys_all.append(cy + y[keep] + off * nrm[0][keep])
        xs_all.append(cx + x[keep] + off * nrm[1][keep])
        rs_all.append(np.maximum(0.5, w / 2 * taper))
    alpha = stamp_discs((size, size), np.concatenate(ys_all), np.concatenate(xs_all), np.concatenate(rs_all))
    bright = rng.random() < 0.5
    c = rng.uniform(0.15, 0.5)
    a = alpha[..., None] * c
    out = img + a * (1 - img) if bright else img * (1 - a)
    return out, alpha * c, {"polarity": "bright" if bright else "dark", "contrast": round(float(c), 3),
                            "strands": strands, "width_px": round(float(width), 2)}


def _crack_paths(length, width, rng, depth=0):
    y, x, theta = curve_points(length, rng, wiggle=rng.uniform(0.1, 0.5), jag=0.3)
    t = np.linspace(0, 1, len(y))
    r = np.maximum(0.5, width / 2 * (1 - 0.6 * t))
    paths = [(y, x, r)]
    if depth < 2 and length > 12:
        nb = rng.integers(1, 4) if depth == 0 else rng.integers(0, 3)
        for _ in range(nb):
            k = int(rng.uniform(0.15, 0.85) * len(y))
            sub = _crack_paths(length * rng.uniform(0.2, 0.5), max(1.0, r[k] * 2 * 0.8), rng, depth + 1)
            # orient the branch away from the trunk at 20-70 degrees
            ang = theta[k] + rng.choice([-1, 1]) * np.deg2rad(rng.uniform(20, 70))
            for (by, bx, br) in sub:
                # sub-paths are centred: move their start to the branch point, then rotate
                by0, bx0 = by - sub[0][0][0], bx - sub[0][1][0]
                th0 = math.atan2(sub[0][0][-1] - sub[0][0][0], sub[0][1][-1] - sub[0][1][0])
                rot = ang - th0
                ry = bx0 * math.sin(rot) + by0 * math.cos(rot)
                rx = bx0 * math.cos(rot) - by0 * math.sin(rot)
                paths.append((y[k] + ry, x[k] + rx, br))
    return paths


def defect_crack(img, target_px, rng, size):
    width = rng.uniform(1.5, 3.2) if target_px < 0.008 * size * size else rng.uniform(2.5, 4.0)
    length = target_px / (width * 0.75) / 1.6
    # long cracks become a connected network of trunks, each at most ~0.6 of the image
    trunks = int(np.clip(math.ceil(length / (0.6 * size)), 1, 12))
    paths = _crack_paths(length / trunks, width, rng)
    for _ in range(trunks - 1):
        host = paths[rng.integers(0, len(paths))]
        k = rng.integers(0, len(host[0]))
        sub = _crack_paths(length / trunks, width * rng.uniform(0.7, 1.0), rng)
        dy, dx = host[0][k] - sub[0][0][0], host[1][k] - sub[0][1][0]
        paths += [(py + dy, px + dx, pr) for (py, px, pr) in sub]
    ys = np.concatenate([p[0] for p in paths])
    xs = np.concatenate([p[1] for p in paths])
    rs = np.concatenate([p[2] for p in paths])
    ey, ex = (ys.max() - ys.min()) / 2, (xs.max() - xs.min()) / 2
    cy, cx = place(ey, ex, size, rng)
    ys = ys - (ys.max() + ys.min()) / 2 + cy
    xs = xs - (xs.max() + xs.min()) / 2 + cx
    alpha = stamp_discs((size, size), ys, xs, rs)
    s = rng.uniform(0.35, 0.7)
    a = alpha[..., None] * s
    out = img * (1 - a)
    return out, alpha * s, {"polarity": "dark", "contrast": round(float(s), 3), "branches": len(paths) - 1,
                            "width_px": round(float(width), 2)}


def defect_stain(img, target_px, rng, size):
    radius = math.sqrt(target_px / np.pi) * 0.9
    soft = max(1.5, radius * rng.uniform(0.2, 0.45))
    cy, cx = place(radius * 1.5, radius * 1.5, size, rng)
    alpha = blob_alpha(size, cy, cx, radius, soft, rng, irregular=rng.uniform(0.15, 0.4), inner=0.35)
    s = rng.uniform(0.2, 0.55)
    kind = rng.choice(["brown", "dark", "bleach", "green"])
    if kind == "bleach":
        a = alpha[..., None] * s * 0.8
        out = img + a * (0.95 - img)
        pot = alpha * s * 0.8 * 0.5
    else:
        col = {"brown": (0.75, 0.55, 0.35), "dark": (0.55, 0.55, 0.55), "green": (0.6, 0.75, 0.45)}[kind]
        k = 1 - np.asarray(col, np.float32)
        out = img * (1 - alpha[..., None] * s * k)
        pot = alpha * s * float(k.max()) * 0.5
    return out, pot, {"colour": str(kind), "strength": round(float(s), 3)}


def defect_speck(img, target_px, rng, size):
    u = unit(size)
    dmin, dmax = max(2.5, 10 * u), max(4.0, 30 * u)
    if target_px > 6 * (np.pi / 4) * dmax ** 2:
        dmax = max(dmax, 45 * u)
    ds, area = [], 0.0
    while area < target_px and len(ds) < 400:
        d = rng.uniform(dmin, dmax)
        ds.append(d)
        area += np.pi / 4 * d * d
    ds = np.array(ds)
    n = len(ds)
    spread = math.sqrt(n) * dmax * rng.uniform(1.2, 3.0)
    cy, cx = place(spread + dmax, spread + dmax, size, rng)
    ys = cy + rng.standard_normal(n) * spread * 0.5
    xs = cx + rng.standard_normal(n) * spread * 0.5
    # each speck is two or three overlapping discs: slightly irregular outline
    sub_y, sub_x, sub_r = [], [], []
    for y, x, d in zip(ys, xs, ds):
        for _ in range(rng.integers(1, 4)):
            o = rng.uniform(-0.2, 0.2, 2) * d
            sub_y.append(y + o[0])
            sub_x.append(x + o[1])
            sub_r.append(d / 2 * rng.uniform(0.7, 1.0))
    alpha = stamp_discs((size, size), sub_y, sub_x, sub_r, soft=max(0.5, 1.0 * u))
    c = rng.uniform(0.25, 0.6)
    kind = rng.choice(["dark", "bright", "rust"])
    a = alpha[..., None] * c
    if kind == "dark":
        out = img * (1 - a)
    elif kind == "bright":
        out = img + a * (1 - img)
    else:
        out = img + a * (np.array([0.55, 0.28, 0.12], np.float32) - img)
    return out, alpha * c * 0.5, {"polarity": str(kind), "contrast": round(float(c), 3), "count": int(n)}


def defect_foreign(img, target_px, rng, size, category):
    radius = math.sqrt(target_px / np.pi)
    soft = max(1.0, min(4.0, radius * 0.12))
    cy, cx = place(radius * 1.5, radius * 1.5, size, rng)
    alpha = blob_alpha(size, cy, cx, radius, soft, rng, irregular=rng.uniform(0.2, 0.45))
    ys, xs = np.nonzero(alpha > 0)
    y0, y1, x0, x1 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
    src = FOREIGN_SOURCES[category]
    name = src[rng.integers(0, len(src))]
    patch = texture_patch(name, int(y1 - y0), int(x1 - x0), rng, size)
    host = img[y0:y1, x0:x1]
    k = rng.uniform(0.7, 1.5)
    off = rng.choice([-1, 1]) * rng.uniform(0.02, 0.15)
    hs = max(float(host.std()), 0.03)
    ps = max(float(patch.std()), 1e-3)
    pm = patch.mean(axis=(0, 1), keepdims=True)
    patch = (patch - pm) / ps * hs * k + pm - pm.mean() + host.mean() + off
    out = img.copy()
    a = alpha[y0:y1, x0:x1, None]
    out[y0:y1, x0:x1] = a * patch + (1 - a) * host
    return out, alpha, {"texture": str(name), "contrast_scale": round(float(k), 3), "offset": round(float(off), 3)}


def defect_distortion(img, target_px, rng, size):
    R = math.sqrt(target_px / np.pi) * 1.05
    R = max(R, 3.0)
    cy, cx = place(R + 2, R + 2, size, rng)
    y0, y1 = max(0, int(cy - R - 3)), min(size, int(cy + R + 4))
    x0, x1 = max(0, int(cx - R - 3)), min(size, int(cx + R + 4))
    yy, xx = np.mgrid[y0:y1, x0:x1].astype(np.float64)
    dy, dx = yy - cy, xx - cx
    r = np.hypot(dy, dx)
    fall = np.clip(1 - r / R, 0, 1) ** 2
    kind = rng.choice(["swirl", "swirl", "pinch", "bulge"])
    if kind == "swirl":
        ang = rng.choice([-1, 1]) * rng.uniform(1.5, 3.5) * fall
        sy = dy * np.cos(ang) + dx * np.sin(ang)
        sx = -dy * np.sin(ang) + dx * np.cos(ang)
    else:
        k = rng.uniform(0.7, 1.0) * (1 if kind == "pinch" else -0.7)
        f = 1 + k * fall
        sy, sx = dy * f, dx * f
    src_y, src_x = sy + cy - y0, sx + cx - x0
    disp = np.hypot(src_y - (yy - y0), src_x - (xx - x0))
    win = img[y0:y1, x0:x1]
    coords = np.stack([src_y, src_x])
    warped = np.stack([sktf.warp(win[..., c], coords, order=3, mode="reflect", preserve_range=True)
                       for c in range(win.shape[2])], axis=-1).astype(np.float32)
    out = img.copy()
    out[y0:y1, x0:x1] = warped
    mask = np.zeros((size, size), bool)
    mask[y0:y1, x0:x1] = ndimage.binary_fill_holes(disp >= 0.5)
    return out, mask, {"warp": str(kind), "radius_px": round(float(R), 1)}


DEFECTS = {
    "scratch": defect_scratch,
    "stain": defect_stain,
    "speck": defect_speck,
    "crack": defect_crack,
    "foreign": defect_foreign,
    "distortion": defect_distortion,
}


def apply_defect(img: np.ndarray, kind: str, size_class: str, rng: np.random.Generator,
                 category: str):
    """Plant one defect of the size class: returns (image, bool mask, info). Pixels outside
    the mask are exactly those of `img`."""
    size = img.shape[0]
    total = size * size
    lo, hi = CLASS_RANGES[size_class]
    lo_px = max(MIN_DEFECT_PX, lo * total)
    hi_px = hi * total
    want = rng.uniform(*CLASS_TARGETS[size_class]) * total
    if size_class == "small":
        want = min(want, 0.8 * hi_px)
        want = max(want, 2 * MIN_DEFECT_PX)
    req = want
    for _attempt in range(40):
        fn = DEFECTS[kind]
        res = fn(img, req, rng, size, category) if kind == "foreign" else fn(img, req, rng, size)
        out, pot, info = res
        mask = pot if pot.dtype == bool else pot >= CHANGE_THRESHOLD
        area = int(mask.sum())
        if lo_px <= area <= hi_px:
            out = np.where(mask[..., None], np.clip(out, 0, 1), img).astype(np.float32)
            return out, mask, info
        req = float(np.clip(req * np.clip(want / max(area, 1), 0.4, 2.5), want / 8, want * 8))
    raise RuntimeError(f"could not plant a {size_class} {kind} at size {size}")


# ---------------------------------------------------------------------------------------
# structured defects (tiles)


def apply_structured(img: np.ndarray, kind: str, size_class: str, rng: np.random.Generator):
    """Context anomalies on the tiles grid. The size class follows from the kind here and
    is reported as measured."""
    size = img.shape[0]
    cell, n = tiles_geometry(size)
    out = img.copy()
    if kind == "shifted_row":
        r = int(rng.integers(0, n))
        sh = int(round(cell * rng.uniform(0.15, 0.4))) * int(rng.choice([-1, 1]))
        band = img[r * cell:(r + 1) * cell, : n * cell]
        out[r * cell:(r + 1) * cell, : n * cell] = np.roll(band, sh, axis=1)
    elif kind == "missing":
        r, c = rng.integers(0, n, 2)
        bg = img[r * cell:(r + 1) * cell, c * cell:(c + 1) * cell].copy()
        corner = bg[:2, :2].mean(axis=(0, 1))
        out[r * cell:(r + 1) * cell, c * cell:(c + 1) * cell] = corner * (1 + 0.03 * rng.standard_normal(bg.shape)).astype(np.float32)
    elif kind == "swapped":
        # a half-cell-offset window is moved somewhere else: the grid breaks there
        r, c = rng.integers(0, n - 1, 2)
        oy, ox = int(cell * rng.uniform(0.3, 0.7)), int(cell * rng.uniform(0.3, 0.7))
        src = img[r * cell + oy:(r + 1) * cell + oy, c * cell + ox:(c + 1) * cell + ox].copy()
        r2, c2 = (r + rng.integers(1, n)) % n, (c + rng.integers(1, n)) % n
        out[r2 * cell:(r2 + 1) * cell, c2 * cell:(c2 + 1) * cell] = src
    elif kind == "rotated":
        r, c = rng.integers(0, n, 2)
        k = int(rng.integers(1, 4))
        blk = img[r * cell:(r + 1) * cell, c * cell:(c + 1) * cell]
        out[r * cell:(r + 1) * cell, c * cell:(c + 1) * cell] = np.rot90(blk, k)
    else:
        raise ValueError(kind)
    mask = np.abs(out - img).max(axis=2) >= CHANGE_THRESHOLD
    mask = ndimage.binary_closing(mask, iterations=2) & (np.abs(out - img).max(axis=2) > 0) | mask
    out = np.where(mask[..., None], out, img)
    return out, mask, {}


# ---------------------------------------------------------------------------------------
# dataset


def defect_types(category: str) -> tuple[str, ...]:
    return STRUCTURED_DEFECT_TYPES if category in STRUCTURED_CATEGORIES else DEFECT_TYPES


def mask_record(mask: np.ndarray) -> dict:
    """A mask's area (pixels and fraction of the image) and bounding box."""
    ys, xs = np.nonzero(mask)
    return {"area_px": int(mask.sum()), "area_fraction": round(float(mask.mean()), 7),
            "bbox": {"x": int(xs.min()), "y": int(ys.min()),
                     "width": int(xs.max() - xs.min() + 1), "height": int(ys.max() - ys.min() + 1)}}


def make_test_image(category: str, kind: str, index: int, size: int, seed: int):
    """(clean, defective, mask, record) for one defective test image."""
    rng = image_rng(seed, category, "test", kind, index, size)
    clean = base_image(category, size, rng)
    size_class = SIZE_CLASSES[index % len(SIZE_CLASSES)]
    if category in STRUCTURED_CATEGORIES:
        img, mask, info = apply_structured(clean, kind, size_class, rng)
        frac = mask.mean()
        size_class = "small" if frac < 0.001 else ("medium" if frac < 0.01 else "large")
    else:
        img, mask, info = apply_defect(clean, kind, size_class, rng, category)
    record = {
        "defect_type": kind,
        "size_class": size_class,
        **mask_record(mask),
        "params": info,
    }
    return clean, img, mask, record


# Production variation defaults: shift as a fraction of the side, rotation in degrees,
# brightness and contrast drift as fractions, the largest defocus blur (Gaussian sigma)
# and the sensor noise (standard deviation, of 1.0) at a 1024-pixel side.
VARIATION_DEFAULTS = {"shift": 0.03, "rotate": 2.0, "light": 0.08, "blur": 1.0, "noise": 0.01}


def variation_rng(seed: int, category: str, split: str, kind: str, index: int, size: int):
    """The variation's own stream: drawing from it leaves the image's stream untouched."""
    return image_rng(seed, category, split, kind + "/variation", index, size)


def draw_variation(settings: dict, size: int, rng: np.random.Generator) -> dict:
    """One image's variation: shift in pixels, rotation in degrees, contrast gain,
    brightness offset, blur sigma in pixels, noise standard deviation."""
    u = lambda lim: float(rng.uniform(-lim, lim))  # noqa: E731
    return {
        "dx": round(u(settings["shift"]) * size, 3),
        "dy": round(u(settings["shift"]) * size, 3),
        "angle": round(u(settings["rotate"]), 4),
        "contrast": round(1.0 + u(settings["light"]), 5),
        "brightness": round(u(settings["light"]) / 2.0, 5),
        "blur": round(float(rng.uniform(0.0, settings["blur"])) * size / 1024.0, 4),
        "noise": settings["noise"],
    }


def _warp(a: np.ndarray, v: dict, order: int) -> np.ndarray:
    """`a` (H x W or H x W x C) rotated by v["angle"] about the centre and shifted by
    (v["dx"], v["dy"]) pixels; what comes in from outside is the image mirrored at its
    border (a part larger than the frame), for masks too, so a defect mirrored into view
    stays marked."""
    h, w = a.shape[:2]
    t = math.radians(v["angle"])
    rot = np.array([[math.cos(t), -math.sin(t)], [math.sin(t), math.cos(t)]])
    centre = np.array([(h - 1) / 2.0, (w - 1) / 2.0])
    # Output pixel p reads input rot^-1 (p - centre - shift) + centre.
    inv = rot.T
    offset = centre - inv @ (centre + np.array([v["dy"], v["dx"]]))
    if a.ndim == 2:
        return ndimage.affine_transform(a, inv, offset=offset, order=order, mode="mirror")
    return np.stack([ndimage.affine_transform(a[..., c], inv, offset=offset, order=order,
                                              mode="mirror") for c in range(a.shape[2])], axis=-1)


def apply_variation(img: np.ndarray, mask, v: dict, rng: np.random.Generator):
    """(varied image, varied mask or None): geometry, then defocus, light, sensor noise."""
    out = _warp(img, v, order=1)
    if v["blur"] > 0:
        out = ndimage.gaussian_filter(out, sigma=(v["blur"], v["blur"], 0))
    out = (out - 0.5) * v["contrast"] + 0.5 + v["brightness"]
    if v["noise"] > 0:
        out = out + rng.normal(0.0, v["noise"], out.shape)
    out = np.clip(out, 0.0, 1.0)
    varied_mask = None if mask is None else _warp(mask.astype(np.uint8), v, order=0).astype(bool)
    return out, varied_mask


def make_category(out: str, category: str, size: int, n_train: int, n_test_good: int,
                  n_per_type: int, seed: int, log=print, variation: dict | None = None) -> dict:
    t0 = time.perf_counter()
    root = os.path.join(out, category)
    records = []
    train_variations = []

    def vary(img, mask, split, kind, i):
        """The image (and mask) as the line delivers it, and what was done, or as is."""
        if variation is None:
            return img, mask, None
        rng = variation_rng(seed, category, split, kind, i, size)
        v = draw_variation(variation, size, rng)
        img, mask = apply_variation(img, mask, v, rng)
        return img, mask, v

    for i in range(n_train):
        img = base_image(category, size, image_rng(seed, category, "train", "good", i, size))
        img, _, v = vary(img, None, "train", "good", i)
        train_variations.append(v)
        save_png(os.path.join(root, "train", "good", f"{i:03d}.png"), to_uint8(img))
    for i in range(n_test_good):
        img = base_image(category, size, image_rng(seed, category, "test", "good", i, size))
        img, _, v = vary(img, None, "test", "good", i)
        save_png(os.path.join(root, "test", "good", f"{i:03d}.png"), to_uint8(img))
        records.append({"file": f"test/good/{i:03d}.png", "mask": None, "defect_type": "good",
                        "size_class": None, "area_px": 0, "area_fraction": 0.0, "bbox": None,
                        **({"variation": v} if v else {})})
    for kind in defect_types(category):
        for i in range(n_per_type):
            _, img, mask, rec = make_test_image(category, kind, i, size, seed)
            img, mask, v = vary(img, mask, "test", kind, i)
            if v:
                # Area and box as the varied mask has them; the size class stays the part's.
                rec = {**rec, **mask_record(mask), "variation": v}
            save_png(os.path.join(root, "test", kind, f"{i:03d}.png"), to_uint8(img))
            save_png(os.path.join(root, "ground_truth", kind, f"{i:03d}_mask.png"),
                     (mask.astype(np.uint8) * 255))
            records.append({"file": f"test/{kind}/{i:03d}.png",
                            "mask": f"ground_truth/{kind}/{i:03d}_mask.png", **rec})
    meta = {
        "category": category,
        "size": size,
        "seed": seed,
        "source": ("scikit-image data." + category + "() (CC0), image quilting") if category in PHOTO_CATEGORIES
        else "procedural",
        "size_classes": {k: {"min_fraction": v[0], "max_fraction": v[1]} for k, v in CLASS_RANGES.items()},
        "bbox_format": "x, y of the top-left mask pixel; width, height in pixels",
        "train_good": n_train,
        "test": records,
    }
    if variation is not None:
        meta["variation"] = {"settings": variation, "train": train_variations}
    with open(os.path.join(root, "defects.json"), "w") as f:
        json.dump(meta, f, indent=1, sort_keys=False)
        f.write("\n")
    dt = time.perf_counter() - t0
    log(f"{category}: {n_train} train + {len(records)} test images at {size}x{size} in {dt:.1f} s")
    return meta


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", required=True, help="output directory")
    p.add_argument("--size", type=int, default=1024, help="image side in pixels (default 1024)")
    p.add_argument("--categories", default=None,
                   help=f"comma-separated subset of {','.join(ALL_CATEGORIES)} (default: {','.join(DEFAULT_CATEGORIES)})")
    p.add_argument("--structured", action="store_true", help="also the structured categories (tiles)")
    p.add_argument("--train", type=int, default=20, help="normal training images per category")
    p.add_argument("--test-good", type=int, default=5, help="normal test images per category")
    p.add_argument("--test-per-type", type=int, default=3,
                   help="test images per defect type (size classes cycle small, medium, large)")
    p.add_argument("--seed", type=int, default=0)
    d = VARIATION_DEFAULTS
    p.add_argument("--vary", action="store_true",
                   help="production variation on every image: shift, rotation, light drift, defocus, noise")
    p.add_argument("--vary-shift", type=float, default=d["shift"],
                   help=f"largest shift as a fraction of the side (default {d['shift']})")
    p.add_argument("--vary-rotate", type=float, default=d["rotate"],
                   help=f"largest rotation in degrees (default {d['rotate']})")
    p.add_argument("--vary-light", type=float, default=d["light"],
                   help=f"largest brightness and contrast drift as a fraction (default {d['light']})")
    p.add_argument("--vary-blur", type=float, default=d["blur"],
                   help=f"largest defocus blur sigma in pixels at a 1024 side (default {d['blur']})")
    p.add_argument("--vary-noise", type=float, default=d["noise"],
                   help=f"sensor noise standard deviation, of 1.0 (default {d['noise']})")
    a = p.parse_args(argv)
    a.variation = ({"shift": a.vary_shift, "rotate": a.vary_rotate, "light": a.vary_light,
                    "blur": a.vary_blur, "noise": a.vary_noise} if a.vary else None)
    if a.vary and not (0 <= a.vary_shift < 0.5 and a.vary_rotate >= 0 and 0 <= a.vary_light < 1
                       and a.vary_blur >= 0 and a.vary_noise >= 0):
        p.error("--vary-shift must be in [0, 0.5), --vary-light in [0, 1), the others >= 0")
    if a.categories:
        cats = [c.strip() for c in a.categories.split(",") if c.strip()]
        bad = [c for c in cats if c not in ALL_CATEGORIES]
        if bad:
            p.error(f"unknown categories {bad}; known: {', '.join(ALL_CATEGORIES)}")
    else:
        cats = list(DEFAULT_CATEGORIES)
    if a.structured:
        cats += [c for c in STRUCTURED_CATEGORIES if c not in cats]
    a.category_list = cats
    if a.size < 64:
        p.error("--size must be at least 64")
    return a


def main(argv=None) -> int:
    a = parse_args(argv)
    for c in a.category_list:
        make_category(a.out, c, a.size, a.train, a.test_good, a.test_per_type, a.seed,
                      variation=a.variation)
    return 0


if __name__ == "__main__":
    sys.exit(main())
