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
fn c_embed_async_example_runs_and_cancels() {
    let tmp = temp_dir("example-embed-async");
    let bin = tmp.join("embed_async");
    compile(&[repo().join("examples/c/embed_async.c")], &bin, false, &[]);
    let model = fixtures().join("siglip_f32");
    let a = image_path("rgb.png");
    let b = image_path("jpeg420.jpg");
    let (a, b) = (a.to_str().unwrap(), b.to_str().unwrap());
    let out = run(&bin, &[model.to_str().unwrap(), "2", a, b]);
    assert_eq!(out.matches("36 tokens x 64").count(), 2, "{out}");
    // Jobs past `keep` are cancelled unless they finished first.
    let out = run(&bin, &[model.to_str().unwrap(), "0", a, b]);
    assert_eq!(
        out.matches("36 tokens x 64").count() + out.matches(": cancelled").count(),
        2,
        "{out}"
    );
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

/// The embed example on variable-resolution models: images of different sizes in one call.
#[test]
fn c_embed_example_runs_on_pixtral_and_mistral3() {
    let tmp = temp_dir("example-embed-pixtral");
    let bin = tmp.join("embed");
    compile(&[repo().join("examples/c/embed.c")], &bin, false, &[]);
    for fixture in ["pixtral_llava_f32", "mistral3_bf16"] {
        let cases = cases(fixture);
        let picked: Vec<&Case> = cases.iter().take(3).collect();
        let model = fixtures().join(fixture);
        let mut args = vec![model.to_string_lossy().into_owned()];
        args.extend(picked.iter().map(|c| c.path.to_string_lossy().into_owned()));
        let argv: Vec<&str> = args.iter().map(|s| s.as_str()).collect();
        let out = run(&bin, &argv);
        assert!(out.contains("model: pixtral"), "{out}");
        for c in picked {
            let line = format!(
                "{}: {} tokens x {}",
                c.path.to_string_lossy(),
                c.tokens,
                c.dim
            );
            assert!(out.contains(&line), "{fixture}: no `{line}` in\n{out}");
        }
    }
}

/// The prompt-layout example prints, per image, the token sequence an engine must insert;
/// it must equal what the reference PixtralProcessor produced (expected.json prompt_ids).
#[test]
fn c_pixtral_prompt_example_matches_the_reference_processor() {
    let tmp = temp_dir("example-pixtral-prompt");
    let bin = tmp.join("pixtral_prompt");
    compile(
        &[repo().join("examples/c/pixtral_prompt.c")],
        &bin,
        false,
        &[],
    );
    for fixture in ["pixtral_llava_f32", "mistral3_bf16"] {
        let meta: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(fixtures().join(fixture).join("expected.json")).unwrap(),
        )
        .unwrap();
        let images = meta["images"].as_array().unwrap();
        let model = fixtures().join(fixture);
        let mut args = vec![model.to_string_lossy().into_owned()];
        args.extend(images.iter().map(|c| {
            repo()
                .join(c["path"].as_str().unwrap())
                .to_string_lossy()
                .into_owned()
        }));
        let argv: Vec<&str> = args.iter().map(|s| s.as_str()).collect();
        let out = run(&bin, &argv);
        for c in images {
            let path = repo().join(c["path"].as_str().unwrap());
            let prefix = format!("{}: grid ", path.to_string_lossy());
            let line = out
                .lines()
                .find(|l| l.starts_with(&prefix))
                .unwrap_or_else(|| panic!("{fixture}: no line for {}", path.display()));
            let tokens: Vec<i64> = line
                .split("tokens:")
                .nth(1)
                .unwrap()
                .split_whitespace()
                .map(|t| t.parse().unwrap())
                .collect();
            let want: Vec<i64> = c["prompt_ids"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_i64().unwrap())
                .collect();
            assert_eq!(tokens, want, "{fixture}: {line}");
        }
    }
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
    // Adjacent text is one segment (Gemma3Processor.replace_image_token's string between
    // the special tokens).
    assert!(
        out.contains("text \"Here is the original image \\n\\n\"\n  token 290"),
        "{out}"
    );
    assert!(
        out.contains(
            "token 291\n  text \"\\n\\n and here are some crops to help you see better \\n\\n\"\n"
        ),
        "{out}"
    );
    assert!(
        out.contains("token 291\n  text \"\\n\\n \\n\\n\"\n"),
        "{out}"
    );
    for rows in ["0..8", "9..17", "18..26"] {
        assert!(
            out.contains(&format!("token 292 x 9 <- embedding rows {rows}")),
            "{out}"
        );
    }
    assert_eq!(out.matches("token 290\n").count(), 3, "{out}");

    // Gemma 4 (Gemma4Processor.replace_image_token): boi, image_token_id x n, eoi, no text
    // around them (the fixture's ids 58, 60, 59); 64x64 pixels with pooling 2 -> 8x8 tokens.
    let g4 = fixtures().join("gemma4_f32/native_64x64.png");
    let out = prompt(&bin, "gemma4_f32", &g4, &[]);
    let expected = "  token 58\n  token 60 x 64 <- embedding rows 0..63\n  token 59\n";
    assert!(out.contains(expected), "{out}");
    assert!(!out.contains("text \"\\n\\n\""), "{out}");

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
    // InternVL: <img>, <IMG_CONTEXT> x (4 per tile x 4 tiles), </img> (fixture ids 4, 6, 5);
    // with max_patches=2 through vt_preprocess_params: 2 tiles + the thumbnail.
    let wide = fixtures().join("internvl_f32/wide_84x28.png");
    let out = prompt(&bin, "internvl_f32", &wide, &[]);
    let expected = "  token 4\n  token 6 x 16 <- embedding rows 0..15\n  token 5\n";
    assert!(out.contains(expected), "{out}");
    let out = prompt(&bin, "internvl_f32", &wide, &["max_patches=2"]);
    assert!(
        out.contains("token 6 x 12 <- embedding rows 0..11"),
        "{out}"
    );
    // Aya Vision: the TILE_i / TILE_GLOBAL text between the tiles' runs.
    let out = prompt(
        &bin,
        "aya_vision_f32",
        &fixtures().join("aya_vision_f32/wide_84x28.png"),
        &[],
    );
    let expected = "  token 7\n  text \"TILE_1\"\n  token 9 x 4 <- embedding rows 0..3\n  \
                    text \"TILE_2\"\n";
    assert!(out.contains(expected), "{out}");
    assert!(
        out.contains("  text \"TILE_GLOBAL\"\n  token 9 x 4 <- embedding rows 12..15\n  token 8\n"),
        "{out}"
    );
    // LLaVA-NeXT: <image> x (base + unpadded rows with their newlines) = 88 for 40x40.
    let sq = fixtures().join("llava_next_f32/square_40x40.png");
    let out = prompt(&bin, "llava_next_f32", &sq, &[]);
    assert!(
        out.contains("token 4 x 88 <- embedding rows 0..87"),
        "{out}"
    );
    // Idefics3: per tile <fake_token_around_image> <row_r_col_c> and its run, then the
    // global image between fake tokens (fixture ids 13, 14; 9 rows per tile, 4 tiles).
    let wide = fixtures().join("idefics3_f32/wide_90x30.png");
    let out = prompt(&bin, "idefics3_f32", &wide, &[]);
    assert_eq!(out.matches("token 13\n").count(), 5, "{out}");
    assert!(
        out.contains("token 14 x 9 <- embedding rows 27..35"),
        "{out}"
    );
    // GLM-4.1V: <|begin_of_image|>, <|image|> x (3 x 2 tokens for 48x32 pixels, patch 8,
    // merge 2), <|end_of_image|> (fixture ids 11, 13, 12).
    let native = fixtures().join("glm4v_f32/native_48x32.png");
    let out = prompt(&bin, "glm4v_f32", &native, &[]);
    let expected = "  token 11\n  token 13 x 6 <- embedding rows 0..5\n  token 12\n";
    assert!(out.contains(expected), "{out}");
    assert!(
        out.contains("1 frame(s) of 2 x 3 tokens = 6 embeddings"),
        "{out}"
    );
    // Pixtral: rows of [IMG] closed by [IMG_BREAK], the last by [IMG_END].
    let out = prompt(&bin, "pixtral_llava_f32", &image_path("photo.jpg"), &[]);
    assert!(out.contains("6 x 8 tokens = 48 embeddings"), "{out}");
    assert_eq!(out.matches("token 12\n").count(), 5, "{out}");
    assert!(
        out.contains("token 10 x 8 <- embedding rows 40..47\n  token 13\n"),
        "{out}"
    );
    let out = prompt(&bin, "llava_clip_pad_hub", &image_path("rgba.png"), &[]);
    assert!(
        out.contains("token 296 x 17 <- embedding rows 0..16"),
        "{out}"
    );
}

