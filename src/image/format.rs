//! Pixel formats, with the numeric codes the C ABI uses for them.

use crate::{Error, ErrorKind, Result};

/// How the pixels of an image are laid out in memory.
///
/// The discriminants are part of the C ABI (`VARAD_PIXEL_FORMAT_*`): they are never
/// reused or renumbered, and 0 is deliberately not a format so that a zero-initialised
/// C struct is rejected instead of being read as some image.
///
/// Alpha channels are accepted so that RGBA/BGRA camera and display buffers can be
/// passed without copying, and ignored: the backbone sees only colour.
#[repr(u32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PixelFormat {
    /// One 8-bit grey sample per pixel.
    Mono8 = 1,
    /// One 16-bit grey sample per pixel, in the machine's native byte order (the order a
    /// camera SDK or `uint16_t*` hands over on the same machine). The data need not be
    /// 2-byte aligned.
    Mono16 = 2,
    /// 8-bit red, green, blue.
    Rgb8 = 3,
    /// 8-bit blue, green, red (OpenCV's and most Windows SDKs' order).
    Bgr8 = 4,
    /// 8-bit red, green, blue, alpha; alpha is ignored.
    Rgba8 = 5,
    /// 8-bit blue, green, red, alpha; alpha is ignored.
    Bgra8 = 6,
}

impl PixelFormat {
    /// Every format, in code order.
    pub const ALL: [PixelFormat; 6] = [
        PixelFormat::Mono8,
        PixelFormat::Mono16,
        PixelFormat::Rgb8,
        PixelFormat::Bgr8,
        PixelFormat::Rgba8,
        PixelFormat::Bgra8,
    ];

    /// The format with C ABI code `code`, or an [`ErrorKind::InvalidImage`] error that
    /// names the code and the valid ones.
    pub fn from_u32(code: u32) -> Result<Self> {
        Self::ALL
            .iter()
            .copied()
            .find(|f| f.as_u32() == code)
            .ok_or_else(|| {
                Error::new(
                    ErrorKind::InvalidImage,
                    format!(
                        "unknown pixel format code {code} (valid: 1=Mono8, 2=Mono16, 3=RGB8, \
                         4=BGR8, 5=RGBA8, 6=BGRA8)"
                    ),
                )
            })
    }

    /// The format's C ABI code.
    pub fn as_u32(self) -> u32 {
        self as u32
    }

    /// Bytes one pixel occupies in a row.
    pub fn bytes_per_pixel(self) -> usize {
        match self {
            PixelFormat::Mono8 => 1,
            PixelFormat::Mono16 => 2,
            PixelFormat::Rgb8 | PixelFormat::Bgr8 => 3,
            PixelFormat::Rgba8 | PixelFormat::Bgra8 => 4,
        }
    }

    /// Whether the format carries a single grey channel (replicated to RGB for the
    /// backbone).
    pub fn is_mono(self) -> bool {
        matches!(self, PixelFormat::Mono8 | PixelFormat::Mono16)
    }

    /// A short name for messages (`"RGB8"`).
    pub fn name(self) -> &'static str {
        match self {
            PixelFormat::Mono8 => "Mono8",
            PixelFormat::Mono16 => "Mono16",
            PixelFormat::Rgb8 => "RGB8",
            PixelFormat::Bgr8 => "BGR8",
            PixelFormat::Rgba8 => "RGBA8",
            PixelFormat::Bgra8 => "BGRA8",
        }
    }
}

impl std::fmt::Display for PixelFormat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_the_c_abi_ones_and_round_trip() {
        let expected = [1, 2, 3, 4, 5, 6];
        for (f, code) in PixelFormat::ALL.iter().zip(expected) {
            assert_eq!(f.as_u32(), code);
            assert_eq!(PixelFormat::from_u32(code).unwrap(), *f);
        }
    }

    #[test]
    fn unknown_codes_are_invalid_image_naming_the_code() {
        for code in [0, 7, 255, u32::MAX] {
            let e = PixelFormat::from_u32(code).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::InvalidImage);
            assert!(e.message().contains(&code.to_string()), "{e}");
        }
    }

    #[test]
    fn bytes_per_pixel() {
        let bpp: Vec<usize> = PixelFormat::ALL
            .iter()
            .map(|f| f.bytes_per_pixel())
            .collect();
        assert_eq!(bpp, [1, 2, 3, 3, 4, 4]);
    }
}
