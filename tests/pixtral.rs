//! Pixtral / Mistral3 specifics beyond the shared parity test (tests/parity.rs checks pixels
//! and embeddings of every fixture): the token grid and special token ids against the
//! reference processor's prompt layout, mixed-size batches, sizes the reference refuses, and
//! config handling.

mod common;

use std::path::{Path, PathBuf};

use common::*;
use serde_json::Value;
use vtower::{LoadOptions, Model, Status};

/// The fixtures of the Pixtral family, with their expected.json.
fn pixtral_fixtures() -> Vec<(String, Value)> {
    let v: Vec<(String, Value)> = model_fixtures()
        .into_iter()
        .map(|name| {
            let meta: Value = serde_json::from_str(
                &std::fs::read_to_string(fixtures().join(&name).join("expected.json")).unwrap(),
            )
            .unwrap();
            (name, meta)
        })
        .filter(|(_, meta)| meta["family"] == "pixtral")
        .collect();
    assert!(
        v.len() >= 3,
        "expected the Pixtral, Mistral3 and standalone fixtures"
    );
    v
}

fn load(name: &str) -> Model {
    Model::load(fixtures().join(name), &LoadOptions::default())
        .unwrap_or_else(|e| panic!("{name}: {e}"))
}

/// The reference token layout of a `rows x cols` image.
#[test]
fn grids_and_token_ids_give_the_reference_prompt() {
    for (name, meta) in pixtral_fixtures() {
        let model = load(&name);
        let info = model.info();
        assert!(info.mixed_shape_batches, "{name}");
        assert_eq!(info.tokens_per_image, None, "{name}");
        assert_eq!(info.family, "pixtral");
        assert_eq!(info.model_type, meta["model_type"].as_str().unwrap());
        let t = &info.tokens;
        let ids = &meta["token_ids"];
        if ids.is_null() {
            // A standalone tower without tokenizer files: no ids to report.
            assert_eq!((t.image_break, t.image_end), (None, None), "{name}");
        } else {
            assert_eq!(t.image, ids["image"].as_i64(), "{name}");
            assert_eq!(t.image_break, ids["image_break"].as_i64(), "{name}");
            assert_eq!(t.image_end, ids["image_end"].as_i64(), "{name}");
        }
        assert_eq!(t.image_start, None);
        let mut n_checked = 0;
        for c in meta["images"].as_array().unwrap() {
            let bytes = std::fs::read(repo().join(c["path"].as_str().unwrap())).unwrap();
            let image = model.preprocess(&bytes).unwrap();
            let grid: Vec<usize> = c["grid"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_u64().unwrap() as usize)
                .collect();
            assert_eq!(image.token_grid().to_vec(), grid, "{name}/{}", c["key"]);
            if let Some(prompt) = c["prompt_ids"].as_array() {
                let want: Vec<i64> = prompt.iter().map(|v| v.as_i64().unwrap()).collect();
                // The layout API (vt_image_prompt) gives exactly the processor's ids.
                let segments = model.prompt_layout(&image).unwrap();
                let got = layout_ids(&segments, image.n_tokens()).expect("no text");
                assert_eq!(got, want, "{name}/{}", c["key"]);
                n_checked += 1;
            }
        }
        println!("{name}: {n_checked} prompt layouts equal the reference processor's");
    }
}

#[test]
fn mixed_sizes_in_one_call_equal_single_runs() {
    for (name, meta) in pixtral_fixtures() {
        let model = load(&name);
        let images: Vec<vtower::Image> = meta["images"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| {
                let bytes = std::fs::read(repo().join(c["path"].as_str().unwrap())).unwrap();
                model.preprocess(&bytes).unwrap()
            })
            .collect();
        let shapes: std::collections::HashSet<Vec<usize>> =
            images.iter().map(|i| i.shape().to_vec()).collect();
        assert!(shapes.len() >= 4, "{name}: want images of several sizes");
        // Reverse order and repeat one image: results follow the input order.
        let mut order: Vec<&vtower::Image> = images.iter().rev().collect();
        order.push(&images[0]);
        let batch = model.forward(&order).unwrap();
        assert_eq!(batch.count(), order.len());
        for (i, img) in order.iter().enumerate() {
            let single = model.forward(&[*img]).unwrap();
            let err = rel_l2(batch.data(i).unwrap(), single.data(0).unwrap());
            assert!(err <= 1e-6, "{name}: item {i}: {err}");
            assert_eq!(batch.n_tokens(i), Some(img.n_tokens()));
        }
    }
}

