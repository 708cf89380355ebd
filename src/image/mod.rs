//! Pixel formats and image views, conversion to the backbone input, image files.
//!
//! Images arrive as an [`ImageView`] (borrowed camera or `cv::Mat` memory, any stride,
//! one of the [`PixelFormat`]s) or are read from a file into an [`OwnedImage`] with
//! [`read_image_file`]. [`to_backbone_input`] turns a view into the backbone's input
//! tensor and returns the [`InputGeometry`] that maps results back onto the image.

mod convert;
mod file;
mod format;
mod geometry;
mod limits;
mod owned;
mod preprocess;
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
