//! The Qwen video processors (torchvision backend): `Qwen2VLVideoProcessor` (Qwen2-VL and
//! Qwen2.5-VL) and `Qwen3VLVideoProcessor` (Qwen3-VL and Qwen3.5), from decoded frames:
//!
//! 1. frame sampling (`sample_frames`, when `do_sample_frames`): Qwen2 keeps `num_frames`
//!    rounded to `temporal_patch_size`, or `total / source_fps * fps` clamped to
//!    `[min_frames, max_frames]` and floored to `temporal_patch_size`, at
//!    `torch.arange(0, total, total / n).int()`; Qwen3 keeps `int(total / source_fps * fps)`
//!    (source fps 24 when unknown) clamped likewise, at `np.linspace(0, total - 1, n).round()`;
//! 2. `smart_resize` to multiples of `patch_size * merge_size` (Qwen3's counts the frames in
//!    the pixel budget), then torchvision's antialiased resize of the uint8 frames
//!    ([`crate::preprocess::tv_resize`]);
//! 3. the fused rescale + normalize of the torchvision backend, `(x - mean * 255) / (std *
//!    255)` in f32 (not the PIL backend's `x / 255` first);
//! 4. the patch rows of the image processor, consecutive frames grouped by
//!    `temporal_patch_size` (a short last group repeats the last frame).
//!
//! It also gives what the prompt needs: Qwen2.5-VL's `second_per_grid_ts` (temporal patch
//! size / sampled fps) and Qwen3-VL's per-group timestamps (`<t seconds>`).

use crate::config::{ConfigObject, ModelFiles};
use crate::error::{Error, Result};
use crate::preprocess::limits::try_with_capacity;
use crate::preprocess::normalize::tv_normalize;
use crate::preprocess::qwen2_vl::{PatchGeometry, QwenImageProcessor};
use crate::preprocess::resample::Filter;
use crate::preprocess::settings::{read_filter, OPENAI_CLIP_MEAN, OPENAI_CLIP_STD};
use crate::preprocess::smart_resize;
use crate::preprocess::tv_resize::{resize_tv, TvInterpolation};
use crate::preprocess::{Limits, Pixels, RgbImage};

/// Largest accepted pixel counts, frame counts and token caps in the config.
const MAX_PIXELS_LIMIT: usize = 1 << 30;
const MAX_FRAMES_LIMIT: usize = 1 << 20;

/// Which processor class.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VideoFlavor {
    /// `Qwen2VLVideoProcessor` (Qwen2-VL, Qwen2.5-VL).
    Qwen2,
    /// `Qwen3VLVideoProcessor` (Qwen3-VL, Qwen3.5).
    Qwen3,
}

/// A video's decoded frames as the video processors read them: `n_frames` frames of
/// `width` x `height`, the source frame rate when known, and `frame(i)`, which gives frame
/// `i` (only the kept ones are asked for).
#[derive(Clone, Copy)]
pub struct VideoFrames<'a> {
    pub n_frames: usize,
    pub width: u32,
    pub height: u32,
    pub source_fps: Option<f64>,
    pub frame: &'a dyn Fn(usize) -> Result<RgbImage>,
}

/// Per-call sampling overrides (the processor call's `do_sample_frames`, `fps`,
/// `num_frames`); `None` keeps the config's value.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct SampleOptions {
    pub do_sample_frames: Option<bool>,
    pub fps: Option<f64>,
    pub num_frames: Option<usize>,
}

/// How a video's temporal M-RoPE ids are assigned (`get_rope_index` for videos).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum VideoTime {
    /// Qwen2-VL: temporal group `f` gets `start + f`.
    Index,
    /// Qwen2.5-VL: `start + trunc(f32(f) * interval)`, with `interval = f32(tokens_per_second)
    /// * f32(second_per_grid_ts)`.
    Scaled(f32),
    /// Qwen3-VL / Qwen3.5: each temporal group is laid out as its own image between its
    /// timestamp text and `<|vision_start|>` / `<|vision_end|>`.
    PerFrame,
}

