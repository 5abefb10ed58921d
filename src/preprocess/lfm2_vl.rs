//! `Lfm2VlImageProcessor` (`image_processing_lfm2_vl.py`, torchvision backend only), LFM2-VL's
//! processor.
//!
//! An image that is not "too large" (`_is_image_too_large`: above `max_image_tokens ·
//! (patch · factor)² · max_pixels_tolerance` pixels once its sides are rounded to
//! `patch · factor`), or any image when splitting is off (`do_image_splitting` false, or
//! `min_tiles == max_tiles == 1`), is resized with `smart_resize` (both sides multiples of
//! `encoder_patch_size · downsample_factor`, the area between `min_image_tokens` and
//! `max_image_tokens` tokens' worth of pixels, the aspect ratio kept as closely as that
//! allows) by torchvision's antialiased resize of the `uint8` tensor
//! ([`crate::preprocess::tv_resize`]; class default BILINEAR), rescaled and normalized in the
//! backend's fused f32 arithmetic (class defaults 1/255, mean = std = 0.5) and cut into
//! `(y, x, channel)` patch rows in raster order, as SigLIP2's NaFlex processor does.
//!
//! A too-large image with splitting on (`crop_image_to_patches`) is resized the same way to a
//! `cols x rows` grid of `tile_size` tiles and cut row-major into them; the grid is the one of
//! `min_tiles..=max_tiles` tiles whose `cols / rows` is closest to the image's aspect ratio
//! (`find_closest_aspect_ratio` over `_target_ratios`: on an exact tie the later candidate
//! wins while the image's area exceeds half the grid's, and the candidates are ordered by tile
//! count and, within a count, in the iteration order of the Python `set` they come from,
//! which [`target_ratios`] reproduces). With `use_thumbnail` and more than one tile, the
//! `smart_resize` image follows the tiles as the thumbnail. Each tile and the thumbnail is its
//! own patch grid (a padded `pixel_values` entry in the reference, which vtower does not pad).
//! A `1 x 1` grid (only with `min_tiles` 1) is one `tile_size` tile without a thumbnail; the
//! reference's prompt then counts the `smart_resize` image's tokens, which match the tile's
//! only when the two sizes agree (vtower's prompt layout counts the embeddings it yields).

use crate::config::ConfigObject;
use crate::error::{Error, Result};
use crate::preprocess::gemma4::patch_rows;
use crate::preprocess::limits::try_filled;
use crate::preprocess::normalize::tv_normalize;
use crate::preprocess::qwen_video::{read_rescale_normalize, RescaleNormalize};
use crate::preprocess::resample::Filter;
use crate::preprocess::settings::{read_filter, read_matching};
use crate::preprocess::tiling::{closest_grid, cut_grid, TileGrid, MAX_TILES};
use crate::preprocess::tv_resize::{resize_tv, TvInterpolation};
use crate::preprocess::{Limits, Pixels, PreprocessOptions, RgbImage};

/// Largest accepted patch size, downsample factor, tile size or token bound.
const MAX_SIDE: usize = 1 << 16;

/// transformers' `round_by_factor`: `round(number / factor) * factor` with Python's `round`
/// (half to even) on the float quotient.
fn round_by_factor(number: usize, factor: usize) -> usize {
    (number as f64 / factor as f64).round_ties_even() as usize * factor
}

/// CPython's (3.8+, 64-bit) `hash` of the tuple `(a, b)` of small non-negative ints (whose
/// own hash is the value): `tuplehash`'s xxHash-based mix.
fn py_pair_hash(a: usize, b: usize) -> u64 {
    const P1: u64 = 11_400_714_785_074_694_791;
    const P2: u64 = 14_029_467_366_897_019_727;
    const P5: u64 = 2_870_177_450_012_600_261;
    let mut acc = P5;
    for lane in [a as u64, b as u64] {
        acc = acc.wrapping_add(lane.wrapping_mul(P2)).rotate_left(31);
        acc = acc.wrapping_mul(P1);
    }
    acc = acc.wrapping_add(2 ^ (P5 ^ 3_527_539));
    if acc == u64::MAX {
        1_546_275_796
    } else {
        acc
    }
}

