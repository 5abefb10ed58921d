//! LFM2-VL (`lfm2_vl`), the single-image path: pixels and embeddings against transformers'
//! `Lfm2VlImageProcessor` and `Lfm2VlModel.get_image_features`, mixed sizes in one call, token
//! grids and the prompt layout, the image the reference would tile refused by default and
//! processed as one image with `do_image_splitting = 0`, bad configs refused by name.

mod common;

use common::*;
use serde_json::{json, Value};
use vtower::{LoadOptions, Model, PreprocessOptions, PromptSegment, Status};

const NAME: &str = "lfm2_vl_f32";

#[test]
fn pixels_and_embeddings_match_the_reference() {
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
    let mut images = Vec::new();
    for case in cases(NAME) {
        let image = model
            .preprocess(&std::fs::read(&case.path).unwrap())
            .unwrap();
        assert_eq!(image.shape(), case.pixel_shape.as_slice(), "{}", case.file);
        // torchvision-exact resizing: the real patch rows equal the reference's.
        let d = max_abs_diff(image.pixels(), &case.pixels);
        assert!(d == 0.0, "{}: pixels differ by {d}", case.file);
        assert_eq!(image.n_tokens(), case.tokens);
        let out = model.forward(&[&image]).unwrap();
        assert_eq!(out.dim(), case.dim);
        assert_eq!(out.n_tokens(0), Some(case.tokens));
        let err = rel_l2(out.data(0).unwrap(), &case.embeddings);
        println!("{}: rel L2 {err:.2e}", case.file);
        assert!(err <= 1e-4, "{}: rel L2 {err}", case.file);
        images.push(image);
    }
    check_batch_equals_single_runs(&model, &images, NAME);
}

#[test]
fn token_grids_and_prompt_layout() {
    let exp = expected(NAME);
    let model = load(NAME);
    let f = exp["downsample_factor"].as_u64().unwrap() as usize;
    let image_token = exp["image_token_id"].as_i64().unwrap();
    for e in exp["images"].as_array().unwrap() {
        let key = e["key"].as_str().unwrap();
        let image = model
            .preprocess(&std::fs::read(fixture_image(&exp, key)).unwrap())
            .unwrap();
        let grid: Vec<usize> = ids(&e["patch_grid"]).iter().map(|&v| v as usize).collect();
        assert_eq!(image.patch_grid(), [1, grid[0], grid[1]], "{key}");
        assert_eq!(image.token_grid(), [1, grid[0] / f, grid[1] / f], "{key}");
        let n = e["tokens"].as_u64().unwrap() as usize;
        assert_eq!(image.n_tokens(), n);
        // No tokenizer files in the folder: the start / end tokens as text.
        let layout = model.prompt_layout(&image).unwrap();
        assert_eq!(
            layout,
            vec![
                PromptSegment::Text("<|image_start|>".into()),
                PromptSegment::Embeddings {
                    token: Some(image_token),
                    start: 0,
                    count: n
                },
                PromptSegment::Text("<|image_end|>".into()),
            ],
            "{key}"
        );
    }
    // With the tokenizer's added tokens, their ids.
    let dir = copy_fixture(NAME, "lfm2-vl-tokens");
    std::fs::write(
        dir.join("tokenizer_config.json"),
        json!({"added_tokens_decoder": {
            "498": {"content": "<|image_start|>"},
            "499": {"content": "<|image_end|>"}
        }})
        .to_string(),
    )
    .unwrap();
    let model = Model::load(&dir, &LoadOptions::default()).unwrap();
    let case = &cases(NAME)[0];
    let image = model
        .preprocess(&std::fs::read(&case.path).unwrap())
        .unwrap();
    let layout = model.prompt_layout(&image).unwrap();
    assert_eq!(
        layout,
        vec![
            PromptSegment::Token(498),
            PromptSegment::Embeddings {
                token: Some(image_token),
                start: 0,
                count: case.tokens
            },
            PromptSegment::Token(499),
        ]
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// An image the reference splits into tiles and a thumbnail (not implemented) is refused by
/// default; `do_image_splitting = 0` (the processor's kwarg) processes it as one image, as the
/// reference does.
#[test]
fn images_the_reference_tiles_are_refused_unless_splitting_is_off() {
    let exp = expected(NAME);
    let model = load(NAME);
    let s = &exp["splitting_off"];
    let bytes = std::fs::read(repo().join(s["path"].as_str().unwrap())).unwrap();
    assert!(ids(&s["default_tile_grid"]).iter().product::<i64>() > 1);
    let e = model.preprocess(&bytes).unwrap_err();
    assert_eq!(e.status(), Status::InvalidArgument, "{e}");
    assert!(e.message().contains("do_image_splitting"), "{e}");
    let opts = PreprocessOptions {
        do_image_splitting: Some(false),
        ..Default::default()
    };
    let image = model.preprocess_with(&bytes, &opts).unwrap();
    let grid: Vec<usize> = ids(&s["patch_grid"]).iter().map(|&v| v as usize).collect();
    assert_eq!(image.patch_grid(), [1, grid[0], grid[1]]);
    let (want, shape) = reference(NAME, "splitting_off/pixels");
    assert_eq!(image.shape(), shape.as_slice());
    assert_eq!(max_abs_diff(image.pixels(), &want), 0.0);
    let out = model.forward(&[&image]).unwrap();
    let (want, _) = reference(NAME, "splitting_off/embeddings");
    let err = rel_l2(out.data(0).unwrap(), &want);
    println!("splitting off: rel L2 {err:.2e}");
    assert!(err <= 1e-4, "rel L2 {err}");
    // Knobs the family does not have.
    for opts in [
        PreprocessOptions {
            longest_edge: Some(64),
            ..Default::default()
        },
        PreprocessOptions {
            max_soft_tokens: Some(70),
            ..Default::default()
        },
    ] {
        let e = model.preprocess_with(&bytes, &opts).unwrap_err();
        assert_eq!(e.status(), Status::InvalidArgument, "{e}");
    }
}

#[test]
fn bad_configs_are_refused_by_name() {
    type Edit<'a> = (
        &'a str,
        &'a str,
        &'a dyn Fn(&mut serde_json::Map<String, Value>),
        &'a str,
    );
    let edits: [Edit; 6] = [
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
