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
fn c_embed_example_runs_on_gemma3_and_llava() {
    let tmp = temp_dir("example-embed-vlm");
    let bin = tmp.join("embed");
    compile(&[repo().join("examples/c/embed.c")], &bin, false, &[]);
    for (fixture, family, tokens, dim) in [
        ("gemma3_f32", "gemma3", 9, 32),
        ("gemma3_hub_pas_bf16", "gemma3", 12, 32), // photo.jpg: the image and 2 crops
        ("llava_clip_f32", "llava", 16, 32),
        ("llava_siglip_m45_f16", "llava", 16, 32),
    ] {
        let model = fixtures().join(fixture);
        let a = image_path("photo.jpg");
        let b = image_path("rgba.png");
        let out = run(
            &bin,
            &[
                model.to_str().unwrap(),
                a.to_str().unwrap(),
                b.to_str().unwrap(),
            ],
        );
        assert!(out.contains(&format!("model: {family} ")), "{out}");
        assert!(
            out.contains(&format!("photo.jpg: {tokens} tokens x {dim}")),
            "{fixture}: {out}"
        );
        assert!(out.contains("time per image"), "{out}");
    }
}

/// Runs examples/c/prompt.c and returns its output.
fn prompt(bin: &std::path::Path, fixture: &str, image: &std::path::Path, extra: &[&str]) -> String {
    let model = fixtures().join(fixture);
    let mut args = vec![model.to_str().unwrap(), image.to_str().unwrap()];
    args.extend_from_slice(extra);
    run(bin, &args)
}

#[test]
fn c_prompt_example_places_the_image_tokens() {
    let tmp = temp_dir("example-prompt");
    let bin = tmp.join("prompt");
    compile(&[repo().join("examples/c/prompt.c")], &bin, false, &[]);

    // Gemma3: "\n\n" <start_of_image> <image_soft_token> x 9 <end_of_image> "\n\n", with the
    // ids of the fixture's config.json (290, 292, 291; the Gemma3Config defaults differ).
    let out = prompt(&bin, "gemma3_f32", &image_path("rgb.png"), &[]);
    let expected = "  text \"\\n\\n\"\n  token 290\n  token 292 x 9 <- embedding rows 0..8\n  \
                    token 291\n  text \"\\n\\n\"\n";
    assert!(out.contains(expected), "{out}");
    assert!(out.contains("text \"What is in this picture? \""), "{out}");
    assert!(
        out.contains("placeholders: 9, embedding rows: 9 x 32"),
        "{out}"
    );

    // Pan-and-scan through vt_preprocess_ex: the image and its 2 crops, each its own block.
    let out = prompt(&bin, "gemma3_f32", &image_path("photo.jpg"), &["20"]);
    assert!(
        out.contains("3 frame(s) of 3 x 3 tokens = 27 embeddings"),
        "{out}"
    );
    assert!(
        out.contains("text \"Here is the original image \""),
        "{out}"
    );
    assert!(
        out.contains("text \" and here are some crops to help you see better \""),
        "{out}"
    );
    for rows in ["0..8", "9..17", "18..26"] {
        assert!(
            out.contains(&format!("token 292 x 9 <- embedding rows {rows}")),
            "{out}"
        );
    }
    assert_eq!(out.matches("token 290\n").count(), 3, "{out}");

    // LLaVA: <image> x N, nothing around it.
    let out = prompt(&bin, "llava_clip_f32", &image_path("photo.jpg"), &[]);
    assert!(
        out.contains("token 299 x 16 <- embedding rows 0..15"),
        "{out}"
    );
    assert!(
        out.contains("placeholders: 16, embedding rows: 16 x 32, special/placeholder ids: 16"),
        "{out}"
    );
    let out = prompt(&bin, "llava_clip_pad_hub", &image_path("rgba.png"), &[]);
    assert!(
        out.contains("token 296 x 17 <- embedding rows 0..16"),
        "{out}"
    );
}
