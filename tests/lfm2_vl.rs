//! LFM2-VL (`lfm2_vl`): pixels and embeddings against transformers' `Lfm2VlImageProcessor`
//! and `Lfm2VlModel.get_image_features` for images that are not split and for images split
//! into tiles and a thumbnail (2x2, 1 column x 3 rows, 3 columns x 1 row), mixed sizes in
//! one call, token grids and the prompt layout against `Lfm2VlProcessor`'s input ids, the
//! processor's kwargs per call (`do_image_splitting`, `min_tiles` / `max_tiles` as
//! `min_patches` / `max_patches`) and `use_thumbnail` from the file, bad configs refused by
//! name.

mod common;

use common::*;
use serde_json::{json, Value};
use vtower::{LoadOptions, Model, PreprocessOptions, PromptSegment, Status};

const NAME: &str = "lfm2_vl_f32";

/// Checks a preprocessed image and its embeddings against the reference tensors `key`
/// (`pixels/…` / `embeddings/…` or `calls/<name>/…`) and the processor's `input_ids`.
fn check_against(model: &Model, image: &vtower::Image, pixels: &str, embeddings: &str, e: &Value) {
    let (want, shape) = reference(NAME, pixels);
    assert_eq!(image.shape(), shape.as_slice(), "{pixels}");
    // torchvision-exact resizing: the real patch rows equal the reference's.
    let d = max_abs_diff(image.pixels(), &want);
    assert!(d == 0.0, "{pixels}: pixels differ by {d}");
    let out = model.forward(&[image]).unwrap();
    let (want, shape) = reference(NAME, embeddings);
    assert_eq!(out.n_tokens(0), Some(shape[0]), "{embeddings}");
    assert_eq!(image.n_tokens(), e["tokens"].as_u64().unwrap() as usize);
    let err = rel_l2(out.data(0).unwrap(), &want);
    println!("{embeddings}: rel L2 {err:.2e}");
    assert!(err <= 1e-4, "{embeddings}: rel L2 {err}");
    // The fixture folder has the tokenizer: every piece of the layout is an id.
    let layout = model.prompt_layout(image).unwrap();
    let got = layout_ids(&layout, image.n_tokens()).expect("ids only");
    assert_eq!(got, ids(&e["input_ids"]), "{embeddings}: {layout:?}");
}

#[test]
fn pixels_embeddings_and_prompts_match_the_reference() {
    let exp = expected(NAME);
    let model = load(NAME);
    assert_eq!(model.info().family, "lfm2_vl");
    assert_eq!(model.info().model_type, "lfm2_vl");
    assert_eq!(model.info().tokens_per_image, None);
    assert_eq!(
        model.info().output_dim,
        exp["dim"].as_u64().unwrap() as usize
    );
    assert_eq!(
        model.info().vision_dim,
        exp["vision_dim"].as_u64().unwrap() as usize
    );
    let f = exp["downsample_factor"].as_u64().unwrap() as usize;
    let mut images = Vec::new();
    let mut tiled = 0;
    for e in exp["images"].as_array().unwrap() {
        let key = e["key"].as_str().unwrap();
        let image = model
            .preprocess(&std::fs::read(repo().join(e["path"].as_str().unwrap())).unwrap())
            .unwrap();
        check_against(
            &model,
            &image,
            &format!("pixels/{key}"),
            &format!("embeddings/{key}"),
            e,
        );
        let n = image.n_tokens();
        if ids(&e["tile_grid"]) == [1, 1] {
            let g: Vec<usize> = ids(&e["patch_grid"]).iter().map(|&v| v as usize).collect();
            assert_eq!(image.patch_grid(), [1, g[0], g[1]], "{key}");
            assert_eq!(image.token_grid(), [1, g[0] / f, g[1] / f], "{key}");
        } else {
            // A split image has no single grid: its tokens in one row.
            assert_eq!(image.token_grid(), [1, 1, n], "{key}");
            tiled += 1;
        }
        images.push(image);
    }
    assert_eq!(tiled, 3);
    // Mixed sizes, split and not, in one call equal the one-by-one runs.
    check_batch_equals_single_runs(&model, &images, NAME);
}

