//! Pictures of results: heatmap overlays, and a montage per category with one row per
//! test image: the image with its ground-truth outline, then each method's heatmap.

use varad::image::{ImageView, PixelFormat};

/// The image as packed RGB8 (grey is repeated, 16-bit grey keeps its high byte, alpha is
/// dropped, BGR is swapped).
pub fn to_rgb8(view: &ImageView) -> Vec<u8> {
    let (w, h) = (view.width() as usize, view.height() as usize);
    let bpp = view.format().bytes_per_pixel();
    let mut out = Vec::with_capacity(w * h * 3);
    for y in 0..view.height() {
        let row = view.row(y);
        for p in row[..w * bpp].chunks_exact(bpp) {
            let rgb = match view.format() {
                PixelFormat::Mono8 => [p[0]; 3],
                // Native byte order: the high byte is the last on little-endian machines.
                PixelFormat::Mono16 => [(u16::from_ne_bytes([p[0], p[1]]) >> 8) as u8; 3],
                PixelFormat::Rgb8 | PixelFormat::Rgba8 => [p[0], p[1], p[2]],
                PixelFormat::Bgr8 | PixelFormat::Bgra8 => [p[2], p[1], p[0]],
            };
            out.extend_from_slice(&rgb);
        }
    }
    out
}

/// A jet-like colour for `t` in `[0, 1]`: blue, cyan, yellow, red.
pub fn heat_colour(t: f32) -> [u8; 3] {
    let t = if t.is_nan() { 0.0 } else { t.clamp(0.0, 1.0) };
    let channel = |centre: f32| (255.0 * (1.5 - (4.0 * t - centre).abs()).clamp(0.0, 1.0)) as u8;
    [channel(3.0), channel(2.0), channel(1.0)]
}

/// `map` (one value a pixel of `rgb`) coloured from `lo` (blue) to `hi` (red) and blended
/// over the grey of the packed RGB8 image `rgb`.
pub fn heat_overlay(rgb: &[u8], map: &[f32], lo: f32, hi: f32) -> Vec<u8> {
    let span = (hi - lo).max(f32::MIN_POSITIVE);
    let mut out = Vec::with_capacity(rgb.len());
    for (p, &m) in rgb.chunks_exact(3).zip(map) {
        let grey = (u32::from(p[0]) + u32::from(p[1]) + u32::from(p[2])) as f32 / 3.0;
        for h in heat_colour((m - lo) / span) {
            out.push((0.5 * grey + 0.5 * f32::from(h)) as u8);
        }
    }
    out
}

/// Area-average resize of a `w x h` image with `channels` interleaved values per pixel to
/// `tw x th` (each output pixel averages the source pixels it covers, at least one).
pub fn downscale(
    values: &[f32],
    w: usize,
    h: usize,
    channels: usize,
    tw: usize,
    th: usize,
) -> Vec<f32> {
    let span = |i: usize, src: usize, dst: usize| {
        let a = i * src / dst;
        (a, ((i + 1) * src / dst).max(a + 1).min(src))
    };
    let mut out = vec![0f32; tw * th * channels];
    for ty in 0..th {
        let (y0, y1) = span(ty, h, th);
        for tx in 0..tw {
            let (x0, x1) = span(tx, w, tw);
            let o = &mut out[(ty * tw + tx) * channels..][..channels];
            for y in y0..y1 {
                for x in x0..x1 {
                    for (c, v) in o.iter_mut().enumerate() {
                        *v += values[(y * w + x) * channels + c];
                    }
                }
            }
            let n = ((y1 - y0) * (x1 - x0)) as f32;
            o.iter_mut().for_each(|v| *v /= n);
        }
    }
    out
}

/// One montage row: a test image and its maps, already at tile size.
#[derive(Debug, Clone)]
pub struct MontageRow {
    /// The image, packed RGB8, `tile x tile`.
    pub image: Vec<u8>,
    /// The ground-truth mask (share of defect pixels under each tile pixel), if any.
    pub mask: Option<Vec<f32>>,
    /// Each method's map, `tile x tile`.
    pub maps: Vec<Vec<f32>>,
}

impl MontageRow {
    /// Downscales an image (`w x h` packed RGB8), its mask (one byte a pixel, non-zero =
    /// defect) and its maps to `tile x tile` (stretched if not square).
    pub fn new(
        rgb: &[u8],
        mask: Option<&[u8]>,
        maps: &[&[f32]],
        w: usize,
        h: usize,
        tile: usize,
    ) -> Self {
        let rgb_f: Vec<f32> = rgb.iter().map(|&v| f32::from(v)).collect();
        MontageRow {
            image: downscale(&rgb_f, w, h, 3, tile, tile)
                .iter()
                .map(|&v| v.round() as u8)
                .collect(),
            mask: mask.map(|m| {
                let m: Vec<f32> = m.iter().map(|&v| f32::from(u8::from(v != 0))).collect();
                downscale(&m, w, h, 1, tile, tile)
            }),
            maps: maps
                .iter()
                .map(|m| downscale(m, w, h, 1, tile, tile))
                .collect(),
        }
    }
}

