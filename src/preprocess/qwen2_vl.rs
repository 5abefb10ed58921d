//! `Qwen2VLImageProcessor` (PIL backend, `image_processing_pil_qwen2_vl.py`), used by
//! Qwen2-VL and Qwen2.5-VL: `smart_resize` to multiples of `patch_size * merge_size` within
//! `[min_pixels, max_pixels]`, bicubic resize, rescale, normalize, then the flattening into
//! patch rows that the tower's Conv3d reads: the still image is repeated over
//! `temporal_patch_size` frames. Its variants by [`ResizeRule`]: GLM-4.xV's size rule, and
//! PaddleOCR-VL's processor (torchvision backend, raster-order rows).

use crate::config::ConfigObject;
use crate::error::{Error, Result};
use crate::preprocess::limits::try_with_capacity;
use crate::preprocess::normalize::Normalization;
use crate::preprocess::resample::{resize, Filter};
use crate::preprocess::settings::{
    read_filter, read_normalization, OPENAI_CLIP_MEAN, OPENAI_CLIP_STD,
};
use crate::preprocess::smart_resize;
use crate::preprocess::tv_resize::{resize_tv, TvInterpolation};
use crate::preprocess::{Limits, Pixels, RgbImage};

/// The class defaults of `size`: `shortest_edge` = 56·56, `longest_edge` = 28·28·1280.
const DEFAULT_MIN_PIXELS: usize = 56 * 56;
const DEFAULT_MAX_PIXELS: usize = 28 * 28 * 1280;
/// `Glm4vImageProcessor`'s class `size`: 112·112 .. 28·28·15000.
const GLM_DEFAULT_MIN_PIXELS: usize = 112 * 112;
const GLM_DEFAULT_MAX_PIXELS: usize = 28 * 28 * 15000;
/// `PaddleOCRVLImageProcessor`'s class `size`: 384·384 .. 1536·1536.
const PADDLE_DEFAULT_MIN_PIXELS: usize = 384 * 384;
const PADDLE_DEFAULT_MAX_PIXELS: usize = 1536 * 1536;
/// Largest accepted `max_pixels` (the released checkpoints use 12845056 = 2^23.6).
const MAX_PIXELS_LIMIT: usize = 1 << 28;
/// Largest accepted patch / merge / temporal sizes.
const MAX_PATCH: usize = 1024;

/// The geometry the processor and the tower must agree on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PatchGeometry {
    pub patch_size: usize,
    pub merge_size: usize,
    pub temporal_patch_size: usize,
}

impl PatchGeometry {
    /// Resize granularity: `patch_size * merge_size`.
    pub fn factor(&self) -> usize {
        self.patch_size * self.merge_size
    }

    /// Values per patch row: `3 * temporal_patch_size * patch_size²`.
    pub fn patch_dim(&self) -> usize {
        3 * self.temporal_patch_size * self.patch_size * self.patch_size
    }
}

/// Which `smart_resize` a processor runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResizeRule {
    /// `Qwen2VLImageProcessor`'s ([`smart_resize::qwen`]): the pixel bounds count one frame.
    Qwen,
    /// `Glm4vImageProcessor`'s ([`smart_resize::glm`]): images narrower than the
    /// factor are scaled up first, and the bounds count `temporal_patch_size` frames.
    Glm4v,
    /// `PaddleOCRVLImageProcessor`'s ([`smart_resize::paddleocr_vl`]): its own rule
    /// (a side below the factor is set to it first), and the class's torchvision backend:
    /// antialiased `uint8` resize, fused f32 rescale-normalize, patch rows in raster order.
    PaddleOcr,
}

impl ResizeRule {
    /// The class `size` bounds `(shortest_edge, longest_edge)`.
    fn default_bounds(self) -> (usize, usize) {
        match self {
            ResizeRule::Qwen => (DEFAULT_MIN_PIXELS, DEFAULT_MAX_PIXELS),
            ResizeRule::Glm4v => (GLM_DEFAULT_MIN_PIXELS, GLM_DEFAULT_MAX_PIXELS),
            ResizeRule::PaddleOcr => (PADDLE_DEFAULT_MIN_PIXELS, PADDLE_DEFAULT_MAX_PIXELS),
        }
    }

