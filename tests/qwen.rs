//! Qwen2-VL / Qwen2.5-VL specifics beyond the shared parity test: patch grids, special
//! tokens, M-RoPE position ids against transformers' `get_rope_index` (from Rust and from
//! C), that the window attention and the full-attention blocks really matter for the
//! fixtures, and config / input errors.

mod common;

use std::path::{Path, PathBuf};

use common::*;
use serde_json::Value;
use vtower::{LoadOptions, Model, Status};

const FIXTURES: [&str; 2] = ["qwen2_vl_f32", "qwen2_5_vl_bf16"];

fn expected(name: &str) -> Value {
    serde_json::from_str(
        &std::fs::read_to_string(fixtures().join(name).join("expected.json")).unwrap(),
    )
    .unwrap()
}

fn load(dir: &Path) -> Model {
    Model::load(dir, &LoadOptions::default()).unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
}

fn ints(v: &Value) -> Vec<i64> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_i64().unwrap())
        .collect()
}

#[test]
fn grids_merge_size_and_special_tokens() {
    for name in FIXTURES {
        let exp = expected(name);
        let model = load(&fixtures().join(name));
        let merge = exp["merge_size"].as_u64().unwrap() as usize;
        assert_eq!(model.merge_size(), merge);
        assert_eq!(model.info().family, exp["family"].as_str().unwrap());
        assert_eq!(
            model.info().output_dim,
            exp["dim"].as_u64().unwrap() as usize
        );
        assert!(model.info().mixed_shape_batches);
        let t = &model.info().tokens;
        assert_eq!(t.image, exp["tokens"]["image_token_id"].as_i64());
        assert_eq!(
            t.image_start,
            exp["tokens"]["vision_start_token_id"].as_i64()
        );
        assert_eq!(t.image_end, exp["tokens"]["vision_end_token_id"].as_i64());
        assert_eq!(t.image_break, None);
        for e in exp["images"].as_array().unwrap() {
            let image = model
                .preprocess(&std::fs::read(repo().join(e["path"].as_str().unwrap())).unwrap())
                .unwrap();
            let grid: Vec<usize> = ints(&e["grid_thw"]).iter().map(|&v| v as usize).collect();
            assert_eq!(image.patch_grid().to_vec(), grid, "{name}/{}", e["key"]);
            assert_eq!(
                image.token_grid(),
                [grid[0], grid[1] / merge, grid[2] / merge],
                "{name}/{}",
                e["key"]
            );
            assert_eq!(image.n_tokens(), e["tokens"].as_u64().unwrap() as usize);
        }
    }
}

#[test]
fn mrope_positions_match_get_rope_index() {
    for name in FIXTURES {
        let exp = expected(name);
        let mrope = &exp["mrope"];
        let model = load(&fixtures().join(name));
        let images: Vec<vtower::Image> = mrope["images"]
            .as_array()
            .unwrap()
            .iter()
            .map(|k| {
                let p = fixture_image(&exp, k.as_str().unwrap());
                model.preprocess(&std::fs::read(p).unwrap()).unwrap()
            })
            .collect();
        for (image, grid) in images
            .iter()
            .zip(mrope["image_grid_thw"].as_array().unwrap())
        {
            let g: Vec<usize> = ints(grid).iter().map(|&v| v as usize).collect();
            assert_eq!(image.patch_grid().to_vec(), g);
        }
        check_mrope_positions(mrope, &images, name);
        let types = ints(&mrope["mm_token_type_ids"]);
        // The placeholders are the image tokens of config.json.
        let ids = ints(&mrope["input_ids"]);
        let image_token = model.info().tokens.image.unwrap();
        for (id, t) in ids.iter().zip(&types) {
            assert_eq!(*t == 1, *id == image_token);
        }
    }
}

#[test]
fn mrope_positions_from_c() {
    let tmp = temp_dir("c-mrope");
    let bin = tmp.join("mrope");
    compile(&[repo().join("tests/c/mrope.c")], &bin, false, &[]);
    for name in FIXTURES {
        let exp = expected(name);
        let mrope = &exp["mrope"];
        // expected file: L, then L token types, then the 3 x L reference ids.
        let types = ints(&mrope["mm_token_type_ids"]);
        let mut text = format!("{}\n", types.len());
        for v in &types {
            text += &format!("{v} ");
        }
        text += "\n";
        for row in mrope["position_ids"].as_array().unwrap() {
            for v in ints(row) {
                text += &format!("{v} ");
            }
            text += "\n";
        }
        let file = tmp.join(format!("{name}.txt"));
        std::fs::write(&file, text).unwrap();
        let keys = mrope["images"].as_array().unwrap();
        let a = fixture_image(&exp, keys[0].as_str().unwrap());
        let b = fixture_image(&exp, keys[1].as_str().unwrap());
        let tok = |k: &str| exp["tokens"][k].as_i64().unwrap().to_string();
        let out = run(
            &bin,
            &[
                fixtures().join(name).to_str().unwrap(),
                a.to_str().unwrap(),
                b.to_str().unwrap(),
                file.to_str().unwrap(),
                &tok("image_token_id"),
                &tok("vision_start_token_id"),
                &tok("vision_end_token_id"),
            ],
        );
        assert!(out.contains("mrope ok"), "{out}");
    }
}

