//! `Siglip2ImageProcessorPil` (`image_processing_pil_siglip2.py`), SigLIP2 NaFlex's processor:
//! each image is resized with its aspect ratio kept to the size
//! `get_image_size_for_max_num_patches` finds (a binary search over the scale; both sides
//! multiples of `patch_size`, at least one patch, at most `max_num_patches` patches), with
//! the resample filter (class default BILINEAR), rescaled and normalized (class defaults 1/255,
//! mean = std = 0.5), and cut into patch rows `[rows · cols, 3 · patch²]` in raster order, each
//! row in `(y, x, channel)` order (`convert_image_to_patches`).
//!
//! The reference then pads the rows to `max_num_patches` with zeros and returns the
//! `pixel_attention_mask` and `spatial_shapes` (`(rows, cols)`) beside them; vtower keeps the
//! real rows only (the padding never reaches the output) and the patch grid as the token grid
//! `[1, rows, cols]`.
//!
//! The budget is `max_num_patches` from the file (class default 256) or, per call,
//! `vt_preprocess_params.max_tokens` (the processor's `max_num_patches` kwarg). Note that
//! `Siglip2Processor` (the multimodal processor) passes its own class defaults
//! `max_num_patches=256, patch_size=16` as call kwargs whatever the image processor's file
//! says; the released checkpoints' files say the same.

use crate::config::ConfigObject;
use crate::error::{Error, Result};
use crate::preprocess::gemma4::patch_rows;
use crate::preprocess::limits::try_filled;
use crate::preprocess::normalize::Normalization;
use crate::preprocess::resample::{resize, Filter};
use crate::preprocess::settings::{read_filter, read_matching, read_normalization};
use crate::preprocess::{Limits, Pixels, PreprocessOptions, RgbImage};

/// `Siglip2ImageProcessorPil.max_num_patches`.
const DEFAULT_MAX_NUM_PATCHES: usize = 256;
/// Largest accepted patch size.
const MAX_PATCH: usize = 1024;
/// Largest accepted `max_num_patches` in the file (the tokens of an image are bounded again by
/// `max_image_tokens` at every call).
const MAX_NUM_PATCHES: usize = 1 << 24;

/// transformers' `get_image_size_for_max_num_patches(image_height, image_width, patch_size,
/// max_num_patches)` (eps 1e-5): the `(height, width)` to resize to. A bisection of the scale
/// over `[eps / 10, 100]` until the interval is narrower than `eps`, keeping the lower end
/// whenever `ceil(side · scale / patch) · patch` (at least `patch`) for both sides gives at
/// most `max_num_patches` patches; the sides at the final lower end. Python's float arithmetic
/// (f64).
pub fn size_for_max_num_patches(
    height: usize,
    width: usize,
    patch: usize,
    max_num_patches: usize,
) -> (usize, usize) {
    const EPS: f64 = 1e-5;
    let p = patch as f64;
    let scaled = |scale: f64, size: usize| -> usize {
        let s = size as f64 * scale;
        let s = (s / p).ceil() * p;
        s.max(p) as usize
    };
    let (mut lo, mut hi) = (EPS / 10.0, 100.0f64);
    while hi - lo >= EPS {
        let scale = (lo + hi) / 2.0;
        let (th, tw) = (scaled(scale, height), scaled(scale, width));
        // (th / p) * (tw / p) in floats: exact, both are multiples of p.
        let n = (th as f64 / p) * (tw as f64 / p);
        if n <= max_num_patches as f64 {
            lo = scale;
        } else {
            hi = scale;
        }
    }
    (scaled(lo, height), scaled(lo, width))
}

/// The processor, configured from `preprocessor_config.json`.
#[derive(Debug, Clone)]
pub struct Siglip2Processor {
    pub patch_size: usize,
    pub max_num_patches: usize,
    pub do_resize: bool,
    pub filter: Filter,
    pub normalization: Normalization,
}

impl Siglip2Processor {
    /// Reads `preprocessor_config.json` (class defaults: patch 16, 256 patches, bilinear,
    /// rescale 1/255, mean = std = 0.5); its `patch_size` must be the tower's (`patch`), whose
    /// patch embedding takes `3 · patch²` values per row.
    pub fn from_config(pre: &ConfigObject, patch: usize) -> Result<Siglip2Processor> {
        let what = format!("the vision tower's patch_size {patch} (config.json)");
        let patch_size = read_matching(pre, "patch_size", 16, MAX_PATCH, patch, &what)?;
        Ok(Siglip2Processor {
            patch_size,
            max_num_patches: pre.positive_or(
                "max_num_patches",
                DEFAULT_MAX_NUM_PATCHES,
                MAX_NUM_PATCHES,
            )?,
            do_resize: pre.bool_or("do_resize", true)?,
            filter: read_filter(pre, Filter::Bilinear)?,
            normalization: read_normalization(pre, [0.5; 3], [0.5; 3])?,
        })
    }

