//! `Kimi_K25ImageProcessor` (`image_processing_kimi_k25.py`, torchvision backend only), Kimi
//! K2.5's image processor:
//!
//! 1. `navit_resize`: the image is shrunk, never enlarged, by the most restrictive of
//!    `sqrt(max_patches / ((h // patch) · (w // patch)))` (each count at least 1) and
//!    `size["max_height"] · patch / side` for both sides (`max_height` counts patches); each
//!    side `max(1, int(side · scale))`, at most `max_height · patch`, in f64 as Python does;
//! 2. torchvision's antialiased resize of the `uint8` tensor ([`crate::preprocess::tv_resize`];
//!    class default BICUBIC), skipped when the size does not change;
//! 3. zero padding at the bottom and right to multiples of `patch · merge_size` (on the `uint8`
//!    image, before normalization: padded pixels normalize like black ones);
//! 4. the backend's fused rescale + normalize in f32 (class defaults 1/255, mean = std = 0.5);
//! 5. `patchify`: `(channel, y, x)` patch rows in raster order over the patch grid.
//!
//! Every image is one frame: patch grid `[1, rows, cols]`, token grid `[1, rows / m, cols / m]`.
//! Per call, `max_patches` is the processor's kwarg of that name.

use crate::config::ConfigObject;
use crate::error::{Error, Result};
use crate::preprocess::gemma4_video::FrameSampling;
use crate::preprocess::limits::try_filled;
use crate::preprocess::normalize::tv_normalize;
use crate::preprocess::qwen_video::{
    check_source_fps, read_rescale_normalize, sized_frame, RescaleNormalize, SampleOptions,
    VideoFrames, VideoMeta, VideoTime,
};
use crate::preprocess::resample::Filter;
use crate::preprocess::settings::{read_filter, read_matching};
use crate::preprocess::tv_resize::{resize_tv, TvInterpolation};
use crate::preprocess::{Limits, Pixels, PreprocessOptions, RgbImage};

/// Largest accepted patch size, merge size, side bound (patches) or patch budget.
const MAX_SETTING: usize = 1 << 20;

/// The processor, configured from `preprocessor_config.json`.
#[derive(Debug, Clone)]
pub struct KimiK25Processor {
    pub patch_size: usize,
    pub merge_size: usize,
    /// `max_patches`: the patch budget `navit_resize` shrinks to (class default 16384).
    pub max_patches: usize,
    /// `size["max_height"]` (= `max_width`): the most patches on a side (class default 512).
    pub max_side: usize,
    pub interp: TvInterpolation,
    pub rescale_normalize: RescaleNormalize,
}

impl KimiK25Processor {
    /// Reads the processor file with the class defaults. Its `patch_size` must be the tower's
    /// `patch` and its `merge_size` the tower's merge kernel side `merge`.
    pub fn from_config(pre: &ConfigObject, patch: usize, merge: usize) -> Result<KimiK25Processor> {
        Self::with_default_budget(pre, patch, merge, 16384)
    }

