//! `Idefics3ImageProcessor` / `SmolVLMImageProcessor` (PIL backend,
//! `image_processing_pil_idefics3.py`, `image_processing_pil_smolvlm.py`: the same code), the
//! image processor of Idefics3 and SmolVLM:
//!
//! 1. with `do_resize`, the image is resized so that its longest edge is `size.longest_edge`
//!    (up or down; the other side `int(edge / aspect)`, rounded up to even), then shrunk
//!    below 4096 px when larger (`_resize_output_size_rescale_to_max_len`,
//!    `_resize_output_size_scale_below_upper_bound`); a `size` of `{height, width}` stretches;
//! 2. with `do_image_splitting` (`resize_for_vision_encoder`, `split_images`), both sides are
//!    rounded up to multiples of `M` = `max_image_size.longest_edge` (the long side first,
//!    the short side from it through the aspect ratio) and the image resized to that; when
//!    it is then larger than `M` it is cut row-major into `M` x `M` tiles and the whole
//!    resized image, stretched to `M` x `M`, is appended as the global image; otherwise
//!    (and without splitting) the image is stretched to `M` x `M` and is the only tile;
//! 3. every tile is rescaled and normalized into `[3, M, M]`.
//!
//! Every tile is exactly `M` x `M`, so batching in the reference pads no tile partly (it only
//! adds all-zero padding tiles, which the model drops). The result is `[tiles, 3, M, M]`
//! with [`Pixels::extra`] = `[rows, cols]` of the grid (`[0, 0]` when not split: the
//! processor's `rows` / `cols`, which lay out the prompt).

use crate::config::ConfigObject;
use crate::error::{Error, Result};
use crate::preprocess::limits::try_with_capacity;
use crate::preprocess::normalize::Normalization;
use crate::preprocess::resample::{resize, Filter};
use crate::preprocess::settings::{read_filter, read_normalization, MAX_SIDE};
use crate::preprocess::tiling::{cut_grid, TileGrid};
use crate::preprocess::{Limits, Pixels, PreprocessOptions, RgbImage};

/// `MAX_IMAGE_SIZE` of the image processor: no resized image is larger than 4096 px.
const MAX_IMAGE_SIZE: usize = 4096;

/// The `size` setting: what the image is resized to before splitting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Size {
    /// `{"longest_edge": n}`: the long side becomes `n`, keeping the aspect ratio.
    LongestEdge(usize),
    /// `{"height": h, "width": w}`: stretched to exactly this size.
    Exact { height: usize, width: usize },
}

/// How one image is cut: the size it is resized to first, the size the tiles are cut from,
/// and the grid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Plan {
    /// `(height, width)` after the `size` resize (the input size when `do_resize` is off).
    pub resized: (usize, usize),
    /// `(height, width)` the tiles are cut from (multiples of the tile side) when the image
    /// is split, else `None`.
    pub split_from: Option<(usize, usize)>,
    /// Tile rows and columns of the grid (0, 0 without a grid).
    pub rows: usize,
    pub cols: usize,
}

impl Plan {
    /// Tiles the image becomes: the grid's plus the global image, or the one tile.
    pub fn tiles(&self) -> usize {
        if self.rows == 0 {
            1
        } else {
            self.rows * self.cols + 1
        }
    }
}

/// `_resize_output_size_rescale_to_max_len` with `min_len` 1: `(height, width)`.
pub fn rescale_to_max_len(height: usize, width: usize, max_len: usize) -> (usize, usize) {
    // Python floats: a true division of exact integers, truncated by int().
    let aspect = width as f64 / height as f64;
    let even = |v: usize| if v % 2 != 0 { v + 1 } else { v };
    let (h, w) = if width >= height {
        (even((max_len as f64 / aspect) as usize), max_len)
    } else {
        (max_len, even((max_len as f64 * aspect) as usize))
    };
    (h.max(1), w.max(1))
}

