//! An image view to the backbone's input tensor: RGB f32 in [0, 1], planar CHW, resized.

use rayon::prelude::*;

use super::convert::{grey_row, plane_count, rgb_row};
use super::resize::AxisWeights;
use super::{ImageView, InputGeometry, InputRect, InputSpec, PAD_VALUE};
use crate::{Error, Result};

/// Converts `view` to one backbone input `[3, spec.height, spec.width]` (planes R, G, B,
/// rows top to bottom) in `out`, and says where the image landed.
///
/// Samples become f32 in [0, 1] (8-bit divided by 255, Mono16 by 65535); grey is
/// replicated to R, G and B; BGR is reordered; alpha is ignored. Each axis is resized on
/// its own: area averaging (exact box filter) where it shrinks, bilinear with half-pixel
/// centres where it grows, an exact copy where it keeps its size. Pixels outside the
/// image (only with [`super::ResizeMode::KeepAspect`]) are [`PAD_VALUE`].
///
/// `out` must hold exactly [`InputSpec::buffer_len`] values; to fill one image of a batch
/// `[B, 3, H, W]`, pass its chunk. Work is spread over the current rayon pool.
///
/// Errors, checked before anything is written to `out`:
/// [`crate::ErrorKind::ImageTooLarge`] if the view exceeds `spec.limits`,
/// [`crate::ErrorKind::InvalidArgument`] for a zero input size or an `out` of the wrong
/// length.
pub fn to_backbone_input(
    view: &ImageView,
    spec: &InputSpec,
    out: &mut [f32],
) -> Result<InputGeometry> {
    view.check_limits(&spec.limits)?;
    let len = spec.buffer_len()?;
    if out.len() != len {
        return Err(Error::invalid_argument(format!(
            "output buffer holds {} values; a {} x {} input needs 3 x {} x {} = {len}",
            out.len(),
            spec.width,
            spec.height,
            spec.height,
            spec.width
        )));
    }
    let geometry = InputGeometry::new(view.width(), view.height(), spec);
    let resampler = Resampler::new(view, &geometry);
    let width = spec.width as usize;
    let plane_len = width * spec.height as usize;
    let (r_plane, gb) = out.split_at_mut(plane_len);
    let (g_plane, b_plane) = gb.split_at_mut(plane_len);
    let band_len = BAND_ROWS * width;
    r_plane
        .par_chunks_mut(band_len)
        .zip(g_plane.par_chunks_mut(band_len))
        .zip(b_plane.par_chunks_mut(band_len))
        .enumerate()
        .for_each_init(Scratch::default, |scratch, (band, ((r, g), b))| {
            resampler.band(band * BAND_ROWS, [r, g, b], scratch);
        });
    Ok(geometry)
}

/// Output rows per parallel task. Each band resizes horizontally just the image rows it
/// needs, into a buffer small enough to stay in cache (about half a MiB for an RGB camera
/// frame to 1024 x 1024), instead of one image-sized intermediate; the rows a band shares with its
/// neighbour (the filter's overlap, 1 or 2 of the 30-odd a band reads when shrinking a
/// camera frame to 1024) are the price, and it is small at 16.
const BAND_ROWS: usize = 16;

/// Buffers one thread reuses from band to band.
#[derive(Default)]
struct Scratch {
    /// The band's image rows after the horizontal pass, planar.
    resized: Vec<f32>,
    /// One converted grey row.
    grey: Vec<f32>,
    /// One converted colour row.
    rgb: Vec<[f32; 4]>,
}

/// Everything one call needs to compute any band of the output: read-only, shared by
/// the tasks.
struct Resampler<'v, 'a> {
    view: &'v ImageView<'a>,
    rect: InputRect,
    input_width: usize,
    planes: usize,
    weights_x: AxisWeights,
    weights_y: AxisWeights,
}

impl<'v, 'a> Resampler<'v, 'a> {
    fn new(view: &'v ImageView<'a>, geometry: &InputGeometry) -> Self {
        let rect = geometry.rect;
        Resampler {
            view,
            rect,
            input_width: geometry.input_width as usize,
            planes: plane_count(view.format()),
            weights_x: AxisWeights::new(view.width() as usize, rect.width as usize),
            weights_y: AxisWeights::new(view.height() as usize, rect.height as usize),
        }
    }