    /// [`KimiK25Processor::from_config`] with `max_patches` defaulting to `max_patches` (the
    /// image class's 16384, the video class's 4096).
    fn with_default_budget(
        pre: &ConfigObject,
        patch: usize,
        merge: usize,
        max_patches: usize,
    ) -> Result<KimiK25Processor> {
        let loc = pre.location();
        let what = format!("the vision tower's patch_size {patch} (config.json)");
        let patch_size = read_matching(pre, "patch_size", 14, MAX_SETTING, patch, &what)?;
        let what = format!("the vision tower's merge_kernel_size [{merge}, {merge}] (config.json)");
        let merge_size = read_matching(pre, "merge_size", 2, MAX_SETTING, merge, &what)?;
        if !pre.bool_or("do_resize", true)? {
            return Err(Error::bad_config(format!(
                "{loc}: do_resize false is not supported for kimi_k25 (the processor then \
                 neither resizes nor pads, and patchify fails on sizes that are not \
                 multiples of the patch)"
            )));
        }
        let max_side = match pre.object("size")? {
            None => 512,
            Some(size) => {
                let h = size.usize_max("max_height", MAX_SETTING)?;
                let w = size.usize_max("max_width", MAX_SETTING)?;
                match (h, w) {
                    (Some(h), Some(w)) if h == w && h > 0 => h,
                    _ => {
                        return Err(Error::bad_config(format!(
                            "{loc}: size must have equal positive max_height and max_width \
                             (patches a side), as Kimi_K25ImageProcessor requires"
                        )))
                    }
                }
            }
        };
        let filter = read_filter(pre, Filter::Bicubic)?;
        let interp = TvInterpolation::from_filter(filter).ok_or_else(|| {
            Error::bad_config(format!(
                "{loc}: resample {filter:?} is not supported for kimi_k25 (bilinear or bicubic)"
            ))
        })?;
        Ok(KimiK25Processor {
            patch_size,
            merge_size,
            max_patches: pre.positive_or("max_patches", max_patches, MAX_SETTING)?,
            max_side,
            interp,
            rescale_normalize: read_rescale_normalize(pre, ([0.5; 3], [0.5; 3]))?,
        })
    }

    /// `navit_resize(height, width, ...)`: `((height, width), (padded height, padded width))`.
    pub fn navit_resize(
        &self,
        height: usize,
        width: usize,
        max_patches: usize,
    ) -> ((usize, usize), (usize, usize)) {
        let p = self.patch_size;
        let side_px = self.max_side * p;
        let current = (height / p).max(1) as f64 * (width / p).max(1) as f64;
        let scale = 1.0f64
            .min((max_patches as f64 / current).sqrt())
            .min(side_px as f64 / height as f64)
            .min(side_px as f64 / width as f64);
        let shrink = |v: usize| ((v as f64 * scale) as usize).max(1).min(side_px);
        let (h, w) = (shrink(height), shrink(width));
        let f = p * self.merge_size;
        ((h, w), (h.div_ceil(f) * f, w.div_ceil(f) * f))
    }

    /// Resizes, pads, rescales, normalizes and patchifies an image: `[rows · cols, 3 · patch²]`.
    pub fn process(
        &self,
        image: &RgbImage,
        opts: &PreprocessOptions,
        limits: &Limits,
    ) -> Result<Pixels> {
        let (w0, h0) = (image.width as usize, image.height as usize);
        if w0 == 0 || h0 == 0 {
            return Err(Error::invalid_argument(format!(
                "cannot resize a {w0}x{h0} image"
            )));
        }
        let max_patches = match opts.max_patches {
            Some(0) => {
                return Err(Error::invalid_argument(
                    "max_patches 0: the patch budget must be at least 1",
                ))
            }
            Some(n) => n.min(MAX_SETTING),
            None => self.max_patches,
        };
        let (p, m) = (self.patch_size, self.merge_size);
        let ((h, w), (ph, pw)) = self.navit_resize(h0, w0, max_patches);
        let (rows, cols) = (ph / p, pw / p);
        limits.check_tokens(((rows / m) as u64) * ((cols / m) as u64), &|| {
            format!("a {w0}x{h0} image resized to {w}x{h} and padded to {pw}x{ph}")
        })?;
        limits.check_image("the padded image", pw as u64, ph as u64)?;
        let resized;
        let image = if (w0, h0) == (w, h) {
            image
        } else {
            resized = resize_tv(image, w as u32, h as u32, self.interp, limits)?;
            &resized
        };
        let padded = pad_bottom_right(image, pw, ph)?;
        let (rescale, mean_std) = self.rescale_normalize;
        let chw = tv_normalize(&padded, rescale, mean_std)?;
        let dim = 3 * p * p;
        let mut data = try_filled(rows * cols * dim, 0f32, "the patch rows")?;
        chw_patch_rows(&chw, ph, pw, p, &mut data);
        Ok(Pixels {
            data,
            shape: vec![rows * cols, dim],
            grid: [1, rows / m, cols / m],
            extra: Vec::new(),
        })
    }
}