#[test]
fn prompt_layout_of_a_split_image() {
    let exp = expected(NAME);
    let model = load(NAME);
    let tall = fixture_image(&exp, "tall_50x130.png");
    let image = model.preprocess(&std::fs::read(&tall).unwrap()).unwrap();
    let id = |t: &str| PromptSegment::Token(exp["added_tokens"][t].as_i64().unwrap());
    let image_token = Some(exp["image_token_id"].as_i64().unwrap());
    let rows = |start, count| PromptSegment::Embeddings {
        token: image_token,
        start,
        count,
    };
    // 1 column x 3 rows of 2x2-token tiles, then the 3x1-token thumbnail.
    let want = vec![
        id("<|image_start|>"),
        id("<|img_row_1_col_1|>"),
        rows(0, 4),
        id("<|img_row_2_col_1|>"),
        rows(4, 4),
        id("<|img_row_3_col_1|>"),
        rows(8, 4),
        id("<|img_thumbnail|>"),
        rows(12, 3),
        id("<|image_end|>"),
    ];
    assert_eq!(model.prompt_layout(&image).unwrap(), want);
    // Without the tokenizer files the special tokens are text.
    let dir = copy_fixture(NAME, "lfm2-vl-no-tokenizer");
    for f in ["tokenizer.json", "tokenizer_config.json"] {
        std::fs::remove_file(dir.join(f)).unwrap();
    }
    let bare = Model::load(&dir, &LoadOptions::default()).unwrap();
    let image = bare.preprocess(&std::fs::read(&tall).unwrap()).unwrap();
    let as_text = |s: &PromptSegment| match s {
        PromptSegment::Token(t) => {
            let (name, _) = exp["added_tokens"]
                .as_object()
                .unwrap()
                .iter()
                .find(|(_, v)| v.as_i64() == Some(*t))
                .unwrap();
            PromptSegment::Text(name.clone())
        }
        other => other.clone(),
    };
    // Adjacent text pieces come as one.
    let mut text: Vec<PromptSegment> = Vec::new();
    for s in want.iter().map(as_text) {
        match (text.last_mut(), s) {
            (Some(PromptSegment::Text(a)), PromptSegment::Text(b)) => a.push_str(&b),
            (_, s) => text.push(s),
        }
    }
    assert_eq!(text.len(), want.len() - 1);
    assert_eq!(bare.prompt_layout(&image).unwrap(), text);
    let _ = std::fs::remove_dir_all(&dir);
}

/// The processor's kwargs per call: `min_tiles` / `max_tiles` are `min_patches` /
/// `max_patches`, `do_image_splitting` itself; `use_thumbnail` is not a per-call option, so
/// its case edits preprocessor_config.json.
#[test]
fn per_call_options_match_the_processors_kwargs() {
    let exp = expected(NAME);
    let model = load(NAME);
    let mut checked = 0;
    for c in exp["calls"].as_array().unwrap() {
        let name = c["name"].as_str().unwrap();
        let bytes = std::fs::read(repo().join(c["path"].as_str().unwrap())).unwrap();
        let mut opts = PreprocessOptions::default();
        let mut file_edits = serde_json::Map::new();
        for (k, v) in c["vtower"].as_object().unwrap() {
            match k.as_str() {
                "min_patches" => opts.min_patches = Some(v.as_u64().unwrap() as usize),
                "max_patches" => opts.max_patches = Some(v.as_u64().unwrap() as usize),
                "do_image_splitting" => opts.do_image_splitting = Some(v.as_bool().unwrap()),
                other => {
                    let key = other.strip_prefix("preprocessor_config.json: ").unwrap();
                    file_edits.insert(key.to_string(), v.clone());
                }
            }
        }
        let (m, dir) = if file_edits.is_empty() {
            (None, None)
        } else {
            let dir = copy_fixture(NAME, &format!("lfm2-vl-{name}"));
            edit_json(&dir.join("preprocessor_config.json"), |p| {
                p.extend(file_edits)
            });
            (
                Some(Model::load(&dir, &LoadOptions::default()).unwrap()),
                Some(dir),
            )
        };
        let model = m.as_ref().unwrap_or(&model);
        let image = model.preprocess_with(&bytes, &opts).unwrap();
        let split = ids(&c["tile_grid"]) != [1, 1];
        assert_eq!(image.token_grid()[1] == 1, split, "{name}");
        check_against(
            model,
            &image,
            &format!("calls/{name}/pixels"),
            &format!("calls/{name}/embeddings"),
            c,
        );
        if let Some(dir) = dir {
            let _ = std::fs::remove_dir_all(dir);
        }
        checked += 1;
    }
    assert_eq!(checked, 6);
}

