//! Pixel rows to f32 samples in [0, 1].
//!
//! Grey stays one sample a pixel (the caller replicates it to RGB after resampling, which
//! is three times less work than resampling three equal planes).

use super::PixelFormat;

/// How many planes a row of `format` converts to: 1 for grey, 3 for colour.
pub(crate) fn plane_count(format: PixelFormat) -> usize {
    if format.is_mono() {
        1
    } else {
        3
    }
}

/// `v / 255` for every byte `v`, correctly rounded.
///
/// A table rather than a division per sample: deinterleaving RGB does not vectorise, and
/// a scalar division costs several times a load. Dividing (rather than multiplying by a
/// reciprocal) keeps 255 at exactly 1.0 and an identity resize equal to the definition.
static U8_TO_F32: [f32; 256] = {
    let mut t = [0.0f32; 256];
    let mut v = 0;
    while v < 256 {
        t[v] = v as f32 / 255.0;
        v += 1;
    }
    t
};

/// Converts one row of grey pixels (Mono8 or Mono16) to samples; 8-bit samples are
/// divided by 255, 16-bit ones by 65535.
pub(crate) fn grey_row(format: PixelFormat, src: &[u8], dst: &mut [f32]) {
    debug_assert_eq!(src.len(), dst.len() * format.bytes_per_pixel());
    match format {
        PixelFormat::Mono8 => {
            for (d, &s) in dst.iter_mut().zip(src) {
                *d = U8_TO_F32[usize::from(s)];
            }
        }
        PixelFormat::Mono16 => {
            // Bytes, not a &[u16] cast: camera buffers need not be 2-byte aligned.
            for (d, s) in dst.iter_mut().zip(src.chunks_exact(2)) {
                *d = f32::from(u16::from_ne_bytes([s[0], s[1]])) / 65535.0;
            }
        }
        _ => unreachable!("grey_row of {format}"),
    }
}

/// Converts one row of colour pixels to `[R, G, B, 0]` samples (8-bit divided by 255).
///
/// Four lanes rather than three so that resampling treats a pixel as one SIMD vector:
/// one multiply-add per filter tap for all three channels.
pub(crate) fn rgb_row(format: PixelFormat, src: &[u8], dst: &mut [[f32; 4]]) {
    debug_assert_eq!(src.len(), dst.len() * format.bytes_per_pixel());
    match format {
        PixelFormat::Rgb8 => interleaved_row::<3>(src, [0, 1, 2], dst),
        PixelFormat::Bgr8 => interleaved_row::<3>(src, [2, 1, 0], dst),
        PixelFormat::Rgba8 => interleaved_row::<4>(src, [0, 1, 2], dst),
        PixelFormat::Bgra8 => interleaved_row::<4>(src, [2, 1, 0], dst),
        _ => unreachable!("rgb_row of {format}"),
    }
}

/// `rgb` gives the byte offset of each of R, G and B within an `N`-byte pixel (which is
/// all that tells RGB from BGR); other bytes (alpha) are ignored.
fn interleaved_row<const N: usize>(src: &[u8], rgb: [usize; 3], dst: &mut [[f32; 4]]) {
    for (d, px) in dst.iter_mut().zip(src.chunks_exact(N)) {
        *d = [
            U8_TO_F32[usize::from(px[rgb[0]])],
            U8_TO_F32[usize::from(px[rgb[1]])],
            U8_TO_F32[usize::from(px[rgb[2]])],
            0.0,
        ];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Converts a row and returns planar samples (one plane for grey, three for colour).
    fn convert(format: PixelFormat, src: &[u8]) -> Vec<f32> {
        let width = src.len() / format.bytes_per_pixel();
        if format.is_mono() {
            let mut dst = vec![f32::NAN; width];
            grey_row(format, src, &mut dst);
            return dst;
        }
        let mut dst = vec![[f32::NAN; 4]; width];
        rgb_row(format, src, &mut dst);
        assert!(dst.iter().all(|p| p[3] == 0.0));
        (0..3).flat_map(|c| dst.iter().map(move |p| p[c])).collect()
    }

    #[test]
    fn every_format() {
        assert_eq!(convert(PixelFormat::Mono8, &[0, 255, 51]), [0.0, 1.0, 0.2]);
        let mut m16 = Vec::new();
        for v in [0u16, 65535, 13107] {
            m16.extend_from_slice(&v.to_ne_bytes());
        }
        assert_eq!(convert(PixelFormat::Mono16, &m16), [0.0, 1.0, 0.2]);
        let rgb = convert(PixelFormat::Rgb8, &[255, 51, 0, 0, 0, 255]);
        assert_eq!(rgb, [1.0, 0.0, 0.2, 0.0, 0.0, 1.0]);
        assert_eq!(convert(PixelFormat::Bgr8, &[0, 51, 255, 255, 0, 0]), rgb);
        let rgba = [255, 51, 0, 7, 0, 0, 255, 9];
        assert_eq!(convert(PixelFormat::Rgba8, &rgba), rgb);
        let bgra = [0, 51, 255, 7, 255, 0, 0, 9];
        assert_eq!(convert(PixelFormat::Bgra8, &bgra), rgb);
    }

    #[test]
    fn table_is_the_division() {
        for v in 0..=255u8 {
            assert_eq!(U8_TO_F32[usize::from(v)], f32::from(v) / 255.0);
        }
    }

    #[test]
    fn misaligned_mono16() {
        let mut buf = vec![0u8];
        for v in [1u16, 65535, 32768] {
            buf.extend_from_slice(&v.to_ne_bytes());
        }
        let got = convert(PixelFormat::Mono16, &buf[1..]);
        assert_eq!(got, [1.0 / 65535.0, 1.0, 32768.0 / 65535.0]);
    }
}
