//! Image views from C memory, and `VaradImage`: an image file read into memory owned by
//! the library.

use std::ffi::c_char;
use std::path::Path;

use super::boundary::{check_out, ffi_boundary, ffi_value, required_str, try_ref, FfiError};
use super::c_enum::{c_enum_try_from, enum_arg};
use super::status::VaradStatus;
use crate::image::{read_image_file, ImageLimits, ImageView, OwnedImage, PixelFormat};

/// The pixel formats of `VaradImageView.format`. The values are those of the engine's
/// pixel formats and are never renumbered; 0 is deliberately no format, so a
/// zero-initialised view is refused.
#[repr(u32)]
#[allow(non_camel_case_types, dead_code)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VaradPixelFormat {
    /// One 8-bit grey sample per pixel.
    VARAD_PIXEL_FORMAT_MONO8 = 1,
    /// One 16-bit grey sample per pixel, native byte order; no alignment required.
    VARAD_PIXEL_FORMAT_MONO16 = 2,
    /// 8-bit red, green, blue.
    VARAD_PIXEL_FORMAT_RGB8 = 3,
    /// 8-bit blue, green, red (OpenCV's order).
    VARAD_PIXEL_FORMAT_BGR8 = 4,
    /// 8-bit red, green, blue, alpha (alpha ignored).
    VARAD_PIXEL_FORMAT_RGBA8 = 5,
    /// 8-bit blue, green, red, alpha (alpha ignored).
    VARAD_PIXEL_FORMAT_BGRA8 = 6,
}
c_enum_try_from!(VaradPixelFormat {
    VARAD_PIXEL_FORMAT_MONO8,
    VARAD_PIXEL_FORMAT_MONO16,
    VARAD_PIXEL_FORMAT_RGB8,
    VARAD_PIXEL_FORMAT_BGR8,
    VARAD_PIXEL_FORMAT_RGBA8,
    VARAD_PIXEL_FORMAT_BGRA8,
});

impl From<VaradPixelFormat> for PixelFormat {
    fn from(format: VaradPixelFormat) -> Self {
        match format {
            VaradPixelFormat::VARAD_PIXEL_FORMAT_MONO8 => PixelFormat::Mono8,
            VaradPixelFormat::VARAD_PIXEL_FORMAT_MONO16 => PixelFormat::Mono16,
            VaradPixelFormat::VARAD_PIXEL_FORMAT_RGB8 => PixelFormat::Rgb8,
            VaradPixelFormat::VARAD_PIXEL_FORMAT_BGR8 => PixelFormat::Bgr8,
            VaradPixelFormat::VARAD_PIXEL_FORMAT_RGBA8 => PixelFormat::Rgba8,
            VaradPixelFormat::VARAD_PIXEL_FORMAT_BGRA8 => PixelFormat::Bgra8,
        }
    }
}

impl From<PixelFormat> for VaradPixelFormat {
    fn from(format: PixelFormat) -> Self {
        match format {
            PixelFormat::Mono8 => VaradPixelFormat::VARAD_PIXEL_FORMAT_MONO8,
            PixelFormat::Mono16 => VaradPixelFormat::VARAD_PIXEL_FORMAT_MONO16,
            PixelFormat::Rgb8 => VaradPixelFormat::VARAD_PIXEL_FORMAT_RGB8,
            PixelFormat::Bgr8 => VaradPixelFormat::VARAD_PIXEL_FORMAT_BGR8,
            PixelFormat::Rgba8 => VaradPixelFormat::VARAD_PIXEL_FORMAT_RGBA8,
            PixelFormat::Bgra8 => VaradPixelFormat::VARAD_PIXEL_FORMAT_BGRA8,
        }
    }
}

/// A `VaradPixelFormat` as `VaradImageView.format` holds it: any `uint32_t` a caller
/// passes (the header names it `VaradPixelFormat`).
/// cbindgen:ignore
pub type PixelFormatValue = u32;

/// A borrowed image: `height` rows of `width` pixels in `format`, `stride` bytes apart.
/// Nothing is copied when a view is passed: a camera buffer, an OpenCV `cv::Mat`
/// (`data`, `cols`, `rows`, `step`) or a HALCON image is used where it lies.
///
/// The library reads `stride * (height - 1) + width * bytes_per_pixel` bytes from `data`
/// during the call it is passed to and keeps no pointer afterwards.
///
/// Layout: fixed for every 1.x library (batch calls take arrays of views, so this struct
/// never grows).
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct VaradImageView {
    /// The first pixel of the first row. Must not be NULL.
    pub data: *const u8,
    /// Pixels per row, at least 1.
    pub width: u32,
    /// Rows, at least 1.
    pub height: u32,
    /// Bytes from the start of one row to the start of the next, at least
    /// `width * bytes_per_pixel`; 0 means tightly packed rows.
    pub stride: usize,
    /// The layout of each pixel.
    pub format: PixelFormatValue,
}

