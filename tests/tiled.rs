//! The tiled families (InternVL, Aya Vision: `GotOcr2ImageProcessor` tiles + thumbnail, a
//! pixel shuffle, their projectors) against the transformers fixtures of
//! scripts/fixtures/{internvl,aya_vision}.py, beyond what tests/parity.rs checks for every
//! fixture: tile counts and grids, per-call tile budgets (`max_patches`, `crop_to_patches`)
//! against reference outputs made with those kwargs, the prompt layout against the real
//! processors' input ids, images with different tile counts in one forward call, and bad tile
//! budgets.

mod common;

use common::*;
use serde_json::Value;
use vtower::{LoadOptions, Model, PreprocessOptions, PromptSegment, Status};

const FAMILIES: [&str; 2] = ["internvl", "aya_vision"];

/// The fixtures of the tiled families; each family has at least two.
fn tiled_fixtures() -> Vec<String> {
    let v: Vec<String> = model_fixtures()
        .into_iter()
        .filter(|n| FAMILIES.contains(&expected(n)["family"].as_str().unwrap_or("")))
        .collect();
    for family in FAMILIES {
        let n = v.iter().filter(|n| expected(n)["family"] == family).count();
        assert!(n >= 2, "{n} {family} fixtures");
    }
    v
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
fn tiles_grids_and_special_tokens_follow_the_reference() {
    for name in tiled_fixtures() {
        let exp = expected(&name);
        let model = load(&name);
        let info = model.info();
        assert_eq!(info.family, exp["family"].as_str().unwrap(), "{name}");
        assert_eq!(info.tokens_per_image, None, "{name}");
        assert!(info.mixed_shape_batches, "{name}");
        let st = &exp["special_tokens"];
        assert_eq!(info.tokens.image, st["image"].as_i64(), "{name}");
        assert_eq!(
            info.tokens.image_start,
            st["image_start"].as_i64(),
            "{name}"
        );
        assert_eq!(info.tokens.image_end, st["image_end"].as_i64(), "{name}");
        let mut tiled = 0;
        for img in exp["images"].as_array().unwrap() {
            let path = repo().join(img["path"].as_str().unwrap());
            let image = model.preprocess(&std::fs::read(&path).unwrap()).unwrap();
            let grid = grid_of(&img["grid"]);
            assert_eq!(image.token_grid(), grid, "{name}/{}", img["key"]);
            let tiles = img["num_patches"].as_u64().unwrap() as usize;
            assert_eq!(grid[0], tiles, "{name}/{}", img["key"]);
            let s = info.image_size.0;
            assert_eq!(image.shape(), &[tiles, 3, s, s], "{name}/{}", img["key"]);
            tiled += usize::from(tiles > 1);
        }
        assert!(tiled >= 3, "{name}: only {tiled} tiled images");
    }
}

#[test]
fn per_call_tile_budgets_match_the_reference() {
    let (mut checked, mut changed) = (0, 0);
    for name in tiled_fixtures() {
        let exp = expected(&name);
        let model = load(&name);
        for ov in exp["overrides"].as_array().unwrap() {
            let prefix = ov["prefix"].as_str().unwrap();
            let p = &ov["params"];
            let opts = PreprocessOptions {
                crop_to_patches: p["crop_to_patches"].as_bool(),
                min_patches: p["min_patches"].as_u64().map(|v| v as usize),
                max_patches: p["max_patches"].as_u64().map(|v| v as usize),
                ..PreprocessOptions::default()
            };
            assert!(!opts.is_default(), "{name}/{prefix}: {p}");
            for img in ov["images"].as_array().unwrap() {
                let key = img["key"].as_str().unwrap();
                let path = repo().join(img["path"].as_str().unwrap());
                let bytes = std::fs::read(&path).unwrap();
                let image = model.preprocess_with(&bytes, &opts).unwrap();
                let (pixels, shape) = reference(&name, &format!("{prefix}/pixels/{key}"));
                assert_eq!(image.shape(), shape.as_slice(), "{name}/{prefix}/{key}");
                assert_eq!(image.token_grid(), grid_of(&img["grid"]));
                // Resized tiles: within two 8-bit levels after normalization.
                let diff = max_abs_diff(image.pixels(), &pixels);
                assert!(
                    diff <= 2.0 / 255.0 / 0.2 + 1e-6,
                    "{name}/{prefix}/{key}: {diff}"
                );
                let out = model.forward(&[&image]).unwrap();
                let (emb, _) = reference(&name, &format!("{prefix}/embeddings/{key}"));
                let err = rel_l2(out.data(0).unwrap(), &emb);
                println!("{name}/{prefix}/{key}: pixels {diff:.2e}, rel L2 {err:.2e}");
                assert!(err <= 2e-3, "{name}/{prefix}/{key}: rel L2 {err}");
                // Mostly the default differs: the override did something.
                let default = model.preprocess(&bytes).unwrap();
                changed += usize::from(default.token_grid() != image.token_grid());
                checked += 1;
            }
        }
    }
    assert!(checked >= 12, "only {checked} override cases");
    assert!(
        changed >= 12,
        "only {changed} override cases change the tiles"
    );
}

/// The layout's ids, with text segments mapped through the fixture's recorded tokenization of
/// each text piece (Aya Vision's `TILE_i` markers and `TILE_GLOBAL`).
fn expand(segments: &[PromptSegment], texts: &dyn Fn(&str) -> Vec<i64>) -> Vec<i64> {
    let mut out = Vec::new();
    for s in segments {
        match s {
            PromptSegment::Text(t) => out.extend(texts(t)),
            PromptSegment::Token(id) => out.push(*id),
            PromptSegment::Embeddings { token, count, .. } => {
                out.extend(std::iter::repeat_n(token.expect("placeholder id"), *count))
            }
        }
    }
    out
}

#[test]
fn prompt_layouts_equal_the_processors_input_ids() {
    for name in tiled_fixtures() {
        let exp = expected(&name);
        let model = load(&name);
        let prompt = &exp["prompt"];
        let image = match prompt["image"].get("path") {
            Some(p) => model
                .preprocess(&std::fs::read(repo().join(p.as_str().unwrap())).unwrap())
                .unwrap(),
            None => {
                // Image.new('RGB', (w, h), (180, 40, 90)), as the fixture script made it.
                let (w, h) = (
                    prompt["image"]["width"].as_u64().unwrap() as u32,
                    prompt["image"]["height"].as_u64().unwrap() as u32,
                );
                assert!(prompt["image"]["generated"]
                    .as_str()
                    .unwrap()
                    .contains("(180, 40, 90)"));
                let rgb: Vec<u8> = (0..w * h).flat_map(|_| [180u8, 40, 90]).collect();
                model.preprocess_rgb8(&rgb, w, h, w as usize * 3).unwrap()
            }
        };
        let tiles = prompt["num_patches"].as_u64().unwrap() as usize;
        assert_eq!(image.token_grid()[0], tiles, "{name}");
        let segments = model.prompt_layout(&image).unwrap();
        check_layout_rows(&segments, image.n_tokens());
        let input_ids = ids(&prompt["input_ids"]);
        match exp["family"].as_str().unwrap() {
            "internvl" => {
                let got = layout_ids(&segments, image.n_tokens()).expect("no text");
                let t = &prompt["token_ids"];
                let start = t["start_image"].as_i64().unwrap();
                let end = t["end_image"].as_i64().unwrap();
                let a = input_ids.iter().position(|&i| i == start).unwrap();
                let b = input_ids.iter().position(|&i| i == end).unwrap();
                assert_eq!(got, input_ids[a..=b], "{name}");
            }
            "aya_vision" => {
                let t = &prompt["token_ids"];
                let markers = &prompt["tile_marker_ids"];
                let texts = |s: &str| -> Vec<i64> {
                    if s == "TILE_GLOBAL" {
                        vec![t["tile_global"].as_i64().unwrap()]
                    } else {
                        ids(&markers[s])
                    }
                };
                let got = expand(&segments, &texts);
                assert_eq!(got, ids(&prompt["image_input_ids"]), "{name}");
                // ... which the processor's whole prompt contains once.
                assert!(input_ids.windows(got.len()).any(|w| w == got), "{name}");
                // The text pieces are exactly the processor's strings.
                let text: String = segments
                    .iter()
                    .map(|s| match s {
                        PromptSegment::Text(t) => t.clone(),
                        PromptSegment::Token(id)
                            if Some(*id) == model.info().tokens.image_start =>
                        {
                            "<|START_OF_IMG|>".into()
                        }
                        PromptSegment::Token(_) => "<|END_OF_IMG|>".into(),
                        PromptSegment::Embeddings { count, .. } => "<|IMG_PATCH|>".repeat(*count),
                    })
                    .collect();
                assert_eq!(
                    text,
                    prompt["expanded_image_text"].as_str().unwrap(),
                    "{name}"
                );
            }
            other => panic!("{other}"),
        }
    }
}

#[test]
fn images_with_different_tile_counts_batch_like_single_runs() {
    for name in tiled_fixtures() {
        let model = load(&name);
        let images: Vec<vtower::Image> = cases(&name)
            .iter()
            .map(|c| model.preprocess(&std::fs::read(&c.path).unwrap()).unwrap())
            .collect();
        let counts: std::collections::BTreeSet<usize> =
            images.iter().map(|i| i.token_grid()[0]).collect();
        assert!(counts.len() >= 3, "{name}: tile counts {counts:?}");
        check_batch_equals_single_runs(&model, &images, &name);
    }
}

#[test]
fn bad_tile_budgets_are_clear_errors() {
    let model = load("internvl_f32");
    let bytes = std::fs::read(image_path("photo.jpg")).unwrap();
    let bad = [
        (None, Some(0), "max_patches 0"),
        (Some(0), None, "min_patches 0"),
        (Some(5), Some(2), "min_patches 5 is above max_patches 2"),
        (None, Some(100_000), "above the limit"),
    ];
    for (min, max, needle) in bad {
        let opts = PreprocessOptions {
            min_patches: min,
            max_patches: max,
            ..PreprocessOptions::default()
        };
        let e = model.preprocess_with(&bytes, &opts).unwrap_err();
        assert_eq!(e.status(), Status::InvalidArgument, "{e}");
        assert!(e.message().contains(needle), "{e}");
    }
    // A budget whose tiles exceed max_image_tokens is refused before any tile is made.
    let small = Model::load(
        fixtures().join("internvl_f32"),
        &LoadOptions {
            max_image_tokens: 8,
            ..LoadOptions::default()
        },
    )
    .unwrap();
    let e = small.preprocess(&bytes).unwrap_err();
    assert_eq!(e.status(), Status::ImageTooLarge, "{e}");
    assert!(e.message().contains("tiles"), "{e}");
    // Pan-and-scan and the other families' knobs are refused by name.
    for opts in [
        PreprocessOptions {
            pan_and_scan: Some(true),
            ..PreprocessOptions::default()
        },
        PreprocessOptions {
            longest_edge: Some(64),
            ..PreprocessOptions::default()
        },
    ] {
        let e = model.preprocess_with(&bytes, &opts).unwrap_err();
        assert_eq!(e.status(), Status::InvalidArgument, "{e}");
    }
    // Images smaller than a tile are scaled up to their grid, as the reference does:
    // get_optimal_tiled_canvas((3, 5), (28, 28), 1, 6) = (3, 2), plus the thumbnail.
    let tiny = model.preprocess_rgb8(&[9; 3 * 5 * 3], 5, 3, 15).unwrap();
    assert_eq!(tiny.token_grid(), [7, 2, 2]);
    let one = model.preprocess_rgb8(&[9; 3], 1, 1, 3).unwrap();
    assert_eq!(one.token_grid(), [1, 2, 2]);
}

/// An edit of a JSON config.
type Edit = Box<dyn FnOnce(&mut serde_json::Map<String, Value>)>;

/// Loads `fixture` with config.json and processor_config.json edited, returning the error.
fn load_error(
    fixture: &str,
    tag: &str,
    config: impl FnOnce(&mut serde_json::Map<String, Value>),
    processor: impl FnOnce(&mut serde_json::Map<String, Value>),
) -> vtower::Error {
    let dir = copy_fixture(fixture, tag);
    edit_json(&dir.join("config.json"), config);
    edit_json(&dir.join("processor_config.json"), processor);
    let err = Model::load(&dir, &LoadOptions::default()).unwrap_err();
    println!("{tag}: {err}");
    err
}

#[test]
fn configs_the_reference_cannot_run_are_refused() {
    let none = |_: &mut serde_json::Map<String, Value>| {};
    let cases: Vec<(&str, &str, Edit, Edit, &str)> = vec![
        (
            "internvl_f32",
            "ivl-ratio",
            Box::new(|c| {
                c.insert("downsample_ratio".into(), 0.3.into());
            }),
            Box::new(none),
            "downsample_ratio 0.3",
        ),
        (
            "internvl_f32",
            "ivl-full",
            Box::new(|c| {
                c.insert("vision_feature_select_strategy".into(), "full".into());
            }),
            Box::new(none),
            "vision_feature_select_strategy `full`",
        ),
        (
            "internvl_f32",
            "ivl-seq",
            Box::new(none),
            Box::new(|p| {
                p.insert("image_seq_length".into(), 256.into());
            }),
            "image_seq_length 256",
        ),
        (
            "internvl_f32",
            "ivl-size",
            Box::new(none),
            Box::new(|p| {
                p.get_mut("image_processor").unwrap()["size"] =
                    serde_json::json!({"height": 56, "width": 56});
            }),
            "does not match the vision tower's image_size 28",
        ),
        (
            "aya_vision_f32",
            "aya-default",
            Box::new(|c| {
                c.insert("vision_feature_select_strategy".into(), "default".into());
            }),
            Box::new(none),
            "vision_feature_select_strategy `default`",
        ),
        (
            "aya_vision_f32",
            "aya-odd",
            Box::new(|c| {
                c.insert("alignment_intermediate_size".into(), 47.into());
            }),
            Box::new(none),
            "alignment_intermediate_size 47",
        ),
        (
            "aya_vision_f32",
            "aya-factor",
            Box::new(|c| {
                c.insert("downsample_factor".into(), 3.into());
            }),
            Box::new(none),
            "downsample_factor 3",
        ),
    ];
    for (fixture, tag, config, processor, needle) in cases {
        let e = load_error(fixture, tag, config, processor);
        assert_eq!(e.status(), Status::BadConfig, "{tag}: {e}");
        assert!(e.message().contains(needle), "{tag}: {e}");
    }
}
