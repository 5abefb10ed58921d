//! The pre-norm ViT encoder shared by SigLIP and CLIP towers:
//! `x += out_proj(MHA(LN1(x)))`, `x += fc2(act(fc1(LN2(x))))`, tensors named
//! `layers.{i}.{layer_norm1, self_attn.{q,k,v,out}_proj, layer_norm2, mlp.fc1, mlp.fc2}`.

use candle_core::Tensor;

use crate::config::ConfigObject;
use crate::error::{Error, Result};
use crate::models::activation::Activation;
use crate::models::cancel;
use crate::models::layers::{Attention, LayerNorm, Linear, Loader};
use crate::models::rope::Rotary;

/// Largest accepted width/depth values (real towers are far below).
pub(crate) const MAX_DIM: usize = 1 << 16;
pub(crate) const MAX_LAYERS: usize = 1024;

/// Encoder hyper-parameters.
#[derive(Debug, Clone, PartialEq)]
pub struct VitConfig {
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_layers: usize,
    pub num_heads: usize,
    pub layer_norm_eps: f64,
    pub act: Activation,
}

impl VitConfig {
    /// Reads the encoder keys of a SigLIP/CLIP `vision_config`, with the class defaults
    /// given for absent keys.
    pub fn from_config(
        cfg: &ConfigObject,
        defaults: &VitConfig,
        default_act: &str,
    ) -> Result<VitConfig> {
        Ok(VitConfig {
            hidden_size: cfg.positive_or("hidden_size", defaults.hidden_size, MAX_DIM)?,
            intermediate_size: cfg.positive_or(
                "intermediate_size",
                defaults.intermediate_size,
                MAX_DIM * 8,
            )?,
            num_layers: cfg.positive_or("num_hidden_layers", defaults.num_layers, MAX_LAYERS)?,
            num_heads: cfg.positive_or("num_attention_heads", defaults.num_heads, MAX_DIM)?,
            layer_norm_eps: cfg.f64_or("layer_norm_eps", defaults.layer_norm_eps)?,
            act: Activation::from_name(&cfg.string_or("hidden_act", default_act)?)?,
        })
    }
}

/// The config of a SigLIP or CLIP vision tower: input geometry plus the encoder.
#[derive(Debug, Clone, PartialEq)]
pub struct VitTowerConfig {
    pub image_size: usize,
    pub patch_size: usize,
    pub encoder: VitConfig,
}

/// A config class's defaults for [`VitTowerConfig::read`], with the name of its default
/// activation.
pub struct VitDefaults {
    pub tower: VitTowerConfig,
    pub act_name: &'static str,
}

impl VitDefaults {
    /// ViT-B at 224 px (768 wide, 12 layers of 12 heads, MLP 3072), the class defaults of
    /// `SiglipVisionConfig` and `CLIPVisionConfig`, with the rest of a class's defaults.
    pub const fn vit_base(
        patch_size: usize,
        layer_norm_eps: f64,
        act: Activation,
        act_name: &'static str,
    ) -> VitDefaults {
        VitDefaults {
            tower: VitTowerConfig {
                image_size: 224,
                patch_size,
                encoder: VitConfig {
                    hidden_size: 768,
                    intermediate_size: 3072,
                    num_layers: 12,
                    num_heads: 12,
                    layer_norm_eps,
                    act,
                },
            },
            act_name,
        }
    }
}

impl VitTowerConfig {
    /// Reads a vision config object with a config class's defaults for absent keys
    /// (`image_size`, `patch_size`, the encoder's keys, `hidden_act`); checks that the
    /// input is RGB and that a patch fits in the image.
    pub fn read(cfg: &ConfigObject, defaults: &VitDefaults) -> Result<VitTowerConfig> {
        let d = &defaults.tower;
        let c = VitTowerConfig {
            image_size: cfg.positive_or("image_size", d.image_size, MAX_DIM)?,
            patch_size: cfg.positive_or("patch_size", d.patch_size, MAX_DIM)?,
            encoder: VitConfig::from_config(cfg, &d.encoder, defaults.act_name)?,
        };
        let channels = cfg.usize_or("num_channels", 3, MAX_DIM)?;
        if channels != 3 {
            return Err(Error::bad_config(format!(
                "{}: num_channels {channels} is not supported (RGB images have 3)",
                cfg.location()
            )));
        }
        if c.patch_size > c.image_size {
            return Err(Error::bad_config(format!(
                "{}: patch_size {} is larger than image_size {}",
                cfg.location(),
                c.patch_size,
                c.image_size
            )));
        }
        Ok(c)
    }

    /// Patches per side.
    pub fn grid(&self) -> usize {
        self.image_size / self.patch_size
    }

    pub fn num_patches(&self) -> usize {
        self.grid() * self.grid()
    }
}

struct EncoderLayer {
    norm1: LayerNorm,
    attn: Attention,
    norm2: LayerNorm,
    fc1: Linear,
    fc2: Linear,
    act: Activation,
}

impl EncoderLayer {
    fn load(l: &Loader, c: &VitConfig) -> Result<EncoderLayer> {
        let d = c.hidden_size;
        Ok(EncoderLayer {
            norm1: l.layer_norm("layer_norm1", d, c.layer_norm_eps)?,
            attn: Attention::load(&l.sub("self_attn"), d, c.num_heads, "out_proj", true)?,
            norm2: l.layer_norm("layer_norm2", d, c.layer_norm_eps)?,
            fc1: l.linear("mlp.fc1", d, c.intermediate_size, true)?,
            fc2: l.linear("mlp.fc2", c.intermediate_size, d, true)?,
            act: c.act,
        })
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let x = self
            .attn
            .forward_residual(&self.norm1.forward(x)?, Some(x))?;
        self.mlp(&x)
    }

