//! Image files: reading PNG, JPEG, TIFF and BMP into an [`OwnedImage`], writing PNG.

use std::fs::File;
use std::io::{BufReader, BufWriter, Write};
use std::path::Path;

use image::codecs::png::PngEncoder;
use image::{ColorType, ExtendedColorType, ImageDecoder, ImageEncoder, ImageError, ImageReader};

use super::{ImageLimits, ImageView, OwnedImage, PixelFormat};
use crate::{Error, ErrorKind, Result};

/// The error for a file the decoder rejected, naming the file and the decoder's reason.
fn decode_error(path: &Path, e: ImageError) -> Error {
    let kind = match e {
        // Only reachable through the decoder's own allocation budget (see
        // `decoder_limits`): the file needs more memory than its size justifies.
        ImageError::Limits(_) => ErrorKind::ImageTooLarge,
        _ => ErrorKind::ImageDecode,
    };
    Error::new(kind, format!("cannot decode {}: {e}", path.display()))
}

/// The `image` crate's limits for decoding under `limits`.
///
/// Our pixel limit is checked from the header before decoding; this budget bounds what a
/// decoder may allocate for itself on top of the output (a TIFF decoder keeps a whole
/// copy, a corrupt header can claim huge tables), so that it grows with the configured
/// limit: the largest admitted image at 8 bytes a pixel, plus 64 MiB of tables.
fn decoder_limits(limits: &ImageLimits) -> image::Limits {
    let mut l = image::Limits::no_limits();
    l.max_alloc = Some(limits.max_pixels.saturating_mul(8).saturating_add(64 << 20));
    l
}

/// Reads an image file, with its format recognised from its content (not its name).
///
/// PNG, JPEG, TIFF and BMP, 8 or 16 bits a sample, grey, grey + alpha, RGB or RGBA. The
/// result is Mono8, Mono16 (16-bit grey, native byte order), RGB8 or RGBA8: alpha is
/// dropped where a format without it exists, and 16-bit colour is rounded to 8 bits,
/// since [`PixelFormat`] has no 16-bit colour format and the backbone does not resolve
/// more than 8 bits of colour.
///
/// The size in the header is checked against `limits` before any pixel is decoded or
/// allocated ([`ErrorKind::ImageTooLarge`]). A missing or unreadable file is
/// [`ErrorKind::Io`]; unknown content, a corrupt or truncated file, or an unsupported
/// sample type (32-bit float) is [`ErrorKind::ImageDecode`], naming the path and the
/// reason.
pub fn read_image_file(path: impl AsRef<Path>, limits: &ImageLimits) -> Result<OwnedImage> {
    let path = path.as_ref();
    let file = File::open(path).map_err(|e| Error::io(path, "open", &e))?;
    let mut reader = ImageReader::new(BufReader::new(file))
        .with_guessed_format()
        .map_err(|e| Error::io(path, "read", &e))?;
    if reader.format().is_none() {
        return Err(Error::new(
            ErrorKind::ImageDecode,
            format!(
                "cannot decode {}: not a PNG, JPEG, TIFF or BMP file",
                path.display()
            ),
        ));
    }
    reader.limits(decoder_limits(limits));
    let decoder = reader.into_decoder().map_err(|e| decode_error(path, e))?;
    let (width, height) = decoder.dimensions();
    limits
        .check(width, height)
        .map_err(|e| e.context(path.display()))?;
    let color = decoder.color_type();
    // Within the pixel limit, so at most 8 bytes times `max_pixels`.
    let len = usize::try_from(decoder.total_bytes()).map_err(|_| {
        Error::new(
            ErrorKind::ImageTooLarge,
            format!("{}: image does not fit in memory", path.display()),
        )
    })?;
    let mut buf = vec![0u8; len];
    decoder
        .read_image(&mut buf)
        .map_err(|e| decode_error(path, e))?;
    let (format, data) = to_pixel_format(color, buf).ok_or_else(|| {
        Error::new(
            ErrorKind::ImageDecode,
            format!(
                "cannot decode {}: {color:?} samples are not supported (8 or 16 bits, grey \
                 or colour, are)",
                path.display()
            ),
        )
    })?;
    OwnedImage::new(width, height, format, data).map_err(|e| e.context(path.display()))
}

