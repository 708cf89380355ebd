//! Images that own their pixels (decoded files).

use super::{ImageView, PixelFormat};
use crate::{Error, ErrorKind, Result};

/// An image that owns tightly packed pixels (no row padding), for example a decoded file.
///
/// The fields are private so that `data` always matches the size and format, which
/// lets [`OwnedImage::view`] be infallible.
#[derive(Clone, PartialEq, Eq)]
pub struct OwnedImage {
    width: u32,
    height: u32,
    format: PixelFormat,
    data: Vec<u8>,
}

// By hand, so that logging an image prints its size, not megabytes of pixels.
impl std::fmt::Debug for OwnedImage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OwnedImage")
            .field("width", &self.width)
            .field("height", &self.height)
            .field("format", &self.format)
            .field("bytes", &self.data.len())
            .finish()
    }
}

impl OwnedImage {
    /// An image of `width` x `height` pixels of `format` from packed rows.
    ///
    /// [`ErrorKind::InvalidImage`] if a size is zero or `data.len()` is not exactly
    /// `width * height * bytes_per_pixel`.
    pub fn new(width: u32, height: u32, format: PixelFormat, data: Vec<u8>) -> Result<Self> {
        let expected = (width as usize)
            .checked_mul(height as usize)
            .and_then(|n| n.checked_mul(format.bytes_per_pixel()));
        if width == 0 || height == 0 || expected != Some(data.len()) {
            return Err(Error::new(
                ErrorKind::InvalidImage,
                format!(
                    "{} bytes of pixel data do not make a {width} x {height} {format} image",
                    data.len()
                ),
            ));
        }
        Ok(OwnedImage {
            width,
            height,
            format,
            data,
        })
    }

    /// Width in pixels.
    pub fn width(&self) -> u32 {
        self.width
    }

    /// Height in pixels.
    pub fn height(&self) -> u32 {
        self.height
    }

    /// The pixel format.
    pub fn format(&self) -> PixelFormat {
        self.format
    }

    /// The packed pixel bytes (Mono16 in native byte order).
    pub fn data(&self) -> &[u8] {
        &self.data
    }

    /// The packed pixel bytes, giving up the image.
    pub fn into_data(self) -> Vec<u8> {
        self.data
    }

    /// A view of the whole image.
    pub fn view(&self) -> ImageView<'_> {
        ImageView::packed(&self.data, self.width, self.height, self.format)
            .expect("OwnedImage::new checked the geometry")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_checks_length() {
        OwnedImage::new(2, 3, PixelFormat::Rgb8, vec![0; 18]).unwrap();
        for (w, h, len) in [(2, 3, 17), (2, 3, 19), (0, 3, 0)] {
            let e = OwnedImage::new(w, h, PixelFormat::Rgb8, vec![0; len]).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::InvalidImage);
        }
    }

    #[test]
    fn view_covers_the_image() {
        let img = OwnedImage::new(2, 2, PixelFormat::Mono16, (0..8).collect()).unwrap();
        let v = img.view();
        assert_eq!((v.width(), v.height(), v.stride()), (2, 2, 4));
        assert_eq!(v.row(1), &[4, 5, 6, 7]);
    }
}
