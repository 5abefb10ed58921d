//! Video input (Qwen2-VL, Qwen2.5-VL, Qwen3-VL, Qwen3.5): `Model::preprocess_video` against
//! transformers' video processors (frame sampling, torchvision resize, normalization, temporal
//! grouping), the embeddings against `get_video_features`, the prompt data (Qwen2.5-VL's
//! `second_per_grid_ts`, Qwen3-VL's timestamps), the M-RoPE ids against `get_rope_index`, and
//! videos mixed with still images in one forward call. Fixtures: tests/fixtures/video/*
//! (scripts/fixtures/qwen_video.py); Gemma 4 and Kimi K2.5 video at the end.

mod common;

use common::*;
use safetensors::SafeTensors;
use serde_json::Value;
use vtower::{DTypeRequest, Image, LoadOptions, Model, PromptSegment, SampleOptions, VideoTime};

const FIXTURES: [&str; 4] = [
    "qwen2_vl_f32",
    "qwen2_5_vl_bf16",
    "qwen3_vl_f32",
    "qwen3_5_f16",
];

struct Fixture {
    exp: Value,
    frames: Vec<u8>,
    st: Vec<u8>,
    model: Model,
}

fn fixture(name: &str) -> Fixture {
    let dir = fixtures().join("video").join(name);
    let exp: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("expected.json")).unwrap()).unwrap();
    let model_dir = repo().join(exp["model_dir"].as_str().unwrap());
    let opts = LoadOptions {
        dtype: DTypeRequest::F32,
        ..LoadOptions::default()
    };
    let model = Model::load(&model_dir, &opts).unwrap_or_else(|e| panic!("{name}: {e}"));
    Fixture {
        frames: std::fs::read(dir.join("frames.bin")).unwrap(),
        st: std::fs::read(dir.join("expected.safetensors")).unwrap(),
        exp,
        model,
    }
}

impl Fixture {
    fn reference(&self, key: &str) -> Vec<f32> {
        let st = SafeTensors::deserialize(&self.st).unwrap();
        let t = st.tensor(key).unwrap_or_else(|_| panic!("no `{key}`"));
        t.data()
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect()
    }

    fn videos(&self) -> &Vec<Value> {
        self.exp["videos"].as_array().unwrap()
    }

    fn preprocess(&self, v: &Value) -> Image {
        let u = |k: &str| v[k].as_u64().unwrap() as usize;
        let (n, w, h, off) = (u("n_frames"), u("width"), u("height"), u("offset"));
        let size = w * h * 3;
        let slices: Vec<&[u8]> = (0..n)
            .map(|i| &self.frames[off + i * size..off + (i + 1) * size])
            .collect();
        let fps = v["source_fps"].as_f64().unwrap();
        let opts = SampleOptions {
            do_sample_frames: match v["do_sample_frames"].as_i64().unwrap() {
                -1 => None,
                x => Some(x == 1),
            },
            fps: Some(v["sample_fps"].as_f64().unwrap()).filter(|f| *f > 0.0),
            num_frames: Some(u("num_frames")).filter(|n| *n > 0),
        };
        self.model
            .preprocess_video(
                &slices,
                w as u32,
                h as u32,
                w * 3,
                (fps > 0.0).then_some(fps),
                &opts,
            )
            .unwrap_or_else(|e| panic!("{}: {e}", v["key"]))
    }
}

fn ints(v: &Value) -> Vec<i64> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_i64().unwrap())
        .collect()
}

