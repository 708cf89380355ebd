//! Where the image lands inside the backbone input, and the way back.

use super::ImageLimits;
use crate::{Error, Result};

/// How an image whose aspect ratio differs from the input's is fitted into it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum ResizeMode {
    /// Scale each axis on its own so the image fills the whole input (the default: every
    /// input pixel carries image content; parts look slightly squashed, which the model
    /// learns from normal images scored the same way).
    #[default]
    Stretch,
    /// Scale both axes by the same factor so the whole image fits, centre it, and fill
    /// the rest with the constant grey [`PAD_VALUE`].
    KeepAspect,
}

/// The value (in each of R, G, B) of input pixels that [`ResizeMode::KeepAspect`] leaves
/// outside the image.
///
/// A constant rather than replicated edges: a flat field has no texture for the backbone
/// to react to, while replicated edges draw streaks that look like structure. Mid grey
/// sits near the ImageNet mean, so after the backbone's normalisation it is close to
/// zero, like the zero padding the backbone's own layers use. Scores in the padding are
/// meaningless either way and are cropped away with
/// [`InputGeometry::input_rect_for_image`].
pub const PAD_VALUE: f32 = 0.5;

/// What the backbone input looks like: its size, and how images are fitted into it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct InputSpec {
    /// Input width in pixels. The caller checks that it suits the backbone (a multiple of
    /// its stride); here it only has to be at least 1.
    pub width: u32,
    /// Input height in pixels (see `width`).
    pub height: u32,
    /// Aspect handling. Default [`ResizeMode::Stretch`].
    pub mode: ResizeMode,
    /// The largest image accepted. Default [`ImageLimits::default`].
    pub limits: ImageLimits,
}

impl InputSpec {
    /// A `width` x `height` input with the default mode and limits.
    pub fn new(width: u32, height: u32) -> Self {
        InputSpec {
            width,
            height,
            mode: ResizeMode::default(),
            limits: ImageLimits::default(),
        }
    }

    /// The same spec with `mode`.
    pub fn with_mode(self, mode: ResizeMode) -> Self {
        InputSpec { mode, ..self }
    }

    /// The number of f32 values one preprocessed image occupies: `3 * height * width`.
    ///
    /// [`crate::ErrorKind::InvalidArgument`] for a zero size or one whose buffer
    /// would not fit in memory.
    pub fn buffer_len(&self) -> Result<usize> {
        if self.width == 0 || self.height == 0 {
            return Err(Error::invalid_argument(format!(
                "input size {} x {} has a zero side",
                self.width, self.height
            )));
        }
        (self.width as usize)
            .checked_mul(self.height as usize)
            .and_then(|n| n.checked_mul(3))
            .filter(|&n| n <= isize::MAX as usize / std::mem::size_of::<f32>())
            .ok_or_else(|| {
                Error::invalid_argument(format!(
                    "input size {} x {} is too large for memory",
                    self.width, self.height
                ))
            })
    }
}

/// A rectangle of whole input pixels: columns `x..x + width`, rows `y..y + height`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct InputRect {
    /// First column.
    pub x: u32,
    /// First row.
    pub y: u32,
    /// Number of columns (at least 1).
    pub width: u32,
    /// Number of rows (at least 1).
    pub height: u32,
}

/// How an image was placed in the backbone input: enough to map anything computed on the
/// input (an anomaly map) back onto the image.
///
/// Coordinates here are continuous, with pixel `i` covering `[i, i + 1)`, so its centre
/// is at `i + 0.5`; this is the convention the resampling itself uses.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct InputGeometry {
    /// The image's width in pixels.
    pub image_width: u32,
    /// The image's height in pixels.
    pub image_height: u32,
    /// The input's width in pixels.
    pub input_width: u32,
    /// The input's height in pixels.
    pub input_height: u32,
    /// The part of the input that holds the image; the whole input for
    /// [`ResizeMode::Stretch`].
    pub rect: InputRect,
    /// Input pixels per image pixel along x: `rect.width / image_width`.
    pub scale_x: f64,
    /// Input pixels per image pixel along y: `rect.height / image_height`.
    pub scale_y: f64,
}

impl InputGeometry {
    /// Where a `image_width` x `image_height` image goes in the input `spec` describes.
    ///
    /// For [`ResizeMode::KeepAspect`] the image is scaled by
    /// `min(input_width / image_width, input_height / image_height)`, its size in input
    /// pixels rounded to whole pixels (at least 1), and centred (an odd leftover pixel goes
    /// to the right or bottom). The scale factors are those of the rounded size, so the
    /// image covers the rectangle exactly.
    ///
    /// # Panics
    ///
    /// If a size is zero (callers validate sizes first).
    pub fn new(image_width: u32, image_height: u32, spec: &InputSpec) -> Self {
        assert!(
            image_width > 0 && image_height > 0 && spec.width > 0 && spec.height > 0,
            "geometry of a {image_width} x {image_height} image in a {} x {} input",
            spec.width,
            spec.height
        );
        let (w, h) = match spec.mode {
            ResizeMode::Stretch => (spec.width, spec.height),
            ResizeMode::KeepAspect => {
                let s = (f64::from(spec.width) / f64::from(image_width))
                    .min(f64::from(spec.height) / f64::from(image_height));
                let fit = |image: u32, input: u32| {
                    ((f64::from(image) * s).round() as u32).clamp(1, input)
                };
                (fit(image_width, spec.width), fit(image_height, spec.height))
            }
        };
        InputGeometry {
            image_width,
            image_height,
            input_width: spec.width,
            input_height: spec.height,
            rect: InputRect {
                x: (spec.width - w) / 2,
                y: (spec.height - h) / 2,
                width: w,
                height: h,
            },
            scale_x: f64::from(w) / f64::from(image_width),
            scale_y: f64::from(h) / f64::from(image_height),
        }
    }

