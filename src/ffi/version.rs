//! Version information.

use std::ffi::c_char;

/// Major version of the library this header belongs to.
pub const VT_VERSION_MAJOR: u32 = 0;
/// Minor version (0 to 99).
pub const VT_VERSION_MINOR: u32 = 1;
/// Patch version (0 to 99).
pub const VT_VERSION_PATCH: u32 = 0;
/// The header's version as one number: MAJOR * 10000 + MINOR * 100 + PATCH (0.1.0 is 100,
/// 1.2.3 is 10203). Usable in `#if`; compare it with vt_version_number().
pub const VT_VERSION_NUMBER: u32 =
    VT_VERSION_MAJOR * 10000 + VT_VERSION_MINOR * 100 + VT_VERSION_PATCH;

const _: () = assert!(VT_VERSION_MINOR < 100 && VT_VERSION_PATCH < 100);

/// The library's version and compiled backends, e.g. "vtower 0.1.0 (backends: cpu)". A
/// static string: never NULL, never free it. For a header/library check, compare
/// vt_version_number() with VT_VERSION_NUMBER. Any thread.
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

/// The library's version as one number, MAJOR * 10000 + MINOR * 100 + PATCH (as
/// VT_VERSION_NUMBER; 0.1.0 is 100). The library loaded at run time matches the header a
/// program was compiled with when `vt_version_number() / 100 == VT_VERSION_NUMBER / 100`
/// (same major and minor version; while the major version is 0, a new minor version may
/// change the API). Any thread.
#[no_mangle]
pub extern "C" fn vt_version_number() -> u32 {
    VT_VERSION_NUMBER
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_macros_match_cargo_toml() {
        let part = |s: &str| s.parse::<u32>().unwrap();
        let major = part(env!("CARGO_PKG_VERSION_MAJOR"));
        let minor = part(env!("CARGO_PKG_VERSION_MINOR"));
        let patch = part(env!("CARGO_PKG_VERSION_PATCH"));
        assert_eq!(
            (VT_VERSION_MAJOR, VT_VERSION_MINOR, VT_VERSION_PATCH),
            (major, minor, patch)
        );
        assert_eq!(vt_version_number(), major * 10000 + minor * 100 + patch);
        assert_eq!(vt_version_number(), VT_VERSION_NUMBER);
        let s = unsafe { std::ffi::CStr::from_ptr(vt_version()) }
            .to_str()
            .unwrap();
        assert!(
            s.starts_with(&format!("vtower {}", env!("CARGO_PKG_VERSION"))),
            "{s}"
        );
    }
}
