//! Image files: every supported container and sample type written to disk with the
//! `image` crate (or our own PNG writer), read back through `read_image_file`, and the
//! failures a file can cause.

use std::path::{Path, PathBuf};

use image::{ExtendedColorType, ImageFormat};
use varad::image::{read_image_file, write_png, ImageLimits, ImageView, OwnedImage, PixelFormat};
use varad::ErrorKind;

/// A file path unique to this process and name; removed when dropped.
struct TempFile(PathBuf);

impl TempFile {
    fn new(name: &str) -> Self {
        let file = format!("varad-image-files-{}-{name}", std::process::id());
        TempFile(std::env::temp_dir().join(file))
    }
    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

const W: u32 = 13;
const H: u32 = 7;

/// A smooth pattern with `channels` samples a pixel (smooth so JPEG keeps it close).
fn pattern8(channels: usize) -> Vec<u8> {
    let mut v = Vec::new();
    for y in 0..H as usize {
        for x in 0..W as usize {
            for c in 0..channels {
                v.push((x * 15 + y * 20 + c * 60) as u8);
            }
        }
    }
    v
}

/// The same with 16-bit samples that use all 16 bits, as native-endian bytes.
fn pattern16(channels: usize) -> (Vec<u16>, Vec<u8>) {
    let samples: Vec<u16> = (0..(W * H) as usize * channels)
        .map(|i| (i as u16).wrapping_mul(40503).wrapping_add(7))
        .collect();
    let bytes = samples.iter().flat_map(|s| s.to_ne_bytes()).collect();
    (samples, bytes)
}

fn save(name: &str, buf: &[u8], color: ExtendedColorType, format: ImageFormat) -> TempFile {
    let f = TempFile::new(name);
    image::save_buffer_with_format(f.path(), buf, W, H, color, format).unwrap();
    f
}

fn read(f: &TempFile) -> OwnedImage {
    read_image_file(f.path(), &ImageLimits::default()).unwrap()
}

fn assert_image(img: &OwnedImage, format: PixelFormat, data: &[u8]) {
    assert_eq!((img.width(), img.height(), img.format()), (W, H, format));
    assert_eq!(img.data(), data);
}

#[test]
fn png_8_bit_grey_rgb_rgba_and_grey_alpha() {
    let f = save(
        "g8.png",
        &pattern8(1),
        ExtendedColorType::L8,
        ImageFormat::Png,
    );
    assert_image(&read(&f), PixelFormat::Mono8, &pattern8(1));
    let f = save(
        "rgb8.png",
        &pattern8(3),
        ExtendedColorType::Rgb8,
        ImageFormat::Png,
    );
    assert_image(&read(&f), PixelFormat::Rgb8, &pattern8(3));
    let f = save(
        "rgba8.png",
        &pattern8(4),
        ExtendedColorType::Rgba8,
        ImageFormat::Png,
    );
    assert_image(&read(&f), PixelFormat::Rgba8, &pattern8(4));
    let la = pattern8(2);
    let f = save("la8.png", &la, ExtendedColorType::La8, ImageFormat::Png);
    let grey: Vec<u8> = la.chunks(2).map(|p| p[0]).collect();
    assert_image(&read(&f), PixelFormat::Mono8, &grey);
}

#[test]
fn png_16_bit_grey_is_exact_and_colour_rounds_to_8_bits() {
    let (_, bytes) = pattern16(1);
    let f = save("g16.png", &bytes, ExtendedColorType::L16, ImageFormat::Png);
    assert_image(&read(&f), PixelFormat::Mono16, &bytes);

    let (samples, bytes) = pattern16(2);
    let f = save(
        "la16.png",
        &bytes,
        ExtendedColorType::La16,
        ImageFormat::Png,
    );
    let grey: Vec<u8> = samples.chunks(2).flat_map(|p| p[0].to_ne_bytes()).collect();
    assert_image(&read(&f), PixelFormat::Mono16, &grey);

    let round = |s: u16| (f64::from(s) / 257.0).round() as u8;
    let (samples, bytes) = pattern16(3);
    let f = save(
        "rgb16.png",
        &bytes,
        ExtendedColorType::Rgb16,
        ImageFormat::Png,
    );
    let rgb: Vec<u8> = samples.iter().map(|&s| round(s)).collect();
    assert_image(&read(&f), PixelFormat::Rgb8, &rgb);

    let (samples, bytes) = pattern16(4);
    let f = save(
        "rgba16.png",
        &bytes,
        ExtendedColorType::Rgba16,
        ImageFormat::Png,
    );
    let rgb: Vec<u8> = samples
        .chunks(4)
        .flat_map(|p| [round(p[0]), round(p[1]), round(p[2])])
        .collect();
    assert_image(&read(&f), PixelFormat::Rgb8, &rgb);
}

#[test]
fn tiff_16_bit_and_8_bit() {
    let (_, bytes) = pattern16(1);
    let f = save(
        "g16.tiff",
        &bytes,
        ExtendedColorType::L16,
        ImageFormat::Tiff,
    );
    assert_image(&read(&f), PixelFormat::Mono16, &bytes);
    let f = save(
        "rgb8.tif",
        &pattern8(3),
        ExtendedColorType::Rgb8,
        ImageFormat::Tiff,
    );
    assert_image(&read(&f), PixelFormat::Rgb8, &pattern8(3));
}

#[test]
fn bmp_rgb_and_rgba() {
    let f = save(
        "rgb8.bmp",
        &pattern8(3),
        ExtendedColorType::Rgb8,
        ImageFormat::Bmp,
    );
    assert_image(&read(&f), PixelFormat::Rgb8, &pattern8(3));
    let f = save(
        "rgba8.bmp",
        &pattern8(4),
        ExtendedColorType::Rgba8,
        ImageFormat::Bmp,
    );
    assert_image(&read(&f), PixelFormat::Rgba8, &pattern8(4));
}

#[test]
fn jpeg_grey_and_rgb_are_close() {
    for (channels, color, format) in [
        (1, ExtendedColorType::L8, PixelFormat::Mono8),
        (3, ExtendedColorType::Rgb8, PixelFormat::Rgb8),
    ] {
        let f = TempFile::new(&format!("c{channels}.jpg"));
        let mut file = std::fs::File::create(f.path()).unwrap();
        image::codecs::jpeg::JpegEncoder::new_with_quality(&mut file, 98)
            .encode(&pattern8(channels), W, H, color)
            .unwrap();
        drop(file);
        let img = read(&f);
        assert_eq!((img.width(), img.height(), img.format()), (W, H, format));
        let want = pattern8(channels);
        let mean_err = img
            .data()
            .iter()
            .zip(&want)
            .map(|(&a, &b)| (f64::from(a) - f64::from(b)).abs())
            .sum::<f64>()
            / want.len() as f64;
        assert!(mean_err < 4.0, "{channels} channels: mean error {mean_err}");
    }
}

#[test]
fn format_comes_from_content_not_extension() {
    let f = save(
        "really-a-png.jpg",
        &pattern8(1),
        ExtendedColorType::L8,
        ImageFormat::Png,
    );
    assert_image(&read(&f), PixelFormat::Mono8, &pattern8(1));
    let f = save(
        "no-extension",
        &pattern8(3),
        ExtendedColorType::Rgb8,
        ImageFormat::Bmp,
    );
    assert_image(&read(&f), PixelFormat::Rgb8, &pattern8(3));
}

#[test]
fn write_png_round_trips_every_format_and_drops_padding() {
    for format in PixelFormat::ALL {
        let bpp = format.bytes_per_pixel();
        let stride = W as usize * bpp + 3;
        let buf: Vec<u8> = (0..stride * H as usize).map(|i| (i * 7) as u8).collect();
        let view = ImageView::new(&buf, W, H, stride, format).unwrap();
        let f = TempFile::new(&format!("written-{format}.png"));
        write_png(f.path(), &view).unwrap();
        let img = read(&f);
        let mut want = Vec::new();
        for y in 0..H {
            want.extend_from_slice(view.row(y));
        }
        if matches!(format, PixelFormat::Bgr8 | PixelFormat::Bgra8) {
            for p in want.chunks_mut(bpp) {
                p.swap(0, 2);
            }
        }
        let read_format = match format {
            PixelFormat::Bgr8 => PixelFormat::Rgb8,
            PixelFormat::Bgra8 => PixelFormat::Rgba8,
            f => f,
        };
        assert_image(&img, read_format, &want);
    }
}

#[test]
fn write_png_to_a_missing_directory_is_io() {
    let buf = [0u8; 4];
    let view = ImageView::packed(&buf, 2, 2, PixelFormat::Mono8).unwrap();
    let path = std::env::temp_dir()
        .join("varad-no-such-dir-4f1c")
        .join("a.png");
    let e = write_png(&path, &view).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Io);
    assert!(e.message().contains("a.png"), "{e}");
}