#[test]
fn video_pixels_embeddings_and_prompt_match_transformers() {
    for name in FIXTURES {
        let fx = fixture(name);
        assert_eq!(
            fx.model.video_token(),
            fx.exp["video_token_id"].as_i64(),
            "{name}"
        );
        for v in fx.videos() {
            let key = v["key"].as_str().unwrap();
            let img = fx.preprocess(v);
            let meta = img.video().expect("a video");
            let want_idx: Vec<usize> = ints(&v["frame_indices"])
                .iter()
                .map(|&i| i as usize)
                .collect();
            assert_eq!(meta.frame_indices, want_idx, "{name}/{key}: kept frames");
            let [t, gh, gw] = img.patch_grid();
            assert_eq!(
                vec![t as i64, gh as i64, gw as i64],
                ints(&v["video_grid_thw"]),
                "{name}/{key}: video_grid_thw"
            );
            // Pixels: the torchvision resize and the fused normalization are reproduced
            // exactly; the check allows one 8-bit level (1/(255 std) >= 0.0142) on 1% of values.
            let want = fx.reference(&format!("pixels/{key}"));
            let got = img.pixels();
            assert_eq!(got.len(), want.len(), "{name}/{key}: pixel count");
            let close = got
                .iter()
                .zip(&want)
                .filter(|(a, b)| (*a - *b).abs() <= 1e-6)
                .count();
            let within_level = got
                .iter()
                .zip(&want)
                .filter(|(a, b)| (*a - *b).abs() <= 1.0 / (255.0 * 0.5) + 1e-5)
                .count();
            assert!(
                within_level * 100 >= got.len() * 99,
                "{name}/{key}: {within_level} of {} pixels within one level",
                got.len()
            );
            assert_eq!(
                close,
                got.len(),
                "{name}/{key}: pixels not exact (max diff {})",
                max_abs_diff(got, &want)
            );
            if let Some(spg) = v["second_per_grid_ts"].as_f64() {
                assert!((meta.second_per_grid - spg).abs() <= 1e-12, "{name}/{key}");
                assert!(matches!(meta.time, VideoTime::Scaled(_)));
            }
            if let Some(ts) = v["timestamps"].as_array() {
                let want: Vec<f64> = ts.iter().map(|x| x.as_f64().unwrap()).collect();
                // serde_json's float parsing may be off by an ulp: compare to 1e-12.
                assert_eq!(
                    meta.timestamps.len(),
                    want.len(),
                    "{name}/{key}: timestamps"
                );
                for (a, b) in meta.timestamps.iter().zip(&want) {
                    assert!((a - b).abs() <= 1e-12, "{name}/{key}: timestamp {a} vs {b}");
                }
                let text: Vec<String> = meta
                    .timestamps
                    .iter()
                    .map(|t| format!("<{t:.1} seconds>"))
                    .collect();
                let want_text: Vec<&str> = v["timestamp_text"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|x| x.as_str().unwrap())
                    .collect();
                assert_eq!(text, want_text, "{name}/{key}");
            }
            check_mrope(
                name,
                key,
                &img,
                &v["mrope"],
                fx.exp["video_token_id"].as_i64().unwrap(),
            );
            // Embeddings (and Qwen3-VL's deepstack levels).
            let out = fx.model.forward(&[&img]).unwrap();
            let levels = v["levels"].as_u64().unwrap_or(1) as usize;
            assert_eq!(out.n_levels(), levels, "{name}/{key}");
            for level in 0..levels {
                let rk = if level == 0 {
                    format!("embeddings/{key}")
                } else {
                    format!("deepstack/{level}/{key}")
                };
                let want = fx.reference(&rk);
                let got = out.level_data(0, level).unwrap();
                assert_eq!(got.len(), want.len(), "{name}/{rk}");
                let rel = rel_l2(got, &want);
                println!("{name}/{rk}: rel L2 {rel:.2e}");
                assert!(rel <= 2e-3, "{name}/{rk}: rel L2 {rel}");
            }
        }
    }
}

