//! PaddleOCR-VL (`model_type` `paddleocr_vl`): `modeling_paddleocr_vl.py`'s image path,
//! `PaddleOCRVLModel.get_image_features` (its `pooler_output`, the projector's rows: what the
//! language model receives at the image placeholders).
//!
//! 1. `PaddleOCRVisionEmbeddings`: the patch Conv2d (with bias) as a linear map over the
//!    processor's `(channel, y, x)` rows, plus the learned position table (`(image_size /
//!    patch_size)²` rows, a square) resampled to the image's patch grid with bilinear taps,
//!    align_corners false, border ([`crate::models::position_taps`]), summed in f32;
//! 2. the SigLIP encoder ([`crate::models::vit::Encoder`]) with the 2-D axial rotary
//!    embedding (`PaddleOCRVisionRotaryEmbedding`, rope type `axial`: Qwen2-VL's, at each
//!    patch's (row, column)) on q and k, rotated in f32; attention within each image;
//! 3. `post_layernorm` (`last_hidden_state`);
//! 4. `PaddleOCRProjector` (`model.projector`, Hub `mlp_AR`): LayerNorm (eps 1e-5) per patch,
//!    each `merge x merge` block concatenated (row in block, column in block, channel),
//!    `linear_1`, GELU (erf), `linear_2` to the language model's width; one row per merged
//!    token, in raster order.
//!
//! The patch rows run through the tower in merge-block order (the attention, norms and MLPs
//! do not depend on the order; the position embeddings and rotary angles follow each patch),
//! so the projector's block concatenation is a reshape.
//!
//! Preprocessing: [`crate::preprocess::paddleocr_vl`]. Prompt (`PaddleOCRVLProcessor`):
//! `<|IMAGE_START|>`, one `image_token_id` per row, `<|IMAGE_END|>`; M-RoPE ids as
//! `get_rope_index` assigns them (Qwen2-VL's rule).

use candle_core::{DType, Device, Tensor};

use crate::config::{axial_rope_theta, ConfigObject, ROPE_PARAMETERS_FIRST};
use crate::error::{Error, Result};
use crate::models::activation::Activation;
use crate::models::checkpoint::Checkpoint;
use crate::models::layers::{LayerNorm, Linear, Loader};
use crate::models::position_taps::{merge_block_positions, resample_table};
use crate::models::qwen2_vl::{qwen_image_methods, qwen_packed_forward};
use crate::models::rope::{AxialRope, Rotary};
use crate::models::vit::{Encoder, VitConfig, VitDefaults, VitTowerConfig, MAX_DIM};
use crate::models::{ModelInfo, SpecialTokens, VisionModel, VISION_TOKEN_KEYS};
use crate::preprocess::paddleocr_vl::processor;
use crate::preprocess::qwen2_vl::{PatchGeometry, QwenImageProcessor};
use crate::preprocess::Pixels;

/// `PaddleOCRVisionConfig`'s defaults: 384 px, patch 14, 1152 wide, 27 layers of 16 heads,
/// MLP 4304, `gelu_pytorch_tanh`, eps 1e-6.
const VISION_DEFAULTS: VitDefaults = VitDefaults {
    tower: VitTowerConfig {
        image_size: 384,
        patch_size: 14,
        encoder: VitConfig {
            hidden_size: 1152,
            intermediate_size: 4304,
            num_layers: 27,
            num_heads: 16,
            layer_norm_eps: 1e-6,
            act: Activation::GeluTanh,
        },
    },
    act_name: "gelu_pytorch_tanh",
};

/// `PaddleOCRTextConfig.hidden_size`.
const DEFAULT_TEXT_HIDDEN: usize = 1024;
/// `PaddleOCRVLConfig`'s token ids.
const DEFAULT_IMAGE_TOKEN: i64 = 100295;
const DEFAULT_VISION_START: i64 = 101305;
const DEFAULT_VISION_END: i64 = 101306;
/// The projector's `pre_norm` is built with eps 1e-5 (not a config key).
const PROJECTOR_NORM_EPS: f64 = 1e-5;

/// `PaddleOCRVisionConfig`, with its class defaults.
#[derive(Debug, Clone, PartialEq)]
pub struct PaddleOcrVisionConfig {
    pub tower: VitTowerConfig,
    /// The processor geometry the tower takes: `patch_size`, `spatial_merge_size`, and
    /// `temporal_patch_size` 1 (the patch embedding is a Conv2d over RGB).
    pub geometry: PatchGeometry,
    pub rope_theta: f64,
}