/// The pixels of a tile on the boundary of the mask (inside, with a 4-neighbour outside or
/// on the tile's edge).
fn outline(mask: &[f32], tile: usize) -> Vec<bool> {
    let inside = |x: isize, y: isize| {
        x >= 0
            && y >= 0
            && (x as usize) < tile
            && (y as usize) < tile
            && mask[y as usize * tile + x as usize] >= 0.5
    };
    (0..tile * tile)
        .map(|i| {
            let (x, y) = ((i % tile) as isize, (i / tile) as isize);
            inside(x, y)
                && [(1, 0), (-1, 0), (0, 1), (0, -1)]
                    .iter()
                    .any(|(dx, dy)| !inside(x + dx, y + dy))
        })
        .collect()
}

/// Renders the rows as one RGB8 picture: a row per test image, a column for the image with
/// its ground-truth outline (red), then one heatmap column per method (outline in white),
/// each method's colours spanning its own lowest to highest value over all rows. Returns
/// `(pixels, width, height)`.
pub fn render(rows: &[MontageRow], tile: usize) -> (Vec<u8>, usize, usize) {
    const GAP: usize = 4;
    let methods = rows.first().map_or(0, |r| r.maps.len());
    let columns = 1 + methods;
    let (width, height) = (
        columns * (tile + GAP) + GAP,
        rows.len() * (tile + GAP) + GAP,
    );
    let mut out = vec![40u8; width * height * 3];
    let ranges: Vec<(f32, f32)> = (0..methods)
        .map(|m| {
            rows.iter()
                .flat_map(|r| r.maps[m].iter())
                .fold((f32::INFINITY, f32::NEG_INFINITY), |(lo, hi), &v| {
                    (lo.min(v), hi.max(v))
                })
        })
        .collect();
    for (r, row) in rows.iter().enumerate() {
        let edge = row.mask.as_ref().map(|m| outline(m, tile));
        for c in 0..columns {
            let mut pixels = if c == 0 {
                row.image.clone()
            } else {
                let (lo, hi) = ranges[c - 1];
                heat_overlay(&row.image, &row.maps[c - 1], lo, hi)
            };
            if let Some(edge) = &edge {
                let colour = if c == 0 { [255, 0, 0] } else { [255, 255, 255] };
                for (i, _) in edge.iter().enumerate().filter(|(_, &e)| e) {
                    pixels[i * 3..i * 3 + 3].copy_from_slice(&colour);
                }
            }
            let (x0, y0) = (GAP + c * (tile + GAP), GAP + r * (tile + GAP));
            for y in 0..tile {
                let dst = ((y0 + y) * width + x0) * 3;
                out[dst..dst + tile * 3].copy_from_slice(&pixels[y * tile * 3..(y + 1) * tile * 3]);
            }
        }
    }
    (out, width, height)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn downscale_averages_and_upscales() {
        let v = [1.0, 3.0, 5.0, 7.0];
        assert_eq!(downscale(&v, 2, 2, 1, 1, 1), [4.0]);
        assert_eq!(downscale(&v, 2, 2, 1, 4, 4)[..4], [1.0, 1.0, 3.0, 3.0]);
        assert_eq!(downscale(&[1.0, 2.0, 3.0, 4.0], 2, 1, 2, 1, 1), [2.0, 3.0]);
    }

    #[test]
    fn montage_has_the_grid_size_and_outlines() {
        let (w, h) = (20, 10);
        let rgb = vec![100u8; w * h * 3];
        let mut mask = vec![0u8; w * h];
        mask[5 * w + 5] = 255;
        mask[5 * w + 6] = 255;
        let map: Vec<f32> = (0..w * h).map(|i| i as f32).collect();
        let rows = vec![
            MontageRow::new(&rgb, Some(&mask), &[&map, &map], w, h, 8),
            MontageRow::new(&rgb, None, &[&map, &map], w, h, 8),
        ];
        let (pixels, pw, ph) = render(&rows, 8);
        assert_eq!((pw, ph), (3 * 12 + 4, 2 * 12 + 4));
        assert_eq!(pixels.len(), pw * ph * 3);
        assert!(pixels.chunks_exact(3).any(|p| p == [255, 0, 0]));
        assert_eq!(heat_colour(0.0), [0, 0, 127]);
        assert_eq!(heat_colour(1.0), [127, 0, 0]);
    }
}
