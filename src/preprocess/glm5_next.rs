//! `Glm5NextImageProcessor` (PIL backend, `image_processing_pil_glm5_next.py`), GLM-5.x
//! Next's: a token budget instead of pixel bounds, and padding instead of a stretch.
//!
//! 1. [`smart_resize`] gives the canvas: both sides rounded **up** to `patch · merge`, within
//!    `min_image_tokens ..= max_image_tokens` tokens (class defaults 16 and 8000; a token is
//!    `temporal_patch_size · (patch · merge)²` pixels of the `temporal_patch_size` frames);
//! 2. [`content_size`]: the image is resized (bicubic, Pillow) by `min(H / h, W / w)` — never
//!    up unless it is below `min_image_tokens` — and only when that changes its size;
//! 3. it is padded with zeros (black, before rescale / normalize) on the bottom and right to
//!    the canvas, then rescaled, normalized and cut into Qwen2-VL's patch rows (the still image
//!    repeated over `temporal_patch_size` frames, rows in merge-block order).
//!
//! `size` is not read (the class's `{"longest_edge": 1}` does nothing), nor `patch_expand_factor`.

use crate::config::ConfigObject;
use crate::error::{Error, Result};
use crate::preprocess::normalize::Normalization;
use crate::preprocess::qwen2_vl::{PatchGeometry, QwenImageProcessor};
use crate::preprocess::resample::{resize, Filter};
use crate::preprocess::settings::{
    read_filter, read_matching, read_normalization, OPENAI_CLIP_MEAN, OPENAI_CLIP_STD,
};
use crate::preprocess::{Limits, Pixels, PreprocessOptions, RgbImage};

/// The class defaults of `min_image_tokens` / `max_image_tokens`.
const DEFAULT_MIN_TOKENS: usize = 16;
const DEFAULT_MAX_TOKENS: usize = 8000;
/// Largest accepted token budget.
const MAX_TOKEN_SETTING: usize = 1 << 24;
/// Largest accepted patch / merge / temporal sizes.
const MAX_PATCH: usize = 1024;

/// transformers' `smart_resize(num_frames=temporal, height, width, temporal_factor=temporal,
/// factor, min_pixels=min_tokens, max_pixels=max_tokens)` of `image_processing_pil_glm5_next`:
/// the padded `(height, width)`, multiples of `factor`. With `per = temporal · factor²`:
///
/// 1. each side rounds up to a multiple of `factor`;
/// 2. when `temporal · H · W < min_tokens · per`, `s = sqrt(min_tokens · per / (temporal · h ·
///    w))` and each side is `ceil(side · s)` rounded up;
/// 3. when `temporal · H · W > max_tokens · per`, the bisection over the content height `c`
///    in `1..=h` (width `max(1, floor(w · c / h))`) keeps the last rounded-up pair within
///    the budget (`(factor, factor)` when none is).
pub fn smart_resize(
    height: usize,
    width: usize,
    factor: usize,
    temporal: usize,
    min_tokens: usize,
    max_tokens: usize,
) -> Result<(usize, usize)> {
    if height == 0 || width == 0 || factor == 0 || temporal == 0 || max_tokens == 0 {
        return Err(Error::invalid_argument(format!(
            "smart_resize of a {width}x{height} image with factor {factor}, temporal \
             {temporal}, at most {max_tokens} tokens"
        )));
    }
    let align = |v: u128| v.div_ceil(factor as u128) * factor as u128;
    let (h, w, t) = (height as u128, width as u128, temporal as u128);
    let per = t * (factor as u128) * (factor as u128);
    let (min_px, max_px) = (min_tokens as u128 * per, max_tokens as u128 * per);
    let (mut ah, mut aw) = (align(h), align(w));
    if t * ah * aw < min_px {
        let scale = (min_px as f64 / (t * h * w) as f64).sqrt();
        let up = |side: u128| align(((side as f64 * scale).ceil() as u128).max(1));
        (ah, aw) = (up(h), up(w));
    }
    if t * ah * aw > max_px {
        // max_tokens >= 1: one factor x factor block always fits.
        let (mut low, mut high) = (1u128, h);
        (ah, aw) = (factor as u128, factor as u128);
        while low <= high {
            let c = (low + high) / 2;
            let cw = (((w * c) as f64 / h as f64).floor() as u128).max(1);
            let (ch, cw) = (align(c), align(cw));
            if t * ch * cw <= max_px {
                (ah, aw) = (ch, cw);
                low = c + 1;
            } else {
                high = c - 1;
            }
        }
    }
    let side = |v: u128| usize::try_from(v).ok().filter(|&v| v < 1 << 40);
    match (side(ah), side(aw)) {
        (Some(a), Some(b)) => Ok((a, b)),
        _ => Err(Error::invalid_argument(format!(
            "image of {width}x{height}: smart_resize gives {aw}x{ah}"
        ))),
    }
}

