//! `Gemma4VideoProcessor` (`video_processing_gemma4.py`, torchvision backend), from decoded
//! frames:
//!
//! 1. frame sampling (`BaseVideoProcessor.sample_frames` → `default_sample_indices_fn`, when
//!    `do_sample_frames`, the class default): `num_frames` (class default 32) frames at
//!    `arange(n) * total // n`, or with `fps` instead `n = max(1, int(total / source_fps *
//!    fps))` (needs the source frame rate); more frames than the video has is an error, as in
//!    the reference;
//! 2. every kept frame resized as a Gemma 4 image (`get_aspect_ratio_preserving_size` with
//!    the video processor's own `max_soft_tokens`, class default 70) by torchvision's
//!    antialiased resize of the uint8 frame ([`crate::preprocess::tv_resize`]);
//! 3. the fused rescale + normalize of the torchvision backend (class defaults: 1/255, mean 0,
//!    std 1, so `x / 255` in f32);
//! 4. per frame, patch rows `(y, x, channel)` padded with zero rows to `max_soft_tokens *
//!    pooling_kernel_size²` (`pixel_values_videos`, `[frames, max_patches, 3 * patch²]`).
//!
//! Each frame then runs through the tower like an image and yields its own soft tokens; the
//! prompt writes, per frame, its timestamp `mm:ss` (frame index / source fps, 24 fps when not
//! known), a space, `boi`, the frame's soft tokens as `video_token_id`, `eoi`, the frames
//! joined by spaces (`Gemma4Processor.replace_video_token`).

use crate::config::ConfigObject;
use crate::error::{Error, Result};
use crate::preprocess::gemma4::{aspect_ratio_preserving_size, check_soft_tokens, patch_rows};
use crate::preprocess::limits::try_filled;
use crate::preprocess::normalize::tv_normalize;
use crate::preprocess::qwen_video::{
    check_source_fps, read_rescale_normalize, sized_frame, RescaleNormalize, SampleOptions,
    VideoFrames, VideoMeta, VideoTime,
};
use crate::preprocess::resample::Filter;
use crate::preprocess::settings::read_filter;
use crate::preprocess::tv_resize::TvInterpolation;
use crate::preprocess::{Limits, Pixels};

/// Largest accepted frame count in the config.
const MAX_FRAMES_LIMIT: usize = 1 << 20;

/// The video processor, configured from the model folder's video processor config.
#[derive(Debug, Clone)]
pub struct Gemma4VideoProcessor {
    pub patch_size: usize,
    pub pooling: usize,
    /// Soft tokens per frame at most (one of the supported budgets).
    pub max_soft_tokens: usize,
    pub do_resize: bool,
    pub interp: TvInterpolation,
    pub rescale_normalize: RescaleNormalize,
    pub sampling: FrameSampling,
}

impl Gemma4VideoProcessor {
    /// Reads the video processor config ([`crate::preprocess::qwen_video::video_config`]) with
    /// the class defaults of transformers 5.23; `patch` and `pooling` are the tower's.
    pub fn from_config(
        pre: &ConfigObject,
        patch: usize,
        pooling: usize,
    ) -> Result<Gemma4VideoProcessor> {
        let patch_size = pre.positive_or("patch_size", 16, 1024)?;
        let pooling_kernel_size = pre.positive_or("pooling_kernel_size", 3, 1024)?;
        if (patch_size, pooling_kernel_size) != (patch, pooling) {
            return Err(Error::bad_config(format!(
                "{}: video patch_size {patch_size} and pooling_kernel_size \
                 {pooling_kernel_size} do not match the vision tower's {patch} and {pooling}",
                pre.location()
            )));
        }
        let max_soft_tokens = pre.positive_or("max_soft_tokens", 70, usize::MAX >> 1)?;
        check_soft_tokens(max_soft_tokens, pre.location())
            .map_err(|e| Error::bad_config(e.message().to_string()))?;
        let filter = read_filter(pre, Filter::Bicubic)?;
        let interp = TvInterpolation::from_filter(filter).ok_or_else(|| {
            Error::bad_config(format!(
                "{}: `resample` {filter:?}: vtower resizes video frames with bicubic or \
                 bilinear only",
                pre.location()
            ))
        })?;
        Ok(Gemma4VideoProcessor {
            patch_size,
            pooling,
            max_soft_tokens,
            do_resize: pre.bool_or("do_resize", true)?,
            interp,
            rescale_normalize: read_rescale_normalize(pre, ([0.0; 3], [1.0; 3]))?,
            // The class default: 32 frames, which makes a per-call `fps` an error unless the
            // config sets `num_frames` to null.
            sampling: FrameSampling::read(pre, Some(32), None)?,
        })
    }