    /// The class default of `temporal_patch_size`.
    fn default_temporal(self) -> usize {
        match self {
            ResizeRule::PaddleOcr => 1,
            _ => 2,
        }
    }
}

/// The processor, configured from `preprocessor_config.json`.
#[derive(Debug, Clone)]
pub struct QwenImageProcessor {
    pub geometry: PatchGeometry,
    /// The resize rule of the processor class.
    pub rule: ResizeRule,
    /// `size.shortest_edge` (or the legacy top-level `min_pixels`, which wins).
    pub min_pixels: usize,
    /// `size.longest_edge` (or the legacy top-level `max_pixels`, which wins).
    pub max_pixels: usize,
    pub do_resize: bool,
    pub filter: Filter,
    pub normalization: Normalization,
}

/// A pixel count from the preprocessor config: present, positive and not absurd.
fn pixel_count(pre: &ConfigObject, key: &str) -> Result<Option<usize>> {
    match pre.usize_max(key, MAX_PIXELS_LIMIT)? {
        Some(0) => Err(Error::bad_config(format!(
            "{}: `{key}` must be positive",
            pre.location()
        ))),
        other => Ok(other),
    }
}

impl QwenImageProcessor {
    /// Reads `preprocessor_config.json`; `model` is the tower's geometry, which the
    /// processor's `patch_size`, `merge_size` and `temporal_patch_size` (class defaults 14, 2,
    /// 2) must match.
    pub fn from_config(pre: &ConfigObject, model: PatchGeometry) -> Result<QwenImageProcessor> {
        Self::from_config_with(pre, model, ResizeRule::Qwen)
    }

    /// [`QwenImageProcessor::from_config`] for the processor class whose resize rule is
    /// `rule`: `Qwen2VLImageProcessor` (class `size` 56·56 .. 28·28·1280; legacy top-level
    /// `min_pixels` / `max_pixels` win over `size`), `Glm4vImageProcessor` (class `size`
    /// 112·112 .. 28·28·15000; no legacy keys: the class has no such attributes, and a `size`
    /// without both edges fails in the reference at the first call) or
    /// `PaddleOCRVLImageProcessor` (class `size` 384·384 .. 1536·1536, legacy keys as
    /// Qwen's, `temporal_patch_size` 1, a resample torchvision has: bilinear or bicubic).
    pub fn from_config_with(
        pre: &ConfigObject,
        model: PatchGeometry,
        rule: ResizeRule,
    ) -> Result<QwenImageProcessor> {
        let geometry = PatchGeometry {
            patch_size: pre.positive_or("patch_size", 14, MAX_PATCH)?,
            merge_size: pre.positive_or("merge_size", 2, MAX_PATCH)?,
            temporal_patch_size: pre.positive_or(
                "temporal_patch_size",
                rule.default_temporal(),
                MAX_PATCH,
            )?,
        };
        if geometry != model {
            return Err(Error::bad_config(format!(
                "{}: patch_size {}, merge_size {}, temporal_patch_size {} do not match the vision \
                 tower's {}, {}, {} (config.json)",
                pre.location(),
                geometry.patch_size,
                geometry.merge_size,
                geometry.temporal_patch_size,
                model.patch_size,
                model.merge_size,
                model.temporal_patch_size
            )));
        }
        // `size` = {shortest_edge: min_pixels, longest_edge: max_pixels} (5.x); legacy
        // top-level `min_pixels` / `max_pixels` override it, as the processor's __init__ does.
        let legacy = rule != ResizeRule::Glm4v;
        let (mut min_pixels, mut max_pixels) = rule.default_bounds();
        if let Some(size) = pre.object("size")? {
            match (
                pixel_count(&size, "shortest_edge")?,
                pixel_count(&size, "longest_edge")?,
            ) {
                (Some(lo), Some(hi)) => (min_pixels, max_pixels) = (lo, hi),
                _ if legacy && pre.contains("min_pixels") && pre.contains("max_pixels") => {}
                _ => {
                    return Err(Error::bad_config(format!(
                    "{}: `size` must have `shortest_edge` and `longest_edge` (min and max pixels)",
                    pre.location()
                )))
                }
            }
        }
        if legacy {
            if let Some(v) = pixel_count(pre, "min_pixels")? {
                min_pixels = v;
            }
            if let Some(v) = pixel_count(pre, "max_pixels")? {
                max_pixels = v;
            }
        }
        if min_pixels > max_pixels {
            return Err(Error::bad_config(format!(
                "{}: min_pixels {min_pixels} is above max_pixels {max_pixels} (`size` \
                 shortest_edge / longest_edge, or the top-level keys)",
                pre.location()
            )));
        }
        let filter = read_filter(pre, Filter::Bicubic)?;
        if rule == ResizeRule::PaddleOcr && TvInterpolation::from_filter(filter).is_none() {
            return Err(Error::bad_config(format!(
                "{}: resample {filter:?} is not supported for this processor's torchvision \
                 backend (bilinear or bicubic)",
                pre.location()
            )));
        }
        Ok(QwenImageProcessor {
            geometry,
            rule,
            min_pixels,
            max_pixels,
            do_resize: pre.bool_or("do_resize", true)?,
            filter,
            normalization: read_normalization(pre, OPENAI_CLIP_MEAN, OPENAI_CLIP_STD)?,
        })
    }