    /// The patch budget of a call: `max_tokens` when given (the processor's `max_num_patches`
    /// kwarg), else the file's.
    pub fn budget(&self, opts: &PreprocessOptions) -> usize {
        opts.max_tokens.unwrap_or(self.max_num_patches)
    }

    /// The `(height, width)` an image of `width` x `height` becomes with a budget of
    /// `max_num_patches` patches.
    pub fn target_size(
        &self,
        width: usize,
        height: usize,
        max_num_patches: usize,
    ) -> Result<(usize, usize)> {
        let p = self.patch_size;
        if width == 0 || height == 0 {
            return Err(Error::invalid_argument(format!(
                "cannot resize a {width}x{height} image"
            )));
        }
        if self.do_resize {
            return Ok(size_for_max_num_patches(height, width, p, max_num_patches));
        }
        let patches = (height / p) * (width / p);
        if height % p != 0 || width % p != 0 || patches > max_num_patches {
            return Err(Error::invalid_argument(format!(
                "image is {width}x{height}; with do_resize=false in preprocessor_config.json the \
                 sides must be multiples of patch_size {p} and hold at most {max_num_patches} \
                 patches (max_num_patches)"
            )));
        }
        Ok((height, width))
    }

    /// Resizes, rescales, normalizes and patchifies an image: `[rows · cols, 3 · patch²]`
    /// (the real rows of the reference's `pixel_values`), token grid `[1, rows, cols]`. The
    /// token count and the resized image are checked against `limits` before anything is
    /// allocated.
    pub fn process(
        &self,
        image: &RgbImage,
        opts: &PreprocessOptions,
        limits: &Limits,
    ) -> Result<Pixels> {
        let budget = self.budget(opts);
        let p = self.patch_size;
        let (w0, h0) = (image.width as usize, image.height as usize);
        let (h, w) = self.target_size(w0, h0, budget)?;
        let (rows, cols) = (h / p, w / p);
        limits.check_tokens((rows as u64) * (cols as u64), &|| {
            format!("a {w0}x{h0} image resized to {w}x{h} (max_num_patches {budget})")
        })?;
        limits.check_image("the resized image", w as u64, h as u64)?;
        let resized;
        let image = if !self.do_resize {
            image
        } else {
            // The reference resizes even to the same size, which Pillow does as a copy.
            let conv = |v: usize| {
                u32::try_from(v).map_err(|_| Error::invalid_argument("resized size overflows"))
            };
            if (w0, h0) == (w, h) {
                image
            } else {
                resized = resize(image, conv(w)?, conv(h)?, self.filter, limits)?;
                &resized
            }
        };
        let chw = self.normalization.to_chw(image)?;
        let dim = 3 * p * p;
        let mut data = try_filled(rows * cols * dim, 0f32, "the patch rows")?;
        patch_rows(&chw, h, w, p, &mut data);
        Ok(Pixels {
            data,
            shape: vec![rows * cols, dim],
            grid: [1, rows, cols],
            extra: Vec::new(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_match_python() {
        // Values from transformers' get_image_size_for_max_num_patches.
        let s = size_for_max_num_patches;
        assert_eq!(s(480, 640, 16, 256), (224, 288));
        assert_eq!(s(1080, 1920, 16, 256), (192, 336));
        assert_eq!(s(224, 224, 16, 256), (256, 256));
        // Upscaled at most 100x.
        assert_eq!(s(1, 1, 16, 256), (112, 112));
        assert_eq!(s(10, 3000, 16, 256), (16, 4096));
        assert_eq!(s(3000, 10, 16, 1024), (8192, 32));
        assert_eq!(s(48, 64, 8, 48), (48, 64));
        assert_eq!(s(37, 101, 8, 24), (24, 64));
        assert_eq!(s(20, 12, 8, 24), (48, 32));
        assert_eq!(s(5, 7, 8, 1), (8, 8));
    }

    #[test]
    fn budget_and_refusals() {
        let pre = ConfigObject::parse("preprocessor_config.json", "{}").unwrap();
        let p = Siglip2Processor::from_config(&pre, 16).unwrap();
        assert_eq!((p.max_num_patches, p.filter), (256, Filter::Bilinear));
        assert_eq!(p.budget(&PreprocessOptions::default()), 256);
        let o = PreprocessOptions {
            max_tokens: Some(1024),
            ..Default::default()
        };
        assert_eq!(p.budget(&o), 1024);
        let e = Siglip2Processor::from_config(&pre, 14).unwrap_err();
        assert!(e.message().contains("patch_size"), "{e}");
        let pre = ConfigObject::parse(
            "preprocessor_config.json",
            r#"{"do_resize": false, "patch_size": 4, "max_num_patches": 6}"#,
        )
        .unwrap();
        let p = Siglip2Processor::from_config(&pre, 4).unwrap();
        assert_eq!(p.target_size(8, 12, 6).unwrap(), (12, 8));
        assert!(p.target_size(9, 12, 6).is_err());
        assert!(p.target_size(12, 12, 6).is_err());
    }
}
