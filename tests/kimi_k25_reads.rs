//! Loading a Kimi K2.5 checkpoint sharded by transformers (three shards, the language model's
//! tensors 7.7x the vision tower's and projector's) reads the vision tensors and nothing else
//! of the weights, measured with the process's read counter (`rchar` of /proc/self/io; this
//! file holds one test so that no other thread reads meanwhile).

mod common;

use common::*;

#[test]
fn load_reads_only_the_vision_tensors() {
    if !std::path::Path::new("/proc/self/io").exists() {
        eprintln!("no /proc/self/io: skipped");
        return;
    }
    let [read, vision, other, total] = check_load_reads_only("kimi_k25_sharded_bf16", &|k| {
        k.starts_with("model.vision_tower.") || k.starts_with("model.mm_projector.")
    });
    assert!(other > 4 * vision, "the language model must dominate");
    println!(
        "read {:.1}% of the checkpoint ({read} / {total} bytes)",
        100.0 * read as f64 / total as f64
    );
}
