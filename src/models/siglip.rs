//! SigLIP vision tower (`model_type` `siglip` with a `vision_config`, or
//! `siglip_vision_model`): patch embedding with bias, learned positions, pre-norm encoder,
//! `post_layernorm`. The embeddings are `last_hidden_state`, `[n_patches, hidden]`.

use candle_core::{DType, Device, Tensor};

use crate::config::ConfigObject;
use crate::error::{Error, Result};
use crate::models::activation::Activation;
use crate::models::checkpoint::Checkpoint;
use crate::models::layers::{LayerNorm, Linear, Loader};
use crate::models::pixels::{patchify, stack_pixels, unstack};
use crate::models::vit::{Encoder, VitDefaults, VitTowerConfig};
use crate::models::{attention_bytes, batch_for_budget, ModelInfo, SpecialTokens, VisionModel};
use crate::preprocess::fixed_size::FixedSizeProcessor;
use crate::preprocess::resample::Filter;
use crate::preprocess::{Limits, Pixels, PreprocessOptions, RgbImage};

/// `SiglipVisionConfig`: a [`VitTowerConfig`].
pub type SiglipVisionConfig = VitTowerConfig;

/// `SiglipVisionConfig`'s class defaults.
const DEFAULTS: VitDefaults =
    VitDefaults::vit_base(16, 1e-6, Activation::GeluTanh, "gelu_pytorch_tanh");

/// Reads a SigLIP vision config object, with `SiglipVisionConfig`'s class defaults.
pub fn vision_config(cfg: &ConfigObject) -> Result<SiglipVisionConfig> {
    VitTowerConfig::read(cfg, &DEFAULTS)
}

/// The SigLIP tower: embeddings, encoder and `post_layernorm`.
pub struct SiglipVisionTower {
    config: SiglipVisionConfig,
    /// The patch convolution as a linear map over `(c, ky, kx)`-flattened patches.
    patch: Linear,
    /// `[num_patches, hidden]`.
    positions: Tensor,
    encoder: Encoder,
    /// Absent when the tower was loaded for intermediate features only.
    post_layernorm: Option<LayerNorm>,
}

impl SiglipVisionTower {
    /// Loads the tower whose tensors are under `loader` (`embeddings.`, `encoder.`,
    /// `post_layernorm.`).
    pub fn load(loader: &Loader, config: &SiglipVisionConfig) -> Result<SiglipVisionTower> {
        SiglipVisionTower::load_parts(loader, config, config.encoder.num_layers, true)
    }

    /// Loads the embeddings, the first `layers` encoder layers and, when `post_layernorm`,
    /// the final norm: what a model reading `hidden_states[layers]` needs.
    pub fn load_parts(
        loader: &Loader,
        config: &SiglipVisionConfig,
        layers: usize,
        post_layernorm: bool,
    ) -> Result<SiglipVisionTower> {
        let d = config.encoder.hidden_size;
        let p = config.patch_size;
        let emb = loader.sub("embeddings");
        let patch = emb.patch_embedding("patch_embedding", d, p, true)?;
        let positions = emb.tensor("position_embedding.weight", &[config.num_patches(), d])?;
        Ok(SiglipVisionTower {
            config: config.clone(),
            patch,
            positions,
            encoder: Encoder::load_first(&loader.sub("encoder"), &config.encoder, layers)?,
            post_layernorm: if post_layernorm {
                Some(loader.layer_norm("post_layernorm", d, config.encoder.layer_norm_eps)?)
            } else {
                None
            },
        })
    }

    pub fn config(&self) -> &SiglipVisionConfig {
        &self.config
    }

    /// Patch embeddings plus positions: `[batch, 3, S, S]` → `[batch, N, hidden]`.
    pub fn embed(&self, pixels: &Tensor) -> Result<Tensor> {
        let patches = patchify(pixels, self.config.patch_size)?;
        let x = self.patch.forward(&patches)?;
        Ok(x.broadcast_add(&self.positions)?)
    }

    /// The encoder output after `layers` layers, before `post_layernorm`.
    pub fn hidden_state(&self, pixels: &Tensor, layers: usize) -> Result<Tensor> {
        self.encoder.forward(&self.embed(pixels)?, layers)
    }

