//! `PixtralImageProcessor` (PIL backend, `image_processing_pil_pixtral.py`), as driven by
//! `PixtralProcessor` (`processing_pixtral.py`): keep the aspect ratio, shrink so that the
//! image fits `size` (`longest_edge`), round each side *up* to a multiple of the patch
//! window, resize with PIL (bicubic by default), rescale, normalize. No crop, no padding
//! (the reference pads only to batch images of different sizes together).
//!
//! The geometry of transformers 5.23 (`get_resize_output_image_size`):
//! `ratio = max(h / max_h, w / max_w)`; if `ratio > 1`: `h = floor(h / ratio)`,
//! `w = floor(w / ratio)`; then `H = ((h - 1) // p + 1) * p` and likewise `W`, where `p` is the
//! rounding multiple: `PixtralProcessor` passes `patch_size * spatial_merge_size` (14 × 2 = 28
//! for Mistral3), overriding the image processor's own `patch_size`.

use crate::config::ConfigObject;
use crate::error::{Error, Result};
use crate::preprocess::normalize::Normalization;
use crate::preprocess::resample::{resize, Filter};
use crate::preprocess::siglip::{read_filter, read_normalization};
use crate::preprocess::{Limits, Pixels, RgbImage};

/// Largest accepted `longest_edge` (a real one is 1024 or 1540).
pub(crate) const MAX_SIDE: usize = 16384;

/// `OPENAI_CLIP_MEAN` / `OPENAI_CLIP_STD`, the Pixtral processor's defaults.
pub(crate) const CLIP_MEAN: [f64; 3] = [0.48145466, 0.4578275, 0.40821073];
pub(crate) const CLIP_STD: [f64; 3] = [0.26862954, 0.26130258, 0.27577711];

/// Reads a patch size given as an integer or as `{"height": p, "width": p}`.
pub fn read_patch_size(cfg: &ConfigObject, key: &str) -> Result<Option<usize>> {
    if let Some(obj) = cfg.object(key).ok().flatten() {
        let h = obj.usize_max("height", MAX_SIDE)?;
        let w = obj.usize_max("width", MAX_SIDE)?;
        return match (h, w) {
            (Some(h), Some(w)) if h == w && h > 0 => Ok(Some(h)),
            _ => Err(Error::bad_config(format!(
                "{}: `{key}` must be a positive integer or a square {{height, width}} (found {h:?} x {w:?})",
                cfg.location()
            ))),
        };
    }
    match cfg.usize_max(key, MAX_SIDE)? {
        Some(0) => Err(Error::bad_config(format!(
            "{}: `{key}` must be positive",
            cfg.location()
        ))),
        other => Ok(other),
    }
}

/// Reads `size` as `{"longest_edge": e}`, `{"height": h, "width": w}` or one integer, giving
/// the largest `(height, width)`; the class default is `longest_edge` 1024.
fn read_max_size(pre: &ConfigObject) -> Result<(usize, usize)> {
    let bad = |what: &str| {
        Error::bad_config(format!(
            "{}: `size` {what} (expected {{\"longest_edge\": n}} or {{\"height\": h, \"width\": w}})",
            pre.location()
        ))
    };
    if let Some(obj) = pre.object("size").ok().flatten() {
        if let Some(e) = obj.usize_max("longest_edge", MAX_SIDE)? {
            if e > 0 {
                return Ok((e, e));
            }
        }
        return match (
            obj.usize_max("height", MAX_SIDE)?,
            obj.usize_max("width", MAX_SIDE)?,
        ) {
            (Some(h), Some(w)) if h > 0 && w > 0 => Ok((h, w)),
            _ => Err(bad(
                "has no positive `longest_edge` nor `height` and `width`",
            )),
        };
    }
    match pre.usize_max("size", MAX_SIDE)? {
        Some(0) => Err(bad("is 0")),
        Some(s) => Ok((s, s)),
        None => Ok((1024, 1024)),
    }
}

/// The Pixtral image processor with the rounding multiple its processor uses.
#[derive(Debug, Clone)]
pub struct LongestEdgeProcessor {
    /// Largest output `(height, width)` before rounding.
    pub max_size: (usize, usize),
    /// Each output side is rounded up to a multiple of this.
    pub round_to: usize,
    pub do_resize: bool,
    pub filter: Filter,
    pub normalization: Normalization,
    /// The tower's patch size and the projector's merge factor: an `H x W` input yields a
    /// `(H / patch / merge) x (W / patch / merge)` grid of embeddings (integer divisions).
    pub patch: usize,
    pub merge: usize,
}

impl LongestEdgeProcessor {
    /// Reads the image processor settings `pre`; `round_to` is the processor's rounding
    /// multiple, `patch` and `merge` the model's.
    pub fn from_config(
        pre: &ConfigObject,
        round_to: usize,
        patch: usize,
        merge: usize,
    ) -> Result<LongestEdgeProcessor> {
        if pre.bool_or("do_center_crop", false)? {
            return Err(Error::bad_config(format!(
                "{}: `do_center_crop` true is not supported for Pixtral-style preprocessing",
                pre.location()
            )));
        }
        if round_to == 0 || patch == 0 || merge == 0 {
            return Err(Error::bad_config("patch and merge sizes must be positive"));
        }
        Ok(LongestEdgeProcessor {
            max_size: read_max_size(pre)?,
            round_to,
            do_resize: pre.bool_or("do_resize", true)?,
            filter: read_filter(pre, Filter::Bicubic)?,
            normalization: read_normalization(pre, CLIP_MEAN, CLIP_STD)?,
            patch,
            merge,
        })
    }

