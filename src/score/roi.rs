//! The region of interest: which image pixels are inspected.

use crate::{Error, Result};

/// Checks that `roi`, if given, is a mask of `width * height` bytes (row-major, nonzero =
/// inspect) that selects at least one pixel.
///
/// [`crate::ErrorKind::InvalidArgument`] otherwise: a mask of the wrong size means the
/// caller paired it with another image, and an empty one would leave nothing to score.
pub fn check_roi(roi: Option<&[u8]>, width: usize, height: usize) -> Result<()> {
    let Some(roi) = roi else {
        return Ok(());
    };
    if width.checked_mul(height) != Some(roi.len()) {
        return Err(Error::invalid_argument(format!(
            "the ROI mask has {} bytes, the {width} x {height} image needs {}",
            roi.len(),
            width.saturating_mul(height)
        )));
    }
    if roi.iter().all(|&m| m == 0) {
        return Err(Error::invalid_argument(
            "the ROI mask selects no pixel (all zero)",
        ));
    }
    Ok(())
}

/// Whether pixel `i` is inspected.
#[inline]
pub(crate) fn inside(roi: Option<&[u8]>, i: usize) -> bool {
    roi.is_none_or(|m| m[i] != 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_emptiness() {
        assert!(check_roi(None, 3, 2).is_ok());
        assert!(check_roi(Some(&[0, 0, 1, 0, 0, 0]), 3, 2).is_ok());
        let kind = |r: Result<()>| r.unwrap_err().kind();
        assert_eq!(
            kind(check_roi(Some(&[1; 5]), 3, 2)),
            crate::ErrorKind::InvalidArgument
        );
        assert_eq!(
            kind(check_roi(Some(&[0; 6]), 3, 2)),
            crate::ErrorKind::InvalidArgument
        );
        assert!(inside(None, 4) && inside(Some(&[0, 7]), 1) && !inside(Some(&[0, 7]), 0));
    }
}
