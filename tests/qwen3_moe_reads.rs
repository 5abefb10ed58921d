//! Loading a Qwen3-VL-MoE checkpoint reads the vision tensors and nothing else of the
//! weights, measured with the process's read counter (`rchar` of /proc/self/io; this file
//! holds one test so that no other thread reads meanwhile).

mod common;

use common::*;

#[test]
fn moe_load_reads_only_the_vision_tensors() {
    if !std::path::Path::new("/proc/self/io").exists() {
        eprintln!("no /proc/self/io: skipped");
        return;
    }
    check_load_reads_only("qwen3_vl_moe_sharded_bf16", &|k| {
        k.starts_with("model.visual.")
    });
}
