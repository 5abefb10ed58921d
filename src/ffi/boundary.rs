//! The panic boundary and pointer checks every exported function goes through.

use std::panic::{catch_unwind, AssertUnwindSafe};

use crate::error::{Error, Result, Status};
use crate::ffi::error::{report, status_of, vt_error};
use crate::ffi::status::{vt_status, VT_OK};

fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "unknown panic payload".to_string()
    }
}

/// Runs `body`, turning errors and panics into a status and an optional `vt_error`.
pub(crate) fn guard(err_out: *mut *mut vt_error, body: impl FnOnce() -> Result<()>) -> vt_status {
    let err = match catch_unwind(AssertUnwindSafe(body)) {
        Ok(Ok(())) => return VT_OK,
        Ok(Err(e)) => e,
        Err(payload) => Error::new(
            Status::Panic,
            format!("panic inside vtower: {}", panic_message(payload.as_ref())),
        ),
    };
    crate::log::log(crate::log::LogLevel::Debug, &err.to_string());
    // Reporting itself allocates; never let that unwind into C.
    let _ = catch_unwind(AssertUnwindSafe(|| report(err_out, &err)));
    status_of(&err)
}

/// Runs `body` for a function without a status result; a panic gives `fallback`.
pub(crate) fn guard_value<T>(fallback: T, body: impl FnOnce() -> T) -> T {
    catch_unwind(AssertUnwindSafe(body)).unwrap_or(fallback)
}

/// Borrows a required input object.
///
/// # Safety
/// `ptr` is NULL or points to a live `T` for the duration of the call.
pub(crate) unsafe fn arg<'a, T>(ptr: *const T, name: &str) -> Result<&'a T> {
    // SAFETY: per this function's contract.
    unsafe { ptr.as_ref() }.ok_or_else(|| Error::invalid_argument(format!("`{name}` is NULL")))
}

/// Checks that an output pointer is not NULL.
pub(crate) fn out_ptr<T>(ptr: *mut T, name: &str) -> Result<()> {
    if ptr.is_null() {
        Err(Error::invalid_argument(format!("`{name}` is NULL")))
    } else {
        Ok(())
    }
}

/// Borrows `len` bytes at `data`; `(NULL, 0)` is an empty buffer.
///
/// # Safety
/// When `len > 0`, `data` points to `len` readable bytes for the duration of the call.
pub(crate) unsafe fn bytes<'a>(data: *const u8, len: usize, name: &str) -> Result<&'a [u8]> {
    if len == 0 {
        return Ok(&[]);
    }
    if data.is_null() {
        return Err(Error::invalid_argument(format!(
            "`{name}` is NULL but its length is {len}"
        )));
    }
    if len > isize::MAX as usize {
        return Err(Error::invalid_argument(format!(
            "`{name}` length {len} is too large"
        )));
    }
    // SAFETY: per this function's contract.
    Ok(unsafe { std::slice::from_raw_parts(data, len) })
}

/// Borrows the caller's host buffer `dst` of `dst_bytes` bytes (checked non-NULL) as the
/// `needed` bytes a copy writes, refusing a smaller one: "dst_bytes .. is smaller than the
/// .. bytes `what` needs".
///
/// # Safety
/// `dst` is writable for `dst_bytes` bytes for the duration of the call.
pub(crate) unsafe fn host_buffer<'a>(
    dst: *mut std::ffi::c_void,
    dst_bytes: usize,
    needed: usize,
    what: impl FnOnce() -> String,
) -> Result<&'a mut [u8]> {
    if dst_bytes < needed {
        return Err(Error::invalid_argument(format!(
            "dst_bytes {dst_bytes} is smaller than the {needed} bytes {} needs",
            what()
        )));
    }
    // SAFETY: `dst` is writable for `dst_bytes >= needed` bytes (contract).
    Ok(unsafe { std::slice::from_raw_parts_mut(dst.cast::<u8>(), needed) })
}

/// Writes `value` to an output pointer already checked by [`out_ptr`].
///
/// # Safety
/// `ptr` is non-NULL and writable.
pub(crate) unsafe fn write<T>(ptr: *mut T, value: T) {
    // SAFETY: per this function's contract.
    unsafe { ptr.write(value) }
}