/// `_resize_output_size_scale_below_upper_bound`: `(height, width)` with the long side at
/// most `max_len`.
pub fn scale_below_upper_bound(height: usize, width: usize, max_len: usize) -> (usize, usize) {
    let aspect = width as f64 / height as f64;
    let (mut h, mut w) = (height, width);
    if width >= height && width > max_len {
        w = max_len;
        h = (w as f64 / aspect) as usize;
    } else if height > width && height > max_len {
        h = max_len;
        w = (h as f64 * aspect) as usize;
    }
    (h.max(1), w.max(1))
}

/// `resize_for_vision_encoder`: `(height, width)` rounded up to multiples of `tile`, the long
/// side first and the short one from it through the aspect ratio. A side can come out 0 for
/// an extremely thin image (the reference then fails in PIL).
pub fn for_vision_encoder(height: usize, width: usize, tile: usize) -> (usize, usize) {
    let aspect = width as f64 / height as f64;
    let up = |v: usize| v.div_ceil(tile) * tile;
    if width >= height {
        let w = up(width);
        let h = (w as f64 / aspect) as usize;
        (up(h), w)
    } else {
        let h = up(height);
        let w = (h as f64 * aspect) as usize;
        (h, up(w))
    }
}

/// `Idefics3ImageProcessor` as configured by `preprocessor_config.json`.
#[derive(Debug, Clone)]
pub struct Idefics3Processor {
    /// `do_resize`.
    pub do_resize: bool,
    /// `size` (class default `{"longest_edge": 1456}`).
    pub size: Size,
    /// `max_image_size.longest_edge`: the tile side (class default 364).
    pub tile: usize,
    /// `do_image_splitting` (class default true).
    pub splitting: bool,
    pub filter: Filter,
    pub normalization: Normalization,
}

/// Reads a side given in a `size`-style dict.
fn side(cfg: &ConfigObject, obj: &ConfigObject, key: &str, what: &str) -> Result<usize> {
    match obj.usize_max(key, MAX_SIDE) {
        Ok(Some(v)) if v >= 1 => Ok(v),
        _ => Err(Error::bad_config(format!(
            "{}: `{what}.{key}` must be a size between 1 and {MAX_SIDE}, found {}",
            cfg.location(),
            obj.value(key).map_or("nothing".into(), |v| v.to_string())
        ))),
    }
}

impl Idefics3Processor {
    /// Reads `pre` (the image processor's settings) with the class defaults for absent keys.
    pub fn from_config(pre: &ConfigObject) -> Result<Idefics3Processor> {
        let size = match pre.object("size")? {
            None => Size::LongestEdge(4 * 364),
            Some(s) if s.contains("longest_edge") && !s.is_null("longest_edge") => {
                Size::LongestEdge(side(pre, &s, "longest_edge", "size")?)
            }
            Some(s) if s.contains("height") && s.contains("width") => Size::Exact {
                height: side(pre, &s, "height", "size")?,
                width: side(pre, &s, "width", "size")?,
            },
            Some(_) => {
                return Err(Error::bad_config(format!(
                    "{}: `size` must have `longest_edge`, or `height` and `width`",
                    pre.location()
                )))
            }
        };
        let tile = match pre.object("max_image_size")? {
            None => 364,
            Some(m) => side(pre, &m, "longest_edge", "max_image_size")?,
        };
        Ok(Idefics3Processor {
            do_resize: pre.bool_or("do_resize", true)?,
            size,
            tile,
            splitting: pre.bool_or("do_image_splitting", true)?,
            filter: read_filter(pre, Filter::Lanczos)?,
            normalization: read_normalization(pre, [0.5; 3], [0.5; 3])?,
        })
    }

