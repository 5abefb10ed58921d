//! The library's error type: a status code (stable, shared with the C API) and a message.

use std::fmt;

/// Why an operation failed. The numeric values are part of the C ABI (`VT_ERR_*`) and are
/// never renumbered; new codes are only appended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(i32)]
pub enum Status {
    /// Success.
    Ok = 0,
    /// A caller error: NULL pointer, bad size, an image made by another model, ...
    InvalidArgument = 1,
    /// A file or folder could not be read.
    Io = 2,
    /// `config.json` names a model type this library does not implement.
    UnsupportedModel = 3,
    /// `config.json` / `preprocessor_config.json` is malformed or contradicts the weights.
    BadConfig = 4,
    /// A safetensors file is missing, corrupt, truncated, or lacks/misshapes a tensor.
    BadWeights = 5,
    /// The image bytes could not be decoded (corrupt, truncated, unsupported format).
    ImageDecode = 6,
    /// The image is larger than the configured pixel limit.
    ImageTooLarge = 7,
    /// The requested compute device is not available.
    Device = 8,
    /// An allocation failed.
    OutOfMemory = 9,
    /// The compute backend failed while running the model.
    Compute = 10,
    /// A panic was caught at the API boundary (a bug in vtower).
    Panic = 11,
}

impl Status {
    /// Every status, in numeric order.
    pub fn all() -> [Status; 12] {
        [
            Status::Ok,
            Status::InvalidArgument,
            Status::Io,
            Status::UnsupportedModel,
            Status::BadConfig,
            Status::BadWeights,
            Status::ImageDecode,
            Status::ImageTooLarge,
            Status::Device,
            Status::OutOfMemory,
            Status::Compute,
            Status::Panic,
        ]
    }

    /// The status with this numeric value, if any.
    pub fn from_code(code: i32) -> Option<Status> {
        Status::all().into_iter().find(|s| *s as i32 == code)
    }

    /// A short, static, human-readable description.
    pub fn description(self) -> &'static str {
        match self {
            Status::Ok => "ok",
            Status::InvalidArgument => "invalid argument",
            Status::Io => "i/o error",
            Status::UnsupportedModel => "unsupported model",
            Status::BadConfig => "bad model configuration",
            Status::BadWeights => "bad model weights",
            Status::ImageDecode => "image could not be decoded",
            Status::ImageTooLarge => "image too large",
            Status::Device => "compute device unavailable",
            Status::OutOfMemory => "out of memory",
            Status::Compute => "compute backend error",
            Status::Panic => "internal panic (bug in vtower)",
        }
    }
}

/// An error: a [`Status`] and a message that says precisely what went wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    status: Status,
    message: String,
}

/// Result alias used throughout the crate.
pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    /// A new error. `status` must not be [`Status::Ok`].
    pub fn new(status: Status, message: impl Into<String>) -> Error {
        debug_assert!(status != Status::Ok);
        Error {
            status,
            message: message.into(),
        }
    }

    pub fn invalid_argument(message: impl Into<String>) -> Error {
        Error::new(Status::InvalidArgument, message)
    }

    pub fn bad_config(message: impl Into<String>) -> Error {
        Error::new(Status::BadConfig, message)
    }

    pub fn bad_weights(message: impl Into<String>) -> Error {
        Error::new(Status::BadWeights, message)
    }

    pub fn image_decode(message: impl Into<String>) -> Error {
        Error::new(Status::ImageDecode, message)
    }

    pub fn compute(message: impl Into<String>) -> Error {
        Error::new(Status::Compute, message)
    }

    /// An I/O error on `path`.
    pub fn io(path: &std::path::Path, err: &std::io::Error) -> Error {
        Error::new(Status::Io, format!("{}: {err}", path.display()))
    }

    pub fn status(&self) -> Status {
        self.status
    }

    pub fn message(&self) -> &str {
        &self.message
    }

    /// The same error with `context: ` put before its message.
    pub fn context(self, context: impl fmt::Display) -> Error {
        Error {
            status: self.status,
            message: format!("{context}: {}", self.message),
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.status.description(), self.message)
    }
}

impl std::error::Error for Error {}

impl From<candle_core::Error> for Error {
    fn from(err: candle_core::Error) -> Error {
        let text = err.to_string();
        if text.contains("out of memory") || text.contains("OUT_OF_MEMORY") {
            Error::new(Status::OutOfMemory, text)
        } else {
            Error::compute(text)
        }
    }
}