/// The size the image is resized to before padding to `(th, tw)` (`Glm5NextImageProcessorPil.
/// resize`): scale `min(th / h, tw / w)`, at most 1 unless `temporal · h · w` is below
/// `min_tokens` tokens; each side `max(1, min(canvas side, floor(side · scale)))`.
pub fn content_size(
    (height, width): (usize, usize),
    (th, tw): (usize, usize),
    factor: usize,
    temporal: usize,
    min_tokens: usize,
) -> (usize, usize) {
    let (h, w) = (height as f64, width as f64);
    let mut scale = (th as f64 / h).min(tw as f64 / w);
    let per = (temporal * factor * factor) as u128;
    if (temporal * height) as u128 * width as u128 >= per * min_tokens as u128 {
        scale = scale.min(1.0);
    }
    let fit = |side: f64, canvas: usize| ((side * scale).floor() as usize).clamp(1, canvas.max(1));
    (fit(h, th), fit(w, tw))
}

/// The processor, configured from `preprocessor_config.json`.
#[derive(Debug, Clone)]
pub struct Glm5NextImageProcessor {
    pub geometry: PatchGeometry,
    /// `min_image_tokens`.
    pub min_tokens: usize,
    /// `max_image_tokens`.
    pub max_tokens: usize,
    pub do_resize: bool,
    pub filter: Filter,
    pub normalization: Normalization,
}

/// A token count of the config: positive, at most [`MAX_TOKEN_SETTING`].
fn token_setting(pre: &ConfigObject, key: &str, default: usize) -> Result<usize> {
    pre.positive_or(key, default, MAX_TOKEN_SETTING)
}

impl Glm5NextImageProcessor {
    /// Reads `preprocessor_config.json` (or `processor_config.json`'s `image_processor`);
    /// `model` is the tower's geometry, which `patch_size`, `merge_size` and
    /// `temporal_patch_size` (class defaults 14, 2, 2) must match.
    pub fn from_config(pre: &ConfigObject, model: PatchGeometry) -> Result<Self> {
        let tower = |what: &str, v: usize| format!("the vision tower's {what} {v} (config.json)");
        let geometry = PatchGeometry {
            patch_size: read_matching(
                pre,
                "patch_size",
                14,
                MAX_PATCH,
                model.patch_size,
                &tower("patch_size", model.patch_size),
            )?,
            merge_size: read_matching(
                pre,
                "merge_size",
                2,
                MAX_PATCH,
                model.merge_size,
                &tower("spatial_merge_size", model.merge_size),
            )?,
            temporal_patch_size: read_matching(
                pre,
                "temporal_patch_size",
                2,
                MAX_PATCH,
                model.temporal_patch_size,
                &tower("temporal_patch_size", model.temporal_patch_size),
            )?,
        };
        Ok(Glm5NextImageProcessor {
            geometry,
            min_tokens: token_setting(pre, "min_image_tokens", DEFAULT_MIN_TOKENS)?,
            max_tokens: token_setting(pre, "max_image_tokens", DEFAULT_MAX_TOKENS)?,
            do_resize: pre.bool_or("do_resize", true)?,
            filter: read_filter(pre, Filter::Bicubic)?,
            normalization: read_normalization(pre, OPENAI_CLIP_MEAN, OPENAI_CLIP_STD)?,
        })
    }

    /// The canvas `(height, width)` and the content size of a `width` x `height` image.
    pub fn target_size(&self, width: usize, height: usize) -> Result<[(usize, usize); 2]> {
        let f = self.geometry.factor();
        if !self.do_resize {
            if height % f != 0 || width % f != 0 {
                return Err(Error::invalid_argument(format!(
                    "image is {width}x{height}, preprocessor_config.json sets do_resize=false and \
                     the tower needs sides that are multiples of {f}"
                )));
            }
            return Ok([(height, width); 2]);
        }
        let t = self.geometry.temporal_patch_size;
        let canvas = smart_resize(height, width, f, t, self.min_tokens, self.max_tokens)?;
        let content = content_size((height, width), canvas, f, t, self.min_tokens);
        Ok([canvas, content])
    }

    /// [`Glm5NextImageProcessor::process`] with the per-call `max_tokens`: the processor's
    /// `max_image_tokens` kwarg, lowered to it (never raised). The other options are not read.
    pub fn process_with(
        &self,
        image: &RgbImage,
        opts: &PreprocessOptions,
        limits: &Limits,
    ) -> Result<Pixels> {
        let mut p = self.clone();
        if let Some(t) = opts.max_tokens {
            p.max_tokens = p.max_tokens.min(t);
        }
        p.process(image, limits)
    }

