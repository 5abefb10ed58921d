//! LLaVA-NeXT / LLaVA-OneVision (anyres tiles, unpadding, `image_newline`, OneVision's
//! `anyres_max` downsampling) against the transformers fixtures of
//! scripts/fixtures/llava_next.py, beyond what tests/parity.rs checks for every fixture:
//! tile counts and token counts per image as the reference processor expands them, the prompt
//! layout against the processor's input ids, images with different tile counts in one
//! forward call, OneVision's multi-image mode, very flat images, and configurations the
//! reference cannot run.

mod common;

use common::*;
use serde_json::Value;
use vtower::{LoadOptions, Model, PreprocessOptions, Status};

const FIXTURES: [&str; 2] = ["llava_next_f32", "llava_onevision_hub_bf16"];

#[test]
fn tiles_tokens_and_prompts_follow_the_processor() {
    let mut shapes = std::collections::BTreeSet::new();
    for name in FIXTURES {
        let exp = expected(name);
        let model = load(name);
        let info = model.info();
        assert_eq!(info.family, "llava_next");
        assert_eq!(info.tokens_per_image, None);
        assert!(info.mixed_shape_batches);
        assert_eq!(info.tokens.image, exp["special_tokens"]["image"].as_i64());
        let before = ids(&exp["prompt"]["ids_before"]);
        let after = ids(&exp["prompt"]["ids_after"]);
        for img in exp["images"].as_array().unwrap() {
            let key = img["key"].as_str().unwrap();
            let bytes = std::fs::read(repo().join(img["path"].as_str().unwrap())).unwrap();
            let image = model.preprocess(&bytes).unwrap();
            let tiles = img["num_patches"].as_u64().unwrap() as usize;
            let s = info.image_size.0;
            assert_eq!(image.shape(), &[tiles, 3, s, s], "{name}/{key}");
            let tokens = img["processor_tokens"].as_u64().unwrap() as usize;
            assert_eq!(image.n_tokens(), tokens, "{name}/{key}");
            assert_eq!(image.token_grid(), [1, 1, tokens], "{name}/{key}");
            shapes.insert((name, tiles));
            // The layout is the processor's expansion of the one `<image>` placeholder.
            let segments = model.prompt_layout(&image).unwrap();
            check_layout_rows(&segments, image.n_tokens());
            let got = layout_ids(&segments, image.n_tokens()).expect("no text pieces");
            let input_ids = ids(&img["input_ids"]);
            assert_eq!(
                got,
                input_ids[before.len()..input_ids.len() - after.len()],
                "{name}/{key}"
            );
        }
    }
    assert!(shapes.len() >= 6, "tile counts covered: {shapes:?}");
}

#[test]
fn images_with_different_tile_counts_batch_like_single_runs() {
    for name in FIXTURES {
        let model = load(name);
        let images: Vec<vtower::Image> = cases(name)
            .iter()
            .map(|c| model.preprocess(&std::fs::read(&c.path).unwrap()).unwrap())
            .collect();
        let counts: std::collections::BTreeSet<usize> =
            images.iter().map(|i| i.shape()[0]).collect();
        assert!(counts.len() >= 2, "{name}: tile counts {counts:?}");
        check_batch_equals_single_runs(&model, &images, name);
    }
}

#[test]
fn onevision_multi_image_mode_matches_the_reference() {
    // processor(images=[[a, b]]): each image of a multi-image sample is padded to a square
    // (mean color) and run as one tile + one newline; per call `do_image_splitting = false`.
    let name = "llava_onevision_hub_bf16";
    let exp = expected(name);
    let model = load(name);
    let opts = PreprocessOptions {
        do_image_splitting: Some(false),
        ..PreprocessOptions::default()
    };
    let multi = &exp["multi_image"];
    for img in multi["images"].as_array().unwrap() {
        let key = img["key"].as_str().unwrap();
        let bytes = std::fs::read(repo().join(img["path"].as_str().unwrap())).unwrap();
        let image = model.preprocess_with(&bytes, &opts).unwrap();
        let s = model.info().image_size.0;
        assert_eq!(image.shape(), &[1, 3, s, s], "{key}");
        let (pixels, _) = reference(name, &format!("multi/pixels/{key}"));
        let diff = max_abs_diff(image.pixels(), &pixels);
        // Resized: two 8-bit levels at std 0.5.
        assert!(diff <= 2.0 / 255.0 / 0.5 + 1e-6, "{key}: {diff}");
        assert_eq!(image.n_tokens(), img["tokens"].as_u64().unwrap() as usize);
        let out = model.forward(&[&image]).unwrap();
        let err = rel_l2(
            out.data(0).unwrap(),
            &reference(name, &format!("multi/embeddings/{key}")).0,
        );
        println!("multi/{key}: pixels {diff:.2e}, rel L2 {err:.2e}");
        assert!(err <= 2e-3, "{key}: {err}");
        // Splitting on is the default.
        let on = PreprocessOptions {
            do_image_splitting: Some(true),
            ..PreprocessOptions::default()
        };
        let tiled = model.preprocess_with(&bytes, &on).unwrap();
        assert_eq!(tiled.shape(), model.preprocess(&bytes).unwrap().shape());
        assert!(tiled.shape()[0] > 1);
    }
    // LLaVA-NeXT has no such mode (its processor always tiles).
    let next = load("llava_next_f32");
    let bytes = std::fs::read(image_path("photo.jpg")).unwrap();
    let e = next.preprocess_with(&bytes, &opts).unwrap_err();
    assert_eq!(e.status(), Status::InvalidArgument, "{e}");
}

