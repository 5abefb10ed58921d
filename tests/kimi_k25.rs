//! Kimi K2.5 (`kimi_k25`): pixels and embeddings against transformers' `Kimi_K25ImageProcessor`
//! and `Kimi_K25Model.get_image_features` in both checkpoint layouts transformers 5.23 writes
//! (the original one, `save_pretrained`'s default, and the internal one, sharded), mixed sizes
//! in one call, token grids, the prompt layout against `Kimi_K25Processor`'s ids, per-call
//! `max_patches` against the processor's kwarg, bad configs refused by name.

mod common;

use common::*;
use serde_json::json;
use vtower::{LoadOptions, Model, PreprocessOptions, PromptSegment, Status};

const NAME: &str = "kimi_k25_f32";
const SHARDED: &str = "kimi_k25_sharded_bf16";

fn check_fixture(name: &str) -> (Model, Vec<vtower::Image>) {
    let exp = expected(name);
    let model = load(name);
    assert_eq!(model.info().family, "kimi_k25");
    assert_eq!(model.info().model_type, "kimi_k25");
    assert_eq!(model.info().tokens_per_image, None);
    assert_eq!(
        model.info().output_dim,
        exp["dim"].as_u64().unwrap() as usize
    );
    assert_eq!(
        model.info().vision_dim,
        exp["vision_dim"].as_u64().unwrap() as usize
    );
    let mut images = Vec::new();
    for case in cases(name) {
        let image = model
            .preprocess(&std::fs::read(&case.path).unwrap())
            .unwrap();
        assert_eq!(image.shape(), case.pixel_shape.as_slice(), "{}", case.file);
        // torchvision-exact resize, padding and normalization: equal pixels.
        let d = max_abs_diff(image.pixels(), &case.pixels);
        assert!(d == 0.0, "{name}/{}: pixels differ by {d}", case.file);
        assert_eq!(image.n_tokens(), case.tokens);
        let out = model.forward(&[&image]).unwrap();
        assert_eq!(out.dim(), case.dim);
        assert_eq!(out.n_tokens(0), Some(case.tokens));
        let err = rel_l2(out.data(0).unwrap(), &case.embeddings);
        let tol = if case.resized { 2e-3 } else { 1e-4 };
        println!("{name}/{}: rel L2 {err:.2e}", case.file);
        assert!(err <= tol, "{name}/{}: rel L2 {err}", case.file);
        images.push(image);
    }
    check_batch_equals_single_runs(&model, &images, name);
    (model, images)
}

#[test]
fn original_layout_matches_the_reference() {
    check_fixture(NAME);
}

#[test]
fn sharded_internal_layout_matches_the_reference() {
    check_fixture(SHARDED);
}