impl PaddleOcrVisionConfig {
    /// Reads `vision_config` (absent keys take the class defaults).
    pub fn from_config(v: &ConfigObject) -> Result<PaddleOcrVisionConfig> {
        let tower = VitTowerConfig::read(v, &VISION_DEFAULTS)?;
        let e = &tower.encoder;
        if e.hidden_size % e.num_heads != 0 {
            return Err(Error::bad_config(format!(
                "{}: hidden_size {} is not divisible by num_attention_heads {}",
                v.location(),
                e.hidden_size,
                e.num_heads
            )));
        }
        // The rotary embedding reads `head_dim` when the config has one; the attention
        // always splits hidden_size / heads.
        if let Some(hd) = v.usize_max("head_dim", MAX_DIM)? {
            if hd != e.hidden_size / e.num_heads {
                return Err(Error::bad_config(format!(
                    "{}: head_dim {hd} differs from hidden_size / num_attention_heads = {}",
                    v.location(),
                    e.hidden_size / e.num_heads
                )));
            }
        }
        Ok(PaddleOcrVisionConfig {
            geometry: PatchGeometry {
                patch_size: tower.patch_size,
                merge_size: v.positive_or("spatial_merge_size", 2, 64)?,
                temporal_patch_size: 1,
            },
            rope_theta: axial_rope_theta(v, ROPE_PARAMETERS_FIRST)?,
            tower,
        })
    }

    pub fn head_dim(&self) -> usize {
        self.tower.encoder.hidden_size / self.tower.encoder.num_heads
    }
}

/// `PaddleOCRProjector`: LayerNorm, block concatenation, Linear, GELU, Linear.
struct Projector {
    pre_norm: LayerNorm,
    linear_1: Linear,
    linear_2: Linear,
}

impl Projector {
    fn load(l: &Loader, dim: usize, merge: usize, out_dim: usize) -> Result<Projector> {
        let merged = dim * merge * merge;
        Ok(Projector {
            pre_norm: l.layer_norm("pre_norm", dim, PROJECTOR_NORM_EPS)?,
            linear_1: l.linear("linear_1", merged, merged, true)?,
            linear_2: l.linear("linear_2", merged, out_dim, true)?,
        })
    }

    /// `x` `[n, dim]` in merge-block order -> `[n / merge², out_dim]`.
    fn forward(&self, x: &Tensor, merged: usize) -> Result<Tensor> {
        let n = x.elem_count() / merged;
        let h = self.pre_norm.forward(x)?.reshape((n, merged))?;
        let h = self.linear_1.forward_act(&h, Activation::GeluErf)?;
        self.linear_2.forward(&h)
    }
}

/// The tower (`visual.vision_model`) with the projector.
pub struct PaddleOcrVisionTower {
    config: PaddleOcrVisionConfig,
    patch: Linear,
    /// `embeddings.position_embedding.weight` `[side², hidden]`, f32 (the reference sums the
    /// weighted taps in f32).
    positions: Tensor,
    rope: AxialRope,
    encoder: Encoder,
    post_layernorm: LayerNorm,
    projector: Projector,
}

impl PaddleOcrVisionTower {
    /// `tower` points at `visual.vision_model.`, `projector` at the projector.
    pub fn load(
        tower: &Loader,
        projector: &Loader,
        config: &PaddleOcrVisionConfig,
        out_dim: usize,
    ) -> Result<PaddleOcrVisionTower> {
        let c = &config.tower;
        let d = c.encoder.hidden_size;
        let emb = tower.sub("embeddings");
        let positions = emb
            .tensor("position_embedding.weight", &[c.num_patches(), d])?
            .to_dtype(DType::F32)?;
        Ok(PaddleOcrVisionTower {
            config: config.clone(),
            patch: emb.patch_embedding("patch_embedding", d, c.patch_size, true)?,
            positions,
            rope: AxialRope::new(config.head_dim(), config.rope_theta)?,
            encoder: Encoder::load(&tower.sub("encoder"), &c.encoder)?,
            post_layernorm: tower.layer_norm("post_layernorm", d, c.encoder.layer_norm_eps)?,
            projector: Projector::load(projector, d, config.geometry.merge_size, out_dim)?,
        })
    }

    /// Runs the tower and projector on packed patch rows `[n, 3 · patch²]` (raster order per
    /// image) of images with patch grids `grids`; returns the projected rows of all images
    /// (merged raster order) and the token count of each.
    pub fn forward(&self, patches: &Tensor, grids: &[[usize; 3]]) -> Result<(Tensor, Vec<usize>)> {
        let m = self.config.geometry.merge_size;
        let device = patches.device();
        let (mut order, mut positions) = (Vec::new(), Vec::new());
        let (mut segments, mut tokens) = (Vec::new(), Vec::new());
        let mut base = 0;
        for &[t, gh, gw] in grids {
            if t != 1 || gh % m != 0 || gw % m != 0 {
                return Err(Error::invalid_argument(format!(
                    "a patch grid of {t} x {gh} x {gw} is not a PaddleOCR-VL image (one frame, \
                     sides multiples of {m})"
                )));
            }
            let frame = merge_block_positions(gh, gw, m);
            order.extend(frame.iter().map(|&(r, c)| (base + r * gw + c) as u32));
            positions.extend_from_slice(&frame);
            segments.push(gh * gw);
            tokens.push(gh * gw / (m * m));
            base += gh * gw;
        }
        let order = Tensor::from_vec(order, base, &Device::Cpu)?.to_device(device)?;
        let x = self.patch.forward(&patches.index_select(&order, 0)?)?;
        let side = self.config.tower.grid();
        let pos = resample_table(&self.positions, grids, m, side, false)?;
        let x = (&x + pos.to_dtype(x.dtype())?)?;
        let half = self.config.head_dim() / 2;
        let rope = Rotary::from_angles(&self.rope.angles(&positions), half, DType::F32, device)?;
        let x = self
            .encoder
            .forward_packed_rope(&x, &segments, Some(&rope))?;
        let x = self.post_layernorm.forward(&x)?;
        let merged = self.config.tower.encoder.hidden_size * m * m;
        Ok((self.projector.forward(&x, merged)?, tokens))
    }
}

