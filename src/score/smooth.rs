//! Gaussian smoothing of a map, separable, with half-sample symmetric reflection at the
//! borders.

use rayon::prelude::*;

use super::axis::reflect;
use crate::{Error, Result};

/// The default smoothing of the map at image size, in image pixels (the value the VarAD
/// paper and most anomaly-detection reference code use).
///
/// cbindgen:ignore
pub const DEFAULT_SIGMA_PX: f32 = 4.0;

/// The kernel radius for `sigma`: `ceil(4 * sigma)` taps on each side. Beyond 4 sigma the
/// Gaussian holds less than 1e-4 of its mass, below what an anomaly map can show.
pub fn kernel_radius(sigma: f32) -> usize {
    (4.0 * f64::from(sigma)).ceil() as usize
}

/// The widest smoothing accepted, in pixels. Far beyond any useful value (the map is flat
/// long before), it keeps a garbage argument from a C caller from turning into a kernel of
/// millions of taps.
///
/// cbindgen:ignore
pub const MAX_SIGMA_PX: f32 = 1000.0;

/// Checks that `sigma` is a usable smoothing width: finite, in `[0, MAX_SIGMA_PX]`.
pub(crate) fn check_sigma(sigma: f32) -> Result<()> {
    if (0.0..=MAX_SIGMA_PX).contains(&sigma) {
        Ok(())
    } else {
        Err(Error::invalid_argument(format!(
            "smoothing sigma {sigma} must be between 0 and {MAX_SIGMA_PX} pixels"
        )))
    }
}

/// The normalised Gaussian kernel for `sigma` (in samples), `2 * kernel_radius + 1` taps
/// summing to 1; `[1.0]` for `sigma == 0`. Weights are computed in f64 and normalised after
/// truncation, so a constant map stays exactly as constant as f32 allows.
pub(crate) fn gaussian_kernel(sigma: f32) -> Vec<f64> {
    let r = kernel_radius(sigma);
    if r == 0 || sigma == 0.0 {
        return vec![1.0];
    }
    let s = f64::from(sigma);
    let k: Vec<f64> = (0..=2 * r)
        .map(|i| {
            let d = i as f64 - r as f64;
            (-0.5 * d * d / (s * s)).exp()
        })
        .collect();
    let total: f64 = k.iter().sum();
    k.into_iter().map(|v| v / total).collect()
}

