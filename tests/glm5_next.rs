//! GLM-5.x Next (`glm5_next`): pixels and embeddings against transformers'
//! `Glm5NextImageProcessorPil` (token budget, zero padding) and `get_image_features`, mixed
//! sizes in one call, the clamped SwiGLUs, special tokens and the prompt layout, the per-call
//! token budget against the processor's `max_image_tokens`, the tower under `glm46v`, and bad
//! configs refused by name.

mod common;

use common::*;
use serde_json::json;
use vtower::{LoadOptions, Model, PreprocessOptions, PromptSegment, Status};

const NAME: &str = "glm5_next_f32";

/// Two 8-bit levels after normalization with the CLIP std (smallest 0.2613).
const RESIZED_PIXEL_TOL: f32 = 2.0 / 255.0 / 0.2613;

#[test]
fn pixels_and_embeddings_match_the_reference() {
    let model = load(NAME);
    assert_eq!(model.info().family, "glm5_next");
    assert_eq!(model.info().model_type, "glm5_next");
    check_cases_one_by_one_then_batched(&model, NAME, RESIZED_PIXEL_TOL);
}

/// Every case's canvas (`padded_to`) is its patch grid; the padding is black before
/// normalization: `(0 - mean) / std` at the bottom-right pixel of every padded image.
#[test]
fn padded_canvas_and_token_grid() {
    let exp = expected(NAME);
    let model = load(NAME);
    let t = &model.info().tokens;
    assert_eq!(t.image, exp["tokens"]["image_token_id"].as_i64());
    assert_eq!(
        t.image_start,
        exp["tokens"]["image_start_token_id"].as_i64()
    );
    assert_eq!(t.image_end, exp["tokens"]["image_end_token_id"].as_i64());
    assert_eq!(model.merge_size(), 2);
    let mut padded = 0;
    for e in exp["images"].as_array().unwrap() {
        let bytes = std::fs::read(fixture_image(&exp, e["key"].as_str().unwrap())).unwrap();
        let image = model.preprocess(&bytes).unwrap();
        let grid: Vec<usize> = ids(&e["grid_thw"]).iter().map(|&v| v as usize).collect();
        let canvas: Vec<usize> = ids(&e["padded_to"]).iter().map(|&v| v as usize).collect();
        assert_eq!(grid, [1, canvas[0] / 8, canvas[1] / 8], "{e}");
        assert_eq!(image.patch_grid().to_vec(), grid);
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
        if e["padded"].as_bool().unwrap() {
            padded += 1;
            // The last value is the bottom-right pixel's blue channel: padding.
            let last = *image.pixels().last().unwrap();
            let [mean, std] = ["image_mean", "image_std"]
                .map(|k| exp["preprocessing"][k][2].as_f64().unwrap() as f32);
            let black = (0.0 - mean) / std;
            assert!((last - black).abs() < 1e-6, "{e}: {last}");
        }
    }
    assert!(padded >= 3);
}

