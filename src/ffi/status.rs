//! Status codes.
//!
//! The codes, their descriptions and their documentation come from the table in
//! src/error.rs. The constants below repeat codes and doc comments as literals because
//! cbindgen reads them from this source; the tests at the bottom hold them to the table.

use std::ffi::c_char;

use crate::error::Status;

/// Result of a fallible call: `VT_OK` (0) or one of the `VT_ERR_*` codes. The values are
/// stable and never renumbered; new codes may be added, so treat unknown non-zero values
/// as failures.
pub type vt_status = i32;

/// Success.
pub const VT_OK: vt_status = 0;
/// A caller error: a NULL pointer, a bad size or struct_size, a non-UTF-8 path, an
/// out-of-range option, an image preprocessed by another model.
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
/// The image exceeds a limit set at load (vt_load_params, LoadOptions): more pixels than
/// max_image_pixels, or more embeddings than max_image_tokens, or (vt_forward and
/// vt_forward_async) an estimated activation memory over max_forward_bytes.
pub const VT_ERR_IMAGE_TOO_LARGE: vt_status = 7;
/// The requested compute device is not available.
pub const VT_ERR_DEVICE: vt_status = 8;
/// Memory could not be allocated.
pub const VT_ERR_OUT_OF_MEMORY: vt_status = 9;
/// The compute backend failed while running the model.
pub const VT_ERR_COMPUTE: vt_status = 10;
/// A panic inside vtower was caught at the API boundary (a bug; please report it).
pub const VT_ERR_PANIC: vt_status = 11;
/// The job was cancelled (vt_job_cancel, vt_job_free) before it finished; the model is
/// unaffected and stays usable.
pub const VT_ERR_CANCELLED: vt_status = 12;

/// Every C constant with its name, in the table's order.
const CONSTANTS: [(&str, vt_status); Status::all().len()] = [
    ("VT_OK", VT_OK),
    ("VT_ERR_INVALID_ARGUMENT", VT_ERR_INVALID_ARGUMENT),
    ("VT_ERR_IO", VT_ERR_IO),
    ("VT_ERR_UNSUPPORTED_MODEL", VT_ERR_UNSUPPORTED_MODEL),
    ("VT_ERR_BAD_CONFIG", VT_ERR_BAD_CONFIG),
    ("VT_ERR_BAD_WEIGHTS", VT_ERR_BAD_WEIGHTS),
    ("VT_ERR_IMAGE_DECODE", VT_ERR_IMAGE_DECODE),
    ("VT_ERR_IMAGE_TOO_LARGE", VT_ERR_IMAGE_TOO_LARGE),
    ("VT_ERR_DEVICE", VT_ERR_DEVICE),
    ("VT_ERR_OUT_OF_MEMORY", VT_ERR_OUT_OF_MEMORY),
    ("VT_ERR_COMPUTE", VT_ERR_COMPUTE),
    ("VT_ERR_PANIC", VT_ERR_PANIC),
    ("VT_ERR_CANCELLED", VT_ERR_CANCELLED),
];

// Each constant has its status's code (checked at compile time; the array's length makes
// a status without a constant an error too). The names are checked by the tests below.
const _: () = {
    let all = Status::all();
    let mut i = 0;
    while i < all.len() {
        assert!(
            CONSTANTS[i].1 == all[i] as i32,
            "a VT_* constant differs from the table"
        );
        i += 1;
    }
};

/// A static, NUL-terminated description of a status code: "ok" for VT_OK, "invalid
/// argument" for VT_ERR_INVALID_ARGUMENT, and so on (the same text a vt_error's message
/// starts with). Unknown codes give "unknown status". Never NULL; never free it. Any thread.
#[no_mangle]
pub extern "C" fn vt_status_str(status: vt_status) -> *const c_char {
    match Status::from_code(status) {
        Some(s) => s.description_c().as_ptr(),
        None => c"unknown status".as_ptr(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::CStr;

    #[test]
    fn codes_match_the_table() {
        for ((name, code), status) in CONSTANTS.into_iter().zip(Status::all()) {
            assert_eq!((name, code), (status.c_name(), status as i32), "{status:?}");
            assert_eq!(Status::from_code(code), Some(status));
        }
        assert_eq!(Status::from_code(CONSTANTS.len() as i32), None);
        assert_eq!(Status::from_code(-1), None);
    }

    #[test]
    fn every_status_has_its_description() {
        for s in Status::all() {
            let c = unsafe { CStr::from_ptr(vt_status_str(s as i32)) };
            assert_eq!(c.to_str().unwrap(), s.description());
            assert!(!s.description().is_empty());
        }
        let c = unsafe { CStr::from_ptr(vt_status_str(999)) };
        assert_eq!(c.to_str().unwrap(), "unknown status");
    }

    /// The doc comment cbindgen put above `#define <name> ` in the header, as plain text.
    fn header_doc(header: &str, name: &str) -> String {
        let define = format!("#define {name} ");
        let lines: Vec<&str> = header.lines().collect();
        let at = lines
            .iter()
            .position(|l| l.starts_with(&define))
            .unwrap_or_else(|| panic!("{name} is not in include/vtower.h"));
        let mut doc = Vec::new();
        for line in lines[..at].iter().rev().skip_while(|l| l.trim().is_empty()) {
            let t = line.trim();
            if t == "/**" {
                break;
            }
            if t != "*/" {
                doc.push(t.trim_start_matches('*').trim());
            }
        }
        doc.reverse();
        doc.join(" ")
    }

    #[test]
    fn header_docs_match_the_table() {
        let header = include_str!("../../include/vtower.h");
        for s in Status::all() {
            let table = s.doc().split_whitespace().collect::<Vec<_>>().join(" ");
            assert_eq!(header_doc(header, s.c_name()), table, "{s:?}");
        }
    }
}
