//! The library's error type: a status code (stable, shared with the C API) and a message.

use std::ffi::CStr;
use std::fmt;

// The one table of statuses. Each row: the documentation (written for C and Rust callers
// alike), the variant, its stable code, the C constant's name and the short description
// that `Display`, `vt_error_message` and `vt_status_str` start with. Everything else derives
// from it: the enum, `all`, `from_code`, `description`, the NUL-terminated C descriptions.
// The C constants in src/ffi/status.rs must be literals (cbindgen reads source, not macro
// output): unit tests there check their codes, and their doc comments in include/vtower.h,
// against this table.
macro_rules! statuses {
    ($($(#[doc = $doc:literal])+ $name:ident = $code:literal, $c_name:literal, $description:literal;)+) => {
        /// Why an operation failed. The numeric values are part of the C ABI (`VT_ERR_*`) and
        /// are never renumbered; new codes are only appended.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        #[repr(i32)]
        pub enum Status {
            $($(#[doc = $doc])+ $name = $code,)+
        }

        /// How many statuses there are.
        const COUNT: usize = [$($code),+].len();

        impl Status {
            /// Every status, in numeric order.
            pub const fn all() -> [Status; COUNT] {
                [$(Status::$name),+]
            }

            /// A short, static, human-readable description ("ok", "invalid argument", ...).
            pub const fn description(self) -> &'static str {
                match self {
                    $(Status::$name => $description,)+
                }
            }

            /// The same description as a C string (what `vt_status_str` returns).
            pub(crate) const fn description_c(self) -> &'static CStr {
                match self {
                    $(Status::$name => const {
                        match CStr::from_bytes_with_nul(concat!($description, "\0").as_bytes()) {
                            Ok(c) => c,
                            Err(_) => panic!("a status description contains a NUL"),
                        }
                    },)+
                }
            }

            /// The name of the C constant (`VT_OK`, `VT_ERR_IO`, ...).
            #[cfg(test)]
            pub(crate) const fn c_name(self) -> &'static str {
                match self {
                    $(Status::$name => $c_name,)+
                }
            }

            /// The documentation, one line per doc line (the C constant's doc comment).
            #[cfg(test)]
            pub(crate) const fn doc(self) -> &'static str {
                match self {
                    $(Status::$name => concat!($($doc, "\n"),+),)+
                }
            }
        }
    };
}

statuses! {
    /// Success.
    Ok = 0, "VT_OK", "ok";
    /// A caller error: a NULL pointer, a bad size or struct_size, a non-UTF-8 path, an
    /// out-of-range option, an image preprocessed by another model.
    InvalidArgument = 1, "VT_ERR_INVALID_ARGUMENT", "invalid argument";
    /// A file or folder could not be read (missing model folder, config.json, weights).
    Io = 2, "VT_ERR_IO", "i/o error";
    /// config.json names a model_type this library does not implement.
    UnsupportedModel = 3, "VT_ERR_UNSUPPORTED_MODEL", "unsupported model";
    /// config.json or preprocessor_config.json is malformed or contradicts the weights.
    BadConfig = 4, "VT_ERR_BAD_CONFIG", "bad model configuration";
    /// A safetensors file is corrupt or truncated, or a tensor is missing or misshapen.
    BadWeights = 5, "VT_ERR_BAD_WEIGHTS", "bad model weights";
    /// The image bytes could not be decoded (corrupt, truncated, unknown format, empty).
    ImageDecode = 6, "VT_ERR_IMAGE_DECODE", "image could not be decoded";
    /// The image exceeds a limit set at load (vt_load_params, LoadOptions): more pixels than
    /// max_image_pixels, or more embeddings than max_image_tokens, or (vt_forward and
    /// vt_forward_async) an estimated activation memory over max_forward_bytes.
    ImageTooLarge = 7, "VT_ERR_IMAGE_TOO_LARGE", "image too large";
    /// The requested compute device is not available.
    Device = 8, "VT_ERR_DEVICE", "compute device unavailable";
    /// Memory could not be allocated.
    OutOfMemory = 9, "VT_ERR_OUT_OF_MEMORY", "out of memory";
    /// The compute backend failed while running the model.
    Compute = 10, "VT_ERR_COMPUTE", "compute backend error";
    /// A panic inside vtower was caught at the API boundary (a bug; please report it).
    Panic = 11, "VT_ERR_PANIC", "internal panic (bug in vtower)";
    /// The job was cancelled (vt_job_cancel, vt_job_free) before it finished; the model is
    /// unaffected and stays usable.
    Cancelled = 12, "VT_ERR_CANCELLED", "cancelled";
}

impl Status {
    /// The status with this numeric value, if any.
    pub fn from_code(code: i32) -> Option<Status> {
        Status::all().into_iter().find(|s| *s as i32 == code)
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

    pub fn cancelled(message: impl Into<String>) -> Error {
        Error::new(Status::Cancelled, message)
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
