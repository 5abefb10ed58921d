//! Qwen3-VL / Qwen3.5 / Qwen4-Exp (`qwen3_vl`, `qwen3_vl_moe`, `qwen3_5`, `qwen3_5_moe`, `qwen4_exp`): every
//! embedding level (the main embeddings and each deepstack feature) against transformers'
//! `get_image_features`, mixed sizes in one call, the decoder layer of each level, special
//! tokens, M-RoPE ids against `get_rope_index`, and that the MoE checkpoints are loaded
//! without touching the expert tensors.

mod common;

use std::path::Path;

use common::*;
use safetensors::SafeTensors;
use serde_json::Value;
use vtower::{LoadOptions, Model, OutputType};

const FIXTURES: [&str; 5] = [
    "qwen3_vl_f32",
    "qwen3_vl_moe_sharded_bf16",
    "qwen3_5_f16",
    "qwen3_5_moe_bf16",
    "qwen4_exp_bf16",
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

fn ints(v: &Value) -> Vec<i64> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_i64().unwrap())
        .collect()
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

#[test]
fn every_level_matches_the_reference() {
    for name in FIXTURES {
        let exp = expected(name);
        let model = load(&fixtures().join(name));
        let levels = exp["levels"].as_u64().unwrap() as usize;
        assert_eq!(model.n_levels(), levels, "{name}");
        let mut images = Vec::new();
        let mut worst = [0f64; 2];
        for case in cases(name) {
            let image = model
                .preprocess(&std::fs::read(&case.path).unwrap())
                .unwrap();
            let tol_px = if case.resized { 2.0 / 255.0 / 0.5 } else { 0.0 };
            let d = max_abs_diff(image.pixels(), &case.pixels);
            assert!(d <= tol_px, "{name}/{}: pixels differ by {d}", case.file);
            let out = model.forward(&[&image]).unwrap();
            assert_eq!(out.n_levels(), levels);
            let tol = if case.resized { 2e-3 } else { 1e-4 };
            for level in 0..levels {
                let want = if level == 0 {
                    case.embeddings.clone()
                } else {
                    reference(name, &format!("deepstack/{level}/{}", case.file))
                };
                let got = out.level_data(0, level).unwrap();
                let err = rel_l2(got, &want);
                println!("{name}/{} level {level}: rel L2 {err:.2e}", case.file);
                assert!(
                    err <= tol,
                    "{name}/{} level {level}: rel L2 {err}",
                    case.file
                );
                let w = &mut worst[case.resized as usize];
                *w = w.max(err);
            }
            images.push((image, out));
        }
        println!(
            "{name}: worst rel L2 native {:.2e}, resized {:.2e}",
            worst[0], worst[1]
        );
        // All sizes in one call equal the one-image calls, level by level.
        let refs: Vec<&vtower::Image> = images.iter().map(|(i, _)| i).collect();
        let batch = model.forward(&refs).unwrap();
        for (i, (_, single)) in images.iter().enumerate() {
            for level in 0..levels {
                let err = rel_l2(
                    batch.level_data(i, level).unwrap(),
                    single.level_data(0, level).unwrap(),
                );
                assert!(err <= 1e-6, "{name}: batch item {i} level {level}: {err}");
            }
        }
        // Level 0 is what the one-level API returns; no level past the last.
        assert_eq!(batch.data(0).unwrap(), batch.level_data(0, 0).unwrap());
        assert!(batch.level_data(0, levels).is_err());
        let mut buf = vec![0u8; batch.n_tokens(0).unwrap() * batch.dim() * 2];
        for level in 0..levels {
            batch
                .copy_level_to_host(0, level, OutputType::BF16, &mut buf)
                .unwrap();
        }
        assert!(batch
            .copy_level_to_host(0, levels, OutputType::BF16, &mut buf)
            .is_err());
    }
}

#[test]
fn levels_go_to_the_decoder_layers_transformers_uses() {
    for name in FIXTURES {
        let exp = expected(name);
        let model = load(&fixtures().join(name));
        assert_eq!(model.level_layer(0), None);
        let levels = exp["deepstack"]["levels"].as_array().unwrap();
        for l in levels {
            let k = l["level"].as_u64().unwrap() as usize;
            assert_eq!(
                model.level_layer(k),
                Some(l["decoder_layer"].as_u64().unwrap() as usize),
                "{name}"
            );
        }
        assert_eq!(model.level_layer(levels.len() + 1), None);
        if let Some(order) = exp["deepstack"]["use"]["call_order"].as_array() {
            // Recorded by running the reference model: layer0, deepstack1, layer1, ...
            for (k, _) in levels.iter().enumerate() {
                let at = order
                    .iter()
                    .position(|s| s == &format!("deepstack{}", k + 1))
                    .unwrap();
                assert_eq!(order[at - 1], format!("layer{k}"));
            }
        }
    }
}