/// Puts `key` into CPython's open-addressing set table (`set_add_entry` / `set_insert_clean`:
/// up to 9 linear probes, then the perturbed jump); `false` when it is already there.
fn py_set_insert(
    table: &mut [Option<(usize, usize, u64)>],
    key: (usize, usize),
    hash: u64,
) -> bool {
    let mask = table.len() - 1;
    let mut perturb = hash;
    let mut i = hash as usize & mask;
    loop {
        let probes = if i + 9 <= mask { 9 } else { 0 };
        for slot in &mut table[i..=i + probes] {
            match *slot {
                None => {
                    *slot = Some((key.0, key.1, hash));
                    return true;
                }
                Some((a, b, _)) if (a, b) == key => return false,
                _ => {}
            }
        }
        perturb >>= 5;
        i = (i
            .wrapping_mul(5)
            .wrapping_add(1)
            .wrapping_add(perturb as usize))
            & mask;
    }
}

/// `Lfm2VlImageProcessor._target_ratios(min_tiles, max_tiles)`: every `(cols, rows)` with
/// `min_tiles <= cols · rows <= max_tiles`, in the order of
/// `sorted(set(list), key=cols · rows)`: by tile count, and within a count in the iteration
/// order of CPython's `set` built from the list comprehension (whose first occurrences come
/// by `n = max(cols, rows, min_tiles)`, then `cols`, then `rows`). Callers bound `max_tiles`.
pub fn target_ratios(min_tiles: usize, max_tiles: usize) -> Vec<TileGrid> {
    let mut first = Vec::new();
    for columns in 1..=max_tiles {
        for rows in 1..=max_tiles / columns {
            if columns * rows >= min_tiles {
                first.push((columns.max(rows).max(min_tiles), columns, rows));
            }
        }
    }
    first.sort_unstable();
    let mut table: Vec<Option<(usize, usize, u64)>> = vec![None; 8];
    let mut fill = 0usize;
    for &(_, c, r) in &first {
        if !py_set_insert(&mut table, (c, r), py_pair_hash(c, r)) {
            continue;
        }
        fill += 1;
        let mask = table.len() - 1;
        if fill * 5 >= mask * 3 {
            // set_table_resize(used * 4; used * 2 above 50000 entries), reinserted in table order.
            let min_used = if fill > 50_000 { fill * 2 } else { fill * 4 };
            let mut size = 8;
            while size <= min_used {
                size <<= 1;
            }
            let old = std::mem::replace(&mut table, vec![None; size]);
            for (a, b, h) in old.into_iter().flatten() {
                py_set_insert(&mut table, (a, b), h);
            }
        }
    }
    let mut out: Vec<TileGrid> = table
        .into_iter()
        .flatten()
        .map(|(columns, rows, _)| TileGrid { columns, rows })
        .collect();
    out.sort_by_key(|g| g.tiles());
    out
}

/// The tile layout of a split image, as [`Pixels::extra`] carries it:
/// `[rows, cols, tile patches per side, thumbnail patch rows, thumbnail patch cols]` (the
/// thumbnail's `0, 0` when there is none). An image that is not split has no `extra`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Split {
    pub grid: TileGrid,
    /// Patches per tile side.
    pub tile: usize,
    /// The thumbnail's patch grid `(rows, cols)`.
    pub thumbnail: Option<(usize, usize)>,
}

impl Split {
    fn to_extra(self) -> Vec<usize> {
        let (tr, tc) = self.thumbnail.unwrap_or((0, 0));
        vec![self.grid.rows, self.grid.columns, self.tile, tr, tc]
    }

    /// The split an image's `extra` records; `None` for an image that is not split.
    pub fn from_extra(extra: &[usize]) -> Result<Option<Split>> {
        match *extra {
            [] => Ok(None),
            [rows, columns, tile, tr, tc] if rows * columns > 1 && tile > 0 => Ok(Some(Split {
                grid: TileGrid { columns, rows },
                tile,
                thumbnail: (tr > 0 && tc > 0).then_some((tr, tc)),
            })),
            _ => Err(Error::invalid_argument(format!(
                "preprocessed image with a tile layout of {extra:?} is not an LFM2-VL image"
            ))),
        }
    }

    /// The patch grids `(rows, cols)` of the entries: the tiles row-major, then the thumbnail.
    pub fn entries(self) -> Vec<(usize, usize)> {
        let mut v = vec![(self.tile, self.tile); self.grid.tiles()];
        v.extend(self.thumbnail);
        v
    }
}

