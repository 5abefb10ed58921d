//! Tiling: cutting one large image into tiles of the tower's native size (plus a thumbnail
//! of the whole image), shared by every family that runs a fixed-size ViT on tiles.
//!
//! Today it implements the dynamic tiling of `GotOcr2ImageProcessor.crop_image_to_patches`
//! (`image_processing_pil_got_ocr2.py`), which InternVL and Aya Vision use: choose the
//! `columns x rows` grid (with `min_tiles <= columns * rows <= max_tiles`) whose aspect ratio
//! is closest to the image's, resize the image to `columns * tile_w` x `rows * tile_h`, cut it
//! row-major into tiles, and append a thumbnail (the whole image resized to one tile) when
//! there is more than one tile. The per-family processors (e.g.
//! [`crate::preprocess::got_ocr2`]) normalize the tiles and decide the token layout.
//!
//! And the "anyres" tiling of LLaVA-NeXT / LLaVA-OneVision (`image_grid_pinpoints`,
//! `select_best_resolution`, `get_patch_output_size`, `divide_to_patches` in
//! `image_processing_utils.py` / `image_transforms.py`): pick the pinpoint resolution that
//! keeps the most of the image with the least waste ([`best_resolution`]), resize the image
//! into it keeping the aspect ratio, pad it to the pinpoint centered with black, and cut
//! that canvas into tiles ([`cut_anyres`]).
//!
//! Idefics3 / SmolVLM's processor (`preprocess/idefics3.rs`) sizes its own canvas (multiples
//! of `max_image_size`) and cuts it with [`cut_grid`], like the two above. LFM2-VL's
//! (`preprocess/lfm2_vl.rs`) picks its grid with [`closest_grid`] over its own candidate
//! order and cuts it with [`cut_grid`].

use crate::error::{Error, Result};
use crate::preprocess::resample::{resize, Filter};
use crate::preprocess::{Limits, RgbImage};

/// Most tiles one image may be cut into, whatever the configuration or the call says (the
/// released checkpoints use at most a few dozen).
pub(crate) const MAX_TILES: usize = 1024;

/// A tile grid: `columns` x `rows` tiles.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TileGrid {
    pub columns: usize,
    pub rows: usize,
}

impl TileGrid {
    /// Tiles in the grid (without the thumbnail).
    pub fn tiles(self) -> usize {
        self.columns * self.rows
    }

    /// Tiles the image becomes: the grid's, plus the thumbnail when the grid has more than
    /// one tile.
    pub fn tiles_with_thumbnail(self) -> usize {
        let n = self.tiles();
        if n > 1 {
            n + 1
        } else {
            n
        }
    }
}

/// Every `(columns, rows)` with `min_tiles <= columns * rows <= max_tiles`, ordered by tile
/// count and, within a count, by columns then rows (`get_all_supported_aspect_ratios`: a
/// stable sort of the column-major enumeration).
fn arrangements(min_tiles: usize, max_tiles: usize) -> Vec<TileGrid> {
    let mut v = Vec::new();
    for columns in 1..=max_tiles {
        for rows in 1..=max_tiles / columns {
            if columns * rows >= min_tiles {
                v.push(TileGrid { columns, rows });
            }
        }
    }
    v.sort_by_key(|g| g.tiles());
    v
}

/// The grid `get_optimal_tiled_canvas` picks for a `width` x `height` image and
/// `tile_w` x `tile_h` tiles: the closest aspect ratio; on an exact tie the later (larger)
/// arrangement while the image's area exceeds half of the tiles' area. `(1, 1)` when no
/// arrangement satisfies the bounds (as the reference). Callers check the bounds
/// (`max_tiles <= MAX_TILES`) first.
pub fn optimal_grid(
    width: u32,
    height: u32,
    tile_w: usize,
    tile_h: usize,
    min_tiles: usize,
    max_tiles: usize,
) -> TileGrid {
    let candidates = arrangements(min_tiles, max_tiles.min(MAX_TILES));
    closest_grid(width, height, tile_w, tile_h, &candidates)
}

