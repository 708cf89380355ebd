//! The anomaly map at the image's own size: one resampling from the token grid straight to
//! the image pixels, with the Gaussian smoothing folded in.

use super::axis::{apply_separable, Axis};
use super::smooth::{check_sigma, gaussian_kernel};
use crate::image::InputGeometry;
use crate::{Error, Result};

/// The grid positions (in grid cells, torch's `align_corners=False` source index) that
/// the `n_image` pixel centres of one image axis sample; see [`map_to_image`].
pub(crate) fn grid_positions(
    n_image: u32,
    rect_start: u32,
    rect_len: u32,
    n_input: u32,
    n_grid: usize,
) -> Vec<f64> {
    let crop_scale = f64::from(rect_len) / f64::from(n_image);
    let grid_per_input = n_grid as f64 / f64::from(n_input);
    (0..n_image)
        .map(|i| {
            let crop =
                ((f64::from(i) + 0.5) * crop_scale - 0.5).clamp(0.0, f64::from(rect_len - 1));
            let input = f64::from(rect_start) + crop + 0.5;
            input * grid_per_input - 0.5
        })
        .collect()
}

/// The anomaly map on the image: `geometry.image_height` x `geometry.image_width`,
/// row-major, from the row-major `grid_h` x `grid_w` map `grid_map` that covers the whole
/// backbone input (each grid cell is `stride = input_width / grid_w` input pixels wide,
/// `input_height / grid_h` high), smoothed with a Gaussian of `sigma_px` image pixels
/// (`0` for none; [`super::DEFAULT_SIGMA_PX`] is the usual value).
///
/// Its meaning is the obvious pipeline: upsample the grid map to the input size (bilinear,
/// `align_corners=False`), crop it to `geometry.rect`, resize the crop to the image size
/// (bilinear, `align_corners=False`), then [`super::gaussian_smooth`]. It is computed
/// without any intermediate at input or image size; along each axis, image pixel `i`
/// samples the grid at
///
/// ```text
/// crop  = clamp((i + 0.5) * rect_len / image_len - 0.5, 0, rect_len - 1)   // crop pixel index
/// input = rect_start + crop + 0.5                                       // continuous input coordinate
/// grid  = input * grid_len / input_len - 0.5 = input / stride - 0.5     // grid index
/// ```
///
/// and interpolates linearly between grid cells `floor(grid)` and the next, with torch's
/// clamping (a negative `grid` reads cell 0, one past the last cell reads the last). The
/// clamp of `crop` is the crop-resize's own border clamp. This single sampling equals the
/// three-step pipeline wherever the upsampled map is linear between the two input pixels
/// around the sample; within one input pixel of a grid cell's centre it does not round
/// off the kink there, a difference of at most `|second difference of the grid| /
/// (4 * stride)` per axis.
///
/// Smoothing is separable with radius `ceil(4 * sigma_px)` and half-pixel mirroring at the
/// image borders (see [`super::gaussian_smooth`]); being linear and per axis, it is folded
/// into the per-axis sampling weights, computed once per axis in f64. Each image pixel
/// then costs a few multiply-adds whatever `sigma_px` is. The two passes are spread over
/// the current rayon pool (install a pool to bound the threads); the result is
/// bit-identical for any thread count.
///
/// [`crate::ErrorKind::InvalidArgument`] if `grid_map.len() != grid_h * grid_w`, a grid
/// side is zero, or `sigma_px` is not in `[0, super::MAX_SIGMA_PX]`.
pub fn map_to_image(
    grid_map: &[f32],
    grid_h: usize,
    grid_w: usize,
    geometry: &InputGeometry,
    sigma_px: f32,
) -> Result<Vec<f32>> {
    check_sigma(sigma_px)?;
    if grid_h == 0 || grid_w == 0 || grid_h.checked_mul(grid_w) != Some(grid_map.len()) {
        return Err(Error::invalid_argument(format!(
            "a {grid_h} x {grid_w} grid map needs {} values, got {}",
            grid_h.saturating_mul(grid_w),
            grid_map.len()
        )));
    }
    let g = geometry;
    let kernel = gaussian_kernel(sigma_px);
    let rows = Axis::from_positions(
        grid_h,
        &grid_positions(
            g.image_height,
            g.rect.y,
            g.rect.height,
            g.input_height,
            grid_h,
        ),
        &kernel,
    );
    let cols = Axis::from_positions(
        grid_w,
        &grid_positions(g.image_width, g.rect.x, g.rect.width, g.input_width, grid_w),
        &kernel,
    );
    Ok(apply_separable(grid_map, &rows, &cols))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::{InputSpec, ResizeMode};
    use crate::score::axis::linear_tap;
    use crate::score::reference::{gaussian_smooth_naive, map_to_image_naive};
    use crate::score::test_util::{max_abs_diff, noise};

    /// The documented formula, evaluated per pixel in 2D and in f64.
    fn composed_direct(grid: &[f32], gh: usize, gw: usize, g: &InputGeometry) -> Vec<f64> {
        let ys = grid_positions(g.image_height, g.rect.y, g.rect.height, g.input_height, gh);
        let xs = grid_positions(g.image_width, g.rect.x, g.rect.width, g.input_width, gw);
        let mut out = Vec::with_capacity(ys.len() * xs.len());
        for &sy in &ys {
            let (y0, ly) = linear_tap(sy, gh);
            let y1 = (y0 + 1).min(gh - 1);
            for &sx in &xs {
                let (x0, lx) = linear_tap(sx, gw);
                let x1 = (x0 + 1).min(gw - 1);
                let at = |y: usize, x: usize| f64::from(grid[y * gw + x]);
                out.push(
                    (1.0 - ly) * ((1.0 - lx) * at(y0, x0) + lx * at(y0, x1))
                        + ly * ((1.0 - lx) * at(y1, x0) + lx * at(y1, x1)),
                );
            }
        }
        out
    }

    /// The largest second difference of the grid along each axis, edges replicated (the
    /// kinks the composed sampling does not round off).
    fn second_differences(grid: &[f32], gh: usize, gw: usize) -> (f64, f64) {
        let at = |y: isize, x: isize| {
            f64::from(
                grid[y.clamp(0, gh as isize - 1) as usize * gw
                    + x.clamp(0, gw as isize - 1) as usize],
            )
        };
        let (mut dy, mut dx) = (0.0f64, 0.0f64);
        for y in -1..=gh as isize {
            for x in -1..=gw as isize {
                dx = dx.max((at(y, x - 1) - 2.0 * at(y, x) + at(y, x + 1)).abs());
                dy = dy.max((at(y - 1, x) - 2.0 * at(y, x) + at(y + 1, x)).abs());
            }
        }
        (dy, dx)
    }

    const CASES: [(u32, u32, u32, u32); 5] = [
        (37, 23, 64, 48), // image smaller than the input, odd sizes
        (51, 39, 32, 32), // larger than the input
        (29, 29, 24, 40), // square image in a tall input
        (13, 41, 24, 24), // tall: KeepAspect pads left and right
        (32, 24, 32, 24), // image size = input size
    ];

    fn geometries() -> Vec<(InputGeometry, usize, usize)> {
        let mut out = Vec::new();
        for (iw, ih, w, h) in CASES {
            for mode in [ResizeMode::Stretch, ResizeMode::KeepAspect] {
                let g = InputGeometry::new(iw, ih, &InputSpec::new(w, h).with_mode(mode));
                // Strides 8 and 4 (and 16 along one axis).
                out.push((g, (h / 8) as usize, (w / 4) as usize));
            }
        }
        out
    }

    #[test]
    fn equals_the_documented_formula() {
        for (i, (g, gh, gw)) in geometries().into_iter().enumerate() {
            let grid = noise(gh * gw, i as u32);
            let fast = map_to_image(&grid, gh, gw, &g, 0.0).unwrap();
            let d = max_abs_diff(&fast, &composed_direct(&grid, gh, gw, &g));
            assert!(d < 1e-6, "{g:?}: {d}");
        }
    }

    #[test]
    fn agrees_with_upsample_crop_resize_within_the_kink_bound() {
        for (i, (g, gh, gw)) in geometries().into_iter().enumerate() {
            let grid = noise(gh * gw, 100 + i as u32);
            let (d2y, d2x) = second_differences(&grid, gh, gw);
            let stride_y = f64::from(g.input_height) / gh as f64;
            let stride_x = f64::from(g.input_width) / gw as f64;
            let bound = d2y / (4.0 * stride_y) + d2x / (4.0 * stride_x) + 1e-6;
            for sigma in [0.0f32, 2.5] {
                let fast = map_to_image(&grid, gh, gw, &g, sigma).unwrap();
                let slow = map_to_image_naive(&grid, gh, gw, &g, sigma);
                let d = max_abs_diff(&fast, &slow);
                assert!(d <= bound, "{g:?} sigma {sigma}: {d} > {bound}");
            }
        }
    }

    #[test]
    fn smoothing_is_folded_in_exactly() {
        for (i, (g, gh, gw)) in geometries().into_iter().enumerate() {
            let grid = noise(gh * gw, 200 + i as u32);
            let (h, w) = (g.image_height as usize, g.image_width as usize);
            let wide = if i == 3 { 12.0 } else { 4.0 }; // wider than the image
            for sigma in [0.6f32, wide] {
                let fast = map_to_image(&grid, gh, gw, &g, sigma).unwrap();
                let slow = gaussian_smooth_naive(&composed_direct(&grid, gh, gw, &g), h, w, sigma);
                let d = max_abs_diff(&fast, &slow);
                assert!(d < 2e-6, "{g:?} sigma {sigma}: {d}");
            }
        }
    }

    #[test]
    fn a_smooth_grid_matches_the_pipeline_closely() {
        // A ramp along y has no kinks inside the grid, only at the clamped borders, and
        // KeepAspect padding keeps the sampled rows away from them; along x it is constant.
        let g = InputGeometry::new(
            300,
            100,
            &InputSpec::new(64, 64).with_mode(ResizeMode::KeepAspect),
        );
        let (gh, gw) = (16, 16);
        let grid: Vec<f32> = (0..gh * gw).map(|i| (i / gw) as f32 * 0.25).collect();
        let fast = map_to_image(&grid, gh, gw, &g, 0.0).unwrap();
        let slow = map_to_image_naive(&grid, gh, gw, &g, 0.0);
        assert!(max_abs_diff(&fast, &slow) < 1e-5);
    }

    #[test]
    fn thread_count_does_not_change_a_bit() {
        let g = InputGeometry::new(333, 211, &InputSpec::new(112, 98));
        let grid = noise(7 * 8, 5);
        let run = |threads| {
            rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap()
                .install(|| map_to_image(&grid, 7, 8, &g, 4.0).unwrap())
        };
        let one = run(1);
        assert_eq!(one.len(), 333 * 211);
        assert!(one
            .iter()
            .zip(run(2))
            .all(|(a, b)| a.to_bits() == b.to_bits()));
    }

    #[test]
    fn bad_input_is_refused() {
        let g = InputGeometry::new(10, 10, &InputSpec::new(16, 16));
        let kind = |r: Result<Vec<f32>>| r.unwrap_err().kind();
        assert_eq!(
            kind(map_to_image(&[0.0; 15], 4, 4, &g, 1.0)),
            crate::ErrorKind::InvalidArgument
        );
        assert_eq!(
            kind(map_to_image(&[], 0, 4, &g, 1.0)),
            crate::ErrorKind::InvalidArgument
        );
        assert_eq!(
            kind(map_to_image(&[0.0; 16], 4, 4, &g, -1.0)),
            crate::ErrorKind::InvalidArgument
        );
    }
}
