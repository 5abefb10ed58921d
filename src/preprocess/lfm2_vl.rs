//! `Lfm2VlImageProcessor` (`image_processing_lfm2_vl.py`, torchvision backend only), LFM2-VL's
//! processor, on its single-image path: an image that is not "too large"
//! (`_is_image_too_large`), or any image with `do_image_splitting` off, is resized with
//! `smart_resize` (both sides multiples of `encoder_patch_size · downsample_factor`, the area
//! between `min_image_tokens` and `max_image_tokens` tokens' worth of pixels, the aspect
//! ratio kept as closely as that allows) by torchvision's antialiased resize of the `uint8`
//! tensor ([`crate::preprocess::tv_resize`]; class default BILINEAR), rescaled and
//! normalized in the backend's fused f32 arithmetic (class defaults 1/255, mean = std = 0.5)
//! and cut into `(y, x, channel)` patch rows in raster order, as SigLIP2's NaFlex processor
//! does. The reference pads the rows to `max_num_patches` and masks the padding; vtower keeps
//! the real rows.
//!
//! Images the reference would split into tiles plus a thumbnail (`do_image_splitting` on, the
//! class default, and an image above `max_image_tokens · (patch · factor)² ·
//! max_pixels_tolerance` pixels after rounding) are refused: tiling is not implemented yet.
//! Per call, `vt_preprocess_params.do_image_splitting = 0` processes any image as one.

use crate::config::ConfigObject;
use crate::error::{Error, Result};
use crate::preprocess::gemma4::patch_rows;
use crate::preprocess::limits::try_filled;
use crate::preprocess::qwen_video::{read_rescale_normalize, tv_normalize, RescaleNormalize};
use crate::preprocess::resample::Filter;
use crate::preprocess::settings::read_filter;
use crate::preprocess::tv_resize::{resize_tv, TvInterpolation};
use crate::preprocess::{Limits, Pixels, PreprocessOptions, RgbImage};

/// Largest accepted patch size, downsample factor or token bound.
const MAX_SIDE: usize = 1 << 16;

/// transformers' `round_by_factor`: `round(number / factor) * factor` with Python's `round`
/// (half to even) on the float quotient.
fn round_by_factor(number: usize, factor: usize) -> usize {
    (number as f64 / factor as f64).round_ties_even() as usize * factor
}

/// The processor, configured from `preprocessor_config.json` (or `processor_config.json`).
#[derive(Debug, Clone)]
pub struct Lfm2VlProcessor {
    pub patch_size: usize,
    pub downsample_factor: usize,
    pub min_image_tokens: usize,
    pub max_image_tokens: usize,
    pub do_image_splitting: bool,
    pub min_tiles: usize,
    pub max_tiles: usize,
    pub max_pixels_tolerance: f64,
    pub interp: TvInterpolation,
    pub rescale_normalize: RescaleNormalize,
}

impl Lfm2VlProcessor {
    /// Reads the processor file with the class defaults (patch 16, factor 2, 64..256 tokens,
    /// splitting on with 2..10 tiles, tolerance 2, BILINEAR, 1/255, mean = std = 0.5). Its
    /// `encoder_patch_size` must be the tower's `patch` and its `downsample_factor` the
    /// model's `factor`.
    pub fn from_config(pre: &ConfigObject, patch: usize, factor: usize) -> Result<Lfm2VlProcessor> {
        let loc = pre.location();
        let patch_size = pre.positive_or("encoder_patch_size", 16, MAX_SIDE)?;
        let downsample_factor = pre.positive_or("downsample_factor", 2, MAX_SIDE)?;
        if patch_size != patch {
            return Err(Error::bad_config(format!(
                "{loc}: encoder_patch_size {patch_size} does not match the vision tower's \
                 patch_size {patch} (config.json)"
            )));
        }
        if downsample_factor != factor {
            return Err(Error::bad_config(format!(
                "{loc}: downsample_factor {downsample_factor} does not match config.json's \
                 downsample_factor {factor}"
            )));
        }
        let min_image_tokens = pre.positive_or("min_image_tokens", 64, MAX_SIDE * MAX_SIDE)?;
        let max_image_tokens = pre.positive_or("max_image_tokens", 256, MAX_SIDE * MAX_SIDE)?;
        if min_image_tokens > max_image_tokens {
            return Err(Error::bad_config(format!(
                "{loc}: min_image_tokens {min_image_tokens} is above max_image_tokens \
                 {max_image_tokens}"
            )));
        }
        let filter = read_filter(pre, Filter::Bilinear)?;
        let interp = TvInterpolation::from_filter(filter).ok_or_else(|| {
            Error::bad_config(format!(
                "{loc}: resample {filter:?} is not supported for lfm2_vl (bilinear or bicubic)"
            ))
        })?;
        let max_pixels_tolerance = pre.f64_or("max_pixels_tolerance", 2.0)?;
        if !(max_pixels_tolerance.is_finite() && max_pixels_tolerance > 0.0) {
            return Err(Error::bad_config(format!(
                "{loc}: max_pixels_tolerance {max_pixels_tolerance} is not a positive number"
            )));
        }
        Ok(Lfm2VlProcessor {
            patch_size,
            downsample_factor,
            min_image_tokens,
            max_image_tokens,
            do_image_splitting: pre.bool_or("do_image_splitting", true)?,
            min_tiles: pre.positive_or("min_tiles", 2, MAX_SIDE)?,
            max_tiles: pre.positive_or("max_tiles", 10, MAX_SIDE)?,
            max_pixels_tolerance,
            interp,
            rescale_normalize: read_rescale_normalize(pre, ([0.5; 3], [0.5; 3]))?,
        })
    }