/// The patch grids `(rows, cols)` of a preprocessed image's entries, in order (one for an
/// image that is not split). `f` is the downsample factor.
pub fn entry_grids(pixels: &Pixels, f: usize) -> Result<Vec<(usize, usize)>> {
    if let Some(split) = Split::from_extra(&pixels.extra)? {
        return Ok(split.entries());
    }
    match pixels.grid {
        [1, r, c] if r > 0 && c > 0 => Ok(vec![(r * f, c * f)]),
        [t, r, c] => Err(Error::invalid_argument(format!(
            "a token grid of {t} x {r} x {c} is not an LFM2-VL image"
        ))),
    }
}

/// What the processor does with one image.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Plan {
    /// One patch grid of the image resized to `(height, width)` (`smart_resize`, or one tile
    /// for a `1 x 1` grid).
    Single(usize, usize),
    /// Tiles of `grid`, then the thumbnail resized to `(height, width)` when there is one.
    Tiled {
        grid: TileGrid,
        thumbnail: Option<(usize, usize)>,
    },
}

/// The tile bounds `min..=max` with splitting on: `None` for `1..=1` (no splitting); refused
/// when `min > max` (the reference raises) or when tiles of `tile` px are not whole `t` px
/// blocks (`encoder_patch_size · downsample_factor`: the reference cannot patchify or
/// unshuffle them).
fn check_tiling(
    min: usize,
    max: usize,
    tile: usize,
    t: usize,
) -> std::result::Result<Option<(usize, usize)>, String> {
    if min > max {
        return Err(format!("min_tiles {min} is above max_tiles {max}"));
    }
    if (min, max) == (1, 1) {
        return Ok(None);
    }
    if tile % t != 0 {
        return Err(format!(
            "tile_size {tile} is not a multiple of encoder_patch_size x downsample_factor ({t})"
        ));
    }
    Ok(Some((min, max)))
}

/// The processor, configured from `preprocessor_config.json` (or `processor_config.json`).
#[derive(Debug, Clone)]
pub struct Lfm2VlProcessor {
    pub patch_size: usize,
    pub downsample_factor: usize,
    pub min_image_tokens: usize,
    pub max_image_tokens: usize,
    pub do_image_splitting: bool,
    pub min_tiles: usize,
    pub max_tiles: usize,
    pub tile_size: usize,
    pub use_thumbnail: bool,
    pub max_pixels_tolerance: f64,
    pub interp: TvInterpolation,
    pub rescale_normalize: RescaleNormalize,
}

impl Lfm2VlProcessor {
    /// Reads the processor file with the class defaults (patch 16, factor 2, 64..256 tokens,
    /// splitting on with 2..10 tiles of 512 px and a thumbnail, tolerance 2, BILINEAR, 1/255,
    /// mean = std = 0.5). Its `encoder_patch_size` must be the tower's `patch` and its
    /// `downsample_factor` the model's `factor`.
    pub fn from_config(pre: &ConfigObject, patch: usize, factor: usize) -> Result<Lfm2VlProcessor> {
        let loc = pre.location();
        let what = format!("the vision tower's patch_size {patch} (config.json)");
        let patch_size = read_matching(pre, "encoder_patch_size", 16, MAX_SIDE, patch, &what)?;
        let what = format!("config.json's downsample_factor {factor}");
        let downsample_factor =
            read_matching(pre, "downsample_factor", 2, MAX_SIDE, factor, &what)?;
        let min_image_tokens = pre.positive_or("min_image_tokens", 64, MAX_SIDE * MAX_SIDE)?;
        let max_image_tokens = pre.positive_or("max_image_tokens", 256, MAX_SIDE * MAX_SIDE)?;
        if min_image_tokens > max_image_tokens {
            return Err(Error::bad_config(format!(
                "{loc}: min_image_tokens {min_image_tokens} is above max_image_tokens \
                 {max_image_tokens}"
            )));
        }
        let filter = read_filter(pre, Filter::Bilinear)?;
        let interp = TvInterpolation::from_filter(filter).ok_or_else(|| {
            Error::bad_config(format!(
                "{loc}: resample {filter:?} is not supported for lfm2_vl (bilinear or bicubic)"
            ))
        })?;
        let max_pixels_tolerance = pre.f64_or("max_pixels_tolerance", 2.0)?;
        if !(max_pixels_tolerance.is_finite() && max_pixels_tolerance > 0.0) {
            return Err(Error::bad_config(format!(
                "{loc}: max_pixels_tolerance {max_pixels_tolerance} is not a positive number"
            )));
        }
        let p = Lfm2VlProcessor {
            patch_size,
            downsample_factor,
            min_image_tokens,
            max_image_tokens,
            do_image_splitting: pre.bool_or("do_image_splitting", true)?,
            min_tiles: pre.positive_or("min_tiles", 2, MAX_TILES)?,
            max_tiles: pre.positive_or("max_tiles", 10, MAX_TILES)?,
            tile_size: pre.positive_or("tile_size", 512, MAX_SIDE)?,
            use_thumbnail: pre.bool_or("use_thumbnail", true)?,
            max_pixels_tolerance,
            interp,
            rescale_normalize: read_rescale_normalize(pre, ([0.5; 3], [0.5; 3]))?,
        };
        if p.do_image_splitting {
            check_tiling(
                p.min_tiles,
                p.max_tiles,
                p.tile_size,
                patch_size * downsample_factor,
            )
            .map_err(|e| Error::bad_config(format!("{loc}: {e}")))?;
        }
        Ok(p)
    }

