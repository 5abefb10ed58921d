//! `GotOcr2ImageProcessor` (PIL backend, `image_processing_pil_got_ocr2.py`), the image
//! processor of InternVL and Aya Vision: with `crop_to_patches` (and `max_patches > 1`) the
//! image becomes the tiles of [`crate::preprocess::tiling`] (grid tiles row-major, then the
//! thumbnail when there is more than one tile); otherwise one tile, the image stretched to
//! `size`. Each tile is rescaled and normalized into `[3, H, W]`; the result is
//! `[tiles, 3, H, W]`, the image's rows of the reference's `pixel_values`.
//!
//! The model's processor class passes its own call defaults to the image processor, which
//! take precedence over `preprocessor_config.json` (`InternVLProcessor` and
//! `AyaVisionProcessor` both pass `crop_to_patches=True`); per-call options
//! ([`PreprocessOptions::crop_to_patches`], `min_patches`, `max_patches`) take precedence
//! over both.

use crate::config::ConfigObject;
use crate::error::{Error, Result};
use crate::preprocess::limits::try_with_capacity;
use crate::preprocess::normalize::Normalization;
use crate::preprocess::resample::{resize, Filter};
use crate::preprocess::settings::{
    read_filter, read_normalization, read_size, ResizeTo, OPENAI_CLIP_MEAN, OPENAI_CLIP_STD,
};
use crate::preprocess::tiling::{cut_tiles, optimal_grid, TileGrid, MAX_TILES};
use crate::preprocess::{Limits, Pixels, PreprocessOptions, RgbImage};

/// The tiling settings in effect for one call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TileBudget {
    /// `crop_to_patches`.
    pub crop: bool,
    /// `min_patches`.
    pub min: usize,
    /// `max_patches`.
    pub max: usize,
}

/// `GotOcr2ImageProcessor` as configured by `preprocessor_config.json` and the processor's
/// call defaults.
#[derive(Debug, Clone)]
pub struct GotOcr2Processor {
    /// Tile `(width, height)` (`size`).
    pub tile: (u32, u32),
    pub do_resize: bool,
    pub filter: Filter,
    pub normalization: Normalization,
    pub budget: TileBudget,
}

impl GotOcr2Processor {
    /// Reads `pre` for a tower taking `image_size` x `image_size` tiles. `call_crop` is the
    /// processor class's call default for `crop_to_patches` (it overrides the file's).
    pub fn from_config(
        pre: &ConfigObject,
        image_size: usize,
        call_crop: Option<bool>,
    ) -> Result<GotOcr2Processor> {
        let size = read_size(pre, "size", false)?.unwrap_or(ResizeTo::Exact {
            width: 384,
            height: 384,
        });
        let ResizeTo::Exact { width, height } = size else {
            return Err(Error::bad_config(format!(
                "{}: `size` must be {{height, width}} for GotOcr2ImageProcessor",
                pre.location()
            )));
        };
        if width as usize != image_size || height as usize != image_size {
            return Err(Error::bad_config(format!(
                "{}: `size` {width}x{height} does not match the vision tower's image_size \
                 {image_size} (the tower takes tiles of exactly that size)",
                pre.location()
            )));
        }
        let crop = match call_crop {
            Some(c) => c,
            None => pre.bool_or("crop_to_patches", false)?,
        };
        let budget = TileBudget {
            crop,
            min: pre.usize_or("min_patches", 1, MAX_TILES)?,
            max: pre.usize_or("max_patches", 12, MAX_TILES)?,
        };
        Ok(GotOcr2Processor {
            tile: (width, height),
            do_resize: pre.bool_or("do_resize", true)?,
            filter: read_filter(pre, Filter::Bicubic)?,
            normalization: read_normalization(pre, OPENAI_CLIP_MEAN, OPENAI_CLIP_STD)?,
            budget,
        })
    }

    /// The budget for one call: the per-call options over the configured ones. A per-call
    /// `max_patches` of 0, a `min_patches` of 0 or above `max_patches`, or either above
    /// [`MAX_TILES`], is refused (the reference would quietly fall back to one tile).
    pub fn budget(&self, opts: &PreprocessOptions) -> Result<TileBudget> {
        for (name, v) in [
            ("min_patches", opts.min_patches),
            ("max_patches", opts.max_patches),
        ] {
            match v {
                Some(0) => {
                    return Err(Error::invalid_argument(format!(
                        "{name} 0: an image needs at least one tile"
                    )))
                }
                Some(n) if n > MAX_TILES => {
                    return Err(Error::invalid_argument(format!(
                        "{name} {n} is above the limit of {MAX_TILES} tiles"
                    )))
                }
                _ => {}
            }
        }
        let b = TileBudget {
            crop: opts.crop_to_patches.unwrap_or(self.budget.crop),
            min: opts.min_patches.unwrap_or(self.budget.min),
            max: opts.max_patches.unwrap_or(self.budget.max),
        };
        if (opts.min_patches.is_some() || opts.max_patches.is_some()) && b.min > b.max {
            return Err(Error::invalid_argument(format!(
                "min_patches {} is above max_patches {}",
                b.min, b.max
            )));
        }
        Ok(b)
    }