/// The config classes' default token ids when config.json has none.
#[test]
fn default_token_ids() {
    let dir = copy_fixture(NAME, "glm5-next-tokens");
    edit_json(&dir.join("config.json"), |c| {
        for k in [
            "image_token_id",
            "image_start_token_id",
            "image_end_token_id",
        ] {
            c.remove(k);
        }
    });
    let model = Model::load(&dir, &LoadOptions::default()).unwrap();
    let t = &model.info().tokens;
    assert_eq!(
        (t.image, t.image_start, t.image_end),
        (Some(154854), Some(154830), Some(154831))
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// The clamp is on: with `swiglu_limit` lifted vtower moves away from the reference exactly as
/// far as transformers' own unclamped run did (`clamp.rel_l2_without_clamp`, all images).
#[test]
fn swiglu_clamp_is_applied() {
    let exp = expected(NAME);
    let want = exp["clamp"]["rel_l2_without_clamp"].as_f64().unwrap();
    assert!(want > 0.1, "{want}");
    let dir = copy_fixture(NAME, "glm5-next-unclamped");
    edit_json(&dir.join("config.json"), |c| {
        c["vision_config"]["swiglu_limit"] = json!(1e30);
    });
    let model = Model::load(&dir, &LoadOptions::default()).unwrap();
    let (mut got, mut reference) = (Vec::new(), Vec::new());
    for case in cases(NAME) {
        let image = model
            .preprocess(&std::fs::read(&case.path).unwrap())
            .unwrap();
        got.extend_from_slice(model.forward(&[&image]).unwrap().data(0).unwrap());
        reference.extend_from_slice(&case.embeddings);
    }
    let rel = rel_l2(&got, &reference);
    assert!(
        (rel - want).abs() <= 1e-4 * want.max(1.0),
        "{rel} vs {want}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// `max_tokens` is the processor's `max_image_tokens` kwarg (lowered, never raised); the
/// pixel bounds of the GLM-4.xV processors are not this processor's.
#[test]
fn per_call_token_budget_matches_the_processor() {
    let model = load(NAME);
    check_pixel_bound_knobs(&model, NAME, RESIZED_PIXEL_TOL);
    let case = cases(NAME).into_iter().max_by_key(|c| c.tokens).unwrap();
    let bytes = std::fs::read(&case.path).unwrap();
    let more = PreprocessOptions {
        max_tokens: Some(1000),
        ..Default::default()
    };
    assert_eq!(
        model.preprocess_with(&bytes, &more).unwrap().n_tokens(),
        case.tokens
    );
    let e = model
        .preprocess_with(
            &bytes,
            &PreprocessOptions {
                min_pixels: Some(1024),
                ..Default::default()
            },
        )
        .unwrap_err();
    assert_eq!(e.status(), Status::InvalidArgument, "{e}");
    assert!(e.message().contains("min_pixels"), "{e}");
}

/// `max_image_tokens` above the engine's per-image token limit: refused before allocating.
#[test]
fn token_limit_is_checked_first() {
    let opts = LoadOptions {
        max_image_tokens: 8,
        ..Default::default()
    };
    let model = Model::load(fixtures().join(NAME), &opts).unwrap();
    let case = cases(NAME).into_iter().find(|c| c.tokens > 8).unwrap();
    let e = model
        .preprocess(&std::fs::read(&case.path).unwrap())
        .unwrap_err();
    assert_eq!(e.status(), Status::ImageTooLarge, "{e}");
    assert!(e.message().contains("max_image_tokens"), "{e}");
}

/// `glm46v` builds the tower its `vision_config.model_type` names: `glm5_next_vision` is this
/// one, with GLM-4.6V's processor (a native-size image comes out the same) and token ids.
#[test]
fn glm46v_with_this_tower() {
    let case = cases(NAME)
        .into_iter()
        .find(|c| c.file.starts_with("native"))
        .unwrap();
    let dir = copy_fixture(NAME, "glm46v-next");
    edit_json(&dir.join("config.json"), |c| {
        c.insert("model_type".into(), json!("glm46v"));
        c.remove("image_token_id");
        c["text_config"]["model_type"] = json!("glm4v_text");
    });
    edit_json(&dir.join("preprocessor_config.json"), |p| {
        p["size"] = json!({"shortest_edge": 1024, "longest_edge": 8192});
    });
    let model = Model::load(&dir, &LoadOptions::default()).unwrap();
    assert_eq!(model.info().family, "glm4v");
    assert_eq!(model.info().tokens.image, Some(151343));
    let image = model
        .preprocess(&std::fs::read(&case.path).unwrap())
        .unwrap();
    assert_eq!(image.pixels(), case.pixels.as_slice());
    let out = model.forward(&[&image]).unwrap();
    assert!(rel_l2(out.data(0).unwrap(), &case.embeddings) <= 1e-5);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn bad_configs_are_refused_by_name() {
    let edits: [ConfigEdit; 7] = [
        (
            "swiglu_limit",
            "config.json",
            &|c| c["vision_config"]["swiglu_limit"] = json!(0),
            "swiglu_limit",
        ),
        (
            "merger width vs the weights",
            "config.json",
            &|c| c["vision_config"]["projection_intermediate_size"] = json!(40),
            "gate_proj",
        ),
        (
            "rotary type",
            "config.json",
            &|c| {
                c["vision_config"]["rope_parameters"] =
                    json!({"rope_type": "yarn", "rope_theta": 10000.0})
            },
            "rope",
        ),
        (
            "out_hidden_size vs the language model",
            "config.json",
            &|c| c["text_config"]["hidden_size"] = json!(32),
            "out_hidden_size",
        ),
        (
            "patch size of the processor",
            "preprocessor_config.json",
            &|p| p["patch_size"] = json!(14),
            "patch_size",
        ),
        (
            "token budget",
            "preprocessor_config.json",
            &|p| p["max_image_tokens"] = json!(0),
            "max_image_tokens",
        ),
        (
            "resample",
            "preprocessor_config.json",
            &|p| p["resample"] = json!(9),
            "resample",
        ),
    ];
    check_refused_edits(NAME, &edits);
}
