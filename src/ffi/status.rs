//! Status codes.

use std::ffi::c_char;

use crate::error::Status;

/// Result of a fallible call: `VT_OK` (0) or one of the `VT_ERR_*` codes. The values are
/// stable and never renumbered; new codes may be added, so treat unknown non-zero values
/// as failures.
pub type vt_status = i32;

/// Success.
pub const VT_OK: vt_status = 0;
/// A caller error: a NULL pointer, a bad size or struct_size, a non-UTF-8 path, an image
/// preprocessed by another model.
pub const VT_ERR_INVALID_ARGUMENT: vt_status = 1;
/// A file or folder could not be read (missing model folder, config.json, weights).
pub const VT_ERR_IO: vt_status = 2;
/// config.json names a model_type this library does not implement.
pub const VT_ERR_UNSUPPORTED_MODEL: vt_status = 3;
/// config.json or preprocessor_config.json is malformed or contradicts the weights.
pub const VT_ERR_BAD_CONFIG: vt_status = 4;
/// A safetensors file is corrupt or truncated, or a tensor is missing or misshapen.
pub const VT_ERR_BAD_WEIGHTS: vt_status = 5;
/// The image bytes could not be decoded (corrupt, truncated, unknown format, empty).
pub const VT_ERR_IMAGE_DECODE: vt_status = 6;
/// The image has more pixels than the limit set in vt_load_params.max_image_pixels.
pub const VT_ERR_IMAGE_TOO_LARGE: vt_status = 7;
/// The requested compute device is not available.
pub const VT_ERR_DEVICE: vt_status = 8;
/// Memory could not be allocated.
pub const VT_ERR_OUT_OF_MEMORY: vt_status = 9;
/// The compute backend failed while running the model.
pub const VT_ERR_COMPUTE: vt_status = 10;
/// A panic inside vtower was caught at the API boundary (a bug; please report it).
pub const VT_ERR_PANIC: vt_status = 11;

/// A static, NUL-terminated description of a status code ("ok", "invalid argument", ...).
/// Unknown codes give "unknown status". Never NULL; never free it. Any thread.
#[no_mangle]
pub extern "C" fn vt_status_str(status: vt_status) -> *const c_char {
    let s: &'static [u8] = match Status::from_code(status) {
        Some(Status::Ok) => b"ok\0",
        Some(Status::InvalidArgument) => b"invalid argument\0",
        Some(Status::Io) => b"i/o error\0",
        Some(Status::UnsupportedModel) => b"unsupported model\0",
        Some(Status::BadConfig) => b"bad model configuration\0",
        Some(Status::BadWeights) => b"bad model weights\0",
        Some(Status::ImageDecode) => b"image could not be decoded\0",
        Some(Status::ImageTooLarge) => b"image too large\0",
        Some(Status::Device) => b"compute device unavailable\0",
        Some(Status::OutOfMemory) => b"out of memory\0",
        Some(Status::Compute) => b"compute backend error\0",
        Some(Status::Panic) => b"internal panic (bug in vtower)\0",
        None => b"unknown status\0",
    };
    s.as_ptr().cast()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::CStr;

    #[test]
    fn codes_match_the_rust_statuses() {
        let codes = [
            (VT_OK, Status::Ok),
            (VT_ERR_INVALID_ARGUMENT, Status::InvalidArgument),
            (VT_ERR_IO, Status::Io),
            (VT_ERR_UNSUPPORTED_MODEL, Status::UnsupportedModel),
            (VT_ERR_BAD_CONFIG, Status::BadConfig),
            (VT_ERR_BAD_WEIGHTS, Status::BadWeights),
            (VT_ERR_IMAGE_DECODE, Status::ImageDecode),
            (VT_ERR_IMAGE_TOO_LARGE, Status::ImageTooLarge),
            (VT_ERR_DEVICE, Status::Device),
            (VT_ERR_OUT_OF_MEMORY, Status::OutOfMemory),
            (VT_ERR_COMPUTE, Status::Compute),
            (VT_ERR_PANIC, Status::Panic),
        ];
        assert_eq!(codes.len(), Status::all().len());
        for (code, status) in codes {
            assert_eq!(code, status as i32, "{status:?}");
        }
    }

    #[test]
    fn every_status_has_its_description() {
        for s in Status::all() {
            let c = unsafe { CStr::from_ptr(vt_status_str(s as i32)) };
            assert_eq!(c.to_str().unwrap(), s.description());
        }
        let c = unsafe { CStr::from_ptr(vt_status_str(999)) };
        assert_eq!(c.to_str().unwrap(), "unknown status");
    }
}
