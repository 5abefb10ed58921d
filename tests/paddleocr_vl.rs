//! PaddleOCR-VL (`paddleocr_vl`): pixels and embeddings against transformers'
//! `PaddleOCRVLImageProcessor` (torchvision backend) and `get_image_features`, mixed sizes in
//! one call, the prompt layout against `PaddleOCRVLProcessor`'s input ids, M-RoPE ids against
//! `get_rope_index`, per-call size bounds against the processor called with `size=`, the Hub
//! layout (sharded, `mlp_AR.*`, flat config, legacy pixel keys), and bad configs refused by
//! name.

mod common;

use common::*;
use serde_json::{json, Value};
use vtower::{LoadOptions, Model, Status};

const FIXTURES: [&str; 2] = ["paddleocr_vl_f32", "paddleocr_vl_hub_bf16"];

fn preprocess(model: &Model, exp: &Value, key: &str) -> vtower::Image {
    model
        .preprocess(&std::fs::read(fixture_image(exp, key)).unwrap())
        .unwrap()
}

/// Two 8-bit levels after normalization with the fixture's smallest std.
fn resized_pixel_tol(exp: &Value) -> f32 {
    let std = exp["preprocessing"]["image_std"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap())
        .fold(f64::MAX, f64::min);
    (2.0 / 255.0 / std) as f32
}

#[test]
fn pixels_and_embeddings_match_the_reference() {
    for name in FIXTURES {
        let exp = expected(name);
        let model = load(name);
        assert_eq!(model.info().family, "paddleocr_vl");
        assert_eq!(
            model.info().output_dim,
            exp["dim"].as_u64().unwrap() as usize
        );
        check_cases_one_by_one_then_batched(&model, name, resized_pixel_tol(&exp));
    }
}

#[test]
fn tokens_prompt_and_mrope_positions() {
    for name in FIXTURES {
        let exp = expected(name);
        let model = load(name);
        let t = &model.info().tokens;
        let want = &exp["tokens"];
        assert_eq!(t.image, want["image_token_id"].as_i64(), "{name}");
        assert_eq!(t.image_start, want["vision_start_token_id"].as_i64());
        assert_eq!(t.image_end, want["vision_end_token_id"].as_i64());
        assert_eq!(model.merge_size(), 2);
        for e in exp["images"].as_array().unwrap() {
            let image = preprocess(&model, &exp, e["key"].as_str().unwrap());
            let grid: Vec<usize> = ids(&e["grid_thw"]).iter().map(|&v| v as usize).collect();
            assert_eq!(image.patch_grid().to_vec(), grid, "{name}");
            assert_eq!(image.token_grid(), [1, grid[1] / 2, grid[2] / 2]);
            assert_eq!(image.n_tokens(), e["tokens"].as_u64().unwrap() as usize);
        }
        // The processor's prompt (text, image A, text, image B, text): each image's span of
        // input ids is the layout vtower gives it, and the M-RoPE walk gives get_rope_index's ids.
        let mrope = &exp["mrope"];
        let images: Vec<vtower::Image> = mrope["images"]
            .as_array()
            .unwrap()
            .iter()
            .map(|k| preprocess(&model, &exp, k.as_str().unwrap()))
            .collect();
        let input = ids(&mrope["input_ids"]);
        let starts: Vec<usize> = (0..input.len())
            .filter(|&i| Some(input[i]) == t.image_start)
            .collect();
        assert_eq!(starts.len(), images.len(), "{name}");
        for (image, &s) in images.iter().zip(&starts) {
            let layout = model.prompt_layout(image).unwrap();
            let got = layout_ids(&layout, image.n_tokens()).unwrap();
            assert_eq!(&input[s..s + got.len()], got.as_slice(), "{name}");
        }
        check_mrope_positions(mrope, &images, name);
    }
}

#[test]
fn per_call_size_bounds_match_the_processor() {
    for name in FIXTURES {
        check_pixel_bound_knobs(&load(name), name, resized_pixel_tol(&expected(name)));
    }
}