    /// The layer on `x` `[tokens, dim]` holding several images back to back, of `segments`
    /// tokens each: attention stays within each image.
    /// `rope`, when given, rotates q and k (one row per token).
    fn forward_packed(
        &self,
        x: &Tensor,
        segments: &[usize],
        rope: Option<&Rotary>,
    ) -> Result<Tensor> {
        let x = self
            .attn
            .forward_packed(&self.norm1.forward(x)?, segments, rope, Some(x))?;
        self.mlp(&x)
    }

    /// `x + fc2(act(fc1(LN2(x))))`.
    fn mlp(&self, x: &Tensor) -> Result<Tensor> {
        let h = self.fc1.forward_act(&self.norm2.forward(x)?, self.act)?;
        self.fc2.forward_add(&h, x)
    }
}

/// A stack of pre-norm encoder layers.
pub struct Encoder {
    layers: Vec<EncoderLayer>,
}

impl Encoder {
    /// Loads `layers.0 .. layers.{num_layers-1}` under `loader` (which points at `encoder.`).
    pub fn load(loader: &Loader, c: &VitConfig) -> Result<Encoder> {
        Encoder::load_first(loader, c, c.num_layers)
    }

    /// Loads only the first `n` layers (at most `num_layers`): a model that reads an
    /// intermediate hidden state never runs, and need not load, the layers after it.
    pub fn load_first(loader: &Loader, c: &VitConfig, n: usize) -> Result<Encoder> {
        let layers = (0..n.min(c.num_layers))
            .map(|i| EncoderLayer::load(&loader.sub(&format!("layers.{i}")), c))
            .collect::<Result<Vec<_>>>()?;
        Ok(Encoder { layers })
    }

    pub fn num_layers(&self) -> usize {
        self.layers.len()
    }

    /// Runs the first `n` layers (all when `n >= num_layers`) on `x` `[batch, tokens, dim]`.
    pub fn forward(&self, x: &Tensor, n: usize) -> Result<Tensor> {
        let mut x = x.clone();
        for layer in self.layers.iter().take(n) {
            cancel::check()?;
            x = layer.forward(&x)?;
        }
        Ok(x)
    }

    /// Runs every loaded layer on `x` `[tokens, dim]` holding several images of different
    /// lengths back to back (`segments` tokens each), each image attending only to itself:
    /// the reference's padded batch with its key-padding mask, without the padding.
    pub fn forward_packed(&self, x: &Tensor, segments: &[usize]) -> Result<Tensor> {
        self.forward_packed_rope(x, segments, None)
    }

    /// [`Encoder::forward_packed`] with rotary embeddings on q and k in every layer (one
    /// table row per token), as PaddleOCR-VL's SigLIP tower has.
    pub fn forward_packed_rope(
        &self,
        x: &Tensor,
        segments: &[usize],
        rope: Option<&Rotary>,
    ) -> Result<Tensor> {
        let mut x = x.clone();
        for layer in &self.layers {
            cancel::check()?;
            x = layer.forward_packed(&x, segments, rope)?;
        }
        Ok(x)
    }

    /// transformers' `hidden_states[i]` for each `i` of `indices`, in that order: index 0 is the
    /// encoder input, index `i` the output of layer `i` (no final norm). Runs only as many layers
    /// as the largest index needs; every index must be at most the number of loaded layers.
    pub fn hidden_states(&self, x: &Tensor, indices: &[usize]) -> Result<Vec<Tensor>> {
        let deepest = indices.iter().copied().max().unwrap_or(0);
        if deepest > self.layers.len() {
            return Err(Error::compute(format!(
                "hidden state {deepest} requested from an encoder with {} loaded layers",
                self.layers.len()
            )));
        }
        let mut out: Vec<Option<Tensor>> = vec![None; indices.len()];
        let mut x = x.clone();
        for depth in 0..=deepest {
            if depth > 0 {
                cancel::check()?;
                x = self.layers[depth - 1].forward(&x)?;
            }
            for (slot, &i) in out.iter_mut().zip(indices) {
                if i == depth {
                    *slot = Some(x.clone());
                }
            }
        }
        Ok(out
            .into_iter()
            .map(|t| t.expect("every index <= deepest was visited"))
            .collect())
    }
}

/// Resolves a `vision_feature_layer` index against `hidden_states` of `num_layers + 1` entries
/// as transformers does: negative indices count from the end (-1 = the last layer's output),
/// and an index outside `-(L+1)..=L` selects nothing, which the reference cannot run.
pub fn resolve_hidden_state(index: i64, num_layers: usize) -> Result<usize> {
    let n = num_layers as i64 + 1;
    if index < -n || index >= n {
        return Err(Error::bad_config(format!(
            "hidden state index {index} is out of range for a tower of {num_layers} layers \
             ({} hidden states: -{n}..={})",
            n,
            n - 1
        )));
    }
    Ok(index.rem_euclid(n) as usize)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hidden_state_indices_resolve_like_python() {
        // 3 layers: hidden_states has 4 entries, -1 is the last layer's output.
        assert_eq!(resolve_hidden_state(-1, 3).unwrap(), 3);
        assert_eq!(resolve_hidden_state(-2, 3).unwrap(), 2);
        assert_eq!(resolve_hidden_state(-4, 3).unwrap(), 0);
        assert_eq!(resolve_hidden_state(0, 3).unwrap(), 0);
        assert_eq!(resolve_hidden_state(3, 3).unwrap(), 3);
        assert!(resolve_hidden_state(4, 3).is_err());
        assert!(resolve_hidden_state(-5, 3).is_err());
    }
}