#[test]
fn token_grids_and_prompt_layout() {
    let exp = expected(NAME);
    let model = load(NAME);
    let tok = &exp["tokens"];
    let id = |k: &str| tok[k].as_i64().unwrap();
    for e in exp["images"].as_array().unwrap() {
        let key = e["key"].as_str().unwrap();
        let image = model
            .preprocess(&std::fs::read(fixture_image(&exp, key)).unwrap())
            .unwrap();
        let grid: Vec<usize> = ids(&e["patch_grid"]).iter().map(|&v| v as usize).collect();
        assert_eq!(image.patch_grid(), [1, grid[0], grid[1]], "{key}");
        assert_eq!(image.token_grid(), [1, grid[0] / 2, grid[1] / 2], "{key}");
        let n = e["tokens"].as_u64().unwrap() as usize;
        assert_eq!(image.n_tokens(), n);
        // <|media_content|>'s id comes from the folder's tokenizer.json.
        let layout = model.prompt_layout(&image).unwrap();
        assert_eq!(
            layout,
            vec![
                PromptSegment::Token(id("vision_start_token_id")),
                PromptSegment::Text("image".into()),
                PromptSegment::Token(id("media_content")),
                PromptSegment::Embeddings {
                    token: Some(id("image_token_id")),
                    start: 0,
                    count: n
                },
                PromptSegment::Token(id("vision_end_token_id")),
            ],
            "{key}"
        );
    }
    // The layout spelled with the fixture tokenizer's ids is what Kimi_K25Processor made of
    // "describe <|media_begin|>image<|media_content|><|media_pad|><|media_end|> please".
    let p = &exp["prompt"];
    let words = &p["word_ids"];
    let image = model
        .preprocess(&std::fs::read(fixture_image(&exp, p["image"].as_str().unwrap())).unwrap())
        .unwrap();
    let mut got = vec![words["describe"].as_i64().unwrap()];
    for s in model.prompt_layout(&image).unwrap() {
        match s {
            PromptSegment::Text(t) => got.push(words[t.as_str()].as_i64().unwrap()),
            PromptSegment::Token(t) => got.push(t),
            PromptSegment::Embeddings { token, count, .. } => {
                got.extend(std::iter::repeat_n(token.unwrap(), count))
            }
        }
    }
    got.push(words["please"].as_i64().unwrap());
    assert_eq!(got, ids(&p["input_ids"]));
    // Without tokenizer files, <|media_content|> is left to the engine's tokenizer as text.
    let dir = copy_fixture(NAME, "kimi-no-tokenizer");
    std::fs::remove_file(dir.join("tokenizer.json")).unwrap();
    std::fs::remove_file(dir.join("tokenizer_config.json")).unwrap();
    let model = Model::load(&dir, &LoadOptions::default()).unwrap();
    let image = model
        .preprocess(&std::fs::read(&cases(NAME)[0].path).unwrap())
        .unwrap();
    let layout = model.prompt_layout(&image).unwrap();
    assert_eq!(
        layout[1],
        PromptSegment::Text("image<|media_content|>".into())
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// Per call, `max_patches` is the processor's kwarg: larger or smaller than the file's.
#[test]
fn per_call_max_patches_is_the_processor_kwarg() {
    let exp = expected(NAME);
    let model = load(NAME);
    for c in exp["max_patches"].as_array().unwrap() {
        let key = c["key"].as_str().unwrap();
        let bytes = std::fs::read(fixture_image(&exp, c["image"].as_str().unwrap())).unwrap();
        let opts = PreprocessOptions {
            max_patches: Some(c["max_patches"].as_u64().unwrap() as usize),
            ..Default::default()
        };
        let image = model.preprocess_with(&bytes, &opts).unwrap();
        let grid: Vec<usize> = ids(&c["patch_grid"]).iter().map(|&v| v as usize).collect();
        assert_eq!(image.patch_grid(), [1, grid[0], grid[1]], "{key}");
        let (want, shape) = reference(NAME, &format!("max_patches/pixels/{key}"));
        assert_eq!(image.shape(), shape.as_slice(), "{key}");
        assert_eq!(max_abs_diff(image.pixels(), &want), 0.0, "{key}");
        let out = model.forward(&[&image]).unwrap();
        let (want, _) = reference(NAME, &format!("max_patches/embeddings/{key}"));
        let err = rel_l2(out.data(0).unwrap(), &want);
        println!("max_patches {key}: rel L2 {err:.2e}");
        assert!(err <= 2e-3, "{key}: rel L2 {err}");
    }
    // Knobs the family does not have; a zero budget.
    let bytes = std::fs::read(&cases(NAME)[0].path).unwrap();
    for opts in [
        PreprocessOptions {
            longest_edge: Some(64),
            ..Default::default()
        },
        PreprocessOptions {
            max_soft_tokens: Some(70),
            ..Default::default()
        },
        PreprocessOptions {
            do_image_splitting: Some(false),
            ..Default::default()
        },
        PreprocessOptions {
            max_patches: Some(0),
            ..Default::default()
        },
    ] {
        let e = model.preprocess_with(&bytes, &opts).unwrap_err();
        assert_eq!(e.status(), Status::InvalidArgument, "{e}");
    }
    // max_tokens: the engine refuses an image yielding more.
    let opts = PreprocessOptions {
        max_tokens: Some(2),
        ..Default::default()
    };
    let e = model.preprocess_with(&bytes, &opts).unwrap_err();
    assert!(e.message().contains("max_tokens"), "{e}");
}

#[test]
fn bad_configs_are_refused_by_name() {
    let edits: [ConfigEdit; 8] = [
        (
            "non-square position table",
            "config.json",
            &|c| c["vision_config"]["pos_emb_width"] = json!(6),
            "pos_emb_width 6",
        ),
        (
            "merge kernel of the processor vs the tower",
            "preprocessor_config.json",
            &|c| {
                c.insert("merge_size".into(), json!(3));
            },
            "merge_size 3",
        ),
        (
            "patch size of the processor vs the tower",
            "preprocessor_config.json",
            &|c| {
                c.insert("patch_size".into(), json!(8));
            },
            "patch_size 8",
        ),
        (
            "unequal size bounds",
            "preprocessor_config.json",
            &|c| {
                c.insert("size".into(), json!({"max_height": 10, "max_width": 8}));
            },
            "max_height",
        ),
        (
            "projection width vs the tower",
            "config.json",
            &|c| {
                c.insert("projection_hidden_size".into(), json!(32));
            },
            "projection_hidden_size 32",
        ),
        (
            "rope type",
            "config.json",
            &|c| c["vision_config"]["rope_parameters"]["rope_type"] = json!("default"),
            "axial",
        ),
        (
            "text width vs the weights",
            "config.json",
            &|c| c["text_config"]["hidden_size"] = json!(16),
            "proj.2",
        ),
        (
            "vision width vs the weights",
            "config.json",
            &|c| {
                c["vision_config"]["hidden_size"] = json!(32);
                c.insert("projection_hidden_size".into(), json!(32));
            },
            "pos_emb.weight`: expected shape [5, 5, 32]",
        ),
    ];
    check_refused_edits(NAME, &edits);
}
