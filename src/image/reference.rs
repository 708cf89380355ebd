//! The slow, obvious definition of [`super::to_backbone_input`], pixel by pixel in f64.
//!
//! It exists to be compared with: the fast path is tested against it, and the bench uses
//! it as the naive baseline. It shares nothing with the fast path but the geometry.

use super::{ImageView, InputGeometry, InputSpec, PixelFormat, PAD_VALUE};
use crate::{Error, Result};

/// The RGB value in [0, 1] of pixel `(x, y)`, read straight from the bytes.
fn pixel(view: &ImageView, x: usize, y: usize) -> [f64; 3] {
    let p = &view.data()[y * view.stride() + x * view.format().bytes_per_pixel()..];
    let c = |i: usize| f64::from(p[i]) / 255.0;
    match view.format() {
        PixelFormat::Mono8 => [c(0); 3],
        PixelFormat::Mono16 => [f64::from(u16::from_ne_bytes([p[0], p[1]])) / 65535.0; 3],
        PixelFormat::Rgb8 | PixelFormat::Rgba8 => [c(0), c(1), c(2)],
        PixelFormat::Bgr8 | PixelFormat::Bgra8 => [c(2), c(1), c(0)],
    }
}

/// Input samples and their weights for output sample `o` of an `n_in` -> `n_out` resize.
fn taps(o: usize, n_in: usize, n_out: usize) -> Vec<(usize, f64)> {
    let (o, n_in_f, n_out_f) = (o as f64, n_in as f64, n_out as f64);
    if n_in > n_out {
        // The output sample is the mean of the input over its footprint [a, b).
        let (a, b) = (o * n_in_f / n_out_f, (o + 1.0) * n_in_f / n_out_f);
        (a.floor() as usize..(b.ceil() as usize).min(n_in))
            .filter_map(|i| {
                let overlap = b.min(i as f64 + 1.0) - a.max(i as f64);
                (overlap > 0.0).then_some((i, overlap / (b - a)))
            })
            .collect()
    } else {
        // Bilinear at the output centre's position, half-pixel convention, clamped.
        let s = ((o + 0.5) * n_in_f / n_out_f - 0.5).clamp(0.0, n_in_f - 1.0);
        let i0 = s.floor() as usize;
        let i1 = (i0 + 1).min(n_in - 1);
        vec![(i0, 1.0 - (s - i0 as f64)), (i1, s - i0 as f64)]
    }
}

/// Same contract and result as [`super::to_backbone_input`] (up to f32 rounding), about
/// a hundred times slower. Not for production use.
pub fn to_backbone_input_naive(
    view: &ImageView,
    spec: &InputSpec,
    out: &mut [f32],
) -> Result<InputGeometry> {
    view.check_limits(&spec.limits)?;
    if out.len() != spec.buffer_len()? {
        return Err(Error::invalid_argument(
            "output buffer has the wrong length",
        ));
    }
    let g = InputGeometry::new(view.width(), view.height(), spec);
    let (w, h) = (spec.width as usize, spec.height as usize);
    let r = g.rect;
    let (x0, y0) = (r.x as usize, r.y as usize);
    for y in 0..h {
        for x in 0..w {
            let inside = (x0..x0 + r.width as usize).contains(&x)
                && (y0..y0 + r.height as usize).contains(&y);
            let mut rgb = [f64::from(PAD_VALUE); 3];
            if inside {
                rgb = [0.0; 3];
                let taps_x = taps(x - x0, view.width() as usize, r.width as usize);
                for (iy, wy) in taps(y - y0, view.height() as usize, r.height as usize) {
                    for &(ix, wx) in &taps_x {
                        let p = pixel(view, ix, iy);
                        for c in 0..3 {
                            rgb[c] += wx * wy * p[c];
                        }
                    }
                }
            }
            for (c, v) in rgb.iter().enumerate() {
                out[(c * h + y) * w + x] = *v as f32;
            }
        }
    }
    Ok(g)
}
