// The bodies of the fuzz targets, shared by `fuzz/fuzz_targets/*.rs` (cargo-fuzz) and by
// `tests/fuzz_regressions.rs` (which includes this file with `#[path]`), so that every
// reproducer runs through exactly the code path of its target.
//
// Only the public Rust API (`vtower::Model`, ...) and the C ABI (declared below, as a C
// caller sees it) are used. Each function panics when vtower breaks one of its documented
// promises (a caught panic reported as VT_ERR_PANIC, a result that contradicts the
// documentation); every error status that the API documents is a normal outcome.
//
// Input formats (stable: the committed corpora and reproducers depend on them; the fixture
// list is append-only):
//
// image:        [fixture][flags][options...][encoded image bytes...]
//               flags bit0: pan_and_scan given (bit1: its value); bit2: u32 LE
//               min_crop_size follows; bit3: u32 LE max_num_crops follows; bit4: f64 LE
//               min_ratio_to_activate follows; bit5: the size knobs follow (see
//               `read_size_knobs`). Then the rest is the image file.
// model_folder: [fixture][mask][shard][part 0] SEP [part 1] SEP ... (SEP = b"\0--\0")
//               mask bit i: part i replaces file i of the fixture folder:
//               0 config.json, 1 preprocessor_config.json (processor_config.json when
//               mask bit 5 is set), 2 the JSON header of the safetensors file chosen by
//               [shard] (the data section stays real; with mask bit 6 the part's first 8
//               bytes are the raw length prefix), 3 model.safetensors.index.json,
//               4 tokenizer.json; with mask bit 7, part 5 replaces
//               video_preprocessor_config.json. Then the model is loaded and a small image
//               forwarded.
// capi:         a sequence of [opcode][operands...] calls of the C API (see `capi`;
//               opcode byte 127 or 255 is vt_preprocess_video, the others `% 11`).

#![allow(non_camel_case_types)]
#![allow(dead_code)]

use std::ffi::{c_char, c_void, CStr};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use vtower::{LoadOptions, Model, PreprocessOptions, Status};

/// The model fixtures the targets pick from, by `byte % len`. Append only.
pub const FIXTURES: &[&str] = &[
    "siglip_f32",
    "gemma3_f32",
    "gemma3_hub_pas_bf16",
    "llava_clip_f32",
    "llava_clip_pad_hub",
    "llava_siglip_m45_f16",
    "pixtral_llava_f32",
    "pixtral_vision_f16",
    "mistral3_bf16",
    "qwen2_vl_f32",
    "qwen2_5_vl_bf16",
    "siglip_vision_hub_f16",
    "siglip_vision_sharded_bf16",
    // One fixture of each model type added since the list above (2026-12-07).
    "qwen3_vl_f32",
    "qwen3_vl_moe_sharded_bf16",
    "qwen3_5_f16",
    "qwen3_5_moe_bf16",
    "qwen4_exp_bf16",
    "gemma4_f32",
    "gemma4_vision_f32",
    "paligemma_f32",
    "internvl_f32",
    "aya_vision_f32",
    "llava_next_f32",
    "llava_onevision_hub_bf16",
    "idefics3_f32",
    "smolvlm_hub_bf16",
    "glm4v_f32",
    "glm46v_hub_bf16",
    "glm_ocr_f32",
    "glm5_next_f32",
    "siglip2_f32",
    "siglip2_vision_hub_bf16",
    "lfm2_vl_f32",
    "kimi_k25_f32",
    "paddleocr_vl_f32",
    "mistral_large4_f32",
];

/// Images with more tokens than this are preprocessed but not forwarded (keeps the
/// targets fast; preprocessing is where sizes are decided).
pub const MAX_FORWARD_TOKENS: usize = 256;

/// The repository root (holds tests/fixtures), from this crate or from the fuzz crate.
pub fn repo_root() -> PathBuf {
    if let Ok(p) = std::env::var("VTOWER_REPO") {
        return PathBuf::from(p);
    }
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    if manifest.join("tests/fixtures").is_dir() {
        manifest
    } else {
        manifest.parent().expect("fuzz/ has a parent").to_path_buf()
    }
}

pub fn fixture_dir(name: &str) -> PathBuf {
    repo_root().join("tests/fixtures").join(name)
}

fn load_options() -> LoadOptions {
    LoadOptions {
        n_threads: 1,
        ..LoadOptions::default()
    }
}

/// Silences vtower's default logging to stderr (warnings about fuzzed configs).
pub fn quiet() {
    static ONCE: OnceLock<()> = OnceLock::new();
    ONCE.get_or_init(|| unsafe { vt_log_set(Some(log_sink), std::ptr::null_mut()) });
}

unsafe extern "C" fn log_sink(_level: i32, msg: *const c_char, _user: *mut c_void) {
    // Read the message, so that a bad pointer is caught, and drop it.
    assert!(!msg.is_null(), "log callback got a NULL message");
    let _ = CStr::from_ptr(msg).to_bytes().len();
}

fn fixture_model(index: usize) -> &'static Model {
    static MODELS: OnceLock<Vec<OnceLock<Model>>> = OnceLock::new();
    let slots = MODELS.get_or_init(|| FIXTURES.iter().map(|_| OnceLock::new()).collect());
    slots[index].get_or_init(|| {
        Model::load(fixture_dir(FIXTURES[index]), &load_options())
            .unwrap_or_else(|e| panic!("fixture {} does not load: {e:?}", FIXTURES[index]))
    })
}

/// A little-endian reader that yields zeros once the input is exhausted.
pub struct Reader<'a> {
    data: &'a [u8],
}

impl<'a> Reader<'a> {
    pub fn new(data: &'a [u8]) -> Self {
        Reader { data }
    }
    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }
    pub fn u8(&mut self) -> u8 {
        match self.data.split_first() {
            Some((b, rest)) => {
                self.data = rest;
                *b
            }
            None => 0,
        }
    }
    fn array<const N: usize>(&mut self) -> [u8; N] {
        let mut out = [0u8; N];
        let n = N.min(self.data.len());
        out[..n].copy_from_slice(&self.data[..n]);
        self.data = &self.data[n..];
        out
    }
    pub fn u16(&mut self) -> u16 {
        u16::from_le_bytes(self.array())
    }
    pub fn u32(&mut self) -> u32 {
        u32::from_le_bytes(self.array())
    }
    pub fn u64(&mut self) -> u64 {
        u64::from_le_bytes(self.array())
    }
    pub fn f64(&mut self) -> f64 {
        f64::from_le_bytes(self.array())
    }
    pub fn bytes(&mut self, n: usize) -> &'a [u8] {
        let n = n.min(self.data.len());
        let (a, b) = self.data.split_at(n);
        self.data = b;
        a
    }
    pub fn rest(&mut self) -> &'a [u8] {
        self.bytes(self.data.len())
    }
}

/// What one input ended in (printed by the regression test).
pub type Outcome = String;

fn status_name(s: Status) -> String {
    format!("{s:?}")
}

/// Statuses that must never come out of vtower: a panic is a bug by definition.
fn check_error(what: &str, e: &vtower::Error) {
    assert!(
        e.status() != Status::Panic && e.status() != Status::Ok,
        "{what}: status {:?}: {}",
        e.status(),
        e.message()
    );
    assert!(!e.message().is_empty(), "{what}: empty error message");
}