/// A copy of fixture `name` (checkpoint files, not expected.*) with `edit` applied to
/// config.json's vision_config.
fn edited_copy(
    name: &str,
    tag: &str,
    edit: impl FnOnce(&mut serde_json::Map<String, Value>),
) -> PathBuf {
    let src = fixtures().join(name);
    let dst = temp_dir(&format!("qwen-{tag}"));
    for e in std::fs::read_dir(&src).unwrap() {
        let e = e.unwrap();
        if !e.file_name().to_string_lossy().starts_with("expected.") {
            std::fs::copy(e.path(), dst.join(e.file_name())).unwrap();
        }
    }
    let path = dst.join("config.json");
    let mut cfg: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    edit(cfg["vision_config"].as_object_mut().unwrap());
    std::fs::write(&path, serde_json::to_string_pretty(&cfg).unwrap()).unwrap();
    dst
}

/// Sets `key` of preprocessor_config.json in folder `dir`.
fn edit_preprocessor(dir: &Path, key: &str, value: Value) {
    let path = dir.join("preprocessor_config.json");
    let mut cfg: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    cfg[key] = value;
    std::fs::write(&path, serde_json::to_string_pretty(&cfg).unwrap()).unwrap();
}

/// Relative L2 error of the model in `dir` against the fixture's expected embeddings,
/// per image key.
fn errors(dir: &Path, name: &str) -> Vec<(String, f64)> {
    let model = load(dir);
    cases(name)
        .iter()
        .map(|c| {
            let image = model.preprocess(&std::fs::read(&c.path).unwrap()).unwrap();
            let out = model.forward(&[&image]).unwrap();
            (c.file.clone(), rel_l2(out.data(0).unwrap(), &c.embeddings))
        })
        .collect()
}

#[test]
fn windows_and_full_attention_blocks_matter() {
    let name = "qwen2_5_vl_bf16";
    let exp = expected(name);
    // Images with more than one 2x2-token window.
    let multi: Vec<String> = exp["images"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| {
            let g = ints(&e["grid_thw"]);
            g[1] / 2 > 2 || g[2] / 2 > 2
        })
        .map(|e| e["key"].as_str().unwrap().to_string())
        .collect();
    assert!(multi.len() >= 3, "{multi:?}");
    // One window covering every image: the windowed blocks become full attention.
    let one_window = edited_copy(name, "one-window", |v| {
        v.insert("window_size".into(), 4096.into());
    });
    // No full-attention block: every block windowed.
    let no_full = edited_copy(name, "no-full", |v| {
        v.insert("fullatt_block_indexes".into(), Value::Array(vec![]));
    });
    for dir in [one_window, no_full] {
        for (key, err) in errors(&dir, name) {
            if multi.contains(&key) {
                assert!(
                    err > 1e-2,
                    "{}: {key} barely changed ({err})",
                    dir.display()
                );
            }
        }
    }
}

