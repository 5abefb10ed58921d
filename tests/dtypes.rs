//! Reduced-precision compute (bf16, f16) against the f32 reference, on the CPU. The same
//! code path runs on the GPU, where bf16 is the default; softmax and norms accumulate in
//! f32 whatever the dtype. Tolerance: relative L2 ≤ 2e-2 against the reference.

mod common;

use common::*;
use vtower::{DTypeRequest, LoadOptions, Model};

/// 2e-2, or for bf16 the fixture's `reduced_precision.bf16_tolerance` when its
/// expected.json records one: transformers' own bf16 run of that checkpoint is that far
/// from its f32 run (Gemma 4's fixtures, about 3e-2).
fn tolerance(name: &str, dtype: DTypeRequest) -> f64 {
    let exp: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(fixtures().join(name).join("expected.json")).unwrap(),
    )
    .unwrap();
    match (dtype, exp["reduced_precision"]["bf16_tolerance"].as_f64()) {
        (DTypeRequest::BF16, Some(t)) => t.max(2e-2),
        _ => 2e-2,
    }
}

fn check(dtype: DTypeRequest) {
    for name in model_fixtures() {
        let opts = LoadOptions {
            dtype,
            ..LoadOptions::default()
        };
        let model = Model::load(fixtures().join(&name), &opts).unwrap();
        for case in cases(&name).iter().take(3) {
            let img = model
                .preprocess(&std::fs::read(&case.path).unwrap())
                .unwrap();
            let out = model.forward(&[&img]).unwrap();
            let err = rel_l2(out.data(0).unwrap(), &case.embeddings);
            println!("{name}/{} {dtype:?}: rel L2 {err:.2e}", case.file);
            let tol = tolerance(&name, dtype);
            assert!(err <= tol, "{name}/{} {dtype:?}: {err} > {tol}", case.file);
            // Not the f32 result: the dtype really was used.
            assert!(
                err > 1e-6,
                "{name}/{} {dtype:?}: suspiciously exact",
                case.file
            );
        }
    }
}

#[test]
fn bf16_is_within_reduced_precision_tolerance() {
    check(DTypeRequest::BF16);
}

#[test]
fn f16_is_within_reduced_precision_tolerance() {
    check(DTypeRequest::F16);
}