/// Runs `images` through `model` and checks the result against what the images promise.
fn forward_checked(model: &Model, image: &vtower::Image) -> Outcome {
    let n = image.n_tokens();
    let grid = image.token_grid();
    assert_eq!(
        grid[0] * grid[1] * grid[2],
        n,
        "token grid {grid:?} does not multiply to n_tokens {n}"
    );
    let cap = load_options().max_image_tokens;
    assert!(
        n as u64 <= cap,
        "preprocessing gave {n} tokens, over max_image_tokens = {cap}"
    );
    let shape_len: usize = image.shape().iter().product();
    assert_eq!(
        shape_len,
        image.pixels().len(),
        "pixel shape and length disagree"
    );
    if n == 0 || n > MAX_FORWARD_TOKENS {
        return format!("preprocessed: {n} tokens (not forwarded)");
    }
    match model.forward(&[image]) {
        Ok(out) => {
            assert_eq!(out.count(), 1);
            assert_eq!(
                out.n_tokens(0),
                Some(n),
                "forward gave a different token count"
            );
            assert_eq!(out.dim(), model.info().output_dim);
            let rows = out.data(0).expect("rows of a CPU forward");
            assert_eq!(rows.len(), n * out.dim());
            if let Some(i) = rows.iter().position(|v| !v.is_finite()) {
                panic!("forward gave a non-finite value {} at {i}", rows[i]);
            }
            format!("forward ok: {n} x {}", out.dim())
        }
        Err(e) => {
            check_error("forward", &e);
            format!("forward error: {}", status_name(e.status()))
        }
    }
}

fn read_options(r: &mut Reader) -> PreprocessOptions {
    let flags = r.u8();
    let mut o = PreprocessOptions::default();
    if flags & 1 != 0 {
        o.pan_and_scan = Some(flags & 2 != 0);
    }
    if flags & 4 != 0 {
        o.pan_and_scan_min_crop_size = Some(r.u32() as usize);
    }
    if flags & 8 != 0 {
        o.pan_and_scan_max_num_crops = Some(r.u32() as usize);
    }
    if flags & 16 != 0 {
        o.pan_and_scan_min_ratio_to_activate = Some(r.f64());
    }
    if flags & 32 != 0 {
        read_size_knobs(r, &mut o);
    }
    o
}

/// A fuzzed size: one byte picks a small, medium, large or any value.
fn knob(r: &mut Reader) -> usize {
    match r.u8() % 4 {
        0 => r.u8() as usize,
        1 => r.u16() as usize,
        2 => r.u32() as usize,
        _ => r.u64() as usize,
    }
}

/// The per-call size knobs (every `PreprocessOptions` field but pan-and-scan's): a byte of
/// bits, then a `knob` for each of bits 0..=6 that is set (max_soft_tokens, min_pixels,
/// max_pixels, longest_edge, max_tokens, min_patches, max_patches), then with bit 7 a byte
/// for the two switches (bit0 crop_to_patches given, bit1 its value; bit2
/// do_image_splitting given, bit3 its value). Sets those fields of `o`.
fn read_size_knobs(r: &mut Reader, o: &mut PreprocessOptions) {
    let bits = r.u8();
    let size = |bit: u8, r: &mut Reader| (bits & (1 << bit) != 0).then(|| knob(r));
    o.max_soft_tokens = size(0, r);
    o.min_pixels = size(1, r);
    o.max_pixels = size(2, r);
    o.longest_edge = size(3, r);
    o.max_tokens = size(4, r);
    o.min_patches = size(5, r);
    o.max_patches = size(6, r);
    if bits & 128 != 0 {
        let b = r.u8();
        o.crop_to_patches = (b & 1 != 0).then_some(b & 2 != 0);
        o.do_image_splitting = (b & 4 != 0).then_some(b & 8 != 0);
    }
}

// ------------------------------------------------------------------------------------
// image: bytes -> decode -> preprocess -> forward, for every family's processor.

pub fn image(data: &[u8]) -> Outcome {
    quiet();
    let mut r = Reader::new(data);
    let index = r.u8() as usize % FIXTURES.len();
    let opts = read_options(&mut r);
    let bytes = r.rest();
    let model = fixture_model(index);
    let result = if opts.is_default() {
        model.preprocess(bytes)
    } else {
        model.preprocess_with(bytes, &opts)
    };
    if let Some(knob) = knob_not_taken(model.info(), &opts) {
        // The documented families of each knob; every other model refuses it (an image
        // that does not decode may fail first, with another status).
        assert!(
            result.is_err(),
            "{}: {knob} accepted by a {} model",
            FIXTURES[index],
            model.info().family
        );
    }
    let outcome = match result {
        Ok(img) => {
            if let Some(cap) = opts.max_tokens {
                // PreprocessOptions::max_tokens: "the most embeddings the image may yield".
                assert!(
                    img.n_tokens() <= cap,
                    "{} tokens with max_tokens {cap}",
                    img.n_tokens()
                );
            }
            forward_checked(model, &img)
        }
        Err(e) => {
            check_error("preprocess", &e);
            format!("preprocess error: {}", status_name(e.status()))
        }
    };
    format!("{}: {outcome}", FIXTURES[index])
}

/// The first per-call size knob set in `opts` that the model does not take, by the
/// documentation of `PreprocessOptions` / `vt_preprocess_params` (`max_tokens` is every
/// model's).
fn knob_not_taken(info: &vtower::ModelInfo, opts: &PreprocessOptions) -> Option<&'static str> {
    const QWEN_LIKE: &[&str] = &[
        "qwen2_vl",
        "qwen2_5_vl",
        "qwen3_vl",
        "qwen3_5",
        "glm4v",
        "paddleocr_vl",
    ];
    let family = info.family;
    let onevision = family == "llava_next" && info.model_type == "llava_onevision";
    let knobs: [(&str, bool, bool); 8] = [
        (
            "max_soft_tokens",
            opts.max_soft_tokens.is_some(),
            family == "gemma4",
        ),
        (
            "min_pixels",
            opts.min_pixels.is_some(),
            QWEN_LIKE.contains(&family),
        ),
        (
            "max_pixels",
            opts.max_pixels.is_some(),
            QWEN_LIKE.contains(&family),
        ),
        (
            "longest_edge",
            opts.longest_edge.is_some(),
            ["pixtral", "idefics3", "smolvlm"].contains(&family),
        ),
        (
            "crop_to_patches",
            opts.crop_to_patches.is_some(),
            ["internvl", "aya_vision"].contains(&family),
        ),
        (
            "min_patches",
            opts.min_patches.is_some(),
            ["internvl", "aya_vision", "lfm2_vl"].contains(&family),
        ),
        (
            "max_patches",
            opts.max_patches.is_some(),
            ["internvl", "aya_vision", "lfm2_vl", "kimi_k25"].contains(&family),
        ),
        (
            "do_image_splitting",
            opts.do_image_splitting.is_some(),
            ["idefics3", "smolvlm", "lfm2_vl"].contains(&family) || onevision,
        ),
    ];
    knobs
        .iter()
        .find(|&&(_, set, taken)| set && !taken)
        .map(|&(name, _, _)| name)
}

// ------------------------------------------------------------------------------------
// model_folder: fuzzed config / processor config / safetensors header / index -> load ->
// forward.

pub const SEP: &[u8] = b"\0--\0";

fn split_parts(data: &[u8]) -> Vec<&[u8]> {
    let mut parts = Vec::new();
    let mut rest = data;
    while let Some(pos) = rest.windows(SEP.len()).position(|w| w == SEP) {
        parts.push(&rest[..pos]);
        rest = &rest[pos + SEP.len()..];
    }
    parts.push(rest);
    parts
}

/// The safetensors files of a fixture folder, sorted.
fn safetensors_files(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            let name = p.file_name().unwrap().to_string_lossy();
            name.ends_with(".safetensors") && !name.starts_with("expected")
        })
        .collect();
    v.sort();
    v
}

/// A scratch folder for this process, emptied on each call.
fn scratch_dir() -> PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    let dir = DIR.get_or_init(|| {
        let base = std::env::var_os("VTOWER_FUZZ_TMP")
            .map(PathBuf::from)
            .unwrap_or_else(std::env::temp_dir);
        base.join(format!("vtower-fuzz-{}", std::process::id()))
    });
    let _ = std::fs::remove_dir_all(dir);
    std::fs::create_dir_all(dir).expect("create scratch dir");
    dir.clone()
}