/// What sampling and grouping left for the prompt.
#[derive(Debug, Clone, PartialEq)]
pub struct VideoMeta {
    /// How the temporal M-RoPE ids go (set by the model).
    pub time: VideoTime,
    /// Source frames kept, in order (`metadata.frames_indices`).
    pub frame_indices: Vec<usize>,
    /// `metadata.sampled_fps`: kept / total * source fps (the source fps, or 24, when not
    /// known).
    pub sampled_fps: f64,
    /// `temporal_patch_size / sampled_fps` (Qwen2.5-VL's `second_per_grid_ts`).
    pub second_per_grid: f64,
    /// One timestamp in seconds per temporal group (Qwen3-VL's `_calculate_timestamps`,
    /// source fps 24 when not known).
    pub timestamps: Vec<f64>,
}

impl VideoMeta {
    /// The meta of a video whose kept frames are `indices` out of `total`, read at
    /// `source_fps` (24 when not known), in temporal groups of `group` frames (a short last
    /// group repeats the last frame): `stamp` makes a group's timestamp from its frames'
    /// times in seconds.
    pub fn sampled(
        time: VideoTime,
        indices: Vec<usize>,
        total: usize,
        source_fps: Option<f64>,
        group: usize,
        stamp: impl Fn(&[f64]) -> f64,
    ) -> VideoMeta {
        let sampled_fps = match source_fps {
            Some(fps) => indices.len() as f64 / total as f64 * fps,
            None => 24.0,
        };
        let fps = source_fps.unwrap_or(24.0);
        let mut times: Vec<f64> = indices.iter().map(|&i| i as f64 / fps).collect();
        while times.len() % group != 0 {
            times.push(times[times.len() - 1]);
        }
        VideoMeta {
            time,
            frame_indices: indices,
            sampled_fps,
            second_per_grid: group as f64 / sampled_fps,
            timestamps: times.chunks(group).map(stamp).collect(),
        }
    }
}

/// The video processor, configured from the model folder's video processor config.
#[derive(Debug, Clone)]
pub struct QwenVideoProcessor {
    pub flavor: VideoFlavor,
    pub geometry: PatchGeometry,
    pub min_pixels: usize,
    pub max_pixels: usize,
    pub do_resize: bool,
    pub interp: TvInterpolation,
    pub rescale: Option<f64>,
    pub mean_std: Option<([f64; 3], [f64; 3])>,
    pub do_sample_frames: bool,
    pub fps: Option<f64>,
    pub num_frames: Option<usize>,
    pub min_frames: usize,
    pub max_frames: usize,
    pub cap_pixels_per_frame: bool,
    pub max_video_tokens: usize,
}

/// The video processor settings as transformers finds them: `processor_config.json`'s
/// `video_processor`, else `video_preprocessor_config.json`, else `preprocessor_config.json`
/// (the image processor's file, which the video processor then reads).
pub fn video_config(files: &ModelFiles) -> Result<ConfigObject> {
    if let Some(v) = files.processor.object("video_processor")? {
        return Ok(v);
    }
    let path = files.dir.join("video_preprocessor_config.json");
    if path.is_file() {
        return ConfigObject::read(&path);
    }
    Ok(files.preprocessor.clone())
}

fn three(pre: &ConfigObject, key: &str, default: [f64; 3]) -> Result<[f64; 3]> {
    match pre.f64_list(key)?.as_deref() {
        None => Ok(default),
        Some([v]) => Ok([*v; 3]),
        Some([a, b, c]) => Ok([*a, *b, *c]),
        Some(other) => Err(Error::bad_config(format!(
            "{}: `{key}` must have 1 or 3 values, found {}",
            pre.location(),
            other.len()
        ))),
    }
}

