#![no_main]
//! cargo-fuzz target `model_folder` (see fuzz/src/harness.rs for the input format).

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = vtower_fuzz::model_folder(data);
});
