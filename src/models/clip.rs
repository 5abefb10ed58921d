//! CLIP vision tower (`CLIPVisionModel`, `vision_config.model_type` `clip_vision_model`), as
//! LLaVA uses it (`modeling_clip.py`): patch convolution without bias, a learned class
//! embedding prepended to the patches, learned positions for `N + 1` tokens, `pre_layrnorm`
//! (sic), then the shared pre-norm encoder (quick-GELU by default). `hidden_states[0]` is the
//! `pre_layrnorm` output, `hidden_states[i]` the output of layer `i`; `post_layernorm` only
//! touches the pooled class token, which LLaVA does not use.

use candle_core::Tensor;

use crate::config::ConfigObject;
use crate::error::{Error, Result};
use crate::models::activation::Activation;
use crate::models::layers::{LayerNorm, Linear, Loader};
use crate::models::pixels::patchify;
use crate::models::vit::{Encoder, VitDefaults, VitTowerConfig};

/// `CLIPVisionConfig`: a [`VitTowerConfig`].
pub type ClipVisionConfig = VitTowerConfig;

/// `CLIPVisionConfig`'s class defaults.
const DEFAULTS: VitDefaults = VitDefaults::vit_base(32, 1e-5, Activation::QuickGelu, "quick_gelu");

/// Reads a CLIP vision config object, with `CLIPVisionConfig`'s class defaults.
pub fn vision_config(cfg: &ConfigObject) -> Result<ClipVisionConfig> {
    VitTowerConfig::read(cfg, &DEFAULTS)
}

/// The CLIP tower up to its encoder (what feature-reading models use).
pub struct ClipVisionTower {
    config: ClipVisionConfig,
    class_embedding: Tensor,
    /// The bias-free patch convolution as a linear map over `(c, ky, kx)`-flattened patches.
    patch: Linear,
    /// `[num_patches + 1, hidden]` (row 0 belongs to the class token).
    positions: Tensor,
    pre_layrnorm: LayerNorm,
    encoder: Encoder,
}

impl ClipVisionTower {
    /// Loads the embeddings, `pre_layrnorm` and the first `layers` encoder layers under
    /// `loader` (`embeddings.`, `pre_layrnorm.`, `encoder.`).
    pub fn load(
        loader: &Loader,
        config: &ClipVisionConfig,
        layers: usize,
    ) -> Result<ClipVisionTower> {
        let d = config.encoder.hidden_size;
        let p = config.patch_size;
        let emb = loader.sub("embeddings");
        Ok(ClipVisionTower {
            config: config.clone(),
            class_embedding: emb.tensor("class_embedding", &[d])?,
            patch: emb.patch_embedding("patch_embedding", d, p, false)?,
            positions: emb.tensor("position_embedding.weight", &[config.num_patches() + 1, d])?,
            pre_layrnorm: loader.layer_norm("pre_layrnorm", d, config.encoder.layer_norm_eps)?,
            encoder: Encoder::load_first(&loader.sub("encoder"), &config.encoder, layers)?,
        })
    }

    #[allow(dead_code, reason = "unused since crate-private (#19)")]
    pub fn config(&self) -> &ClipVisionConfig {
        &self.config
    }

    /// `[batch, 3, S, S]` → `[batch, N + 1, hidden]`: class token and patches, plus positions,
    /// through `pre_layrnorm`.
    pub fn embed(&self, pixels: &Tensor) -> Result<Tensor> {
        let (b, _, h, w) = pixels.dims4()?;
        let s = self.config.image_size;
        if (h, w) != (s, s) {
            return Err(Error::invalid_argument(format!(
                "CLIP tower takes {s}x{s} images, got {w}x{h}"
            )));
        }
        let patches = self
            .patch
            .forward(&patchify(pixels, self.config.patch_size)?)?;
        let d = self.config.encoder.hidden_size;
        let cls = self
            .class_embedding
            .reshape((1, 1, d))?
            .broadcast_as((b, 1, d))?
            .contiguous()?;
        let x = Tensor::cat(&[&cls, &patches], 1)?.broadcast_add(&self.positions)?;
        self.pre_layrnorm.forward(&x)
    }

    /// transformers' `hidden_states[i]` for each of `indices`.
    pub fn hidden_states(&self, pixels: &Tensor, indices: &[usize]) -> Result<Vec<Tensor>> {
        self.encoder.hidden_states(&self.embed(pixels)?, indices)
    }
}