    /// The grid of a `width` x `height` image under `opts` (per-call `longest_edge` and
    /// `do_image_splitting` over the configured ones).
    pub fn plan(&self, width: u32, height: u32, opts: &PreprocessOptions) -> Result<Plan> {
        let (h, w) = (height as usize, width as usize);
        if h == 0 || w == 0 {
            return Err(Error::invalid_argument(format!(
                "image is {width}x{height}: an empty image cannot be preprocessed"
            )));
        }
        let size = opts.longest_edge.map_or(self.size, Size::LongestEdge);
        let resized = match (self.do_resize, size) {
            (false, _) => (h, w),
            (true, Size::LongestEdge(edge)) => {
                let (h, w) = rescale_to_max_len(h, w, edge);
                scale_below_upper_bound(h, w, MAX_IMAGE_SIZE)
            }
            (true, Size::Exact { height, width }) => (height, width),
        };
        let m = self.tile;
        if !opts.do_image_splitting.unwrap_or(self.splitting) {
            return Ok(Plan {
                resized,
                split_from: None,
                rows: 0,
                cols: 0,
            });
        }
        let (eh, ew) = for_vision_encoder(resized.0, resized.1, m);
        if eh == 0 || ew == 0 {
            return Err(Error::invalid_argument(format!(
                "image is {width}x{height}: resized to {}x{} (width x height) it is too thin to \
                 be cut into {m}-pixel tiles (a side rounds to 0; the reference fails too)",
                resized.1, resized.0
            )));
        }
        let (rows, cols) = if eh > m || ew > m {
            (eh / m, ew / m)
        } else {
            (0, 0)
        };
        Ok(Plan {
            resized,
            split_from: Some((eh, ew)),
            rows,
            cols,
        })
    }

