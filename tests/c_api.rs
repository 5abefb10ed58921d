//! Compiles the C programs in tests/c against the built library and runs them.

mod common;

use common::*;

/// The fixture the C tests use: a single-file SigLIP checkpoint.
const FIXTURE: &str = "siglip_f32";

#[test]
fn c_smoke() {
    let tmp = temp_dir("c-smoke");
    let bin = tmp.join("smoke");
    compile(&[repo().join("tests/c/smoke.c")], &bin, false, &[]);
    let case = cases(FIXTURE)
        .into_iter()
        .find(|c| c.file.ends_with(".jpg"))
        .expect("a JPEG case");
    let expected = tmp.join("expected.f32");
    let bytes: Vec<u8> = case
        .embeddings
        .iter()
        .flat_map(|v| v.to_le_bytes())
        .collect();
    std::fs::write(&expected, bytes).unwrap();
    let model = fixtures().join(FIXTURE);
    run(
        &bin,
        &[
            model.to_str().unwrap(),
            case.path.to_str().unwrap(),
            expected.to_str().unwrap(),
            "2e-3",
        ],
    );
}

#[test]
fn c_errors() {
    let tmp = temp_dir("c-errors");
    let bin = tmp.join("errors");
    compile(&[repo().join("tests/c/errors.c")], &bin, false, &[]);
    let broken = tmp.join("broken");
    make_broken_models(FIXTURE, &broken);
    run(
        &bin,
        &[
            fixtures().join(FIXTURE).to_str().unwrap(),
            images_dir().to_str().unwrap(),
            broken.to_str().unwrap(),
        ],
    );
}

#[test]
fn c_threads() {
    let tmp = temp_dir("c-threads");
    let bin = tmp.join("threads");
    compile(
        &[repo().join("tests/c/threads.c")],
        &bin,
        false,
        &["-pthread"],
    );
    let files: Vec<String> = cases(FIXTURE)
        .iter()
        .take(6)
        .map(|c| c.path.to_string_lossy().into_owned())
        .collect();
    let model = fixtures().join(FIXTURE).to_string_lossy().into_owned();
    let mut args = vec![model.as_str()];
    args.extend(files.iter().map(|s| s.as_str()));
    let out = run(&bin, &args);
    assert!(out.contains(" 0 mismatches"), "{out}");
}

#[test]
fn c_gemma4_budget() {
    let tmp = temp_dir("c-gemma4-budget");
    let bin = tmp.join("gemma4_budget");
    compile(&[repo().join("tests/c/gemma4_budget.c")], &bin, false, &[]);
    let out = run(
        &bin,
        &[
            fixtures().join("gemma4_f32").to_str().unwrap(),
            fixtures().join("llava_clip_f32").to_str().unwrap(),
            fixtures()
                .join("gemma4_f32/native_64x64.png")
                .to_str()
                .unwrap(),
        ],
    );
    assert!(out.contains("all checks passed"), "{out}");
}

#[test]
fn c_jobs() {
    let tmp = temp_dir("c-jobs");
    let bin = tmp.join("jobs");
    compile(&[repo().join("tests/c/jobs.c")], &bin, false, &["-pthread"]);
    let files: Vec<String> = cases(FIXTURE)
        .iter()
        .take(4)
        .map(|c| c.path.to_string_lossy().into_owned())
        .collect();
    let model = fixtures().join(FIXTURE).to_string_lossy().into_owned();
    let mut args = vec![model.as_str()];
    args.extend(files.iter().map(|s| s.as_str()));
    let out = run(&bin, &args);
    assert!(out.contains(" 0 mismatches"), "{out}");
}

#[test]
fn c_cache() {
    let tmp = temp_dir("c-cache");
    let bin = tmp.join("cache");
    compile(&[repo().join("tests/c/cache.c")], &bin, false, &[]);
    let model = fixtures().join(FIXTURE);
    run(
        &bin,
        &[
            model.to_str().unwrap(),
            image_path("rgb.png").to_str().unwrap(),
            image_path("jpeg420.jpg").to_str().unwrap(),
        ],
    );
}

#[test]
fn c_pool_release() {
    // vt_free joins the model's worker threads: none is left the moment it returns.
    let tmp = temp_dir("c-pool-release");
    let bin = tmp.join("pool_release");
    compile(&[repo().join("tests/c/pool_release.c")], &bin, false, &[]);
    let model = fixtures().join(FIXTURE);
    run(
        &bin,
        &[
            model.to_str().unwrap(),
            image_path("photo.jpg").to_str().unwrap(),
            "5",
        ],
    );
}

#[test]
fn c_preprocess_ex() {
    let tmp = temp_dir("c-preprocess-ex");
    let bin = tmp.join("preprocess_ex");
    compile(&[repo().join("tests/c/preprocess_ex.c")], &bin, false, &[]);
    let out = run(
        &bin,
        &[
            fixtures().join("gemma3_f32").to_str().unwrap(),
            fixtures().join("llava_clip_f32").to_str().unwrap(),
            image_path("photo.jpg").to_str().unwrap(),
        ],
    );
    assert!(out.contains("all checks passed"), "{out}");
}

#[test]
fn c_embedding_levels() {
    let tmp = temp_dir("c-levels");
    let bin = tmp.join("levels");
    compile(&[repo().join("tests/c/levels.c")], &bin, false, &[]);
    let out = run(
        &bin,
        &[
            fixtures().join("qwen3_vl_f32").to_str().unwrap(),
            fixtures().join("qwen2_vl_f32").to_str().unwrap(),
            image_path("jpeg444.jpg").to_str().unwrap(),
        ],
    );
    assert!(out.contains("all checks passed"), "{out}");
}

#[test]
fn c_video() {
    let tmp = temp_dir("c-video");
    let bin = tmp.join("video");
    compile(&[repo().join("tests/c/video.c")], &bin, false, &["-lm"]);
    let video = fixtures().join("video");
    let exp = |name: &str| -> serde_json::Value {
        serde_json::from_str(
            &std::fs::read_to_string(video.join(name).join("expected.json")).unwrap(),
        )
        .unwrap()
    };
    let (q25, q3) = (exp("qwen2_5_vl_bf16"), exp("qwen3_vl_f32"));
    let (v25, v3) = (&q25["videos"][0], &q3["videos"][0]);
    assert_eq!(v25["key"], "odd5_37x23");
    assert_eq!(v3["key"], "odd5_37x23");
    let out = run(
        &bin,
        &[
            fixtures().join("qwen2_5_vl_bf16").to_str().unwrap(),
            video.join("qwen2_5_vl_bf16/frames.bin").to_str().unwrap(),
            video.join("qwen3_vl_f32").to_str().unwrap(),
            video.join("qwen3_vl_f32/frames.bin").to_str().unwrap(),
            &q25["video_token_id"].to_string(),
            &format!("{:.17e}", v25["second_per_grid_ts"].as_f64().unwrap()),
            &format!("{:.17e}", v3["timestamps"][0].as_f64().unwrap()),
            &format!("{:.17e}", v3["timestamps"][1].as_f64().unwrap()),
        ],
    );
    assert!(out.contains("all checks passed"), "{out}");
}