/// The complete C snippet in README.md compiles (C99, all warnings as errors) and runs.
#[test]
fn readme_c_snippet_compiles_and_runs() {
    let readme = std::fs::read_to_string(repo().join("README.md")).unwrap();
    let start = readme.find("```c\n").expect("a ```c block in README.md") + 5;
    let end = start + readme[start..].find("```").unwrap();
    let tmp = temp_dir("readme-snippet");
    let src = tmp.join("snippet.c");
    std::fs::write(&src, &readme[start..end]).unwrap();
    let bin = tmp.join("snippet");
    compile(&[src], &bin, false, &[]);
    let model = fixtures().join("siglip_f32");
    let out = run(
        &bin,
        &[
            model.to_str().unwrap(),
            image_path("photo.jpg").to_str().unwrap(),
        ],
    );
    assert!(out.contains("36 tokens x 64"), "{out}");
}

/// examples/c/qwen3_prompt.c: the levels and their decoder layers, one framed run of
/// `<|image_pad|>` per image, and every level's first value equal to the reference.
#[test]
fn c_qwen3_prompt_example_prints_levels_and_layout() {
    let tmp = temp_dir("example-qwen3-prompt");
    let bin = tmp.join("qwen3_prompt");
    compile(
        &[repo().join("examples/c/qwen3_prompt.c")],
        &bin,
        false,
        &[],
    );
    for fixture in ["qwen3_vl_f32", "qwen3_5_f16"] {
        let meta: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(fixtures().join(fixture).join("expected.json")).unwrap(),
        )
        .unwrap();
        let keys: Vec<&str> = meta["mrope"]["images"]
            .as_array()
            .unwrap()
            .iter()
            .map(|k| k.as_str().unwrap())
            .collect();
        let entries: Vec<&serde_json::Value> = keys
            .iter()
            .map(|k| {
                meta["images"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .find(|e| e["key"] == *k)
                    .unwrap()
            })
            .collect();
        let model = fixtures().join(fixture);
        let mut args = vec![model.to_string_lossy().into_owned()];
        args.extend(entries.iter().map(|e| {
            repo()
                .join(e["path"].as_str().unwrap())
                .to_string_lossy()
                .into_owned()
        }));
        let argv: Vec<&str> = args.iter().map(|s| s.as_str()).collect();
        let out = run(&bin, &argv);
        let levels = meta["levels"].as_u64().unwrap();
        let mut want = format!("levels {levels}:");
        for l in meta["deepstack"]["levels"].as_array().unwrap() {
            want += &format!(
                " level {} -> after decoder layer {}",
                l["level"], l["decoder_layer"]
            );
        }
        assert!(out.lines().any(|l| l == want), "{fixture}: {out}");
        let tokens: Vec<i64> = out
            .lines()
            .find(|l| l.starts_with("tokens:"))
            .unwrap()
            .split_whitespace()
            .skip(1)
            .map(|t| t.parse().unwrap())
            .collect();
        let t = &meta["tokens"];
        let (img, vs, ve) = (
            t["image_token_id"].as_i64().unwrap(),
            t["vision_start_token_id"].as_i64().unwrap(),
            t["vision_end_token_id"].as_i64().unwrap(),
        );
        let mut expect = vec![1000];
        for e in &entries {
            expect.push(vs);
            expect.extend(std::iter::repeat_n(
                img,
                e["tokens"].as_u64().unwrap() as usize,
            ));
            expect.push(ve);
        }
        expect.push(1001);
        assert_eq!(tokens, expect, "{fixture}");
        let bytes = std::fs::read(fixtures().join(fixture).join("expected.safetensors")).unwrap();
        let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
        for (i, k) in keys.iter().enumerate() {
            let line = out
                .lines()
                .find(|l| l.starts_with(&format!("image {i} ")))
                .unwrap();
            for level in 0..levels {
                let key = if level == 0 {
                    format!("embeddings/{k}")
                } else {
                    format!("deepstack/{level}/{k}")
                };
                let d = st.tensor(&key).unwrap().data()[..4].to_vec();
                let v = f32::from_le_bytes([d[0], d[1], d[2], d[3]]);
                let printed: f32 = line
                    .split(&format!("level {level} row 0: "))
                    .nth(1)
                    .unwrap()
                    .split(',')
                    .next()
                    .unwrap()
                    .trim()
                    .parse()
                    .unwrap();
                assert!((printed - v).abs() < 1e-3, "{fixture} {line}: want {v}");
            }
        }
    }
}