#[test]
fn tokens_grids_and_mrope_positions() {
    for name in FIXTURES {
        let exp = expected(name);
        let model = load(&fixtures().join(name));
        let t = &model.info().tokens;
        assert_eq!(t.image, exp["tokens"]["image_token_id"].as_i64(), "{name}");
        assert_eq!(
            t.image_start,
            exp["tokens"]["vision_start_token_id"].as_i64()
        );
        assert_eq!(t.image_end, exp["tokens"]["vision_end_token_id"].as_i64());
        assert_eq!(model.merge_size(), 2);
        for e in exp["images"].as_array().unwrap() {
            let image = model
                .preprocess(&std::fs::read(repo().join(e["path"].as_str().unwrap())).unwrap())
                .unwrap();
            let grid: Vec<usize> = ints(&e["grid_thw"]).iter().map(|&v| v as usize).collect();
            assert_eq!(image.patch_grid().to_vec(), grid);
            assert_eq!(image.token_grid(), [1, grid[1] / 2, grid[2] / 2]);
        }
        // The prompt of the fixture: text, image A, text, image B, text, walked as an engine.
        let mrope = &exp["mrope"];
        let images: Vec<vtower::Image> = mrope["images"]
            .as_array()
            .unwrap()
            .iter()
            .map(|k| {
                let p = fixture_image(&exp, k.as_str().unwrap());
                model.preprocess(&std::fs::read(p).unwrap()).unwrap()
            })
            .collect();
        check_mrope_positions(mrope, &images, name);
    }
}

/// The MoE checkpoint with its expert-only shard replaced by bytes that are not a
/// safetensors file: loading and running must not notice (the shard is never opened).
#[test]
fn moe_loads_without_opening_the_expert_shard() {
    let name = "qwen3_vl_moe_sharded_bf16";
    let exp = expected(name);
    let shard = exp["checkpoint"]["expert_shard"].as_str().unwrap();
    let src = fixtures().join(name);
    let index: Value = serde_json::from_str(
        &std::fs::read_to_string(src.join("model.safetensors.index.json")).unwrap(),
    )
    .unwrap();
    let map = index["weight_map"].as_object().unwrap();
    assert!(map
        .iter()
        .filter(|(_, f)| f.as_str() == Some(shard))
        .all(|(k, _)| k.contains(".mlp.experts.")));
    assert!(map.keys().any(|k| k.contains(".mlp.experts.")));
    let tmp = temp_dir("qwen3-moe-experts");
    for entry in std::fs::read_dir(&src).unwrap() {
        let p = entry.unwrap().path();
        std::fs::copy(&p, tmp.join(p.file_name().unwrap())).unwrap();
    }
    std::fs::write(tmp.join(shard), b"not a safetensors file").unwrap();
    let model = load(&tmp);
    let case = &cases(name)[0];
    let image = model
        .preprocess(&std::fs::read(&case.path).unwrap())
        .unwrap();
    let out = model.forward(&[&image]).unwrap();
    assert!(rel_l2(out.data(0).unwrap(), &case.embeddings) <= 2e-3);
    let _ = std::fs::remove_dir_all(&tmp);
}

#[test]
fn config_errors_are_named() {
    let tmp = temp_dir("qwen3-bad");
    let src = fixtures().join("qwen3_vl_f32");
    type Edit<'a> = (&'a str, &'a dyn Fn(&mut Value), &'a str);
    let cases: [Edit; 3] = [
        (
            "deepstack past the last block",
            &|c| c["vision_config"]["deepstack_visual_indexes"] = serde_json::json!([0, 3]),
            "deepstack_visual_indexes",
        ),
        (
            "activation",
            &|c| c["vision_config"]["hidden_act"] = serde_json::json!("relu"),
            "relu",
        ),
        (
            "rotary type",
            &|c| {
                c["vision_config"]["rope_parameters"] =
                    serde_json::json!({"rope_type": "yarn", "rope_theta": 10000.0})
            },
            "rope",
        ),
    ];
    for (what, edit, needle) in cases {
        let _ = std::fs::remove_dir_all(&tmp);
        std::fs::create_dir_all(&tmp).unwrap();
        for entry in std::fs::read_dir(&src).unwrap() {
            let p = entry.unwrap().path();
            std::fs::copy(&p, tmp.join(p.file_name().unwrap())).unwrap();
        }
        let mut cfg: Value =
            serde_json::from_str(&std::fs::read_to_string(tmp.join("config.json")).unwrap())
                .unwrap();
        edit(&mut cfg);
        std::fs::write(tmp.join("config.json"), cfg.to_string()).unwrap();
        let err = Model::load(&tmp, &LoadOptions::default()).unwrap_err();
        assert_eq!(err.status(), vtower::Status::BadConfig, "{what}: {err}");
        assert!(err.message().contains(needle), "{what}: {err}");
    }
    // A tower model_type saved on its own is refused by name.
    let mut cfg: Value =
        serde_json::from_str(&std::fs::read_to_string(src.join("config.json")).unwrap()).unwrap();
    cfg["model_type"] = serde_json::json!("qwen3_vl_vision");
    std::fs::write(tmp.join("config.json"), cfg.to_string()).unwrap();
    let err = Model::load(&tmp, &LoadOptions::default()).unwrap_err();
    assert!(err.message().contains("qwen3_vl_vision"), "{err}");
    let _ = std::fs::remove_dir_all(&tmp);
}
