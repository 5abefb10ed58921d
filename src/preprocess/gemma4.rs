//! `Gemma4ImageProcessorPil` (`image_processing_pil_gemma4.py`): each image is resized with
//! its aspect ratio kept to the largest size whose sides are multiples of
//! `pooling_kernel_size * patch_size` and that holds at most
//! `max_soft_tokens * pooling_kernel_size²` patches (`get_aspect_ratio_preserving_size`),
//! rescaled to `[0, 1]` (Gemma 4 does not normalize: the tower maps `x` to `2x - 1`), and cut
//! into patch rows `(y, x, channel)` padded with zero rows up to that patch budget
//! (`pixel_values`); the padding rows have position `(-1, -1)` in `image_position_ids`.

use crate::config::ConfigObject;
use crate::error::{Error, Result};
use crate::preprocess::limits::try_filled;
use crate::preprocess::normalize::Normalization;
use crate::preprocess::resample::{resize, Filter};
use crate::preprocess::settings::{read_filter, read_normalization};
use crate::preprocess::{Limits, Pixels, PreprocessOptions, RgbImage};

/// `_SUPPORTED_SOFT_TOKENS`: the only `max_soft_tokens` the reference processor accepts.
pub(crate) const SUPPORTED_SOFT_TOKENS: [usize; 5] = [70, 140, 280, 560, 1120];
/// The class default of `max_soft_tokens`.
const DEFAULT_MAX_SOFT_TOKENS: usize = 280;
/// Largest accepted patch size and pooling kernel.
const MAX_PATCH: usize = 1024;

/// Refuses a soft-token budget the reference refuses.
pub fn check_soft_tokens(budget: usize, what: &str) -> Result<()> {
    if SUPPORTED_SOFT_TOKENS.contains(&budget) {
        return Ok(());
    }
    Err(Error::invalid_argument(format!(
        "{what}: max_soft_tokens {budget} is not supported; Gemma 4 accepts {SUPPORTED_SOFT_TOKENS:?}"
    )))
}

/// transformers' `get_aspect_ratio_preserving_size(height, width, patch_size, max_patches,
/// pooling_kernel_size)`: the `(height, width)` to resize to (float arithmetic in f64, as
/// CPython does it).
pub fn aspect_ratio_preserving_size(
    height: usize,
    width: usize,
    patch: usize,
    max_patches: usize,
    pooling: usize,
) -> Result<(usize, usize)> {
    if height == 0 || width == 0 || patch == 0 || pooling == 0 {
        return Err(Error::invalid_argument(format!(
            "aspect-ratio-preserving resize of a {width}x{height} image (patch {patch}, pooling {pooling})"
        )));
    }
    let target_px = (max_patches * patch * patch) as f64;
    let factor = (target_px / (height as f64 * width as f64)).sqrt();
    let side = pooling * patch;
    let round = |ideal: f64| (ideal / side as f64).floor() as usize * side;
    let (mut th, mut tw) = (round(factor * height as f64), round(factor * width as f64));
    if th == 0 && tw == 0 {
        return Err(Error::invalid_argument(format!(
            "a {width}x{height} image resizes to 0x0 (sides must be multiples of \
             pooling_kernel_size * patch_size = {side})"
        )));
    }
    let max_side = (max_patches / (pooling * pooling)) * side;
    if th == 0 {
        th = side;
        tw = ((width as f64 / height as f64).floor() as usize * side).min(max_side);
    } else if tw == 0 {
        tw = side;
        th = ((height as f64 / width as f64).floor() as usize * side).min(max_side);
    }
    if (th * tw) as f64 > target_px {
        return Err(Error::invalid_argument(format!(
            "resizing {width}x{height} to {tw}x{th} exceeds {max_patches} patches of {patch} pixels"
        )));
    }
    Ok((th, tw))
}

