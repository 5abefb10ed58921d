//! LFM2-VL (`model_type` `lfm2_vl`): `modeling_lfm2_vl.py`'s image path,
//! `Lfm2VlModel.get_image_features`.
//!
//! 1. The SigLIP2 NaFlex tower (`vision_tower`, a `Siglip2VisionModel` built from
//!    `vision_config`, whose class defaults apply when it is absent):
//!    [`crate::models::siglip2::Siglip2VisionTower`], `last_hidden_state` (after
//!    `post_layernorm`), the image's real patch rows;
//! 2. the rows reshaped to the `rows x cols` patch grid and pixel-unshuffled by
//!    `downsample_factor` (`Lfm2VlMultiModalProjector.pixel_unshuffle`): each output token is
//!    the `f x f` block at its place, channels ordered (row in the block, column in the block,
//!    channel), tokens row-major over the `rows / f x cols / f` grid;
//! 3. `multi_modal_projector`: LayerNorm (eps 1e-5, when `projector_use_layernorm`),
//!    `linear_1` (to `projector_hidden_size`, bias per `projector_bias`),
//!    `projector_hidden_act` (default `gelu`, erf), `linear_2` to the language model's width.
//!
//! Preprocessing: [`crate::preprocess::lfm2_vl`]. A split image is several patch grids (its
//! tiles row-major, then the thumbnail), each its own sequence through the tower and the
//! unshuffle, as `get_image_features` runs each `pixel_values` entry; the image's embeddings
//! are its entries' in that order (what the language model receives).
//! Prompt (`Lfm2VlProcessor._build_image_tokens`, `use_image_special_tokens` on):
//! `<|image_start|>`, then for an image that is not split one `image_token_id` per row, for a
//! split one per tile `<|img_row_{r}_col_{c}|>` (1-based, row-major) and the tile's rows, then
//! `<|img_thumbnail|>` and the thumbnail's rows (with a thumbnail); `<|image_end|>`.

use candle_core::{DType, Device, Tensor};

use crate::config::ConfigObject;
use crate::error::{Error, Result};
use crate::models::activation::Activation;
use crate::models::checkpoint::Checkpoint;
use crate::models::layers::{LayerNorm, Linear, Loader};
use crate::models::pixels::{split_rows, to_compute};
use crate::models::siglip2::{Siglip2VisionConfig, Siglip2VisionTower};
use crate::models::vit::MAX_DIM;
use crate::models::{
    batch_for_budget, processor_methods, ModelInfo, PromptBuilder, PromptLayout, SpecialTokens,
    VisionModel,
};
use crate::preprocess::lfm2_vl::{entry_grids, Lfm2VlProcessor, Split};
use crate::preprocess::qwen_video::VideoMeta;
use crate::preprocess::Pixels;
use crate::tokenizer::AddedTokens;

/// `Lfm2VlConfig.image_token_id`.
const DEFAULT_IMAGE_TOKEN: i64 = 396;
/// `Lfm2VlProcessor`'s image start / end strings.
const IMAGE_START: &str = "<|image_start|>";
const IMAGE_END: &str = "<|image_end|>";
const IMAGE_THUMBNAIL: &str = "<|img_thumbnail|>";

/// The pixel unshuffle of a `[rows · cols, d]` patch grid (row-major) by `f`:
/// `[(rows / f) · (cols / f), f · f · d]`.
pub fn pixel_unshuffle(x: &Tensor, rows: usize, cols: usize, f: usize) -> Result<Tensor> {
    let (n, d) = x.dims2()?;
    if f == 0 || n != rows * cols || rows % f != 0 || cols % f != 0 {
        return Err(Error::compute(format!(
            "pixel unshuffle: {n} rows are not a {rows}x{cols} grid divisible by {f}"
        )));
    }
    let (r, c) = (rows / f, cols / f);
    Ok(x.reshape(vec![r, f, c, f, d])?
        .permute(vec![0, 2, 1, 3, 4])?
        .contiguous()?
        .reshape((r * c, f * f * d))?)
}

/// `Lfm2VlMultiModalProjector` after the unshuffle.
struct Projector {
    norm: Option<LayerNorm>,
    linear_1: Linear,
    act: Activation,
    linear_2: Linear,
}