/// The video's M-RoPE ids against `get_rope_index` on the fixture's prompt.
fn check_mrope(name: &str, key: &str, img: &Image, m: &Value, video_token: i64) {
    let ids = ints(&m["input_ids"]);
    let pos: Vec<Vec<i64>> = m["position_ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(ints)
        .collect();
    // Spans of consecutive video tokens.
    let mut spans = Vec::new();
    let mut i = 0;
    while i < ids.len() {
        if ids[i] == video_token {
            let s = i;
            while i < ids.len() && ids[i] == video_token {
                i += 1;
            }
            spans.push((s, i));
        } else {
            i += 1;
        }
    }
    let per_frame = matches!(img.video().unwrap().time, VideoTime::PerFrame);
    assert_eq!(spans.len(), if per_frame { img.token_grid()[0] } else { 1 });
    for (f, &(s, e)) in spans.iter().enumerate() {
        // The span starts right after <|vision_start|>, whose (text) position is p.
        let start = pos[0][s - 1] + 1;
        let (got, next) = if per_frame {
            assert!(img.mrope_positions(start).is_err());
            img.frame_mrope_positions(f, start).unwrap()
        } else {
            img.mrope_positions(start).unwrap()
        };
        let n = e - s;
        assert_eq!(got.len(), 3 * n, "{name}/{key}");
        for axis in 0..3 {
            assert_eq!(
                &got[axis * n..(axis + 1) * n],
                &pos[axis][s..e],
                "{name}/{key}: M-RoPE axis {axis}, span {f}"
            );
        }
        assert_eq!(next, pos[0][e], "{name}/{key}: position after the span");
    }
}

#[test]
fn videos_and_images_in_one_forward_equal_one_by_one() {
    for name in FIXTURES {
        let fx = fixture(name);
        let mut items: Vec<Image> = fx.videos().iter().map(|v| fx.preprocess(v)).collect();
        // A still image (the first frame of the first video) between the videos.
        let v0 = &fx.videos()[0];
        let (w, h) = (
            v0["width"].as_u64().unwrap() as u32,
            v0["height"].as_u64().unwrap() as u32,
        );
        let still = fx
            .model
            .preprocess_rgb8(&fx.frames[..(w * h * 3) as usize], w, h, w as usize * 3)
            .unwrap();
        assert!(still.video().is_none());
        items.insert(1, still);
        let refs: Vec<&Image> = items.iter().collect();
        let together = fx.model.forward(&refs).unwrap();
        assert_eq!(together.count(), items.len());
        for (i, img) in items.iter().enumerate() {
            let alone = fx.model.forward(&[img]).unwrap();
            for level in 0..alone.n_levels() {
                let a = alone.level_data(0, level).unwrap();
                let b = together.level_data(i, level).unwrap();
                let rel = rel_l2(b, a);
                assert!(rel <= 1e-5, "{name}: item {i} level {level}: rel L2 {rel}");
            }
        }
    }
}

#[test]
fn bad_video_input_is_refused_cleanly() {
    let fx = fixture("qwen2_vl_f32");
    let frame_buf = vec![0u8; 16 * 16 * 3];
    let frame: &[u8] = &frame_buf;
    let m = &fx.model;
    let none = SampleOptions::default();
    // No frames, stride too small, a short buffer.
    assert!(m.preprocess_video(&[], 16, 16, 48, None, &none).is_err());
    assert!(m
        .preprocess_video(&[frame], 16, 16, 40, None, &none)
        .is_err());
    assert!(m
        .preprocess_video(&[&frame[..100]], 16, 16, 48, None, &none)
        .is_err());
    // Sampling at an fps needs the source rate (Qwen2-VL); fps and num_frames exclude each
    // other.
    let fps = SampleOptions {
        do_sample_frames: Some(true),
        fps: Some(2.0),
        num_frames: None,
    };
    let e = m
        .preprocess_video(&[frame; 8], 16, 16, 48, None, &fps)
        .unwrap_err();
    assert!(e.to_string().contains("frame rate"), "{e}");
    let both = SampleOptions {
        num_frames: Some(4),
        ..fps
    };
    assert!(m
        .preprocess_video(&[frame; 8], 16, 16, 48, Some(30.0), &both)
        .is_err());
    // A single frame is one temporal group (the frame repeated).
    let one = m
        .preprocess_video(&[frame], 16, 16, 48, None, &none)
        .unwrap();
    assert_eq!(one.token_grid()[0], 1);
    assert_eq!(one.video().unwrap().timestamps, vec![0.0]);
}

/// Gemma 4 video (tests/fixtures/video/gemma4_f32, scripts/fixtures/gemma4_video.py): frame
/// sampling, per-frame resize and padded patch rows equal to `Gemma4VideoProcessor`, the
/// embeddings equal to `get_video_features` (each frame's soft tokens in frame order), the
/// per-frame timestamps and `mm:ss` texts; videos and a still image in one forward equal
/// one-by-one calls.
#[test]
fn gemma4_video_matches_transformers() {
    let fx = fixture("gemma4_f32");
    assert_eq!(fx.model.video_token(), fx.exp["video_token_id"].as_i64());
    let mut items = Vec::new();
    for v in fx.videos() {
        let key = v["key"].as_str().unwrap();
        let img = fx.preprocess(v);
        let meta = img.video().expect("a video");
        let kept: Vec<usize> = ints(&v["frame_indices"])
            .iter()
            .map(|&i| i as usize)
            .collect();
        assert_eq!(meta.frame_indices, kept, "{key}: kept frames");
        let per_frame = v["soft_tokens_per_frame"].as_u64().unwrap() as usize;
        let [f, r, c] = img.token_grid();
        assert_eq!((f, r * c), (kept.len(), per_frame), "{key}: token grid");
        let size = ints(&v["frame_size"]);
        assert_eq!(
            [r as i64 * 2 * 4, c as i64 * 2 * 4],
            [size[0], size[1]],
            "{key}: frame size (pooling 2, patch 4)"
        );
        assert_eq!(img.n_tokens() as u64, v["tokens"].as_u64().unwrap());
        // Pixels: the torchvision resize is reproduced exactly; one 8-bit level (1/255) is
        // allowed on 1% of the values, none on a native-size video.
        let want = fx.reference(&format!("pixels/{key}"));
        let got = img.pixels();
        assert_eq!(got.len(), want.len(), "{key}: pixel count");
        let exact = got
            .iter()
            .zip(&want)
            .filter(|(a, b)| (*a - *b).abs() <= 1e-7)
            .count();
        let within = got
            .iter()
            .zip(&want)
            .filter(|(a, b)| (*a - *b).abs() <= 1.0 / 255.0 + 1e-6)
            .count();
        assert!(
            within * 100 >= got.len() * 99,
            "{key}: {within} of {}",
            got.len()
        );
        if key.starts_with("all3_80x56") {
            assert_eq!(exact, got.len(), "{key}: native size must be exact");
        }
        println!("{key}: {exact} of {} pixel values exact", got.len());
        // Timestamps: frame index / source fps (24 when unknown), and the prompt's mm:ss.
        let want_ts: Vec<f64> = v["timestamps"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_f64().unwrap())
            .collect();
        assert_eq!(meta.timestamps.len(), want_ts.len(), "{key}");
        for (a, b) in meta.timestamps.iter().zip(&want_ts) {
            assert!((a - b).abs() <= 1e-12, "{key}: timestamp {a} vs {b}");
        }
        let text: Vec<String> = meta
            .timestamps
            .iter()
            .map(|s| format!("{:02}:{:02}", (s / 60.0) as u64, (s % 60.0) as u64))
            .collect();
        let want_text: Vec<&str> = v["timestamp_text"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_str().unwrap())
            .collect();
        assert_eq!(text, want_text, "{key}");
        items.push((key.to_string(), img));
    }
    // Each alone, then all together with a still image between them.
    let file = std::fs::read(image_path("photo.jpg")).unwrap();
    let still = fx.model.preprocess(&file).unwrap();
    let alone: Vec<Vec<f32>> = items
        .iter()
        .map(|(key, img)| {
            let out = fx.model.forward(&[img]).unwrap();
            let got = out.data(0).unwrap().to_vec();
            let want = fx.reference(&format!("embeddings/{key}"));
            let e = rel_l2(&got, &want);
            let limit = if key.starts_with("all3_80x56") {
                1e-4
            } else {
                2e-3
            };
            assert!(e <= limit, "{key}: embeddings rel L2 {e}");
            println!("{key}: embeddings rel L2 {e:.1e}");
            got
        })
        .collect();
    let mut refs: Vec<&Image> = items.iter().map(|(_, i)| i).collect();
    refs.insert(1, &still);
    let together = fx.model.forward(&refs).unwrap();
    let still_alone = fx.model.forward(&[&still]).unwrap();
    assert!(together.data(1).unwrap() == still_alone.data(0).unwrap());
    for (k, a) in alone.iter().enumerate() {
        let idx = if k == 0 { 0 } else { k + 1 };
        let e = rel_l2(together.data(idx).unwrap(), a);
        assert!(e <= 1e-6, "video {k} in a mixed batch: rel L2 {e}");
    }
}

/// Kimi K2.5 video (tests/fixtures/video/kimi_k25_f32, `gen_video` in
/// scripts/fixtures/kimi_k25.py): frame sampling (fps 2 of the source rate, per-call fps, every
/// frame), chunks of temporal_patch_size frames, each frame resized / padded / normalized as
/// `Kimi_K25VideoProcessor` does (equal pixels); the embeddings (time table, attention over a
/// chunk's frames, temporal mean pooling) against transformers' tower + projector on
/// `video_grid_thw`; the per-chunk timestamps, the prompt text `replace_video_token` writes and
/// the processor's input_ids; a one-frame clip equal to the image path.
#[test]
fn kimi_k25_video_matches_transformers() {
    let fx = fixture("kimi_k25_f32");
    let m = &fx.model;
    assert_eq!(m.video_token(), fx.exp["video_token_id"].as_i64());
    let tokens = fx.exp["tokens"].as_object().unwrap();
    let words = &fx.exp["word_ids"];
    let name_of = |id: i64| -> String {
        let names: Vec<&String> = tokens
            .iter()
            .filter(|(k, v)| k.starts_with("<|") && v.as_i64() == Some(id))
            .map(|(k, _)| k)
            .collect();
        assert_eq!(names.len(), 1, "token {id}");
        names[0].clone()
    };
    let mut items = Vec::new();
    for v in fx.videos() {
        let key = v["key"].as_str().unwrap();
        let img = fx.preprocess(v);
        let meta = img.video().expect("a video");
        let kept: Vec<usize> = ints(&v["frame_indices"])
            .iter()
            .map(|&i| i as usize)
            .collect();
        assert_eq!(meta.frame_indices, kept, "{key}: kept frames");
        // video_grid_thw: one [frames, rows, cols] row per chunk, all chunks one frame size.
        let thw: Vec<Vec<i64>> = v["video_grid_thw"]
            .as_array()
            .unwrap()
            .iter()
            .map(ints)
            .collect();
        let [chunks, r, c] = img.token_grid();
        assert_eq!(chunks, thw.len(), "{key}: chunks");
        assert_eq!(chunks as u64, v["num_chunks"].as_u64().unwrap());
        for row in &thw {
            assert_eq!([row[1], row[2]], [2 * r as i64, 2 * c as i64], "{key}");
        }
        let frames: i64 = thw.iter().map(|row| row[0]).sum();
        assert_eq!(frames as usize, kept.len(), "{key}");
        assert_eq!(
            img.n_tokens() as u64,
            v["tokens"].as_u64().unwrap(),
            "{key}"
        );
        assert_eq!(img.n_tokens(), chunks * r * c);
        // Pixels: torchvision's resize, the padding and the fused normalization, exactly.
        let want = fx.reference(&format!("pixels/{key}"));
        let got = img.pixels();
        assert_eq!(got.len(), want.len(), "{key}: pixel count");
        let d = max_abs_diff(got, &want);
        assert!(d <= 1e-6, "{key}: pixels differ by {d}");
        // One timestamp per chunk: its first frame's time (24 fps when unknown).
        let want_ts: Vec<f64> = v["timestamps"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_f64().unwrap())
            .collect();
        assert_eq!(meta.timestamps.len(), want_ts.len(), "{key}");
        for (a, b) in meta.timestamps.iter().zip(&want_ts) {
            assert!((a - b).abs() <= 1e-12, "{key}: timestamp {a} vs {b}");
        }
        // The prompt: the layout spelled out is replace_video_token's text, and with the
        // fixture tokenizer's ids (its word-level vocabulary maps timestamps and "video" to
        // [UNK] = 0) the processor's input_ids for "describe <video> please".
        let layout = m.prompt_layout(&img).unwrap();
        let mut text = String::new();
        let mut got_ids = vec![words["describe"].as_i64().unwrap()];
        for s in &layout {
            match s {
                PromptSegment::Text(t) => {
                    text.push_str(t);
                    got_ids.extend(
                        t.split_whitespace()
                            .map(|w| words.get(w).and_then(Value::as_i64).unwrap_or(0)),
                    );
                }
                PromptSegment::Token(id) => {
                    text.push_str(&name_of(*id));
                    got_ids.push(*id);
                }
                PromptSegment::Embeddings { token, count, .. } => {
                    let id = token.unwrap();
                    assert_eq!(Some(id), m.video_token());
                    text.push_str(&name_of(id).repeat(*count));
                    got_ids.extend(std::iter::repeat_n(id, *count));
                }
            }
        }
        got_ids.push(words["please"].as_i64().unwrap());
        assert_eq!(
            text,
            v["prompt_text"].as_str().unwrap(),
            "{key}: prompt text"
        );
        assert_eq!(got_ids, ints(&v["input_ids"]), "{key}: input_ids");
        // Embeddings.
        let out = m.forward(&[&img]).unwrap();
        let got = out.data(0).unwrap();
        let want = fx.reference(&format!("embeddings/{key}"));
        assert_eq!(got.len(), want.len(), "{key}: embedding count");
        let e = rel_l2(got, &want);
        println!("kimi_k25/{key}: embeddings rel L2 {e:.1e}");
        assert!(e <= 1e-4, "{key}: embeddings rel L2 {e}");
        // A one-frame clip is the image path: the same as that frame as a still image, and as
        // get_image_features.
        if kept.len() == 1 {
            let (w, h) = (
                v["width"].as_u64().unwrap() as usize,
                v["height"].as_u64().unwrap() as usize,
            );
            let off = v["offset"].as_u64().unwrap() as usize + kept[0] * w * h * 3;
            let still = m
                .preprocess_rgb8(&fx.frames[off..off + w * h * 3], w as u32, h as u32, w * 3)
                .unwrap();
            assert_eq!(still.pixels(), img.pixels(), "{key}");
            let alone = m.forward(&[&still]).unwrap();
            assert_eq!(
                alone.data(0).unwrap(),
                got,
                "{key}: one-frame clip vs image"
            );
            let e = rel_l2(got, &fx.reference(&format!("image/{key}")));
            assert!(e <= 1e-4, "{key}: vs get_image_features, rel L2 {e}");
        }
        items.push(img);
    }
    // Videos and a still image in one forward call equal one-by-one calls.
    let (w, h) = (37, 23);
    let still = m
        .preprocess_rgb8(&fx.frames[..w * h * 3], w as u32, h as u32, w * 3)
        .unwrap();
    let mut refs: Vec<&Image> = items.iter().collect();
    refs.insert(1, &still);
    let together = m.forward(&refs).unwrap();
    assert_eq!(together.count(), refs.len());
    for (i, img) in refs.iter().enumerate() {
        let alone = m.forward(&[img]).unwrap();
        let e = rel_l2(together.data(i).unwrap(), alone.data(0).unwrap());
        assert!(e <= 1e-6, "item {i} in a mixed batch: rel L2 {e}");
    }
}

#[test]
fn kimi_k25_bad_video_input_is_refused() {
    let fx = fixture("kimi_k25_f32");
    let m = &fx.model;
    let buf = vec![7u8; 20 * 12 * 3];
    let f: &[u8] = &buf;
    let none = SampleOptions::default();
    // The config samples at fps 2: that needs the source rate; a per-call num_frames with
    // it is an error (mutually exclusive); more frames than the video has too.
    let e = m
        .preprocess_video(&[f; 6], 20, 12, 60, None, &none)
        .unwrap_err();
    assert!(e.to_string().contains("frame rate"), "{e}");
    let n3 = SampleOptions {
        num_frames: Some(3),
        ..none
    };
    let e = m
        .preprocess_video(&[f; 6], 20, 12, 60, Some(4.0), &n3)
        .unwrap_err();
    assert!(e.to_string().contains("mutually exclusive"), "{e}");
    let fast = SampleOptions {
        fps: Some(50.0),
        ..none
    };
    assert!(m
        .preprocess_video(&[f; 6], 20, 12, 60, Some(4.0), &fast)
        .is_err());
    assert!(m
        .preprocess_video(&[], 20, 12, 60, Some(4.0), &none)
        .is_err());
    assert!(m
        .preprocess_video(&[f; 6], 20, 12, 60, Some(-1.0), &none)
        .is_err());
    // Frames of different sizes.
    let small = vec![0u8; 10 * 12 * 3];
    let all = SampleOptions {
        do_sample_frames: Some(false),
        ..none
    };
    assert!(m
        .preprocess_video(&[f, &small[..]], 20, 12, 60, None, &all)
        .is_err());
    // 6 frames at 4 fps sampled at 2 fps: 3 frames, one chunk.
    let ok = m
        .preprocess_video(&[f; 6], 20, 12, 60, Some(4.0), &none)
        .unwrap();
    assert_eq!(ok.video().unwrap().frame_indices, vec![0, 2, 4]);
    assert_eq!(ok.token_grid()[0], 1);
    // The token cap counts every chunk, checked before any frame is read.
    let dir = copy_video_fixture("kimi_k25_f32", "kimi-cap");
    let opts = LoadOptions {
        dtype: DTypeRequest::F32,
        max_image_tokens: 5,
        ..LoadOptions::default()
    };
    let capped = Model::load(&dir, &opts).unwrap();
    let nine: Vec<&[u8]> = vec![f; 9];
    let e = capped
        .preprocess_video(&nine, 20, 12, 60, None, &all)
        .unwrap_err();
    assert!(e.to_string().contains("token"), "{e}");
    // temporal_patch_size over pos_emb_time: images work, video is refused by name.
    let dir = copy_video_fixture("kimi_k25_f32", "kimi-tps");
    edit_json(&dir.join("video_preprocessor_config.json"), |o| {
        o.insert("temporal_patch_size".into(), serde_json::json!(5));
    });
    let bad = Model::load(&dir, &opts).unwrap();
    let e = bad
        .preprocess_video(&[f; 2], 20, 12, 60, None, &all)
        .unwrap_err();
    assert!(e.to_string().contains("pos_emb_time"), "{e}");
    assert!(bad.preprocess_rgb8(f, 20, 12, 60).is_ok());
}

/// Copies a video fixture's model files (not frames.bin / expected.*) to a fresh folder.
fn copy_video_fixture(name: &str, tag: &str) -> std::path::PathBuf {
    let dst = temp_dir(&format!("fx-{tag}"));
    for e in std::fs::read_dir(fixtures().join("video").join(name)).unwrap() {
        let e = e.unwrap();
        let file = e.file_name().to_string_lossy().into_owned();
        if e.path().is_file() && !file.starts_with("expected.") && file != "frames.bin" {
            std::fs::copy(e.path(), dst.join(&file)).unwrap();
        }
    }
    dst
}
