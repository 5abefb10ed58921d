//! Idefics3 and SmolVLM (image splitting into a grid + global image, the SigLIP-like tower
//! with bucketized patch positions, the pixel-shuffle connector) against the transformers
//! fixtures of scripts/fixtures/idefics3.py, beyond what tests/parity.rs checks for every
//! fixture: tile grids, per-call `do_image_splitting` / `longest_edge` against reference
//! outputs made with those kwargs, the prompt layout against the real processors' input ids,
//! images with different tile counts in one forward call, and bad input.

mod common;

use common::*;
use serde_json::Value;
use vtower::{LoadOptions, Model, PreprocessOptions, PromptSegment, Status};

const FIXTURES: [&str; 2] = ["idefics3_f32", "smolvlm_hub_bf16"];

fn usize_of(v: &Value) -> usize {
    v.as_u64().unwrap() as usize
}

#[test]
fn tiles_grids_and_special_tokens_follow_the_reference() {
    for name in FIXTURES {
        let exp = expected(name);
        let model = load(name);
        let info = model.info();
        assert_eq!(info.family, exp["family"].as_str().unwrap(), "{name}");
        assert_eq!(info.tokens_per_image, None);
        assert!(info.mixed_shape_batches);
        let st = &exp["special_tokens"];
        assert_eq!(info.tokens.image, st["image"].as_i64(), "{name}");
        assert_eq!(info.tokens.image_start, st["image_start"].as_i64());
        assert_eq!(info.tokens.image_end, st["image_end"].as_i64());
        let m = usize_of(&exp["image_size"]);
        assert_eq!(info.image_size, (m, m));
        let mut counts = std::collections::BTreeSet::new();
        for img in exp["images"].as_array().unwrap() {
            let path = repo().join(img["path"].as_str().unwrap());
            let image = model.preprocess(&std::fs::read(&path).unwrap()).unwrap();
            let g: Vec<usize> = img["grid"]
                .as_array()
                .unwrap()
                .iter()
                .map(usize_of)
                .collect();
            assert_eq!(
                image.token_grid(),
                [g[0], g[1], g[2]],
                "{name}/{}",
                img["key"]
            );
            assert_eq!(g[0], usize_of(&img["num_patches"]));
            assert_eq!(image.shape(), &[g[0], 3, m, m], "{name}/{}", img["key"]);
            counts.insert(g[0]);
        }
        assert!(counts.len() >= 2, "{name}: tile counts {counts:?}");
    }
}

#[test]
fn per_call_splitting_and_longest_edge_match_the_reference() {
    let (mut checked, mut changed, mut exact) = (0, 0, 0);
    for name in FIXTURES {
        let exp = expected(name);
        let model = load(name);
        for ov in exp["overrides"].as_array().unwrap() {
            let prefix = ov["prefix"].as_str().unwrap();
            let p = &ov["params"];
            let opts = PreprocessOptions {
                do_image_splitting: p["do_image_splitting"].as_bool(),
                longest_edge: p["longest_edge"].as_u64().map(|v| v as usize),
                ..PreprocessOptions::default()
            };
            assert!(!opts.is_default(), "{name}/{prefix}: {p}");
            for img in ov["images"].as_array().unwrap() {
                let key = img["key"].as_str().unwrap();
                let path = repo().join(img["path"].as_str().unwrap());
                let bytes = std::fs::read(&path).unwrap();
                let image = model.preprocess_with(&bytes, &opts).unwrap();
                let (pixels, shape) = reference(name, &format!("{prefix}/pixels/{key}"));
                assert_eq!(image.shape(), shape.as_slice(), "{name}/{prefix}/{key}");
                let diff = max_abs_diff(image.pixels(), &pixels);
                assert!(diff <= 2.0 / 255.0 / 0.5, "{name}/{prefix}/{key}: {diff}");
                let out = model.forward(&[&image]).unwrap();
                let (emb, _) = reference(name, &format!("{prefix}/embeddings/{key}"));
                let err = rel_l2(out.data(0).unwrap(), &emb);
                println!("{name}/{prefix}/{key}: pixels {diff:.2e}, rel L2 {err:.2e}");
                // A native-size image that is not split is never resampled: exact pixels.
                let native = key.starts_with("native") && p["do_image_splitting"] == false;
                if native {
                    assert_eq!(diff, 0.0, "{name}/{prefix}/{key}");
                    assert!(err <= 1e-4, "{name}/{prefix}/{key}: rel L2 {err}");
                    exact += 1;
                }
                assert!(err <= 2e-3, "{name}/{prefix}/{key}: rel L2 {err}");
                let default = model.preprocess(&bytes).unwrap();
                changed += usize::from(default.token_grid() != image.token_grid());
                checked += 1;
            }
        }
    }
    assert!(
        checked >= 8 && changed == checked && exact >= 1,
        "{checked} {changed} {exact}"
    );
}

