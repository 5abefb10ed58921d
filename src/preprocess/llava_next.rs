//! `LlavaNextImageProcessor` and `LlavaOnevisionImageProcessor` (PIL backend:
//! `image_processing_pil_llava_next.py`, `image_processing_pil_llava_onevision.py`), the
//! "anyres" processors:
//!
//! 1. the best `image_grid_pinpoints` resolution for the image
//!    ([`crate::preprocess::tiling::best_resolution`]); the image resized into it keeping its
//!    aspect ratio, centered on a black canvas of that size, cut row-major into tiles of the
//!    tower's size ([`crate::preprocess::tiling::cut_anyres`]);
//! 2. before them the base image: the whole image stretched to `size` (`shortest_edge`
//!    squared, or `height` x `width`);
//! 3. every one of these resized by `size` (a no-op for tiles already of that size), center
//!    cropped to `crop_size` (LLaVA-NeXT), rescaled and normalized.
//!
//! The result is `[1 + tiles, 3, S, S]`, the image's rows of the reference `pixel_values`
//! (the reference zero-pads shorter images of a batch to the longest; the model drops those
//! rows again). OneVision processes an image of a multi-image sample differently: padded to
//! a square with the mean color, then the per-tile steps, one tile
//! ([`AnyresProcessor::process`] with `split = false`).

use crate::config::ConfigObject;
use crate::error::{Error, Result};
use crate::preprocess::clip::center_crop;
use crate::preprocess::limits::try_with_capacity;
use crate::preprocess::normalize::Normalization;
use crate::preprocess::resample::{resize, Filter};
use crate::preprocess::settings::{
    read_filter, read_normalization, read_size, ResizeTo, OPENAI_CLIP_MEAN, OPENAI_CLIP_STD,
};
use crate::preprocess::tiling::{best_resolution, cut_anyres, Pinpoint, MAX_TILES};
use crate::preprocess::{Limits, Pixels, RgbImage};

/// Which processor class (they differ in defaults and in multi-image handling).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AnyresKind {
    /// `LlavaNextImageProcessor` (LLaVA-NeXT, LLaVA-NeXT-Video's images).
    Next,
    /// `LlavaOnevisionImageProcessor`.
    OneVision,
}

/// Longest pinpoint list accepted (the released ones have 5 to 36 entries).
const MAX_PINPOINTS: usize = 4096;

/// Reads an `image_grid_pinpoints` list (`[[height, width], ...]`) from `cfg`; `None` when
/// the key is absent or null. Every pinpoint must be a multiple of `tile` on both sides, and
/// the list must not be empty: the model counts `height // tile` x `width // tile` tiles
/// while the processor cuts partial ones, so any other list cannot run.
pub fn read_pinpoints(cfg: &ConfigObject, tile: usize) -> Result<Option<Vec<Pinpoint>>> {
    let key = "image_grid_pinpoints";
    let Some(v) = cfg.value(key).filter(|v| !v.is_null()) else {
        return Ok(None);
    };
    let bad = |what: String| Error::bad_config(format!("{}: `{key}`: {what}", cfg.location()));
    let items = v.as_array().ok_or_else(|| {
        bad(format!(
            "expected a list of [height, width] pairs, found {v}"
        ))
    })?;
    if items.is_empty() {
        return Err(bad("the list is empty".into()));
    }
    if items.len() > MAX_PINPOINTS {
        return Err(bad(format!(
            "{} resolutions (at most {MAX_PINPOINTS})",
            items.len()
        )));
    }
    let side = |x: &serde_json::Value| -> Option<usize> {
        x.as_u64()
            .filter(|&n| n >= 1 && n as usize <= MAX_TILES * tile.max(1))
            .map(|n| n as usize)
    };
    items
        .iter()
        .map(|p| {
            let pair = p.as_array().filter(|a| a.len() == 2);
            let (h, w) = match pair.map(|a| (side(&a[0]), side(&a[1]))) {
                Some((Some(h), Some(w))) => (h, w),
                _ => {
                    return Err(bad(format!(
                        "{p} is not a [height, width] pair of positive integers (at most \
                         {MAX_TILES} tiles a side)"
                    )))
                }
            };
            if h % tile != 0 || w % tile != 0 {
                return Err(bad(format!(
                    "[{h}, {w}] is not a multiple of the {tile}-pixel tile (the model would \
                     count other tiles than the processor cuts)"
                )));
            }
            if (h / tile) * (w / tile) > MAX_TILES {
                return Err(bad(format!(
                    "[{h}, {w}] makes {} tiles (at most {MAX_TILES})",
                    (h / tile) * (w / tile)
                )));
            }
            Ok((h, w))
        })
        .collect::<Result<Vec<_>>>()
        .map(Some)
}

/// The anyres image processor as `preprocessor_config.json` configures it.
#[derive(Debug, Clone)]
pub struct AnyresProcessor {
    /// The processor's `image_grid_pinpoints`.
    pub pinpoints: Vec<Pinpoint>,
    /// `size` (the base image is this squared or stretched; every tile is resized by it).
    pub size: Option<ResizeTo>,
    /// The base image's `(width, height)` before the per-tile steps.
    pub base: (u32, u32),
    /// `crop_size` as `(width, height)` when `do_center_crop`.
    pub crop: Option<(u32, u32)>,
    pub filter: Filter,
    pub normalization: Normalization,
    /// OneVision's multi-image pad color (`int(255 * image_mean[c])`).
    pub pad_fill: [u8; 3],
    /// The tile side: the tower's input size.
    pub tile: u32,
}