#[test]
fn sizes_the_reference_refuses_are_refused() {
    for (name, meta) in pixtral_fixtures() {
        let model = load(&name);
        let rejected = meta["rejected"].as_array().unwrap();
        assert!(!rejected.is_empty(), "{name}");
        for r in rejected {
            let (w, h) = (
                r["width"].as_u64().unwrap() as u32,
                r["height"].as_u64().unwrap() as u32,
            );
            let px = vec![128u8; (w * h * 3) as usize];
            let err = model
                .preprocess_rgb8(&px, w, h, w as usize * 3)
                .unwrap_err();
            assert_eq!(
                err.status(),
                Status::InvalidArgument,
                "{name} {w}x{h}: {err}"
            );
            assert!(err.message().contains("aspect ratio"), "{err}");
        }
    }
}

// ---------------------------------------------------------------------------------------
// config handling, on edited copies of the fixtures

/// Copies a fixture's checkpoint (not its expected.* outputs) to a fresh folder.
fn copy_fixture(name: &str, tag: &str) -> PathBuf {
    let dst = temp_dir(&format!("pixtral-{tag}"));
    for e in std::fs::read_dir(fixtures().join(name)).unwrap() {
        let e = e.unwrap();
        let file = e.file_name().to_string_lossy().into_owned();
        if e.path().is_file() && !file.starts_with("expected.") && !file.ends_with(".png") {
            std::fs::copy(e.path(), dst.join(&file)).unwrap();
        }
    }
    dst
}

fn edit_json(path: &Path, f: impl FnOnce(&mut Value)) {
    let mut v: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    f(&mut v);
    std::fs::write(path, serde_json::to_string_pretty(&v).unwrap()).unwrap();
}

fn load_err(dir: &Path) -> vtower::Error {
    Model::load(dir, &LoadOptions::default()).unwrap_err()
}