/// Smooths the row-major `height` x `width` `map` with a Gaussian of `sigma` pixels
/// (`0` returns a copy), radius [`kernel_radius`]; outside the map the values are mirrored
/// about its edges (`c b a | a b c`, the half-pixel mirror that matches pixel `i` covering
/// `[i, i + 1)`; scipy's `gaussian_filter` default). Along rows, then along columns, each
/// pass spread over the current rayon pool; the result does not depend on the thread count.
///
/// [`super::map_to_image`] folds this smoothing into its resampling instead and does not
/// call it; this is for maps that are already at their final size.
///
/// [`crate::ErrorKind::InvalidArgument`] if `map.len() != height * width` or `sigma` is
/// not in `[0, MAX_SIGMA_PX]`.
pub fn gaussian_smooth(map: &[f32], height: usize, width: usize, sigma: f32) -> Result<Vec<f32>> {
    check_sigma(sigma)?;
    if height.checked_mul(width) != Some(map.len()) {
        return Err(Error::invalid_argument(format!(
            "a {height} x {width} map needs {} values, got {}",
            height.saturating_mul(width),
            map.len()
        )));
    }
    if sigma == 0.0 || map.is_empty() {
        return Ok(map.to_vec());
    }
    let kernel: Vec<f32> = gaussian_kernel(sigma).iter().map(|&k| k as f32).collect();
    let r = kernel.len() / 2;

    // Along rows: mirror-pad each row, then one multiply-add per tap over the whole row, a
    // loop the compiler vectorises (unlike a per-pixel dot product).
    let mut across = vec![0.0f32; map.len()];
    across
        .par_chunks_mut(width)
        .zip(map.par_chunks(width))
        .for_each_init(Vec::new, |padded: &mut Vec<f32>, (dst, src)| {
            padded.clear();
            padded.extend((0..width + 2 * r).map(|i| src[reflect(i as isize - r as isize, width)]));
            dst.fill(0.0);
            for (t, &k) in kernel.iter().enumerate() {
                dst.iter_mut()
                    .zip(&padded[t..t + width])
                    .for_each(|(d, &s)| *d += k * s);
            }
        });

    // Across rows: each output row is the weighted sum of 2r + 1 mirrored input rows.
    let mut out = vec![0.0f32; map.len()];
    out.par_chunks_mut(width).enumerate().for_each(|(y, dst)| {
        dst.fill(0.0);
        for (t, &k) in kernel.iter().enumerate() {
            let sy = reflect(y as isize + t as isize - r as isize, height);
            dst.iter_mut()
                .zip(&across[sy * width..(sy + 1) * width])
                .for_each(|(d, &s)| *d += k * s);
        }
    });
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::score::reference::gaussian_smooth_naive;
    use crate::score::test_util::{max_abs_diff, noise};

    #[test]
    fn kernel_radius_and_normalisation() {
        assert_eq!(kernel_radius(4.0), 16);
        assert_eq!(kernel_radius(0.3), 2);
        assert_eq!(gaussian_kernel(0.0), vec![1.0]);
        let k = gaussian_kernel(4.0);
        assert_eq!(k.len(), 33);
        assert!((k.iter().sum::<f64>() - 1.0).abs() < 1e-12);
        assert_eq!(k[0], k[32]);
    }

    #[test]
    fn constant_stays_constant() {
        let map = vec![2.5f32; 13 * 7];
        let out = gaussian_smooth(&map, 13, 7, 4.0).unwrap();
        assert!(out.iter().all(|&v| (v - 2.5).abs() < 1e-5));
    }

    #[test]
    fn matches_direct_2d_convolution() {
        for (h, w, sigma) in [(23, 31, 1.5f32), (9, 5, 4.0), (1, 17, 2.0), (40, 3, 0.7)] {
            let map = noise(h * w, 7);
            let fast = gaussian_smooth(&map, h, w, sigma).unwrap();
            let slow = gaussian_smooth_naive(
                &map.iter().map(|&v| f64::from(v)).collect::<Vec<_>>(),
                h,
                w,
                sigma,
            );
            let d = max_abs_diff(&fast, &slow);
            assert!(d < 2e-6, "{h}x{w} sigma {sigma}: {d}");
        }
    }

    #[test]
    fn keeps_the_mass_of_a_blob_away_from_borders() {
        let (h, w) = (64, 64);
        let mut map = vec![0.0f32; h * w];
        map[32 * w + 30] = 1.0;
        map[30 * w + 33] = 3.0;
        let out = gaussian_smooth(&map, h, w, 3.0).unwrap();
        let sum: f64 = out.iter().map(|&v| f64::from(v)).sum();
        assert!((sum - 4.0).abs() < 1e-5, "{sum}");
        let peak = out.iter().cloned().fold(0.0f32, f32::max);
        assert!(peak < 3.0 / (2.0 * std::f32::consts::PI * 9.0) * 1.2);
    }

    #[test]
    fn thread_count_does_not_change_a_bit() {
        let map = noise(57 * 43, 4);
        let run = |threads| {
            rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap()
                .install(|| gaussian_smooth(&map, 57, 43, 3.0).unwrap())
        };
        let one = run(1);
        assert!(one
            .iter()
            .zip(run(2))
            .all(|(a, b)| a.to_bits() == b.to_bits()));
    }

    #[test]
    fn zero_sigma_copies_and_bad_input_is_refused() {
        let map = noise(12, 1);
        assert_eq!(gaussian_smooth(&map, 3, 4, 0.0).unwrap(), map);
        let kind = |r: Result<Vec<f32>>| r.unwrap_err().kind();
        assert_eq!(
            kind(gaussian_smooth(&map, 3, 5, 1.0)),
            crate::ErrorKind::InvalidArgument
        );
        assert_eq!(
            kind(gaussian_smooth(&map, 3, 4, -1.0)),
            crate::ErrorKind::InvalidArgument
        );
        assert_eq!(
            kind(gaussian_smooth(&map, 3, 4, f32::NAN)),
            crate::ErrorKind::InvalidArgument
        );
        assert_eq!(
            kind(gaussian_smooth(&map, 3, 4, MAX_SIGMA_PX * 2.0)),
            crate::ErrorKind::InvalidArgument
        );
    }
}
