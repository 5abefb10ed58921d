//! LLaVA (`model_type` `llava`, `LlavaForConditionalGeneration`, e.g. LLaVA-1.5) with a CLIP or
//! SigLIP vision tower (`modeling_llava.py`, `LlavaModel.get_image_features`):
//!
//! 1. the tower's `hidden_states[vision_feature_layer]` (0 = embeddings, `i` = output of layer
//!    `i`, negative from the end; never `post_layernorm`), or for a list of layers their
//!    concatenation along the channels, in list order;
//! 2. `vision_feature_select_strategy` `default` drops the first token (CLIP's class token;
//!    with SigLIP, which has none, the first patch, as the reference does), `full` keeps all;
//! 3. `LlavaMultiModalProjector`: `linear_2(act(linear_1(x)))`, `act` = `projector_hidden_act`,
//!    biases when `multimodal_projector_bias`.
//!
//! Preprocessing follows `preprocessor_config.json`'s `image_processor_type`:
//! `CLIPImageProcessor`, `LlavaImageProcessor` (the default for `llava`; adds `do_pad`) or
//! `SiglipImageProcessor`.

use candle_core::{DType, Device, Tensor};
use serde_json::Value;

use crate::config::{ConfigObject, ModelFiles};
use crate::error::{Error, Result};
use crate::models::clip::{self, ClipVisionConfig, ClipVisionTower};
use crate::models::gemma3::token_id;
use crate::models::layers::{Activation, Linear, Loader};
use crate::models::siglip::{self, stack_pixels, unstack, SiglipVisionConfig, SiglipVisionTower};
use crate::models::vit::{resolve_hidden_state, MAX_DIM};
use crate::models::{attention_bytes, batch_for_budget, ModelInfo, SpecialTokens, VisionModel};
use crate::preprocess::clip::{ClipKind, ClipProcessor};
use crate::preprocess::resample::Filter;
use crate::preprocess::siglip::FixedSizeProcessor;
use crate::preprocess::{Limits, Pixels, RgbImage};
use crate::weights::Weights;

/// The vision towers this file implements (`vision_config.model_type`).
pub const VISION_MODEL_TYPES: &[&str] = &["clip_vision_model", "siglip_vision_model"];

/// `LlavaConfig` class defaults.
const DEFAULT_IMAGE_TOKEN: i64 = 32000;
const DEFAULT_FEATURE_LAYER: i64 = -2;

/// The `vision_config` LlavaConfig builds when config.json has none (CLIP ViT-L/14-336).
const DEFAULT_VISION_CONFIG: &str = r#"{"model_type": "clip_vision_model", "intermediate_size": 4096,
    "hidden_size": 1024, "patch_size": 14, "image_size": 336, "num_hidden_layers": 24,
    "num_attention_heads": 16}"#;

/// `vision_config.model_type` as LlavaConfig resolves it (`clip_vision_model` when absent).
pub fn vision_model_type(files: &ModelFiles) -> Result<String> {
    match files.config.object("vision_config")? {
        Some(v) => v.string_or("model_type", "clip_vision_model"),
        None => Ok("clip_vision_model".to_string()),
    }
}

enum VisionConfig {
    Clip(ClipVisionConfig),
    Siglip(SiglipVisionConfig),
}

enum Tower {
    Clip(ClipVisionTower),
    Siglip(SiglipVisionTower),
}

impl Tower {
    fn hidden_states(&self, pixels: &Tensor, indices: &[usize]) -> Result<Vec<Tensor>> {
        match self {
            Tower::Clip(t) => t.hidden_states(pixels, indices),
            Tower::Siglip(t) => t.hidden_states(pixels, indices),
        }
    }
}

enum Processor {
    Clip(ClipProcessor),
    Siglip(FixedSizeProcessor),
}