    /// The size `(width, height)` an image of `width x height` is resized to.
    pub fn target_size(&self, width: u32, height: u32) -> Result<(u32, u32)> {
        if !self.do_resize {
            return Ok((width, height));
        }
        let (max_h, max_w) = self.max_size;
        let (mut h, mut w) = (height as usize, width as usize);
        let ratio = f64::max(h as f64 / max_h as f64, w as f64 / max_w as f64);
        if ratio > 1.0 {
            h = (h as f64 / ratio).floor() as usize;
            w = (w as f64 / ratio).floor() as usize;
        }
        if h == 0 || w == 0 {
            return Err(Error::invalid_argument(format!(
                "image of {width}x{height} has an aspect ratio too extreme for a longest edge of {}: one side shrinks to 0 pixels",
                max_h.max(max_w)
            )));
        }
        let p = self.round_to;
        let round = |v: usize| ((v - 1) / p + 1) * p;
        Ok((round(w) as u32, round(h) as u32))
    }

    /// The embedding grid `(rows, cols)` of a preprocessed `width x height` input.
    pub fn grid(&self, width: usize, height: usize) -> (usize, usize) {
        (
            height / self.patch / self.merge,
            width / self.patch / self.merge,
        )
    }

    /// Resizes and normalizes into `[3, H, W]`, with the grid `[1, rows, cols]`. The token
    /// count is checked against `limits` before anything is allocated.
    pub fn process(&self, image: &RgbImage, limits: &Limits) -> Result<Pixels> {
        let (w, h) = self.target_size(image.width, image.height)?;
        let (rows, cols) = self.grid(w as usize, h as usize);
        if rows == 0 || cols == 0 {
            let win = self.patch * self.merge;
            return Err(Error::invalid_argument(format!(
                "image of {w}x{h} is smaller than one {win}x{win} patch window (preprocessor_config.json sets do_resize=false)"
            )));
        }
        limits.check_tokens((rows * cols) as u64, &|| {
            format!("an input of {w}x{h} ({rows}x{cols} tokens)")
        })?;
        let resized;
        let image = if (w, h) == (image.width, image.height) {
            image
        } else {
            resized = resize(image, w, h, self.filter, limits)?;
            &resized
        };
        Ok(Pixels {
            data: self.normalization.to_chw(image)?,
            shape: vec![3, h as usize, w as usize],
            grid: [1, rows, cols],
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn proc(pre: &str, round_to: usize, patch: usize, merge: usize) -> LongestEdgeProcessor {
        let pre = ConfigObject::parse("preprocessor_config.json", pre).unwrap();
        LongestEdgeProcessor::from_config(&pre, round_to, patch, merge).unwrap()
    }

    #[test]
    fn geometry_matches_the_reference_examples() {
        // spec §4c, reproduced with transformers' get_resize_output_image_size.
        let p12 = proc(r#"{"size": {"longest_edge": 1024}}"#, 16, 16, 1);
        assert_eq!(p12.target_size(1920, 1080).unwrap(), (1024, 576));
        assert_eq!(p12.target_size(640, 480).unwrap(), (640, 480));
        assert_eq!(p12.grid(1024, 576), (36, 64));
        let m3 = proc(r#"{"size": {"longest_edge": 1540}}"#, 28, 14, 2);
        assert_eq!(m3.target_size(1920, 1080).unwrap(), (1540, 868));
        assert_eq!(m3.target_size(640, 480).unwrap(), (644, 504));
        assert_eq!(m3.grid(1540, 868), (31, 55));
        // Tiny images are stretched up to one window; extreme ones fail cleanly.
        assert_eq!(m3.target_size(3, 5).unwrap(), (28, 28));
        assert!(m3.target_size(20000, 5).is_err());
        // Defaults: longest edge 1024.
        let d = proc("{}", 16, 16, 1);
        assert_eq!(d.max_size, (1024, 1024));
        assert_eq!(d.filter, Filter::Bicubic);
        let hw = proc(r#"{"size": {"height": 100, "width": 50}}"#, 10, 10, 1);
        assert_eq!(hw.target_size(200, 200).unwrap(), (50, 50));
    }

    #[test]
    fn config_errors() {
        let pre = |s: &str| ConfigObject::parse("preprocessor_config.json", s).unwrap();
        assert!(LongestEdgeProcessor::from_config(&pre(r#"{"size": {}}"#), 16, 16, 1).is_err());
        assert!(
            LongestEdgeProcessor::from_config(&pre(r#"{"do_center_crop": true}"#), 16, 16, 1)
                .is_err()
        );
        assert_eq!(
            read_patch_size(
                &pre(r#"{"patch_size": {"height": 14, "width": 14}}"#),
                "patch_size"
            )
            .unwrap(),
            Some(14)
        );
        assert!(read_patch_size(
            &pre(r#"{"patch_size": {"height": 14, "width": 16}}"#),
            "patch_size"
        )
        .is_err());
        assert!(read_patch_size(&pre(r#"{"patch_size": 0}"#), "patch_size").is_err());
    }
}
