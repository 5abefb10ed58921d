//! SigLIP2 NaFlex (`model_type` `siglip2`, the dual `Siglip2Model`, of which only
//! `vision_model.*` is read; and `siglip2_vision_model`, the bare `Siglip2VisionModel`):
//! `modeling_siglip2.py`'s vision path.
//!
//! 1. `Siglip2VisionEmbeddings`: a linear map with bias over the `(y, x, channel)` patch rows
//!    of [`crate::preprocess::siglip2`], plus the learned position table (`num_patches` rows,
//!    a `√num_patches` square) resized to the image's `rows x cols` patch grid with
//!    `F.interpolate(mode="bilinear", align_corners=False, antialias=True)` in float32
//!    ([`crate::models::interpolate_aa`]) and cast to the compute dtype;
//! 2. the SigLIP encoder ([`crate::models::vit::Encoder`]);
//! 3. `post_layernorm`.
//!
//! The embeddings are `last_hidden_state`'s rows of the image's real patches, `[rows · cols,
//! hidden]` (the attention-pooling `head` is not run). The reference pads every image to
//! `max_num_patches` and masks the padding out as attention keys; here each image's patches
//! attend among themselves in one packed sequence, the same arithmetic without the padding,
//! so images of any sizes share one forward.

use candle_core::{DType, Device, Tensor};

use crate::config::ConfigObject;
use crate::error::{Error, Result};
use crate::models::activation::Activation;
use crate::models::checkpoint::Checkpoint;
use crate::models::grid_sample::GridTable;
use crate::models::interpolate_aa::interpolate_bilinear_aa;
use crate::models::layers::{LayerNorm, Linear, Loader};
use crate::models::pixels::{pack_single_frames, split_rows, to_compute};
use crate::models::vit::{Encoder, VitConfig, MAX_DIM};
use crate::models::{batch_for_budget, processor_methods, ModelInfo, SpecialTokens, VisionModel};
use crate::preprocess::limits::try_with_capacity;
use crate::preprocess::siglip2::Siglip2Processor;
use crate::preprocess::Pixels;

/// `Siglip2VisionConfig`'s encoder defaults (ViT-B: 768 wide, 12 layers of 12 heads).
const ENCODER_DEFAULTS: VitConfig = VitConfig {
    hidden_size: 768,
    intermediate_size: 3072,
    num_layers: 12,
    num_heads: 12,
    layer_norm_eps: 1e-6,
    act: Activation::GeluTanh,
};

/// Largest accepted position table (rows).
const MAX_POSITIONS: usize = 1 << 20;

/// `Siglip2VisionConfig`, with its class defaults.
#[derive(Debug, Clone, PartialEq)]
pub struct Siglip2VisionConfig {
    pub patch_size: usize,
    /// Rows of the learned position table, a square (`num_patches`, default 256).
    pub num_patches: usize,
    pub encoder: VitConfig,
}

impl Siglip2VisionConfig {
    /// Reads a vision config object (`vision_config` of a `siglip2` config, or a
    /// `siglip2_vision_model` config), absent keys taking the class defaults.
    pub fn from_config(cfg: &ConfigObject) -> Result<Siglip2VisionConfig> {
        let loc = cfg.location();
        let c = Siglip2VisionConfig {
            patch_size: cfg.positive_or("patch_size", 16, MAX_DIM)?,
            num_patches: cfg.positive_or("num_patches", 256, MAX_POSITIONS)?,
            encoder: VitConfig::from_config(cfg, &ENCODER_DEFAULTS, "gelu_pytorch_tanh")?,
        };
        let channels = cfg.usize_or("num_channels", 3, MAX_DIM)?;
        if channels != 3 {
            return Err(Error::bad_config(format!(
                "{loc}: num_channels {channels} is not supported (RGB images have 3)"
            )));
        }
        let side = c.position_side();
        if side * side != c.num_patches {
            return Err(Error::bad_config(format!(
                "{loc}: num_patches {} is not a square (the position table is reshaped to \
                 int(sqrt(num_patches)) = {side} rows and columns)",
                c.num_patches
            )));
        }
        Ok(c)
    }

    /// Rows (and columns) of the position table: `int(num_patches ** 0.5)`.
    pub fn position_side(&self) -> usize {
        (self.num_patches as f64).sqrt() as usize
    }
}

/// The tower: embeddings, encoder and `post_layernorm`.
pub struct Siglip2VisionTower {
    config: Siglip2VisionConfig,
    /// `embeddings.patch_embedding`: `[hidden, 3 · patch²]` over `(y, x, channel)` rows.
    patch: Linear,
    /// `embeddings.position_embedding.weight` `[num_patches, hidden]` in f32 on the host (the
    /// reference upcasts it before resizing).
    positions: Vec<f32>,
    encoder: Encoder,
    post_layernorm: LayerNorm,
}

impl Siglip2VisionTower {
    /// Loads the tower whose tensors are under `loader` (`embeddings.`, `encoder.`,
    /// `post_layernorm.`).
    pub fn load(loader: &Loader, config: &Siglip2VisionConfig) -> Result<Siglip2VisionTower> {
        let d = config.encoder.hidden_size;
        let p = config.patch_size;
        let emb = loader.sub("embeddings");
        let positions = emb
            .tensor_as(
                "position_embedding.weight",
                &[config.num_patches, d],
                DType::F32,
            )?
            .to_device(&Device::Cpu)?
            .flatten_all()?
            .to_vec1::<f32>()?;
        Ok(Siglip2VisionTower {
            config: config.clone(),
            patch: emb.linear("patch_embedding", 3 * p * p, d, true)?,
            positions,
            encoder: Encoder::load_first(
                &loader.sub("encoder"),
                &config.encoder,
                config.encoder.num_layers,
            )?,
            post_layernorm: loader.layer_norm(
                "post_layernorm",
                d,
                config.encoder.layer_norm_eps,
            )?,
        })
    }