/// Builds the fuzzed folder and returns it (the caller loads it).
pub fn build_model_folder(data: &[u8]) -> PathBuf {
    let mut r = Reader::new(data);
    let index = r.u8() as usize % FIXTURES.len();
    let mask = r.u8();
    let shard_pick = r.u8() as usize;
    let parts = split_parts(r.rest());
    let part = |i: usize| -> Option<&[u8]> {
        if mask & (1 << i) != 0 {
            parts.get(i).copied()
        } else {
            None
        }
    };
    let src = fixture_dir(FIXTURES[index]);
    let dst = scratch_dir();
    // Everything but the reference outputs and test images, as it is.
    for entry in std::fs::read_dir(&src).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if name.starts_with("expected") || name.ends_with(".png") {
            continue;
        }
        std::os::unix::fs::symlink(&path, dst.join(&name)).unwrap();
    }
    let put = |name: &str, bytes: &[u8]| {
        let p = dst.join(name);
        let _ = std::fs::remove_file(&p);
        std::fs::write(&p, bytes).unwrap();
    };
    if let Some(b) = part(0) {
        put("config.json", b);
    }
    if let Some(b) = part(1) {
        let name = if mask & 32 != 0 {
            "processor_config.json"
        } else {
            "preprocessor_config.json"
        };
        put(name, b);
    }
    if let Some(header) = part(2) {
        let files = safetensors_files(&src);
        let file = &files[shard_pick % files.len()];
        let orig = std::fs::read(file).unwrap();
        let orig_len = u64::from_le_bytes(orig[..8].try_into().unwrap()) as usize;
        let data_section = &orig[8 + orig_len..];
        let mut out = Vec::with_capacity(8 + header.len() + data_section.len());
        if mask & 64 != 0 {
            // The fuzzer writes the length prefix itself.
            out.extend_from_slice(header);
        } else {
            out.extend_from_slice(&(header.len() as u64).to_le_bytes());
            out.extend_from_slice(header);
        }
        out.extend_from_slice(data_section);
        put(&file.file_name().unwrap().to_string_lossy(), &out);
    }
    if let Some(b) = part(3) {
        put("model.safetensors.index.json", b);
    }
    if let Some(b) = part(4) {
        put("tokenizer.json", b);
    }
    // Part 5 with mask bit 7 (bits 5 and 6 are flags above).
    if let Some(b) = parts.get(5).filter(|_| mask & 128 != 0) {
        put("video_preprocessor_config.json", b);
    }
    dst
}

/// A small deterministic RGB image.
fn small_rgb(w: usize, h: usize) -> Vec<u8> {
    (0..w * h * 3).map(|i| (i * 37 % 251) as u8).collect()
}

pub fn model_folder(data: &[u8]) -> Outcome {
    quiet();
    let dir = build_model_folder(data);
    let outcome = match Model::load(&dir, &load_options()) {
        Ok(model) => {
            let info = model.info();
            assert!(info.output_dim > 0 && info.vision_dim > 0 && info.patch_size > 0);
            let (w, h) = (20usize, 14usize);
            match model.preprocess_rgb8(&small_rgb(w, h), w as u32, h as u32, w * 3) {
                Ok(img) => format!("loaded; {}", forward_checked(&model, &img)),
                Err(e) => {
                    check_error("preprocess", &e);
                    format!("loaded; preprocess error: {}", status_name(e.status()))
                }
            }
        }
        Err(e) => {
            check_error("load", &e);
            format!("load error: {}", status_name(e.status()))
        }
    };
    let _ = std::fs::remove_dir_all(&dir);
    outcome
}

// ------------------------------------------------------------------------------------
// capi: sequences of C API calls on loaded fixtures.

#[repr(C)]
pub struct vt_model {
    _p: [u8; 0],
}
#[repr(C)]
pub struct vt_image {
    _p: [u8; 0],
}
#[repr(C)]
pub struct vt_embeddings {
    _p: [u8; 0],
}
#[repr(C)]
pub struct vt_error {
    _p: [u8; 0],
}

#[repr(C)]
#[derive(Clone, Copy)]
pub struct vt_load_params {
    pub struct_size: u32,
    pub device: u32,
    pub device_ordinal: i32,
    pub n_threads: u32,
    pub max_image_pixels: u64,
    pub dtype: u32,
    pub max_image_tokens: u64,
    pub embedding_cache_bytes: u64,
    pub max_forward_bytes: u64,
}

#[repr(C)]
#[derive(Clone, Copy)]
pub struct vt_preprocess_params {
    pub struct_size: u32,
    pub pan_and_scan: i32,
    pub pan_and_scan_min_crop_size: u32,
    pub pan_and_scan_max_num_crops: u32,
    pub pan_and_scan_min_ratio_to_activate: f64,
    pub max_soft_tokens: u32,
    pub min_pixels: u64,
    pub max_pixels: u64,
    pub max_tokens: u64,
    pub longest_edge: u32,
    pub crop_to_patches: i32,
    pub min_patches: i32,
    pub max_patches: i32,
    pub do_image_splitting: i32,
}

#[repr(C)]
#[derive(Clone, Copy)]
pub struct vt_video_params {
    pub struct_size: u32,
    pub do_sample_frames: i32,
    pub source_fps: f64,
    pub sample_fps: f64,
    pub num_frames: u32,
}

/// Video params with zeroed room after them (struct_size past the struct).
#[repr(C)]
#[derive(Clone, Copy)]
pub struct PaddedVideoParams {
    pub p: vt_video_params,
    _tail: [u64; 2],
}

/// Preprocess params with zeroed room after them, for struct_size values past the struct
/// (a newer caller).
#[repr(C)]
#[derive(Clone, Copy)]
pub struct PaddedPreprocessParams {
    pub p: vt_preprocess_params,
    _tail: [u64; 2],
}

type vt_log_fn = Option<unsafe extern "C" fn(i32, *const c_char, *mut c_void)>;

