//! The log callback.

use std::ffi::{c_char, c_void, CString};
use std::sync::Arc;

use crate::ffi::boundary::guard_value;
use crate::log::{set_logger, LogLevel};

/// Severity of a log message (values as ggml's `ggml_log_level`).
pub type vt_log_level = i32;
/// Debugging detail (e.g. every error returned).
pub const VT_LOG_DEBUG: vt_log_level = 1;
/// Progress information (model loaded, device chosen).
pub const VT_LOG_INFO: vt_log_level = 2;
/// Something unexpected that vtower worked around.
pub const VT_LOG_WARN: vt_log_level = 3;
/// An error.
pub const VT_LOG_ERROR: vt_log_level = 4;

/// A log callback: `level`, a NUL-terminated UTF-8 message (borrowed for the duration of the
/// call), and the `user_data` given to vt_log_set. It may be called from any thread,
/// concurrently, including vtower's worker threads; it must not unwind or longjmp.
pub type vt_log_fn =
    Option<unsafe extern "C" fn(level: vt_log_level, msg: *const c_char, user_data: *mut c_void)>;

struct Sink {
    callback: unsafe extern "C" fn(vt_log_level, *const c_char, *mut c_void),
    user_data: *mut c_void,
}

impl Sink {
    fn emit(&self, level: LogLevel, msg: &str) {
        let text = CString::new(msg.replace('\0', "\\0")).expect("NULs were replaced");
        // SAFETY: the callback and user_data were given by the host for this purpose.
        unsafe { (self.callback)(level as i32, text.as_ptr(), self.user_data) }
    }
}

// SAFETY: the caller of vt_log_set promises the callback and user_data may be used from any
// thread (documented).
unsafe impl Send for Sink {}
unsafe impl Sync for Sink {}

/// Sends every later log message of the process to `callback` with `user_data`; NULL
/// restores the default (warnings and errors to stderr, nothing else). vtower keeps
/// `user_data` until the next vt_log_set call; it must stay valid and usable from any
/// thread until then. Global to the process; any thread, but do not race it with itself.
#[no_mangle]
pub extern "C" fn vt_log_set(callback: vt_log_fn, user_data: *mut c_void) {
    guard_value((), || match callback {
        None => set_logger(None),
        Some(cb) => {
            let sink = Sink {
                callback: cb,
                user_data,
            };
            set_logger(Some(Arc::new(move |level: LogLevel, msg: &str| {
                sink.emit(level, msg)
            })));
        }
    })
}

// The C levels are the Rust levels.
const _: () = assert!(
    VT_LOG_DEBUG == LogLevel::Debug as i32
        && VT_LOG_INFO == LogLevel::Info as i32
        && VT_LOG_WARN == LogLevel::Warn as i32
        && VT_LOG_ERROR == LogLevel::Error as i32
);
