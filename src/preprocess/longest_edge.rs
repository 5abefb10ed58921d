//! Longest-edge preprocessing (variable resolution): `PixtralImageProcessor` (PIL backend, `image_processing_pil_pixtral.py`), as driven by
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
use crate::preprocess::options::PreprocessOptions;
use crate::preprocess::resample::{resize, Filter};
use crate::preprocess::settings::{
    read_filter, read_normalization, MAX_SIDE, OPENAI_CLIP_MEAN, OPENAI_CLIP_STD,
};
use crate::preprocess::{Limits, Pixels, RgbImage};

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
            normalization: read_normalization(pre, OPENAI_CLIP_MEAN, OPENAI_CLIP_STD)?,
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

    /// The embedding count of a `width x height` image under this processor, or `None` where
    /// an extreme aspect ratio shrinks a side to 0 pixels.
    fn tokens_for(&self, width: u32, height: u32) -> Option<usize> {
        let (w, h) = self.target_size(width, height).ok()?;
        let (rows, cols) = self.grid(w as usize, h as usize);
        Some(rows * cols)
    }

    /// This processor with the per-call overrides: `longest_edge` replaces `size` (as the
    /// reference's `size={"longest_edge": n}` kwarg does); `max_tokens` then lowers the longest
    /// edge to the largest value whose output yields at most that many embeddings (the token
    /// count only grows with the edge, so a binary search finds it). With `do_resize` false
    /// the size is the image's own: both knobs are accepted, and `max_tokens` can only refuse.
    pub fn with_options(
        &self,
        width: u32,
        height: u32,
        o: &PreprocessOptions,
    ) -> Result<LongestEdgeProcessor> {
        let mut p = self.clone();
        if let Some(e) = o.longest_edge {
            p.max_size = (e, e);
        }
        let Some(budget) = o.max_tokens else {
            return Ok(p);
        };
        match p.tokens_for(width, height) {
            // Fits as it is; or no size at all, which `process` reports.
            None => return Ok(p),
            Some(n) if n <= budget => return Ok(p),
            Some(_) => {}
        }
        // `None` (a side shrunk to 0) counts as fitting: it happens only below every size
        // that works, so when the largest fitting edge gives `None`, nothing fits.
        let fits =
            |q: &LongestEdgeProcessor| q.tokens_for(width, height).is_none_or(|n| n <= budget);
        let (max_h, max_w) = p.max_size;
        let capped = |e: usize| {
            let mut q = p.clone();
            q.max_size = (e.min(max_h), e.min(max_w));
            q
        };
        // Largest e in [1, max(max_h, max_w)] with fits(capped(e)); fits(capped(0)) holds.
        let (mut lo, mut hi) = (0usize, max_h.max(max_w));
        while lo < hi {
            let mid = lo + (hi - lo).div_ceil(2);
            if fits(&capped(mid)) {
                lo = mid;
            } else {
                hi = mid - 1;
            }
        }
        let q = capped(lo);
        match (lo, q.tokens_for(width, height)) {
            (1.., Some(n)) if n <= budget => Ok(q),
            _ => Err(Error::invalid_argument(format!(
                "no size of this {width}x{height} image yields at most max_tokens = {budget} \
                 embeddings: the smallest window grid of its aspect ratio has {}",
                smallest_grid(&p, width, height)
            ))),
        }
    }

    /// [`LongestEdgeProcessor::process`] with per-call overrides
    /// ([`LongestEdgeProcessor::with_options`]).
    pub fn process_with(
        &self,
        image: &RgbImage,
        o: &PreprocessOptions,
        limits: &Limits,
    ) -> Result<Pixels> {
        self.with_options(image.width, image.height, o)?
            .process(image, limits)
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
            extra: Vec::new(),
        })
    }
}

/// How many embeddings the smallest output of a `width x height` image has (for an error
/// message): the token count at the smallest longest edge that keeps both sides, or a note
/// that none does.
fn smallest_grid(p: &LongestEdgeProcessor, width: u32, height: u32) -> String {
    (1..=p.max_size.0.max(p.max_size.1))
        .find_map(|e| {
            let mut q = p.clone();
            q.max_size = (e.min(p.max_size.0), e.min(p.max_size.1));
            q.tokens_for(width, height)
        })
        .map_or_else(|| "no size at all".to_string(), |n| format!("{n} tokens"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::preprocess::settings::read_patch_size;

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
    fn per_call_longest_edge_and_token_budget() {
        // Mistral3 geometry (window 28); expected sizes worked out by hand from the
        // reference's rule (shrink to fit the edge, floor, round each side up to 28).
        let m3 = proc(r#"{"size": {"longest_edge": 1540}}"#, 28, 14, 2);
        let opts = |edge: Option<usize>, tokens: Option<usize>| PreprocessOptions {
            longest_edge: edge,
            max_tokens: tokens,
            ..PreprocessOptions::default()
        };
        let size = |o: PreprocessOptions, w: u32, h: u32| {
            m3.with_options(w, h, &o).and_then(|p| p.target_size(w, h))
        };
        // 1920x1080 at 640: ratio 3 -> 640x360 -> 644x364, 23x13 = 299 tokens.
        assert_eq!(size(opts(Some(640), None), 1920, 1080).unwrap(), (644, 364));
        // The full size (1540x868, 1705 tokens) fits 1705 unchanged.
        assert_eq!(
            size(opts(None, Some(1705)), 1920, 1080).unwrap(),
            (1540, 868)
        );
        // 299 tokens: the largest edge is 644 (645 gives 672 wide, 24x13 = 312).
        assert_eq!(size(opts(None, Some(299)), 1920, 1080).unwrap(), (644, 364));
        // 298: edges 617..644 give 299; 598..616 give 616x364 = 22x13 = 286.
        assert_eq!(size(opts(None, Some(298)), 1920, 1080).unwrap(), (616, 364));
        assert_eq!(size(opts(None, Some(1)), 1920, 1080).unwrap(), (28, 28));
        // longest_edge and max_tokens together: the budget lowers the given edge.
        assert_eq!(
            size(opts(Some(2000), Some(299)), 1920, 1080).unwrap(),
            (644, 364)
        );
        // 1000x10: the short side survives from edge 100 (112x28, 4 tokens) on.
        assert_eq!(size(opts(None, Some(4)), 1000, 10).unwrap(), (112, 28));
        let e = size(opts(None, Some(3)), 1000, 10).unwrap_err();
        assert!(
            e.message().contains("no size") && e.message().contains("4 tokens"),
            "{e}"
        );
        // No resizing: the budget can only refuse.
        let fixed = proc(r#"{"do_resize": false}"#, 28, 14, 2);
        let o = opts(Some(100), Some(4));
        assert_eq!(
            fixed
                .with_options(56, 56, &o)
                .unwrap()
                .target_size(56, 56)
                .unwrap(),
            (56, 56)
        );
        assert!(fixed.with_options(84, 56, &o).is_err());
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