/// Turns a C view into an engine view, checking the size against `limits` before a slice
/// of that size is formed.
///
/// # Safety
/// `view.data` is readable for the bytes the view covers during `'a`.
pub(crate) unsafe fn image_view<'a>(
    view: &VaradImageView,
    limits: &ImageLimits,
) -> Result<ImageView<'a>, FfiError> {
    // An unknown format makes the view unusable: the view's own status, not a generic one.
    let format = enum_arg::<VaradPixelFormat>(view.format, "image.format")
        .map_err(|e| FfiError::new(VaradStatus::VARAD_ERR_INVALID_IMAGE, e.message))?;
    let format = PixelFormat::from(format);
    limits.check(view.width, view.height)?;
    let stride = if view.stride == 0 {
        (view.width as usize).saturating_mul(format.bytes_per_pixel())
    } else {
        view.stride
    };
    // SAFETY: forwarded from this function's contract.
    Ok(unsafe { ImageView::from_raw(view.data, view.width, view.height, stride, format) }?)
}

/// An image read from a file, owned by the library (see `varad_image_read`).
pub struct VaradImage {
    image: OwnedImage,
}

/// Reads an image file (PNG, JPEG, TIFF or BMP; 8-bit grey, 16-bit grey, RGB or RGBA)
/// into a new `VaradImage`, stored in `*out_image`. Pass it to scoring or training with
/// `varad_image_view`. Images larger than 2^28 pixels are refused before decoding.
///
/// Ownership: the caller owns `*out_image` and frees it with `varad_image_destroy`;
/// `path` is borrowed for the call. Thread safety: any thread.
/// Errors: `VARAD_ERR_NULL_POINTER`, `VARAD_ERR_INVALID_ARGUMENT` (path not UTF-8),
/// `VARAD_ERR_IO`, `VARAD_ERR_IMAGE_DECODE`, `VARAD_ERR_IMAGE_TOO_LARGE`.
///
/// # Safety
/// `path` is a NUL-terminated string; `out_image` is writable.
#[no_mangle]
pub unsafe extern "C" fn varad_image_read(
    path: *const c_char,
    out_image: *mut *mut VaradImage,
) -> VaradStatus {
    ffi_boundary(|| {
        // SAFETY: forwarded from this function's contract.
        let path = unsafe { required_str(path, "path") }?;
        check_out(out_image, "out_image")?;
        let image = read_image_file(Path::new(path), &ImageLimits::default())?;
        let handle = Box::into_raw(Box::new(VaradImage { image }));
        // SAFETY: checked non-null; the caller guarantees it is writable.
        unsafe { *out_image = handle };
        Ok(())
    })
}

/// Fills `*out_view` with a view of `image`'s pixels (packed rows, the file's format).
///
/// Ownership: the view borrows `image`'s memory: it is valid until `varad_image_destroy`.
/// Thread safety: `image` is const; any number of threads may take views at once.
/// Errors: `VARAD_ERR_NULL_POINTER`.
///
/// # Safety
/// `image` is NULL or a live image; `out_view` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn varad_image_view(
    image: *const VaradImage,
    out_view: *mut VaradImageView,
) -> VaradStatus {
    ffi_boundary(|| {
        // SAFETY: forwarded from this function's contract.
        let image = unsafe { try_ref(image, "image") }?;
        check_out(out_view, "out_view")?;
        let img = &image.image;
        let view = VaradImageView {
            data: img.data().as_ptr(),
            width: img.width(),
            height: img.height(),
            stride: img.width() as usize * img.format().bytes_per_pixel(),
            format: VaradPixelFormat::from(img.format()) as u32,
        };
        // SAFETY: checked non-null; the caller guarantees it is writable.
        unsafe { *out_view = view };
        Ok(())
    })
}

/// Frees an image from `varad_image_read`. NULL is a harmless no-op.
///
/// Ownership: takes `image`; views of it become invalid. Thread safety: no other call
/// may use `image` at the same time. Errors: none.
///
/// # Safety
/// `image` is NULL or an image from `varad_image_read` not yet destroyed.
#[no_mangle]
pub unsafe extern "C" fn varad_image_destroy(image: *mut VaradImage) {
    if !image.is_null() {
        ffi_value((), || {
            // SAFETY: the caller passes an image made by Box::into_raw, once.
            drop(unsafe { Box::from_raw(image) });
        });
    }
}
