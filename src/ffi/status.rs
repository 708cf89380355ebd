//! The status code every fallible C call returns.

use crate::ErrorKind;

/// The result of every fallible `varad_*` call. `VARAD_OK` is 0; every other value names
/// one class of failure, and `varad_last_error_message()` says what exactly went wrong.
/// Values are explicit and never reused.
#[repr(C)]
#[allow(non_camel_case_types)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VaradStatus {
    /// Success.
    VARAD_OK = 0,
    /// An argument is out of range or inconsistent.
    VARAD_ERR_INVALID_ARGUMENT = 1,
    /// A required pointer argument is NULL.
    VARAD_ERR_NULL_POINTER = 2,
    /// An image view is unusable (no data, zero size, stride shorter than a row, unknown format).
    VARAD_ERR_INVALID_IMAGE = 3,
    /// An image exceeds the configured pixel limit.
    VARAD_ERR_IMAGE_TOO_LARGE = 4,
    /// An image file could not be decoded.
    VARAD_ERR_IMAGE_DECODE = 5,
    /// A file could not be read or written.
    VARAD_ERR_IO = 6,
    /// The ONNX Runtime library was not found, could not be loaded, or is too old.
    VARAD_ERR_RUNTIME_NOT_FOUND = 7,
    /// ONNX Runtime failed while creating or running a session.
    VARAD_ERR_RUNTIME = 8,
    /// The backbone ONNX file does not meet the backbone contract.
    VARAD_ERR_BACKBONE_CONTRACT = 9,
    /// The configuration is invalid.
    VARAD_ERR_CONFIG = 10,
    /// A model file is malformed or does not match.
    VARAD_ERR_MODEL_FILE = 11,
    /// A CUDA device was requested and could not be used.
    VARAD_ERR_CUDA = 12,
    /// The progress callback asked to stop.
    VARAD_ERR_CANCELLED = 13,
    /// An output buffer is too small; the call says how much is needed.
    VARAD_ERR_BUFFER_TOO_SMALL = 14,
    /// The library caught a panic (a bug); the message says where.
    VARAD_ERR_PANIC = 15,
    /// Another internal error (a bug); the message says where.
    VARAD_ERR_INTERNAL = 16,
    /// Another thread is already training the model: a second `varad_train`, or a
    /// threshold change, while one runs. (Scoring never waits for training and never
    /// returns this.) Retry when the training has returned; nothing was changed.
    VARAD_ERR_BUSY = 17,
    /// The call needs a calibrated model (a trained one, or one loaded from a trained
    /// model's file) or a result scored with one.
    VARAD_ERR_NOT_CALIBRATED = 18,
    /// A batch of images would need more memory than the model's per-call limit
    /// (`VaradParams.max_batch_bytes`); score fewer or smaller images per call.
    VARAD_ERR_BATCH_TOO_LARGE = 19,
    /// The training cache is full: its memory (`VaradParams.cache_limit_bytes`) and its
    /// temporary file (`VaradParams.cache_disk_limit_bytes`) hold all they may.
    VARAD_ERR_CACHE_FULL = 20,
    /// The model is untrained (made by `varad_create` and not yet trained, or loaded from
    /// the file of an untrained model): scoring it would give a meaningless map and score,
    /// so it is refused. Train it with `varad_train`, or load a trained model's file.
    VARAD_ERR_NOT_TRAINED = 21,
}

impl From<ErrorKind> for VaradStatus {
    fn from(kind: ErrorKind) -> Self {
        use VaradStatus::*;
        match kind {
            ErrorKind::InvalidArgument => VARAD_ERR_INVALID_ARGUMENT,
            ErrorKind::InvalidImage => VARAD_ERR_INVALID_IMAGE,
            ErrorKind::ImageTooLarge => VARAD_ERR_IMAGE_TOO_LARGE,
            ErrorKind::ImageDecode => VARAD_ERR_IMAGE_DECODE,
            ErrorKind::Io => VARAD_ERR_IO,
            ErrorKind::RuntimeNotFound => VARAD_ERR_RUNTIME_NOT_FOUND,
            ErrorKind::Runtime => VARAD_ERR_RUNTIME,
            ErrorKind::BackboneContract => VARAD_ERR_BACKBONE_CONTRACT,
            ErrorKind::Config => VARAD_ERR_CONFIG,
            ErrorKind::ModelFile => VARAD_ERR_MODEL_FILE,
            ErrorKind::Cuda => VARAD_ERR_CUDA,
            ErrorKind::Cancelled => VARAD_ERR_CANCELLED,
            ErrorKind::Internal => VARAD_ERR_INTERNAL,
            ErrorKind::BatchTooLarge => VARAD_ERR_BATCH_TOO_LARGE,
            ErrorKind::CacheFull => VARAD_ERR_CACHE_FULL,
            ErrorKind::NotTrained => VARAD_ERR_NOT_TRAINED,
            ErrorKind::Busy => VARAD_ERR_BUSY,
        }
    }
}
