//! Pixel formats and image views, conversion to the backbone input, image files.
