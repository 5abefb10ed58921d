//! SigLIP2 NaFlex (`siglip2`, `siglip2_vision_model`): pixels and embeddings against
//! transformers' `Siglip2ImageProcessorPil` and `last_hidden_state` (the real patches' rows),
//! mixed sizes in one call, token counts and grids, per-call `max_tokens` against the processor
//! called with `max_num_patches`, and bad configs refused by name.

mod common;

use common::*;
use serde_json::{json, Value};
use vtower::{LoadOptions, Model, PreprocessOptions, PromptSegment, Status};

const FIXTURES: [&str; 2] = ["siglip2_f32", "siglip2_vision_hub_bf16"];

#[test]
fn pixels_and_embeddings_match_the_reference() {
    for name in FIXTURES {
        let exp = expected(name);
        let model = load(name);
        assert_eq!(model.info().family, "siglip2");
        assert_eq!(model.info().model_type, exp["model_type"].as_str().unwrap());
        assert_eq!(model.info().tokens_per_image, None);
        let mut images = Vec::new();
        let mut worst = [0f64; 2];
        for case in cases(name) {
            let image = model
                .preprocess(&std::fs::read(&case.path).unwrap())
                .unwrap();
            assert_eq!(
                image.shape(),
                case.pixel_shape.as_slice(),
                "{name}/{}",
                case.file
            );
            // Pillow-exact resizing: the real patch rows equal the reference's, resized or not.
            let d = max_abs_diff(image.pixels(), &case.pixels);
            assert!(d <= 1e-6, "{name}/{}: pixels differ by {d}", case.file);
            assert_eq!(image.n_tokens(), case.tokens);
            let out = model.forward(&[&image]).unwrap();
            assert_eq!(out.dim(), case.dim);
            assert_eq!(out.n_tokens(0), Some(case.tokens));
            let err = rel_l2(out.data(0).unwrap(), &case.embeddings);
            println!(
                "{name}/{}: pixels max diff {d:.1e}, rel L2 {err:.2e}",
                case.file
            );
            assert!(err <= 1e-4, "{name}/{}: rel L2 {err}", case.file);
            let w = &mut worst[case.resized as usize];
            *w = w.max(err);
            images.push(image);
        }
        println!(
            "{name}: worst rel L2 native {:.2e}, resized {:.2e}",
            worst[0], worst[1]
        );
        // Every size in one call (reversed, the first again at the end) equals the one-image
        // calls.
        check_batch_equals_single_runs(&model, &images, name);
    }
}

#[test]
fn token_grids_and_prompt_layout() {
    for name in FIXTURES {
        let exp = expected(name);
        let model = load(name);
        let budget = exp["max_num_patches"].as_u64().unwrap() as usize;
        let mut at_budget = 0;
        for e in exp["images"].as_array().unwrap() {
            let key = e["key"].as_str().unwrap();
            let image = model
                .preprocess(&std::fs::read(fixture_image(&exp, key)).unwrap())
                .unwrap();
            let grid: Vec<usize> = ids(&e["patch_grid"]).iter().map(|&v| v as usize).collect();
            assert_eq!(image.token_grid(), [1, grid[0], grid[1]], "{name}/{key}");
            assert_eq!(image.patch_grid(), image.token_grid());
            let n = e["tokens"].as_u64().unwrap() as usize;
            assert_eq!(image.n_tokens(), n);
            assert!(n <= budget);
            at_budget += (n == budget) as usize;
            // One run of placeholders, no special tokens.
            let layout = model.prompt_layout(&image).unwrap();
            assert_eq!(
                layout,
                vec![PromptSegment::Embeddings {
                    token: None,
                    start: 0,
                    count: n
                }]
            );
        }
        assert!(at_budget > 0, "{name}: no image at the patch budget");
    }
}