    /// The `(height, width)` an image of `width` x `height` is resized to.
    pub fn target_size(&self, width: usize, height: usize) -> Result<(usize, usize)> {
        if !self.do_resize {
            let f = self.geometry.factor();
            if height % f != 0 || width % f != 0 {
                return Err(Error::invalid_argument(format!(
                    "image is {width}x{height}, preprocessor_config.json sets do_resize=false and \
                     the tower needs sides that are multiples of {f}"
                )));
            }
            return Ok((height, width));
        }
        let f = self.geometry.factor();
        match self.rule {
            ResizeRule::Qwen => {
                smart_resize::qwen(height, width, f, self.min_pixels, self.max_pixels)
            }
            ResizeRule::Glm4v => smart_resize::glm(
                height,
                width,
                f,
                self.geometry.temporal_patch_size,
                self.min_pixels,
                self.max_pixels,
            ),
            ResizeRule::PaddleOcr => {
                smart_resize::paddleocr_vl(height, width, f, self.min_pixels, self.max_pixels)
            }
        }
    }

    /// Pixels of the bounds one output token stands for: `(patch * merge)²`, times
    /// `temporal_patch_size` for the GLM rule (whose bounds count every frame).
    fn pixels_per_token(&self) -> usize {
        let f = self.geometry.factor();
        match self.rule {
            ResizeRule::Qwen | ResizeRule::PaddleOcr => f * f,
            ResizeRule::Glm4v => f * f * self.geometry.temporal_patch_size,
        }
    }

    /// [`QwenImageProcessor::process`] with the per-call knobs of `opts`: `min_pixels` and
    /// `max_pixels` replace the configured bounds as the processor's call kwargs do (each
    /// alone keeps the other's configured value; GLM: `size={"shortest_edge", "longest_edge"}`);
    /// `max_tokens` lowers `max_pixels` to `max_tokens * (patch * merge)^2` (GLM: times
    /// `temporal_patch_size`), the largest pixel count `smart_resize` keeps within it, and
    /// refuses an image that still yields more (extreme aspect ratios).
    pub fn process_with(
        &self,
        image: &RgbImage,
        opts: &crate::preprocess::PreprocessOptions,
        limits: &Limits,
    ) -> Result<Pixels> {
        let mut p = self.clone();
        if let Some(v) = opts.min_pixels {
            p.min_pixels = v.min(MAX_PIXELS_LIMIT);
        }
        if let Some(v) = opts.max_pixels {
            p.max_pixels = v.min(MAX_PIXELS_LIMIT);
        }
        let f = self.geometry.factor();
        if let Some(t) = opts.max_tokens {
            p.max_pixels = p.max_pixels.min(t.saturating_mul(self.pixels_per_token()));
        }
        if let Some(t) = opts.max_tokens {
            let (h, w) = p.target_size(image.width as usize, image.height as usize)?;
            let tokens = (h / f) * (w / f);
            if tokens > t {
                return Err(Error::invalid_argument(format!(
                    "no size of this {}x{} image yields at most max_tokens = {t} embeddings: \
                     the smallest the processor's resize rule allows gives {tokens}",
                    image.width, image.height
                )));
            }
        }
        p.process(image, limits)
    }

