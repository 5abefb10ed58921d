//! Helpers shared by the integration tests: fixtures, comparisons, broken model folders,
//! and compiling C programs against the built library.
#![allow(dead_code)]

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use safetensors::SafeTensors;
use serde_json::Value;

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub fn fixtures() -> PathBuf {
    repo().join("tests/fixtures")
}

pub fn images_dir() -> PathBuf {
    fixtures().join("images")
}

/// The model fixtures (folders with an expected.json).
pub fn model_fixtures() -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(fixtures())
        .expect("tests/fixtures exists")
        .filter_map(|e| e.ok())
        .filter(|e| e.path().join("expected.json").is_file())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    assert!(!v.is_empty(), "no model fixtures found in tests/fixtures");
    v
}

/// One reference case of a model fixture.
#[derive(Debug, Clone)]
pub struct Case {
    /// The image's key in expected.safetensors (its file name).
    pub file: String,
    /// Where the image file is.
    pub path: PathBuf,
    pub resized: bool,
    pub pixels: Vec<f32>,
    pub pixel_shape: Vec<usize>,
    pub embeddings: Vec<f32>,
    pub tokens: usize,
    pub dim: usize,
}

/// The reference cases of fixture `name`.
pub fn cases(name: &str) -> Vec<Case> {
    let dir = fixtures().join(name);
    let meta: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("expected.json")).unwrap()).unwrap();
    let bytes = std::fs::read(dir.join("expected.safetensors")).unwrap();
    let st = SafeTensors::deserialize(&bytes).unwrap();
    let f32s = |key: &str| -> (Vec<f32>, Vec<usize>) {
        let t = st
            .tensor(key)
            .unwrap_or_else(|_| panic!("{name}: no `{key}`"));
        assert_eq!(t.dtype(), safetensors::Dtype::F32, "{key}");
        let v = t
            .data()
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        (v, t.shape().to_vec())
    };
    meta["images"]
        .as_array()
        .expect("images list")
        .iter()
        .map(|c| {
            let file = c["key"].as_str().unwrap().to_string();
            let path = repo().join(c["path"].as_str().unwrap());
            let (pixels, pixel_shape) = f32s(&format!("pixels/{file}"));
            let (embeddings, eshape) = f32s(&format!("embeddings/{file}"));
            Case {
                resized: c["resized"].as_bool().unwrap(),
                tokens: eshape[0],
                dim: eshape[1],
                file,
                path,
                pixels,
                pixel_shape,
                embeddings,
            }
        })
        .collect()
}

pub fn image_path(file: &str) -> PathBuf {
    images_dir().join(file)
}

/// `||a - b|| / ||b||`.
pub fn rel_l2(a: &[f32], b: &[f32]) -> f64 {
    assert_eq!(a.len(), b.len());
    let (mut num, mut den) = (0f64, 0f64);
    for (x, y) in a.iter().zip(b) {
        num += (*x as f64 - *y as f64).powi(2);
        den += (*y as f64).powi(2);
    }
    (num / den.max(1e-30)).sqrt()
}

pub fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