    /// Fills output rows `first..` (as many as `dst`'s planes hold) of the R, G, B
    /// planes; `scratch` is reused between the bands one thread computes.
    fn band(&self, first: usize, dst: [&mut [f32]; 3], scratch: &mut Scratch) {
        let (w, rw) = (self.view.width() as usize, self.rect.width as usize);
        let (rx, ry) = (self.rect.x as usize, self.rect.y as usize);
        let planes = self.planes;
        let input_width = self.input_width;
        let rows = dst[0].len() / input_width;
        // The band's rows that show the image, as rows of the rectangle.
        let inside = first.max(ry)..(first + rows).min(ry + self.weights_y.len());
        let [r, g, b] = dst;
        let mut dst_rows = [
            r.chunks_exact_mut(input_width),
            g.chunks_exact_mut(input_width),
            b.chunks_exact_mut(input_width),
        ];
        if inside.is_empty() {
            for plane in dst_rows.iter_mut() {
                plane.for_each(|row| row.fill(PAD_VALUE));
            }
            return;
        }
        let (o_first, o_last) = (inside.start - ry, inside.end - 1 - ry);
        let taps = self.weights_y.taps;
        let lo = self.weights_y.starts[o_first];
        let hi = self.weights_y.starts[o_last] + taps;

        // Horizontal pass over the image rows lo..hi, converted one at a time; stored as
        // `planes` consecutive rows of `rw` samples per image row.
        let Scratch { resized, grey, rgb } = scratch;
        resized.resize((hi - lo) * planes * rw, 0.0);
        let format = self.view.format();
        for (i, dst) in (lo..hi).zip(resized.chunks_exact_mut(planes * rw)) {
            let src = self.view.row(i as u32);
            if planes == 1 {
                grey.resize(w, 0.0);
                grey_row(format, src, grey);
                self.weights_x.apply_row(grey, |o, v| dst[o] = v);
            } else {
                rgb.resize(w, [0.0; 4]);
                rgb_row(format, src, rgb);
                let (r, gb) = dst.split_at_mut(rw);
                let (g, b) = gb.split_at_mut(rw);
                self.weights_x.apply_row(rgb, |o, [vr, vg, vb, _]| {
                    r[o] = vr;
                    g[o] = vg;
                    b[o] = vb;
                });
            }
        }
        let resized = &resized[..];

        // Vertical pass, row by row; grey is computed once and copied to G and B.
        for y in first..first + rows {
            let mut row = dst_rows.each_mut().map(|p| p.next().expect("band row"));
            if !inside.contains(&y) {
                row.iter_mut().for_each(|r| r.fill(PAD_VALUE));
                continue;
            }
            for r in row.iter_mut() {
                r[..rx].fill(PAD_VALUE);
                r[rx + rw..].fill(PAD_VALUE);
            }
            for (c, dst) in row.iter_mut().take(planes).enumerate() {
                let plane_row = |i: usize| &resized[((i - lo) * planes + c) * rw..][..rw];
                self.weights_y
                    .apply_column(y - ry, plane_row, &mut dst[rx..rx + rw]);
                // The filters are convex combinations of samples in [0, 1], but their
                // weights are rounded to f32, so a white area can come out a few ulps
                // above 1 (fuzzing found 1.0000001 for 7 white pixels shrunk to 4):
                // the contract is [0, 1], so the rounding is clamped away.
                for v in &mut dst[rx..rx + rw] {
                    *v = v.clamp(0.0, 1.0);
                }
            }
            if planes == 1 {
                let [r, g, b] = row;
                g[rx..rx + rw].copy_from_slice(&r[rx..rx + rw]);
                b[rx..rx + rw].copy_from_slice(&r[rx..rx + rw]);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::reference::to_backbone_input_naive;
    use super::super::{ImageLimits, PixelFormat, ResizeMode};
    use super::*;
    use crate::ErrorKind;

    /// Deterministic noise (xorshift), so failures reproduce without a rand crate.
    fn noise(len: usize, seed: u64) -> Vec<u8> {
        let mut s = seed | 1;
        (0..len)
            .map(|_| {
                s ^= s << 13;
                s ^= s >> 7;
                s ^= s << 17;
                (s >> 24) as u8
            })
            .collect()
    }

    fn run(view: &ImageView, spec: &InputSpec) -> (Vec<f32>, InputGeometry) {
        let mut out = vec![f32::NAN; spec.buffer_len().unwrap()];
        let g = to_backbone_input(view, spec, &mut out).unwrap();
        (out, g)
    }

    fn assert_close(got: &[f32], want: &[f32], tol: f32, what: &str) {
        assert_eq!(got.len(), want.len());
        for (i, (g, w)) in got.iter().zip(want).enumerate() {
            assert!((g - w).abs() <= tol, "{what}: index {i}: {g} vs {w}");
        }
    }

    /// Compares the fast path with the slow twin on a random image with row padding.
    fn check_against_twin(format: PixelFormat, w: u32, h: u32, spec: InputSpec, seed: u64) {
        let pad = 5;
        let stride = w as usize * format.bytes_per_pixel() + pad;
        let data = noise(stride * h as usize, seed);
        let view = ImageView::new(&data, w, h, stride, format).unwrap();
        let (got, g) = run(&view, &spec);
        let mut want = vec![0.0; got.len()];
        let g2 = to_backbone_input_naive(&view, &spec, &mut want).unwrap();
        assert_eq!(g, g2);
        let what = format!(
            "{format} {w}x{h} -> {}x{} {:?}",
            spec.width, spec.height, spec.mode
        );
        assert_close(&got, &want, 2e-6, &what);
    }

    #[test]
    fn matches_twin_on_odd_sizes_and_every_format() {
        let cases = [
            (37, 23, 16, 16),  // shrink both axes, fractional coverage
            (10, 10, 33, 7),   // enlarge x, shrink y
            (7, 40, 30, 9),    // enlarge x, shrink y, tall source
            (40, 7, 9, 30),    // shrink x, enlarge y
            (5, 3, 11, 13),    // enlarge both
            (1, 9, 4, 4),      // one column
            (9, 1, 3, 5),      // one row
            (13, 11, 13, 11),  // identity
            (100, 30, 40, 40), // KeepAspect: the image starts and ends inside a band
            (30, 100, 37, 50), // several bands, odd width
        ];
        for (i, (w, h, iw, ih)) in cases.into_iter().enumerate() {
            for (j, format) in PixelFormat::ALL.into_iter().enumerate() {
                for mode in [ResizeMode::Stretch, ResizeMode::KeepAspect] {
                    let spec = InputSpec::new(iw, ih).with_mode(mode);
                    check_against_twin(format, w, h, spec, (i * 10 + j) as u64 + 1);
                }
            }
        }
    }

    #[test]
    fn matches_twin_on_a_camera_frame() {
        check_against_twin(PixelFormat::Rgb8, 2448, 2048, InputSpec::new(64, 64), 99);
    }

    #[test]
    fn identity_is_the_exact_conversion_of_every_format() {
        // Two pixels of 3 x 2, each row followed by 3 padding bytes; values chosen so every
        // channel differs.
        let (w, h) = (3u32, 2u32);
        let spec = InputSpec::new(w, h);
        let px: [[u8; 3]; 6] = [
            [0, 10, 20],
            [255, 128, 1],
            [7, 200, 99],
            [30, 40, 50],
            [60, 70, 80],
            [90, 100, 110],
        ];
        let rgb_want: Vec<f32> = (0..3)
            .flat_map(|c| px.iter().map(move |p| f32::from(p[c]) / 255.0))
            .collect();
        let grey_want: Vec<f32> = (0..3)
            .flat_map(|_| px.iter().map(|p| f32::from(p[0]) / 255.0))
            .collect();
        for format in PixelFormat::ALL {
            let bpp = format.bytes_per_pixel();
            let stride = w as usize * bpp + 3;
            // One leading byte, so Mono16 samples sit at odd addresses.
            let mut buf = vec![0xAB; 1 + stride * h as usize];
            for (i, p) in px.iter().enumerate() {
                let at = 1 + (i / 3) * stride + (i % 3) * bpp;
                let bytes: Vec<u8> = match format {
                    PixelFormat::Mono8 => vec![p[0]],
                    PixelFormat::Mono16 => (u16::from(p[0]) * 257).to_ne_bytes().to_vec(),
                    PixelFormat::Rgb8 => p.to_vec(),
                    PixelFormat::Bgr8 => vec![p[2], p[1], p[0]],
                    PixelFormat::Rgba8 => vec![p[0], p[1], p[2], 33],
                    PixelFormat::Bgra8 => vec![p[2], p[1], p[0], 33],
                };
                buf[at..at + bpp].copy_from_slice(&bytes);
            }
            let view = ImageView::new(&buf[1..], w, h, stride, format).unwrap();
            let (got, g) = run(&view, &spec);
            let want = if format.is_mono() {
                &grey_want
            } else {
                &rgb_want
            };
            // 257 * v / 65535 == v / 255 exactly, so Mono16 meets the same values.
            assert_eq!(&got, want, "{format}");
            assert_eq!((g.scale_x, g.scale_y), (1.0, 1.0));
        }
    }

    #[test]
    fn constant_images_stay_constant() {
        for (w, h, iw, ih) in [
            (37, 23, 16, 16),
            (10, 10, 33, 7),
            (3, 3, 64, 64),
            (300, 2, 7, 9),
        ] {
            let data = vec![77u8; (w * h * 3) as usize];
            let view = ImageView::packed(&data, w, h, PixelFormat::Bgr8).unwrap();
            let (out, _) = run(&view, &InputSpec::new(iw, ih));
            assert_close(&out, &vec![77.0 / 255.0; out.len()], 1e-6, "constant");
        }
    }

    #[test]
    fn keep_aspect_pads_with_grey_outside_the_rect() {
        let data = vec![255u8; 40 * 10];
        let view = ImageView::packed(&data, 40, 10, PixelFormat::Mono8).unwrap();
        let spec = InputSpec::new(16, 16).with_mode(ResizeMode::KeepAspect);
        let (out, g) = run(&view, &spec);
        let r = g.input_rect_for_image();
        assert_eq!((r.x, r.y, r.width, r.height), (0, 6, 16, 4));
        for c in 0..3 {
            for y in 0..16 {
                for x in 0..16 {
                    let v = out[(c * 16 + y) * 16 + x];
                    let inside = (6..10).contains(&y);
                    assert_eq!(v, if inside { 1.0 } else { PAD_VALUE }, "c{c} ({x},{y})");
                }
            }
        }
    }

    #[test]
    fn bad_arguments_fail_before_writing() {
        let data = vec![1u8; 64];
        let view = ImageView::packed(&data, 8, 8, PixelFormat::Mono8).unwrap();
        let sentinel = -7.0f32;
        let cases: [(InputSpec, usize, ErrorKind); 4] = [
            (InputSpec::new(4, 4), 47, ErrorKind::InvalidArgument),
            (InputSpec::new(4, 4), 49, ErrorKind::InvalidArgument),
            (InputSpec::new(0, 4), 0, ErrorKind::InvalidArgument),
            (
                InputSpec {
                    limits: ImageLimits { max_pixels: 63 },
                    ..InputSpec::new(4, 4)
                },
                48,
                ErrorKind::ImageTooLarge,
            ),
        ];
        for (spec, len, kind) in cases {
            let mut out = vec![sentinel; len];
            let e = to_backbone_input(&view, &spec, &mut out).unwrap_err();
            assert_eq!(e.kind(), kind, "{e}");
            assert!(out.iter().all(|&v| v == sentinel));
        }
    }

    #[test]
    fn same_result_with_any_thread_count() {
        let data = noise(123 * 45 * 3, 5);
        let view = ImageView::packed(&data, 123, 45, PixelFormat::Rgb8).unwrap();
        let spec = InputSpec::new(32, 64);
        let one = rayon::ThreadPoolBuilder::new()
            .num_threads(1)
            .build()
            .unwrap();
        let (a, _) = one.install(|| run(&view, &spec));
        let (b, _) = run(&view, &spec);
        assert_eq!(a, b);
    }

    #[test]
    fn fills_one_image_of_a_batch() {
        let data = vec![0u8; 20];
        let view = ImageView::packed(&data, 5, 4, PixelFormat::Mono8).unwrap();
        let spec = InputSpec::new(2, 2);
        let mut batch = vec![9.0f32; 2 * spec.buffer_len().unwrap()];
        let (first, second) = batch.split_at_mut(12);
        to_backbone_input(&view, &spec, second).unwrap();
        assert!(first.iter().all(|&v| v == 9.0));
        assert!(second.iter().all(|&v| v == 0.0));
    }
}
