//! Gemma 4 (`gemma4`): what tests/parity.rs does not cover: `image_position_ids` against the
//! processor's, the per-call soft-token budget (`max_soft_tokens`) against the processor
//! called with it, special tokens and grids, mixed sizes in one call, and clear errors for
//! budgets outside the supported set, configs the reference cannot pool, and the Gemma 4
//! model types without an image path.

mod common;

use std::path::{Path, PathBuf};

use common::*;
use safetensors::SafeTensors;
use serde_json::Value;
use vtower::{LoadOptions, Model, PreprocessOptions, Status};

const FIXTURES: [&str; 4] = [
    "gemma4_f32",
    "gemma4_clipped_sharded_bf16",
    "gemma4_model_f16",
    "gemma4_vision_f32",
];

fn expected(name: &str) -> Value {
    serde_json::from_str(
        &std::fs::read_to_string(fixtures().join(name).join("expected.json")).unwrap(),
    )
    .unwrap()
}

fn load(dir: &Path) -> Model {
    Model::load(dir, &LoadOptions::default()).unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
}

/// `expected.safetensors` tensor `key` as f32 values.
fn reference(name: &str, key: &str) -> Vec<f32> {
    let bytes = std::fs::read(fixtures().join(name).join("expected.safetensors")).unwrap();
    let st = SafeTensors::deserialize(&bytes).unwrap();
    let t = st
        .tensor(key)
        .unwrap_or_else(|_| panic!("{name}: no `{key}`"));
    t.data()
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

fn budget(n: usize) -> PreprocessOptions {
    PreprocessOptions {
        max_soft_tokens: Some(n),
        ..PreprocessOptions::default()
    }
}

#[test]
fn position_ids_grids_and_tokens_match_the_processor() {
    for name in FIXTURES {
        let exp = expected(name);
        let model = load(&fixtures().join(name));
        let k = exp["pooling_kernel_size"].as_u64().unwrap() as usize;
        assert_eq!(model.merge_size(), k);
        let info = model.info();
        assert_eq!(info.family, "gemma4");
        assert_eq!(info.tokens_per_image, None);
        let tokens = &exp["tokens"];
        assert_eq!(info.tokens.image, tokens["image_token_id"].as_i64());
        assert_eq!(info.tokens.image_start, tokens["boi_token_id"].as_i64());
        assert_eq!(info.tokens.image_end, tokens["eoi_token_id"].as_i64());
        assert_eq!(info.tokens.image_break, None);
        for img in exp["images"].as_array().unwrap() {
            let key = img["key"].as_str().unwrap();
            let image = model
                .preprocess(&std::fs::read(fixture_image(&exp, key)).unwrap())
                .unwrap();
            let patch: Vec<usize> = img["patch_grid"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_u64().unwrap() as usize)
                .collect();
            let grid: Vec<usize> = img["token_grid"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_u64().unwrap() as usize)
                .collect();
            assert_eq!(image.patch_grid(), [1, patch[0], patch[1]], "{name}/{key}");
            assert_eq!(image.token_grid(), [1, grid[0], grid[1]], "{name}/{key}");
            assert_eq!(image.n_tokens(), img["tokens"].as_u64().unwrap() as usize);
            // image_position_ids: (x, y) of each patch row in raster order, then (-1, -1).
            let rows = image.shape()[0];
            let [_, pr, pc] = image.patch_grid();
            let mut ids = vec![-1f32; 2 * rows];
            for i in 0..pr * pc {
                ids[2 * i] = (i % pc) as f32;
                ids[2 * i + 1] = (i / pc) as f32;
            }
            assert_eq!(
                ids,
                reference(name, &format!("positions/{key}")),
                "{name}/{key}"
            );
        }
    }
}

#[test]
fn per_call_budget_matches_the_processor_called_with_it() {
    for name in FIXTURES {
        let exp = expected(name);
        let model = load(&fixtures().join(name));
        for (b, entries) in exp["overrides"].as_object().unwrap() {
            let b: usize = b.parse().unwrap();
            for e in entries.as_array().unwrap() {
                let key = e["key"].as_str().unwrap();
                let bytes = std::fs::read(fixture_image(&exp, key)).unwrap();
                let image = model.preprocess_with(&bytes, &budget(b)).unwrap();
                assert_eq!(image.n_tokens(), e["tokens"].as_u64().unwrap() as usize);
                let want = reference(name, &format!("pixels_{b}/{key}"));
                assert_eq!(image.pixels().len(), want.len(), "{name}/{key} @{b}");
                let diff = max_abs_diff(image.pixels(), &want);
                assert!(
                    diff <= 2.0 / 255.0,
                    "{name}/{key} @{b}: pixels differ by {diff}"
                );
                let out = model.forward(&[&image]).unwrap();
                let err = rel_l2(
                    out.data(0).unwrap(),
                    &reference(name, &format!("embeddings_{b}/{key}")),
                );
                println!("{name}/{key} max_soft_tokens {b}: rel L2 {err:.2e}");
                assert!(err <= 2e-3, "{name}/{key} @{b}: rel L2 {err}");
                // The default budget gives another size.
                let default = model.preprocess(&bytes).unwrap();
                assert_ne!(default.shape(), image.shape());
            }
        }
    }
}

#[test]
fn mixed_sizes_and_budgets_in_one_call_equal_one_by_one() {
    let name = "gemma4_f32";
    let exp = expected(name);
    let model = load(&fixtures().join(name));
    let mut images = Vec::new();
    for (i, img) in exp["images"].as_array().unwrap().iter().enumerate() {
        let bytes = std::fs::read(fixture_image(&exp, img["key"].as_str().unwrap())).unwrap();
        let opts = if i % 2 == 0 {
            budget(140)
        } else {
            PreprocessOptions::default()
        };
        images.push(model.preprocess_with(&bytes, &opts).unwrap());
    }
    let refs: Vec<&vtower::Image> = images.iter().collect();
    let batch = model.forward(&refs).unwrap();
    for (i, img) in images.iter().enumerate() {
        let one = model.forward(&[img]).unwrap();
        let d = max_abs_diff(batch.data(i).unwrap(), one.data(0).unwrap());
        assert!(d <= 1e-5, "image {i}: batch vs single {d}");
    }
}

#[test]
fn budgets_outside_the_set_are_refused() {
    let model = load(&fixtures().join("gemma4_f32"));
    let bytes = std::fs::read(common::image_path("photo.jpg")).unwrap();
    for b in [1, 69, 100, 256, 2240] {
        let err = model.preprocess_with(&bytes, &budget(b)).unwrap_err();
        assert_eq!(err.status(), Status::InvalidArgument, "{b}");
        assert!(err.message().contains("max_soft_tokens"), "{err}");
        assert!(err.message().contains("70, 140, 280, 560, 1120"), "{err}");
    }
    // Other families have no budget.
    let siglip = load(&fixtures().join("siglip_f32"));
    let err = siglip.preprocess_with(&bytes, &budget(280)).unwrap_err();
    assert_eq!(err.status(), Status::InvalidArgument);
    assert!(err.message().contains("max_soft_tokens"), "{err}");
    let gemma3 = load(&fixtures().join("gemma3_f32"));
    let err = gemma3.preprocess_with(&bytes, &budget(280)).unwrap_err();
    assert_eq!(err.status(), Status::InvalidArgument);
}

#[test]
fn tiny_images_are_upscaled_as_the_reference_does() {
    // get_aspect_ratio_preserving_size scales a 1x1 image up to the budget: 280 patches of
    // 4 px with pooling 2 -> 64x64 pixels, 8x8 soft tokens; a 1-pixel-high strip becomes
    // one pooling window high.
    let model = load(&fixtures().join("gemma4_f32"));
    let one = model.preprocess_rgb8(&[10, 20, 30], 1, 1, 3).unwrap();
    assert_eq!(one.patch_grid(), [1, 16, 16]);
    assert_eq!(one.token_grid(), [1, 8, 8]);
    let strip = model
        .preprocess_rgb8(&vec![7u8; 3 * 5000], 5000, 1, 3 * 5000)
        .unwrap();
    assert_eq!(strip.patch_grid(), [1, 2, 140]);
    let out = model.forward(&[&one, &strip]).unwrap();
    assert_eq!(out.n_tokens(0), Some(64));
    assert_eq!(out.n_tokens(1), Some(70));
}

fn copy_fixture(name: &str, tag: &str) -> PathBuf {
    let dst = temp_dir(&format!("g4-{tag}"));
    for e in std::fs::read_dir(fixtures().join(name)).unwrap() {
        let e = e.unwrap();
        let file = e.file_name().to_string_lossy().into_owned();
        if e.path().is_file() && !file.starts_with("expected.") {
            std::fs::copy(e.path(), dst.join(&file)).unwrap();
        }
    }
    dst
}

fn edit(path: &Path, f: impl FnOnce(&mut Value)) {
    let mut v: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    f(&mut v);
    std::fs::write(path, v.to_string()).unwrap();
}

#[test]
fn config_errors_are_named() {
    type Edit<'a> = (&'a str, &'a str, &'a dyn Fn(&mut Value), Status, &'a str);
    let cases: [Edit; 8] = [
        (
            "pool1",
            "config.json",
            &|c| c["vision_config"]["pooling_kernel_size"] = 1.into(),
            Status::BadConfig,
            "pooling_kernel_size",
        ),
        (
            "novision",
            "config.json",
            &|c| c["vision_config"] = Value::Null,
            Status::BadConfig,
            "no vision_config",
        ),
        (
            "budget",
            "preprocessor_config.json",
            &|c| c["max_soft_tokens"] = 256.into(),
            Status::BadConfig,
            "max_soft_tokens 256",
        ),
        (
            "patch",
            "preprocessor_config.json",
            &|c| c["patch_size"] = 8.into(),
            Status::BadConfig,
            "patch_size 8",
        ),
        (
            "pooling",
            "preprocessor_config.json",
            &|c| c["pooling_kernel_size"] = 3.into(),
            Status::BadConfig,
            "pooling_kernel_size 3",
        ),
        (
            "unified",
            "config.json",
            &|c| c["model_type"] = "gemma4_unified".into(),
            Status::UnsupportedModel,
            "gemma4_unified",
        ),
        (
            "text",
            "config.json",
            &|c| c["model_type"] = "gemma4_text".into(),
            Status::UnsupportedModel,
            "gemma4_text",
        ),
        (
            "assistant",
            "config.json",
            &|c| c["model_type"] = "gemma4_assistant".into(),
            Status::UnsupportedModel,
            "gemma4_assistant",
        ),
    ];
    for (tag, file, f, status, needle) in cases {
        let dir = copy_fixture("gemma4_f32", tag);
        edit(&dir.join(file), f);
        let err = Model::load(&dir, &LoadOptions::default()).unwrap_err();
        assert_eq!(err.status(), status, "{tag}: {err}");
        assert!(err.message().contains(needle), "{tag}: {err}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}

#[test]
fn without_resize_only_whole_pooling_windows_within_the_budget_are_accepted() {
    // With do_resize=false the reference patchifies the image as it is; sides that are not
    // multiples of pooling_kernel_size * patch_size (8 here) leave partial windows that
    // get_image_features cannot split, so they are refused, as are images over the budget.
    let dir = copy_fixture("gemma4_f32", "noresize");
    edit(&dir.join("preprocessor_config.json"), |c| {
        c["do_resize"] = false.into()
    });
    let model = load(&dir);
    let exp = expected("gemma4_f32");
    let native = model
        .preprocess(&std::fs::read(fixture_image(&exp, "native_64x64.png")).unwrap())
        .unwrap();
    assert_eq!(native.token_grid(), [1, 8, 8]);
    for (w, h) in [(30u32, 21u32), (4, 4), (8, 4), (200, 200)] {
        let rgb = vec![100u8; (w * h * 3) as usize];
        let err = model
            .preprocess_rgb8(&rgb, w, h, (w * 3) as usize)
            .unwrap_err();
        assert_eq!(err.status(), Status::InvalidArgument, "{w}x{h}: {err}");
        assert!(err.message().contains("do_resize=false"), "{err}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_patch_budget_past_the_pixel_limit_is_refused_before_allocating() {
    // pooling 512 with patch 4: 70 * 512² patches of 16 pixels, 294 G pixels of padded rows.
    let dir = copy_fixture("gemma4_f32", "hugepool");
    edit(&dir.join("config.json"), |c| {
        c["vision_config"]["pooling_kernel_size"] = 512.into()
    });
    edit(&dir.join("preprocessor_config.json"), |c| {
        c["pooling_kernel_size"] = 512.into()
    });
    let model = load(&dir);
    let err = model.preprocess_rgb8(&[1, 2, 3], 1, 1, 3).unwrap_err();
    assert_eq!(err.status(), Status::ImageTooLarge, "{err}");
    assert!(err.message().contains("patch budget"), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}
