//! Loading a Qwen3-VL-MoE checkpoint reads the vision tensors and nothing else of the
//! weights, measured with the process's read counter (`rchar` of /proc/self/io; this file
//! holds one test so that no other thread reads meanwhile).

mod common;

use common::*;
use safetensors::SafeTensors;
use vtower::{LoadOptions, Model};

fn rchar() -> u64 {
    let io = std::fs::read_to_string("/proc/self/io").unwrap();
    io.lines()
        .find_map(|l| l.strip_prefix("rchar: "))
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

#[test]
fn moe_load_reads_only_the_vision_tensors() {
    if !std::path::Path::new("/proc/self/io").exists() {
        eprintln!("no /proc/self/io: skipped");
        return;
    }
    let dir = fixtures().join("qwen3_vl_moe_sharded_bf16");
    // What the files hold: vision tensor bytes, other tensor bytes, header bytes.
    let (mut vision, mut other, mut headers) = (0u64, 0u64, 0u64);
    for entry in std::fs::read_dir(&dir).unwrap() {
        let p = entry.unwrap().path();
        let name = p.file_name().unwrap().to_string_lossy().into_owned();
        if !name.starts_with("model-") {
            continue;
        }
        let bytes = std::fs::read(&p).unwrap();
        headers += 8 + u64::from_le_bytes(bytes[..8].try_into().unwrap());
        let st = SafeTensors::deserialize(&bytes).unwrap();
        for (k, t) in st.tensors() {
            let n = t.data().len() as u64;
            if k.starts_with("model.visual.") {
                vision += n;
            } else {
                other += n;
            }
        }
    }
    let json: u64 = [
        "config.json",
        "preprocessor_config.json",
        "model.safetensors.index.json",
    ]
    .iter()
    .map(|f| std::fs::metadata(dir.join(f)).unwrap().len())
    .sum();
    let before = rchar();
    let model = Model::load(&dir, &LoadOptions::default()).unwrap();
    let read = rchar() - before;
    drop(model);
    println!(
        "load read {read} bytes: vision tensors {vision}, shard headers {headers}, json {json}; \
         language-model tensors (not to be read) {other}"
    );
    assert!(read >= vision, "read {read} < vision tensors {vision}");
    // Everything beyond the vision tensors: shard headers (the expert shard's is not even
    // read) and the json files, with 1 KiB of slack — less than any one of the language
    // model's tensors groups: reading them would fail this.
    let extra = read - vision;
    // The check is sharp enough: reading the language model's tensors too would fail it.
    assert!(extra + other > headers + json + 1024);
    assert!(
        extra <= headers + json + 1024,
        "read {extra} bytes beyond the vision tensors (headers {headers}, json {json})"
    );
}