#[test]
fn every_fixture_image_matches_bit_for_bit_before_the_tower() {
    // Pillow-exact resampling: the tiles equal the reference's exactly, resized or not.
    for name in FIXTURES {
        let model = load(name);
        for case in cases(name) {
            let image = model
                .preprocess(&std::fs::read(&case.path).unwrap())
                .unwrap();
            assert_eq!(image.shape(), case.pixel_shape.as_slice());
            let diff = max_abs_diff(image.pixels(), &case.pixels);
            assert!(diff <= 1e-6, "{name}/{}: {diff}", case.file);
        }
    }
}

#[test]
fn prompt_layouts_equal_the_processors_input_ids() {
    for name in FIXTURES {
        let exp = expected(name);
        let model = load(name);
        let prompt = &exp["prompt"];
        let path = repo().join(prompt["image"]["path"].as_str().unwrap());
        let image = model.preprocess(&std::fs::read(&path).unwrap()).unwrap();
        assert_eq!(image.token_grid()[0], usize_of(&prompt["num_patches"]));
        let segments = model.prompt_layout(&image).unwrap();
        check_layout_rows(&segments, image.n_tokens());
        let texts = &prompt["text_ids"];
        let mut got = Vec::new();
        let mut text_pieces = 0;
        for s in &segments {
            match s {
                PromptSegment::Text(t) => {
                    let v = texts
                        .get(t.as_str())
                        .unwrap_or_else(|| panic!("{name}: text piece {t:?} not recorded"));
                    got.extend(ids(v));
                    text_pieces += 1;
                }
                PromptSegment::Token(id) => got.push(*id),
                PromptSegment::Embeddings { token, count, .. } => {
                    got.extend(std::iter::repeat_n(token.expect("placeholder id"), *count))
                }
            }
        }
        assert_eq!(got, ids(&prompt["image_input_ids"]), "{name}");
        let input_ids = ids(&prompt["input_ids"]);
        assert!(input_ids.windows(got.len()).any(|w| w == got), "{name}");
        assert!(text_pieces >= 2, "{name}: {segments:?}");
    }
    // Without row tags in the tokenizer (smolvlm fixture) they are text; with them, tokens.
    let model = load("smolvlm_hub_bf16");
    let img = model
        .preprocess(&std::fs::read(fixtures().join("smolvlm_hub_bf16/wide_72x24.png")).unwrap())
        .unwrap();
    let segs = model.prompt_layout(&img).unwrap();
    assert!(
        segs.contains(&PromptSegment::Text("<row_1_col_2>".into())),
        "{segs:?}"
    );
    // An image that is not split: fake, global, rows, fake.
    let one = model
        .preprocess_with(
            &std::fs::read(fixtures().join("smolvlm_hub_bf16/wide_72x24.png")).unwrap(),
            &PreprocessOptions {
                do_image_splitting: Some(false),
                ..PreprocessOptions::default()
            },
        )
        .unwrap();
    let t = &model.info().tokens;
    let segs = model.prompt_layout(&one).unwrap();
    assert_eq!(segs.len(), 4, "{segs:?}");
    assert_eq!(segs[0], PromptSegment::Token(t.image_start.unwrap()));
    assert_eq!(segs[3], PromptSegment::Token(t.image_end.unwrap()));
}

#[test]
fn images_with_different_tile_counts_batch_like_single_runs() {
    for name in FIXTURES {
        let model = load(name);
        let mut images: Vec<vtower::Image> = cases(name)
            .iter()
            .map(|c| model.preprocess(&std::fs::read(&c.path).unwrap()).unwrap())
            .collect();
        // Plus an unsplit image and a larger grid.
        let bytes = std::fs::read(&cases(name)[0].path).unwrap();
        for opts in [
            PreprocessOptions {
                do_image_splitting: Some(false),
                ..PreprocessOptions::default()
            },
            PreprocessOptions {
                longest_edge: Some(96),
                ..PreprocessOptions::default()
            },
        ] {
            images.push(model.preprocess_with(&bytes, &opts).unwrap());
        }
        let counts: std::collections::BTreeSet<usize> =
            images.iter().map(|i| i.token_grid()[0]).collect();
        assert!(counts.len() >= 3, "{name}: tile counts {counts:?}");
        check_batch_equals_single_runs(&model, &images, name);
    }
}