    /// The grid an image of `width` x `height` is cut into under `budget`; `None` when it is
    /// not tiled (one tile, the stretched image).
    pub fn grid(&self, budget: TileBudget, width: u32, height: u32) -> Option<TileGrid> {
        if !budget.crop || budget.max <= 1 {
            return None;
        }
        let (tw, th) = self.tile;
        Some(optimal_grid(
            width,
            height,
            tw as usize,
            th as usize,
            budget.min,
            budget.max,
        ))
    }

    /// Preprocesses `image` into `[tiles, 3, H, W]`; every tile yields a
    /// `tile_grid` x `tile_grid` block of embeddings (`Pixels::grid` =
    /// `[tiles, tile_grid, tile_grid]`).
    pub fn process(
        &self,
        image: &RgbImage,
        opts: &PreprocessOptions,
        tile_grid: usize,
        limits: &Limits,
    ) -> Result<Pixels> {
        let budget = self.budget(opts)?;
        let (tw, th) = self.tile;
        let grid = self.grid(budget, image.width, image.height);
        let n = grid.map_or(1, TileGrid::tiles_with_thumbnail);
        let per_tile = (tile_grid * tile_grid) as u64;
        limits.check_tokens((n as u64).saturating_mul(per_tile), &|| {
            format!("{n} tiles of {per_tile} embeddings")
        })?;
        let tiles = match grid {
            Some(g) => cut_tiles(image, g, tw, th, self.filter, limits)?,
            None if image.width == tw && image.height == th => vec![image.clone()],
            None if self.do_resize => vec![resize(image, tw, th, self.filter, limits)?],
            None => {
                return Err(Error::invalid_argument(format!(
                    "image is {}x{} but the model takes {tw}x{th} tiles and \
                     preprocessor_config.json sets do_resize=false",
                    image.width, image.height
                )))
            }
        };
        let frame = 3 * tw as usize * th as usize;
        let mut data = try_with_capacity(frame * tiles.len(), "the tiles")?;
        for t in &tiles {
            data.extend_from_slice(&self.normalization.to_chw(t)?);
        }
        Ok(Pixels {
            data,
            shape: vec![tiles.len(), 3, th as usize, tw as usize],
            grid: [tiles.len(), tile_grid, tile_grid],
            extra: Vec::new(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn processor(json: &str) -> GotOcr2Processor {
        GotOcr2Processor::from_config(&ConfigObject::parse("p", json).unwrap(), 4, Some(true))
            .unwrap()
    }

    #[test]
    fn tiles_thumbnail_and_budgets() {
        let p = processor(r#"{"size": {"height": 4, "width": 4}, "max_patches": 6}"#);
        let img = RgbImage::new(12, 4, vec![7; 12 * 4 * 3]).unwrap();
        let d = PreprocessOptions::default();
        let px = p.process(&img, &d, 2, &Limits::default()).unwrap();
        // 3x1 grid + thumbnail.
        assert_eq!(px.shape, vec![4, 3, 4, 4]);
        assert_eq!(px.grid, [4, 2, 2]);
        // Per call: no cropping, or at most 2 tiles (2x1 + thumbnail).
        let off = PreprocessOptions {
            crop_to_patches: Some(false),
            ..d.clone()
        };
        assert_eq!(
            p.process(&img, &off, 2, &Limits::default()).unwrap().shape,
            vec![1, 3, 4, 4]
        );
        let two = PreprocessOptions {
            max_patches: Some(2),
            ..d.clone()
        };
        assert_eq!(
            p.process(&img, &two, 2, &Limits::default()).unwrap().grid,
            [3, 2, 2]
        );
        // A square image matching one tile is not tiled.
        let sq = RgbImage::new(4, 4, vec![1; 48]).unwrap();
        assert_eq!(
            p.process(&sq, &d, 2, &Limits::default()).unwrap().grid[0],
            1
        );
        // Bad budgets are refused with a message naming the setting.
        for (min, max) in [(None, Some(0)), (Some(0), None), (Some(3), Some(2))] {
            let o = PreprocessOptions {
                min_patches: min,
                max_patches: max,
                ..d.clone()
            };
            let e = p.process(&img, &o, 2, &Limits::default()).unwrap_err();
            assert_eq!(e.status(), crate::Status::InvalidArgument, "{e}");
            assert!(e.message().contains("patches"), "{e}");
        }
        let huge = PreprocessOptions {
            max_patches: Some(MAX_TILES + 1),
            ..d.clone()
        };
        assert!(p.process(&img, &huge, 2, &Limits::default()).is_err());
        // The token limit is checked before any tile is made.
        let tight = Limits {
            max_tokens: 15,
            ..Limits::default()
        };
        let e = p.process(&img, &d, 2, &tight).unwrap_err();
        assert_eq!(e.status(), crate::Status::ImageTooLarge);
    }

    #[test]
    fn the_tile_size_must_be_the_towers() {
        let pre = ConfigObject::parse("p", r#"{"size": {"height": 8, "width": 8}}"#).unwrap();
        assert!(GotOcr2Processor::from_config(&pre, 4, None).is_err());
        // Absent: the class default 384.
        let pre = ConfigObject::parse("p", "{}").unwrap();
        assert!(GotOcr2Processor::from_config(&pre, 384, None).is_ok());
        assert!(GotOcr2Processor::from_config(&pre, 448, None).is_err());
    }
}