    /// The prompt data: per kept frame, its time in seconds (`metadata.timestamps`: frame
    /// index / source fps, 24 fps when not known).
    fn meta(&self, indices: Vec<usize>, total: usize, source_fps: Option<f64>) -> VideoMeta {
        VideoMeta::sampled(VideoTime::PerFrame, indices, total, source_fps, 1, |f| f[0])
    }

    /// Samples, resizes, rescales and patchifies `video`. The output is checked against
    /// `limits` before any frame is read.
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
        let indices = self.sampling.sample(n_frames, source_fps, opts)?;
        let n = indices.len();
        let (p, k) = (self.patch_size, self.pooling);
        let max_patches = self.max_soft_tokens * k * k;
        let (w0, h0) = (width as usize, height as usize);
        let (h, w) = if self.do_resize {
            aspect_ratio_preserving_size(h0, w0, p, max_patches, k)?
        } else {
            (h0, w0)
        };
        let (ph, pw) = (h / p, w / p);
        if ph < k || pw < k || ph * pw > max_patches {
            return Err(Error::invalid_argument(format!(
                "frames of {w}x{h} do not fit the video processor: with do_resize=false the \
                 sides must hold at least one {k}x{k} pooling window of {p}-pixel patches and \
                 at most {max_patches} patches"
            )));
        }
        let tokens = n as u64 * ((ph / k) * (pw / k)) as u64;
        limits.check_tokens(tokens, &|| {
            format!("a video of {n} kept frames of {width}x{height} resized to {w}x{h}")
        })?;
        let dim = 3 * p * p;
        let rows = (n as u64)
            .checked_mul((max_patches * dim) as u64)
            .and_then(|v| usize::try_from(v).ok())
            .ok_or_else(|| Error::invalid_argument("the video's patch rows overflow"))?;
        limits.check_image("the video's padded patch rows", rows as u64, 1)?;
        let mut data = try_filled(rows, 0f32, "the video's patch rows")?;
        for (f, &i) in indices.iter().enumerate() {
            let img = sized_frame(frame, i, (width, height), (w, h), self.interp, limits)?;
            let (rescale, mean_std) = &self.rescale_normalize;
            let chw = tv_normalize(&img, *rescale, *mean_std)?;
            let out = &mut data[f * max_patches * dim..(f + 1) * max_patches * dim];
            patch_rows(&chw, h, w, p, out);
        }
        let pixels = Pixels {
            data,
            shape: vec![n * max_patches, dim],
            grid: [n, ph / k, pw / k],
            extra: Vec::new(),
        };
        Ok((pixels, self.meta(indices, n_frames, source_fps)))
    }
}

/// The frame sampling settings of `BaseVideoProcessor` (`do_sample_frames`, `num_frames`,
/// `fps`), as a video processor config holds them. Gemma 4, Kimi K2.5.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FrameSampling {
    pub do_sample_frames: bool,
    pub num_frames: Option<usize>,
    pub fps: Option<f64>,
}

impl FrameSampling {
    /// Reads the settings from a video processor config; an absent `num_frames` / `fps` is
    /// the class default given, a saved `null` is None; `do_sample_frames` defaults to true.
    pub fn read(
        pre: &ConfigObject,
        num_frames: Option<usize>,
        fps: Option<f64>,
    ) -> Result<FrameSampling> {
        let num_frames = match pre.value("num_frames") {
            _ if pre.is_null("num_frames") => None,
            None => num_frames,
            Some(_) => pre.usize_max("num_frames", MAX_FRAMES_LIMIT)?,
        };
        let fps = match pre.value("fps") {
            _ if pre.is_null("fps") => None,
            None => fps,
            Some(_) => match pre.f64("fps")? {
                Some(v) if v.is_finite() && v > 0.0 => Some(v),
                v => {
                    return Err(Error::bad_config(format!(
                        "{}: `fps` must be a positive number, found {v:?}",
                        pre.location()
                    )))
                }
            },
        };
        Ok(FrameSampling {
            do_sample_frames: pre.bool_or("do_sample_frames", true)?,
            num_frames,
            fps,
        })
    }