    /// `smart_resize(height, width)`: the `(height, width)` of the single image (and of the
    /// thumbnail).
    pub fn smart_resize(&self, height: usize, width: usize) -> (usize, usize) {
        let (p, f) = (self.patch_size, self.downsample_factor);
        let t = p * f;
        let per_token = t as f64 * t as f64;
        let min_pixels = self.min_image_tokens as f64 * per_token;
        let max_pixels = self.max_image_tokens as f64 * per_token;
        let (hf, wf, tf) = (height as f64, width as f64, t as f64);
        let mut h = round_by_factor(height, t).max(t);
        let mut w = round_by_factor(width, t).max(t);
        if h as f64 * w as f64 > max_pixels {
            let beta = (hf * wf / max_pixels).sqrt();
            h = (((hf / beta / tf).floor() as usize) * t).max(t);
            w = (((wf / beta / tf).floor() as usize) * t).max(t);
        } else if (h as f64 * w as f64) < min_pixels {
            let beta = (min_pixels / (hf * wf)).sqrt();
            h = (hf * beta / tf).ceil() as usize * t;
            w = (wf * beta / tf).ceil() as usize * t;
        }
        (h, w)
    }

    /// `_is_image_too_large`: whether the reference tiles the image when splitting is on.
    pub fn is_too_large(&self, height: usize, width: usize) -> bool {
        let (p, f) = (self.patch_size, self.downsample_factor);
        let t = p * f;
        let h = round_by_factor(height, t).max(p);
        let w = round_by_factor(width, t).max(p);
        let per_token = (p as f64 * f as f64).powi(2);
        h as f64 * w as f64 > self.max_image_tokens as f64 * per_token * self.max_pixels_tolerance
    }

    /// The tile bounds of one call (`None`: not split): `do_image_splitting`, `min_tiles` /
    /// `max_tiles` (the options' `min_patches` / `max_patches`) over the file's. Off, or
    /// `min_tiles == max_tiles == 1`, is no splitting (`resize_and_split`).
    fn tile_bounds(&self, opts: &PreprocessOptions) -> Result<Option<(usize, usize)>> {
        for (name, v) in [
            ("min_patches (min_tiles)", opts.min_patches),
            ("max_patches (max_tiles)", opts.max_patches),
        ] {
            if let Some(n) = v.filter(|&n| n == 0 || n > MAX_TILES) {
                return Err(Error::invalid_argument(format!(
                    "{name} {n} is not between 1 and {MAX_TILES}"
                )));
            }
        }
        if !opts.do_image_splitting.unwrap_or(self.do_image_splitting) {
            return Ok(None);
        }
        let min = opts.min_patches.unwrap_or(self.min_tiles);
        let max = opts.max_patches.unwrap_or(self.max_tiles);
        let t = self.patch_size * self.downsample_factor;
        check_tiling(min, max, self.tile_size, t).map_err(Error::invalid_argument)
    }