/// examples/c/qwen_video.c: a video's prompt layout (timestamps, per-group framing for
/// Qwen3-VL; one framed run for Qwen2-VL), its M-RoPE positions equal to the reference
/// `get_rope_index` of the same prompt (tests/fixtures/video/*/expected.json), and every
/// level's first value equal to the reference.
#[test]
fn c_qwen_video_example_matches_reference() {
    let tmp = temp_dir("example-qwen-video");
    let bin = tmp.join("qwen_video");
    compile(&[repo().join("examples/c/qwen_video.c")], &bin, false, &[]);
    for fixture in [
        "qwen3_vl_f32",
        "qwen3_5_f16",
        "qwen2_vl_f32",
        "qwen2_5_vl_bf16",
    ] {
        let dir = fixtures().join("video").join(fixture);
        let meta: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(dir.join("expected.json")).unwrap())
                .unwrap();
        let model = repo().join(meta["model_dir"].as_str().unwrap());
        let bytes = std::fs::read(dir.join("expected.safetensors")).unwrap();
        let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
        let frames = dir.join("frames.bin");
        let mut checked = 0;
        // The example samples as the config says: the videos made with the defaults.
        for v in meta["videos"].as_array().unwrap() {
            if v["do_sample_frames"] != -1 {
                continue;
            }
            let arg = |k: &str| v[k].to_string();
            let args = [
                model.to_string_lossy().into_owned(),
                frames.to_string_lossy().into_owned(),
                arg("offset"),
                arg("n_frames"),
                arg("width"),
                arg("height"),
                arg("source_fps"),
            ];
            let argv: Vec<&str> = args.iter().map(|s| s.as_str()).collect();
            let out = run(&bin, &argv);
            let what = format!("{fixture} {}: {out}", v["key"]);
            let numbers = |prefix: &str| -> Vec<i64> {
                out.lines()
                    .find(|l| l.starts_with(prefix))
                    .unwrap_or_else(|| panic!("no {prefix} line: {out}"))
                    .split_whitespace()
                    .skip(1)
                    .map(|t| t.parse().unwrap())
                    .collect()
            };
            // The reference prompt has the same layout around the video but its own count of
            // text tokens before it (3 for Qwen2-VL, 2 here): compare from the video's opening
            // <|vision_start|> to the text token after its closing <|vision_end|>, positions
            // relative to that opening token.
            let mrope = &v["mrope"];
            let types: Vec<i64> =
                serde_json::from_value(mrope["mm_token_type_ids"].clone()).unwrap();
            let pos: Vec<Vec<i64>> = serde_json::from_value(mrope["position_ids"].clone()).unwrap();
            let video_id = meta["video_token_id"].as_i64().unwrap();
            let tokens = numbers("tokens:");
            let span = |is_video: &dyn Fn(usize) -> bool, len: usize| {
                let first = (0..len).find(|&i| is_video(i)).unwrap() - 1;
                let last = (0..len).rev().find(|&i| is_video(i)).unwrap() + 2;
                (first, last)
            };
            let (r0, r1) = span(&|i| types[i] == 2, types.len());
            let (e0, e1) = span(&|i| tokens[i] == video_id, tokens.len());
            assert_eq!(r1 - r0, e1 - e0, "{what}: prompt length");
            for i in 0..=(r1 - r0) {
                assert_eq!(
                    types[r0 + i] == 2,
                    tokens[e0 + i] == video_id,
                    "{what}: token {i}"
                );
            }
            for (axis, name) in ["t:", "h:", "w:"].iter().enumerate() {
                let got = numbers(name);
                let rel = |p: &[i64], at: usize, n: usize| -> Vec<i64> {
                    (0..=n).map(|i| p[at + i] - p[at]).collect()
                };
                assert_eq!(
                    rel(&got, e0, e1 - e0),
                    rel(&pos[axis], r0, r1 - r0),
                    "{what}: {name}"
                );
            }
            if let Some(text) = v.get("timestamp_text").and_then(|t| t.as_array()) {
                let want: Vec<&str> = text.iter().map(|t| t.as_str().unwrap()).collect();
                let line = format!("timestamps: {}", want.join(" "));
                assert!(out.lines().any(|l| l == line), "{what}");
            } else {
                assert!(!out.contains("timestamps:"), "{what}");
            }
            let levels = v["levels"].as_u64().unwrap_or(1);
            for level in 0..levels {
                let key = match level {
                    0 => format!("embeddings/{}", v["key"].as_str().unwrap()),
                    l => format!("deepstack/{l}/{}", v["key"].as_str().unwrap()),
                };
                let d = st.tensor(&key).unwrap().data()[..4].to_vec();
                let want = f32::from_le_bytes([d[0], d[1], d[2], d[3]]);
                let printed: f32 = out
                    .lines()
                    .find_map(|l| l.strip_prefix(&format!("level {level} row 0: ")))
                    .unwrap_or_else(|| panic!("no level {level}: {what}"))
                    .split_whitespace()
                    .next()
                    .unwrap()
                    .parse()
                    .unwrap();
                assert!(
                    (printed - want).abs() <= 1e-3 * want.abs().max(1.0),
                    "{what}: level {level} {printed} vs {want}"
                );
            }
            checked += 1;
        }
        assert!(checked >= 2, "{fixture}: {checked} videos");
    }
}