/// A fresh empty temporary folder.
pub fn temp_dir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("vtower-test-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Copies the checkpoint files of a fixture (not its expected.* reference outputs).
fn copy_dir(src: &Path, dst: &Path) {
    std::fs::create_dir_all(dst).unwrap();
    for e in std::fs::read_dir(src).unwrap() {
        let e = e.unwrap();
        if e.path().is_file() && !e.file_name().to_string_lossy().starts_with("expected.") {
            std::fs::copy(e.path(), dst.join(e.file_name())).unwrap();
        }
    }
}

fn edit_config(dir: &Path, f: impl FnOnce(&mut serde_json::Map<String, Value>)) {
    let p = dir.join("config.json");
    let mut v: Value = serde_json::from_str(&std::fs::read_to_string(&p).unwrap()).unwrap();
    let obj = v.as_object_mut().unwrap();
    f(obj);
    std::fs::write(&p, serde_json::to_string_pretty(&v).unwrap()).unwrap();
}

/// The `vision_config` object (or the top level for vision-only configs).
fn vision_cfg(obj: &mut serde_json::Map<String, Value>) -> &mut serde_json::Map<String, Value> {
    if obj.contains_key("vision_config") {
        obj.get_mut("vision_config")
            .unwrap()
            .as_object_mut()
            .unwrap()
    } else {
        obj
    }
}

/// Removes `name` from a single-file safetensors checkpoint by rewriting it.
fn drop_tensor(file: &Path, name: &str) {
    let bytes = std::fs::read(file).unwrap();
    let st = SafeTensors::deserialize(&bytes).unwrap();
    let kept: Vec<(String, safetensors::tensor::TensorView)> = st
        .tensors()
        .into_iter()
        .filter(|(n, _)| n != name)
        .collect();
    assert!(kept.len() < st.len(), "{name} not in {}", file.display());
    let out = safetensors::serialize(kept, None).unwrap();
    std::fs::write(file, out).unwrap();
}

/// Builds broken copies of the single-file fixture `fixture` under `out`, one folder per
/// failure: unknown_model_type, no_model_type, bad_json, missing_tensor, lying_config,
/// truncated_weights, corrupt_header, no_weights, absurd_config.
pub fn make_broken_models(fixture: &str, out: &Path) {
    let src = fixtures().join(fixture);
    let make = |name: &str| -> PathBuf {
        let d = out.join(name);
        let _ = std::fs::remove_dir_all(&d);
        copy_dir(&src, &d);
        d
    };
    edit_config(&make("unknown_model_type"), |c| {
        c.insert("model_type".into(), "not_a_model".into());
    });
    edit_config(&make("no_model_type"), |c| {
        c.remove("model_type");
    });
    std::fs::write(
        make("bad_json").join("config.json"),
        "{\"model_type\": \"siglip\", ",
    )
    .unwrap();
    let d = make("missing_tensor");
    let weights = d.join("model.safetensors");
    let bytes = std::fs::read(&weights).unwrap();
    let st = SafeTensors::deserialize(&bytes).unwrap();
    let victim = st
        .names()
        .into_iter()
        .find(|n| n.ends_with("post_layernorm.weight"))
        .expect("a post_layernorm.weight tensor")
        .to_string();
    drop(st);
    drop_tensor(&weights, &victim);
    edit_config(&make("lying_config"), |c| {
        let v = vision_cfg(c);
        let h = v.get("hidden_size").and_then(|x| x.as_u64()).unwrap_or(768);
        let heads = v
            .get("num_attention_heads")
            .and_then(|x| x.as_u64())
            .unwrap_or(12);
        v.insert("hidden_size".into(), (h + heads).into());
    });
    let d = make("truncated_weights");
    let w = d.join("model.safetensors");
    let len = std::fs::metadata(&w).unwrap().len();
    let f = std::fs::OpenOptions::new().write(true).open(&w).unwrap();
    f.set_len(len - 100).unwrap();
    let d = make("corrupt_header");
    let w = d.join("model.safetensors");
    let mut bytes = std::fs::read(&w).unwrap();
    for b in bytes.iter_mut().skip(8).take(16) {
        *b = b'#';
    }
    std::fs::write(&w, bytes).unwrap();
    let d = make("no_weights");
    std::fs::remove_file(d.join("model.safetensors")).unwrap();
    edit_config(&make("absurd_config"), |c| {
        vision_cfg(c).insert("num_hidden_layers".into(), 1_000_000_000u64.into());
    });
}

/// The folder holding the libvtower.so that cargo built for this test run
/// (target/<profile>/deps, next to the test executable).
pub fn lib_dir() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().unwrap().to_path_buf();
    assert!(
        dir.join("libvtower.so").exists(),
        "libvtower.so not built in {}",
        dir.display()
    );
    dir
}

/// A folder with `libvtower.so` and `libvtower.so.<major>` (its SONAME) pointing at the
/// library cargo built (or, when `VTOWER_TEST_LIB_DIR` is set, the one in that folder: the
/// sanitizer build of scripts/sanitize.sh), to link and run C programs against.
pub fn linkable_lib_dir(tmp: &Path) -> PathBuf {
    let built = match std::env::var_os("VTOWER_TEST_LIB_DIR") {
        Some(d) => PathBuf::from(d).join("libvtower.so"),
        None => lib_dir().join("libvtower.so"),
    };
    assert!(built.exists(), "no {}", built.display());
    let dir = tmp.join("lib");
    std::fs::create_dir_all(&dir).unwrap();
    let major = env!("CARGO_PKG_VERSION_MAJOR");
    for name in ["libvtower.so".to_string(), format!("libvtower.so.{major}")] {
        let link = dir.join(name);
        let _ = std::fs::remove_file(&link);
        std::os::unix::fs::symlink(&built, &link).unwrap();
    }
    dir
}

