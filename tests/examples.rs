//! The C example builds against the header and library and runs on a bundled fixture.

mod common;

use common::*;

#[test]
fn c_embed_example_runs() {
    let tmp = temp_dir("example-embed");
    let bin = tmp.join("embed");
    compile(&[repo().join("examples/c/embed.c")], &bin, false, &[]);
    let model = fixtures().join("siglip_f32");
    let a = image_path("rgb.png");
    let b = image_path("jpeg420.jpg");
    let out = run(
        &bin,
        &[
            model.to_str().unwrap(),
            a.to_str().unwrap(),
            b.to_str().unwrap(),
        ],
    );
    assert!(out.contains("tokens x"), "{out}");
    assert!(out.contains("time per image"), "{out}");
}
