//! Per-call size knobs (PreprocessOptions / vt_preprocess_params: min_pixels, max_pixels,
//! longest_edge, max_tokens): Qwen2-VL, Pixtral and Mistral3 pixels and token counts equal
//! transformers' processors called with the same kwargs (`knobs.*` in the fixtures,
//! scripts/gen_knob_cases.py); other families refuse the knobs they do not have; max_tokens
//! refuses what no size satisfies.

mod common;

use common::*;
use safetensors::SafeTensors;
use serde_json::Value;
use vtower::{LoadOptions, Model, PreprocessOptions, Status};

fn knobs(v: &Value) -> PreprocessOptions {
    let get = |k: &str| v.get(k).and_then(Value::as_u64).map(|x| x as usize);
    PreprocessOptions {
        min_pixels: get("min_pixels"),
        max_pixels: get("max_pixels"),
        max_tokens: get("max_tokens"),
        longest_edge: get("longest_edge"),
        ..PreprocessOptions::default()
    }
}

fn read_f32(t: &safetensors::tensor::TensorView) -> Vec<f32> {
    t.data()
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

/// Pixtral / Mistral3: `longest_edge` is the processor's `size={"longest_edge": n}`;
/// `max_tokens` picks the largest longest edge whose image fits (the reference found it by
/// calling the processor for every edge from the top down).
#[test]
fn pixtral_knobs_match_transformers_kwargs() {
    for name in ["pixtral_llava_f32", "mistral3_bf16"] {
        let dir = fixtures().join(name);
        let model = Model::load(&dir, &LoadOptions::default()).unwrap();
        let meta: Value =
            serde_json::from_str(&std::fs::read_to_string(dir.join("knobs.json")).unwrap())
                .unwrap();
        let bytes = std::fs::read(dir.join("knobs.safetensors")).unwrap();
        let st = SafeTensors::deserialize(&bytes).unwrap();
        let cases = meta["cases"].as_array().unwrap();
        assert!(cases.len() >= 4, "{name}");
        for case in cases {
            let key = case["key"].as_str().unwrap();
            let t = st.tensor(key).unwrap();
            let file = std::fs::read(image_path(case["image"].as_str().unwrap())).unwrap();
            let opts = knobs(&case["knobs"]);
            let img = model.preprocess_with(&file, &opts).unwrap();
            let what = format!("{name} {key}: {}", case["knobs"]);
            assert_eq!(img.shape(), t.shape(), "{what}");
            let hw: Vec<usize> = case["image_size"]
                .as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_u64().unwrap() as usize)
                .collect();
            assert_eq!(img.shape()[1..], hw[..], "{what}");
            assert_eq!(
                img.n_tokens() as u64,
                case["n_tokens"].as_u64().unwrap(),
                "{what}"
            );
            let diff = max_abs_diff(img.pixels(), &read_f32(&t));
            assert!(diff <= 0.031, "{what}: pixels differ by {diff}");
        }
        // 64:1: the short side keeps a pixel only at the configured longest edge 64 (4 or 8
        // windows wide), so no size yields 3 tokens.
        let (w, h) = (640u32, 10u32);
        let px = vec![90u8; (w * h * 3) as usize];
        let one = PreprocessOptions {
            max_tokens: Some(3),
            ..PreprocessOptions::default()
        };
        let e = model
            .preprocess_rgb8_with(&px, w, h, (w * 3) as usize, &one)
            .unwrap_err();
        assert_eq!(e.status(), Status::InvalidArgument, "{name}");
        assert!(e.message().contains("no size"), "{e}");
        // Values the reference cannot take are refused, not clamped.
        for bad in [0, 16385] {
            let o = PreprocessOptions {
                longest_edge: Some(bad),
                ..PreprocessOptions::default()
            };
            let e = model
                .preprocess_with(&file_of("photo.jpg"), &o)
                .unwrap_err();
            assert_eq!(e.status(), Status::InvalidArgument, "{name} {bad}");
            assert!(e.message().contains("longest_edge"), "{e}");
        }
    }
}

fn file_of(name: &str) -> Vec<u8> {
    std::fs::read(image_path(name)).unwrap()
}

#[test]
fn qwen_knobs_match_transformers_kwargs() {
    let dir = fixtures().join("qwen2_vl_f32");
    let model = Model::load(&dir, &LoadOptions::default()).unwrap();
    let meta: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("knobs.json")).unwrap()).unwrap();
    let bytes = std::fs::read(dir.join("knobs.safetensors")).unwrap();
    let st = SafeTensors::deserialize(&bytes).unwrap();
    let cases = meta["cases"].as_array().unwrap();
    assert!(cases.len() >= 6);
    for case in cases {
        let key = case["key"].as_str().unwrap();
        let t = st.tensor(key).unwrap();
        let want = read_f32(&t);
        let file = std::fs::read(image_path(case["image"].as_str().unwrap())).unwrap();
        let opts = knobs(&case["knobs"]);
        let img = model.preprocess_with(&file, &opts).unwrap();
        let thw: Vec<usize> = case["grid_thw"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_u64().unwrap() as usize)
            .collect();
        assert_eq!(img.patch_grid().to_vec(), thw, "{key}: {}", case["knobs"]);
        assert_eq!(img.shape(), t.shape(), "{key}");
        // Resized: within two 8-bit levels (2 / 255 / std, std >= 0.26).
        let diff = max_abs_diff(img.pixels(), &want);
        assert!(diff <= 0.031, "{key}: pixels differ by {diff}");
        if let Some(max) = opts.max_tokens {
            assert!(img.n_tokens() <= max, "{key}");
        }
    }
}

