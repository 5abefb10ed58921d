//! Gemma3, LLaVA and PaliGemma beyond the shared parity test (tests/parity.rs checks pixels and
//! embeddings of every fixture image): the per-image token grids and pan-and-scan crop counts,
//! the special token ids, preprocess-call overrides against reference outputs made with those
//! overrides (scripts/gen_fixtures_gemma3.py), the `llava` dispatch on the vision model type,
//! PaliGemma's prompt against the real `PaliGemmaProcessor`, and clear errors for configs the
//! reference cannot run.

mod common;

use std::path::Path;

use common::*;
use safetensors::SafeTensors;
use serde_json::Value;
use vtower::{LoadOptions, Model, PreprocessOptions, Status};

const FAMILIES: [&str; 3] = ["gemma3", "llava", "paligemma"];

fn expected(name: &str) -> Value {
    serde_json::from_str(
        &std::fs::read_to_string(fixtures().join(name).join("expected.json")).unwrap(),
    )
    .unwrap()
}

/// The Gemma3, LLaVA and PaliGemma fixtures.
fn vlm_fixtures() -> Vec<String> {
    let v: Vec<String> = model_fixtures()
        .into_iter()
        .filter(|n| FAMILIES.contains(&expected(n)["family"].as_str().unwrap_or("")))
        .collect();
    for family in FAMILIES {
        assert!(
            v.iter().any(|n| expected(n)["family"] == family),
            "no {family} fixture"
        );
    }
    v
}

fn load(dir: &Path) -> Model {
    Model::load(dir, &LoadOptions::default()).unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
}

/// An f32 tensor of expected.safetensors, with its shape.
fn reference(name: &str, key: &str) -> (Vec<f32>, Vec<usize>) {
    let bytes = std::fs::read(fixtures().join(name).join("expected.safetensors")).unwrap();
    let st = SafeTensors::deserialize(&bytes).unwrap();
    let t = st
        .tensor(key)
        .unwrap_or_else(|_| panic!("{name}: no `{key}`"));
    let v = t
        .data()
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    (v, t.shape().to_vec())
}

fn grid_of(v: &Value) -> [usize; 3] {
    let g: Vec<usize> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap() as usize)
        .collect();
    [g[0], g[1], g[2]]
}

#[test]
fn token_ids_grids_and_crop_counts_match_the_reference() {
    for name in vlm_fixtures() {
        let exp = expected(&name);
        let model = load(&fixtures().join(&name));
        let info = model.info();
        assert_eq!(info.family, exp["family"].as_str().unwrap(), "{name}");
        let st = &exp["special_tokens"];
        assert_eq!(info.tokens.image, st["image"].as_i64(), "{name}");
        assert_eq!(
            info.tokens.image_start,
            st["image_start"].as_i64(),
            "{name}"
        );
        assert_eq!(info.tokens.image_end, st["image_end"].as_i64(), "{name}");
        assert_eq!(info.tokens.image_break, None, "{name}");
        assert_eq!(info.output_dim, exp["dim"].as_u64().unwrap() as usize);
        let pas_default = exp["preprocessing"]["do_pan_and_scan"] == Value::Bool(true);
        let per_image = exp["tokens"].as_u64().unwrap() as usize;
        assert_eq!(
            info.tokens_per_image,
            (!pas_default).then_some(per_image),
            "{name}"
        );
        for img in exp["images"].as_array().unwrap() {
            let path = repo().join(img["path"].as_str().unwrap());
            let image = model.preprocess(&std::fs::read(&path).unwrap()).unwrap();
            let grid = grid_of(&img["grid"]);
            assert_eq!(image.token_grid(), grid, "{name}/{}", img["key"]);
            assert_eq!(image.n_tokens(), img["tokens"].as_u64().unwrap() as usize);
            if let Some(crops) = img.get("num_crops") {
                let crops = crops.as_u64().unwrap() as usize;
                assert_eq!(grid[0], 1 + crops);
                let expected_shape: Vec<usize> = if crops == 0 {
                    vec![3, info.image_size.1, info.image_size.0]
                } else {
                    vec![1 + crops, 3, info.image_size.1, info.image_size.0]
                };
                assert_eq!(image.shape(), expected_shape.as_slice(), "{name}");
            }
        }
    }
}

/// `PreprocessOptions` from the processor-call parameters recorded in expected.json.
fn options(params: &Value) -> PreprocessOptions {
    PreprocessOptions {
        pan_and_scan: params["do_pan_and_scan"].as_bool(),
        pan_and_scan_min_crop_size: params["pan_and_scan_min_crop_size"]
            .as_u64()
            .map(|v| v as usize),
        pan_and_scan_max_num_crops: params["pan_and_scan_max_num_crops"]
            .as_u64()
            .map(|v| v as usize),
        pan_and_scan_min_ratio_to_activate: params["pan_and_scan_min_ratio_to_activate"].as_f64(),
        ..PreprocessOptions::default()
    }
}