/// Repacks decoded samples as one of our formats (see [`read_image_file`]).
fn to_pixel_format(color: ColorType, buf: Vec<u8>) -> Option<(PixelFormat, Vec<u8>)> {
    let to8 = |s: &[u8]| {
        let v = u32::from(u16::from_ne_bytes([s[0], s[1]]));
        ((v * 255 + 32767) / 65535) as u8
    };
    Some(match color {
        ColorType::L8 => (PixelFormat::Mono8, buf),
        ColorType::L16 => (PixelFormat::Mono16, buf),
        ColorType::Rgb8 => (PixelFormat::Rgb8, buf),
        ColorType::Rgba8 => (PixelFormat::Rgba8, buf),
        ColorType::La8 => (
            PixelFormat::Mono8,
            buf.chunks_exact(2).map(|p| p[0]).collect(),
        ),
        ColorType::La16 => (
            PixelFormat::Mono16,
            buf.chunks_exact(4).flat_map(|p| [p[0], p[1]]).collect(),
        ),
        ColorType::Rgb16 | ColorType::Rgba16 => {
            let n = if color == ColorType::Rgb16 { 6 } else { 8 };
            let rgb = buf
                .chunks_exact(n)
                .flat_map(|p| [to8(&p[0..2]), to8(&p[2..4]), to8(&p[4..6])])
                .collect();
            (PixelFormat::Rgb8, rgb)
        }
        _ => return None,
    })
}

/// Writes `view` as a PNG file (8-bit grey, 16-bit grey, RGB or RGBA; BGR orders are
/// written as RGB), for heatmaps and overlays.
///
/// Any failure is [`ErrorKind::Io`], naming the path.
pub fn write_png(path: impl AsRef<Path>, view: &ImageView) -> Result<()> {
    let path = path.as_ref();
    let io = |e: &dyn std::fmt::Display| {
        Error::new(
            ErrorKind::Io,
            format!("cannot write {}: {e}", path.display()),
        )
    };
    let (color, swap) = match view.format() {
        PixelFormat::Mono8 => (ExtendedColorType::L8, false),
        PixelFormat::Mono16 => (ExtendedColorType::L16, false),
        PixelFormat::Rgb8 => (ExtendedColorType::Rgb8, false),
        PixelFormat::Bgr8 => (ExtendedColorType::Rgb8, true),
        PixelFormat::Rgba8 => (ExtendedColorType::Rgba8, false),
        PixelFormat::Bgra8 => (ExtendedColorType::Rgba8, true),
    };
    let bpp = view.format().bytes_per_pixel();
    let mut packed = Vec::with_capacity(view.width() as usize * view.height() as usize * bpp);
    for y in 0..view.height() {
        packed.extend_from_slice(view.row(y));
    }
    if swap {
        for p in packed.chunks_exact_mut(bpp) {
            p.swap(0, 2);
        }
    }
    let file = File::create(path).map_err(|e| Error::io(path, "create", &e))?;
    let mut out = BufWriter::new(file);
    PngEncoder::new(&mut out)
        .write_image(&packed, view.width(), view.height(), color)
        .map_err(|e| io(&e))?;
    // Flushing explicitly: a write error hidden in BufWriter's drop would go unreported.
    out.flush().map_err(|e| io(&e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sixteen_bit_colour_rounds_to_eight() {
        let mut buf = Vec::new();
        for v in [0u16, 65535, 257 * 100 + 128, 257 * 100 + 129, 1000, 9] {
            buf.extend_from_slice(&v.to_ne_bytes());
        }
        let (f, data) = to_pixel_format(ColorType::Rgb16, buf).unwrap();
        assert_eq!(f, PixelFormat::Rgb8);
        assert_eq!(data, [0, 255, 100, 101, 4, 0]);
    }

    #[test]
    fn grey_alpha_drops_alpha() {
        let (f, d) = to_pixel_format(ColorType::La8, vec![1, 2, 3, 4]).unwrap();
        assert_eq!((f, d), (PixelFormat::Mono8, vec![1, 3]));
        let (f, d) = to_pixel_format(ColorType::La16, vec![1, 2, 3, 4, 5, 6, 7, 8]).unwrap();
        assert_eq!((f, d), (PixelFormat::Mono16, vec![1, 2, 5, 6]));
        assert!(to_pixel_format(ColorType::Rgb32F, vec![0; 12]).is_none());
    }
}
