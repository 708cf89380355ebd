//! Borrowed image views: the pixels a caller hands over, checked once and then trusted.

use super::{ImageLimits, PixelFormat};
use crate::{Error, ErrorKind, Result};

/// A borrowed, read-only image: rows of `width` pixels of `format`, `stride` bytes apart.
///
/// Construction checks the geometry (non-zero size, a stride that holds a row, no
/// overflow, and for [`ImageView::new`] a buffer long enough), so code that reads a view
/// never needs to check again. Rows may carry padding bytes after the pixels (OpenCV
/// `cv::Mat` steps, camera line padding, a region of interest inside a larger image);
/// they are never read. The last row needs no padding: a view needs
/// `stride * (height - 1) + width * bytes_per_pixel` bytes.
#[derive(Clone, Copy)]
pub struct ImageView<'a> {
    data: &'a [u8],
    width: u32,
    height: u32,
    stride: usize,
    format: PixelFormat,
}

// By hand, so that logging a view prints its geometry, not megabytes of pixels.
impl std::fmt::Debug for ImageView<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ImageView")
            .field("width", &self.width)
            .field("height", &self.height)
            .field("stride", &self.stride)
            .field("format", &self.format)
            .field("data", &self.data.as_ptr())
            .finish()
    }
}

/// The number of bytes a view with this geometry reads, after checking the geometry.
fn required_len(width: u32, height: u32, stride: usize, format: PixelFormat) -> Result<usize> {
    let invalid = |msg: String| Error::new(ErrorKind::InvalidImage, msg);
    if width == 0 || height == 0 {
        return Err(invalid(format!(
            "image has zero size ({width} x {height}); width and height must be at least 1"
        )));
    }
    let row_bytes = (width as usize)
        .checked_mul(format.bytes_per_pixel())
        .ok_or_else(|| invalid(format!("a row of {width} {format} pixels overflows")))?;
    if stride < row_bytes {
        return Err(invalid(format!(
            "row stride of {stride} bytes is shorter than a row of {width} {format} pixels \
             ({row_bytes} bytes)"
        )));
    }
    let overflow = || {
        invalid(format!(
            "stride {stride} x height {height} overflows the address space"
        ))
    };
    // A slice may not exceed isize::MAX bytes; checking stride * height (not just the
    // bytes actually read) also rejects geometries no real buffer could have.
    let total = stride.checked_mul(height as usize).ok_or_else(overflow)?;
    if total > isize::MAX as usize {
        return Err(overflow());
    }
    Ok(stride * (height as usize - 1) + row_bytes)
}

impl<'a> ImageView<'a> {
    /// A view of `data`, checking the geometry and that `data` holds every row.
    ///
    /// `stride` is the distance between the starts of two rows, in bytes. Errors are
    /// [`ErrorKind::InvalidImage`]: zero width or height, a stride shorter than a row,
    /// `stride * height` overflowing, or `data` shorter than
    /// `stride * (height - 1) + width * bytes_per_pixel`.
    pub fn new(
        data: &'a [u8],
        width: u32,
        height: u32,
        stride: usize,
        format: PixelFormat,
    ) -> Result<Self> {
        let len = required_len(width, height, stride, format)?;
        if data.len() < len {
            return Err(Error::new(
                ErrorKind::InvalidImage,
                format!(
                    "image buffer of {} bytes is shorter than the {len} bytes a {width} x \
                     {height} {format} image with a stride of {stride} bytes needs",
                    data.len()
                ),
            ));
        }
        Ok(ImageView {
            data: &data[..len],
            width,
            height,
            stride,
            format,
        })
    }

    /// A view of tightly packed rows (`stride = width * bytes_per_pixel`).
    pub fn packed(data: &'a [u8], width: u32, height: u32, format: PixelFormat) -> Result<Self> {
        let stride = (width as usize).saturating_mul(format.bytes_per_pixel());
        Self::new(data, width, height, stride, format)
    }