impl AnyresProcessor {
    /// Reads `pre` for a tower taking `tile` x `tile` inputs; `model_pinpoints` is the
    /// model config's list, the default when the processor's file has none.
    pub fn from_config(
        pre: &ConfigObject,
        kind: AnyresKind,
        tile: usize,
        model_pinpoints: &[Pinpoint],
    ) -> Result<AnyresProcessor> {
        let loc = pre.location();
        let size = read_size(pre, "size", true)?.unwrap_or(match kind {
            AnyresKind::Next => ResizeTo::ShortestEdge(224),
            AnyresKind::OneVision => ResizeTo::Exact {
                width: 384,
                height: 384,
            },
        });
        let crop = read_size(pre, "crop_size", false)?;
        let crop = match (kind, crop) {
            (_, Some(ResizeTo::Exact { width, height })) => Some((width, height)),
            (_, Some(ResizeTo::ShortestEdge(_))) => unreachable!("crop_size integers are squares"),
            (AnyresKind::Next, None) => Some((224, 224)),
            (AnyresKind::OneVision, None) => None,
        };
        let do_crop = match kind {
            AnyresKind::Next => pre.bool_or("do_center_crop", true)?,
            AnyresKind::OneVision => pre
                .value("do_center_crop")
                .and_then(|v| v.as_bool())
                .unwrap_or(false),
        };
        let crop = if do_crop { crop } else { None };
        // `_preprocess`: the base image's size and the tile side (`patch_size`).
        let (base, patch) = match size {
            ResizeTo::Exact { width, height } => ((width, height), height),
            ResizeTo::ShortestEdge(s) => ((s, s), s),
        };
        let patch = match crop {
            Some((_, h)) => h,
            None => patch,
        };
        if patch as usize != tile {
            return Err(Error::bad_config(format!(
                "{loc}: the processor cuts {patch}-pixel tiles but the vision tower takes \
                 {tile}x{tile}"
            )));
        }
        let do_resize = pre.bool_or("do_resize", true)?;
        let pinpoints = read_pinpoints(pre, tile)?.unwrap_or_else(|| model_pinpoints.to_vec());
        let mean = pre
            .f64_list("image_mean")?
            .unwrap_or(OPENAI_CLIP_MEAN.to_vec());
        let pad_fill = match mean.as_slice() {
            [r, g, b] => [r, g, b].map(|m| (m * 255.0).clamp(0.0, 255.0) as u8),
            _ => [0; 3], // read_normalization refuses it below
        };
        Ok(AnyresProcessor {
            pinpoints,
            size: do_resize.then_some(size),
            base,
            crop,
            filter: read_filter(pre, Filter::Bicubic)?,
            normalization: read_normalization(pre, OPENAI_CLIP_MEAN, OPENAI_CLIP_STD)?,
            pad_fill,
            tile: tile as u32,
        })
    }

    /// The pinpoint resolution an image of `width` x `height` is tiled at.
    pub fn resolution(&self, width: u32, height: u32) -> Result<Pinpoint> {
        best_resolution(height, width, &self.pinpoints)
            .ok_or_else(|| Error::bad_config("image_grid_pinpoints is empty"))
    }

    /// The per-tile steps: resize by `size`, center crop, normalize into the output.
    fn finish(&self, image: &RgbImage, out: &mut Vec<f32>, limits: &Limits) -> Result<()> {
        let mut img = std::borrow::Cow::Borrowed(image);
        if let Some(to) = self.size {
            let (w, h) = to.output_size(img.width, img.height);
            if (w, h) != (img.width, img.height) {
                img = std::borrow::Cow::Owned(resize(&img, w, h, self.filter, limits)?);
            }
        }
        if let Some((cw, ch)) = self.crop {
            img = std::borrow::Cow::Owned(center_crop(&img, cw, ch, limits)?);
        }
        let s = self.tile;
        if (img.width, img.height) != (s, s) {
            return Err(Error::invalid_argument(format!(
                "a tile is {}x{} after preprocessing but the vision tower takes {s}x{s} \
                 (preprocessor_config.json's size / crop_size)",
                img.width, img.height
            )));
        }
        out.extend_from_slice(&self.normalization.to_chw(&img)?);
        Ok(())
    }

    /// Preprocesses one image into `[tiles, 3, S, S]`: with `split`, the base image then the
    /// anyres tiles; without (OneVision's multi-image samples), the image padded to a
    /// square as its only tile. `grid` and `extra` are the model's and are passed through.
    pub fn process(
        &self,
        image: &RgbImage,
        split: bool,
        grid: [usize; 3],
        extra: Vec<usize>,
        limits: &Limits,
    ) -> Result<Pixels> {
        let mut parts: Vec<RgbImage> = Vec::new();
        if split {
            let target = self.resolution(image.width, image.height)?;
            let (bw, bh) = self.base;
            parts.push(resize(image, bw, bh, self.filter, limits)?);
            parts.extend(cut_anyres(image, target, self.tile, self.filter, limits)?);
        } else {
            let side = image.width.max(image.height);
            let at = if image.width > image.height {
                (0, i64::from((side - image.height) / 2))
            } else {
                (i64::from((side - image.width) / 2), 0)
            };
            parts.push(image.place_on(
                (side, side),
                at,
                self.pad_fill,
                limits,
                "the pad-to-square canvas (LlavaOnevisionImageProcessor multi-image)",
            )?);
        }
        let s = self.tile as usize;
        let n = parts.len();
        let mut data = try_with_capacity(n * 3 * s * s, "the tiles tensor")?;
        for part in parts {
            self.finish(&part, &mut data, limits)?;
        }
        Ok(Pixels {
            data,
            shape: vec![n, 3, s, s],
            grid,
            extra,
        })
    }
}