    /// transformers' `hidden_states[i]` for each of `indices` (0 = embeddings, `i` = output
    /// of layer `i`, never with `post_layernorm`).
    pub fn hidden_states(&self, pixels: &Tensor, indices: &[usize]) -> Result<Vec<Tensor>> {
        self.encoder.hidden_states(&self.embed(pixels)?, indices)
    }

    /// `last_hidden_state`: all layers, then `post_layernorm`.
    pub fn forward(&self, pixels: &Tensor) -> Result<Tensor> {
        let norm = self.post_layernorm.as_ref().ok_or_else(|| {
            Error::compute(
                "SigLIP tower loaded without post_layernorm cannot give last_hidden_state",
            )
        })?;
        if self.encoder.num_layers() != self.config.encoder.num_layers {
            return Err(Error::compute(
                "SigLIP tower loaded with fewer layers cannot give last_hidden_state",
            ));
        }
        let x = self.hidden_state(pixels, self.encoder.num_layers())?;
        norm.forward(&x)
    }
}

/// A SigLIP tower whose `last_hidden_state` is the embedding (a plain SigLIP model), or goes
/// through one linear projector first (PaliGemma: [`crate::models::paligemma`]).
pub struct SiglipModel {
    info: ModelInfo,
    tower: SiglipVisionTower,
    projector: Option<Linear>,
    processor: FixedSizeProcessor,
    dtype: DType,
    device: Device,
}

impl SiglipModel {
    /// Loads `siglip` (vision part of a dual model) or `siglip_vision_model` checkpoints.
    pub fn load(ck: &Checkpoint) -> Result<SiglipModel> {
        let model_type = ck.files.model_type()?;
        let vision_cfg = if model_type == "siglip" {
            ck.config().object("vision_config")?.ok_or_else(|| {
                Error::bad_config("config.json: model_type `siglip` without a `vision_config`")
            })?
        } else {
            ck.config().clone()
        };
        let config = vision_config(&vision_cfg)?;
        let loader = ck.loader("");
        let tower = SiglipVisionTower::load(&loader, &config)?;
        let processor = FixedSizeProcessor::from_siglip_config(
            &ck.files.preprocessor,
            config.image_size,
            Filter::Bicubic,
        )?;
        let n = config.num_patches();
        let info = ModelInfo {
            family: "siglip",
            model_type,
            output_dim: config.encoder.hidden_size,
            vision_dim: config.encoder.hidden_size,
            patch_size: config.patch_size,
            image_size: (config.image_size, config.image_size),
            tokens_per_image: Some(n),
            max_batch: batch_for_budget(attention_bytes(config.encoder.num_heads, n), 256 << 20),
            mixed_shape_batches: false,
            tokens: SpecialTokens::default(),
        };
        Ok(SiglipModel::from_parts(
            info, tower, None, processor, ck.dtype, ck.device,
        ))
    }

    /// A model from its loaded parts (`info` describes the output of `projector`, when there
    /// is one, else of the tower).
    pub(crate) fn from_parts(
        info: ModelInfo,
        tower: SiglipVisionTower,
        projector: Option<Linear>,
        processor: FixedSizeProcessor,
        dtype: DType,
        device: &Device,
    ) -> SiglipModel {
        SiglipModel {
            info,
            tower,
            projector,
            processor,
            dtype,
            device: device.clone(),
        }
    }
}

impl VisionModel for SiglipModel {
    fn info(&self) -> &ModelInfo {
        &self.info
    }

    fn preprocess_with(
        &self,
        image: &RgbImage,
        _opts: &PreprocessOptions,
        limits: &Limits,
    ) -> Result<Pixels> {
        let g = self.tower.config().grid();
        self.processor.process(image, [1, g, g], limits)
    }

    fn forward(&self, batch: &[&Pixels]) -> Result<Vec<Tensor>> {
        let x = stack_pixels(batch, self.dtype, &self.device)?;
        let x = self.tower.forward(&x)?;
        match &self.projector {
            Some(p) => unstack(&p.forward(&x)?),
            None => unstack(&x),
        }
    }
}
