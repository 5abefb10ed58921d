//! Reduced-precision compute (bf16, f16) against the f32 reference, on the CPU. bf16 runs
//! the CPU bf16 kernels (bf16 weights and matmul operands, f32 accumulation, everything else
//! in f32), at every instruction-set level this CPU supports (`VTOWER_CPU_ISA`, one child
//! process per level): relative L2 ≤ 1e-2 on every case of every fixture (or the larger
//! error transformers' own bf16 run has on a fixture that records it). f16 runs candle's
//! f16 ops (softmax and norms accumulate in f32): relative L2 ≤ 2e-2.

mod common;

use common::*;
use vtower::{DTypeRequest, LoadOptions, Model};

/// `default`, or for bf16 the fixture's `reduced_precision.bf16_tolerance` when its
/// expected.json records a larger one: transformers' own bf16 run of that checkpoint is that
/// far from its f32 run (Gemma 4's loud tiny towers, about 3e-2).
fn fixture_tolerance(name: &str, dtype: DTypeRequest, default: f64) -> f64 {
    let exp: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(fixtures().join(name).join("expected.json")).unwrap(),
    )
    .unwrap();
    match (dtype, exp["reduced_precision"]["bf16_tolerance"].as_f64()) {
        (DTypeRequest::BF16, Some(t)) => t.max(default),
        _ => default,
    }
}

/// Worst relative L2 error over the fixtures' cases (the first `per_fixture` of each).
fn check(dtype: DTypeRequest, tolerance: f64, per_fixture: usize) -> f64 {
    let mut worst = (0f64, String::new());
    for name in model_fixtures() {
        let opts = LoadOptions {
            dtype,
            ..LoadOptions::default()
        };
        let model = Model::load(fixtures().join(&name), &opts).unwrap();
        let tol = fixture_tolerance(&name, dtype, tolerance);
        for case in cases(&name).iter().take(per_fixture) {
            let img = model
                .preprocess(&std::fs::read(&case.path).unwrap())
                .unwrap();
            let out = model.forward(&[&img]).unwrap();
            let err = rel_l2(out.data(0).unwrap(), &case.embeddings);
            println!("{name}/{} {dtype:?}: rel L2 {err:.4e}", case.file);
            if err > worst.0 {
                worst = (err, format!("{name}/{}", case.file));
            }
            assert!(err <= tol, "{name}/{} {dtype:?}: {err} > {tol}", case.file);
            // Not the f32 result: the dtype really was used.
            assert!(
                err > 1e-6,
                "{name}/{} {dtype:?}: suspiciously exact",
                case.file
            );
        }
    }
    println!("{dtype:?}: worst rel L2 {:.4e} ({})", worst.0, worst.1);
    worst.0
}

#[test]
fn bf16_is_within_reduced_precision_tolerance() {
    use vtower::__bench::kernels::{detected, isa, Isa};
    // In a child process started by `bf16_runs_at_every_isa_level`, the level it asked for.
    if let Ok(level) = std::env::var("VTOWER_CPU_ISA") {
        let want = Isa::parse(&level).expect("a known level");
        assert_eq!(isa(), want.min(detected()), "VTOWER_CPU_ISA={level}");
    }
    let worst = check(DTypeRequest::BF16, 1e-2, usize::MAX);
    println!("bf16 at {:?}: worst rel L2 {worst:.4e}", isa());
    assert!(worst > 0.0);
}

/// The bf16 parity test again in one child process per instruction-set level this CPU
/// supports, capped with `VTOWER_CPU_ISA`.
#[test]
fn bf16_runs_at_every_isa_level() {
    use vtower::__bench::kernels::{detected, Isa};
    if std::env::var_os("VTOWER_CPU_ISA").is_some() {
        return; // a child: the parent covers every level
    }
    let exe = std::env::current_exe().unwrap();
    for level in Isa::ALL.into_iter().filter(|l| *l <= detected()) {
        let out = std::process::Command::new(&exe)
            .args([
                "bf16_is_within_reduced_precision_tolerance",
                "--exact",
                "--nocapture",
                "--test-threads=1",
            ])
            .env("VTOWER_CPU_ISA", level.name())
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        let summary = stdout
            .lines()
            .find(|l| l.starts_with("bf16 at"))
            .unwrap_or("no summary");
        println!("VTOWER_CPU_ISA={}: {summary}", level.name());
        assert!(
            out.status.success() && stdout.contains("1 passed"),
            "VTOWER_CPU_ISA={}:\n{stdout}\n{}",
            level.name(),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(summary.contains(&format!("{level:?}")), "{summary}");
    }
}

#[test]
fn f16_is_within_reduced_precision_tolerance() {
    check(DTypeRequest::F16, 2e-2, 3);
}