#[test]
fn knobs_a_family_lacks_and_budgets_nothing_fits_are_refused() {
    let siglip = Model::load(fixtures().join("siglip_f32"), &LoadOptions::default()).unwrap();
    let file = std::fs::read(image_path("photo.jpg")).unwrap();
    for opts in [
        PreprocessOptions {
            min_pixels: Some(100),
            ..PreprocessOptions::default()
        },
        PreprocessOptions {
            max_pixels: Some(100),
            ..PreprocessOptions::default()
        },
        PreprocessOptions {
            longest_edge: Some(100),
            ..PreprocessOptions::default()
        },
    ] {
        let e = siglip.preprocess_with(&file, &opts).unwrap_err();
        assert_eq!(e.status(), Status::InvalidArgument);
        assert!(
            e.message().contains("siglip models have no per-call"),
            "{e}"
        );
    }
    // Each family keeps to its own knobs: Pixtral has no min_pixels, Qwen no longest_edge.
    let pixtral = Model::load(
        fixtures().join("pixtral_llava_f32"),
        &LoadOptions::default(),
    )
    .unwrap();
    let e = pixtral
        .preprocess_with(
            &file,
            &PreprocessOptions {
                min_pixels: Some(100),
                ..PreprocessOptions::default()
            },
        )
        .unwrap_err();
    assert!(e.message().contains("`min_pixels` (Qwen2-VL"), "{e}");
    // A fixed count: max_tokens at or above it changes nothing, below it is refused.
    let at = PreprocessOptions {
        max_tokens: Some(36),
        ..PreprocessOptions::default()
    };
    assert_eq!(siglip.preprocess_with(&file, &at).unwrap().n_tokens(), 36);
    let below = PreprocessOptions {
        max_tokens: Some(35),
        ..PreprocessOptions::default()
    };
    let e = siglip.preprocess_with(&file, &below).unwrap_err();
    assert_eq!(e.status(), Status::InvalidArgument);
    assert!(e.message().contains("max_tokens = 35"), "{e}");
    let zero = PreprocessOptions {
        max_tokens: Some(0),
        ..PreprocessOptions::default()
    };
    assert_eq!(
        siglip.preprocess_with(&file, &zero).unwrap_err().status(),
        Status::InvalidArgument
    );

    // Qwen: a 10:1 image cannot be made as small as one token.
    let qwen = Model::load(fixtures().join("qwen2_vl_f32"), &LoadOptions::default()).unwrap();
    let (w, h) = (1000u32, 100u32);
    let px = vec![128u8; (w * h * 3) as usize];
    let one = PreprocessOptions {
        max_tokens: Some(1),
        ..PreprocessOptions::default()
    };
    let e = qwen
        .preprocess_rgb8_with(&px, w, h, (w * 3) as usize, &one)
        .unwrap_err();
    assert_eq!(e.status(), Status::InvalidArgument);
    assert!(e.message().contains("no size"), "{e}");
    let e = qwen
        .preprocess_with(
            &file,
            &PreprocessOptions {
                longest_edge: Some(64),
                ..PreprocessOptions::default()
            },
        )
        .unwrap_err();
    assert!(e.message().contains("`longest_edge` (Pixtral"), "{e}");
    let eight = PreprocessOptions {
        max_tokens: Some(8),
        ..PreprocessOptions::default()
    };
    let img = qwen
        .preprocess_rgb8_with(&px, w, h, (w * 3) as usize, &eight)
        .unwrap();
    assert_eq!(img.n_tokens(), 8);
}

/// `max_soft_tokens` is Gemma 4's: every other family refuses a value, as the header says
/// ("Other models refuse a non-zero value"), the Qwen-VL processor's families included
/// (Qwen2-VL, Qwen3-VL, GLM-4.xV, PaddleOCR-VL; they ignored it until 2026-12-07).
#[test]
fn max_soft_tokens_is_refused_outside_gemma4() {
    let file = std::fs::read(image_path("photo.jpg")).unwrap();
    let opts = PreprocessOptions {
        max_soft_tokens: Some(70),
        ..PreprocessOptions::default()
    };
    for name in [
        "qwen2_vl_f32",
        "qwen2_5_vl_bf16",
        "qwen3_vl_f32",
        "glm4v_f32",
        "paddleocr_vl_f32",
        "siglip_f32",
    ] {
        let model = Model::load(fixtures().join(name), &LoadOptions::default()).unwrap();
        let e = match model.preprocess_with(&file, &opts) {
            Ok(img) => panic!(
                "{name}: max_soft_tokens accepted ({} tokens)",
                img.n_tokens()
            ),
            Err(e) => e,
        };
        assert_eq!(e.status(), Status::InvalidArgument, "{name}: {e}");
        assert!(e.message().contains("max_soft_tokens 70"), "{name}: {e}");
    }
}
