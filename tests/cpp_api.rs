//! Compiles the C++ bindings' test (tests/cpp/bindings.cpp) and the C++ example
//! (examples/cpp/embed.cpp) against include/vtower.hpp and the built library, with
//! -Wall -Wextra -Wpedantic -Werror, and runs them on the bundled SigLIP fixture.

mod common;

use common::*;

const FIXTURE: &str = "siglip_f32";

#[test]
fn cpp_bindings() {
    let tmp = temp_dir("cpp-bindings");
    let bin = tmp.join("bindings");
    compile(
        &[repo().join("tests/cpp/bindings.cpp")],
        &bin,
        true,
        &["-pthread"],
    );
    let model = fixtures().join(FIXTURE);
    let out = run(
        &bin,
        &[model.to_str().unwrap(), images_dir().to_str().unwrap()],
    );
    assert!(out.contains(" passed, 0 failed"), "{out}");
}

#[test]
fn cpp_embed_example_runs() {
    let tmp = temp_dir("cpp-example");
    let bin = tmp.join("embed_cpp");
    compile(&[repo().join("examples/cpp/embed.cpp")], &bin, true, &[]);
    let model = fixtures().join(FIXTURE);
    let a = image_path("rgb.png");
    let b = image_path("photo.jpg");
    let out = run(
        &bin,
        &[
            model.to_str().unwrap(),
            a.to_str().unwrap(),
            b.to_str().unwrap(),
        ],
    );
    assert_eq!(out.matches("36 tokens x 64").count(), 2, "{out}");

    // A failure is reported as vtower::Error (status and message) with exit code 1.
    let failed = std::process::Command::new(&bin)
        .args([
            model.to_str().unwrap(),
            image_path("garbage.bin").to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert_eq!(failed.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&failed.stderr);
    assert!(stderr.contains("image could not be decoded"), "{stderr}");
}

#[test]
fn cpp_video() {
    let tmp = temp_dir("cpp-video");
    let bin = tmp.join("video");
    compile(&[repo().join("tests/cpp/video.cpp")], &bin, true, &[]);
    let video = fixtures().join("video");
    let exp = |name: &str| -> serde_json::Value {
        serde_json::from_str(
            &std::fs::read_to_string(video.join(name).join("expected.json")).unwrap(),
        )
        .unwrap()
    };
    let (q25, q3) = (exp("qwen2_5_vl_bf16"), exp("qwen3_vl_f32"));
    let (v25, v3) = (&q25["videos"][0], &q3["videos"][0]);
    let out = run(
        &bin,
        &[
            fixtures().join("qwen2_5_vl_bf16").to_str().unwrap(),
            video.join("qwen2_5_vl_bf16/frames.bin").to_str().unwrap(),
            video.join("qwen3_vl_f32").to_str().unwrap(),
            video.join("qwen3_vl_f32/frames.bin").to_str().unwrap(),
            &format!("{:.17e}", v25["second_per_grid_ts"].as_f64().unwrap()),
            &format!("{:.17e}", v3["timestamps"][0].as_f64().unwrap()),
            &format!("{:.17e}", v3["timestamps"][1].as_f64().unwrap()),
        ],
    );
    assert!(out.contains(" passed, 0 failed"), "{out}");
}