/// Whitespace-separated words of environment variable `name` (empty when unset).
fn env_words(name: &str) -> Vec<String> {
    std::env::var(name)
        .unwrap_or_default()
        .split_whitespace()
        .map(String::from)
        .collect()
}

/// Compiles C (or C++) sources against include/vtower.h and the shared library, adding the
/// flags in `VTOWER_TEST_CFLAGS` (scripts/sanitize.sh: `-fsanitize=address,undefined ...`).
pub fn compile(sources: &[PathBuf], out: &Path, cxx: bool, extra: &[&str]) {
    let compiler = if cxx { "c++" } else { "cc" };
    let lib = linkable_lib_dir(out.parent().unwrap());
    let mut cmd = Command::new(compiler);
    if cxx {
        cmd.arg("-std=c++17");
    } else {
        cmd.arg("-std=c99");
    }
    cmd.args(["-Wall", "-Wextra", "-Wpedantic", "-Werror", "-O1", "-g"])
        .arg(format!("-I{}", repo().join("include").display()))
        .arg(format!("-I{}", repo().join("tests/c").display()))
        .args(sources)
        .arg("-o")
        .arg(out)
        .arg(format!("-L{}", lib.display()))
        .arg(format!("-Wl,-rpath,{}", lib.display()))
        .args(["-lvtower", "-lpthread", "-lm"])
        .args(extra)
        .args(env_words("VTOWER_TEST_CFLAGS"));
    let status = cmd
        .status()
        .unwrap_or_else(|e| panic!("cannot run {compiler}: {e}"));
    assert!(status.success(), "compiling {sources:?} failed");
}

/// Runs a program and asserts it succeeds, returning its stdout. `VTOWER_TEST_RUNNER`, when
/// set, is a command the program runs under (scripts/sanitize.sh: valgrind).
pub fn run(program: &Path, args: &[&str]) -> String {
    let runner = env_words("VTOWER_TEST_RUNNER");
    let mut cmd = match runner.split_first() {
        Some((tool, tool_args)) => {
            let mut c = Command::new(tool);
            c.args(tool_args).arg(program);
            c
        }
        None => Command::new(program),
    };
    let out = cmd.args(args).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        out.status.success(),
        "{} {args:?} failed ({}):\n{stdout}\n{stderr}",
        program.display(),
        out.status
    );
    println!("{stdout}");
    stdout
}

/// Cases indexed by file name.
pub fn cases_by_file(name: &str) -> HashMap<String, Case> {
    cases(name)
        .into_iter()
        .map(|c| (c.file.clone(), c))
        .collect()
}

/// The encoded bytes of every reference image of fixture `name`, and what `model` returns for
/// each alone (the serial reference concurrency tests compare against).
pub fn serial_references(model: &vtower::Model, name: &str) -> (Vec<Vec<u8>>, Vec<Vec<f32>>) {
    let files: Vec<Vec<u8>> = cases(name)
        .iter()
        .map(|c| std::fs::read(&c.path).unwrap())
        .collect();
    let reference = files
        .iter()
        .map(|b| {
            let img = model.preprocess(b).unwrap();
            model.forward(&[&img]).unwrap().data(0).unwrap().to_vec()
        })
        .collect();
    (files, reference)
}

/// The token ids of a prompt layout without text (special tokens and placeholder runs), after
/// checking that the placeholder runs cover the image's rows once, in order; `None` when it
/// holds text (which only a tokenizer can turn into ids) or a placeholder without an id.
#[allow(dead_code)]
pub fn layout_ids(segments: &[vtower::PromptSegment], n_tokens: usize) -> Option<Vec<i64>> {
    check_layout_rows(segments, n_tokens);
    let mut ids = Vec::new();
    for s in segments {
        match s {
            vtower::PromptSegment::Text(_) => return None,
            vtower::PromptSegment::Token(id) => ids.push(*id),
            vtower::PromptSegment::Embeddings { token, count, .. } => {
                ids.extend(std::iter::repeat_n((*token)?, *count))
            }
        }
    }
    Some(ids)
}

