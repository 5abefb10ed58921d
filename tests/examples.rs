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

#[test]
fn c_embed_example_runs_on_qwen_models() {
    let tmp = temp_dir("example-embed-qwen");
    let bin = tmp.join("embed");
    compile(&[repo().join("examples/c/embed.c")], &bin, false, &[]);
    for (fixture, image_token) in [("qwen2_vl_f32", 151655), ("qwen2_5_vl_bf16", 13)] {
        let model = fixtures().join(fixture);
        // Three sizes in one vt_forward call.
        let cases = cases(fixture);
        let paths: Vec<String> = cases
            .iter()
            .take(3)
            .map(|c| c.path.to_string_lossy().into_owned())
            .collect();
        let mut args = vec![model.to_str().unwrap()];
        args.extend(paths.iter().map(|s| s.as_str()));
        let out = run(&bin, &args);
        assert!(out.contains("merge 2"), "{out}");
        assert!(
            out.contains(&format!("placeholder {image_token},")),
            "{out}"
        );
        for c in cases.iter().take(3) {
            assert!(
                out.contains(&format!("{} tokens x {}", c.tokens, c.dim)),
                "{}: {out}",
                c.file
            );
        }
        assert_eq!(out.matches("M-RoPE ids from").count(), 3, "{out}");
    }
}