fn positive_f64(pre: &ConfigObject, key: &str) -> Result<Option<f64>> {
    match pre.f64(key)? {
        Some(v) if !(v.is_finite() && v > 0.0) => Err(Error::bad_config(format!(
            "{}: `{key}` must be a positive number, found {v}",
            pre.location()
        ))),
        other => Ok(other),
    }
}

/// The video processor's patch geometry (class defaults: patch 16 for Qwen3, 14 for Qwen2;
/// merge 2; temporal 2), which must be the tower's (`model`).
fn read_geometry(pre: &ConfigObject, q3: bool, model: PatchGeometry) -> Result<PatchGeometry> {
    let geometry = PatchGeometry {
        patch_size: pre.positive_or("patch_size", if q3 { 16 } else { 14 }, 1024)?,
        merge_size: pre.positive_or("merge_size", 2, 1024)?,
        temporal_patch_size: pre.positive_or("temporal_patch_size", 2, 1024)?,
    };
    if geometry != model {
        return Err(Error::bad_config(format!(
            "{}: video patch_size / merge_size / temporal_patch_size {:?} do not match the \
             vision tower's {model:?} (config.json)",
            pre.location(),
            geometry
        )));
    }
    Ok(geometry)
}

/// The per-frame pixel bounds `(min, max)`: `size.shortest_edge` / `longest_edge` (class
/// defaults 128 and 768 merged patches), and for Qwen2 the top-level `min_pixels` /
/// `max_pixels`, which override `size` (`Qwen2VLVideoProcessor.__init__`).
fn read_pixel_bounds(pre: &ConfigObject, q3: bool) -> Result<(usize, usize)> {
    let f = if q3 { 32 * 32 } else { 28 * 28 };
    let (mut lo, mut hi) = (128 * f, 768 * f);
    if let Some(size) = pre.object("size")? {
        match (
            size.usize_max("shortest_edge", MAX_PIXELS_LIMIT)?,
            size.usize_max("longest_edge", MAX_PIXELS_LIMIT)?,
        ) {
            (Some(a), Some(b)) => (lo, hi) = (a, b),
            _ if !q3 && pre.contains("min_pixels") && pre.contains("max_pixels") => {}
            _ => {
                return Err(Error::bad_config(format!(
                    "{}: `size` must have `shortest_edge` and `longest_edge` (min and max pixels)",
                    pre.location()
                )))
            }
        }
    }
    if !q3 {
        if let Some(v) = pre.usize_max("min_pixels", MAX_PIXELS_LIMIT)? {
            lo = v;
        }
        if let Some(v) = pre.usize_max("max_pixels", MAX_PIXELS_LIMIT)? {
            hi = v;
        }
    }
    if lo == 0 || hi == 0 || lo > hi {
        return Err(Error::bad_config(format!(
            "{}: video min / max pixels {lo} / {hi} must be positive and ordered",
            pre.location()
        )));
    }
    Ok((lo, hi))
}

/// `(rescale factor, (mean, std))`, each `None` when its `do_*` switch is off.
pub type RescaleNormalize = (Option<f64>, Option<([f64; 3], [f64; 3])>);

/// Reads `do_rescale` / `rescale_factor` / `do_normalize` / `image_mean` / `image_std` of a
/// torchvision-backend video processor, with the class's default mean and std.
pub fn read_rescale_normalize(
    pre: &ConfigObject,
    (dmean, dstd): ([f64; 3], [f64; 3]),
) -> Result<RescaleNormalize> {
    let rescale = if pre.bool_or("do_rescale", true)? {
        Some(pre.f64_or("rescale_factor", 1.0 / 255.0)?)
    } else {
        None
    };
    let mean_std = if pre.bool_or("do_normalize", true)? {
        let std = three(pre, "image_std", dstd)?;
        if std.iter().any(|s| *s == 0.0 || !s.is_finite()) {
            return Err(Error::bad_config(format!(
                "{}: `image_std` {std:?} must be finite and non-zero",
                pre.location()
            )));
        }
        Some((three(pre, "image_mean", dmean)?, std))
    } else {
        None
    };
    Ok((rescale, mean_std))
}

