//! Slow, obvious twins of the scoring kernels, in f64: the definitions the fast code is
//! tested and benchmarked against. Not for production use.

use crate::image::InputGeometry;

use super::axis::reflect;
use super::smooth::gaussian_kernel;

/// PyTorch's bilinear resize (`align_corners=False`), straight from its definition: each
/// output pixel computes its own source position and reads four source pixels.
pub fn resize_bilinear_naive(src: &[f32], sh: usize, sw: usize, dh: usize, dw: usize) -> Vec<f64> {
    let src: Vec<f64> = src.iter().map(|&v| f64::from(v)).collect();
    resize_f64(&src, sh, sw, dh, dw)
}

fn resize_f64(src: &[f64], sh: usize, sw: usize, dh: usize, dw: usize) -> Vec<f64> {
    // torch: index = max(scale * (o + 0.5) - 0.5, 0); i0 = min(floor, n - 1);
    // i1 = i0 + (i0 < n - 1); lambda1 = index - i0.
    let tap = |o: usize, n_in: usize, n_out: usize| {
        if n_in == n_out {
            return (o, o, 0.0);
        }
        let s = ((o as f64 + 0.5) * n_in as f64 / n_out as f64 - 0.5).max(0.0);
        let i0 = (s.floor() as usize).min(n_in - 1);
        let i1 = if i0 < n_in - 1 { i0 + 1 } else { i0 };
        (i0, i1, (s - i0 as f64).clamp(0.0, 1.0))
    };
    let mut out = Vec::with_capacity(dh * dw);
    for y in 0..dh {
        let (y0, y1, ly) = tap(y, sh, dh);
        for x in 0..dw {
            let (x0, x1, lx) = tap(x, sw, dw);
            let at = |yy: usize, xx: usize| src[yy * sw + xx];
            out.push(
                (1.0 - ly) * ((1.0 - lx) * at(y0, x0) + lx * at(y0, x1))
                    + ly * ((1.0 - lx) * at(y1, x0) + lx * at(y1, x1)),
            );
        }
    }
    out
}

/// Direct 2D Gaussian convolution: every output pixel sums `(2r + 1)^2` mirrored
/// neighbours with the product kernel (radius and mirroring as [`super::gaussian_smooth`]).
pub fn gaussian_smooth_naive(map: &[f64], h: usize, w: usize, sigma: f32) -> Vec<f64> {
    let k = gaussian_kernel(sigma);
    let r = (k.len() / 2) as isize;
    let mut out = Vec::with_capacity(h * w);
    for y in 0..h as isize {
        for x in 0..w as isize {
            let mut acc = 0.0;
            for (ty, ky) in k.iter().enumerate() {
                let row = reflect(y + ty as isize - r, h) * w;
                for (tx, kx) in k.iter().enumerate() {
                    acc += ky * kx * map[row + reflect(x + tx as isize - r, w)];
                }
            }
            out.push(acc);
        }
    }
    out
}

/// The map at image size the obvious way: upsample the grid map to the whole input,
/// crop it to the image's rectangle, resize the crop to the image, smooth in 2D.
pub fn map_to_image_naive(
    grid: &[f32],
    gh: usize,
    gw: usize,
    geometry: &InputGeometry,
    sigma_px: f32,
) -> Vec<f64> {
    let g = geometry;
    let (ih, iw) = (g.input_height as usize, g.input_width as usize);
    let input = resize_bilinear_naive(grid, gh, gw, ih, iw);
    let r = g.rect;
    let mut crop = Vec::with_capacity((r.width * r.height) as usize);
    for y in r.y..r.y + r.height {
        let row = y as usize * iw;
        crop.extend_from_slice(&input[row + r.x as usize..row + (r.x + r.width) as usize]);
    }
    let (h, w) = (g.image_height as usize, g.image_width as usize);
    let image = resize_f64(&crop, r.height as usize, r.width as usize, h, w);
    if sigma_px == 0.0 {
        image
    } else {
        gaussian_smooth_naive(&image, h, w, sigma_px)
    }
}