    /// `smart_resize(height, width)`: the `(height, width)` of the single image.
    pub fn smart_resize(&self, height: usize, width: usize) -> (usize, usize) {
        let (p, f) = (self.patch_size, self.downsample_factor);
        let t = p * f;
        let per_token = (t * t) as f64;
        let min_pixels = self.min_image_tokens as f64 * per_token;
        let max_pixels = self.max_image_tokens as f64 * per_token;
        let (hf, wf, tf) = (height as f64, width as f64, t as f64);
        let mut h = round_by_factor(height, t).max(t);
        let mut w = round_by_factor(width, t).max(t);
        if (h * w) as f64 > max_pixels {
            let beta = (hf * wf / max_pixels).sqrt();
            h = (((hf / beta / tf).floor() as usize) * t).max(t);
            w = (((wf / beta / tf).floor() as usize) * t).max(t);
        } else if ((h * w) as f64) < min_pixels {
            let beta = (min_pixels / (hf * wf)).sqrt();
            h = (hf * beta / tf).ceil() as usize * t;
            w = (wf * beta / tf).ceil() as usize * t;
        }
        (h, w)
    }

    /// `_is_image_too_large`: whether the reference tiles the image when splitting is on.
    pub fn is_too_large(&self, height: usize, width: usize) -> bool {
        let (p, f) = (self.patch_size, self.downsample_factor);
        let t = p * f;
        let h = round_by_factor(height, t).max(p);
        let w = round_by_factor(width, t).max(p);
        (h * w) as f64
            > self.max_image_tokens as f64 * (p * p * f * f) as f64 * self.max_pixels_tolerance
    }

    /// Resizes, rescales, normalizes and patchifies an image: `[rows · cols, 3 · patch²]`,
    /// token grid `[1, rows / f, cols / f]`.
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
        let splitting = opts.do_image_splitting.unwrap_or(self.do_image_splitting);
        if splitting && !(self.min_tiles == 1 && self.max_tiles == 1) && self.is_too_large(h0, w0) {
            return Err(Error::invalid_argument(format!(
                "a {w0}x{h0} image is above max_image_tokens {} x max_pixels_tolerance {}, so \
                 Lfm2VlImageProcessor would split it into tiles and a thumbnail, which vtower \
                 does not implement yet for lfm2_vl; pass do_image_splitting = 0 to process it \
                 as one image",
                self.max_image_tokens, self.max_pixels_tolerance
            )));
        }
        let (p, f) = (self.patch_size, self.downsample_factor);
        let (h, w) = self.smart_resize(h0, w0);
        let (rows, cols) = (h / p, w / p);
        limits.check_tokens(((rows / f) as u64) * ((cols / f) as u64), &|| {
            format!("a {w0}x{h0} image resized to {w}x{h}")
        })?;
        limits.check_image("the resized image", w as u64, h as u64)?;
        let resized;
        let image = if (w0, h0) == (w, h) {
            image
        } else {
            resized = resize_tv(image, w as u32, h as u32, self.interp, limits)?;
            &resized
        };
        let (rescale, mean_std) = self.rescale_normalize;
        let chw = tv_normalize(image, rescale, mean_std)?;
        let dim = 3 * p * p;
        let mut data = try_filled(rows * cols * dim, 0f32, "the patch rows")?;
        patch_rows(&chw, h, w, p, &mut data);
        Ok(Pixels {
            data,
            shape: vec![rows * cols, dim],
            grid: [1, rows / f, cols / f],
            extra: Vec::new(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn proc(json: &str) -> Lfm2VlProcessor {
        let pre = ConfigObject::parse("preprocessor_config.json", json).unwrap();
        Lfm2VlProcessor::from_config(&pre, 16, 2).unwrap()
    }

    #[test]
    fn sizes_match_python() {
        // Values from Lfm2VlImageProcessor.smart_resize / _is_image_too_large (class defaults).
        let p = proc("{}");
        assert_eq!(p.smart_resize(480, 640), (416, 576));
        assert_eq!(p.smart_resize(512, 512), (512, 512));
        assert_eq!(p.smart_resize(100, 100), (256, 256));
        assert_eq!(p.smart_resize(1080, 1920), (384, 672));
        assert_eq!(p.smart_resize(48, 2000), (64, 1984));
        assert!(!p.is_too_large(512, 512));
        assert!(p.is_too_large(1080, 1920));
        assert!(!p.is_too_large(700, 700));
        assert!(p.is_too_large(800, 800));
    }

    #[test]
    fn refusals() {
        let pre = ConfigObject::parse("preprocessor_config.json", "{}").unwrap();
        let e = Lfm2VlProcessor::from_config(&pre, 14, 2).unwrap_err();
        assert!(e.message().contains("encoder_patch_size"), "{e}");
        let e = Lfm2VlProcessor::from_config(&pre, 16, 4).unwrap_err();
        assert!(e.message().contains("downsample_factor"), "{e}");
        for (bad, word) in [
            (r#"{"resample": 0}"#, "resample"),
            (r#"{"min_image_tokens": 300}"#, "min_image_tokens"),
            (r#"{"max_pixels_tolerance": -1}"#, "max_pixels_tolerance"),
        ] {
            let pre = ConfigObject::parse("preprocessor_config.json", bad).unwrap();
            let e = Lfm2VlProcessor::from_config(&pre, 16, 2).unwrap_err();
            assert!(e.message().contains(word), "{bad}: {e}");
        }
    }
}