/// A PaddleOCR-VL model: tower, projector and preprocessing.
pub struct PaddleOcrVlModel {
    info: ModelInfo,
    tower: PaddleOcrVisionTower,
    processor: QwenImageProcessor,
    dtype: DType,
    device: Device,
}

/// The language model's width: `text_config.hidden_size`, or the top-level `hidden_size` of
/// a flat (Hub) config, which `PaddleOCRVLConfig` reads as the text config.
fn text_hidden_size(cfg: &ConfigObject) -> Result<usize> {
    match cfg.object("text_config")? {
        Some(t) => t.positive_or("hidden_size", DEFAULT_TEXT_HIDDEN, MAX_DIM),
        None => cfg.positive_or("hidden_size", DEFAULT_TEXT_HIDDEN, MAX_DIM),
    }
}

impl PaddleOcrVlModel {
    pub fn load(ck: &Checkpoint) -> Result<PaddleOcrVlModel> {
        let cfg = ck.config();
        let vision = ck.vision_config()?;
        let config = PaddleOcrVisionConfig::from_config(&vision)?;
        let out_dim = text_hidden_size(cfg)?;
        let root = ck.loader("");
        // transformers 5.x saves `model.projector.*`; the Hub checkpoint `mlp_AR.*`.
        let projector = if root.contains("mlp_AR.linear_1.weight") {
            root.sub("mlp_AR")
        } else {
            root.sub("model.projector")
        };
        let tower = PaddleOcrVisionTower::load(
            &root.sub("visual.vision_model"),
            &projector,
            &config,
            out_dim,
        )?;
        let g = config.geometry;
        let processor = processor(&ck.files.preprocessor, g)?;
        let defaults = [
            DEFAULT_IMAGE_TOKEN,
            DEFAULT_VISION_START,
            DEFAULT_VISION_END,
        ];
        let tokens = SpecialTokens::from_config(cfg, VISION_TOKEN_KEYS, defaults)?;
        let e = &config.tower.encoder;
        let info = ModelInfo::packed(
            "paddleocr_vl",
            ck.files.model_type()?,
            [out_dim, e.hidden_size, e.intermediate_size],
            g,
            processor.max_pixels,
            tokens,
        );
        Ok(PaddleOcrVlModel {
            info,
            tower,
            processor,
            dtype: ck.dtype,
            device: ck.device.clone(),
        })
    }
}

impl VisionModel for PaddleOcrVlModel {
    qwen_image_methods!();

    qwen_packed_forward!();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_defaults_and_refusals() {
        let parse = |s: &str| ConfigObject::parse("config.json: vision_config", s).unwrap();
        let c = PaddleOcrVisionConfig::from_config(&parse("{}")).unwrap();
        assert_eq!(c.tower, VISION_DEFAULTS.tower);
        assert_eq!((c.geometry.merge_size, c.rope_theta), (2, 10000.0));
        assert_eq!((c.head_dim(), c.tower.grid()), (72, 27));
        for (bad, word) in [
            (r#"{"num_channels": 1}"#, "num_channels"),
            (r#"{"hidden_act": "relu2"}"#, "relu2"),
            (
                r#"{"hidden_size": 30, "num_attention_heads": 4}"#,
                "divisible",
            ),
            (r#"{"head_dim": 64}"#, "head_dim"),
            (r#"{"patch_size": 500}"#, "patch_size"),
            (
                r#"{"rope_parameters": {"rope_type": "yarn", "rope_theta": 1.0}}"#,
                "rope",
            ),
        ] {
            let e = PaddleOcrVisionConfig::from_config(&parse(bad)).unwrap_err();
            assert!(e.message().contains(word), "{bad}: {e}");
        }
        let flat = ConfigObject::parse("config.json", r#"{"hidden_size": 48}"#).unwrap();
        assert_eq!(text_hidden_size(&flat).unwrap(), 48);
        let nested = ConfigObject::parse("config.json", r#"{"text_config": {}}"#).unwrap();
        assert_eq!(text_hidden_size(&nested).unwrap(), 1024);
    }
}
