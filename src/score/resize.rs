//! Bilinear resizing of a map between token grids, as PyTorch does it.

use super::axis::{apply_separable, Axis};
use crate::{Error, Result};

/// Resizes the row-major `src_h` x `src_w` map `src` to `dst_h` x `dst_w` exactly as
/// PyTorch's `F.interpolate(mode="bilinear", align_corners=False)` (no antialiasing).
///
/// Output pixel `(y, x)` samples the source at `sy = (y + 0.5) * src_h / dst_h - 0.5`
/// (and likewise `sx`), the half-pixel-centre convention; like torch, a negative `sy` is
/// clamped to 0 and a position past the last row takes the last row, so the border rows
/// and columns replicate. Equal sizes give a copy. The weights are computed in f64 once
/// per axis and the result agrees with torch to f32 rounding (about 1e-7 relative).
///
/// This brings a coarser level's map onto the finest token grid (DESIGN.md, "Map").
///
/// [`crate::ErrorKind::InvalidArgument`] if a size is zero or `src.len() != src_h * src_w`.
pub fn resize_bilinear(
    src: &[f32],
    src_h: usize,
    src_w: usize,
    dst_h: usize,
    dst_w: usize,
) -> Result<Vec<f32>> {
    if src_h == 0 || src_w == 0 || dst_h == 0 || dst_w == 0 {
        return Err(Error::invalid_argument(format!(
            "cannot resize a {src_h} x {src_w} map to {dst_h} x {dst_w}: a side is zero"
        )));
    }
    if src_h.checked_mul(src_w) != Some(src.len()) {
        return Err(Error::invalid_argument(format!(
            "a {src_h} x {src_w} map needs {} values, got {}",
            src_h.saturating_mul(src_w),
            src.len()
        )));
    }
    Ok(apply_separable(
        src,
        &Axis::bilinear(src_h, dst_h),
        &Axis::bilinear(src_w, dst_w),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::score::reference::resize_bilinear_naive;
    use crate::score::test_util::{max_abs_diff, noise};

    #[test]
    fn torch_2x2_to_4x4() {
        // torch.nn.functional.interpolate(torch.tensor([[[[1., 2.], [3., 4.]]]]),
        // size=(4, 4), mode="bilinear", align_corners=False): sources at -0.25 (clamped
        // to 0), 0.25, 0.75, 1.25 (past the last sample) along each axis.
        let out = resize_bilinear(&[1.0, 2.0, 3.0, 4.0], 2, 2, 4, 4).unwrap();
        #[rustfmt::skip]
        let want = [
            1.0, 1.25, 1.75, 2.0,
            1.5, 1.75, 2.25, 2.5,
            2.5, 2.75, 3.25, 3.5,
            3.0, 3.25, 3.75, 4.0,
        ];
        assert_eq!(out, want);
    }

    #[test]
    fn torch_3_to_2_and_1_to_3() {
        // Shrinking 1x3 -> 1x2: sources at 0.25 and 1.75.
        let out = resize_bilinear(&[0.0, 4.0, 8.0], 1, 3, 1, 2).unwrap();
        assert_eq!(out, [1.0, 7.0]);
        // A single sample replicates.
        let out = resize_bilinear(&[5.0], 1, 1, 2, 3).unwrap();
        assert_eq!(out, [5.0; 6]);
    }

    #[test]
    fn matches_the_direct_formula_on_odd_sizes() {
        for (sh, sw, dh, dw) in [(7, 5, 13, 29), (13, 29, 7, 5), (5, 9, 5, 31), (3, 1, 8, 2)] {
            let src = noise(sh * sw, 3);
            let fast = resize_bilinear(&src, sh, sw, dh, dw).unwrap();
            let slow = resize_bilinear_naive(&src, sh, sw, dh, dw);
            let d = max_abs_diff(&fast, &slow);
            assert!(d < 1e-6, "{sh}x{sw} -> {dh}x{dw}: {d}");
        }
    }

    #[test]
    fn equal_size_is_a_copy_and_bad_sizes_are_refused() {
        let src = noise(35, 9);
        assert_eq!(resize_bilinear(&src, 5, 7, 5, 7).unwrap(), src);
        let kind = |r: Result<Vec<f32>>| r.unwrap_err().kind();
        assert_eq!(
            kind(resize_bilinear(&src, 5, 6, 4, 4)),
            crate::ErrorKind::InvalidArgument
        );
        assert_eq!(
            kind(resize_bilinear(&src, 5, 7, 0, 4)),
            crate::ErrorKind::InvalidArgument
        );
    }
}