    /// Preprocesses `image` into `[tiles, 3, M, M]`; every tile yields a
    /// `tile_grid` x `tile_grid` block of embeddings (`Pixels::grid` =
    /// `[tiles, tile_grid, tile_grid]`, `Pixels::extra` = `[rows, cols]`).
    pub fn process(
        &self,
        image: &RgbImage,
        opts: &PreprocessOptions,
        tile_grid: usize,
        limits: &Limits,
    ) -> Result<Pixels> {
        let plan = self.plan(image.width, image.height, opts)?;
        let n = plan.tiles();
        let per_tile = (tile_grid * tile_grid) as u64;
        limits.check_tokens((n as u64).saturating_mul(per_tile), &|| {
            format!("{n} tiles of {per_tile} embeddings")
        })?;
        let m = self.tile as u32;
        let dims = |(h, w): (usize, usize)| -> Result<(u32, u32)> {
            match (u32::try_from(w), u32::try_from(h)) {
                (Ok(w), Ok(h)) => Ok((w, h)),
                _ => Err(Error::invalid_argument(format!(
                    "resized image of {w}x{h} is too large"
                ))),
            }
        };
        let (rw, rh) = dims(plan.resized)?;
        let resized = if (rw, rh) == (image.width, image.height) {
            std::borrow::Cow::Borrowed(image)
        } else {
            std::borrow::Cow::Owned(resize(image, rw, rh, self.filter, limits)?)
        };
        let tiles = match plan.split_from {
            None => vec![resize(&resized, m, m, self.filter, limits)?],
            Some(from) => {
                let (ew, eh) = dims(from)?;
                let canvas = resize(&resized, ew, eh, self.filter, limits)?;
                drop(resized);
                let grid = TileGrid {
                    columns: plan.cols,
                    rows: plan.rows,
                };
                let mut tiles = cut_grid(&canvas, grid, m, m)?;
                // The global image (or the only tile): the canvas stretched to one tile.
                tiles.push(resize(&canvas, m, m, self.filter, limits)?);
                tiles
            }
        };
        let frame = 3 * self.tile * self.tile;
        let mut data = try_with_capacity(frame * tiles.len(), "the tiles")?;
        for t in &tiles {
            data.extend_from_slice(&self.normalization.to_chw(t)?);
        }
        Ok(Pixels {
            data,
            shape: vec![tiles.len(), 3, self.tile, self.tile],
            grid: [tiles.len(), tile_grid, tile_grid],
            extra: vec![plan.rows, plan.cols],
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn processor(json: &str) -> Idefics3Processor {
        Idefics3Processor::from_config(&ConfigObject::parse("p", json).unwrap()).unwrap()
    }

    #[test]
    fn sizes_follow_the_reference_arithmetic() {
        // _resize_output_size_rescale_to_max_len: the long side becomes max_len, the other
        // int(max_len / aspect), made even.
        assert_eq!(rescale_to_max_len(200, 300, 1456), (970, 1456));
        assert_eq!(rescale_to_max_len(61, 37, 60), (60, 36));
        assert_eq!(rescale_to_max_len(37, 61, 60), (36, 60));
        assert_eq!(rescale_to_max_len(1, 1, 59), (60, 59));
        assert_eq!(rescale_to_max_len(10_000, 1, 60), (60, 1));
        assert_eq!(scale_below_upper_bound(5000, 8000, 4096), (2560, 4096));
        assert_eq!(scale_below_upper_bound(100, 80, 4096), (100, 80));
        // resize_for_vision_encoder: 60x40 (w x h) with 24-pixel tiles -> 72x48.
        assert_eq!(for_vision_encoder(40, 60, 24), (48, 72));
        assert_eq!(for_vision_encoder(60, 20, 24), (72, 24));
        assert_eq!(for_vision_encoder(24, 24, 24), (24, 24));
        // The short side is rounded up from int(long * aspect): a 1-pixel side becomes a tile.
        assert_eq!(for_vision_encoder(60, 1, 24), (72, 24));
    }

    #[test]
    fn tiles_global_image_and_overrides() {
        let p =
            processor(r#"{"size": {"longest_edge": 60}, "max_image_size": {"longest_edge": 24}}"#);
        let img = RgbImage::new(30, 20, vec![7; 30 * 20 * 3]).unwrap();
        let d = PreprocessOptions::default();
        let px = p.process(&img, &d, 3, &Limits::default()).unwrap();
        // 60x40 -> 72x48: 3 columns, 2 rows, plus the global image.
        assert_eq!(px.shape, vec![7, 3, 24, 24]);
        assert_eq!(px.grid, [7, 3, 3]);
        assert_eq!(px.extra, vec![2, 3]);
        let off = PreprocessOptions {
            do_image_splitting: Some(false),
            ..d.clone()
        };
        let one = p.process(&img, &off, 3, &Limits::default()).unwrap();
        assert_eq!((one.grid, one.extra.clone()), ([1, 3, 3], vec![0, 0]));
        // A longest edge of one tile: no grid.
        let small = PreprocessOptions {
            longest_edge: Some(24),
            ..d.clone()
        };
        let s = p.process(&img, &small, 3, &Limits::default()).unwrap();
        assert_eq!((s.grid[0], s.extra.clone()), (1, vec![0, 0]));
        // The token limit is checked before any tile is made.
        let tight = Limits {
            max_tokens: 62,
            ..Limits::default()
        };
        let e = p.process(&img, &d, 3, &tight).map(|_| ()).unwrap_err();
        assert_eq!(e.status(), crate::Status::ImageTooLarge);
        // A tile side the pixel limit cannot hold is refused, not allocated.
        let huge = processor(r#"{"max_image_size": {"longest_edge": 16384}}"#);
        let e = huge
            .process(&img, &d, 1, &Limits::default())
            .map(|_| ())
            .unwrap_err();
        assert_eq!(e.status(), crate::Status::ImageTooLarge, "{e}");
        // A very thin image: 1x60 after the resize, then a 1x3 column of tiles.
        let thin = RgbImage::new(1, 2000, vec![1; 2000 * 3]).unwrap();
        let t = p.process(&thin, &d, 3, &Limits::default()).unwrap();
        assert_eq!((t.grid[0], t.extra.clone()), (4, vec![3, 1]));
    }

    #[test]
    fn settings_are_checked() {
        let bad = |json: &str| {
            Idefics3Processor::from_config(&ConfigObject::parse("p", json).unwrap()).unwrap_err()
        };
        assert!(bad(r#"{"max_image_size": {"longest_edge": 0}}"#)
            .message()
            .contains("max_image_size.longest_edge"));
        assert!(bad(r#"{"max_image_size": {"longest_edge": 100000}}"#)
            .message()
            .contains("between 1 and"));
        assert!(bad(r#"{"size": {"shortest_edge": 10}}"#)
            .message()
            .contains("longest_edge"));
        let p = processor("{}");
        assert_eq!(
            (p.size, p.tile, p.splitting, p.filter),
            (Size::LongestEdge(1456), 364, true, Filter::Lanczos)
        );
    }
}