impl QwenVideoProcessor {
    /// Reads the video processor config (see [`video_config`]) with the class defaults of
    /// transformers 5.23; `model` is the tower's geometry, which must match.
    pub fn from_config(
        pre: &ConfigObject,
        flavor: VideoFlavor,
        model: PatchGeometry,
    ) -> Result<QwenVideoProcessor> {
        let q3 = flavor == VideoFlavor::Qwen3;
        let geometry = read_geometry(pre, q3, model)?;
        let (min_pixels, max_pixels) = read_pixel_bounds(pre, q3)?;
        let filter = read_filter(pre, Filter::Bicubic)?;
        let interp = TvInterpolation::from_filter(filter).ok_or_else(|| {
            Error::bad_config(format!(
                "{}: `resample` {filter:?}: vtower resizes video frames with bicubic or bilinear \
                 only",
                pre.location()
            ))
        })?;
        // Class defaults: mean and std 0.5 (Qwen3) or the OpenAI CLIP values (Qwen2).
        let defaults = if q3 {
            ([0.5; 3], [0.5; 3])
        } else {
            (OPENAI_CLIP_MEAN, OPENAI_CLIP_STD)
        };
        let (rescale, mean_std) = read_rescale_normalize(pre, defaults)?;
        let fps = match pre.value("fps") {
            None | Some(serde_json::Value::Null) => q3.then_some(2.0),
            _ => positive_f64(pre, "fps")?,
        };
        let num_frames = match pre.value("num_frames") {
            None | Some(serde_json::Value::Null) => None,
            _ => pre.usize_max("num_frames", MAX_FRAMES_LIMIT)?,
        };
        Ok(QwenVideoProcessor {
            flavor,
            geometry,
            min_pixels,
            max_pixels,
            do_resize: pre.bool_or("do_resize", true)?,
            interp,
            rescale,
            mean_std,
            do_sample_frames: pre.bool_or("do_sample_frames", q3)?,
            fps,
            num_frames,
            min_frames: pre.usize_or("min_frames", 4, MAX_FRAMES_LIMIT)?,
            max_frames: pre.usize_or("max_frames", 768, MAX_FRAMES_LIMIT)?,
            cap_pixels_per_frame: pre.bool_or("cap_pixels_per_frame", false)?,
            max_video_tokens: pre.positive_or(
                "max_video_tokens",
                if q3 { 768 } else { 128000 },
                1 << 30,
            )?,
        })
    }

    /// The source frames to keep out of `total` (`sample_frames`), or all of them.
    pub fn sample(
        &self,
        total: usize,
        source_fps: Option<f64>,
        opts: &SampleOptions,
    ) -> Result<Vec<usize>> {
        if total == 0 {
            return Err(Error::invalid_argument("a video needs at least one frame"));
        }
        if !opts.do_sample_frames.unwrap_or(self.do_sample_frames) {
            return Ok((0..total).collect());
        }
        // preprocess() fills the call's unset `fps` / `num_frames` from the processor.
        let fps = opts.fps.or(self.fps);
        let num_frames = opts.num_frames.or(self.num_frames);
        if fps.is_some() && num_frames.is_some() {
            return Err(Error::invalid_argument(
                "`num_frames` and `fps` are mutually exclusive (one comes from the video \
                 processor config): set only one",
            ));
        }
        match self.flavor {
            VideoFlavor::Qwen2 => self.sample_qwen2(total, source_fps, num_frames, fps),
            VideoFlavor::Qwen3 => Ok(self.sample_qwen3(total, source_fps, num_frames, fps)),
        }
    }