#[test]
fn preprocess_overrides_match_the_reference() {
    let mut checked = 0;
    for name in vlm_fixtures() {
        let exp = expected(&name);
        let Some(overrides) = exp.get("overrides").and_then(|o| o.as_array()) else {
            continue;
        };
        let model = load(&fixtures().join(&name));
        for ov in overrides {
            let prefix = ov["prefix"].as_str().unwrap();
            let opts = options(&ov["params"]);
            assert!(!opts.is_default());
            for img in ov["images"].as_array().unwrap() {
                let key = img["key"].as_str().unwrap();
                let path = repo().join(img["path"].as_str().unwrap());
                let image = model
                    .preprocess_with(&std::fs::read(&path).unwrap(), &opts)
                    .unwrap();
                let (pixels, shape) = reference(&name, &format!("{prefix}/pixels/{key}"));
                assert_eq!(image.shape(), shape.as_slice(), "{name}/{prefix}/{key}");
                let diff = max_abs_diff(image.pixels(), &pixels);
                // two 8-bit levels after normalization with std 0.5
                assert!(
                    diff <= 2.0 / 255.0 / 0.5 + 1e-6,
                    "{name}/{prefix}/{key}: {diff}"
                );
                assert_eq!(image.token_grid(), grid_of(&img["grid"]));
                let out = model.forward(&[&image]).unwrap();
                let (emb, eshape) = reference(&name, &format!("{prefix}/embeddings/{key}"));
                assert_eq!(out.n_tokens(0), Some(eshape[0]));
                let err = rel_l2(out.data(0).unwrap(), &emb);
                println!("{name}/{prefix}/{key}: pixels {diff:.2e}, embeddings rel L2 {err:.2e}");
                assert!(err <= 2e-3, "{name}/{prefix}/{key}: rel L2 {err}");
                checked += 1;
            }
        }
    }
    assert!(checked >= 3, "only {checked} override cases");
}

#[test]
fn pan_and_scan_images_batch_with_plain_ones() {
    // Images with 1, 3 and 4 frames in one forward call equal their single runs.
    let name = "gemma3_hub_pas_bf16";
    let model = load(&fixtures().join(name));
    let files = [
        "rgba32.bmp",
        "photo.jpg",
        "wide_120x30.png",
        "native_30.png",
    ];
    let images: Vec<vtower::Image> = cases(name)
        .into_iter()
        .filter(|c| files.contains(&c.file.as_str()))
        .map(|c| model.preprocess(&std::fs::read(&c.path).unwrap()).unwrap())
        .collect();
    assert_eq!(images.len(), files.len());
    let frames: Vec<usize> = images.iter().map(|i| i.token_grid()[0]).collect();
    assert!(
        frames.contains(&1) && frames.iter().any(|&f| f > 2),
        "{frames:?}"
    );
    let refs: Vec<&vtower::Image> = images.iter().collect();
    let batch = model.forward(&refs).unwrap();
    for (i, img) in images.iter().enumerate() {
        let single = model.forward(&[img]).unwrap();
        assert_eq!(batch.n_tokens(i), single.n_tokens(0));
        let err = rel_l2(batch.data(i).unwrap(), single.data(0).unwrap());
        assert!(err <= 1e-6, "image {i}: {err}");
    }
}

#[test]
fn pan_and_scan_is_refused_where_there_is_none() {
    let model = load(&fixtures().join("llava_clip_f32"));
    let bytes = std::fs::read(image_path("photo.jpg")).unwrap();
    let on = PreprocessOptions {
        pan_and_scan: Some(true),
        ..PreprocessOptions::default()
    };
    let err = model.preprocess_with(&bytes, &on).unwrap_err();
    assert_eq!(err.status(), Status::InvalidArgument);
    assert!(err.message().contains("pan-and-scan"), "{err}");
    let off = PreprocessOptions {
        pan_and_scan: Some(false),
        pan_and_scan_max_num_crops: Some(2),
        ..PreprocessOptions::default()
    };
    let a = model.preprocess_with(&bytes, &off).unwrap();
    let b = model.preprocess(&bytes).unwrap();
    assert_eq!(a.pixels(), b.pixels());
    let gemma = load(&fixtures().join("gemma3_f32"));
    let zero = PreprocessOptions {
        pan_and_scan: Some(true),
        pan_and_scan_max_num_crops: Some(0),
        ..PreprocessOptions::default()
    };
    let err = gemma.preprocess_with(&bytes, &zero).unwrap_err();
    assert_eq!(err.status(), Status::InvalidArgument);
}