impl Projector {
    /// Loads `multi_modal_projector.` under `root` for unshuffled rows `in_dim` wide, as
    /// config.json's `projector_*` keys say; returns it with its output (the text) width.
    fn load(root: &Loader, cfg: &ConfigObject, in_dim: usize) -> Result<(Projector, usize)> {
        let proj = root.sub("multi_modal_projector");
        let hidden = cfg.positive_or("projector_hidden_size", 2560, MAX_DIM * 8)?;
        let bias = cfg.bool_or("projector_bias", true)?;
        // Lfm2Config's class default width is 2560; a text_config without it takes that.
        let text_dim = match cfg.object("text_config")? {
            Some(tc) => tc.positive_or("hidden_size", 2560, MAX_DIM)?,
            None => 2560,
        };
        let act_name = cfg.string_or("projector_hidden_act", "gelu")?;
        let act = Activation::from_name(&act_name)
            .map_err(|e| e.context("config.json: projector_hidden_act"))?;
        let projector = Projector {
            norm: if cfg.bool_or("projector_use_layernorm", true)? {
                Some(proj.layer_norm("layer_norm", in_dim, 1e-5)?)
            } else {
                None
            },
            linear_1: proj.linear("linear_1", in_dim, hidden, bias)?,
            act,
            linear_2: proj.linear("linear_2", hidden, text_dim, bias)?,
        };
        Ok((projector, text_dim))
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let x = match &self.norm {
            Some(n) => n.forward(x)?,
            None => x.clone(),
        };
        let h = self.act.forward(&self.linear_1.forward(&x)?)?;
        self.linear_2.forward(&h)
    }
}

/// An LFM2-VL tower with its projector and image processor.
pub struct Lfm2VlModel {
    info: ModelInfo,
    tower: Siglip2VisionTower,
    factor: usize,
    projector: Projector,
    processor: Lfm2VlProcessor,
    /// The tokenizer's added tokens (the row / column tags and the thumbnail token).
    added: AddedTokens,
    dtype: DType,
    device: Device,
}

impl Lfm2VlModel {
    pub fn load(ck: &Checkpoint) -> Result<Lfm2VlModel> {
        let cfg = ck.config();
        let vision = Siglip2VisionConfig::from_config(&ck.vision_config()?)?;
        let factor = cfg.positive_or("downsample_factor", 2, MAX_DIM)?;
        let root = ck.loader("");
        let tower = Siglip2VisionTower::load(&root.sub("vision_tower"), &vision)?;
        let d = vision.encoder.hidden_size;
        let (projector, text_dim) = Projector::load(&root, cfg, d * factor * factor)?;
        let processor =
            Lfm2VlProcessor::from_config(&ck.files.preprocessor, vision.patch_size, factor)?;
        let added = AddedTokens::read(&ck.files.dir);
        let (side, max_batch) = image_bounds(&vision, &processor, factor);
        let info = ModelInfo {
            family: "lfm2_vl",
            model_type: ck.files.model_type()?,
            output_dim: text_dim,
            vision_dim: d,
            patch_size: vision.patch_size,
            image_size: (side, side),
            tokens_per_image: None,
            max_batch,
            mixed_shape_batches: true,
            tokens: SpecialTokens {
                image: Some(cfg.i64("image_token_id")?.unwrap_or(DEFAULT_IMAGE_TOKEN)),
                image_start: added.id(IMAGE_START),
                image_end: added.id(IMAGE_END),
                image_break: None,
            },
        };
        Ok(Lfm2VlModel {
            info,
            tower,
            factor,
            projector,
            processor,
            added,
            dtype: ck.dtype,
            device: ck.device.clone(),
        })
    }
}

/// The side of the largest unsplit image (`image_size`, square) and the images per forward
/// pass (`max_batch`) whose activations, split images at their most tiles included, stay
/// around 512 MiB.
fn image_bounds(
    vision: &Siglip2VisionConfig,
    processor: &Lfm2VlProcessor,
    factor: usize,
) -> (usize, usize) {
    let p = vision.patch_size;
    let max_patches = processor.max_image_tokens.saturating_mul(factor * factor);
    let side = ((max_patches as f64).sqrt() as usize * p).max(1);
    let width = (4 * vision.encoder.hidden_size).max(2 * vision.encoder.intermediate_size);
    // A split image: up to max_tiles tiles and the thumbnail.
    let tile_patches = (processor.tile_size / p).pow(2);
    let split_patches = processor
        .max_tiles
        .saturating_mul(tile_patches)
        .saturating_add(max_patches);
    let per_image = max_patches
        .max(split_patches)
        .saturating_mul(width)
        .saturating_mul(8);
    (side, batch_for_budget(per_image, 512 << 20))
}