/// Reads `vision_feature_layer`: one index or a non-empty list.
fn feature_layers(cfg: &ConfigObject) -> Result<Vec<i64>> {
    let bad = |what: String| {
        Error::bad_config(format!(
            "{}: `vision_feature_layer`: {what}",
            cfg.location()
        ))
    };
    match cfg.value("vision_feature_layer") {
        None => Ok(vec![DEFAULT_FEATURE_LAYER]),
        Some(Value::Array(items)) if !items.is_empty() => items
            .iter()
            .map(|v| {
                v.as_i64()
                    .ok_or_else(|| bad(format!("{v} is not an integer")))
            })
            .collect(),
        Some(v) => v.as_i64().map(|i| vec![i]).ok_or_else(|| {
            bad(format!(
                "expected an integer or a non-empty list, found {v}"
            ))
        }),
    }
}

/// A LLaVA vision tower with its projector and image processor.
pub struct LlavaModel {
    info: ModelInfo,
    tower: Tower,
    /// Resolved `hidden_states` indices, in config order.
    layers: Vec<usize>,
    /// Strategy `default`: drop the first token.
    drop_first: bool,
    linear_1: Linear,
    act: Activation,
    linear_2: Linear,
    processor: Processor,
    /// Token grid of each image.
    grid: [usize; 3],
    dtype: DType,
    device: Device,
}

impl LlavaModel {
    pub fn load(
        files: &ModelFiles,
        weights: &Weights,
        dtype: DType,
        device: &Device,
    ) -> Result<LlavaModel> {
        let cfg = &files.config;
        let vision_cfg = match cfg.object("vision_config")? {
            Some(v) => v,
            None => ConfigObject::parse(
                "config.json: vision_config (LlavaConfig default)",
                DEFAULT_VISION_CONFIG,
            )?,
        };
        let vision_type = vision_model_type(files)?;
        let strategy = cfg.string_or("vision_feature_select_strategy", "default")?;
        let drop_first = match strategy.as_str() {
            "default" => true,
            "full" => false,
            other => {
                return Err(Error::bad_config(format!(
                    "config.json: vision_feature_select_strategy `{other}` is not supported \
                     (default, full)"
                )))
            }
        };
        let root = Loader::new(weights, "", dtype, device);
        let tower_loader = root.sub("vision_tower");
        let vision = match vision_type.as_str() {
            "clip_vision_model" => VisionConfig::Clip(clip::vision_config(&vision_cfg)?),
            "siglip_vision_model" => VisionConfig::Siglip(siglip::vision_config(&vision_cfg)?),
            other => {
                return Err(Error::bad_config(format!(
                    "config.json: llava with vision_config.model_type `{other}` is not \
                     supported here ({})",
                    VISION_MODEL_TYPES.join(", ")
                )))
            }
        };
        let (encoder, image_size, patch_size, class_token) = match &vision {
            VisionConfig::Clip(c) => (&c.encoder, c.image_size, c.patch_size, true),
            VisionConfig::Siglip(c) => (&c.encoder, c.image_size, c.patch_size, false),
        };
        let layers = feature_layers(cfg)?
            .into_iter()
            .map(|i| resolve_hidden_state(i, encoder.num_layers))
            .collect::<Result<Vec<_>>>()
            .map_err(|e| e.context("config.json: vision_feature_layer"))?;
        // Only the layers up to the deepest selected one run, so only they are loaded.
        let deepest = layers.iter().copied().max().unwrap_or(0);
        let tower = match &vision {
            VisionConfig::Clip(c) => Tower::Clip(ClipVisionTower::load(&tower_loader, c, deepest)?),
            VisionConfig::Siglip(c) => Tower::Siglip(SiglipVisionTower::load_parts(
                &tower_loader,
                c,
                deepest,
                false,
            )?),
        };

        let grid = image_size / patch_size;
        let seq = grid * grid + usize::from(class_token);
        let tokens = seq - usize::from(drop_first);
        if tokens == 0 {
            return Err(Error::bad_config(
                "config.json: the vision tower yields no tokens after vision_feature_select_strategy",
            ));
        }
        let token_grid = if class_token != drop_first {
            // a class token kept, or a patch dropped: no spatial layout
            [1, 1, tokens]
        } else {
            [1, grid, grid]
        };

        let d = encoder.hidden_size;
        let in_dim = d * layers.len();
        let proj = root.sub("multi_modal_projector");
        let text_dim = match cfg.object("text_config")? {
            Some(t) if t.contains("hidden_size") => t.positive_or("hidden_size", 0, MAX_DIM)?,
            // The text model's class (and so its default width) varies: read it off the weights.
            _ => *proj.shape("linear_1.weight")?.first().ok_or_else(|| {
                Error::bad_weights("multi_modal_projector.linear_1.weight has no dimensions")
            })?,
        };
        let bias = cfg.bool_or("multimodal_projector_bias", true)?;
        let act = Activation::from_name(&cfg.string_or("projector_hidden_act", "gelu")?)
            .map_err(|e| e.context("config.json: projector_hidden_act"))?;
        let linear_1 = proj.linear("linear_1", in_dim, text_dim, bias)?;
        let linear_2 = proj.linear("linear_2", text_dim, text_dim, bias)?;

        let processor = Self::processor(files, image_size)?;
        let info = ModelInfo {
            family: "llava",
            model_type: files.model_type()?,
            output_dim: text_dim,
            vision_dim: d,
            patch_size,
            image_size: (image_size, image_size),
            tokens_per_image: Some(tokens),
            max_batch: batch_for_budget(attention_bytes(encoder.num_heads, seq), 256 << 20),
            mixed_shape_batches: false,
            tokens: SpecialTokens {
                image: Some(token_id(
                    cfg,
                    &["image_token_index", "image_token_id"],
                    DEFAULT_IMAGE_TOKEN,
                )?),
                ..SpecialTokens::default()
            },
        };
        Ok(LlavaModel {
            info,
            tower,
            layers,
            drop_first,
            linear_1,
            act,
            linear_2,
            processor,
            grid: token_grid,
            dtype,
            device: device.clone(),
        })
    }