/// The loop of `get_optimal_tiled_canvas` / `find_closest_aspect_ratio` over `candidates` in
/// the reference's order: the closest aspect ratio; on an exact tie the later one while the
/// image's area exceeds half of its tiles' area. `(1, 1)` for no candidates.
pub fn closest_grid(
    width: u32,
    height: u32,
    tile_w: usize,
    tile_h: usize,
    candidates: &[TileGrid],
) -> TileGrid {
    // Python floats: true divisions of exact integers, compared exactly.
    let aspect = f64::from(width) / f64::from(height);
    let area = f64::from(width) * f64::from(height);
    let mut best_diff = f64::INFINITY;
    let mut best = TileGrid {
        columns: 1,
        rows: 1,
    };
    for &g in candidates {
        let diff = (aspect - g.columns as f64 / g.rows as f64).abs();
        if diff < best_diff {
            best_diff = diff;
            best = g;
        } else if diff == best_diff && area > 0.5 * (tile_h * tile_w * g.tiles()) as f64 {
            best = g;
        }
    }
    best
}

/// Cuts `canvas` row-major into `grid` tiles of `tile_w` x `tile_h` from its top-left corner
/// (the one tile cutter of every tiled family: GotOcr2, anyres, Idefics3).
pub fn cut_grid(
    canvas: &RgbImage,
    grid: TileGrid,
    tile_w: u32,
    tile_h: u32,
) -> Result<Vec<RgbImage>> {
    let mut tiles = Vec::with_capacity(grid.tiles());
    for row in 0..grid.rows as u32 {
        for column in 0..grid.columns as u32 {
            tiles.push(canvas.crop(column * tile_w, row * tile_h, tile_w, tile_h)?);
        }
    }
    Ok(tiles)
}

/// Cuts `image` into `grid` tiles of `tile_w` x `tile_h` (row-major) after resizing it to
/// the grid's canvas with `filter`, then appends the thumbnail (the image resized to one
/// tile) when the grid has more than one tile: `crop_image_to_patches` with
/// `use_thumbnail=True`.
pub fn cut_tiles(
    image: &RgbImage,
    grid: TileGrid,
    tile_w: u32,
    tile_h: u32,
    filter: Filter,
    limits: &Limits,
) -> Result<Vec<RgbImage>> {
    let canvas_w = u32::try_from(grid.columns)
        .ok()
        .and_then(|c| c.checked_mul(tile_w));
    let canvas_h = u32::try_from(grid.rows)
        .ok()
        .and_then(|r| r.checked_mul(tile_h));
    let (Some(canvas_w), Some(canvas_h)) = (canvas_w, canvas_h) else {
        return Err(Error::invalid_argument(format!(
            "a {}x{} grid of {tile_w}x{tile_h} tiles is too large",
            grid.columns, grid.rows
        )));
    };
    limits.check_image("the tiled canvas", u64::from(canvas_w), u64::from(canvas_h))?;
    let canvas = resize(image, canvas_w, canvas_h, filter, limits)?;
    let mut tiles = cut_grid(&canvas, grid, tile_w, tile_h)?;
    drop(canvas);
    if grid.tiles() > 1 {
        tiles.push(resize(image, tile_w, tile_h, filter, limits)?);
    }
    Ok(tiles)
}

/// An anyres pinpoint resolution, `(height, width)` in pixels, as `image_grid_pinpoints`
/// lists them.
pub type Pinpoint = (usize, usize);

/// `select_best_resolution(original_size, possible_resolutions)`: the pinpoint with the
/// largest effective resolution (the image's pixels once scaled to fit it, at most its own),
/// ties broken by the least wasted area; the first one on a full tie. `None` for an empty
/// list.
pub fn best_resolution(height: u32, width: u32, pinpoints: &[Pinpoint]) -> Option<Pinpoint> {
    let (oh, ow) = (f64::from(height), f64::from(width));
    let original = u64::from(height) * u64::from(width);
    let mut best = None;
    let mut max_effective = 0u64;
    let mut min_wasted = u64::MAX;
    for &(h, w) in pinpoints {
        // Python: scale = min(w / ow, h / oh); int(ow * scale), int(oh * scale).
        let scale = (w as f64 / ow).min(h as f64 / oh);
        let (dw, dh) = ((ow * scale) as u64, (oh * scale) as u64);
        let effective = (dw * dh).min(original);
        let wasted = (w as u64 * h as u64).saturating_sub(effective);
        if effective > max_effective || (effective == max_effective && wasted < min_wasted) {
            max_effective = effective;
            min_wasted = wasted;
            best = Some((h, w));
        }
    }
    best
}