#[test]
fn per_call_max_tokens_is_the_processors_max_num_patches() {
    for name in FIXTURES {
        let exp = expected(name);
        let model = load(name);
        let knobs = exp["knobs"].as_array().unwrap();
        assert!(!knobs.is_empty());
        for k in knobs {
            let bytes = std::fs::read(fixture_image(&exp, k["image"].as_str().unwrap())).unwrap();
            let opts = PreprocessOptions {
                max_tokens: Some(k["max_num_patches"].as_u64().unwrap() as usize),
                ..Default::default()
            };
            let image = model.preprocess_with(&bytes, &opts).unwrap();
            let grid: Vec<usize> = ids(&k["patch_grid"]).iter().map(|&v| v as usize).collect();
            assert_eq!(image.token_grid(), [1, grid[0], grid[1]], "{name}: {k}");
            let (want, shape) = reference(name, k["pixels"].as_str().unwrap());
            assert_eq!(image.shape(), shape.as_slice());
            let d = max_abs_diff(image.pixels(), &want);
            assert!(d <= 1e-6, "{name}: {k}: pixels differ by {d}");
            let out = model.forward(&[&image]).unwrap();
            let (want, _) = reference(name, k["embeddings"].as_str().unwrap());
            let err = rel_l2(out.data(0).unwrap(), &want);
            println!(
                "{name}: max_tokens {}: rel L2 {err:.2e}",
                k["max_num_patches"]
            );
            assert!(err <= 1e-4, "{name}: {k}: rel L2 {err}");
        }
        // Knobs the family does not have, and a budget the image limit refuses.
        let bytes = std::fs::read(&cases(name)[0].path).unwrap();
        for opts in [
            PreprocessOptions {
                longest_edge: Some(64),
                ..Default::default()
            },
            PreprocessOptions {
                max_soft_tokens: Some(70),
                ..Default::default()
            },
            PreprocessOptions {
                max_tokens: Some(0),
                ..Default::default()
            },
        ] {
            let e = model.preprocess_with(&bytes, &opts).unwrap_err();
            assert_eq!(e.status(), Status::InvalidArgument, "{e}");
        }
        let capped = Model::load(
            fixtures().join(name),
            &LoadOptions {
                max_image_tokens: 4,
                ..LoadOptions::default()
            },
        )
        .unwrap();
        let e = capped.preprocess(&bytes).unwrap_err();
        assert_eq!(e.status(), Status::ImageTooLarge, "{e}");
        assert!(e.message().contains("max_num_patches"), "{e}");
    }
}

/// A `siglip2` config without `vision_config` takes `Siglip2VisionConfig`'s defaults (as
/// `Siglip2Config` does), which this checkpoint's weights contradict, by name.
#[test]
fn missing_vision_config_takes_the_class_defaults() {
    let dir = copy_fixture("siglip2_f32", "siglip2-no-vision");
    edit_json(&dir.join("config.json"), |c| {
        c.remove("vision_config");
    });
    let err = Model::load(&dir, &LoadOptions::default()).unwrap_err();
    assert_eq!(err.status(), Status::BadWeights, "{err}");
    assert!(err.message().contains("[256, 768]"), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn bad_configs_are_refused_by_name() {
    type Edit<'a> = (
        &'a str,
        &'a str,
        &'a dyn Fn(&mut serde_json::Map<String, Value>),
        &'a str,
    );
    let edits: [Edit; 6] = [
        (
            "num_patches that is not a square",
            "config.json",
            &|c| c["vision_config"]["num_patches"] = json!(24),
            "num_patches 24 is not a square",
        ),
        (
            "num_patches vs the position table",
            "config.json",
            &|c| c["vision_config"]["num_patches"] = json!(36),
            "position_embedding.weight",
        ),
        (
            "hidden size vs the weights",
            "config.json",
            &|c| c["vision_config"]["hidden_size"] = json!(16),
            "position_embedding.weight`: expected shape [25, 16]",
        ),
        (
            "patch size of the tower vs the weights",
            "config.json",
            &|c| c["vision_config"]["patch_size"] = json!(4),
            "patch_embedding",
        ),
        (
            "patch size of the processor vs the tower",
            "preprocessor_config.json",
            &|c| {
                c.insert("patch_size".into(), json!(16));
            },
            "patch_size 16",
        ),
        (
            "activation",
            "config.json",
            &|c| c["vision_config"]["hidden_act"] = json!("relu2"),
            "relu2",
        ),
    ];
    for (what, file, edit, needle) in edits {
        let dir = copy_fixture("siglip2_f32", "siglip2-bad");
        edit_json(&dir.join(file), edit);
        let err = Model::load(&dir, &LoadOptions::default()).unwrap_err();
        assert!(
            matches!(err.status(), Status::BadConfig | Status::BadWeights),
            "{what}: {err}"
        );
        assert!(err.message().contains(needle), "{what}: {err}");
        let _ = std::fs::remove_dir_all(&dir);
    }
    // The text tower alone is not a vision model: refused by name, listing the SigLIP2 types.
    let dir = copy_fixture("siglip2_f32", "siglip2-text");
    edit_json(&dir.join("config.json"), |c| {
        c.insert("model_type".into(), json!("siglip2_text_model"));
    });
    let err = Model::load(&dir, &LoadOptions::default()).unwrap_err();
    assert_eq!(err.status(), Status::UnsupportedModel, "{err}");
    assert!(
        err.message().contains("siglip2_text_model")
            && err.message().contains("siglip2_vision_model"),
        "{err}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
