//! Owned error objects handed to the caller.

use std::ffi::{c_char, CString};

use crate::error::{Error, Status};
use crate::ffi::status::{vt_status, VT_ERR_INVALID_ARGUMENT};

/// An error: a status code and a UTF-8 message that says precisely what failed. Created by
/// vtower on failure when the caller passes a non-NULL `err_out`; owned by the caller, who
/// frees it with vt_error_free. A plain value: one thread at a time, any thread.
pub struct vt_error {
    status: vt_status,
    message: CString,
}

impl vt_error {
    pub(crate) fn from_error(err: &Error) -> vt_error {
        let text = format!("{}: {}", err.status().description(), err.message());
        let message = CString::new(text.replace('\0', "\\0")).expect("NULs were replaced");
        vt_error {
            status: err.status() as i32,
            message,
        }
    }
}

/// Stores `err` into `*err_out` when `err_out` is not NULL.
pub(crate) fn report(err_out: *mut *mut vt_error, err: &Error) {
    if !err_out.is_null() {
        let boxed = Box::into_raw(Box::new(vt_error::from_error(err)));
        // SAFETY: the caller passed a writable `vt_error **` (documented contract).
        unsafe { *err_out = boxed };
    }
}

/// The status code of an error. `err` NULL gives VT_ERR_INVALID_ARGUMENT. Any thread.
#[no_mangle]
pub extern "C" fn vt_error_code(err: *const vt_error) -> vt_status {
    // SAFETY: a non-NULL `err` was produced by vtower and not yet freed (contract).
    match unsafe { err.as_ref() } {
        Some(e) => e.status,
        None => VT_ERR_INVALID_ARGUMENT,
    }
}

/// The error's message: NUL-terminated UTF-8, e.g. "bad model weights: tensor
/// `encoder.layers.0.mlp.fc1.weight`: expected shape [96, 64] (from config.json), found [80, 64]".
/// Borrowed from `err`: valid until vt_error_free(err). `err` NULL gives "".
#[no_mangle]
pub extern "C" fn vt_error_message(err: *const vt_error) -> *const c_char {
    // SAFETY: as in vt_error_code.
    match unsafe { err.as_ref() } {
        Some(e) => e.message.as_ptr(),
        None => c"".as_ptr(),
    }
}

/// Frees an error. NULL is a no-op.
#[no_mangle]
pub extern "C" fn vt_error_free(err: *mut vt_error) {
    if !err.is_null() {
        // SAFETY: `err` came from Box::into_raw in `report` and is freed once (contract).
        drop(unsafe { Box::from_raw(err) });
    }
}

/// A status for an error (for functions returning vt_status).
pub(crate) fn status_of(err: &Error) -> vt_status {
    debug_assert!(err.status() != Status::Ok);
    err.status() as i32
}
