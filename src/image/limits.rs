//! The largest image the library agrees to work on.

use crate::{Error, ErrorKind, Result};

/// Bounds on the size of images the library accepts, from a view or from a file.
///
/// The limit exists so that a corrupt header or a wrong width/height passed through the C
/// ABI fails with a clear [`ErrorKind::ImageTooLarge`] instead of an allocation of
/// gigabytes or a read far past the caller's buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ImageLimits {
    /// The most pixels (`width * height`) an image may have. Default
    /// [`ImageLimits::DEFAULT_MAX_PIXELS`].
    pub max_pixels: u64,
}

impl ImageLimits {
    /// 2^28 = 268,435,456 pixels, 16384 x 16384.
    ///
    /// Why this value: it is above every area-scan sensor on the market (the largest are
    /// about 150 to 250 megapixels, e.g. 14192 x 10640 and 19200 x 12800), so no real
    /// camera frame is refused, while the worst decoded file it admits (16-bit RGBA,
    /// 8 bytes a pixel) stays at 2 GiB, which an inspection PC can hold. Line-scan
    /// images longer than that should be tiled by the caller, or the limit raised.
    pub const DEFAULT_MAX_PIXELS: u64 = 1 << 28;

    /// Checks a `width` x `height` image against the limit.
    ///
    /// The error is [`ErrorKind::ImageTooLarge`] and names the size and the limit.
    pub fn check(&self, width: u32, height: u32) -> Result<()> {
        let pixels = u64::from(width) * u64::from(height);
        if pixels > self.max_pixels {
            return Err(Error::new(
                ErrorKind::ImageTooLarge,
                format!(
                    "image of {width} x {height} = {pixels} pixels is larger than the limit of \
                     {} pixels",
                    self.max_pixels
                ),
            ));
        }
        Ok(())
    }
}

impl Default for ImageLimits {
    fn default() -> Self {
        ImageLimits {
            max_pixels: Self::DEFAULT_MAX_PIXELS,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_admits_16384_squared_and_not_one_row_more() {
        let l = ImageLimits::default();
        assert_eq!(l.max_pixels, 268_435_456);
        l.check(16384, 16384).unwrap();
        l.check(2448, 2048).unwrap();
        let e = l.check(16384, 16385).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::ImageTooLarge);
        assert!(e.message().contains("16384 x 16385"), "{e}");
        assert!(e.message().contains("268435456"), "{e}");
    }

    #[test]
    fn huge_dimensions_do_not_overflow() {
        let e = ImageLimits::default()
            .check(u32::MAX, u32::MAX)
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::ImageTooLarge);
    }

    #[test]
    fn custom_limit() {
        let l = ImageLimits { max_pixels: 100 };
        l.check(10, 10).unwrap();
        assert_eq!(
            l.check(11, 10).unwrap_err().kind(),
            ErrorKind::ImageTooLarge
        );
    }
}