/// Asserts that the placeholder runs of a layout cover rows `0..n_tokens` once, in order.
#[allow(dead_code)]
pub fn check_layout_rows(segments: &[vtower::PromptSegment], n_tokens: usize) {
    let mut next = 0;
    for s in segments {
        if let vtower::PromptSegment::Embeddings { start, count, .. } = s {
            assert_eq!(*start, next, "{segments:?}");
            assert!(*count > 0, "{segments:?}");
            next += count;
        }
    }
    assert_eq!(next, n_tokens, "{segments:?}");
}

/// Copies a fixture's checkpoint files (not expected.*) to a fresh folder.
#[allow(dead_code)]
pub fn copy_fixture(name: &str, tag: &str) -> PathBuf {
    let dst = temp_dir(&format!("fx-{tag}"));
    for e in std::fs::read_dir(fixtures().join(name)).unwrap() {
        let e = e.unwrap();
        let file = e.file_name().to_string_lossy().into_owned();
        if e.path().is_file() && !file.starts_with("expected.") {
            std::fs::copy(e.path(), dst.join(&file)).unwrap();
        }
    }
    dst
}

/// Rewrites the JSON object in `path` with `f`.
#[allow(dead_code)]
pub fn edit_json(path: &Path, f: impl FnOnce(&mut serde_json::Map<String, serde_json::Value>)) {
    let mut v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    f(v.as_object_mut().unwrap());
    std::fs::write(path, serde_json::to_string_pretty(&v).unwrap()).unwrap();
}

/// A fixture's expected.json.
pub fn expected(name: &str) -> Value {
    serde_json::from_str(
        &std::fs::read_to_string(fixtures().join(name).join("expected.json")).unwrap(),
    )
    .unwrap()
}

/// Loads fixture `name` with default options.
pub fn load(name: &str) -> vtower::Model {
    vtower::Model::load(fixtures().join(name), &vtower::LoadOptions::default())
        .unwrap_or_else(|e| panic!("{name}: {e}"))
}

/// The f32 tensor `key` of fixture `name`'s expected.safetensors, with its shape.
pub fn reference(name: &str, key: &str) -> (Vec<f32>, Vec<usize>) {
    let bytes = std::fs::read(fixtures().join(name).join("expected.safetensors")).unwrap();
    let st = SafeTensors::deserialize(&bytes).unwrap();
    let t = st
        .tensor(key)
        .unwrap_or_else(|_| panic!("{name}: no `{key}`"));
    let v = t
        .data()
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    (v, t.shape().to_vec())
}

/// A JSON list of token ids.
pub fn ids(v: &Value) -> Vec<i64> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_i64().unwrap())
        .collect()
}

/// Every case of fixture `name` through `model` one image at a time: the pixel tensor's
/// shape and values (within `resized_pixel_tol` on resized images, 1e-6 on native ones), the
/// token count, the embeddings' width and rel L2 (<= 2e-3 resized, <= 1e-4 native); then all
/// of them in one call against the one-image calls ([`check_batch_equals_single_runs`]).
pub fn check_cases_one_by_one_then_batched(
    model: &vtower::Model,
    name: &str,
    resized_pixel_tol: f32,
) {
    let mut images = Vec::new();
    let mut worst = [0f64; 2];
    for case in cases(name) {
        let image = model
            .preprocess(&std::fs::read(&case.path).unwrap())
            .unwrap();
        assert_eq!(
            image.shape(),
            case.pixel_shape.as_slice(),
            "{name}/{}",
            case.file
        );
        let d = max_abs_diff(image.pixels(), &case.pixels);
        let tol = if case.resized {
            resized_pixel_tol
        } else {
            1e-6
        };
        assert!(d <= tol, "{name}/{}: pixels differ by {d}", case.file);
        assert_eq!(image.n_tokens(), case.tokens);
        let out = model.forward(&[&image]).unwrap();
        assert_eq!(out.dim(), case.dim);
        let err = rel_l2(out.data(0).unwrap(), &case.embeddings);
        println!(
            "{name}/{}: pixels max diff {d:.1e}, rel L2 {err:.2e}",
            case.file
        );
        let tol = if case.resized { 2e-3 } else { 1e-4 };
        assert!(err <= tol, "{name}/{}: rel L2 {err}", case.file);
        let w = &mut worst[case.resized as usize];
        *w = w.max(err);
        images.push(image);
    }
    println!(
        "{name}: worst rel L2 native {:.2e}, resized {:.2e}",
        worst[0], worst[1]
    );
    check_batch_equals_single_runs(model, &images, name);
}