    /// The rectangle of the input that holds the image: crop a map computed on the input
    /// to it, then resize the crop to `image_width` x `image_height` to get the map on the
    /// image.
    pub fn input_rect_for_image(&self) -> InputRect {
        self.rect
    }

    /// The image point that input point `(x, y)` shows (continuous coordinates; points in
    /// the padding map outside `[0, image_width] x [0, image_height]`).
    pub fn input_to_image(&self, x: f64, y: f64) -> (f64, f64) {
        (
            (x - f64::from(self.rect.x)) / self.scale_x,
            (y - f64::from(self.rect.y)) / self.scale_y,
        )
    }

    /// The input point where image point `(x, y)` lands (continuous coordinates).
    pub fn image_to_input(&self, x: f64, y: f64) -> (f64, f64) {
        (
            f64::from(self.rect.x) + x * self.scale_x,
            f64::from(self.rect.y) + y * self.scale_y,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stretch_fills_the_input() {
        let g = InputGeometry::new(2448, 2048, &InputSpec::new(1024, 1024));
        let r = g.input_rect_for_image();
        assert_eq!((r.x, r.y, r.width, r.height), (0, 0, 1024, 1024));
        assert_eq!(g.scale_x, 1024.0 / 2448.0);
        assert_eq!(g.scale_y, 0.5);
        assert_eq!(g.image_to_input(2448.0, 2048.0), (1024.0, 1024.0));
    }

    #[test]
    fn keep_aspect_landscape_and_portrait() {
        let spec = InputSpec::new(1024, 1024).with_mode(ResizeMode::KeepAspect);
        // 2048 * 1024 / 2448 = 856.68 -> 857 rows, (1024 - 857) / 2 = 83 above.
        let g = InputGeometry::new(2448, 2048, &spec);
        assert_eq!(
            g.rect,
            InputRect {
                x: 0,
                y: 83,
                width: 1024,
                height: 857
            }
        );
        assert_eq!(g.scale_y, 857.0 / 2048.0);
        let g = InputGeometry::new(
            100,
            400,
            &InputSpec::new(64, 64).with_mode(ResizeMode::KeepAspect),
        );
        assert_eq!(
            g.rect,
            InputRect {
                x: 24,
                y: 0,
                width: 16,
                height: 64
            }
        );
        // Same aspect: fills everything.
        let g = InputGeometry::new(
            50,
            25,
            &InputSpec::new(200, 100).with_mode(ResizeMode::KeepAspect),
        );
        assert_eq!(
            (g.rect.x, g.rect.y, g.rect.width, g.rect.height),
            (0, 0, 200, 100)
        );
        // A sliver never vanishes.
        let g = InputGeometry::new(
            10000,
            1,
            &InputSpec::new(64, 64).with_mode(ResizeMode::KeepAspect),
        );
        assert_eq!((g.rect.width, g.rect.height, g.rect.y), (64, 1, 31));
    }

    #[test]
    fn mappings_are_inverse_and_hit_the_rect_corners() {
        for mode in [ResizeMode::Stretch, ResizeMode::KeepAspect] {
            for (iw, ih, w, h) in [(2448, 2048, 1024, 1024), (37, 23, 16, 16), (10, 10, 33, 7)] {
                let g = InputGeometry::new(iw, ih, &InputSpec::new(w, h).with_mode(mode));
                let r = g.input_rect_for_image();
                let (x0, y0) = g.image_to_input(0.0, 0.0);
                let (x1, y1) = g.image_to_input(f64::from(iw), f64::from(ih));
                assert_eq!((x0, y0), (f64::from(r.x), f64::from(r.y)));
                assert!((x1 - f64::from(r.x + r.width)).abs() < 1e-9);
                assert!((y1 - f64::from(r.y + r.height)).abs() < 1e-9);
                assert!(r.x + r.width <= w && r.y + r.height <= h);
                for (px, py) in [(0.5, 0.5), (3.25, 7.0), (f64::from(iw) - 0.5, 1.0)] {
                    let (ix, iy) = g.image_to_input(px, py);
                    let (bx, by) = g.input_to_image(ix, iy);
                    assert!((bx - px).abs() < 1e-9 && (by - py).abs() < 1e-9);
                }
            }
        }
    }

    #[test]
    fn buffer_len_checks() {
        assert_eq!(InputSpec::new(4, 5).buffer_len().unwrap(), 60);
        let kind = |w, h| InputSpec::new(w, h).buffer_len().unwrap_err().kind();
        assert_eq!(kind(0, 5), crate::ErrorKind::InvalidArgument);
        assert_eq!(kind(5, 0), crate::ErrorKind::InvalidArgument);
    }
}