#[test]
fn missing_file_is_io() {
    let path = std::env::temp_dir().join("varad-surely-missing-8d2e.png");
    let e = read_image_file(&path, &ImageLimits::default()).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Io);
    assert!(e.message().contains("varad-surely-missing-8d2e.png"), "{e}");
}

#[test]
fn truncated_corrupt_and_unknown_files_are_decode_errors_naming_the_path() {
    let good = save(
        "good.png",
        &pattern8(3),
        ExtendedColorType::Rgb8,
        ImageFormat::Png,
    );
    let bytes = std::fs::read(good.path()).unwrap();
    let mut corrupt = bytes.clone();
    // Flip bytes inside the compressed data: the chunk CRC no longer matches.
    for b in &mut corrupt[45..60] {
        *b ^= 0x5A;
    }
    let cases: [(&str, Vec<u8>); 5] = [
        ("truncated.png", bytes[..bytes.len() / 2].to_vec()),
        ("header-only.png", bytes[..20].to_vec()),
        ("corrupt.png", corrupt),
        ("unknown.png", b"this is not an image at all".to_vec()),
        ("empty.png", Vec::new()),
    ];
    for (name, content) in cases {
        let f = TempFile::new(name);
        std::fs::write(f.path(), content).unwrap();
        let e = read_image_file(f.path(), &ImageLimits::default()).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::ImageDecode, "{name}: {e}");
        assert!(e.message().contains(name), "{e}");
    }
    let jpeg_like = TempFile::new("truncated.jpg");
    std::fs::write(jpeg_like.path(), [0xFF, 0xD8, 0xFF, 0xE0, 0, 16, b'J']).unwrap();
    let e = read_image_file(jpeg_like.path(), &ImageLimits::default()).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::ImageDecode, "{e}");
}