/// Runs `images` reversed, with the first one again at the end, in one forward call and
/// checks each result against a forward call of that image alone (`name` labels failures).
pub fn check_batch_equals_single_runs(model: &vtower::Model, images: &[vtower::Image], name: &str) {
    let mut order: Vec<&vtower::Image> = images.iter().rev().collect();
    order.push(&images[0]);
    let batch = model.forward(&order).unwrap();
    for (i, img) in order.iter().enumerate() {
        let single = model.forward(&[*img]).unwrap();
        assert_eq!(batch.n_tokens(i), single.n_tokens(0), "{name}: image {i}");
        let err = rel_l2(batch.data(i).unwrap(), single.data(0).unwrap());
        assert!(err <= 1e-6, "{name}: image {i}: {err}");
    }
}

/// Where the image `key` of a fixture's expected.json (`exp`) is.
pub fn fixture_image(exp: &Value, key: &str) -> PathBuf {
    let entry = exp["images"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["key"] == key)
        .unwrap_or_else(|| panic!("no image {key}"));
    repo().join(entry["path"].as_str().unwrap())
}

/// The per-call size bounds of a Qwen-style processor against the fixture's `knobs` (the
/// reference processor called with `size={"shortest_edge", "longest_edge"}`; a case with
/// `as_max_tokens` is vtower's `max_tokens`): patch grids equal, pixels within `pixel_tol`.
/// Then a token budget nothing meets, and a knob these processors do not have, are refused.
pub fn check_pixel_bound_knobs(model: &vtower::Model, name: &str, pixel_tol: f32) {
    let exp = expected(name);
    for k in exp["knobs"].as_array().unwrap() {
        let bytes = std::fs::read(fixture_image(&exp, k["image"].as_str().unwrap())).unwrap();
        let opts = match k["as_max_tokens"].as_u64() {
            Some(t) => vtower::PreprocessOptions {
                max_tokens: Some(t as usize),
                ..Default::default()
            },
            None => vtower::PreprocessOptions {
                min_pixels: Some(k["min_pixels"].as_u64().unwrap() as usize),
                max_pixels: Some(k["max_pixels"].as_u64().unwrap() as usize),
                ..Default::default()
            },
        };
        let image = model.preprocess_with(&bytes, &opts).unwrap();
        let grid: Vec<usize> = ids(&k["grid_thw"]).iter().map(|&v| v as usize).collect();
        assert_eq!(image.patch_grid().to_vec(), grid, "{name}: {k}");
        let (want, shape) = reference(name, k["pixels"].as_str().unwrap());
        assert_eq!(image.shape(), shape.as_slice());
        let d = max_abs_diff(image.pixels(), &want);
        assert!(d <= pixel_tol, "{name}: {k}: pixels differ by {d}");
    }
    let bytes = std::fs::read(&cases(name)[0].path).unwrap();
    let tiny = vtower::PreprocessOptions {
        max_tokens: Some(0),
        ..Default::default()
    };
    assert!(model.preprocess_with(&bytes, &tiny).is_err());
    let edge = vtower::PreprocessOptions {
        longest_edge: Some(64),
        ..Default::default()
    };
    let e = model.preprocess_with(&bytes, &edge).unwrap_err();
    assert_eq!(e.status(), vtower::Status::InvalidArgument, "{e}");
}