    /// The position table resized to a `rows x cols` patch grid: `[rows · cols, hidden]`
    /// row-major, f32.
    pub fn resized_positions(&self, rows: usize, cols: usize) -> Vec<f32> {
        let side = self.config.position_side();
        let table = GridTable {
            data: &self.positions,
            height: side,
            width: side,
            channels: self.config.encoder.hidden_size,
        };
        interpolate_bilinear_aa(table, rows, cols)
    }

    /// `last_hidden_state` of packed patch rows `[n, 3 · patch²]` (compute dtype and device)
    /// of images with patch grids `grids` (`(rows, cols)`, back to back): `[n, hidden]`.
    pub fn forward(&self, patches: &Tensor, grids: &[(usize, usize)]) -> Result<Tensor> {
        let d = self.config.encoder.hidden_size;
        let n: usize = grids.iter().map(|(r, c)| r * c).sum();
        let mut pos = try_with_capacity(n * d, "the position embeddings")?;
        for &(rows, cols) in grids {
            pos.extend_from_slice(&self.resized_positions(rows, cols));
        }
        let pos = to_compute(
            Tensor::from_vec(pos, (n, d), &Device::Cpu)?,
            patches.dtype(),
            patches.device(),
        )?;
        let x = (self.patch.forward(patches)? + pos)?;
        let segments: Vec<usize> = grids.iter().map(|(r, c)| r * c).collect();
        let x = self.encoder.forward_packed(&x, &segments)?;
        self.post_layernorm.forward(&x)
    }
}

/// Which `model_type` is loaded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Siglip2Variant {
    /// `siglip2`: the dual model; the vision config is its `vision_config` (all class defaults
    /// when absent, as `Siglip2Config` makes it), the tower under `vision_model.`.
    Dual,
    /// `siglip2_vision_model`: the bare tower (`vision_model.*` in the Hub layout, no prefix in
    /// a 5.x save).
    Tower,
}

/// A SigLIP2 NaFlex model: tower and processor.
pub struct Siglip2Model {
    info: ModelInfo,
    tower: Siglip2VisionTower,
    processor: Siglip2Processor,
    dtype: DType,
    device: Device,
}

impl Siglip2Model {
    pub fn load(ck: &Checkpoint, variant: Siglip2Variant) -> Result<Siglip2Model> {
        let vision_cfg = match variant {
            Siglip2Variant::Tower => ck.config().clone(),
            Siglip2Variant::Dual => ck.vision_config()?,
        };
        let config = Siglip2VisionConfig::from_config(&vision_cfg)?;
        // Tensor names are canonical: a leading `vision_model.` is dropped (ck.weights.rs).
        let tower = Siglip2VisionTower::load(&ck.loader(""), &config)?;
        let processor = Siglip2Processor::from_config(&ck.files.preprocessor, config.patch_size)?;
        let d = config.encoder.hidden_size;
        let p = config.patch_size;
        let side = ((processor.max_num_patches as f64).sqrt() as usize * p).max(1);
        let width = (4 * d).max(2 * config.encoder.intermediate_size);
        let per_image = processor
            .max_num_patches
            .saturating_mul(width)
            .saturating_mul(8);
        let info = ModelInfo {
            family: "siglip2",
            model_type: ck.files.model_type()?,
            output_dim: d,
            vision_dim: d,
            patch_size: p,
            image_size: (side, side),
            tokens_per_image: None,
            max_batch: batch_for_budget(per_image, 512 << 20),
            mixed_shape_batches: true,
            tokens: SpecialTokens::default(),
        };
        Ok(Siglip2Model {
            info,
            tower,
            processor,
            dtype: ck.dtype,
            device: ck.device.clone(),
        })
    }
}

impl VisionModel for Siglip2Model {
    // Per call, `max_tokens` is the processor's `max_num_patches` kwarg.
    processor_methods!("max_tokens");

    fn forward(&self, batch: &[&Pixels]) -> Result<Vec<Tensor>> {
        let p = self.processor.patch_size;
        let (x, grids) = pack_single_frames(
            batch,
            1,
            3 * p * p,
            self.dtype,
            &self.device,
            "a SigLIP2 image",
        )?;
        let y = self.tower.forward(&x, &grids)?;
        let counts: Vec<usize> = grids.iter().map(|(r, c)| r * c).collect();
        split_rows(&y, &counts)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_defaults_and_refusals() {
        let parse = |s: &str| ConfigObject::parse("config.json: vision_config", s).unwrap();
        let c = Siglip2VisionConfig::from_config(&parse("{}")).unwrap();
        assert_eq!(
            (c.patch_size, c.num_patches, c.position_side()),
            (16, 256, 16)
        );
        assert_eq!(c.encoder, ENCODER_DEFAULTS);
        let c = Siglip2VisionConfig::from_config(&parse(r#"{"num_patches": 9}"#)).unwrap();
        assert_eq!(c.position_side(), 3);
        for (bad, word) in [
            (r#"{"num_patches": 250}"#, "num_patches 250 is not a square"),
            (r#"{"num_channels": 1}"#, "num_channels"),
            (r#"{"patch_size": [16, 16]}"#, "patch_size"),
            (r#"{"hidden_act": "relu2"}"#, "relu2"),
            (r#"{"num_patches": 0}"#, "num_patches"),
        ] {
            let e = Siglip2VisionConfig::from_config(&parse(bad)).unwrap_err();
            assert!(e.message().contains(word), "{bad}: {e}");
        }
    }
}