    /// Resizes, pads, rescales and normalizes an image and flattens it into
    /// `[grid_h * grid_w, 3 * temporal * patch²]` patch rows; the token grid is
    /// `[1, grid_h / merge, grid_w / merge]`. The token count and each image made are checked
    /// against `limits` before they are allocated.
    pub fn process(&self, image: &RgbImage, limits: &Limits) -> Result<Pixels> {
        let (w0, h0) = (image.width as usize, image.height as usize);
        let [(th, tw), (ch, cw)] = self.target_size(w0, h0)?;
        let f = self.geometry.factor();
        let tokens = (th / f) as u64 * (tw / f) as u64;
        limits.check_tokens(tokens, &|| {
            format!(
                "a {w0}x{h0} image padded to {tw}x{th} (min_image_tokens {}, max_image_tokens {})",
                self.min_tokens, self.max_tokens
            )
        })?;
        let overflow = || Error::invalid_argument("the resized image's size overflows");
        let u32_of = |v: usize| u32::try_from(v).map_err(|_| overflow());
        let resized;
        let content = if (ch, cw) == (h0, w0) {
            image
        } else {
            resized = resize(image, u32_of(cw)?, u32_of(ch)?, self.filter, limits)?;
            &resized
        };
        let padded;
        let canvas = if (ch, cw) == (th, tw) {
            content
        } else {
            let size = (u32_of(tw)?, u32_of(th)?);
            padded = content.place_on(size, (0, 0), [0; 3], limits, "the padded image")?;
            &padded
        };
        let chw = self.normalization.to_chw(canvas)?;
        QwenImageProcessor::patchify_frames(self.geometry, &[&chw], th, tw)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn smart_resize_matches_python() {
        // transformers.models.glm5_next.image_processing_pil_glm5_next.smart_resize(2, h, w, 2,
        // 28, lo, hi), evaluated with CPython.
        let sr = |h, w, lo, hi| smart_resize(h, w, 28, 2, lo, hi).unwrap();
        // Rounded up, within the defaults.
        assert_eq!(sr(1080, 1920, 16, 8000), (1092, 1932));
        assert_eq!(sr(480, 640, 16, 8000), (504, 644));
        // Above max: the bisection.
        assert_eq!(sr(1080, 1920, 16, 1000), (672, 1148));
        assert_eq!(sr(3000, 100, 16, 50), (896, 28));
        // Below min: scaled up by sqrt(min / area).
        assert_eq!(sr(20, 30, 16, 8000), (112, 140));
        assert_eq!(sr(1, 1, 16, 8000), (112, 112));
        // Nothing fits but one block.
        assert_eq!(sr(10, 5000, 16, 1), (28, 28));
        assert!(smart_resize(0, 5, 28, 2, 16, 8000).is_err());
    }

    #[test]
    fn content_size_matches_python() {
        // The fixture's cases (factor 16, min 4 tokens): canvas -> content.
        let cs = |h, w, canvas| content_size((h, w), canvas, 16, 2, 4);
        assert_eq!(cs(24, 40, (32, 48)), (28, 48));
        assert_eq!(cs(30, 30, (32, 32)), (32, 32));
        assert_eq!(cs(20, 12, (48, 32)), (48, 28));
        assert_eq!(cs(70, 100, (48, 64)), (44, 64));
        assert_eq!(cs(61, 37, (64, 48)), (61, 37));
        assert_eq!(cs(20, 180, (16, 144)), (16, 144));
    }

    #[test]
    fn config_defaults_and_checks() {
        let geo = PatchGeometry {
            patch_size: 14,
            merge_size: 2,
            temporal_patch_size: 2,
        };
        let parse = |s: &str| ConfigObject::parse("preprocessor_config.json", s).unwrap();
        let p = Glm5NextImageProcessor::from_config(&parse("{}"), geo).unwrap();
        assert_eq!((p.min_tokens, p.max_tokens), (16, 8000));
        assert_eq!(p.filter, Filter::Bicubic);
        let p = Glm5NextImageProcessor::from_config(
            &parse(r#"{"size": {"longest_edge": 1}, "max_image_tokens": 12}"#),
            geo,
        )
        .unwrap();
        assert_eq!(p.max_tokens, 12);
        for (bad, needle) in [
            (r#"{"max_image_tokens": 0}"#, "max_image_tokens"),
            (r#"{"min_image_tokens": -1}"#, "min_image_tokens"),
            (r#"{"patch_size": 16}"#, "patch_size"),
            (r#"{"merge_size": 4}"#, "merge_size"),
        ] {
            let e = Glm5NextImageProcessor::from_config(&parse(bad), geo).unwrap_err();
            assert!(e.message().contains(needle), "{bad}: {e}");
        }
    }
}
