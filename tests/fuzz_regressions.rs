//! Replays the fuzzers' reproducers (`fuzz/regressions/<target>/*`) and committed corpora
//! (`fuzz/corpus/<target>/*`) through the same code as the cargo-fuzz targets
//! (`fuzz/src/harness.rs`, included below). Every input must end in a status or a result:
//! a panic, an abort, a crash, more than `MEMORY_CAP` of address space or more than
//! `CASE_TIMEOUT` fails the test.
//!
//! Each input runs in a child process (this test binary again, running only
//! `fuzz_regression_child` with `VTOWER_FUZZ_CASE` set) under `setrlimit(RLIMIT_AS)`, so an
//! unbounded allocation fails one case instead of taking the machine's memory.

#[path = "../fuzz/src/harness.rs"]
mod harness;

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// `<target>:<file>[:<file>...]` for the child.
const CHILD_ENV: &str = "VTOWER_FUZZ_CASE";
/// Address space of one child (the fuzzers run with `-rss_limit_mb=2048`; the test binary
/// maps more than a fuzz target does: debug info, test harness threads).
const MEMORY_CAP: u64 = 3 << 30;
/// Peak resident memory of one child (as the fuzzers' `-rss_limit_mb=2048`).
const RSS_LIMIT_MIB: u64 = 2048;
/// Wall-clock limit of one child (the fuzzers use `-timeout=10` on optimized builds).
const CASE_TIMEOUT: Duration = Duration::from_secs(90);

const TARGETS: &[&str] = &["image", "model_folder", "capi"];

/// One child at a time: each may use up to `MEMORY_CAP`.
static CHILDREN: Mutex<()> = Mutex::new(());

fn fuzz_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fuzz")
}

fn files_in(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = match std::fs::read_dir(dir) {
        Ok(rd) => rd
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.is_file() && p.extension().is_none_or(|e| e != "md"))
            .collect(),
        Err(_) => Vec::new(),
    };
    v.sort();
    v
}

/// The child side: runs the inputs named in `VTOWER_FUZZ_CASE` under the memory cap.
/// Without the variable (a normal `cargo test`) it does nothing.
#[test]
fn fuzz_regression_child() {
    let Ok(spec) = std::env::var(CHILD_ENV) else {
        return;
    };
    let limit = libc::rlimit {
        rlim_cur: MEMORY_CAP,
        rlim_max: MEMORY_CAP,
    };
    // SAFETY: setrlimit only reads the struct we pass.
    let rc = unsafe { libc::setrlimit(libc::RLIMIT_AS, &limit) };
    assert_eq!(rc, 0, "setrlimit(RLIMIT_AS)");
    let mut parts = spec.split('\n');
    let target = parts.next().unwrap();
    for file in parts {
        let data = std::fs::read(file).unwrap_or_else(|e| panic!("{file}: {e}"));
        println!("CASE {file}");
        let outcome = match target {
            "image" => harness::image(&data),
            "model_folder" => harness::model_folder(&data),
            "capi" => harness::capi(&data),
            other => panic!("unknown target {other}"),
        };
        println!("OUTCOME {outcome}");
    }
    // The fuzzers fail an input at -rss_limit_mb=2048; so does this test.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: getrusage writes into the struct we pass.
    assert_eq!(unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) }, 0);
    let peak_mib = usage.ru_maxrss as u64 / 1024;
    println!("OUTCOME peak RSS {peak_mib} MiB");
    assert!(
        peak_mib <= RSS_LIMIT_MIB,
        "peak RSS {peak_mib} MiB over {RSS_LIMIT_MIB} MiB"
    );
}