/// The processor, configured from `preprocessor_config.json`.
#[derive(Debug, Clone)]
pub struct Gemma4Processor {
    pub patch_size: usize,
    pub pooling: usize,
    /// `max_soft_tokens` (one of [`SUPPORTED_SOFT_TOKENS`]).
    pub max_soft_tokens: usize,
    pub do_resize: bool,
    pub filter: Filter,
    pub normalization: Normalization,
}

impl Gemma4Processor {
    /// Reads `preprocessor_config.json` (class defaults: patch 16, pooling 3, 280 soft tokens,
    /// bicubic, rescale 1/255, no normalization); `patch_size` and `pooling_kernel_size` must
    /// be the vision tower's (config.json), or the tower could not pool the patches.
    pub fn from_config(
        pre: &ConfigObject,
        patch: usize,
        pooling: usize,
    ) -> Result<Gemma4Processor> {
        let patch_size = pre.positive_or("patch_size", 16, MAX_PATCH)?;
        let pooling_kernel_size = pre.positive_or("pooling_kernel_size", 3, MAX_PATCH)?;
        if (patch_size, pooling_kernel_size) != (patch, pooling) {
            return Err(Error::bad_config(format!(
                "{}: patch_size {patch_size} and pooling_kernel_size {pooling_kernel_size} do not \
                 match the vision tower's {patch} and {pooling} (config.json vision_config)",
                pre.location()
            )));
        }
        let max_soft_tokens =
            pre.positive_or("max_soft_tokens", DEFAULT_MAX_SOFT_TOKENS, usize::MAX >> 1)?;
        check_soft_tokens(max_soft_tokens, pre.location())
            .map_err(|e| Error::bad_config(e.message().to_string()))?;
        let mut normalization = read_normalization(pre, [0.0; 3], [1.0; 3])?;
        if !pre.contains("do_normalize") {
            // The class default is do_normalize = False.
            normalization.mean_std = None;
        }
        Ok(Gemma4Processor {
            patch_size,
            pooling,
            max_soft_tokens,
            do_resize: pre.bool_or("do_resize", true)?,
            filter: read_filter(pre, Filter::Bicubic)?,
            normalization,
        })
    }

    /// The soft-token budget of a call: the override in `opts`, else the config's.
    pub fn budget(&self, opts: &PreprocessOptions) -> Result<usize> {
        let budget = opts.max_soft_tokens.unwrap_or(self.max_soft_tokens);
        check_soft_tokens(budget, "vt_preprocess_params")?;
        Ok(budget)
    }

    /// The `(height, width)` an image of `width` x `height` becomes with `budget` soft tokens.
    pub fn target_size(
        &self,
        width: usize,
        height: usize,
        budget: usize,
    ) -> Result<(usize, usize)> {
        let k = self.pooling;
        let max_patches = budget * k * k;
        if self.do_resize {
            return aspect_ratio_preserving_size(height, width, self.patch_size, max_patches, k);
        }
        let side = k * self.patch_size;
        let patches = (height / self.patch_size) * (width / self.patch_size);
        if height % side != 0 || width % side != 0 || height < side || patches > max_patches {
            return Err(Error::invalid_argument(format!(
                "image is {width}x{height}; with do_resize=false in preprocessor_config.json the \
                 sides must be non-zero multiples of pooling_kernel_size * patch_size = {side} \
                 and hold at most {max_patches} patches"
            )));
        }
        Ok((height, width))
    }