extern "C" {
    fn vt_load(
        dir: *const c_char,
        params: *const vt_load_params,
        out: *mut *mut vt_model,
        err: *mut *mut vt_error,
    ) -> i32;
    fn vt_free(model: *mut vt_model);
    fn vt_model_family(model: *const vt_model) -> *const c_char;
    fn vt_model_type(model: *const vt_model) -> *const c_char;
    fn vt_model_output_dim(model: *const vt_model) -> usize;
    fn vt_model_vision_dim(model: *const vt_model) -> usize;
    fn vt_model_patch_size(model: *const vt_model) -> u32;
    fn vt_model_tokens_per_image(model: *const vt_model) -> usize;
    fn vt_model_n_threads(model: *const vt_model) -> u32;
    fn vt_model_merge_size(model: *const vt_model) -> u32;
    fn vt_model_image_size(
        model: *const vt_model,
        w: *mut u32,
        h: *mut u32,
        err: *mut *mut vt_error,
    ) -> i32;
    fn vt_model_token_id(model: *const vt_model, role: u32) -> i64;
    fn vt_load_params_default() -> vt_load_params;
    fn vt_preprocess_params_default() -> vt_preprocess_params;
    fn vt_preprocess(
        model: *const vt_model,
        data: *const u8,
        len: usize,
        out: *mut *mut vt_image,
        err: *mut *mut vt_error,
    ) -> i32;
    fn vt_preprocess_ex(
        model: *const vt_model,
        data: *const u8,
        len: usize,
        params: *const vt_preprocess_params,
        out: *mut *mut vt_image,
        err: *mut *mut vt_error,
    ) -> i32;
    fn vt_preprocess_rgb8(
        model: *const vt_model,
        pixels: *const u8,
        width: u32,
        height: u32,
        row_stride: usize,
        out: *mut *mut vt_image,
        err: *mut *mut vt_error,
    ) -> i32;
    fn vt_preprocess_rgb8_ex(
        model: *const vt_model,
        pixels: *const u8,
        width: u32,
        height: u32,
        row_stride: usize,
        params: *const vt_preprocess_params,
        out: *mut *mut vt_image,
        err: *mut *mut vt_error,
    ) -> i32;
    fn vt_video_params_default() -> vt_video_params;
    fn vt_preprocess_video(
        model: *const vt_model,
        frames: *const *const u8,
        n_frames: usize,
        width: u32,
        height: u32,
        row_stride: usize,
        params: *const vt_video_params,
        out: *mut *mut vt_image,
        err: *mut *mut vt_error,
    ) -> i32;
    fn vt_image_is_video(image: *const vt_image) -> i32;
    fn vt_image_video_timestamps(
        image: *const vt_image,
        timestamps_out: *mut f64,
        len: usize,
        count_out: *mut usize,
        err: *mut *mut vt_error,
    ) -> i32;
    fn vt_image_video_second_per_grid(
        image: *const vt_image,
        seconds_out: *mut f64,
        err: *mut *mut vt_error,
    ) -> i32;
    fn vt_image_frame_mrope_positions(
        image: *const vt_image,
        frame: u32,
        start: i64,
        positions_out: *mut i64,
        positions_len: usize,
        next_out: *mut i64,
        err: *mut *mut vt_error,
    ) -> i32;
    fn vt_image_pixels(
        image: *const vt_image,
        data: *mut *const f32,
        len: *mut usize,
        err: *mut *mut vt_error,
    ) -> i32;
    fn vt_image_shape(
        image: *const vt_image,
        shape: *mut usize,
        ndim: *mut usize,
        err: *mut *mut vt_error,
    ) -> i32;
    fn vt_image_n_tokens(image: *const vt_image) -> usize;
    fn vt_image_free(image: *mut vt_image);
    fn vt_image_token_grid(
        image: *const vt_image,
        f: *mut u32,
        r: *mut u32,
        c: *mut u32,
        err: *mut *mut vt_error,
    ) -> i32;
    fn vt_image_patch_grid(
        image: *const vt_image,
        f: *mut u32,
        r: *mut u32,
        c: *mut u32,
        err: *mut *mut vt_error,
    ) -> i32;
    fn vt_image_mrope_positions(
        image: *const vt_image,
        start: i64,
        out: *mut i64,
        len: usize,
        next: *mut i64,
        err: *mut *mut vt_error,
    ) -> i32;
    fn vt_forward(
        model: *const vt_model,
        images: *const *const vt_image,
        n: usize,
        out: *mut *mut vt_embeddings,
        err: *mut *mut vt_error,
    ) -> i32;
    fn vt_embeddings_count(e: *const vt_embeddings) -> usize;
    fn vt_embeddings_n_tokens(e: *const vt_embeddings, index: usize) -> usize;
    fn vt_embeddings_dim(e: *const vt_embeddings) -> usize;
    fn vt_embeddings_data(e: *const vt_embeddings, index: usize) -> *const f32;
    fn vt_embeddings_free(e: *mut vt_embeddings);
    fn vt_embeddings_copy(
        e: *const vt_embeddings,
        index: usize,
        dtype: u32,
        dst: *mut c_void,
        dst_bytes: usize,
        err: *mut *mut vt_error,
    ) -> i32;
    fn vt_error_code(err: *const vt_error) -> i32;
    fn vt_error_message(err: *const vt_error) -> *const c_char;
    fn vt_error_free(err: *mut vt_error);
    fn vt_log_set(callback: vt_log_fn, user_data: *mut c_void);
    fn vt_status_str(status: i32) -> *const c_char;
    fn vt_version() -> *const c_char;
}

/// LoadOptions::default().max_image_tokens (what vt_load gives every model).
const DEFAULT_MAX_IMAGE_TOKENS: usize = 32_768;
const VT_OK: i32 = 0;
const VT_ERR_INVALID_ARGUMENT: i32 = 1;
const VT_ERR_PANIC: i32 = 11;

/// Models loaded once per process through vt_load, one per fixture (never freed).
fn capi_fixture(index: usize) -> *const vt_model {
    static MODELS: OnceLock<Vec<OnceLock<usize>>> = OnceLock::new();
    let slots = MODELS.get_or_init(|| FIXTURES.iter().map(|_| OnceLock::new()).collect());
    *slots[index].get_or_init(|| {
        let path = cpath(&fixture_dir(FIXTURES[index]));
        let mut params = unsafe { vt_load_params_default() };
        params.device = 0; // CPU
        params.n_threads = 1;
        let mut m: *mut vt_model = std::ptr::null_mut();
        let s = unsafe { vt_load(path.as_ptr(), &params, &mut m, std::ptr::null_mut()) };
        assert_eq!(s, VT_OK, "vt_load {}", FIXTURES[index]);
        m as usize
    }) as *const vt_model
}

fn cpath(p: &Path) -> std::ffi::CString {
    std::ffi::CString::new(p.to_str().unwrap()).unwrap()
}

fn cstr_ok(p: *const c_char, what: &str) -> String {
    assert!(!p.is_null(), "{what} returned NULL");
    let s = unsafe { CStr::from_ptr(p) };
    s.to_str()
        .unwrap_or_else(|_| panic!("{what}: not UTF-8"))
        .to_owned()
}