#[test]
fn bad_input_is_a_clear_error() {
    let model = load("idefics3_f32");
    let bytes = std::fs::read(image_path("photo.jpg")).unwrap();
    // Other families' knobs are refused by name.
    for (opts, needle) in [
        (
            PreprocessOptions {
                pan_and_scan: Some(true),
                ..PreprocessOptions::default()
            },
            "pan-and-scan",
        ),
        (
            PreprocessOptions {
                max_patches: Some(4),
                ..PreprocessOptions::default()
            },
            "max_patches",
        ),
        (
            PreprocessOptions {
                longest_edge: Some(100_000),
                ..PreprocessOptions::default()
            },
            "longest_edge",
        ),
    ] {
        let e = model
            .preprocess_with(&bytes, &opts)
            .map(|_| ())
            .unwrap_err();
        assert_eq!(e.status(), Status::InvalidArgument, "{e}");
        assert!(e.message().contains(needle), "{e}");
    }
    // do_image_splitting is refused by other families.
    let other = load("internvl_f32");
    let split = PreprocessOptions {
        do_image_splitting: Some(true),
        ..PreprocessOptions::default()
    };
    let e = other
        .preprocess_with(&bytes, &split)
        .map(|_| ())
        .unwrap_err();
    assert_eq!(e.status(), Status::InvalidArgument, "{e}");
    assert!(e.message().contains("do_image_splitting"), "{e}");
    // Images smaller than a tile are scaled up, as the reference does; 1x1 and thin strips
    // work too.
    for (w, h) in [(1u32, 1u32), (5, 3), (1, 300), (300, 1)] {
        let rgb = vec![9u8; (w * h * 3) as usize];
        let img = model.preprocess_rgb8(&rgb, w, h, w as usize * 3).unwrap();
        assert!(img.token_grid()[0] >= 1);
        model.forward(&[&img]).unwrap();
    }
    // A grid too large for max_image_tokens is refused before any tile is made.
    let small = Model::load(
        fixtures().join("idefics3_f32"),
        &LoadOptions {
            max_image_tokens: 20,
            ..LoadOptions::default()
        },
    )
    .unwrap();
    let e = small.preprocess(&bytes).map(|_| ()).unwrap_err();
    assert_eq!(e.status(), Status::ImageTooLarge, "{e}");
    assert!(e.message().contains("tiles"), "{e}");
}

/// An edit of a JSON config.
type Edit = Box<dyn FnOnce(&mut serde_json::Map<String, Value>)>;

#[test]
fn configs_the_reference_cannot_run_are_refused() {
    let none = || -> Edit { Box::new(|_| {}) };
    let image_processor =
        |f: fn(&mut Value)| -> Edit { Box::new(move |p| f(p.get_mut("image_processor").unwrap())) };
    let cases: Vec<(&str, Edit, Edit, Status, &str)> = vec![
        (
            "scale",
            Box::new(|c| {
                c.insert("scale_factor".into(), 4.into());
            }),
            none(),
            Status::BadConfig,
            "scale_factor 4",
        ),
        (
            "seq",
            none(),
            Box::new(|p| {
                p.insert("image_seq_len".into(), 169.into());
            }),
            Status::BadConfig,
            "image_seq_len 169",
        ),
        (
            "tile-absurd",
            none(),
            image_processor(|p| p["max_image_size"] = serde_json::json!({"longest_edge": 1 << 30})),
            Status::BadConfig,
            "max_image_size.longest_edge",
        ),
        (
            "tile-zero",
            none(),
            image_processor(|p| p["max_image_size"] = serde_json::json!({"longest_edge": 0})),
            Status::BadConfig,
            "max_image_size.longest_edge",
        ),
        (
            "tile-small",
            none(),
            image_processor(|p| p["max_image_size"] = serde_json::json!({"longest_edge": 3})),
            Status::BadConfig,
            "max_image_size 3",
        ),
        (
            "patch",
            Box::new(|c| {
                c.get_mut("vision_config").unwrap()["patch_size"] = 8.into();
            }),
            none(),
            Status::BadConfig,
            "3x3 patches of 8 px, which scale_factor 2",
        ),
        (
            "size-key",
            none(),
            image_processor(|p| p["size"] = serde_json::json!({"shortest_edge": 30})),
            Status::BadConfig,
            "longest_edge",
        ),
    ];
    for (tag, config, processor, status, needle) in cases {
        let dir = copy_fixture("idefics3_f32", &format!("idefics3-{tag}"));
        edit_json(&dir.join("config.json"), config);
        edit_json(&dir.join("processor_config.json"), processor);
        let e = Model::load(&dir, &LoadOptions::default())
            .map(|_| ())
            .unwrap_err();
        println!("{tag}: {e}");
        assert_eq!(e.status(), status, "{tag}: {e}");
        assert!(e.message().contains(needle), "{tag}: {e}");
    }
    // A large but valid tile side loads; its images are refused by the pixel limit instead of
    // being allocated.
    let dir = copy_fixture("idefics3_f32", "idefics3-tile-huge");
    edit_json(&dir.join("processor_config.json"), |p| {
        p.get_mut("image_processor").unwrap()["max_image_size"] =
            serde_json::json!({"longest_edge": 16000});
        p.insert("image_seq_len".into(), 4_000_000.into());
    });
    let model = Model::load(&dir, &LoadOptions::default()).unwrap();
    let e = model
        .preprocess(&std::fs::read(image_path("rgb.png")).unwrap())
        .map(|_| ())
        .unwrap_err();
    assert_eq!(e.status(), Status::ImageTooLarge, "{e}");
}