    /// Resizes, rescales and patchifies an image: `[budget * k², 3 * patch²]` rows (patch
    /// rows in raster order, then zero padding), token grid `[1, rows / k, cols / k]` in
    /// patches. Everything is checked against `limits` before it is allocated.
    pub fn process(
        &self,
        image: &RgbImage,
        opts: &PreprocessOptions,
        limits: &Limits,
    ) -> Result<Pixels> {
        let budget = self.budget(opts)?;
        let (p, k) = (self.patch_size, self.pooling);
        // The padded output holds the whole budget of patches: bound it like an image of
        // that many pixels before anything is sized from it.
        let budget_pixels = (budget as u64)
            .saturating_mul((k * k) as u64)
            .saturating_mul((p * p) as u64);
        limits.check_image(
            "the patch budget (max_soft_tokens * pooling_kernel_size² patches)",
            budget_pixels,
            1,
        )?;
        let (w0, h0) = (image.width as usize, image.height as usize);
        let (h, w) = self.target_size(w0, h0, budget)?;
        let (ph, pw) = (h / p, w / p);
        let tokens = ((ph / k) * (pw / k)) as u64;
        limits.check_tokens(tokens, &|| {
            format!("a {w0}x{h0} image resized to {w}x{h} (max_soft_tokens {budget})")
        })?;
        limits.check_image("the resized image", w as u64, h as u64)?;
        let resized;
        let image = if (w0, h0) == (w, h) {
            image
        } else {
            let conv = |v: usize| {
                u32::try_from(v).map_err(|_| Error::invalid_argument("resized size overflows"))
            };
            resized = resize(image, conv(w)?, conv(h)?, self.filter, limits)?;
            &resized
        };
        let chw = self.normalization.to_chw(image)?;
        let max_patches = budget * k * k;
        let dim = 3 * p * p;
        let mut data = try_filled(max_patches * dim, 0f32, "the patch rows")?;
        patch_rows(&chw, h, w, p, &mut data);
        Ok(Pixels {
            data,
            shape: vec![max_patches, dim],
            grid: [1, ph / k, pw / k],
            extra: Vec::new(),
        })
    }
}

/// Cuts a `[3, h, w]` plane into `(y, x, channel)` patch rows of `p x p` in raster order
/// (`convert_video_to_patches`), into the front of `out`.
pub(crate) fn patch_rows(chw: &[f32], h: usize, w: usize, p: usize, out: &mut [f32]) {
    let (ph, pw) = (h / p, w / p);
    let plane = h * w;
    let dim = 3 * p * p;
    for (row, dst) in out.chunks_exact_mut(dim).take(ph * pw).enumerate() {
        let (py, px) = (row / pw, row % pw);
        for y in 0..p {
            for x in 0..p {
                let src = (py * p + y) * w + px * p + x;
                let o = (y * p + x) * 3;
                for c in 0..3 {
                    dst[o + c] = chw[c * plane + src];
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_match_python() {
        // Values from transformers' get_aspect_ratio_preserving_size.
        let s = |h, w, p, m, k| aspect_ratio_preserving_size(h, w, p, m, k).unwrap();
        // patch 16, pooling 3, 280 tokens -> 2520 patches.
        assert_eq!(s(480, 640, 16, 2520, 3), (672, 912));
        assert_eq!(s(1080, 1920, 16, 2520, 3), (576, 1056));
        assert_eq!(s(1, 1, 16, 2520, 3), (768, 768));
        // a strip: the height rounds to 0, the width is capped at 280 windows.
        assert_eq!(s(4, 20000, 16, 2520, 3), (48, 13440));
        assert_eq!(s(6, 300, 4, 280, 2), (8, 472));
        assert_eq!(s(3, 600, 4, 280, 2), (8, 560));
        assert_eq!(s(300, 6, 4, 280, 2), (472, 8));
        assert!(aspect_ratio_preserving_size(0, 5, 16, 2520, 3).is_err());
    }

    #[test]
    fn budgets_outside_the_set_are_refused() {
        for ok in SUPPORTED_SOFT_TOKENS {
            assert!(check_soft_tokens(ok, "x").is_ok());
        }
        for bad in [0, 69, 71, 256, 2240] {
            let e = check_soft_tokens(bad, "x").unwrap_err();
            assert!(e.message().contains("70, 140, 280, 560, 1120"), "{e}");
        }
    }
}
