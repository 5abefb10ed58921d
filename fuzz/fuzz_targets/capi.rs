#![no_main]
//! cargo-fuzz target `capi` (see fuzz/src/harness.rs for the input format).

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = vtower_fuzz::capi(data);
});
