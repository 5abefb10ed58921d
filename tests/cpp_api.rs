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