    fn sample_qwen2(
        &self,
        total: usize,
        source_fps: Option<f64>,
        num_frames: Option<usize>,
        fps: Option<f64>,
    ) -> Result<Vec<usize>> {
        let t = self.geometry.temporal_patch_size;
        let n = if let Some(n) = num_frames {
            Some((n as f64 / t as f64).round_ties_even() as usize * t)
        } else if let Some(fps) = fps {
            let src = source_fps.ok_or_else(|| {
                Error::invalid_argument(
                    "sampling at `fps` frames per second needs the video's frame rate",
                )
            })?;
            let max_frames = (self.max_frames.min(total) / t * t) as f64;
            let n = total as f64 / src * fps;
            let n = n
                .max(self.min_frames as f64)
                .min(max_frames)
                .min(total as f64);
            Some((n / t as f64).floor() as usize * t)
        } else {
            None
        };
        let Some(n) = n else {
            return Ok((0..total).collect());
        };
        if n > total {
            return Err(Error::invalid_argument(format!(
                "the video can't be sampled: num_frames={n} exceeds its {total} frames"
            )));
        }
        if n == 0 {
            return Err(Error::invalid_argument(format!(
                "the video of {total} frames samples to 0 frames (temporal_patch_size {t})"
            )));
        }
        // torch.arange(0, total, total / n).int(): f64 positions stored as f32, truncated.
        let step = total as f64 / n as f64;
        let len = (total as f64 / step).ceil() as usize;
        Ok((0..len)
            .map(|i| ((i as f64 * step) as f32) as usize)
            .collect())
    }

    fn sample_qwen3(
        &self,
        total: usize,
        source_fps: Option<f64>,
        num_frames: Option<usize>,
        fps: Option<f64>,
    ) -> Vec<usize> {
        let n = match (num_frames, fps) {
            (Some(n), _) => n,
            (None, Some(fps)) => {
                let src = source_fps.unwrap_or(24.0);
                let n = (total as f64 / src * fps) as usize;
                n.max(self.min_frames).min(self.max_frames).min(total)
            }
            (None, None) => total.max(self.min_frames).min(self.max_frames),
        };
        linspace_round(total - 1, n)
    }

    /// The `(height, width)` the frames are resized to.
    pub fn target_size(
        &self,
        frames: usize,
        width: usize,
        height: usize,
    ) -> Result<(usize, usize)> {
        let f = self.geometry.factor();
        if !self.do_resize {
            if height % f != 0 || width % f != 0 {
                return Err(Error::invalid_argument(format!(
                    "frames are {width}x{height}, the video processor sets do_resize=false and \
                     the tower needs sides that are multiples of {f}"
                )));
            }
            return Ok((height, width));
        }
        let t = self.geometry.temporal_patch_size;
        match self.flavor {
            VideoFlavor::Qwen2 => {
                let mut max_pixels = self.max_pixels;
                if self.cap_pixels_per_frame {
                    let total = (self.max_video_tokens as f64 * (f * f) as f64 * 0.9) as usize;
                    max_pixels = max_pixels
                        .min(total * t / frames)
                        .max((self.min_pixels as f64 * 1.05) as usize);
                }
                smart_resize::qwen(height, width, f, self.min_pixels, max_pixels)
            }
            VideoFlavor::Qwen3 => {
                let mut max_pixels = self.max_pixels;
                if self.cap_pixels_per_frame {
                    let cap = self.max_video_tokens * f * f;
                    let per = cap
                        .min(self.max_pixels / frames)
                        .max((self.min_pixels as f64 * 1.05) as usize);
                    max_pixels = per * frames;
                }
                smart_resize::frames(frames, height, width, t, f, self.min_pixels, max_pixels)
            }
        }
    }

    /// The prompt data of a video whose kept frames are `indices` out of `total`.
    pub fn meta(&self, indices: Vec<usize>, total: usize, source_fps: Option<f64>) -> VideoMeta {
        let t = self.geometry.temporal_patch_size;
        VideoMeta::sampled(VideoTime::Index, indices, total, source_fps, t, |g| {
            (g[0] + g[t - 1]) / 2.0
        })
    }

