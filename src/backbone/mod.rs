//! The frozen backbone (the paper's tokenizer): finding and loading ONNX Runtime, the
//! backbone contract, and running a backbone on batches of images.

pub mod contract;
mod onnx_file;
pub mod runtime;
mod session;
mod session_pool;
mod tokenizer;

pub use contract::{BackboneSpec, OutputLevel};
pub use session::{ActiveDevice, Backbone, BackboneIdentity, BackboneOptions, FeatureMap};
pub use tokenizer::{Tokenizer, Tokens};

#[cfg(feature = "internals")]
pub use session_pool::live_pools;
