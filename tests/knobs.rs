//! Per-call size knobs (PreprocessOptions / vt_preprocess_params: min_pixels, max_pixels,
//! max_tokens): Qwen2-VL pixels and token grids equal transformers' processor called with
//! the same kwargs (tests/fixtures/qwen2_vl_f32/knobs.*, scripts/gen_knob_cases.py); other
//! families refuse the knobs they do not have; max_tokens refuses what no size satisfies.

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
        ..PreprocessOptions::default()
    }
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
        let want: Vec<f32> = t
            .data()
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
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
    ] {
        let e = siglip.preprocess_with(&file, &opts).unwrap_err();
        assert_eq!(e.status(), Status::InvalidArgument);
        assert!(
            e.message().contains("siglip models have no per-call"),
            "{e}"
        );
    }
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
    let eight = PreprocessOptions {
        max_tokens: Some(8),
        ..PreprocessOptions::default()
    };
    let img = qwen
        .preprocess_rgb8_with(&px, w, h, (w * 3) as usize, &eight)
        .unwrap();
    assert_eq!(img.n_tokens(), 8);
}
