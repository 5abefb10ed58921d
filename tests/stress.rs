//! Stress (reliability issue): 16 threads × 500 calls on one model per family, images of
//! every size and format the fixture has, mixed in each thread: every result bit-identical
//! to the serial one, resident memory flat across the run; and 1,000 loads and frees of a
//! model return memory to where it started.
//!
//! The call count is the issue's; `VT_STRESS_CALLS` lowers it for a quick local run.

mod common;

use std::sync::Arc;

use common::*;
use vtower::{LoadOptions, Model};

const THREADS: usize = 16;

/// The tests measure this process's resident memory: they must not run at the same time.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn calls_per_thread() -> usize {
    std::env::var("VT_STRESS_CALLS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(500)
}

/// Resident set size of this process in bytes (`VmRSS` of Linux `/proc/self/status`).
fn rss() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS line");
    kib * 1024
}

const MIB: u64 = 1 << 20;

/// The families and fixtures the stress run covers (every family, mixed image sizes).
const FAMILIES: [&str; 6] = [
    "siglip_f32",
    "gemma3_f32",
    "llava_clip_pad_hub",
    "pixtral_llava_f32",
    "qwen2_vl_f32",
    "qwen2_5_vl_bf16",
];

fn stress(name: &str) {
    let calls = calls_per_thread();
    let opts = LoadOptions {
        n_threads: 2,
        ..LoadOptions::default()
    };
    let model = Arc::new(Model::load(fixtures().join(name), &opts).unwrap());
    // Serial reference: each image alone (paired calls must give each image's own result).
    let (files, reference) = serial_references(&model, name);
    let files = Arc::new(files);
    let reference = Arc::new(reference);
    let run = |rounds: std::ops::Range<usize>| {
        let handles: Vec<_> = (0..THREADS)
            .map(|t| {
                let (model, files, reference) = (model.clone(), files.clone(), reference.clone());
                let rounds = rounds.clone();
                std::thread::spawn(move || {
                    for round in rounds {
                        let i = (t * 7 + round) % files.len();
                        let j = (i + 1 + round % 3) % files.len();
                        let a = model.preprocess(&files[i]).unwrap();
                        let out = if round % 2 == 0 {
                            model.forward(&[&a]).unwrap()
                        } else {
                            let b = model.preprocess(&files[j]).unwrap();
                            let out = model.forward(&[&a, &b]).unwrap();
                            assert!(
                                out.data(1).unwrap() == reference[j].as_slice(),
                                "thread {t} round {round}: image {j} (second of a pair) differs"
                            );
                            out
                        };
                        assert!(
                            out.data(0).unwrap() == reference[i].as_slice(),
                            "thread {t} round {round}: image {i} differs from the serial result"
                        );
                    }
                })
            })
            .collect();
        for h in handles {
            h.join().expect("worker thread");
        }
    };
    // Warm up (allocator arenas, thread pools), then measure across the rest of the run.
    let warm = (calls / 10).max(1);
    run(0..warm);
    let before = rss();
    run(warm..calls);
    let after = rss();
    println!(
        "{name}: {THREADS} threads x {calls} calls, RSS {} MiB -> {} MiB",
        before / MIB,
        after / MIB
    );
    assert!(
        after <= before + before / 10 + 32 * MIB,
        "{name}: resident memory grew from {} MiB to {} MiB over the run",
        before / MIB,
        after / MIB
    );
}

#[test]
fn sixteen_threads_on_one_model_bit_identical_and_flat_memory() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    for name in FAMILIES {
        stress(name);
    }
}

#[test]
fn a_thousand_loads_and_frees_return_memory() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let dir = fixtures().join("siglip_f32");
    let opts = LoadOptions {
        n_threads: 1,
        ..LoadOptions::default()
    };
    let png = std::fs::read(images_dir().join("rgb.png")).unwrap();
    let cycle = || {
        let model = Model::load(&dir, &opts).unwrap();
        let img = model.preprocess(&png).unwrap();
        assert!(model.forward(&[&img]).is_ok());
    };
    for _ in 0..100 {
        cycle();
    }
    let before = rss();
    for _ in 100..1000 {
        cycle();
    }
    let after = rss();
    println!(
        "1000 load/free cycles: RSS {} MiB -> {} MiB",
        before / MIB,
        after / MIB
    );
    assert!(
        after <= before + 16 * MIB,
        "resident memory grew from {} MiB to {} MiB over 900 load/free cycles",
        before / MIB,
        after / MIB
    );
}