/// `Kimi_K25VideoProcessor` (`video_processing_kimi_k25.py`, torchvision backend), from
/// decoded frames:
///
/// 1. frame sampling (`BaseVideoProcessor.sample_frames` → `default_sample_indices_fn`, when
///    `do_sample_frames`, the class default): with the class default `fps` 2 (no
///    `num_frames`), `max(1, int(total / source_fps * 2))` frames at `arange(n) * total // n`
///    (needs the source frame rate); `num_frames` instead of `fps` when the config sets `fps`
///    to null; both is an error;
/// 2. the kept frames cut into chunks of `temporal_patch_size` (class default 4) frames, the
///    last one shorter when the count does not divide (`num_chunks_per_video`);
/// 3. each frame as a Kimi image ([`KimiK25Processor`]): `navit_resize` with the video
///    class's `max_patches` (default 4096) and `size["max_height"]` (512), torchvision's
///    antialiased resize, zero padding, the fused rescale + normalize, `(channel, y, x)` patch
///    rows;
/// 4. `video_grid_thw`: one row `[frames in the chunk, rows, cols]` per chunk.
///
/// The [`Pixels`] hold every kept frame's patch rows, frame after frame, with token grid
/// `[chunks, rows / m, cols / m]` (the tower pools each chunk's frames into one frame of
/// tokens); the [`VideoMeta`] timestamps are one per chunk, its first frame's time (frame
/// index / source fps, 24 fps when not known), as `Kimi_K25Processor.replace_video_token`
/// writes them.
#[derive(Debug, Clone)]
pub struct KimiK25VideoProcessor {
    /// The per-frame settings (the video class's defaults).
    pub frame: KimiK25Processor,
    pub temporal_patch_size: usize,
    pub sampling: FrameSampling,
}

impl KimiK25VideoProcessor {
    /// Reads the video processor config ([`crate::preprocess::qwen_video::video_config`]) with
    /// the class defaults of transformers 5.23; `patch` and `merge` are the tower's.
    pub fn from_config(
        pre: &ConfigObject,
        patch: usize,
        merge: usize,
    ) -> Result<KimiK25VideoProcessor> {
        let loc = pre.location();
        let frame = KimiK25Processor::with_default_budget(pre, patch, merge, 4096)?;
        // The class default: 2 frames per second.
        let sampling = FrameSampling::read(pre, None, Some(2.0))?;
        if sampling.num_frames == Some(0) {
            return Err(Error::bad_config(format!(
                "{loc}: num_frames must be positive"
            )));
        }
        Ok(KimiK25VideoProcessor {
            frame,
            temporal_patch_size: pre.positive_or("temporal_patch_size", 4, MAX_SETTING)?,
            sampling,
        })
    }

    /// The frame count of each chunk of `n` kept frames.
    pub fn chunks(&self, n: usize) -> Vec<usize> {
        let t = self.temporal_patch_size;
        (0..n.div_ceil(t)).map(|c| t.min(n - c * t)).collect()
    }