    /// Samples, resizes, normalizes and patchifies `video`. The token count is checked
    /// against `limits` before any frame is read.
    pub fn process(
        &self,
        video: &VideoFrames,
        opts: &SampleOptions,
        limits: &Limits,
    ) -> Result<(Pixels, VideoMeta)> {
        let &VideoFrames {
            n_frames,
            width,
            height,
            source_fps,
            frame,
        } = video;
        check_source_fps(source_fps)?;
        let indices = self.sample(n_frames, source_fps, opts)?;
        let n = indices.len();
        let t = self.geometry.temporal_patch_size;
        if self.flavor == VideoFlavor::Qwen3 && n < t {
            return Err(Error::invalid_argument(format!(
                "the video keeps {n} frame(s), fewer than temporal_patch_size {t}"
            )));
        }
        let (h, w) = self.target_size(n, width as usize, height as usize)?;
        let f = self.geometry.factor();
        let groups = n.div_ceil(t);
        let tokens = groups as u64 * (h / f) as u64 * (w / f) as u64;
        limits.check_tokens(tokens, &|| {
            format!("a video of {n} kept frames of {width}x{height} resized to {w}x{h}")
        })?;
        let mut planes = try_with_capacity(n, "the video frames")?;
        for &i in &indices {
            let img = sized_frame(frame, i, (width, height), (w, h), self.interp, limits)?;
            planes.push(self.normalize(&img)?);
        }
        let refs: Vec<&[f32]> = planes.iter().map(|p| p.as_slice()).collect();
        let pixels = QwenImageProcessor::patchify_frames(self.geometry, &refs, h, w)?;
        Ok((pixels, self.meta(indices, n_frames, source_fps)))
    }

    fn normalize(&self, image: &RgbImage) -> Result<Vec<f32>> {
        tv_normalize(image, self.rescale, self.mean_std)
    }
}

/// Refuses a source frame rate that is not a positive number.
pub fn check_source_fps(source_fps: Option<f64>) -> Result<()> {
    match source_fps {
        Some(f) if !(f.is_finite() && f > 0.0) => Err(Error::invalid_argument(format!(
            "the video's frame rate {f} must be a positive number"
        ))),
        _ => Ok(()),
    }
}

/// Source frame `i`, checked to be `size` (every frame of a video has one size), resized to
/// `target` (width, height) with torchvision's antialiased resize when that differs.
pub fn sized_frame(
    frame: &dyn Fn(usize) -> Result<RgbImage>,
    i: usize,
    size: (u32, u32),
    target: (usize, usize),
    interp: TvInterpolation,
    limits: &Limits,
) -> Result<RgbImage> {
    let src = frame(i)?;
    if (src.width, src.height) != size {
        return Err(Error::invalid_argument(
            "all frames of a video must have one size",
        ));
    }
    let (w, h) = target;
    if (size.0 as usize, size.1 as usize) == (w, h) {
        return Ok(src);
    }
    resize_tv(&src, w as u32, h as u32, interp, limits)
}

/// Builds the video processor of a Qwen model folder, keeping a config error for the first
/// video instead of failing the load (images do not need it). `family` is the model
/// family's own class, used when the config names none (see [`config_flavor`]).
pub fn load_video_processor(
    files: &ModelFiles,
    family: VideoFlavor,
    geometry: PatchGeometry,
) -> std::result::Result<QwenVideoProcessor, String> {
    video_config(files)
        .and_then(|cfg| {
            let flavor = config_flavor(&cfg)?.unwrap_or(family);
            QwenVideoProcessor::from_config(&cfg, flavor, geometry)
        })
        .map_err(|e| e.message().to_string())
}