#[test]
fn very_flat_images_keep_what_the_reference_keeps() {
    // Counts from LlavaNextProcessor on the llava_next_f32 fixture: a 41x5 image keeps no
    // row of its 1x3 tile map after unpadding (base tokens only), a 5x41 one keeps 8 rows of
    // no columns (each only its newline), a 200x3 one again no row.
    let model = load("llava_next_f32");
    let g2 = 16;
    for (w, h, tiles, tokens) in [(41u32, 5u32, 3, g2), (5, 41, 3, g2 + 8), (200, 3, 4, g2)] {
        let rgb = vec![90u8; (w * h * 3) as usize];
        let image = model.preprocess_rgb8(&rgb, w, h, w as usize * 3).unwrap();
        assert_eq!(image.shape()[0], tiles, "{w}x{h}");
        assert_eq!(image.n_tokens(), tokens, "{w}x{h}");
        let out = model.forward(&[&image]).unwrap();
        assert_eq!(out.n_tokens(0), Some(tokens));
        let rows = out.data(0).unwrap();
        let d = out.dim();
        // Past the base image, every row is image_newline.
        for r in g2..tokens {
            assert_eq!(rows[r * d..(r + 1) * d], rows[g2 * d..(g2 + 1) * d]);
        }
    }
}

/// An edit of a JSON config.
type Edit = Box<dyn FnOnce(&mut serde_json::Map<String, Value>)>;

#[test]
fn configs_the_reference_cannot_run_are_refused() {
    let none = || -> Edit { Box::new(|_| {}) };
    let cases: Vec<(&str, &str, Edit, Edit, &str)> = vec![
        (
            "llava_next_f32",
            "next-empty",
            Box::new(|c| {
                c.insert("image_grid_pinpoints".into(), serde_json::json!([]));
            }),
            none(),
            "is empty",
        ),
        (
            "llava_next_f32",
            "next-indivisible",
            Box::new(|c| {
                c.insert("image_grid_pinpoints".into(), serde_json::json!([[28, 50]]));
            }),
            none(),
            "[28, 50] is not a multiple of the 28-pixel tile",
        ),
        (
            "llava_next_f32",
            "next-not-pairs",
            Box::new(|c| {
                c.insert("image_grid_pinpoints".into(), serde_json::json!([[28]]));
            }),
            none(),
            "not a [height, width] pair",
        ),
        (
            "llava_next_f32",
            "next-processor-pins",
            none(),
            Box::new(|p| {
                p.get_mut("image_processor").unwrap()["image_grid_pinpoints"] =
                    serde_json::json!([[28, 56]]);
            }),
            "differ from config.json's",
        ),
        (
            "llava_next_f32",
            "next-full",
            Box::new(|c| {
                c.insert("vision_feature_select_strategy".into(), "full".into());
            }),
            none(),
            "leaves 17 tokens per tile",
        ),
        (
            "llava_next_f32",
            "next-patch",
            none(),
            Box::new(|p| {
                p.insert("patch_size".into(), 14.into());
            }),
            "patch_size 14 disagrees",
        ),
        (
            "llava_onevision_hub_bf16",
            "ov-ratio",
            Box::new(|c| {
                c.insert("vision_aspect_ratio".into(), "anyres_max_0".into());
            }),
            none(),
            "anyres_max_0",
        ),
        (
            "llava_onevision_hub_bf16",
            "ov-ratio-mismatch",
            none(),
            Box::new(|p| {
                p.insert("vision_aspect_ratio".into(), "anyres_max_5".into());
            }),
            "disagrees with config.json's anyres_max_2",
        ),
        (
            "llava_onevision_hub_bf16",
            "ov-tokens",
            none(),
            Box::new(|p| {
                p.insert("num_image_tokens".into(), 25.into());
            }),
            "num_image_tokens 25",
        ),
    ];
    for (fixture, tag, config, processor, needle) in cases {
        let dir = copy_fixture(fixture, tag);
        edit_json(&dir.join("config.json"), config);
        edit_json(&dir.join("processor_config.json"), processor);
        let e = Model::load(&dir, &LoadOptions::default()).unwrap_err();
        println!("{tag}: {e}");
        assert_eq!(e.status(), Status::BadConfig, "{tag}: {e}");
        assert!(e.message().contains(needle), "{tag}: {e}");
    }
    // A tower llava_next has no code for.
    let dir = copy_fixture("llava_next_f32", "next-tower");
    edit_json(&dir.join("config.json"), |c| {
        c.get_mut("vision_config").unwrap()["model_type"] = "pixtral".into();
    });
    let e = Model::load(&dir, &LoadOptions::default()).unwrap_err();
    assert_eq!(e.status(), Status::UnsupportedModel, "{e}");
    assert!(e.message().contains("`pixtral`"), "{e}");
}
