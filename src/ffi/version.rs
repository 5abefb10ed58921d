//! Version information.

use std::ffi::c_char;

/// Major version of the library this header belongs to.
pub const VT_VERSION_MAJOR: u32 = 0;
/// Minor version.
pub const VT_VERSION_MINOR: u32 = 1;
/// Patch version.
pub const VT_VERSION_PATCH: u32 = 0;

/// The library's version and compiled backends, e.g. "vtower 0.1.0 (backends: cpu)". A
/// static string: never NULL, never free it. Compare with the VT_VERSION_* macros to detect
/// a header/library mismatch. Any thread.
#[no_mangle]
pub extern "C" fn vt_version() -> *const c_char {
    #[cfg(feature = "cuda")]
    const TEXT: &str = concat!(
        "vtower ",
        env!("CARGO_PKG_VERSION"),
        " (backends: cpu, cuda)\0"
    );
    #[cfg(not(feature = "cuda"))]
    const TEXT: &str = concat!("vtower ", env!("CARGO_PKG_VERSION"), " (backends: cpu)\0");
    TEXT.as_ptr().cast()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_macros_match_cargo_toml() {
        assert_eq!(
            VT_VERSION_MAJOR.to_string(),
            env!("CARGO_PKG_VERSION_MAJOR")
        );
        assert_eq!(
            VT_VERSION_MINOR.to_string(),
            env!("CARGO_PKG_VERSION_MINOR")
        );
        assert_eq!(
            VT_VERSION_PATCH.to_string(),
            env!("CARGO_PKG_VERSION_PATCH")
        );
        let s = unsafe { std::ffi::CStr::from_ptr(vt_version()) }
            .to_str()
            .unwrap();
        assert!(
            s.starts_with(&format!("vtower {}", env!("CARGO_PKG_VERSION"))),
            "{s}"
        );
    }
}