    /// What the processor does with a `width` x `height` image under `opts`.
    pub fn plan(&self, height: usize, width: usize, opts: &PreprocessOptions) -> Result<Plan> {
        let (h, w) = self.smart_resize(height, width);
        let Some((min, max)) = self.tile_bounds(opts)? else {
            return Ok(Plan::Single(h, w));
        };
        if !self.is_too_large(height, width) {
            return Ok(Plan::Single(h, w));
        }
        let (wu, hu) = (width as u32, height as u32);
        let ts = self.tile_size;
        let grid = closest_grid(wu, hu, ts, ts, &target_ratios(min, max));
        Ok(if grid.tiles() == 1 {
            Plan::Single(ts, ts)
        } else {
            Plan::Tiled {
                grid,
                thumbnail: self.use_thumbnail.then_some((h, w)),
            }
        })
    }

    /// Rescales, normalizes and patchifies a resized image into the front of `out`.
    fn patchify_into(&self, image: &RgbImage, out: &mut [f32]) -> Result<()> {
        let (rescale, mean_std) = self.rescale_normalize;
        let chw = tv_normalize(image, rescale, mean_std)?;
        let (h, w) = (image.height as usize, image.width as usize);
        patch_rows(&chw, h, w, self.patch_size, out);
        Ok(())
    }

    /// `image` resized to `(h, w)` (itself when it has that size already).
    fn resized(&self, image: &RgbImage, h: usize, w: usize, limits: &Limits) -> Result<RgbImage> {
        limits.check_image("the resized image", w as u64, h as u64)?;
        if (image.width as usize, image.height as usize) == (w, h) {
            return Ok(image.clone());
        }
        let (Ok(w32), Ok(h32)) = (u32::try_from(w), u32::try_from(h)) else {
            return Err(Error::invalid_argument(format!(
                "cannot resize an image to {w}x{h}"
            )));
        };
        resize_tv(image, w32, h32, self.interp, limits)
    }

