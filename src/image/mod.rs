//! Pixel formats and image views, conversion to the backbone input, image files.
//!
//! Images arrive as an [`ImageView`] (borrowed camera or `cv::Mat` memory, any stride,
//! one of the [`PixelFormat`]s) or are read from a file into an [`OwnedImage`] with
//! [`read_image_file`]. [`to_backbone_input`] turns a view into the backbone's input
//! tensor and returns the [`InputGeometry`] that maps results back onto the image.
//!
//! ```
//! use varad::image::{to_backbone_input, ImageView, InputSpec, PixelFormat, ResizeMode};
//!
//! // A 6 x 4 BGR8 frame whose rows are padded to 20 bytes.
//! let frame = vec![128u8; 20 * 4];
//! let view = ImageView::new(&frame, 6, 4, 20, PixelFormat::Bgr8)?;
//! let spec = InputSpec::new(28, 14).with_mode(ResizeMode::KeepAspect);
//! let mut input = vec![0.0f32; spec.buffer_len()?]; // [3, 14, 28]
//! let geometry = to_backbone_input(&view, &spec, &mut input)?;
//! let rect = geometry.input_rect_for_image(); // where to crop a map made on the input
//! assert_eq!((rect.x, rect.y, rect.width, rect.height), (3, 0, 21, 14));
//! # Ok::<(), varad::Error>(())
//! ```

mod convert;
mod file;
mod format;
mod geometry;
mod limits;
mod owned;
mod preprocess;
#[cfg(any(test, feature = "internals"))]
pub mod reference;
mod resize;
mod view;

pub use file::{read_image_file, write_png};
pub use format::PixelFormat;
pub use geometry::{InputGeometry, InputRect, InputSpec, ResizeMode, PAD_VALUE};
pub use limits::ImageLimits;
pub use owned::OwnedImage;
pub use preprocess::to_backbone_input;
pub use view::ImageView;