    /// A view of memory given as a raw pointer, for the C ABI.
    ///
    /// Checks everything [`ImageView::new`] checks that can be checked without knowing
    /// the buffer's length, and that `ptr` is not null ([`ErrorKind::InvalidImage`]).
    /// Sizes from an untrusted caller should pass [`ImageLimits::check`] first, so that
    /// an absurd width or height fails before a slice of that size is formed.
    ///
    /// # Safety
    ///
    /// If the checks pass, `ptr` must be valid for reads of
    /// `stride * (height - 1) + width * format.bytes_per_pixel()` bytes, and that memory
    /// must not be written to for the lifetime `'a`. No alignment is required, Mono16
    /// included.
    pub unsafe fn from_raw(
        ptr: *const u8,
        width: u32,
        height: u32,
        stride: usize,
        format: PixelFormat,
    ) -> Result<ImageView<'a>> {
        if ptr.is_null() {
            return Err(Error::new(
                ErrorKind::InvalidImage,
                "image data pointer is null",
            ));
        }
        let len = required_len(width, height, stride, format)?;
        // SAFETY: non-null and checked to be at most isize::MAX bytes; the caller
        // guarantees the rest (see the function's safety section).
        let data = unsafe { std::slice::from_raw_parts(ptr, len) };
        Ok(ImageView {
            data,
            width,
            height,
            stride,
            format,
        })
    }

    /// Width in pixels (at least 1).
    pub fn width(&self) -> u32 {
        self.width
    }

    /// Height in pixels (at least 1).
    pub fn height(&self) -> u32 {
        self.height
    }

    /// Distance between the starts of two rows, in bytes.
    pub fn stride(&self) -> usize {
        self.stride
    }

    /// The pixel format.
    pub fn format(&self) -> PixelFormat {
        self.format
    }

    /// The bytes the view covers, from the first pixel to the last (row padding included,
    /// padding after the last row not).
    pub fn data(&self) -> &'a [u8] {
        self.data
    }

    /// The pixel bytes of row `y`, without padding.
    ///
    /// # Panics
    ///
    /// If `y >= height`.
    pub fn row(&self, y: u32) -> &'a [u8] {
        assert!(
            y < self.height,
            "row {y} of an image {} rows high",
            self.height
        );
        let start = y as usize * self.stride;
        &self.data[start..start + self.width as usize * self.format.bytes_per_pixel()]
    }

    /// Checks the view's size against `limits` ([`ErrorKind::ImageTooLarge`]).
    pub fn check_limits(&self, limits: &ImageLimits) -> Result<()> {
        limits.check(self.width, self.height)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_checks_every_geometry_error() {
        let buf = vec![0u8; 100];
        let kind = |r: Result<ImageView>| r.unwrap_err().kind();
        let f = PixelFormat::Rgb8;
        assert_eq!(
            kind(ImageView::new(&buf, 0, 3, 30, f)),
            ErrorKind::InvalidImage
        );
        assert_eq!(
            kind(ImageView::new(&buf, 3, 0, 30, f)),
            ErrorKind::InvalidImage
        );
        // Stride one byte short of a row.
        let e = ImageView::new(&buf, 4, 2, 11, f).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidImage);
        assert!(
            e.message().contains("11") && e.message().contains("12"),
            "{e}"
        );
        // Buffer one byte short: 2 rows of stride 50 need 50 + 12 = 62 bytes.
        ImageView::new(&buf[..62], 4, 2, 50, f).unwrap();
        let e = ImageView::new(&buf[..61], 4, 2, 50, f).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidImage);
        assert!(
            e.message().contains("61") && e.message().contains("62"),
            "{e}"
        );
        // stride * height overflows.
        let e = ImageView::new(&buf, 1, u32::MAX, usize::MAX / 2, f).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidImage);
        assert!(e.message().contains("overflow"), "{e}");
    }

    #[test]
    fn from_raw_checks_null_and_geometry() {
        let f = PixelFormat::Mono16;
        let e = unsafe { ImageView::from_raw(std::ptr::null(), 4, 4, 8, f) }.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidImage);
        assert!(e.message().contains("null"), "{e}");
        let buf = [0u8; 64];
        let p = buf.as_ptr();
        for (w, h, s) in [
            (0, 4, 8),
            (4, 0, 8),
            (4, 4, 7),
            (2, u32::MAX, usize::MAX / 4),
        ] {
            let e = unsafe { ImageView::from_raw(p, w, h, s, f) }.unwrap_err();
            assert_eq!(e.kind(), ErrorKind::InvalidImage, "{w}x{h} stride {s}");
        }
        let v = unsafe { ImageView::from_raw(p, 4, 4, 16, f) }.unwrap();
        assert_eq!(v.data().len(), 3 * 16 + 8);
    }

    #[test]
    fn rows_skip_padding() {
        let buf: Vec<u8> = (0..20).collect();
        let v = ImageView::new(&buf, 3, 3, 7, PixelFormat::Mono8).unwrap();
        assert_eq!(v.row(0), &[0, 1, 2]);
        assert_eq!(v.row(2), &[14, 15, 16]);
    }

    #[test]
    fn debug_shows_geometry_not_pixels() {
        let buf = [7u8; 64];
        let v = ImageView::packed(&buf, 8, 8, PixelFormat::Mono8).unwrap();
        let s = format!("{v:?}");
        assert!(
            s.contains("width: 8") && s.contains("Mono8") && !s.contains("7, 7"),
            "{s}"
        );
    }

    #[test]
    fn limits_are_checked_on_request() {
        let buf = [0u8; 16];
        let v = ImageView::packed(&buf, 4, 4, PixelFormat::Mono8).unwrap();
        v.check_limits(&ImageLimits::default()).unwrap();
        let e = v.check_limits(&ImageLimits { max_pixels: 15 }).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::ImageTooLarge);
    }
}