/// Runs `files` of `target` in one child; `Err` says how it failed.
fn run_child(target: &str, files: &[PathBuf]) -> Result<String, String> {
    let _one_at_a_time = CHILDREN.lock().unwrap_or_else(|e| e.into_inner());
    let mut spec = target.to_string();
    for f in files {
        spec.push('\n');
        spec.push_str(f.to_str().unwrap());
    }
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "fuzz_regression_child",
            "--exact",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_ENV, spec)
        .env("RUST_BACKTRACE", "0")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("re-run the test binary");
    // Drain the pipes while waiting, so a chatty child cannot block.
    let mut out_pipe = child.stdout.take().unwrap();
    let mut err_pipe = child.stderr.take().unwrap();
    let out_reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = out_pipe.read_to_string(&mut s);
        s
    });
    let err_reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = err_pipe.read_to_string(&mut s);
        s
    });
    let start = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break Some(status);
        }
        if start.elapsed() > CASE_TIMEOUT {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let stdout = out_reader.join().unwrap();
    let stderr = err_reader.join().unwrap();
    // The test harness prints "test fuzz_regression_child ... " before the first line.
    let outcomes: Vec<&str> = stdout
        .lines()
        .filter_map(|l| {
            l.find("CASE ")
                .or_else(|| l.find("OUTCOME "))
                .map(|i| &l[i..])
        })
        .collect();
    let tail = |s: &str| -> String {
        let lines: Vec<&str> = s.lines().collect();
        lines[lines.len().saturating_sub(15)..].join("\n")
    };
    match status {
        Some(s) if s.success() => Ok(outcomes.join("\n")),
        Some(s) => Err(format!(
            "child failed ({s}); last case: {}\n{}\n{}",
            outcomes.last().unwrap_or(&"(none)"),
            tail(&stdout),
            tail(&stderr)
        )),
        None => Err(format!(
            "timed out after {:?}; last case: {}",
            CASE_TIMEOUT,
            outcomes.last().unwrap_or(&"(none)")
        )),
    }
}

/// Every reproducer of `target`, each in its own child.
fn check_regressions(target: &str) {
    let dir = fuzz_dir().join("regressions").join(target);
    let files = files_in(&dir);
    assert!(!files.is_empty(), "no reproducers in {}", dir.display());
    let mut failures = Vec::new();
    for f in &files {
        match run_child(target, std::slice::from_ref(f)) {
            Ok(out) => println!("{out}"),
            Err(e) => failures.push(format!("{}: {e}", f.display())),
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} {target} reproducers failed:\n\n{}",
        failures.len(),
        files.len(),
        failures.join("\n\n")
    );
}

/// The committed corpus of `target`, in batches (one child per batch).
fn check_corpus(target: &str) {
    let dir = fuzz_dir().join("corpus").join(target);
    let files = files_in(&dir);
    assert!(!files.is_empty(), "no corpus in {}", dir.display());
    let mut failures = Vec::new();
    for batch in files.chunks(64) {
        if let Err(e) = run_child(target, batch) {
            failures.push(e);
        }
    }
    assert!(
        failures.is_empty(),
        "{target} corpus ({} inputs):\n\n{}",
        files.len(),
        failures.join("\n\n")
    );
}

#[test]
fn regressions_image() {
    check_regressions("image");
}

#[test]
fn regressions_model_folder() {
    check_regressions("model_folder");
}

#[test]
fn regressions_capi() {
    check_regressions("capi");
}

#[test]
fn corpus_image() {
    check_corpus("image");
}

#[test]
fn corpus_model_folder() {
    check_corpus("model_folder");
}

#[test]
fn corpus_capi() {
    check_corpus("capi");
}

#[test]
fn every_target_has_a_regression_folder() {
    for t in TARGETS {
        assert!(
            fuzz_dir().join("regressions").join(t).is_dir(),
            "fuzz/regressions/{t} is missing"
        );
    }
}

/// The top-level `model_type` of a fixture folder's `config.json`.
fn fixture_model_type(dir: &Path) -> String {
    let path = dir.join("config.json");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path:?}: {e}"));
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    v["model_type"]
        .as_str()
        .unwrap_or_else(|| panic!("{path:?} has no model_type"))
        .to_string()
}

/// The fuzz targets pick their model from `harness::FIXTURES`: every model type of the
/// committed fixtures (one or more for every family vtower loads) must be among them, so
/// that a new family is fuzzed too (append its fixture there; the list is append-only).
#[test]
fn fuzz_fixtures_cover_every_model_type() {
    let fixtures = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let fuzzed: std::collections::BTreeSet<String> = harness::FIXTURES
        .iter()
        .map(|name| fixture_model_type(&fixtures.join(name)))
        .collect();
    let mut missing = std::collections::BTreeMap::new();
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(&fixtures)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.join("config.json").is_file())
        .collect();
    dirs.sort();
    for dir in dirs {
        let model_type = fixture_model_type(&dir);
        if !fuzzed.contains(&model_type) {
            let name = dir.file_name().unwrap().to_string_lossy().into_owned();
            missing.entry(model_type).or_insert(name);
        }
    }
    assert!(
        missing.is_empty(),
        "model types with a fixture but none in fuzz/src/harness.rs FIXTURES \
         (model type -> a fixture to append): {missing:?}"
    );
}
