//! Reduced-precision compute (bf16, f16) against the f32 reference, on the CPU. The same
//! code path runs on the GPU, where bf16 is the default; softmax and norms accumulate in
//! f32 whatever the dtype. Tolerance: relative L2 ≤ 2e-2 against the reference.

mod common;

use common::*;
use vtower::{DTypeRequest, LoadOptions, Model};

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
            assert!(err <= 2e-2, "{name}/{} {dtype:?}: {err}", case.file);
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
