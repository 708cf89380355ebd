//! The engine's one error type.
//!
//! Every fallible engine call returns [`Result`]. An [`Error`] carries an [`ErrorKind`]
//! (what class of failure it is: the C ABI maps each kind to its own status code) and a
//! message meant for a person: it names the file, the value and the limit involved.

use std::fmt;

/// The class of a failure. Each kind maps to one C status code; kinds are never reused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// An argument is out of range or inconsistent (not an image or a file problem).
    InvalidArgument,
    /// An image view is unusable: no data, zero size, a stride shorter than a row,
    /// a buffer shorter than the view claims.
    InvalidImage,
    /// An image is larger than the configured pixel limit.
    ImageTooLarge,
    /// An image file could not be decoded (corrupt, unsupported format or depth).
    ImageDecode,
    /// A file could not be read or written.
    Io,
    /// The ONNX Runtime library was not found, could not be loaded, or is too old.
    RuntimeNotFound,
    /// ONNX Runtime failed while creating a session or running it.
    Runtime,
    /// The backbone ONNX file does not meet the contract in DESIGN.md.
    BackboneContract,
    /// The configuration is invalid (for example a prediction step too large for the grid).
    Config,
    /// A model file is malformed or does not match the configuration or backbone.
    ModelFile,
    /// A CUDA device was requested and could not be used.
    Cuda,
    /// The caller's progress callback asked to stop.
    Cancelled,
    /// A bug in the library; the message says where.
    Internal,
    /// A batch of images would need more memory than the configured per-call limit
    /// ([`crate::ScoreConfig::max_batch_bytes`]); score fewer images per call.
    BatchTooLarge,
    /// The training token cache reached its limit: memory
    /// ([`crate::TrainConfig::cache_limit_bytes`]) and then the temporary file
    /// ([`crate::TrainConfig::cache_disk_limit_bytes`]) are full.
    CacheFull,
    /// The model has not been trained (nor loaded from a trained model's file): it has no
    /// normal statistics or thresholds, so its scores would mean nothing.
    NotTrained,
    /// Another call already changes the model (training runs); nothing was changed.
    Busy,
}

/// An engine error: what kind of failure, and a message that says exactly what went wrong.
#[derive(Debug, Clone)]
pub struct Error {
    kind: ErrorKind,
    message: String,
}

/// The engine's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// An error of `kind` with a message for a person.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Error {
            kind,
            message: message.into(),
        }
    }

    /// The class of failure.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// The message, without the kind.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// Shorthand for [`ErrorKind::InvalidArgument`].
    pub fn invalid_argument(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::InvalidArgument, message)
    }

    /// Shorthand for [`ErrorKind::Config`].
    pub fn config(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Config, message)
    }

    /// An I/O error on `path`, keeping the operating system's reason.
    pub fn io(path: &std::path::Path, action: &str, source: &std::io::Error) -> Self {
        Self::new(
            ErrorKind::Io,
            format!("cannot {action} {}: {source}", path.display()),
        )
    }

    /// Adds context in front of the message, keeping the kind.
    pub fn context(mut self, context: impl fmt::Display) -> Self {
        self.message = format!("{context}: {}", self.message);
        self
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Error {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn context_keeps_kind_and_prefixes_message() {
        let e = Error::new(ErrorKind::ImageDecode, "bad header").context("reading a.png");
        assert_eq!(e.kind(), ErrorKind::ImageDecode);
        assert_eq!(e.to_string(), "reading a.png: bad header");
    }
}
