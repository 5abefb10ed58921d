//! The hostile inputs of the reliability issue (tests/fixtures/hostile, from
//! shared/repro): every one ends in a status or a correct result, in bounded memory.

mod common;

use common::*;
use vtower::{LoadOptions, Model, Status};

/// The C program runs every image case through the public API under an address-space cap of
/// this many MiB: an unbounded allocation fails the run instead of taking the machine.
const CAP_MIB: &str = "1536";

#[test]
fn hostile_images_through_the_c_api_under_a_memory_cap() {
    let tmp = temp_dir("c-hostile");
    let bin = tmp.join("hostile");
    compile(&[repo().join("tests/c/hostile.c")], &bin, false, &[]);
    let hostile = fixtures().join("hostile");
    run(
        &bin,
        &[
            fixtures().to_str().unwrap(),
            hostile.to_str().unwrap(),
            CAP_MIB,
        ],
    );
}

/// A copy of fixture `name` with `file` replaced by `contents`.
fn variant(name: &str, file: &str, contents: &str) -> std::path::PathBuf {
    let dir = temp_dir(&format!("hostile-{name}-{file}"));
    for entry in std::fs::read_dir(fixtures().join(name)).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), dir.join(entry.file_name())).unwrap();
    }
    std::fs::write(dir.join(file), contents).unwrap();
    dir
}

fn load(dir: &std::path::Path) -> vtower::Result<Model> {
    Model::load(dir, &LoadOptions::default())
}

#[test]
fn qwen_min_pixels_that_force_huge_images_are_refused_per_image() {
    let pre = std::fs::read_to_string(
        fixtures().join("hostile/qwen2_vl_preprocessor_config_min_pixels_1e8.json"),
    )
    .unwrap();
    let dir = variant("qwen2_vl_f32", "preprocessor_config.json", &pre);
    let model = load(&dir).unwrap();
    let png = std::fs::read(images_dir().join("rgb.png")).unwrap();
    let err = model.preprocess(&png).unwrap_err();
    assert_eq!(err.status(), Status::ImageTooLarge, "{err}");
    assert!(err.message().contains("max_image_tokens"), "{err}");
    // A caller who raises the cap gets past the token check, into the pixel cap.
    let opts = LoadOptions {
        max_image_tokens: 1 << 30,
        ..LoadOptions::default()
    };
    let model = Model::load(&dir, &opts).unwrap();
    let err = model.preprocess(&png).unwrap_err();
    assert_eq!(err.status(), Status::ImageTooLarge, "{err}");
    assert!(err.message().contains("max_image_pixels"), "{err}");
}

#[test]
fn qwen_min_pixels_above_max_pixels_is_refused_at_load() {
    let mut pre: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(fixtures().join("qwen2_vl_f32/preprocessor_config.json")).unwrap(),
    )
    .unwrap();
    pre["size"] = serde_json::json!({"shortest_edge": 100000, "longest_edge": 50000});
    let dir = variant("qwen2_vl_f32", "preprocessor_config.json", &pre.to_string());
    let err = load(&dir).unwrap_err();
    assert_eq!(err.status(), Status::BadConfig, "{err}");
    assert!(
        err.message()
            .contains("min_pixels 100000 is above max_pixels 50000"),
        "{err}"
    );
}

#[test]
fn non_positive_norm_epsilons_are_refused_at_load() {
    for (fixture, path) in [
        ("siglip_f32", &["vision_config", "layer_norm_eps"][..]),
        ("gemma3_f32", &["vision_config", "layer_norm_eps"][..]),
        ("llava_clip_f32", &["vision_config", "layer_norm_eps"][..]),
    ] {
        for bad in [-1.0, 0.0] {
            let mut cfg: serde_json::Value = serde_json::from_str(
                &std::fs::read_to_string(fixtures().join(fixture).join("config.json")).unwrap(),
            )
            .unwrap();
            let mut node = &mut cfg;
            for key in &path[..path.len() - 1] {
                node = &mut node[*key];
            }
            node[path[path.len() - 1]] = serde_json::json!(bad);
            let dir = variant(fixture, "config.json", &cfg.to_string());
            let err = load(&dir).unwrap_err();
            assert_eq!(
                err.status(),
                Status::BadConfig,
                "{fixture} eps {bad}: {err}"
            );
            assert!(err.message().contains("epsilon"), "{err}");
        }
    }
}

#[test]
fn token_cap_is_the_callers() {
    // The Pixtral fixture's images give a few dozen tokens: a cap below that refuses them.
    let opts = LoadOptions {
        max_image_tokens: 2,
        ..LoadOptions::default()
    };
    let model = Model::load(fixtures().join("pixtral_llava_f32"), &opts).unwrap();
    let png = std::fs::read(images_dir().join("rgb.png")).unwrap();
    let err = model.preprocess(&png).unwrap_err();
    assert_eq!(err.status(), Status::ImageTooLarge, "{err}");
    let fixed = Model::load(fixtures().join("siglip_f32"), &opts).unwrap();
    let err = fixed.preprocess(&png).unwrap_err();
    assert_eq!(err.status(), Status::ImageTooLarge, "{err}");
}
