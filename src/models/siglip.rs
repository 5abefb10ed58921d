//! SigLIP vision tower (`model_type` `siglip` with a `vision_config`, or
//! `siglip_vision_model`): patch embedding with bias, learned positions, pre-norm encoder,
//! `post_layernorm`. The embeddings are `last_hidden_state`, `[n_patches, hidden]`.

use candle_core::{DType, Device, Tensor};

use crate::config::{ConfigObject, ModelFiles};
use crate::error::{Error, Result};
use crate::models::layers::{Activation, LayerNorm, Linear, Loader};
use crate::models::vit::{Encoder, VitConfig, VitTowerConfig};
use crate::models::{attention_bytes, batch_for_budget, ModelInfo, SpecialTokens, VisionModel};
use crate::preprocess::resample::Filter;
use crate::preprocess::siglip::FixedSizeProcessor;
use crate::preprocess::{Limits, Pixels, RgbImage};
use crate::weights::Weights;

/// `SiglipVisionConfig`: a [`VitTowerConfig`].
pub type SiglipVisionConfig = VitTowerConfig;

/// Reads a SigLIP vision config object, with `SiglipVisionConfig`'s class defaults.
pub fn vision_config(cfg: &ConfigObject) -> Result<SiglipVisionConfig> {
    let defaults = VitConfig {
        hidden_size: 768,
        intermediate_size: 3072,
        num_layers: 12,
        num_heads: 12,
        layer_norm_eps: 1e-6,
        act: Activation::GeluTanh,
    };
    VitTowerConfig::read(cfg, 224, 16, &defaults, "gelu_pytorch_tanh")
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
        let conv = emb.tensor("patch_embedding.weight", &[d, 3, p, p])?;
        let patch = Linear::new(
            conv.reshape((d, 3 * p * p))?,
            Some(emb.tensor("patch_embedding.bias", &[d])?),
        )?;
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

/// Cuts `[batch, C, H, W]` into non-overlapping `p`x`p` patches, row-major over the patch
/// grid, each flattened in `(c, ky, kx)` order: `[batch, (H/p)*(W/p), C*p*p]`. Trailing
/// pixels that do not fill a patch are dropped, as a strided convolution does.
pub fn patchify(pixels: &Tensor, p: usize) -> Result<Tensor> {
    let (b, c, h, w) = pixels.dims4()?;
    let (gh, gw) = (h / p, w / p);
    let x = if gh * p != h || gw * p != w {
        pixels
            .narrow(2, 0, gh * p)?
            .narrow(3, 0, gw * p)?
            .contiguous()?
    } else {
        pixels.clone()
    };
    let x = x
        .reshape(vec![b, c, gh, p, gw, p])?
        .permute(vec![0, 2, 4, 1, 3, 5])?
        .contiguous()?
        .reshape((b, gh * gw, c * p * p))?;
    Ok(x)
}

/// Stacks same-shaped preprocessed images into one `[batch, ...]` tensor on `device`.
pub fn stack_pixels(batch: &[&Pixels], dtype: DType, device: &Device) -> Result<Tensor> {
    let first = batch
        .first()
        .ok_or_else(|| Error::invalid_argument("empty batch"))?;
    let mut shape = vec![batch.len()];
    shape.extend_from_slice(&first.shape);
    let mut data = Vec::with_capacity(batch.len() * first.data.len());
    for p in batch {
        if p.shape != first.shape {
            return Err(Error::invalid_argument(format!(
                "images of shapes {:?} and {:?} in one batch",
                first.shape, p.shape
            )));
        }
        data.extend_from_slice(&p.data);
    }
    let t = Tensor::from_vec(data, shape, &Device::Cpu)?;
    let t = if dtype == DType::F32 {
        t
    } else {
        t.to_dtype(dtype)?
    };
    Ok(if device.is_cpu() {
        t
    } else {
        t.to_device(device)?
    })
}

/// Splits a `[batch, N, D]` result into per-image tensors (in the compute dtype, on the
/// compute device).
pub fn unstack(x: &Tensor) -> Result<Vec<Tensor>> {
    (0..x.dim(0)?).map(|i| Ok(x.get(i)?)).collect()
}

/// A plain SigLIP model: tower output is the embedding.
pub struct SiglipModel {
    info: ModelInfo,
    tower: SiglipVisionTower,
    processor: FixedSizeProcessor,
    dtype: DType,
    device: Device,
}

impl SiglipModel {
    /// Loads `siglip` (vision part of a dual model) or `siglip_vision_model` checkpoints.
    pub fn load(
        files: &ModelFiles,
        weights: &Weights,
        dtype: DType,
        device: &Device,
    ) -> Result<SiglipModel> {
        let model_type = files.model_type()?;
        let vision_cfg = if model_type == "siglip" {
            files.config.object("vision_config")?.ok_or_else(|| {
                Error::bad_config("config.json: model_type `siglip` without a `vision_config`")
            })?
        } else {
            files.config.clone()
        };
        let config = vision_config(&vision_cfg)?;
        let loader = Loader::new(weights, "", dtype, device);
        let tower = SiglipVisionTower::load(&loader, &config)?;
        let processor = FixedSizeProcessor::from_siglip_config(
            &files.preprocessor,
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
        Ok(SiglipModel {
            info,
            tower,
            processor,
            dtype,
            device: device.clone(),
        })
    }
}

impl VisionModel for SiglipModel {
    fn info(&self) -> &ModelInfo {
        &self.info
    }

    fn preprocess(&self, image: &RgbImage, limits: &Limits) -> Result<Pixels> {
        let g = self.tower.config().grid();
        self.processor.process(image, [1, g, g], limits)
    }

    fn forward(&self, batch: &[&Pixels]) -> Result<Vec<Tensor>> {
        let x = stack_pixels(batch, self.dtype, &self.device)?;
        unstack(&self.tower.forward(&x)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patchify_matches_a_strided_convolution() {
        // 1 image, 2 channels, 4x6 pixels, patch 2 → 2x3 grid, 8 values per patch.
        let data: Vec<f32> = (0..48).map(|v| v as f32).collect();
        let x = Tensor::from_vec(data, (1, 2, 4, 6), &Device::Cpu).unwrap();
        let p = patchify(&x, 2).unwrap();
        assert_eq!(p.dims(), &[1, 6, 8]);
        let rows = p.get(0).unwrap().to_vec2::<f32>().unwrap();
        // Patch (0, 1): channel 0 rows 0-1 cols 2-3, then channel 1.
        assert_eq!(rows[1], vec![2., 3., 8., 9., 26., 27., 32., 33.]);
        // Patch (1, 2): rows 2-3, cols 4-5.
        assert_eq!(rows[5], vec![16., 17., 22., 23., 40., 41., 46., 47.]);
        // Trailing pixels are dropped.
        let q = patchify(&x, 4).unwrap();
        assert_eq!(q.dims(), &[1, 1, 32]);
    }
}