#[test]
fn options_that_do_not_apply_are_refused() {
    let exp = expected(NAME);
    let model = load(NAME);
    let bytes = std::fs::read(fixture_image(&exp, "big_120x90.png")).unwrap();
    for (opts, word) in [
        (
            PreprocessOptions {
                longest_edge: Some(64),
                ..Default::default()
            },
            "longest_edge",
        ),
        (
            PreprocessOptions {
                max_soft_tokens: Some(70),
                ..Default::default()
            },
            "max_soft_tokens",
        ),
        (
            PreprocessOptions {
                crop_to_patches: Some(true),
                ..Default::default()
            },
            "crop_to_patches",
        ),
        (
            PreprocessOptions {
                min_patches: Some(0),
                ..Default::default()
            },
            "min_patches (min_tiles) 0",
        ),
        (
            PreprocessOptions {
                min_patches: Some(4),
                max_patches: Some(3),
                ..Default::default()
            },
            "min_tiles 4 is above max_tiles 3",
        ),
        (
            PreprocessOptions {
                max_tokens: Some(19),
                ..Default::default()
            },
            "max_tokens",
        ),
    ] {
        let e = model.preprocess_with(&bytes, &opts).unwrap_err();
        assert_eq!(e.status(), Status::InvalidArgument, "{e}");
        assert!(e.message().contains(word), "{word}: {e}");
    }
    // The split image yields 20 tokens: max_tokens 20 passes.
    let opts = PreprocessOptions {
        max_tokens: Some(20),
        ..Default::default()
    };
    assert_eq!(model.preprocess_with(&bytes, &opts).unwrap().n_tokens(), 20);
}

#[test]
fn bad_configs_are_refused_by_name() {
    type Edit<'a> = (
        &'a str,
        &'a str,
        &'a dyn Fn(&mut serde_json::Map<String, Value>),
        &'a str,
    );
    let edits: [Edit; 8] = [
        (
            "downsample factor vs the weights",
            "config.json",
            &|c| {
                c.insert("downsample_factor".into(), json!(1));
            },
            "layer_norm.weight`: expected shape [32]",
        ),
        (
            "projector width vs the weights",
            "config.json",
            &|c| {
                c.insert("projector_hidden_size".into(), json!(48));
            },
            "linear_1",
        ),
        (
            "downsample factor of the processor vs the model",
            "preprocessor_config.json",
            &|c| {
                c.insert("downsample_factor".into(), json!(4));
            },
            "downsample_factor 4 does not match",
        ),
        (
            "text width vs the weights",
            "config.json",
            &|c| c["text_config"]["hidden_size"] = json!(16),
            "linear_2",
        ),
        (
            "patch size of the processor vs the tower",
            "preprocessor_config.json",
            &|c| {
                c.insert("encoder_patch_size".into(), json!(16));
            },
            "encoder_patch_size 16",
        ),
        (
            "projector activation",
            "config.json",
            &|c| {
                c.insert("projector_hidden_act".into(), json!("relu2"));
            },
            "relu2",
        ),
        (
            "tile bounds",
            "preprocessor_config.json",
            &|c| {
                c.insert("min_tiles".into(), json!(5));
            },
            "min_tiles 5 is above max_tiles 4",
        ),
        (
            "tiles that are not whole tokens",
            "preprocessor_config.json",
            &|c| {
                c.insert("tile_size".into(), json!(40));
            },
            "tile_size 40",
        ),
    ];
    for (what, file, edit, needle) in edits {
        let dir = copy_fixture(NAME, "lfm2-vl-bad");
        edit_json(&dir.join(file), edit);
        let err = Model::load(&dir, &LoadOptions::default()).unwrap_err();
        assert!(
            matches!(err.status(), Status::BadConfig | Status::BadWeights),
            "{what}: {err}"
        );
        assert!(err.message().contains(needle), "{what}: {err}");
        let _ = std::fs::remove_dir_all(&dir);
    }
    // A config without vision_config takes Siglip2VisionConfig's defaults, which the weights
    // contradict, by name.
    let dir = copy_fixture(NAME, "lfm2-vl-no-vision");
    edit_json(&dir.join("config.json"), |c| {
        c.remove("vision_config");
    });
    let err = Model::load(&dir, &LoadOptions::default()).unwrap_err();
    assert_eq!(err.status(), Status::BadWeights, "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}
