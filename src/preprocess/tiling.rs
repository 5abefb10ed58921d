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

use crate::error::{Error, Result};
use crate::preprocess::resample::{resize, Filter};
use crate::preprocess::{Limits, RgbImage};

/// Most tiles one image may be cut into, whatever the configuration or the call says (the
/// released checkpoints use at most a few dozen).
pub const MAX_TILES: usize = 1024;

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
    // Python floats: true divisions of exact integers, compared exactly.
    let aspect = f64::from(width) / f64::from(height);
    let area = f64::from(width) * f64::from(height);
    let mut best_diff = f64::INFINITY;
    let mut best = TileGrid {
        columns: 1,
        rows: 1,
    };
    for g in arrangements(min_tiles, max_tiles.min(MAX_TILES)) {
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
    let mut tiles = Vec::with_capacity(grid.tiles_with_thumbnail());
    for row in 0..grid.rows as u32 {
        for column in 0..grid.columns as u32 {
            tiles.push(canvas.crop(column * tile_w, row * tile_h, tile_w, tile_h)?);
        }
    }
    drop(canvas);
    if grid.tiles() > 1 {
        tiles.push(resize(image, tile_w, tile_h, filter, limits)?);
    }
    Ok(tiles)
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
}
