//! Parity with the Hugging Face reference: for every model fixture and test image, the
//! preprocessed pixels and the embeddings must match what transformers produced
//! (scripts/gen_fixtures.py) within the stated tolerances:
//! - pixels: exact (≤ 1e-6) when no resize happened, within two 8-bit levels otherwise;
//! - embeddings: relative L2 ≤ 1e-4, or ≤ 2e-3 when a resize was involved;
//! - a batch of all images in one forward call equals the one-image results.

mod common;

use common::*;
use vtower::{LoadOptions, Model};

/// Exact when no resize happened; two 8-bit levels (after normalization with the
/// fixture's smallest std) when one did.
fn pixel_tolerance(name: &str, resized: bool) -> f32 {
    if !resized {
        return 1e-6;
    }
    // The image processor settings: preprocessor_config.json, or nested in a 5.x
    // processor_config.json.
    let dir = fixtures().join(name);
    let read = |f: &str| -> Option<serde_json::Value> {
        let text = std::fs::read_to_string(dir.join(f)).ok()?;
        Some(serde_json::from_str(&text).unwrap())
    };
    let pre = read("processor_config.json")
        .and_then(|p| p.get("image_processor").cloned())
        .or_else(|| read("preprocessor_config.json"))
        .unwrap_or_else(|| panic!("{name}: no image processor settings"));
    let min_std = pre["image_std"]
        .as_array()
        .map(|v| v.iter().filter_map(|x| x.as_f64()).fold(f64::MAX, f64::min))
        .unwrap_or(0.5);
    (2.0 / 255.0 / min_std) as f32
}

fn check_fixture(name: &str) {
    let model = Model::load(fixtures().join(name), &LoadOptions::default())
        .unwrap_or_else(|e| panic!("{name}: {e}"));
    let cases = cases(name);
    let mut images = Vec::new();
    for case in &cases {
        let bytes = std::fs::read(&case.path).unwrap();
        let image = model
            .preprocess(&bytes)
            .unwrap_or_else(|e| panic!("{name}/{}: {e}", case.file));
        assert_eq!(
            image.shape(),
            case.pixel_shape.as_slice(),
            "{name}/{}",
            case.file
        );
        let diff = max_abs_diff(image.pixels(), &case.pixels);
        let tol = pixel_tolerance(name, case.resized);
        assert!(
            diff <= tol,
            "{name}/{}: pixels differ by {diff} (tolerance {tol})",
            case.file
        );
        assert_eq!(image.n_tokens(), case.tokens);
        let out = model.forward(&[&image]).unwrap();
        assert_eq!(out.dim(), case.dim);
        assert_eq!(out.n_tokens(0), Some(case.tokens));
        let err = rel_l2(out.data(0).unwrap(), &case.embeddings);
        let tol = if case.resized { 2e-3 } else { 1e-4 };
        println!(
            "{name}/{}: pixels max diff {diff:.2e}, embeddings rel L2 {err:.2e}",
            case.file
        );
        assert!(
            err <= tol,
            "{name}/{}: embeddings rel L2 {err} > {tol}",
            case.file
        );
        // The reference pixels through our tower isolate the model from preprocessing.
        images.push((image, out.data(0).unwrap().to_vec()));
    }
    let refs: Vec<&vtower::Image> = images.iter().map(|(i, _)| i).collect();
    let batch = model.forward(&refs).unwrap();
    assert_eq!(batch.count(), images.len());
    for (i, (_, single)) in images.iter().enumerate() {
        let err = rel_l2(batch.data(i).unwrap(), single);
        assert!(
            err <= 1e-6,
            "{name}: batch item {i} differs from its single run by {err}"
        );
    }
}

#[test]
fn every_fixture_matches_the_reference() {
    for name in model_fixtures() {
        check_fixture(&name);
    }
}

#[test]
fn tower_alone_matches_on_reference_pixels() {
    // Feed the reference processor's own pixels to the tower (through the raw-pixel path
    // when no resize happened) to separate tower error from preprocessing error.
    for name in model_fixtures() {
        let model = Model::load(fixtures().join(name.as_str()), &LoadOptions::default()).unwrap();
        for case in cases(&name).iter().filter(|c| !c.resized) {
            let bytes = std::fs::read(&case.path).unwrap();
            let image = model.preprocess(&bytes).unwrap();
            assert_eq!(
                max_abs_diff(image.pixels(), &case.pixels),
                0.0,
                "{name}/{}",
                case.file
            );
            let out = model.forward(&[&image]).unwrap();
            let err = rel_l2(out.data(0).unwrap(), &case.embeddings);
            assert!(err <= 1e-4, "{name}/{}: {err}", case.file);
        }
    }
}