fn vision(c: &mut serde_json::Map<String, Value>) -> &mut serde_json::Map<String, Value> {
    c.get_mut("vision_config").unwrap().as_object_mut().unwrap()
}

/// Loads `fixture` with an edited config.json (and preprocessor_config.json) and returns
/// the load error.
fn load_error(
    fixture: &str,
    tag: &str,
    config: impl FnOnce(&mut serde_json::Map<String, Value>),
    pre: impl FnOnce(&mut serde_json::Map<String, Value>),
) -> vtower::Error {
    let dir = copy_fixture(fixture, tag);
    edit_json(&dir.join("config.json"), config);
    edit_json(&dir.join("preprocessor_config.json"), pre);
    let err = Model::load(&dir, &LoadOptions::default()).unwrap_err();
    println!("{tag}: {err}");
    err
}

/// PaliGemma's prompt as an engine builds it from the API (the image token, `tokens_per_image`
/// times, then its own `<bos>` and text) is the real `PaliGemmaProcessor`'s.
#[test]
fn paligemma_prompt_matches_the_processor() {
    let mut seen = 0;
    for name in vlm_fixtures() {
        let exp = expected(&name);
        if exp["family"] != "paligemma" {
            continue;
        }
        seen += 1;
        let model = load(&fixtures().join(&name));
        let info = model.info();
        let prompt = &exp["prompt"];
        let want: Vec<i64> = prompt["input_ids"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_i64().unwrap())
            .collect();
        let n = info.tokens_per_image.expect("a fixed token count");
        let image = info.tokens.image.expect("an image token");
        let mut ids = vec![image; n];
        ids.push(prompt["bos_token_id"].as_i64().unwrap());
        assert_eq!(ids.as_slice(), &want[..n + 1], "{name}");
        // The layout API gives the image's part of those ids.
        let img = model
            .preprocess(&std::fs::read(image_path("rgb.png")).unwrap())
            .unwrap();
        let layout = layout_ids(&model.prompt_layout(&img).unwrap(), n).unwrap();
        assert_eq!(layout.as_slice(), &want[..n], "{name}");
        assert!(want[n + 1..].iter().all(|&t| t != image), "{name}");
    }
    assert_eq!(seen, 2, "the two PaliGemma fixtures");
}

#[test]
fn paligemma_configs_the_reference_cannot_run_are_refused() {
    let err = load_error(
        "paligemma_f32",
        "pg-seq",
        |_| {},
        |p| {
            p.insert("image_seq_length".into(), 17.into());
        },
    );
    assert_eq!(err.status(), Status::BadConfig);
    assert!(err.message().contains("image_seq_length 17"), "{err}");
    let err = load_error(
        "paligemma_f32",
        "pg-tower",
        |c| {
            vision(c).insert("model_type".into(), "clip_vision_model".into());
        },
        |_| {},
    );
    assert_eq!(err.status(), Status::BadConfig);
    assert!(err.message().contains("siglip_vision_model"), "{err}");
    // projection_dim is the projector's width: a config that says otherwise does not load.
    let err = load_error(
        "paligemma2_hub_bf16",
        "pg-proj",
        |c| {
            c.insert("projection_dim".into(), 25.into());
        },
        |_| {},
    );
    assert_ne!(err.status(), Status::Ok, "{err}");
    assert!(
        err.message().contains("multi_modal_projector.linear"),
        "{err}"
    );
}

#[test]
fn llava_dispatches_on_the_vision_model_type() {
    let err = load_error(
        "llava_clip_f32",
        "unknown-tower",
        |c| {
            vision(c).insert("model_type".into(), "not_a_tower".into());
        },
        |_| {},
    );
    assert_eq!(err.status(), Status::UnsupportedModel);
    assert!(err.message().contains("`not_a_tower`"), "{err}");
    // `pixtral` goes to the Pixtral family, which finds no Pixtral tensors in a CLIP
    // checkpoint: a weights/config error, not "unsupported".
    let err = load_error(
        "llava_clip_f32",
        "pixtral",
        |c| {
            vision(c).insert("model_type".into(), "pixtral".into());
        },
        |_| {},
    );
    assert_ne!(err.status(), Status::UnsupportedModel, "{err}");
    // A vision_config without model_type is CLIP, as LlavaConfig resolves it.
    let dir = copy_fixture("llava_clip_f32", "no-vision-type");
    edit_json(&dir.join("config.json"), |c| {
        vision(c).remove("model_type");
    });
    assert_eq!(load(&dir).info().family, "llava");
}