#[test]
fn bad_configs_and_inputs() {
    let cases: [(&str, &str, Value, &str); 4] = [
        ("qwen2_vl_f32", "in_channels", 4.into(), "in_channels"),
        ("qwen2_5_vl_bf16", "window_size", 8.into(), "window_size"),
        ("qwen2_5_vl_bf16", "head_dim", 8.into(), "head_dim"),
        ("qwen2_vl_f32", "hidden_size", 32.into(), "expected shape"),
    ];
    for (name, key, value, needle) in cases {
        let dir = edited_copy(name, &format!("bad-{key}"), |v| {
            v.insert(key.into(), value);
        });
        let e = Model::load(&dir, &LoadOptions::default()).unwrap_err();
        assert!(
            matches!(e.status(), Status::BadConfig | Status::BadWeights),
            "{key}: {e}"
        );
        assert!(e.message().contains(needle), "{key}: {e}");
    }
    // The processor's geometry must be the tower's.
    for (key, value) in [
        ("merge_size", 1),
        ("patch_size", 14),
        ("temporal_patch_size", 1),
    ] {
        let dir = edited_copy("qwen2_vl_f32", &format!("bad-pre-{key}"), |_| {});
        edit_preprocessor(&dir, key, value.into());
        let e = Model::load(&dir, &LoadOptions::default()).unwrap_err();
        assert_eq!(e.status(), Status::BadConfig, "{key}: {e}");
        assert!(e.message().contains("do not match"), "{key}: {e}");
    }
    let dir = edited_copy("qwen2_vl_f32", "bad-pre-size", |_| {});
    edit_preprocessor(&dir, "size", serde_json::json!({"height": 32, "width": 32}));
    let e = Model::load(&dir, &LoadOptions::default()).unwrap_err();
    assert!(e.message().contains("shortest_edge"), "{e}");
    let model = load(&fixtures().join("qwen2_vl_f32"));
    // Aspect ratio above 200 is refused as the reference refuses it.
    let e = model
        .preprocess_rgb8(&[7u8; 201 * 3], 201, 1, 201 * 3)
        .unwrap_err();
    assert_eq!(e.status(), Status::InvalidArgument, "{e}");
    assert!(e.message().contains("aspect ratio"), "{e}");
    let ok = model
        .preprocess_rgb8(&[7u8; 200 * 3], 200, 1, 200 * 3)
        .unwrap();
    // transformers: smart_resize(1, 200, 16, 512, 2048) == (16, 320) (min_pixels branch).
    assert_eq!(ok.patch_grid(), [1, 2, 40]);
}

#[test]
fn mixed_batches_equal_single_runs() {
    // Different sizes in one call, in an order different from the fixture's, with repeats.
    for name in FIXTURES {
        let model = load(&fixtures().join(name));
        let cases = cases(name);
        let images: Vec<vtower::Image> = cases
            .iter()
            .rev()
            .chain(cases.iter().take(2))
            .map(|c| model.preprocess(&std::fs::read(&c.path).unwrap()).unwrap())
            .collect();
        let refs: Vec<&vtower::Image> = images.iter().collect();
        let batch = model.forward(&refs).unwrap();
        for (i, image) in images.iter().enumerate() {
            let single = model.forward(&[image]).unwrap();
            let err = rel_l2(batch.data(i).unwrap(), single.data(0).unwrap());
            assert!(err <= 1e-6, "{name}: item {i}: {err}");
        }
    }
}

/// The fixture's vision tower saved on its own, as `Qwen2VisionTransformerPretrainedModel` /
/// `Qwen2_5_VisionTransformerPretrainedModel.save_pretrained` writes it: config.json is the
/// vision config (model_type `qwen2_vl_vision` / `qwen2_5_vl_vision`), tensors without the
/// `visual.` / `model.visual.` prefix, no language model.
fn bare_tower_copy(name: &str) -> PathBuf {
    let src = fixtures().join(name);
    let dst = temp_dir(&format!("qwen-bare-{name}"));
    std::fs::copy(
        src.join("preprocessor_config.json"),
        dst.join("preprocessor_config.json"),
    )
    .unwrap();
    let cfg: Value =
        serde_json::from_str(&std::fs::read_to_string(src.join("config.json")).unwrap()).unwrap();
    let mut vision = cfg["vision_config"].as_object().unwrap().clone();
    let model_type = format!("{}_vision", cfg["model_type"].as_str().unwrap());
    vision.insert("model_type".into(), model_type.into());
    std::fs::write(
        dst.join("config.json"),
        serde_json::to_string_pretty(&vision).unwrap(),
    )
    .unwrap();
    let bytes = std::fs::read(src.join("model.safetensors")).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let kept: Vec<(String, safetensors::tensor::TensorView)> = st
        .tensors()
        .into_iter()
        .filter_map(|(n, t)| {
            let bare = n
                .strip_prefix("model.visual.")
                .or_else(|| n.strip_prefix("visual."))?;
            Some((bare.to_string(), t))
        })
        .collect();
    assert!(!kept.is_empty() && kept.len() < st.len(), "{name}");
    std::fs::write(
        dst.join("model.safetensors"),
        safetensors::serialize(kept, None).unwrap(),
    )
    .unwrap();
    dst
}

#[test]
fn bare_vision_towers_give_the_vlm_embeddings() {
    for name in FIXTURES {
        let dir = bare_tower_copy(name);
        let model = load(&dir);
        let exp = expected(name);
        assert_eq!(model.info().family, exp["family"].as_str().unwrap());
        assert_eq!(
            model.merge_size(),
            exp["merge_size"].as_u64().unwrap() as usize
        );
        // The special tokens belong to the language model, which a bare tower lacks.
        assert_eq!(model.info().tokens.image, None);
        for (key, err) in errors(&dir, name) {
            assert!(err < 1e-4, "{name} bare tower, {key}: rel L2 {err}");
        }
    }
}