    /// Resizes, rescales and normalizes an image and flattens it into
    /// `[grid_h * grid_w, 3 * temporal * patch²]` patch rows (`pixel_values`); the token grid
    /// is `[1, grid_h / merge, grid_w / merge]`. The token count is checked against `limits`
    /// before anything is allocated.
    pub fn process(&self, image: &RgbImage, limits: &Limits) -> Result<Pixels> {
        let (h, w) = self.target_size(image.width as usize, image.height as usize)?;
        let f = self.geometry.factor();
        let tokens = (h / f) as u64 * (w / f) as u64;
        limits.check_tokens(tokens, &|| {
            format!(
                "a {}x{} image resized to {w}x{h} (min_pixels {}, max_pixels {})",
                image.width, image.height, self.min_pixels, self.max_pixels
            )
        })?;
        let resized;
        let image = if (image.width as usize, image.height as usize) == (w, h) {
            image
        } else {
            let (w32, h32) = (
                u32::try_from(w).map_err(|_| Error::invalid_argument("resized width overflows"))?,
                u32::try_from(h)
                    .map_err(|_| Error::invalid_argument("resized height overflows"))?,
            );
            resized = match TvInterpolation::from_filter(self.filter) {
                Some(interp) if self.rule == ResizeRule::PaddleOcr => {
                    limits.check_image("the resized image", w as u64, h as u64)?;
                    resize_tv(image, w32, h32, interp, limits)?
                }
                _ => resize(image, w32, h32, self.filter, limits)?,
            };
            &resized
        };
        if self.rule == ResizeRule::PaddleOcr {
            return self.patchify_raster(image, h, w);
        }
        let chw = self.normalization.to_chw(image)?;
        self.patchify(&[&chw], h, w)
    }

    /// `PaddleOCRVLImageProcessor`'s normalization and layout: rescale and normalize fused
    /// in f32 (the torchvision backend's), then `[grid_h * grid_w, 3 * temporal * patch²]`
    /// rows in raster order, each `(channel, frame, y, x)`; the token grid is
    /// `[1, grid_h / merge, grid_w / merge]`.
    fn patchify_raster(&self, image: &RgbImage, h: usize, w: usize) -> Result<Pixels> {
        let n = &self.normalization;
        let widen = |v: [f32; 3]| v.map(f64::from);
        let chw = crate::preprocess::normalize::tv_normalize(
            image,
            n.rescale,
            n.mean_std.map(|(m, s)| (widen(m), widen(s))),
        )?;
        let raster = PatchGeometry {
            merge_size: 1,
            ..self.geometry
        };
        let mut px = Self::patchify_frames(raster, &[&chw], h, w)?;
        let m = self.geometry.merge_size;
        px.grid = [px.grid[0], px.grid[1] / m, px.grid[2] / m];
        Ok(px)
    }

    /// Flattens normalized `[3, h, w]` frames into patch rows (`Qwen2VLImageProcessor`'s
    /// patch layout): rows in the order (frame group, block row, block column, row in block,
    /// column in block), each row `(channel, frame, y, x)`. A single frame is repeated
    /// `temporal_patch_size` times.
    fn patchify(&self, frames: &[&[f32]], h: usize, w: usize) -> Result<Pixels> {
        Self::patchify_frames(self.geometry, frames, h, w)
    }

