//! GLM-4.xV (`glm4v`, `glm4v_moe`, `glm46v`, `glm_ocr`): pixels and embeddings against
//! transformers' `Glm4vImageProcessorPil` and `get_image_features`, mixed sizes in one call,
//! special tokens and the prompt layout, M-RoPE ids against `get_rope_index`, per-call size
//! bounds against the processor called with `size=`, the other model types on the same
//! towers, and bad configs refused by name.

mod common;

use common::*;
use serde_json::{json, Value};
use vtower::{LoadOptions, Model, PromptSegment, Status};

const FIXTURES: [&str; 3] = ["glm4v_f32", "glm_ocr_f32", "glm46v_hub_bf16"];

/// Two 8-bit levels after normalization with the CLIP std (smallest 0.2613).
const RESIZED_PIXEL_TOL: f32 = 2.0 / 255.0 / 0.2613;

fn preprocess(model: &Model, exp: &Value, key: &str) -> vtower::Image {
    model
        .preprocess(&std::fs::read(fixture_image(exp, key)).unwrap())
        .unwrap()
}

#[test]
fn pixels_and_embeddings_match_the_reference() {
    for name in FIXTURES {
        let model = load(name);
        assert_eq!(model.info().family, "glm4v");
        check_cases_one_by_one_then_batched(&model, name, RESIZED_PIXEL_TOL);
    }
}

#[test]
fn tokens_prompt_and_mrope_positions() {
    for name in FIXTURES {
        let exp = expected(name);
        let model = load(name);
        let t = &model.info().tokens;
        assert_eq!(t.image, exp["tokens"]["image_token_id"].as_i64(), "{name}");
        assert_eq!(
            t.image_start,
            exp["tokens"]["image_start_token_id"].as_i64()
        );
        assert_eq!(t.image_end, exp["tokens"]["image_end_token_id"].as_i64());
        assert_eq!(model.merge_size(), 2);
        for e in exp["images"].as_array().unwrap() {
            let image = preprocess(&model, &exp, e["key"].as_str().unwrap());
            let grid: Vec<usize> = ids(&e["grid_thw"]).iter().map(|&v| v as usize).collect();
            assert_eq!(image.patch_grid().to_vec(), grid, "{name}");
            assert_eq!(image.token_grid(), [1, grid[1] / 2, grid[2] / 2]);
            assert_eq!(image.n_tokens(), e["tokens"].as_u64().unwrap() as usize);
            // <|begin_of_image|>, n x <|image|>, <|end_of_image|>
            let layout = model.prompt_layout(&image).unwrap();
            let want: Vec<i64> = std::iter::once(t.image_start.unwrap())
                .chain(std::iter::repeat_n(t.image.unwrap(), image.n_tokens()))
                .chain(std::iter::once(t.image_end.unwrap()))
                .collect();
            assert_eq!(layout_ids(&layout, image.n_tokens()), Some(want));
            assert!(matches!(layout[0], PromptSegment::Token(_)));
        }
        // The fixture's prompt (text, image A, text, image B, text) walked as an engine.
        let mrope = &exp["mrope"];
        let images: Vec<vtower::Image> = mrope["images"]
            .as_array()
            .unwrap()
            .iter()
            .map(|k| preprocess(&model, &exp, k.as_str().unwrap()))
            .collect();
        check_mrope_positions(mrope, &images, name);
    }
}

#[test]
fn per_call_size_bounds_match_the_processor() {
    for name in FIXTURES {
        check_pixel_bound_knobs(&load(name), name, RESIZED_PIXEL_TOL);
    }
}

/// The other model types on these towers: `glm4v_moe` (GLM-4.5V, GLM-4.1V's tower, its own
/// default image token), `glm46v` with an OCR tower by `vision_config.model_type`.
#[test]
fn other_model_types_load_the_same_towers() {
    let case = cases("glm4v_f32").into_iter().find(|c| !c.resized).unwrap();
    let dir = copy_fixture("glm4v_f32", "glm4v-moe");
    edit_json(&dir.join("config.json"), |c| {
        c.insert("model_type".into(), json!("glm4v_moe"));
        c.remove("image_token_id");
        c["vision_config"]["model_type"] = json!("glm4v_moe_vision");
    });
    let model = Model::load(&dir, &LoadOptions::default()).unwrap();
    assert_eq!(model.info().model_type, "glm4v_moe");
    assert_eq!(model.info().tokens.image, Some(151363));
    let image = model
        .preprocess(&std::fs::read(&case.path).unwrap())
        .unwrap();
    let out = model.forward(&[&image]).unwrap();
    assert!(rel_l2(out.data(0).unwrap(), &case.embeddings) <= 1e-4);
    let _ = std::fs::remove_dir_all(&dir);

    let case = cases("glm_ocr_f32")
        .into_iter()
        .find(|c| !c.resized)
        .unwrap();
    let dir = copy_fixture("glm_ocr_f32", "glm46v-ocr");
    edit_json(&dir.join("config.json"), |c| {
        c.insert("model_type".into(), json!("glm46v"));
        c["vision_config"]["model_type"] = json!("glm_ocr_vision");
    });
    let model = Model::load(&dir, &LoadOptions::default()).unwrap();
    let image = model
        .preprocess(&std::fs::read(&case.path).unwrap())
        .unwrap();
    let out = model.forward(&[&image]).unwrap();
    assert!(rel_l2(out.data(0).unwrap(), &case.embeddings) <= 1e-4);
    let _ = std::fs::remove_dir_all(&dir);
}