/// The processor class the config names, as `AutoVideoProcessor` picks it:
/// `video_processor_type`, else the `image_processor_type` with `ImageProcessor` replaced by
/// `VideoProcessor` (a Qwen3-VL folder with only an image processor config saying
/// `Qwen2VLImageProcessor` gets `Qwen2VLVideoProcessor`); `None` when neither names a Qwen
/// video processor (then the model type's class).
pub fn config_flavor(cfg: &ConfigObject) -> Result<Option<VideoFlavor>> {
    let name = match cfg.string("video_processor_type")? {
        Some(v) => Some(v),
        None => cfg
            .string("image_processor_type")?
            .map(|s| s.replace("ImageProcessor", "VideoProcessor")),
    };
    Ok(match name.as_deref() {
        Some("Qwen2VLVideoProcessor") => Some(VideoFlavor::Qwen2),
        Some("Qwen3VLVideoProcessor") => Some(VideoFlavor::Qwen3),
        _ => None,
    })
}

/// A family's video processor as loaded with the model, or a bad-config error saying why
/// its config is unusable (images still work).
pub fn loaded<P>(processor: &std::result::Result<P, String>) -> Result<&P> {
    processor.as_ref().map_err(|e| Error::bad_config(e.clone()))
}

/// `np.linspace(0, last, n).round().astype(int)`.
fn linspace_round(last: usize, n: usize) -> Vec<usize> {
    if n == 0 {
        return Vec::new();
    }
    if n == 1 {
        return vec![0];
    }
    let step = last as f64 / (n - 1) as f64;
    (0..n)
        .map(|i| {
            if i == n - 1 {
                last
            } else if step == 0.0 {
                0
            } else {
                (i as f64 * step).round_ties_even() as usize
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn proc(flavor: VideoFlavor, json: &str) -> QwenVideoProcessor {
        let geo = PatchGeometry {
            patch_size: 8,
            merge_size: 2,
            temporal_patch_size: 2,
        };
        let cfg = ConfigObject::parse("video_preprocessor_config.json", json).unwrap();
        QwenVideoProcessor::from_config(&cfg, flavor, geo).unwrap()
    }

    #[test]
    fn sampling_matches_python() {
        // Qwen2VLVideoProcessor.sample_frames; values from transformers 5.23.
        let p = proc(
            VideoFlavor::Qwen2,
            r#"{"patch_size": 8, "do_sample_frames": true, "fps": 2.0}"#,
        );
        let none = SampleOptions::default();
        // 9 frames at 7.5 fps, 2 fps -> max(2.4, 4) = 4 frames: arange(0, 9, 2.25).int()
        assert_eq!(p.sample(9, Some(7.5), &none).unwrap(), vec![0, 2, 4, 6]);
        // num_frames 5 -> round(2.5) * 2 = 4; exclusive with the config's fps.
        let nf = SampleOptions {
            num_frames: Some(5),
            do_sample_frames: Some(true),
            ..Default::default()
        };
        assert!(p.sample(9, Some(7.5), &nf).is_err());
        let p2 = proc(VideoFlavor::Qwen2, r#"{"patch_size": 8}"#);
        assert_eq!(p2.sample(9, Some(7.5), &nf).unwrap(), vec![0, 2, 4, 6]);
        // Off by default for Qwen2: every frame.
        assert_eq!(p2.sample(3, None, &none).unwrap(), vec![0, 1, 2]);
        assert!(p.sample(9, None, &none).is_err());
        let q = proc(VideoFlavor::Qwen3, r#"{"patch_size": 8}"#);
        // 7 frames at 2.5 fps, fps 2 -> int(5.6) = 5 frames: linspace(0, 6, 5).round()
        assert_eq!(q.sample(7, Some(2.5), &none).unwrap(), vec![0, 2, 3, 4, 6]);
        // Unknown fps: 24 -> int(0.58) = 0 -> min_frames 4.
        assert_eq!(q.sample(7, None, &none).unwrap(), vec![0, 2, 4, 6]);
        let m = q.meta(vec![0, 2, 3, 4, 6], 7, Some(2.5));
        assert_eq!(m.timestamps, vec![0.4, 1.4, 2.4]);
        // Python's "%.1f" rounds the exact binary value, half to even: Rust's too.
        assert_eq!(
            format!("{:.1} {:.1} {:.1}", 0.25, 0.35, 2.25),
            "0.2 0.3 2.2"
        );
    }
}