    /// [`QwenImageProcessor::patchify`] for any geometry (the video processors' too).
    pub(crate) fn patchify_frames(
        geometry: PatchGeometry,
        frames: &[&[f32]],
        h: usize,
        w: usize,
    ) -> Result<Pixels> {
        let PatchGeometry {
            patch_size: p,
            merge_size: m,
            temporal_patch_size: t,
        } = geometry;
        let (gh, gw) = (h / p, w / p);
        let groups = frames.len().div_ceil(t);
        let dim = geometry.patch_dim();
        let plane = h * w;
        let mut data = try_with_capacity(groups * gh * gw * dim, "the patch rows")?;
        for g in 0..groups {
            for bh in 0..gh / m {
                for bw in 0..gw / m {
                    for mh in 0..m {
                        for mw in 0..m {
                            let (r, c) = (bh * m + mh, bw * m + mw);
                            for ch in 0..3 {
                                for ti in 0..t {
                                    // A short last group repeats its last frame.
                                    let frame = frames[(g * t + ti).min(frames.len() - 1)];
                                    let base = ch * plane + r * p * w + c * p;
                                    for y in 0..p {
                                        let row = base + y * w;
                                        data.extend_from_slice(&frame[row..row + p]);
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
        Ok(Pixels {
            data,
            shape: vec![groups * gh * gw, dim],
            grid: [groups, gh / m, gw / m],
            extra: Vec::new(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn processor(p: usize, m: usize, t: usize) -> QwenImageProcessor {
        QwenImageProcessor {
            geometry: PatchGeometry {
                patch_size: p,
                merge_size: m,
                temporal_patch_size: t,
            },
            rule: ResizeRule::Qwen,
            min_pixels: 1,
            max_pixels: 1 << 20,
            do_resize: false,
            filter: Filter::Bicubic,
            normalization: Normalization {
                rescale: None,
                mean_std: None,
            },
        }
    }

    #[test]
    fn patch_rows_follow_the_merge_blocks() {
        // 4x4 image, patch 1, merge 2: rows in block order, each (channel, frame).
        let proc = processor(1, 2, 2);
        let plane: Vec<f32> = (0..48).map(|v| v as f32).collect();
        let px = proc.patchify(&[&plane], 4, 4).unwrap();
        assert_eq!(px.shape, vec![16, 6]);
        assert_eq!(px.grid, [1, 2, 2]);
        let row = |i: usize| &px.data[i * 6..(i + 1) * 6];
        // Row 0 = pixel (0,0); row 1 = (0,1); row 2 = (1,0); row 4 = (0,2) (next block).
        assert_eq!(row(0), &[0., 0., 16., 16., 32., 32.]);
        assert_eq!(row(1), &[1., 1., 17., 17., 33., 33.]);
        assert_eq!(row(2), &[4., 4., 20., 20., 36., 36.]);
        assert_eq!(row(4), &[2., 2., 18., 18., 34., 34.]);
        assert_eq!(row(15), &[15., 15., 31., 31., 47., 47.]);
    }

    #[test]
    fn config_forms() {
        let geo = PatchGeometry {
            patch_size: 8,
            merge_size: 2,
            temporal_patch_size: 2,
        };
        let parse = |s: &str| ConfigObject::parse("preprocessor_config.json", s).unwrap();
        let base = r#""patch_size": 8, "merge_size": 2, "temporal_patch_size": 2"#;
        let p = QwenImageProcessor::from_config(
            &parse(&format!(
                r#"{{{base}, "size": {{"shortest_edge": 10, "longest_edge": 20}}}}"#
            )),
            geo,
        )
        .unwrap();
        assert_eq!((p.min_pixels, p.max_pixels), (10, 20));
        let p = QwenImageProcessor::from_config(
            &parse(&format!(
                r#"{{{base}, "size": {{"shortest_edge": 10, "longest_edge": 20}}, "min_pixels": 5, "max_pixels": 50}}"#
            )),
            geo,
        )
        .unwrap();
        assert_eq!((p.min_pixels, p.max_pixels), (5, 50));
        let p = QwenImageProcessor::from_config(&parse(&format!("{{{base}}}")), geo).unwrap();
        assert_eq!((p.min_pixels, p.max_pixels), (3136, 1003520));
        assert_eq!(p.filter, Filter::Bicubic);
        let e = QwenImageProcessor::from_config(
            &parse(&format!(
                r#"{{{base}, "size": {{"height": 10, "width": 20}}}}"#
            )),
            geo,
        )
        .unwrap_err();
        assert!(e.message().contains("shortest_edge"), "{e}");
        let e = QwenImageProcessor::from_config(&parse(r#"{"patch_size": 14}"#), geo).unwrap_err();
        assert!(e.message().contains("do not match"), "{e}");
    }
}