    /// Resizes, rescales, normalizes and patchifies an image. Not split: `[rows · cols,
    /// 3 · patch²]`, token grid `[1, rows / f, cols / f]`. Split: the tiles' patch rows
    /// (row-major tiles) then the thumbnail's, token grid `[1, 1, n_tokens]`, the layout in
    /// `extra` ([`Split`]).
    pub fn process(
        &self,
        image: &RgbImage,
        opts: &PreprocessOptions,
        limits: &Limits,
    ) -> Result<Pixels> {
        let (w0, h0) = (image.width as usize, image.height as usize);
        if w0 == 0 || h0 == 0 {
            return Err(Error::invalid_argument(format!(
                "cannot resize a {w0}x{h0} image"
            )));
        }
        let (p, f) = (self.patch_size, self.downsample_factor);
        let dim = 3 * p * p;
        let (grid, thumbnail) = match self.plan(h0, w0, opts)? {
            Plan::Single(h, w) => {
                let (rows, cols) = (h / p, w / p);
                let tokens = ((rows / f) as u64).saturating_mul((cols / f) as u64);
                limits.check_tokens(tokens, &|| format!("a {w0}x{h0} image resized to {w}x{h}"))?;
                let resized = self.resized(image, h, w, limits)?;
                let mut data = try_filled(rows * cols * dim, 0f32, "the patch rows")?;
                self.patchify_into(&resized, &mut data)?;
                return Ok(Pixels {
                    data,
                    shape: vec![rows * cols, dim],
                    grid: [1, rows / f, cols / f],
                    extra: Vec::new(),
                });
            }
            Plan::Tiled { grid, thumbnail } => (grid, thumbnail),
        };
        let (ts, s) = (self.tile_size, self.tile_size / p);
        let split = Split {
            grid,
            tile: s,
            thumbnail: thumbnail.map(|(h, w)| (h / p, w / p)),
        };
        let entries = split.entries();
        let sizes = entries.iter().map(|(r, c)| r.saturating_mul(*c));
        let rows = sizes.fold(0usize, usize::saturating_add);
        limits.check_tokens((rows / (f * f)) as u64, &|| {
            format!(
                "a {w0}x{h0} image in {}x{} tiles of {ts} px and a thumbnail",
                grid.columns, grid.rows
            )
        })?;
        let canvas = self.resized(image, grid.rows * ts, grid.columns * ts, limits)?;
        let tiles = cut_grid(&canvas, grid, ts as u32, ts as u32)?;
        drop(canvas);
        let mut data = try_filled(rows * dim, 0f32, "the patch rows")?;
        let per_tile = s * s * dim;
        for (tile, out) in tiles.iter().zip(data.chunks_mut(per_tile)) {
            self.patchify_into(tile, out)?;
        }
        if let Some((h, w)) = thumbnail {
            let thumb = self.resized(image, h, w, limits)?;
            self.patchify_into(&thumb, &mut data[tiles.len() * per_tile..])?;
        }
        Ok(Pixels {
            data,
            shape: vec![rows, dim],
            grid: [1, 1, rows / (f * f)],
            extra: split.to_extra(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn proc(json: &str) -> Lfm2VlProcessor {
        let pre = ConfigObject::parse("preprocessor_config.json", json).unwrap();
        Lfm2VlProcessor::from_config(&pre, 16, 2).unwrap()
    }

    #[test]
    fn sizes_match_python() {
        // Values from Lfm2VlImageProcessor.smart_resize / _is_image_too_large (class defaults).
        let p = proc("{}");
        assert_eq!(p.smart_resize(480, 640), (416, 576));
        assert_eq!(p.smart_resize(512, 512), (512, 512));
        assert_eq!(p.smart_resize(100, 100), (256, 256));
        assert_eq!(p.smart_resize(1080, 1920), (384, 672));
        assert_eq!(p.smart_resize(48, 2000), (64, 1984));
        assert_eq!(p.smart_resize(3000, 1000), (864, 288));
        assert!(!p.is_too_large(512, 512));
        assert!(p.is_too_large(1080, 1920));
        assert!(!p.is_too_large(700, 700));
        assert!(p.is_too_large(800, 800));
    }

    #[test]
    fn target_ratios_follow_pythons_set_order() {
        // Lfm2VlImageProcessor._target_ratios (CPython 3.11), as (cols, rows).
        let r = |min, max| -> Vec<(usize, usize)> {
            target_ratios(min, max)
                .into_iter()
                .map(|g| (g.columns, g.rows))
                .collect()
        };
        assert_eq!(
            r(1, 4),
            [
                (1, 1),
                (1, 2),
                (2, 1),
                (3, 1),
                (1, 3),
                (4, 1),
                (1, 4),
                (2, 2)
            ]
        );
        assert_eq!(r(4, 4), [(4, 1), (1, 4), (2, 2)]);
        #[rustfmt::skip]
        let want = [
            (1, 2), (2, 1), (3, 1), (1, 3), (2, 2), (4, 1), (1, 4), (5, 1), (1, 5), (1, 6),
            (6, 1), (3, 2), (2, 3), (7, 1), (1, 7), (4, 2), (2, 4), (1, 8), (8, 1), (1, 9),
            (3, 3), (9, 1), (2, 5), (5, 2), (10, 1), (1, 10),
        ];
        assert_eq!(r(2, 10), want);
        #[rustfmt::skip]
        let want = [
            (3, 1), (1, 3), (4, 1), (1, 4), (2, 2), (1, 5), (5, 1), (6, 1), (2, 3), (1, 6),
            (3, 2), (7, 1), (1, 7),
        ];
        assert_eq!(r(3, 7), want);
        assert_eq!(target_ratios(1, MAX_TILES).len(), 7262);
    }

    #[test]
    fn grids_match_python() {
        // Lfm2VlImageProcessor._get_grid_layout(height, width, min, max, 512)[:2] = (cols, rows).
        let grid = |h: u32, w: u32, min, max| {
            let g = closest_grid(w, h, 512, 512, &target_ratios(min, max));
            (g.columns, g.rows)
        };
        assert_eq!(grid(1080, 1920, 2, 10), (4, 2));
        assert_eq!(grid(600, 800, 2, 10), (3, 2));
        assert_eq!(grid(2000, 500, 2, 10), (1, 4));
        assert_eq!(grid(3000, 1000, 2, 10), (1, 3));
        assert_eq!(grid(480, 1280, 2, 4), (3, 1));
        assert_eq!(grid(1024, 1024, 1, 10), (2, 2));
        assert_eq!(grid(700, 700, 1, 10), (1, 1));
        // 5:2 ties 4x1 and 2x2 (both 1.5 away); Python's set puts 2x2 last, so it wins once
        // the image covers half of its area, and 4x1 stays below that.
        assert_eq!(grid(1000, 2500, 4, 4), (2, 2));
        assert_eq!(grid(800, 2000, 4, 4), (2, 2));
        assert_eq!(grid(100, 250, 4, 4), (4, 1));
    }

    #[test]
    fn plans() {
        let p = proc("{}");
        let default = PreprocessOptions::default();
        assert_eq!(p.plan(512, 512, &default).unwrap(), Plan::Single(512, 512));
        let tiled = Plan::Tiled {
            grid: TileGrid {
                columns: 4,
                rows: 2,
            },
            thumbnail: Some((384, 672)),
        };
        assert_eq!(p.plan(1080, 1920, &default).unwrap(), tiled);
        let off = PreprocessOptions {
            do_image_splitting: Some(false),
            ..Default::default()
        };
        assert_eq!(p.plan(1080, 1920, &off).unwrap(), Plan::Single(384, 672));
        let one = PreprocessOptions {
            min_patches: Some(1),
            max_patches: Some(1),
            ..Default::default()
        };
        assert_eq!(p.plan(1080, 1920, &one).unwrap(), Plan::Single(384, 672));
        let p = proc(r#"{"use_thumbnail": false}"#);
        let Plan::Tiled { thumbnail, .. } = p.plan(1080, 1920, &default).unwrap() else {
            panic!("not tiled")
        };
        assert_eq!(thumbnail, None);
    }

    #[test]
    fn absurd_token_bounds_are_refused_without_overflow() {
        // Both paths count tokens before allocating; sizes past u32 never reach the resize.
        let big = (MAX_SIDE * MAX_SIDE).to_string();
        let json = format!(r#"{{"min_image_tokens": {big}, "max_image_tokens": {big}}}"#);
        let p = proc(&json);
        let img = RgbImage::new(1, 1, vec![9; 3]).unwrap();
        let e = p
            .process(&img, &PreprocessOptions::default(), &Limits::default())
            .unwrap_err();
        assert!(e.message().contains("1x1"), "{e}");
        let img = RgbImage::new(300, 4000, vec![9; 300 * 4000 * 3]).unwrap();
        assert!(p
            .process(&img, &PreprocessOptions::default(), &Limits::default())
            .is_err());
    }

    #[test]
    fn refusals() {
        let pre = ConfigObject::parse("preprocessor_config.json", "{}").unwrap();
        let e = Lfm2VlProcessor::from_config(&pre, 14, 2).unwrap_err();
        assert!(e.message().contains("encoder_patch_size"), "{e}");
        let e = Lfm2VlProcessor::from_config(&pre, 16, 4).unwrap_err();
        assert!(e.message().contains("downsample_factor"), "{e}");
        for (bad, word) in [
            (r#"{"resample": 0}"#, "resample"),
            (r#"{"min_image_tokens": 300}"#, "min_image_tokens"),
            (r#"{"max_pixels_tolerance": -1}"#, "max_pixels_tolerance"),
            (
                r#"{"min_tiles": 5, "max_tiles": 4}"#,
                "min_tiles 5 is above max_tiles 4",
            ),
            (r#"{"tile_size": 500}"#, "tile_size 500"),
            (r#"{"max_tiles": 2000}"#, "max_tiles"),
        ] {
            let pre = ConfigObject::parse("preprocessor_config.json", bad).unwrap();
            let e = Lfm2VlProcessor::from_config(&pre, 16, 2).unwrap_err();
            assert!(e.message().contains(word), "{bad}: {e}");
        }
        // With splitting off in the file, the tile settings are only checked when a call
        // turns it on.
        let p = proc(r#"{"do_image_splitting": false, "tile_size": 500}"#);
        let on = PreprocessOptions {
            do_image_splitting: Some(true),
            ..Default::default()
        };
        let e = p.plan(1080, 1920, &on).unwrap_err();
        assert!(e.message().contains("tile_size 500"), "{e}");
        let p = proc("{}");
        for (min, max, word) in [
            (Some(0), None, "min_patches (min_tiles) 0"),
            (None, Some(1025), "max_patches (max_tiles) 1025"),
            (Some(3), Some(2), "min_tiles 3 is above max_tiles 2"),
        ] {
            let opts = PreprocessOptions {
                min_patches: min,
                max_patches: max,
                ..Default::default()
            };
            let e = p.plan(1080, 1920, &opts).unwrap_err();
            assert!(e.message().contains(word), "{e}");
        }
    }
}