/// Checks a status and the error that came with it (when `err` was asked for).
fn check_status(what: &str, s: i32, err: *mut vt_error) {
    assert_ne!(s, VT_ERR_PANIC, "{what}: VT_ERR_PANIC: {}", unsafe {
        if err.is_null() {
            String::new()
        } else {
            CStr::from_ptr(vt_error_message(err))
                .to_string_lossy()
                .into_owned()
        }
    });
    if !err.is_null() {
        assert_ne!(s, VT_OK, "{what}: an error came with VT_OK");
        assert_eq!(
            unsafe { vt_error_code(err) },
            s,
            "{what}: error code != status"
        );
        let msg = cstr_ok(unsafe { vt_error_message(err) }, "vt_error_message");
        assert!(!msg.is_empty(), "{what}: empty error message");
        unsafe { vt_error_free(err) };
    }
    let _ = cstr_ok(unsafe { vt_status_str(s) }, "vt_status_str");
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Owner {
    /// One of the models loaded once per process (index into FIXTURES).
    Fixture(usize),
    /// The n-th model loaded by an op of this input (freed when replaced).
    Local(usize),
}

struct CImage {
    ptr: *mut vt_image,
    /// Which model made it.
    owner: Owner,
}

struct CState {
    images: Vec<CImage>,
    embeddings: Vec<*mut vt_embeddings>,
    local: *mut vt_model,
    /// Bumped each time a local model is loaded, so images of a freed one never match.
    local_gen: usize,
    current: Owner,
}

const MAX_IMAGES: usize = 6;
const MAX_EMBEDDINGS: usize = 3;
/// Bytes of RGB8 input the harness is willing to allocate for one call.
const MAX_RGB_BYTES: u64 = 16 << 20;

impl CState {
    fn model(&self, owner: Owner) -> *const vt_model {
        match owner {
            Owner::Fixture(i) => capi_fixture(i),
            Owner::Local(g) if g == self.local_gen && !self.local.is_null() => self.local,
            Owner::Local(_) => std::ptr::null(),
        }
    }
    /// The current model, falling back to fixture 0 once the local one is freed.
    fn current_owner(&self) -> Owner {
        if self.model(self.current).is_null() {
            Owner::Fixture(0)
        } else {
            self.current
        }
    }
    fn current_model(&self) -> *const vt_model {
        self.model(self.current_owner())
    }
}

/// `err_out` or NULL, as the fuzzer says.
fn err_slot(want: bool, slot: &mut *mut vt_error) -> *mut *mut vt_error {
    *slot = std::ptr::null_mut();
    if want {
        slot
    } else {
        std::ptr::null_mut()
    }
}

fn read_pp_params(r: &mut Reader) -> Option<PaddedPreprocessParams> {
    let mode = r.u8();
    if mode & 1 == 0 {
        return None;
    }
    let mut padded = PaddedPreprocessParams {
        p: unsafe { vt_preprocess_params_default() },
        _tail: [0; 2],
    };
    let p = &mut padded.p;
    let full = p.struct_size;
    // The mirror above must be the header's struct: the default is returned by value into it.
    assert_eq!(full as usize, std::mem::size_of::<vt_preprocess_params>());
    if mode & 2 != 0 {
        p.pan_and_scan = (r.u8() % 4) as i32 - 1; // -1, 0, 1, 2 (invalid)
    }
    if mode & 4 != 0 {
        p.pan_and_scan_min_crop_size = r.u32();
    }
    if mode & 8 != 0 {
        p.pan_and_scan_max_num_crops = r.u32();
    }
    if mode & 16 != 0 {
        p.pan_and_scan_min_ratio_to_activate = r.f64();
    }
    if mode & 32 != 0 {
        // Older (smaller) callers, or a newer one (refused). The struct is read only up to
        // struct_size, which never exceeds the memory we pass when smaller.
        p.struct_size = match r.u8() % 4 {
            0 => 0,
            1 => 8,
            2 => 16,
            _ => full + 8,
        };
    }
    if mode & 64 != 0 {
        // The size knobs, in the C types (negative and huge values included).
        let mut k = PreprocessOptions::default();
        read_size_knobs(r, &mut k);
        let u = |v: Option<usize>| v.unwrap_or(0);
        p.max_soft_tokens = u(k.max_soft_tokens) as u32;
        p.min_pixels = u(k.min_pixels) as u64;
        p.max_pixels = u(k.max_pixels) as u64;
        p.longest_edge = u(k.longest_edge) as u32;
        p.max_tokens = u(k.max_tokens) as u64;
        p.min_patches = k.min_patches.map_or(-1, |v| v as i32);
        p.max_patches = k.max_patches.map_or(-1, |v| v as i32);
        p.crop_to_patches = k.crop_to_patches.map_or(-1, i32::from);
        p.do_image_splitting = k.do_image_splitting.map_or(-1, i32::from);
    }
    Some(padded)
}

pub fn capi(data: &[u8]) -> Outcome {
    quiet();
    let mut r = Reader::new(data);
    let mut st = CState {
        images: Vec::new(),
        embeddings: Vec::new(),
        local: std::ptr::null_mut(),
        local_gen: 0,
        current: Owner::Fixture(0),
    };
    let mut log = Vec::new();
    let mut steps = 0;
    while !r.is_empty() && steps < 48 {
        steps += 1;
        let b = r.u8();
        let op = if b & 0x7f == 127 { 11 } else { (b & 0x7f) % 11 };
        let want_err = b & 0x80 == 0;
        let mut err: *mut vt_error = std::ptr::null_mut();
        match op {
            // Pick the current model.
            0 => {
                let b = r.u8() as usize;
                st.current = if b == 255 {
                    Owner::Local(st.local_gen)
                } else {
                    Owner::Fixture(b % FIXTURES.len())
                };
                log.push(format!("select {:?}", st.current_owner()));
            }
            // vt_load a local model with fuzzed params (replacing the previous one).
            1 => {
                let fixture = r.u8() as usize % FIXTURES.len();
                let mut p = unsafe { vt_load_params_default() };
                let full = p.struct_size;
                assert_eq!(full as usize, std::mem::size_of::<vt_load_params>());
                let mode = r.u8();
                p.device = [0, 2, 1, 7][(mode & 3) as usize];
                p.dtype = ((mode >> 2) % 6) as u32;
                p.n_threads = 1;
                if mode & 64 != 0 {
                    p.max_image_pixels = r.u32() as u64;
                }
                p.struct_size = match r.u8() % 8 {
                    0 => 0,
                    1 => 4,
                    2 => 16,
                    3 => 24,
                    4 => full + 8,
                    _ => full,
                };
                let path_kind = r.u8() % 8;
                let path = match path_kind {
                    0 => std::ffi::CString::new("/nonexistent/vtower-fuzz").unwrap(),
                    1 => std::ffi::CString::new(vec![0xffu8, 0xfe, b'x']).unwrap(),
                    _ => cpath(&fixture_dir(FIXTURES[fixture])),
                };
                let mut m: *mut vt_model = std::ptr::null_mut();
                let pp: *const vt_load_params = if mode & 128 != 0 {
                    std::ptr::null()
                } else {
                    &p
                };
                // Big enough for any struct_size we pass.
                let mut padded = [0u64; 8];
                let pbuf = if pp.is_null() {
                    pp
                } else {
                    unsafe {
                        std::ptr::copy_nonoverlapping(
                            pp as *const u8,
                            padded.as_mut_ptr() as *mut u8,
                            std::mem::size_of::<vt_load_params>(),
                        )
                    };
                    padded.as_ptr() as *const vt_load_params
                };
                let errp = err_slot(want_err, &mut err);
                let s = unsafe { vt_load(path.as_ptr(), pbuf, &mut m, errp) };
                check_status("vt_load", s, err);
                if s == VT_OK {
                    assert!(!m.is_null(), "vt_load: VT_OK without a model");
                    if !st.local.is_null() {
                        unsafe { vt_free(st.local) };
                    }
                    st.local = m;
                    st.local_gen += 1;
                    st.current = Owner::Local(st.local_gen);
                } else {
                    assert!(m.is_null(), "vt_load wrote its output on failure");
                }
                log.push(format!("load {fixture} -> {s}"));
            }
            // vt_preprocess(_ex) of encoded bytes.
            2 => {
                let params = read_pp_params(&mut r);
                let len = r.u16() as usize;
                let bytes = r.bytes(len);
                let model = st.current_model();
                let mut img: *mut vt_image = std::ptr::null_mut();
                let errp = err_slot(want_err, &mut err);
                let s = unsafe {
                    match &params {
                        None => vt_preprocess(model, bytes.as_ptr(), bytes.len(), &mut img, errp),
                        Some(p) => vt_preprocess_ex(
                            model,
                            bytes.as_ptr(),
                            bytes.len(),
                            &p.p,
                            &mut img,
                            errp,
                        ),
                    }
                };
                check_status("vt_preprocess", s, err);
                keep_image(&mut st, s, img);
                log.push(format!("preprocess {} bytes -> {s}", bytes.len()));
            }
            // vt_preprocess_rgb8(_ex) of raw pixels.
            3 => {
                let params = read_pp_params(&mut r);
                let mode = r.u8();
                let (w, h) = if mode & 1 != 0 {
                    (r.u32(), r.u32())
                } else {
                    (r.u8() as u32, r.u8() as u32)
                };
                let extra = (mode >> 1) as usize % 8;
                let stride = if mode & 0x40 != 0 {
                    (w as usize * 3).saturating_sub(1 + extra) // too small: refused
                } else {
                    w as usize * 3 + extra
                };
                let need = if w == 0 || h == 0 {
                    0
                } else {
                    // u128: (h - 1) * stride can exceed u64 for fuzzed sizes.
                    ((h as u128 - 1) * stride as u128 + w as u128 * 3).min(u64::MAX as u128) as u64
                };
                if need > MAX_RGB_BYTES || (mode & 0x40 != 0 && w as u64 * 3 > MAX_RGB_BYTES) {
                    log.push(format!("rgb8 {w}x{h} skipped"));
                    continue;
                }
                let seed = r.bytes(64);
                // vtower reads `need` bytes (none when a side is 0 or the stride is too
                // small: those calls are refused before the pixels are touched). A full
                // first row is still handed over so that an over-read shows under ASan,
                // but never more than MAX_RGB_BYTES: with 0 rows the row is not bounded
                // by `need`, and an input with a 500-megapixel-wide empty image made the
                // harness itself allocate and fill 1.6 GB (12.9 GB at u32::MAX), the
                // transient peak behind the capi campaign's out-of-memory (RELIABILITY.md).
                let len = need.max((w as u64 * 3).min(MAX_RGB_BYTES));
                let buf: Vec<u8> = (0..len as usize)
                    .map(|i| {
                        if seed.is_empty() {
                            i as u8
                        } else {
                            seed[i % seed.len()]
                        }
                    })
                    .collect();
                let model = st.current_model();
                let mut img: *mut vt_image = std::ptr::null_mut();
                let errp = err_slot(want_err, &mut err);
                let s = unsafe {
                    match &params {
                        None => {
                            vt_preprocess_rgb8(model, buf.as_ptr(), w, h, stride, &mut img, errp)
                        }
                        Some(p) => vt_preprocess_rgb8_ex(
                            model,
                            buf.as_ptr(),
                            w,
                            h,
                            stride,
                            &p.p,
                            &mut img,
                            errp,
                        ),
                    }
                };
                check_status("vt_preprocess_rgb8", s, err);
                if w == 0 || h == 0 || stride < w as usize * 3 {
                    assert_eq!(s, VT_ERR_INVALID_ARGUMENT, "rgb8 {w}x{h} stride {stride}");
                }
                keep_image(&mut st, s, img);
                log.push(format!("rgb8 {w}x{h} stride {stride} -> {s}"));
            }
            // Image accessors.
            4 => {
                if st.images.is_empty() {
                    continue;
                }
                let i = r.u8() as usize % st.images.len();
                let start = r.u64() as i64;
                let slack = r.u8();
                image_queries(st.images[i].ptr, start, slack, want_err);
                log.push(format!("image queries {i}"));
            }
            // vt_forward of a subset of the images on the current model.
            5 => {
                let sel = r.u8();
                let model = st.current_model();
                let owner = st.current_owner();
                let chosen: Vec<&CImage> = st
                    .images
                    .iter()
                    .enumerate()
                    .filter(|(i, _)| sel & (1 << i) != 0)
                    .map(|(_, im)| im)
                    .collect();
                let tokens: usize = chosen
                    .iter()
                    .map(|im| unsafe { vt_image_n_tokens(im.ptr) })
                    .sum();
                if tokens > MAX_FORWARD_TOKENS * 2 || st.embeddings.len() >= MAX_EMBEDDINGS {
                    log.push("forward skipped".into());
                    continue;
                }
                let ptrs: Vec<*const vt_image> =
                    chosen.iter().map(|im| im.ptr as *const vt_image).collect();
                let foreign = chosen.iter().any(|im| im.owner != owner);
                let mut out: *mut vt_embeddings = std::ptr::null_mut();
                let errp = err_slot(want_err, &mut err);
                let images_ptr = if ptrs.is_empty() && sel & 128 != 0 {
                    std::ptr::null()
                } else {
                    ptrs.as_ptr()
                };
                let s = unsafe { vt_forward(model, images_ptr, ptrs.len(), &mut out, errp) };
                check_status("vt_forward", s, err);
                if foreign {
                    assert_eq!(
                        s, VT_ERR_INVALID_ARGUMENT,
                        "forward of another model's image"
                    );
                }
                if s == VT_OK {
                    assert!(!out.is_null());
                    let dim = unsafe { vt_embeddings_dim(out) };
                    assert_eq!(dim, unsafe { vt_model_output_dim(model) });
                    assert_eq!(unsafe { vt_embeddings_count(out) }, ptrs.len());
                    for (k, p) in ptrs.iter().enumerate() {
                        assert_eq!(
                            unsafe { vt_embeddings_n_tokens(out, k) },
                            unsafe { vt_image_n_tokens(*p) },
                            "embeddings rows != image tokens"
                        );
                    }
                    st.embeddings.push(out);
                } else {
                    assert!(out.is_null(), "vt_forward wrote its output on failure");
                }
                log.push(format!("forward {} images -> {s}", ptrs.len()));
            }
            // Embeddings accessors.
            6 => {
                if st.embeddings.is_empty() {
                    continue;
                }
                let e = st.embeddings[r.u8() as usize % st.embeddings.len()];
                let index = r.u8() as usize % 4;
                let dtype = (r.u8() % 5) as u32;
                let slack = r.u8() as i64 - 128;
                embeddings_queries(e, index, dtype, slack, want_err);
                log.push(format!("embeddings queries {index} {dtype}"));
            }
            // Frees, in any order.
            7 => {
                let b = r.u8();
                if b & 1 == 0 && !st.images.is_empty() {
                    let im = st.images.remove(b as usize / 2 % st.images.len());
                    unsafe { vt_image_free(im.ptr) };
                } else if !st.embeddings.is_empty() {
                    let e = st.embeddings.remove(b as usize / 2 % st.embeddings.len());
                    unsafe { vt_embeddings_free(e) };
                } else if b & 2 != 0 && !st.local.is_null() {
                    // Images of this model stay alive; forwarding them elsewhere must fail.
                    unsafe { vt_free(st.local) };
                    st.local = std::ptr::null_mut();
                }
                log.push("free".into());
            }
            // Model accessors.
            8 => {
                let role = r.u32() % 6;
                model_queries(st.current_model(), role, want_err);
                log.push("model queries".into());
            }
            // NULL arguments: must be refused, never crash.
            9 => {
                null_calls(st.current_model(), r.u8());
                log.push("null calls".into());
            }
            // Status strings and the version.
            10 => {
                let code = r.u32() as i32;
                let _ = cstr_ok(unsafe { vt_status_str(code) }, "vt_status_str");
                let _ = cstr_ok(unsafe { vt_version() }, "vt_version");
            }
            // vt_preprocess_video of generated frames.
            11 => {
                let s = capi_video(&mut r, &st, want_err, &mut log);
                if let Some((s, img)) = s {
                    keep_image(&mut st, s, img);
                }
            }
            _ => {}
        }
    }
    for e in st.embeddings.drain(..) {
        unsafe { vt_embeddings_free(e) };
    }
    for im in st.images.drain(..) {
        unsafe { vt_image_free(im.ptr) };
    }
    if !st.local.is_null() {
        unsafe { vt_free(st.local) };
    }
    log.join("; ")
}

/// Most frames one video call hands over (each a pointer into one of two frame buffers).
const MAX_VIDEO_FRAMES: usize = 64;

/// A source or sampling rate: 0 (unset), a usual rate, or any f64 (NaN, negative, huge).
fn rate(r: &mut Reader) -> f64 {
    match r.u8() % 4 {
        0 => 0.0,
        1 => f64::from(r.u8()) / 4.0,
        2 => [23.976, 29.97, 24.0, 2.0, 1.0, 0.5][r.u8() as usize % 6],
        _ => r.f64(),
    }
}

/// One vt_preprocess_video call: `[mode][n][w][h]([u16 w][u16 h] with mode bit1)[params...]
/// [seed 64]`; mode bit0: up to MAX_VIDEO_FRAMES frames, else up to 8; bit2: params follow
/// (`[fields][do_sample][rates][num_frames][struct_size]`); bit3: one frame pointer NULL;
/// bits 4..6: extra stride bytes; bit7: stride one byte short. Returns the status and the
/// image (None when the harness skipped the call: `n` frames over its byte cap together).
fn capi_video(
    r: &mut Reader,
    st: &CState,
    want_err: bool,
    log: &mut Vec<String>,
) -> Option<(i32, *mut vt_image)> {
    let mode = r.u8();
    let n = r.u8() as usize
        % if mode & 1 != 0 {
            MAX_VIDEO_FRAMES + 1
        } else {
            9
        };
    let (w, h) = if mode & 2 != 0 {
        (u32::from(r.u16()), u32::from(r.u16()))
    } else {
        (u32::from(r.u8()), u32::from(r.u8()))
    };
    let extra = (mode >> 4) as usize % 8;
    let stride = if mode & 0x80 != 0 {
        (w as usize * 3).saturating_sub(1)
    } else {
        w as usize * 3 + extra
    };
    let params = if mode & 4 != 0 {
        let mut padded = PaddedVideoParams {
            p: unsafe { vt_video_params_default() },
            _tail: [0; 2],
        };
        let p = &mut padded.p;
        let full = p.struct_size;
        assert_eq!(full as usize, std::mem::size_of::<vt_video_params>());
        let fields = r.u8();
        if fields & 1 != 0 {
            p.do_sample_frames = (r.u8() % 4) as i32 - 1; // -1, 0, 1, 2 (invalid)
        }
        if fields & 2 != 0 {
            p.source_fps = rate(r);
        }
        if fields & 4 != 0 {
            p.sample_fps = rate(r);
        }
        if fields & 8 != 0 {
            p.num_frames = knob(r) as u32;
        }
        if fields & 16 != 0 {
            p.struct_size = match r.u8() % 4 {
                0 => 0,
                1 => 8,
                2 => 16,
                _ => full + 8,
            };
        }
        Some(padded)
    } else {
        None
    };
    let need = if w == 0 || h == 0 {
        0
    } else {
        (h as u64 - 1) * stride as u64 + w as u64 * 3
    };
    // The frames vtower may read, all together, within the harness's byte cap (a call
    // that would resize 64 frames of 8 MiB under ASan costs seconds). With no frames the
    // harness still builds its two buffers: they count as one frame (an input with 0
    // frames of 65535 x 26454 made it allocate 5.2 GB, the capi campaign's out-of-memory of
    // stop 32: a harness bug, not vtower's; `regressions/capi/video_zero_frames_5GB`).
    if need.saturating_mul(n.max(1) as u64) > MAX_RGB_BYTES {
        log.push(format!("video {n} x {w}x{h} skipped"));
        return None;
    }
    let seed = r.bytes(64);
    // Two frame buffers (a video that changes every other frame); each frame is `need`
    // bytes, at least one byte so that the pointers are valid.
    let frame = |salt: u8| -> Vec<u8> {
        (0..need.max(1) as usize)
            .map(|i| seed.get(i % seed.len().max(1)).copied().unwrap_or(i as u8) ^ salt)
            .collect()
    };
    let (a, b) = (frame(0), frame(0x5a));
    let mut ptrs: Vec<*const u8> = (0..n)
        .map(|i| if i % 2 == 0 { a.as_ptr() } else { b.as_ptr() })
        .collect();
    let null_frame = mode & 8 != 0 && n > 0;
    if null_frame {
        let i = seed.first().copied().unwrap_or(0) as usize % n;
        ptrs[i] = std::ptr::null();
    }
    let model = st.current_model();
    let mut img: *mut vt_image = std::ptr::null_mut();
    let mut err: *mut vt_error = std::ptr::null_mut();
    let errp = err_slot(want_err, &mut err);
    let pp = params
        .as_ref()
        .map_or(std::ptr::null(), |p| &p.p as *const vt_video_params);
    let s =
        unsafe { vt_preprocess_video(model, ptrs.as_ptr(), n, w, h, stride, pp, &mut img, errp) };
    check_status("vt_preprocess_video", s, err);
    if n == 0 || w == 0 || h == 0 || stride < w as usize * 3 || null_frame {
        assert_eq!(
            s, VT_ERR_INVALID_ARGUMENT,
            "video {n} x {w}x{h} stride {stride}"
        );
    }
    if s == VT_OK {
        video_queries(img, seed.first().copied().unwrap_or(0), want_err);
    }
    log.push(format!("video {n} x {w}x{h} stride {stride} -> {s}"));
    Some((s, img))
}

/// The video accessors on a video image: timestamps (count, then into a buffer of the
/// count or one short), second_per_grid, and per-group M-RoPE positions.
fn video_queries(img: *const vt_image, slack: u8, want_err: bool) {
    let mut err: *mut vt_error = std::ptr::null_mut();
    unsafe {
        assert_eq!(vt_image_is_video(img), 1, "a video that is not a video");
        let (mut frames, mut rows, mut cols) = (0u32, 0u32, 0u32);
        let s = vt_image_token_grid(img, &mut frames, &mut rows, &mut cols, std::ptr::null_mut());
        assert_eq!(s, VT_OK);
        let mut count = 0usize;
        let s = vt_image_video_timestamps(
            img,
            std::ptr::null_mut(),
            0,
            &mut count,
            err_slot(want_err, &mut err),
        );
        check_status("vt_image_video_timestamps", s, err);
        if s == VT_OK || count > 0 {
            assert_eq!(count, frames as usize, "one timestamp per temporal group");
            let short = slack & 1 != 0 && count > 0;
            let len = if short { count - 1 } else { count };
            let mut ts = vec![0f64; count.max(1)];
            let s = vt_image_video_timestamps(
                img,
                ts.as_mut_ptr(),
                len,
                &mut count,
                err_slot(want_err, &mut err),
            );
            check_status("vt_image_video_timestamps", s, err);
            if short {
                assert_eq!(s, VT_ERR_INVALID_ARGUMENT, "timestamps into a short buffer");
            } else {
                assert_eq!(s, VT_OK);
                assert!(ts[..len].iter().all(|t| *t >= 0.0), "{ts:?}");
            }
        }
        let mut seconds = 0f64;
        let s = vt_image_video_second_per_grid(img, &mut seconds, err_slot(want_err, &mut err));
        check_status("vt_image_video_second_per_grid", s, err);
        let per_group = rows as usize * cols as usize;
        if per_group <= 1 << 16 {
            let frame = u32::from(slack >> 1) % (frames + 1); // one past the end too
            let mut buf = vec![0i64; 3 * per_group.max(1)];
            let mut next = 0i64;
            let s = vt_image_frame_mrope_positions(
                img,
                frame,
                0,
                buf.as_mut_ptr(),
                buf.len(),
                &mut next,
                err_slot(want_err, &mut err),
            );
            check_status("vt_image_frame_mrope_positions", s, err);
            if frame >= frames {
                assert_ne!(s, VT_OK, "M-RoPE positions of group {frame} of {frames}");
            }
            // With more than one group, exactly one of the two layouts gives positions:
            // all groups together (Qwen2-VL / Qwen2.5-VL) or group by group.
            let n = frames as usize * per_group;
            if frames > 1 && n <= 1 << 16 {
                let mut all = vec![0i64; 3 * n];
                let together = vt_image_mrope_positions(
                    img,
                    0,
                    all.as_mut_ptr(),
                    all.len(),
                    std::ptr::null_mut(),
                    std::ptr::null_mut(),
                );
                let first = vt_image_frame_mrope_positions(
                    img,
                    0,
                    0,
                    buf.as_mut_ptr(),
                    buf.len(),
                    std::ptr::null_mut(),
                    std::ptr::null_mut(),
                );
                assert!(
                    (together == VT_OK) != (first == VT_OK),
                    "video of {frames} groups: vt_image_mrope_positions {together}, \
                     vt_image_frame_mrope_positions {first}"
                );
            }
        }
    }
}

fn keep_image(st: &mut CState, s: i32, img: *mut vt_image) {
    if s == VT_OK {
        assert!(!img.is_null(), "VT_OK without an image");
        if st.images.len() >= MAX_IMAGES {
            let old = st.images.remove(0);
            unsafe { vt_image_free(old.ptr) };
        }
        st.images.push(CImage {
            ptr: img,
            owner: st.current_owner(),
        });
    } else {
        assert!(img.is_null(), "preprocess wrote its output on failure");
    }
}

fn image_queries(img: *const vt_image, start: i64, slack: u8, want_err: bool) {
    let mut err: *mut vt_error = std::ptr::null_mut();
    unsafe {
        let n = vt_image_n_tokens(img);
        // vt_load_params has no max_image_tokens field: the default cap applies.
        assert!(
            n <= DEFAULT_MAX_IMAGE_TOKENS,
            "image of {n} tokens, over the default cap"
        );
        let mut data: *const f32 = std::ptr::null();
        let mut len = 0usize;
        let s = vt_image_pixels(img, &mut data, &mut len, err_slot(want_err, &mut err));
        check_status("vt_image_pixels", s, err);
        assert_eq!(s, VT_OK);
        assert!(!data.is_null() && len > 0);
        // Touch both ends (AddressSanitizer checks the bounds).
        let _ = std::ptr::read_volatile(data);
        let _ = std::ptr::read_volatile(data.add(len - 1));
        let mut shape = [0usize; 4];
        let mut ndim = 0usize;
        let s = vt_image_shape(
            img,
            shape.as_mut_ptr(),
            &mut ndim,
            err_slot(want_err, &mut err),
        );
        check_status("vt_image_shape", s, err);
        assert_eq!(s, VT_OK);
        assert!((1..=4).contains(&ndim));
        assert_eq!(
            shape[..ndim].iter().product::<usize>(),
            len,
            "shape vs pixels"
        );
        let (mut f, mut rr, mut c) = (0u32, 0u32, 0u32);
        let s = vt_image_token_grid(img, &mut f, &mut rr, &mut c, err_slot(want_err, &mut err));
        check_status("vt_image_token_grid", s, err);
        assert_eq!(s, VT_OK);
        assert_eq!(
            f as usize * rr as usize * c as usize,
            n,
            "token grid vs n_tokens"
        );
        let (mut pf, mut pr, mut pc) = (0u32, 0u32, 0u32);
        let s = vt_image_patch_grid(img, &mut pf, &mut pr, &mut pc, err_slot(want_err, &mut err));
        check_status("vt_image_patch_grid", s, err);
        assert_eq!(s, VT_OK);
        assert_eq!(pf, f);
        assert!(
            pr % rr.max(1) == 0 && pc % c.max(1) == 0,
            "patch grid vs token grid"
        );
        if n <= 1 << 16 {
            let want = 3 * n;
            let len =
                (want + slack as usize % 8).saturating_sub(if slack & 8 != 0 { 1 } else { 0 });
            let mut buf = vec![0i64; len.max(1)];
            let mut next = 0i64;
            let s = vtower_mrope(
                img,
                start,
                &mut buf,
                len,
                &mut next,
                err_slot(want_err, &mut err),
            );
            check_status("vt_image_mrope_positions", s, err);
            if len < want {
                assert_eq!(s, VT_ERR_INVALID_ARGUMENT, "mrope into a short buffer");
            } else if vt_image_is_video(img) == 1 {
                // A video laid out frame by frame is refused (see video_queries).
            } else if start.checked_add(1 << 33).is_some() && start >= 0 {
                assert_eq!(s, VT_OK, "mrope positions near 0");
            }
        }
    }
}

unsafe fn vtower_mrope(
    img: *const vt_image,
    start: i64,
    buf: &mut [i64],
    len: usize,
    next: &mut i64,
    errp: *mut *mut vt_error,
) -> i32 {
    assert!(len <= buf.len());
    vt_image_mrope_positions(img, start, buf.as_mut_ptr(), len, next, errp)
}

fn embeddings_queries(
    e: *const vt_embeddings,
    index: usize,
    dtype: u32,
    slack: i64,
    want_err: bool,
) {
    let mut err: *mut vt_error = std::ptr::null_mut();
    unsafe {
        let count = vt_embeddings_count(e);
        let dim = vt_embeddings_dim(e);
        let n = vt_embeddings_n_tokens(e, index);
        let data = vt_embeddings_data(e, index);
        if index >= count {
            assert_eq!(n, 0);
            assert!(data.is_null());
        } else if n > 0 {
            assert!(!data.is_null());
            let _ = std::ptr::read_volatile(data);
            let _ = std::ptr::read_volatile(data.add(n * dim - 1));
        }
        let elem = match dtype {
            1 => 4,
            2 | 3 => 2,
            _ => 4,
        };
        let need = n * dim * elem;
        let bytes = (need as i64 + slack).max(0) as usize;
        let mut buf = vec![0u8; bytes.max(1)];
        let s = vt_embeddings_copy(
            e,
            index,
            dtype,
            buf.as_mut_ptr() as *mut c_void,
            bytes,
            err_slot(want_err, &mut err),
        );
        check_status("vt_embeddings_copy", s, err);
        let valid = index < count && (1..=3).contains(&dtype) && bytes >= need;
        assert_eq!(s == VT_OK, valid, "vt_embeddings_copy status {s} (index {index}/{count}, dtype {dtype}, {bytes}/{need} bytes)");
        if s == VT_OK && dtype == 1 && n > 0 {
            let got = std::slice::from_raw_parts(buf.as_ptr() as *const f32, n * dim);
            let orig = std::slice::from_raw_parts(data, n * dim);
            assert!(
                got == orig,
                "vt_embeddings_copy f32 differs from vt_embeddings_data"
            );
        }
    }
}

fn model_queries(m: *const vt_model, role: u32, want_err: bool) {
    let mut err: *mut vt_error = std::ptr::null_mut();
    unsafe {
        let _ = cstr_ok(vt_model_family(m), "vt_model_family");
        let _ = cstr_ok(vt_model_type(m), "vt_model_type");
        assert!(vt_model_output_dim(m) > 0);
        assert!(vt_model_vision_dim(m) > 0);
        assert!(vt_model_patch_size(m) > 0);
        let _ = vt_model_tokens_per_image(m);
        assert!(vt_model_n_threads(m) > 0);
        assert!(vt_model_merge_size(m) > 0);
        let (mut w, mut h) = (0u32, 0u32);
        let s = vt_model_image_size(m, &mut w, &mut h, err_slot(want_err, &mut err));
        check_status("vt_model_image_size", s, err);
        assert_eq!(s, VT_OK);
        let id = vt_model_token_id(m, role);
        assert!(id >= -1);
        if role > 4 {
            assert_eq!(id, -1, "unknown role {role}");
        }
    }
}

fn null_calls(m: *const vt_model, which: u8) {
    let null_m: *const vt_model = std::ptr::null();
    let mut err: *mut vt_error = std::ptr::null_mut();
    let mut img: *mut vt_image = std::ptr::null_mut();
    let byte = [0u8; 4];
    unsafe {
        let s = match which % 10 {
            0 => vt_preprocess(null_m, byte.as_ptr(), 4, &mut img, &mut err),
            1 => vt_preprocess(m, std::ptr::null(), 4, &mut img, &mut err),
            2 => vt_preprocess(m, byte.as_ptr(), 4, std::ptr::null_mut(), &mut err),
            3 => vt_preprocess_rgb8(m, std::ptr::null(), 1, 1, 3, &mut img, &mut err),
            4 => vt_forward(null_m, std::ptr::null(), 0, std::ptr::null_mut(), &mut err),
            5 => vt_forward(m, std::ptr::null(), 2, &mut std::ptr::null_mut(), &mut err),
            6 => vt_load(
                std::ptr::null(),
                std::ptr::null(),
                &mut std::ptr::null_mut(),
                &mut err,
            ),
            7 => vt_model_image_size(m, std::ptr::null_mut(), std::ptr::null_mut(), &mut err),
            8 => vt_image_pixels(
                std::ptr::null(),
                std::ptr::null_mut(),
                std::ptr::null_mut(),
                &mut err,
            ),
            _ => {
                assert!(vt_model_family(null_m).is_null());
                assert_eq!(vt_model_output_dim(null_m), 0);
                assert_eq!(vt_image_n_tokens(std::ptr::null()), 0);
                assert_eq!(vt_embeddings_count(std::ptr::null()), 0);
                assert!(vt_embeddings_data(std::ptr::null(), 0).is_null());
                assert_eq!(vt_model_token_id(null_m, 0), -1);
                assert_eq!(vt_error_code(std::ptr::null()), VT_ERR_INVALID_ARGUMENT);
                vt_image_free(std::ptr::null_mut());
                vt_embeddings_free(std::ptr::null_mut());
                vt_error_free(std::ptr::null_mut());
                vt_free(std::ptr::null_mut());
                return;
            }
        };
        assert_eq!(
            s,
            VT_ERR_INVALID_ARGUMENT,
            "NULL call {} gave {s}",
            which % 10
        );
        check_status("null call", s, err);
        assert!(img.is_null());
    }
}