#[test]
fn config_errors_are_clear() {
    type Edit = fn(&mut Value);
    let cases: [(&str, &str, Edit, &str, Status, &str); 8] = [
        (
            "pixtral_llava_f32",
            "config.json",
            |c| c["vision_feature_select_strategy"] = "default".into(),
            "strategy",
            Status::BadConfig,
            "only `full`",
        ),
        (
            "pixtral_llava_f32",
            "config.json",
            |c| c["vision_config"]["model_type"] = "not_a_tower".into(),
            "unknown-tower",
            Status::UnsupportedModel,
            "not_a_tower",
        ),
        (
            "pixtral_llava_f32",
            "config.json",
            |c| c["vision_config"]["rope_parameters"]["rope_type"] = "yarn".into(),
            "rope",
            Status::BadConfig,
            "yarn",
        ),
        (
            "pixtral_llava_f32",
            "config.json",
            |c| c["vision_feature_layer"] = 7.into(),
            "layer",
            Status::BadConfig,
            "out of range",
        ),
        (
            "pixtral_llava_f32",
            "config.json",
            |c| c["vision_config"]["head_dim"] = 16.into(),
            "head_dim",
            Status::BadConfig,
            "head_dim",
        ),
        (
            "mistral3_bf16",
            "config.json",
            |c| c["vision_feature_layer"] = serde_json::json!([-1, -2]),
            "m3layers",
            Status::BadConfig,
            "single vision_feature_layer",
        ),
        (
            "mistral3_bf16",
            "processor_config.json",
            |c| c["spatial_merge_size"] = 1.into(),
            "m3proc",
            Status::BadConfig,
            "patch window",
        ),
        (
            "mistral3_bf16",
            "config.json",
            |c| c["spatial_merge_size"] = 3.into(),
            "m3merge",
            Status::BadWeights,
            "merging_layer",
        ),
    ];
    for (fixture, file, edit, tag, status, needle) in cases {
        let dir = copy_fixture(fixture, tag);
        edit_json(&dir.join(file), edit);
        let err = load_err(&dir);
        println!("{tag}: {err}");
        assert_eq!(err.status(), status, "{tag}: {err}");
        assert!(
            err.message().contains(needle),
            "{tag}: `{err}` lacks `{needle}`"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

#[test]
fn token_ids_come_from_whichever_tokenizer_file_is_there() {
    // Only the 4.x tokenizer_config.json (added_tokens_decoder): same ids.
    let dir = copy_fixture("mistral3_bf16", "tokcfg");
    std::fs::remove_file(dir.join("tokenizer.json")).unwrap();
    let m = Model::load(&dir, &LoadOptions::default()).unwrap();
    assert_eq!(m.info().tokens.image_break, Some(12));
    assert_eq!(m.info().tokens.image_end, Some(13));
    // Custom token strings in processor_config.json are looked up as given.
    edit_json(&dir.join("processor_config.json"), |c| {
        c["image_end_token"] = "</s>".into();
    });
    let m = Model::load(&dir, &LoadOptions::default()).unwrap();
    assert_eq!(m.info().tokens.image_end, Some(2));
    // No tokenizer files at all: unknown, and the model still loads and runs.
    std::fs::remove_file(dir.join("tokenizer_config.json")).unwrap();
    let m = Model::load(&dir, &LoadOptions::default()).unwrap();
    assert_eq!(m.info().tokens.image_break, None);
    assert_eq!(m.info().tokens.image_end, None);
    assert_eq!(
        m.info().tokens.image,
        Some(10),
        "image_token_index from config.json"
    );
    let img = m
        .preprocess_rgb8(&[200u8; 20 * 30 * 3], 20, 30, 60)
        .unwrap();
    assert_eq!(img.token_grid(), [1, 2, 2]);
    assert_eq!(m.forward(&[&img]).unwrap().n_tokens(0), Some(4));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn processor_settings_are_read_from_either_file() {
    // The 5.x layout (processor_config.json with the image processor nested) and the legacy
    // one (preprocessor_config.json) give the same preprocessing.
    let dir = copy_fixture("pixtral_llava_f32", "procfile");
    let nested = fixtures().join("pixtral_llava_f32/processor_config.json");
    let pc: Value = serde_json::from_str(&std::fs::read_to_string(nested).unwrap()).unwrap();
    std::fs::write(
        dir.join("preprocessor_config.json"),
        serde_json::to_string(&pc["image_processor"]).unwrap(),
    )
    .unwrap();
    edit_json(&dir.join("processor_config.json"), |c| {
        c.as_object_mut().unwrap().remove("image_processor");
    });
    let a = load("pixtral_llava_f32");
    let b = Model::load(&dir, &LoadOptions::default()).unwrap();
    let bytes = std::fs::read(image_path("photo.jpg")).unwrap();
    let (ia, ib) = (a.preprocess(&bytes).unwrap(), b.preprocess(&bytes).unwrap());
    assert_eq!(ia.shape(), ib.shape());
    assert_eq!(ia.pixels(), ib.pixels());
    assert_eq!(a.info().image_size, (64, 64));
    // With a different longest edge the size changes accordingly.
    edit_json(&dir.join("preprocessor_config.json"), |c| {
        c["size"]["longest_edge"] = 32.into();
    });
    let c = Model::load(&dir, &LoadOptions::default()).unwrap();
    assert_eq!(c.preprocess(&bytes).unwrap().shape(), &[3, 24, 32]);
    std::fs::remove_dir_all(&dir).unwrap();
}