    /// The image processor `preprocessor_config.json` names (`LlavaImageProcessor` when it
    /// names none, as AutoImageProcessor resolves `llava`).
    fn processor(files: &ModelFiles, image_size: usize) -> Result<Processor> {
        let pre = &files.preprocessor;
        let class = pre.string_or("image_processor_type", "LlavaImageProcessor")?;
        let base = class
            .strip_suffix("Fast")
            .or_else(|| class.strip_suffix("Pil"))
            .unwrap_or(&class);
        match base {
            "CLIPImageProcessor" => Ok(Processor::Clip(ClipProcessor::from_config(
                pre,
                ClipKind::Clip,
                image_size,
            )?)),
            "LlavaImageProcessor" => Ok(Processor::Clip(ClipProcessor::from_config(
                pre,
                ClipKind::Llava,
                image_size,
            )?)),
            "SiglipImageProcessor" => Ok(Processor::Siglip(
                FixedSizeProcessor::from_siglip_config(pre, image_size, Filter::Bicubic)?,
            )),
            other => Err(Error::bad_config(format!(
                "{}: image_processor_type `{other}` is not supported for llava \
                 (CLIPImageProcessor, LlavaImageProcessor, SiglipImageProcessor)",
                pre.location()
            ))),
        }
    }
}

impl VisionModel for LlavaModel {
    fn info(&self) -> &ModelInfo {
        &self.info
    }

    fn preprocess(&self, image: &RgbImage, limits: &Limits) -> Result<Pixels> {
        match &self.processor {
            Processor::Clip(p) => p.process(image, self.grid, limits),
            Processor::Siglip(p) => p.process(image, self.grid, limits),
        }
    }

    fn forward(&self, batch: &[&Pixels]) -> Result<Vec<Tensor>> {
        let x = stack_pixels(batch, self.dtype, &self.device)?;
        let states = self.tower.hidden_states(&x, &self.layers)?;
        let selected = states
            .iter()
            .map(|h| {
                if self.drop_first {
                    let n = h.dim(1)?;
                    Ok(h.narrow(1, 1, n - 1)?)
                } else {
                    Ok(h.clone())
                }
            })
            .collect::<Result<Vec<_>>>()?;
        let features = if selected.len() == 1 {
            selected.into_iter().next().expect("one")
        } else {
            Tensor::cat(&selected, 2)?
        };
        let h = self.linear_1.forward_act(&features, self.act)?;
        unstack(&self.linear_2.forward(&h)?)
    }
}