impl VisionModel for Lfm2VlModel {
    // The processor's kwargs `do_image_splitting` (off: every image as one) and
    // `min_tiles` / `max_tiles` (`min_patches` / `max_patches`).
    processor_methods!("do_image_splitting", "min_patches", "max_patches");

    fn forward(&self, batch: &[&Pixels]) -> Result<Vec<Tensor>> {
        let (p, f) = (self.processor.patch_size, self.factor);
        let dim = 3 * p * p;
        // Every entry (an unsplit image, a tile, a thumbnail) is its own patch grid.
        let mut grids = Vec::new();
        let mut tokens = Vec::with_capacity(batch.len());
        let mut data = Vec::with_capacity(batch.iter().map(|px| px.data.len()).sum());
        for px in batch {
            let entries = entry_grids(px, f)?;
            let rows: usize = entries.iter().map(|(r, c)| r * c).sum();
            if px.shape != [rows, dim] || px.data.len() != rows * dim {
                return Err(Error::invalid_argument(format!(
                    "pixels of shape {:?} do not hold the [{rows}, {dim}] patch rows of \
                     patch grids {entries:?}",
                    px.shape
                )));
            }
            tokens.push(entries.iter().map(|(r, c)| (r / f) * (c / f)).sum());
            grids.extend(entries);
            data.extend_from_slice(&px.data);
        }
        let n = data.len() / dim;
        let x = Tensor::from_vec(data, (n, dim), &Device::Cpu)?;
        let x = to_compute(x, self.dtype, &self.device)?;
        let y = self.tower.forward(&x, &grids)?;
        let counts: Vec<usize> = grids.iter().map(|(r, c)| r * c).collect();
        let mut merged = Vec::with_capacity(grids.len());
        for (t, &(r, c)) in split_rows(&y, &counts)?.iter().zip(&grids) {
            merged.push(pixel_unshuffle(t, r, c, f)?);
        }
        let z = self.projector.forward(&Tensor::cat(&merged, 0)?)?;
        split_rows(&z, &tokens)
    }

    fn prompt_layout(&self, pixels: &Pixels, _video: Option<&VideoMeta>) -> Result<PromptLayout> {
        // Lfm2VlProcessor._build_image_tokens.
        let (t, f) = (&self.info.tokens, self.factor);
        let mut b = PromptBuilder::default();
        b.special(t.image_start, IMAGE_START);
        match Split::from_extra(&pixels.extra)? {
            None => {
                b.rows(t.image, pixels.n_tokens());
            }
            Some(split) => {
                let per_tile = (split.tile / f).pow(2);
                for r in 1..=split.grid.rows {
                    for c in 1..=split.grid.columns {
                        let tag = format!("<|img_row_{r}_col_{c}|>");
                        b.special(self.added.id(&tag), &tag).rows(t.image, per_tile);
                    }
                }
                if let Some((rows, cols)) = split.thumbnail {
                    b.special(self.added.id(IMAGE_THUMBNAIL), IMAGE_THUMBNAIL)
                        .rows(t.image, (rows / f) * (cols / f));
                }
            }
        }
        b.special(t.image_end, IMAGE_END);
        b.finish(pixels.n_tokens())
    }

    fn spatial_merge_size(&self) -> usize {
        self.factor
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unshuffle_matches_the_reference_chain() {
        // Lfm2VlMultiModalProjector.pixel_unshuffle on a 4x6 grid of 2 channels, f = 2,
        // written out: token (i, j) = concat over dr, dc of x[2i + dr, 2j + dc].
        let (rows, cols, d, f) = (4, 6, 2, 2);
        let v: Vec<f32> = (0..rows * cols * d).map(|i| i as f32).collect();
        let x = Tensor::from_vec(v.clone(), (rows * cols, d), &Device::Cpu).unwrap();
        let y = pixel_unshuffle(&x, rows, cols, f).unwrap();
        assert_eq!(y.dims(), &[6, 8]);
        let y = y.to_vec2::<f32>().unwrap();
        for i in 0..rows / f {
            for j in 0..cols / f {
                let mut want = Vec::new();
                for dr in 0..f {
                    for dc in 0..f {
                        let at = ((f * i + dr) * cols + f * j + dc) * d;
                        want.extend_from_slice(&v[at..at + d]);
                    }
                }
                assert_eq!(y[i * (cols / f) + j], want);
            }
        }
        assert!(pixel_unshuffle(&x, 4, 6, 4).is_err());
    }
}