    /// Samples, resizes, pads, normalizes and patchifies `video`. The token count and the
    /// padded frames' size are checked against `limits` before any frame is read.
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
        let (w0, h0) = (width as usize, height as usize);
        if w0 == 0 || h0 == 0 {
            return Err(Error::invalid_argument(format!(
                "cannot resize {w0}x{h0} video frames"
            )));
        }
        let indices = self.sampling.sample(n_frames, source_fps, opts)?;
        let n = indices.len();
        let chunks = n.div_ceil(self.temporal_patch_size);
        let fp = &self.frame;
        let (p, m) = (fp.patch_size, fp.merge_size);
        let ((h, w), (ph, pw)) = fp.navit_resize(h0, w0, fp.max_patches);
        let (rows, cols) = (ph / p, pw / p);
        limits.check_tokens(
            (chunks as u64).saturating_mul(((rows / m) * (cols / m)) as u64),
            &|| {
                format!(
                    "a video of {n} kept frames ({chunks} chunks) of {width}x{height} resized \
                     to {w}x{h} and padded to {pw}x{ph}"
                )
            },
        )?;
        limits.check_image("a padded video frame", pw as u64, ph as u64)?;
        limits.check_image(
            "the video's padded frames, all together",
            (pw as u64).saturating_mul(n as u64),
            ph as u64,
        )?;
        let dim = 3 * p * p;
        let per_frame = rows * cols * dim;
        let mut data = try_filled(n * per_frame, 0f32, "the video's patch rows")?;
        for (out, &i) in data.chunks_exact_mut(per_frame).zip(&indices) {
            let img = sized_frame(frame, i, (width, height), (w, h), fp.interp, limits)?;
            let padded = pad_bottom_right(&img, pw, ph)?;
            let (rescale, mean_std) = fp.rescale_normalize;
            let chw = tv_normalize(&padded, rescale, mean_std)?;
            chw_patch_rows(&chw, ph, pw, p, out);
        }
        // Each chunk's timestamp is its first frame's time.
        let t = self.temporal_patch_size;
        let meta = VideoMeta::sampled(VideoTime::PerFrame, indices, n_frames, source_fps, t, |c| {
            c[0]
        });
        let pixels = Pixels {
            data,
            shape: vec![n * rows * cols, dim],
            grid: [chunks, rows / m, cols / m],
            extra: Vec::new(),
        };
        Ok((pixels, meta))
    }
}

/// A chunk's timestamp as `Kimi_K25Processor.replace_video_token` writes it:
/// `time.strftime("%H:%M:%S", time.gmtime(s))` and `.{int(s % 1 * 1000):03d}`.
pub fn chunk_timestamp(s: f64) -> String {
    let whole = s.floor().max(0.0) as u64;
    let (hh, mm, ss) = ((whole / 3600) % 24, (whole / 60) % 60, whole % 60);
    let ms = ((s % 1.0) * 1000.0) as u64;
    format!("{hh:02}:{mm:02}:{ss:02}.{ms:03}")
}

/// `image` in the top-left corner of a black `width x height` image (torchvision's constant
/// `pad` with fill 0 at the bottom and right).
fn pad_bottom_right(image: &RgbImage, width: usize, height: usize) -> Result<RgbImage> {
    let (w0, h0) = (image.width as usize, image.height as usize);
    let mut data = try_filled(width * height * 3, 0u8, "the padded image")?;
    for (dst, src) in data
        .chunks_exact_mut(width * 3)
        .zip(image.data.chunks_exact(w0 * 3))
        .take(h0)
    {
        dst[..w0 * 3].copy_from_slice(src);
    }
    Ok(RgbImage {
        width: width as u32,
        height: height as u32,
        data,
    })
}