/// The Hub checkpoint's top-level `min_pixels` / `max_pixels` do nothing (the GLM processor
/// has no such attributes): its images come out at the `size` bounds, as in transformers.
#[test]
fn legacy_pixel_keys_are_ignored() {
    let dir = fixtures().join("glm46v_hub_bf16");
    let pre: Value = serde_json::from_str(
        &std::fs::read_to_string(dir.join("preprocessor_config.json")).unwrap(),
    )
    .unwrap();
    assert!(pre["min_pixels"].is_u64() && pre["size"]["shortest_edge"].is_u64());
    let exp = expected("glm46v_hub_bf16");
    let model = load("glm46v_hub_bf16");
    for e in exp["images"].as_array().unwrap() {
        let image = preprocess(&model, &exp, e["key"].as_str().unwrap());
        let grid: Vec<usize> = ids(&e["grid_thw"]).iter().map(|&v| v as usize).collect();
        assert_eq!(image.patch_grid().to_vec(), grid);
    }
}

#[test]
fn bad_configs_are_refused_by_name() {
    type Edit<'a> = (
        &'a str,
        &'a dyn Fn(&mut serde_json::Map<String, Value>),
        &'a str,
    );
    let edits: [Edit; 6] = [
        (
            "merge size of the tower and the processor disagree",
            &|c| c["vision_config"]["spatial_merge_size"] = json!(4),
            "merge_size",
        ),
        (
            "out_hidden_size vs the weights",
            &|c| {
                c["vision_config"]["out_hidden_size"] = json!(16);
                c["text_config"]["hidden_size"] = json!(16);
            },
            "out_hidden_size",
        ),
        (
            "out_hidden_size vs the language model",
            &|c| c["text_config"]["hidden_size"] = json!(32),
            "out_hidden_size",
        ),
        (
            "a glm46v tower this build does not have",
            &|c| {
                c.insert("model_type".into(), json!("glm46v"));
                c["vision_config"]["model_type"] = json!("glm_image_vision");
            },
            "glm_image_vision",
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
    ];
    for (what, edit, needle) in edits {
        let dir = copy_fixture("glm4v_f32", "glm4v-bad");
        edit_json(&dir.join("config.json"), edit);
        let err = Model::load(&dir, &LoadOptions::default()).unwrap_err();
        assert!(
            matches!(err.status(), Status::BadConfig | Status::BadWeights),
            "{what}: {err}"
        );
        assert!(err.message().contains(needle), "{what}: {err}");
        let _ = std::fs::remove_dir_all(&dir);
    }
    // A processor size without both bounds fails in the reference at the first call.
    let dir = copy_fixture("glm4v_f32", "glm4v-bad-size");
    edit_json(&dir.join("preprocessor_config.json"), |p| {
        p["size"] = json!({"shortest_edge": 1024});
    });
    let err = Model::load(&dir, &LoadOptions::default()).unwrap_err();
    assert!(err.message().contains("longest_edge"), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
    // GLM model types without an image path here are refused by name, listing the GLM ones.
    let dir = copy_fixture("glm4v_f32", "glm4v-unknown");
    edit_json(&dir.join("config.json"), |c| {
        c.insert("model_type".into(), json!("glm_image"));
    });
    let err = Model::load(&dir, &LoadOptions::default()).unwrap_err();
    assert_eq!(err.status(), Status::UnsupportedModel, "{err}");
    assert!(err.message().contains("glm_image"), "{err}");
    assert!(
        err.message().contains("glm46v") && err.message().contains("glm_ocr"),
        "{err}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// The Hub checkpoint with its language-model shard replaced by bytes that are not a
/// safetensors file: loading and running must not notice (only vision tensors are read).
#[test]
fn only_the_vision_shard_is_opened() {
    let name = "glm46v_hub_bf16";
    let exp = expected(name);
    let shard = exp["checkpoint"]["lm_shard"].as_str().unwrap();
    let index: Value = serde_json::from_str(
        &std::fs::read_to_string(fixtures().join(name).join("model.safetensors.index.json"))
            .unwrap(),
    )
    .unwrap();
    let map = index["weight_map"].as_object().unwrap();
    assert!(map
        .iter()
        .filter(|(_, f)| f.as_str() == Some(shard))
        .all(|(k, _)| !k.contains("visual.")));
    let dir = copy_fixture(name, "glm46v-lm-shard");
    std::fs::write(dir.join(shard), b"not a safetensors file").unwrap();
    let model = Model::load(&dir, &LoadOptions::default()).unwrap();
    let case = cases(name).into_iter().find(|c| !c.resized).unwrap();
    let image = model
        .preprocess(&std::fs::read(&case.path).unwrap())
        .unwrap();
    let out = model.forward(&[&image]).unwrap();
    assert!(rel_l2(out.data(0).unwrap(), &case.embeddings) <= 1e-4);
    let _ = std::fs::remove_dir_all(&dir);
}
