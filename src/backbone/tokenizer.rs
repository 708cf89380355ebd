//! The tokenizer: images in, per-level feature maps out (the paper's "image tokenized"
//! step). It joins the image input stage to the backbone: every image of a batch is
//! checked, converted to the backbone's input size, and the batch runs in one session call.

use super::{Backbone, FeatureMap};
use crate::image::{to_backbone_input, ImageView, InputGeometry, InputSpec};
use crate::Result;

/// The tokens of a batch: one feature map per backbone level, and where each image landed
/// in the input (to map results back onto the image's own pixels).
#[derive(Debug, Clone)]
pub struct Tokens {
    /// One map per level, finest first, each `[batch, C_h, h_h, w_h]`.
    pub levels: Vec<FeatureMap>,
    /// One geometry per image, in batch order.
    pub geometries: Vec<InputGeometry>,
}

/// A backbone with a fixed input size.
#[derive(Debug)]
pub struct Tokenizer {
    backbone: Backbone,
    input: InputSpec,
}

impl Tokenizer {
    /// Pairs `backbone` with the input size and resize mode of `input`; the size must be a
    /// multiple of the backbone's input multiple ([`crate::ErrorKind::Config`] otherwise).
    pub fn new(backbone: Backbone, input: InputSpec) -> Result<Self> {
        backbone
            .spec()
            .check_input_size(input.width as usize, input.height as usize)?;
        Ok(Tokenizer { backbone, input })
    }

    /// The backbone.
    pub fn backbone(&self) -> &Backbone {
        &self.backbone
    }

    /// The input size, resize mode and pixel limit.
    pub fn input(&self) -> &InputSpec {
        &self.input
    }

    /// The token grid `(height, width)` of each level for this input size.
    pub fn grids(&self) -> Vec<(usize, usize)> {
        let (w, h) = (self.input.width as usize, self.input.height as usize);
        self.backbone
            .spec()
            .levels
            .iter()
            .map(|l| (h / l.stride, w / l.stride))
            .collect()
    }

    /// Tokenizes a batch. Every image is checked before any work is done, so a bad image
    /// fails the call without running the backbone; the error names its index.
    pub fn tokenize(&self, images: &[ImageView]) -> Result<Tokens> {
        if images.is_empty() {
            return Err(crate::Error::invalid_argument(
                "tokenize was given no images",
            ));
        }
        for (index, image) in images.iter().enumerate() {
            image
                .check_limits(&self.input.limits)
                .map_err(|e| e.context(format!("image {index}")))?;
        }
        let per_image = self.input.buffer_len()?;
        let batch_len = per_image.checked_mul(images.len()).ok_or_else(|| {
            crate::Error::invalid_argument(format!(
                "a batch of {} images at {}x{} does not fit in memory",
                images.len(),
                self.input.width,
                self.input.height
            ))
        })?;
        let mut batch = vec![0f32; batch_len];
        let geometries = images
            .iter()
            .zip(batch.chunks_mut(per_image))
            .enumerate()
            .map(|(index, (image, chunk))| {
                to_backbone_input(image, &self.input, chunk)
                    .map_err(|e| e.context(format!("image {index}")))
            })
            .collect::<Result<Vec<_>>>()?;
        let levels = self.backbone.run(
            &batch,
            images.len(),
            self.input.height as usize,
            self.input.width as usize,
        )?;
        Ok(Tokens { levels, geometries })
    }
}