/// CRC-32 as PNG chunks use it (ISO-HDLC), bit by bit: a test needs no table.
fn crc32(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in data {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

#[test]
fn huge_header_is_rejected_by_the_limit_before_decoding() {
    // A valid PNG whose header then claims 200000 x 150000 RGB pixels (90 GB decoded):
    // it must fail fast with ImageTooLarge, not try to allocate.
    let good = save(
        "small.png",
        &pattern8(3),
        ExtendedColorType::Rgb8,
        ImageFormat::Png,
    );
    let mut bytes = std::fs::read(good.path()).unwrap();
    assert_eq!(&bytes[12..16], b"IHDR");
    bytes[16..20].copy_from_slice(&200_000u32.to_be_bytes());
    bytes[20..24].copy_from_slice(&150_000u32.to_be_bytes());
    let crc = crc32(&bytes[12..29]);
    bytes[29..33].copy_from_slice(&crc.to_be_bytes());
    let f = TempFile::new("huge.png");
    std::fs::write(f.path(), &bytes).unwrap();
    let e = read_image_file(f.path(), &ImageLimits::default()).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::ImageTooLarge, "{e}");
    for part in ["huge.png", "200000 x 150000", "268435456"] {
        assert!(e.message().contains(part), "{e}");
    }

    // The same through a BMP header (no checksum to fix): 60000 x 60000, 24 bits (the BMP
    // decoder refuses sides above 65535 itself).
    let good = save(
        "small.bmp",
        &pattern8(3),
        ExtendedColorType::Rgb8,
        ImageFormat::Bmp,
    );
    let mut bytes = std::fs::read(good.path()).unwrap();
    bytes[18..22].copy_from_slice(&60_000i32.to_le_bytes());
    bytes[22..26].copy_from_slice(&60_000i32.to_le_bytes());
    let f = TempFile::new("huge.bmp");
    std::fs::write(f.path(), &bytes).unwrap();
    let e = read_image_file(f.path(), &ImageLimits::default()).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::ImageTooLarge, "{e}");
}

#[test]
fn a_configured_limit_applies_to_files() {
    let f = save(
        "limit.png",
        &pattern8(1),
        ExtendedColorType::L8,
        ImageFormat::Png,
    );
    let limits = ImageLimits {
        max_pixels: u64::from(W * H) - 1,
    };
    let e = read_image_file(f.path(), &limits).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::ImageTooLarge, "{e}");
    let exact = ImageLimits {
        max_pixels: u64::from(W * H),
    };
    read_image_file(f.path(), &exact).unwrap();
}