/// The Hub checkpoint: `mlp_AR.*` and `visual.*` in the second shard, a flat config without
/// token ids (the class defaults), top-level `min_pixels` / `max_pixels` that win over
/// `size`; its language-model shard is never opened.
#[test]
fn hub_layout_and_legacy_pixel_keys() {
    let name = "paddleocr_vl_hub_bf16";
    let dir = fixtures().join(name);
    let pre: Value = serde_json::from_str(
        &std::fs::read_to_string(dir.join("preprocessor_config.json")).unwrap(),
    )
    .unwrap();
    assert!(pre["min_pixels"].is_u64() && pre["size"]["shortest_edge"].is_u64());
    assert_ne!(pre["min_pixels"], pre["size"]["shortest_edge"]);
    let exp = expected(name);
    assert_eq!(exp["preprocessing"]["min_pixels"], pre["min_pixels"]);
    let shard = exp["checkpoint"]["lm_shard"].as_str().unwrap();
    let index: Value = serde_json::from_str(
        &std::fs::read_to_string(dir.join("model.safetensors.index.json")).unwrap(),
    )
    .unwrap();
    let map = index["weight_map"].as_object().unwrap();
    assert!(map.contains_key("mlp_AR.linear_1.weight"));
    assert!(map
        .iter()
        .filter(|(_, f)| f.as_str() == Some(shard))
        .all(|(k, _)| !k.starts_with("visual.") && !k.starts_with("mlp_AR.")));
    let copy = copy_fixture(name, "paddleocr-lm-shard");
    std::fs::write(copy.join(shard), b"not a safetensors file").unwrap();
    let model = Model::load(&copy, &LoadOptions::default()).unwrap();
    let case = cases(name).into_iter().find(|c| !c.resized).unwrap();
    let image = model
        .preprocess(&std::fs::read(&case.path).unwrap())
        .unwrap();
    let out = model.forward(&[&image]).unwrap();
    assert!(rel_l2(out.data(0).unwrap(), &case.embeddings) <= 1e-4);
    let _ = std::fs::remove_dir_all(&copy);
}

#[test]
fn bad_configs_are_refused_by_name() {
    type Edit<'a> = (
        &'a str,
        &'a dyn Fn(&mut serde_json::Map<String, Value>),
        &'a str,
    );
    let edits: [Edit; 5] = [
        (
            "language model width vs the projector's weights",
            &|c| c["text_config"]["hidden_size"] = json!(16),
            "linear_2",
        ),
        (
            "vision width vs the weights",
            &|c| c["vision_config"]["hidden_size"] = json!(48),
            "position_embedding",
        ),
        (
            "rotary type",
            &|c| {
                c["vision_config"]["rope_parameters"] =
                    json!({"rope_type": "yarn", "rope_theta": 10000.0})
            },
            "rope",
        ),
        (
            "activation",
            &|c| c["vision_config"]["hidden_act"] = json!("relu2"),
            "relu2",
        ),
        (
            "head_dim the attention cannot have",
            &|c| c["vision_config"]["head_dim"] = json!(8),
            "head_dim",
        ),
    ];
    for (what, edit, needle) in edits {
        let dir = copy_fixture("paddleocr_vl_f32", "paddleocr-bad");
        edit_json(&dir.join("config.json"), edit);
        let err = Model::load(&dir, &LoadOptions::default()).unwrap_err();
        assert!(
            matches!(err.status(), Status::BadConfig | Status::BadWeights),
            "{what}: {err}"
        );
        assert!(err.message().contains(needle), "{what}: {err}");
        let _ = std::fs::remove_dir_all(&dir);
    }
    // The processor: a merge size the tower does not have, a temporal patch the Conv2d cannot
    // take, a filter torchvision has not, a size without both bounds (the reference fails at
    // the first call).
    for (edit, needle) in [
        (json!({"merge_size": 4}), "merge_size"),
        (json!({"temporal_patch_size": 2}), "temporal_patch_size"),
        (json!({"resample": 1}), "resample"),
        (json!({"size": {"shortest_edge": 1024}}), "longest_edge"),
    ] {
        let dir = copy_fixture("paddleocr_vl_f32", "paddleocr-bad-pre");
        edit_json(&dir.join("preprocessor_config.json"), |p| {
            for (k, v) in edit.as_object().unwrap() {
                p.insert(k.clone(), v.clone());
            }
        });
        let err = Model::load(&dir, &LoadOptions::default()).unwrap_err();
        assert_eq!(err.status(), Status::BadConfig, "{edit}: {err}");
        assert!(err.message().contains(needle), "{edit}: {err}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