/// The fixture's M-RoPE prompt (`expected.json`'s `mrope`: token types, `position_ids`,
/// `rope_delta`) walked as an engine with `images` ([`engine_positions`]) equals the
/// reference's `get_rope_index`, and so does the rope delta for decoding after the prompt.
pub fn check_mrope_positions(mrope: &Value, images: &[vtower::Image], name: &str) {
    let types = ids(&mrope["mm_token_type_ids"]);
    let rows = engine_positions(&types, images);
    let want: Vec<Vec<i64>> = mrope["position_ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(ids)
        .collect();
    assert_eq!(rows, want, "{name}");
    let max = rows.iter().flatten().max().unwrap();
    assert_eq!(
        max + 1 - types.len() as i64,
        mrope["rope_delta"].as_i64().unwrap(),
        "{name}"
    );
}

/// Walks a prompt given as token types (0 text, 1 image) the way an engine would: text
/// counts up by one on all three axes, each image takes the ids vtower gives it.
pub fn engine_positions(types: &[i64], images: &[vtower::Image]) -> Vec<Vec<i64>> {
    let mut rows = vec![Vec::new(), Vec::new(), Vec::new()];
    let mut pos = 0i64;
    let mut next_image = images.iter();
    let mut i = 0;
    while i < types.len() {
        if types[i] == 0 {
            for row in rows.iter_mut() {
                row.push(pos);
            }
            pos += 1;
            i += 1;
            continue;
        }
        let image = next_image.next().expect("more image spans than images");
        let n = image.n_tokens();
        assert!(types[i..i + n].iter().all(|&t| t == 1), "span length");
        let (ids, next) = image.mrope_positions(pos).unwrap();
        assert_eq!(ids.len(), 3 * n);
        for (a, row) in rows.iter_mut().enumerate() {
            row.extend_from_slice(&ids[a * n..(a + 1) * n]);
        }
        pos = next;
        i += n;
    }
    rows
}

/// The process's read counter (`rchar` of /proc/self/io: bytes asked of `read`-like calls).
fn rchar() -> u64 {
    let io = std::fs::read_to_string("/proc/self/io").unwrap();
    io.lines()
        .find_map(|l| l.strip_prefix("rchar: "))
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

/// Loads the checkpoint in fixture folder `name` and checks, with the process's read counter,
/// that loading read the tensors `is_vision` selects and nothing else of the weights: beyond
/// them only the headers of the shards (`model*.safetensors`) and the folder's JSON files,
/// with 1 KiB of slack, which is less than the other tensors hold (asserted: the check can
/// fail). Returns (bytes read, vision tensor bytes, other tensor bytes, all file bytes). The
/// calling test must be alone in its test binary (no other thread reading meanwhile).
pub fn check_load_reads_only(name: &str, is_vision: &dyn Fn(&str) -> bool) -> [u64; 4] {
    let dir = fixtures().join(name);
    let (mut vision, mut other, mut headers, mut json, mut total) = (0u64, 0, 0, 0, 0);
    for entry in std::fs::read_dir(&dir).unwrap() {
        let p = entry.unwrap().path();
        let file = p.file_name().unwrap().to_string_lossy().into_owned();
        let len = std::fs::metadata(&p).unwrap().len();
        if file.starts_with("expected.") || !(file.ends_with(".json") || file.starts_with("model"))
        {
            continue;
        }
        total += len;
        if file.ends_with(".json") {
            json += len;
            continue;
        }
        let bytes = std::fs::read(&p).unwrap();
        headers += 8 + u64::from_le_bytes(bytes[..8].try_into().unwrap());
        for (k, t) in SafeTensors::deserialize(&bytes).unwrap().tensors() {
            let n = t.data().len() as u64;
            if is_vision(&k) {
                vision += n;
            } else {
                other += n;
            }
        }
    }
    let before = rchar();
    let model = vtower::Model::load(&dir, &vtower::LoadOptions::default()).unwrap();
    let read = rchar() - before;
    drop(model);
    println!(
        "{name}: load read {read} of {total} bytes: vision tensors {vision}, shard headers \
         {headers}, json {json}; other tensors (not to be read) {other}"
    );
    assert!(read >= vision, "read {read} < vision tensors {vision}");
    let extra = read - vision;
    // The check is sharp enough: reading the other tensors too would fail it.
    assert!(extra + other > headers + json + 1024);
    assert!(
        extra <= headers + json + 1024,
        "read {extra} bytes beyond the vision tensors (headers {headers}, json {json})"
    );
    [read, vision, other, total]
}

/// A config edit that the loader must refuse: (what, file, edit, words the error must hold).
pub type ConfigEdit<'a> = (
    &'a str,
    &'a str,
    &'a dyn Fn(&mut serde_json::Map<String, Value>),
    &'a str,
);

/// Applies each edit to a fresh copy of fixture `name` and checks that loading fails with a
/// config or weights error naming what is wrong.
pub fn check_refused_edits(name: &str, edits: &[ConfigEdit]) {
    for (what, file, edit, needle) in edits {
        let dir = copy_fixture(name, "refused-edit");
        edit_json(&dir.join(file), edit);
        let err = vtower::Model::load(&dir, &vtower::LoadOptions::default()).unwrap_err();
        assert!(
            matches!(
                err.status(),
                vtower::Status::BadConfig | vtower::Status::BadWeights
            ),
            "{name}: {what}: {err}"
        );
        assert!(err.message().contains(needle), "{name}: {what}: {err}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