/// `get_patch_output_size`: the `(height, width)` the image is resized to inside `target`,
/// keeping its aspect ratio (the constrained side fills the target, the other is rounded up
/// and capped by the target).
pub fn fit_inside(height: u32, width: u32, target: Pinpoint) -> (usize, usize) {
    let (th, tw) = target;
    let scale_w = tw as f64 / f64::from(width);
    let scale_h = th as f64 / f64::from(height);
    if scale_w < scale_h {
        let h = (f64::from(height) * scale_w).ceil() as usize;
        (h.min(th), tw)
    } else {
        let w = (f64::from(width) * scale_h).ceil() as usize;
        (th, w.min(tw))
    }
}

/// The anyres tiles of `image` for the chosen pinpoint `target` (`get_image_patches` without
/// the base image): resized into the target with [`fit_inside`] and `filter`, centered on a
/// black canvas of the target's size (`divmod` padding: the extra pixel goes after), cut
/// row-major into `tile` x `tile` tiles. The target's sides must be multiples of `tile`.
pub fn cut_anyres(
    image: &RgbImage,
    target: Pinpoint,
    tile: u32,
    filter: Filter,
    limits: &Limits,
) -> Result<Vec<RgbImage>> {
    let (th, tw) = target;
    let t = tile as usize;
    if t == 0 || th % t != 0 || tw % t != 0 || th == 0 || tw == 0 {
        return Err(Error::invalid_argument(format!(
            "anyres resolution {th}x{tw} (height x width) is not a multiple of the {tile}-pixel tile"
        )));
    }
    limits.check_image("the anyres canvas", tw as u64, th as u64)?;
    let (nh, nw) = fit_inside(image.height, image.width, target);
    let resized = if (nw as u32, nh as u32) == (image.width, image.height) {
        std::borrow::Cow::Borrowed(image)
    } else {
        std::borrow::Cow::Owned(resize(image, nw as u32, nh as u32, filter, limits)?)
    };
    let at = (((tw - nw) / 2) as i64, ((th - nh) / 2) as i64);
    let canvas = resized.place_on(
        (tw as u32, th as u32),
        at,
        [0, 0, 0],
        limits,
        "the anyres canvas",
    )?;
    drop(resized);
    let grid = TileGrid {
        columns: tw / t,
        rows: th / t,
    };
    cut_grid(&canvas, grid, tile, tile)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arrangements_are_ordered_as_the_reference() {
        // get_all_supported_aspect_ratios(1, 4) from the reference's docstring.
        let got: Vec<(usize, usize)> = arrangements(1, 4)
            .into_iter()
            .map(|g| (g.columns, g.rows))
            .collect();
        assert_eq!(
            got,
            vec![
                (1, 1),
                (1, 2),
                (2, 1),
                (1, 3),
                (3, 1),
                (1, 4),
                (2, 2),
                (4, 1)
            ]
        );
        assert!(arrangements(3, 2).is_empty());
    }

    #[test]
    fn optimal_grids_follow_the_reference() {
        let g = |w, h, min, max| {
            let g = optimal_grid(w, h, 448, 448, min, max);
            (g.columns, g.rows)
        };
        assert_eq!(g(448, 448, 1, 12), (1, 1));
        assert_eq!(g(1344, 448, 1, 12), (3, 1));
        assert_eq!(g(448, 896, 1, 12), (1, 2));
        // 800x600: exactly 4:3, 12 tiles.
        assert_eq!(g(800, 600, 1, 12), (4, 3));
        // A square image ties 1x1, 2x2 and 3x3: the larger grids win only while the image
        // covers more than half of their area (448*448*4*0.5 = 401408 < 640*640).
        assert_eq!(g(640, 640, 1, 12), (2, 2));
        assert_eq!(g(1000, 1000, 1, 12), (3, 3));
        assert_eq!(g(300, 300, 1, 12), (1, 1));
        // min above max: nothing qualifies, (1, 1).
        assert_eq!(g(1344, 448, 5, 4), (1, 1));
        // min_tiles forces more tiles.
        assert_eq!(g(448, 448, 2, 12), (2, 2));
    }

    #[test]
    fn tiles_are_cut_row_major_with_a_thumbnail() {
        // 4x2 image, 2x1 tiles of 2x2: no resize of the canvas, tiles are exact copies.
        let data: Vec<u8> = (0..4 * 2 * 3).map(|v| v as u8).collect();
        let img = RgbImage::new(4, 2, data).unwrap();
        let grid = TileGrid {
            columns: 2,
            rows: 1,
        };
        let tiles = cut_tiles(&img, grid, 2, 2, Filter::Bicubic, &Limits::default()).unwrap();
        assert_eq!(tiles.len(), 3);
        assert_eq!(tiles[0], img.crop(0, 0, 2, 2).unwrap());
        assert_eq!(tiles[1], img.crop(2, 0, 2, 2).unwrap());
        assert_eq!((tiles[2].width, tiles[2].height), (2, 2));
        // One tile: no thumbnail.
        let one = TileGrid {
            columns: 1,
            rows: 1,
        };
        assert_eq!(
            cut_tiles(&img, one, 2, 2, Filter::Bicubic, &Limits::default())
                .unwrap()
                .len(),
            1
        );
        // The canvas is checked against the pixel limit before it is made.
        let tight = Limits {
            max_pixels: 7,
            ..Limits::default()
        };
        assert!(cut_tiles(&img, grid, 2, 2, Filter::Bicubic, &tight).is_err());
    }

    #[test]
    fn anyres_resolution_choice_follows_the_reference() {
        // Values from transformers' select_best_resolution / get_patch_output_size.
        let pins = [(336, 672), (672, 336), (672, 672), (1008, 336), (336, 1008)];
        assert_eq!(best_resolution(480, 640, &pins), Some((672, 672)));
        // Small images fit every pinpoint whole: the least waste wins.
        assert_eq!(best_resolution(100, 400, &pins), Some((336, 672)));
        assert_eq!(best_resolution(400, 100, &pins), Some((672, 336)));
        assert_eq!(best_resolution(1000, 300, &pins), Some((1008, 336)));
        assert_eq!(best_resolution(700, 1500, &pins), Some((336, 1008)));
        assert_eq!(best_resolution(2000, 2000, &pins), Some((672, 672)));
        assert_eq!(best_resolution(300, 600, &pins), Some((336, 672)));
        // A full tie keeps the first: a tiny image fits every pinpoint whole; least waste.
        assert_eq!(best_resolution(10, 10, &pins), Some((336, 672)));
        assert_eq!(best_resolution(10, 10, &[]), None);
        assert_eq!(fit_inside(480, 640, (672, 672)), (504, 672));
        assert_eq!(fit_inside(640, 480, (672, 672)), (672, 504));
        assert_eq!(fit_inside(7, 10, (28, 56)), (28, 40));
        // ceil, capped by the target
        assert_eq!(fit_inside(3, 7, (28, 56)), (24, 56));
    }

    #[test]
    fn anyres_tiles_are_padded_centered_and_cut_row_major() {
        // A 4x1 (w x h) image into a 4x4 target of 2-pixel tiles: it already fills the width.
        let img = RgbImage::new(4, 1, vec![200; 12]).unwrap();
        let tiles = cut_anyres(&img, (4, 4), 2, Filter::Nearest, &Limits::default()).unwrap();
        assert_eq!(tiles.len(), 4);
        // fit_inside(1, 4, (4, 4)) = (1, 4): one row, padded 1 above ((4-1)/2) and 2 below.
        assert_eq!(tiles[0].pixel(0, 0), [0, 0, 0]);
        assert_eq!(tiles[0].pixel(0, 1), [200, 200, 200]);
        assert_eq!(tiles[1].pixel(1, 1), [200, 200, 200]);
        assert_eq!(tiles[2].pixel(0, 0), [0, 0, 0]);
        assert!(cut_anyres(&img, (4, 6), 4, Filter::Nearest, &Limits::default()).is_err());
        assert!(cut_anyres(&img, (0, 4), 2, Filter::Nearest, &Limits::default()).is_err());
    }
}