    /// `BaseVideoProcessor.sample_frames` → `default_sample_indices_fn`: the source frames to
    /// keep out of `total`. A call's unset `num_frames` / `fps` take the config's, and both
    /// set is an error; `fps` needs the source frame rate and keeps `max(1, int(total /
    /// source_fps * fps))` frames; the kept frames are `arange(n) * total // n`; more than the
    /// video has is an error.
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
        let num_frames = opts.num_frames.or(self.num_frames);
        let fps = opts.fps.or(self.fps);
        let n = match (num_frames, fps) {
            (Some(n), Some(f)) => {
                return Err(Error::invalid_argument(format!(
                    "`num_frames` ({n}) and `fps` ({f}) are mutually exclusive (one may come from \
                     the video processor config or its class default): set only one"
                )))
            }
            (Some(n), None) => n,
            (None, Some(fps)) => {
                let src = source_fps.ok_or_else(|| {
                    Error::invalid_argument(
                        "sampling at `fps` frames per second needs the video's frame rate \
                         (vt_video_params.source_fps)",
                    )
                })?;
                ((total as f64 / src * fps) as usize).max(1)
            }
            (None, None) => return Ok((0..total).collect()),
        };
        if n == 0 || n > total {
            return Err(Error::invalid_argument(format!(
                "the video can't be sampled: num_frames={n} but it has {total} frames (set \
                 num_frames or fps to a smaller value)"
            )));
        }
        Ok((0..n).map(|i| i * total / n).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn proc(json: &str) -> Gemma4VideoProcessor {
        let pre = ConfigObject::parse("video_preprocessor_config.json", json).unwrap();
        Gemma4VideoProcessor::from_config(&pre, 16, 3).unwrap()
    }

    #[test]
    fn sampling_follows_default_sample_indices_fn() {
        let d = proc("{}");
        assert_eq!(
            (d.sampling.num_frames, d.sampling.fps, d.max_soft_tokens),
            (Some(32), None, 70)
        );
        let none = SampleOptions::default();
        // np.arange(n) * total // n
        assert_eq!(
            d.sampling.sample(64, None, &none).unwrap(),
            (0..32).map(|i| i * 2).collect::<Vec<_>>()
        );
        let four = SampleOptions {
            num_frames: Some(4),
            ..SampleOptions::default()
        };
        assert_eq!(
            d.sampling.sample(10, None, &four).unwrap(),
            vec![0, 2, 5, 7]
        );
        // 32 of 10 frames: the reference raises.
        assert!(d.sampling.sample(10, None, &none).is_err());
        // fps (with num_frames null in the config): max(1, int(30 / 29.97 * 2)) = 2 frames
        // at [0, 15] (transformers gives the same); with the default num_frames, an error.
        let fps = SampleOptions {
            fps: Some(2.0),
            ..SampleOptions::default()
        };
        let by_fps = proc(r#"{"num_frames": null}"#);
        assert_eq!(
            by_fps.sampling.sample(30, Some(29.97), &fps).unwrap(),
            vec![0, 15]
        );
        assert!(by_fps.sampling.sample(30, None, &fps).is_err());
        assert!(d.sampling.sample(30, Some(29.97), &fps).is_err());
        let off = SampleOptions {
            do_sample_frames: Some(false),
            ..SampleOptions::default()
        };
        assert_eq!(d.sampling.sample(3, None, &off).unwrap(), vec![0, 1, 2]);
        let both = SampleOptions {
            fps: Some(1.0),
            num_frames: Some(2),
            ..SampleOptions::default()
        };
        assert!(d.sampling.sample(30, Some(30.0), &both).is_err());
        let null = proc(r#"{"num_frames": null}"#);
        assert_eq!(null.sampling.sample(3, None, &none).unwrap(), vec![0, 1, 2]);
    }

    #[test]
    fn config_errors() {
        let pre = |s: &str| ConfigObject::parse("video_preprocessor_config.json", s).unwrap();
        assert!(
            Gemma4VideoProcessor::from_config(&pre(r#"{"max_soft_tokens": 100}"#), 16, 3).is_err()
        );
        assert!(Gemma4VideoProcessor::from_config(&pre(r#"{"patch_size": 14}"#), 16, 3).is_err());
        assert!(Gemma4VideoProcessor::from_config(&pre(r#"{"fps": -1}"#), 16, 3).is_err());
        assert!(Gemma4VideoProcessor::from_config(&pre(r#"{"resample": 0}"#), 16, 3).is_err());
    }
}