#[test]
fn configs_the_reference_cannot_run_are_clear_errors() {
    type Edit = Box<dyn FnOnce(&mut serde_json::Map<String, Value>)>;
    let none = || -> Edit { Box::new(|_| {}) };
    let cases: Vec<(&str, &str, Edit, Edit, Status, &str)> = vec![
        (
            "gemma3_f32",
            "mm-tokens",
            Box::new(|c| {
                c.insert("mm_tokens_per_image".into(), 16.into());
            }),
            none(),
            Status::BadConfig,
            "mm_tokens_per_image 16",
        ),
        (
            "gemma3_f32",
            "gemma-clip",
            Box::new(|c| {
                vision(c).insert("model_type".into(), "clip_vision_model".into());
            }),
            none(),
            Status::BadConfig,
            "clip_vision_model",
        ),
        (
            "gemma3_f32",
            "gemma-size",
            none(),
            Box::new(|p| {
                p.insert(
                    "size".into(),
                    serde_json::json!({"height": 64, "width": 64}),
                );
            }),
            Status::BadConfig,
            "image_size 48",
        ),
        (
            "llava_clip_f32",
            "feature-layer",
            Box::new(|c| {
                c.insert("vision_feature_layer".into(), 4.into());
            }),
            none(),
            Status::BadConfig,
            "vision_feature_layer",
        ),
        (
            "llava_clip_f32",
            "feature-layer-neg",
            Box::new(|c| {
                c.insert("vision_feature_layer".into(), serde_json::json!([-1, -5]));
            }),
            none(),
            Status::BadConfig,
            "-5",
        ),
        (
            "llava_clip_f32",
            "feature-layer-empty",
            Box::new(|c| {
                c.insert("vision_feature_layer".into(), serde_json::json!([]));
            }),
            none(),
            Status::BadConfig,
            "vision_feature_layer",
        ),
        (
            "llava_clip_f32",
            "strategy",
            Box::new(|c| {
                c.insert("vision_feature_select_strategy".into(), "cls".into());
            }),
            none(),
            Status::BadConfig,
            "`cls`",
        ),
        (
            "llava_clip_f32",
            "act",
            Box::new(|c| {
                c.insert("projector_hidden_act".into(), "relu6".into());
            }),
            none(),
            Status::BadConfig,
            "relu6",
        ),
        (
            "llava_clip_f32",
            "processor",
            none(),
            Box::new(|p| {
                p.insert(
                    "image_processor_type".into(),
                    "LlavaNextImageProcessor".into(),
                );
            }),
            Status::BadConfig,
            "LlavaNextImageProcessor",
        ),
        (
            "llava_clip_f32",
            "crop",
            none(),
            Box::new(|p| {
                p.insert(
                    "crop_size".into(),
                    serde_json::json!({"height": 48, "width": 48}),
                );
            }),
            Status::BadConfig,
            "48x48",
        ),
        (
            "llava_clip_f32",
            "two-layers-one-weight",
            Box::new(|c| {
                c.insert("vision_feature_layer".into(), serde_json::json!([-2, -1]));
            }),
            none(),
            Status::BadWeights,
            "multi_modal_projector.linear_1.weight",
        ),
    ];
    for (fixture, tag, config, pre, status, needle) in cases {
        let err = load_error(fixture, tag, config, pre);
        assert_eq!(err.status(), status, "{tag}: {err}");
        assert!(
            err.message().contains(needle),
            "{tag}: `{err}` lacks `{needle}`"
        );
    }
}

#[test]
fn text_width_comes_from_the_weights_when_the_config_has_none() {
    let name = "llava_clip_f32";
    let dir = copy_fixture(name, "no-text-hidden");
    edit_json(&dir.join("config.json"), |c| {
        c.get_mut("text_config")
            .unwrap()
            .as_object_mut()
            .unwrap()
            .remove("hidden_size");
    });
    let model = load(&dir);
    let case = &cases(name)[0];
    let image = model
        .preprocess(&std::fs::read(&case.path).unwrap())
        .unwrap();
    let out = model.forward(&[&image]).unwrap();
    assert_eq!(out.dim(), case.dim);
    assert!(rel_l2(out.data(0).unwrap(), &case.embeddings) <= 2e-3);
}

#[test]
fn a_missing_projector_tensor_is_named() {
    let dir = copy_fixture("gemma3_f32", "no-proj");
    let file = dir.join("model.safetensors");
    let bytes = std::fs::read(&file).unwrap();
    let st = SafeTensors::deserialize(&bytes).unwrap();
    let victim = "multi_modal_projector.mm_input_projection_weight";
    let kept: Vec<(String, safetensors::tensor::TensorView)> = st
        .tensors()
        .into_iter()
        .filter(|(n, _)| n != victim)
        .collect();
    assert_eq!(kept.len() + 1, st.len());
    std::fs::write(&file, safetensors::serialize(kept, None).unwrap()).unwrap();
    let err = Model::load(&dir, &LoadOptions::default()).unwrap_err();
    assert_eq!(err.status(), Status::BadWeights, "{err}");
    assert!(err.message().contains(victim), "{err}");
}