/// Cuts a `[3, h, w]` plane into `(channel, y, x)` patch rows of `p x p` in raster order (the
/// processors' `patchify` to `[patches, channels, p, p]`), into `out`.
fn chw_patch_rows(chw: &[f32], h: usize, w: usize, p: usize, out: &mut [f32]) {
    let (ph, pw) = (h / p, w / p);
    let plane = h * w;
    for (row, dst) in out.chunks_exact_mut(3 * p * p).take(ph * pw).enumerate() {
        let (py, px) = (row / pw, row % pw);
        for (c, dst) in dst.chunks_exact_mut(p * p).enumerate() {
            for (y, dst) in dst.chunks_exact_mut(p).enumerate() {
                let src = c * plane + (py * p + y) * w + px * p;
                dst.copy_from_slice(&chw[src..src + p]);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn proc(json: &str) -> KimiK25Processor {
        let pre = ConfigObject::parse("preprocessor_config.json", json).unwrap();
        KimiK25Processor::from_config(&pre, 14, 2).unwrap()
    }

    #[test]
    fn sizes_match_python() {
        // navit_resize(h, w, 14, 2, max_patches, 512) of image_processing_kimi_k25.py.
        let p = proc("{}");
        assert_eq!(p.navit_resize(480, 640, 16384), ((480, 640), (504, 644)));
        assert_eq!(
            p.navit_resize(3000, 4000, 16384),
            ((1554, 2073), (1568, 2100))
        );
        assert_eq!(p.navit_resize(10, 9000, 16384), ((7, 7168), (28, 7168)));
        assert_eq!(p.navit_resize(5, 3, 16384), ((5, 3), (28, 28)));
        assert_eq!(p.navit_resize(480, 640, 100), ((122, 163), (140, 168)));
    }

    #[test]
    fn refusals() {
        let pre = ConfigObject::parse("preprocessor_config.json", "{}").unwrap();
        let e = KimiK25Processor::from_config(&pre, 16, 2).unwrap_err();
        assert!(e.message().contains("patch_size 14"), "{e}");
        let e = KimiK25Processor::from_config(&pre, 14, 3).unwrap_err();
        assert!(e.message().contains("merge_size 2"), "{e}");
        for (bad, word) in [
            (r#"{"resample": 0}"#, "resample"),
            (r#"{"do_resize": false}"#, "do_resize"),
            (
                r#"{"size": {"max_height": 512, "max_width": 256}}"#,
                "max_height",
            ),
            (r#"{"size": {"height": 512, "width": 512}}"#, "max_height"),
            (r#"{"max_patches": 0}"#, "max_patches"),
        ] {
            let pre = ConfigObject::parse("preprocessor_config.json", bad).unwrap();
            let e = KimiK25Processor::from_config(&pre, 14, 2).unwrap_err();
            assert!(e.message().contains(word), "{bad}: {e}");
        }
    }

    #[test]
    fn video_defaults_chunks_and_timestamps() {
        let pre = |s: &str| ConfigObject::parse("video_preprocessor_config.json", s).unwrap();
        let v = KimiK25VideoProcessor::from_config(&pre("{}"), 14, 2).unwrap();
        assert_eq!(
            (v.frame.max_patches, v.frame.max_side, v.temporal_patch_size),
            (4096, 512, 4)
        );
        assert_eq!(
            (
                v.sampling.do_sample_frames,
                v.sampling.num_frames,
                v.sampling.fps
            ),
            (true, None, Some(2.0))
        );
        assert_eq!(v.chunks(6), vec![4, 2]);
        assert_eq!(v.chunks(8), vec![4, 4]);
        assert_eq!(v.chunks(1), vec![1]);
        // fps 2 of a 30 fps source: int(95 / 30 * 2) = 6 frames at arange(6) * 95 // 6.
        let none = SampleOptions::default();
        assert_eq!(
            v.sampling.sample(95, Some(30.0), &none).unwrap(),
            vec![0, 15, 31, 47, 63, 79]
        );
        let n =
            KimiK25VideoProcessor::from_config(&pre(r#"{"fps": null, "num_frames": 3}"#), 14, 2)
                .unwrap();
        assert_eq!(n.sampling.sample(9, None, &none).unwrap(), vec![0, 3, 6]);
        assert!(KimiK25VideoProcessor::from_config(&pre(r#"{"fps": 0}"#), 14, 2).is_err());
        assert!(KimiK25VideoProcessor::from_config(&pre(r#"{"num_frames": 0}"#), 14, 2).is_err());
        // time.strftime("%H:%M:%S", time.gmtime(s)) + f".{int(s % 1 * 1000):03d}"
        assert_eq!(chunk_timestamp(0.0), "00:00:00.000");
        assert_eq!(chunk_timestamp(1.0 / 6.0), "00:00:00.166");
        assert_eq!(chunk_timestamp(3725.5), "01:02:05.500");
        assert_eq!(chunk_timestamp(0.7), "00:00:00.700");
    }

    #[test]
    fn patch_rows_are_channel_major() {
        // A 2x4 plane of 3 channels in 2x2 patches: row 1 is the patch at (0, 1).
        let chw: Vec<f32> = (0..24).map(|v| v as f32).collect();
        let mut out = vec![0f32; 2 * 12];
        chw_patch_rows(&chw, 2, 4, 2, &mut out);
        assert_eq!(
            &out[12..],
            &[2., 3., 6., 7., 10., 11., 14., 15., 18., 19., 22., 23.]
        );
    }
}
