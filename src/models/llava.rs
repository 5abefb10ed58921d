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

use crate::config::{ConfigObject, ModelFiles};
use crate::error::{Error, Result};
use crate::models::clip::{self, ClipVisionConfig, ClipVisionTower};
use crate::models::layers::Loader;
use crate::models::pixels::{stack_pixels, unstack};
use crate::models::projector::{concat_features, feature_layers, MlpProjector};
use crate::models::siglip::{self, SiglipVisionConfig, SiglipVisionTower};
use crate::models::vit::{VitTowerConfig, MAX_DIM};
use crate::models::{attention_bytes, batch_for_budget, ModelInfo, SpecialTokens, VisionModel};
use crate::preprocess::clip::{ClipKind, ClipProcessor};
use crate::preprocess::fixed_size::FixedSizeProcessor;
use crate::preprocess::resample::Filter;
use crate::preprocess::{Limits, Pixels, RgbImage};
use crate::weights::Weights;

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

/// Which tower this file runs (the registry picks it from `vision_config.model_type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LlavaTower {
    /// `clip_vision_model`.
    Clip,
    /// `siglip_vision_model`.
    Siglip,
}

pub(crate) enum VisionConfig {
    Clip(ClipVisionConfig),
    Siglip(SiglipVisionConfig),
}

impl VisionConfig {
    /// `vision_config` (LlavaConfig's default when absent) read as `kind`'s config.
    fn read(cfg: &ConfigObject, kind: LlavaTower) -> Result<VisionConfig> {
        VisionConfig::read_or(cfg, kind, "LlavaConfig", DEFAULT_VISION_CONFIG)
    }

    /// `vision_config` read as `kind`'s config; when absent, `default` (the JSON of the
    /// vision config that the `class` config builds).
    pub(crate) fn read_or(
        cfg: &ConfigObject,
        kind: LlavaTower,
        class: &str,
        default: &str,
    ) -> Result<VisionConfig> {
        let vision_cfg = match cfg.object("vision_config")? {
            Some(v) => v,
            None => ConfigObject::parse(
                &format!("config.json: vision_config ({class} default)"),
                default,
            )?,
        };
        Ok(match kind {
            LlavaTower::Clip => VisionConfig::Clip(clip::vision_config(&vision_cfg)?),
            LlavaTower::Siglip => VisionConfig::Siglip(siglip::vision_config(&vision_cfg)?),
        })
    }

    pub(crate) fn tower(&self) -> &VitTowerConfig {
        match self {
            VisionConfig::Clip(c) | VisionConfig::Siglip(c) => c,
        }
    }

    /// Whether the tower prepends a class token to the patches (CLIP).
    fn class_token(&self) -> bool {
        matches!(self, VisionConfig::Clip(_))
    }
}

pub(crate) enum Tower {
    Clip(ClipVisionTower),
    Siglip(SiglipVisionTower),
}

impl Tower {
    /// Loads the embeddings and the first `layers` encoder layers (what
    /// `hidden_states[layers]` needs; never `post_layernorm`).
    pub(crate) fn load(loader: &Loader, vision: &VisionConfig, layers: usize) -> Result<Tower> {
        Ok(match vision {
            VisionConfig::Clip(c) => Tower::Clip(ClipVisionTower::load(loader, c, layers)?),
            VisionConfig::Siglip(c) => {
                Tower::Siglip(SiglipVisionTower::load_parts(loader, c, layers, false)?)
            }
        })
    }

    pub(crate) fn hidden_states(&self, pixels: &Tensor, indices: &[usize]) -> Result<Vec<Tensor>> {
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

impl Processor {
    /// The image processor `preprocessor_config.json` names (`LlavaImageProcessor` when it
    /// names none, as AutoImageProcessor resolves `llava`).
    fn from_config(pre: &ConfigObject, image_size: usize) -> Result<Processor> {
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

/// Which tokens of which hidden states reach the projector.
pub(crate) struct Features {
    /// Resolved `hidden_states` indices, in config order.
    pub(crate) layers: Vec<usize>,
    /// Strategy `default`: drop the first token.
    pub(crate) drop_first: bool,
    /// Tokens per image after the selection.
    pub(crate) tokens: usize,
    /// Token grid of each image.
    pub(crate) grid: [usize; 3],
}

impl Features {
    /// Reads `vision_feature_layer` and `vision_feature_select_strategy` for `vision`.
    fn read(cfg: &ConfigObject, vision: &VisionConfig) -> Result<Features> {
        Features::read_or(cfg, vision, "default", DEFAULT_FEATURE_LAYER)
    }

    /// [`Features::read`] with a config class's defaults for the strategy and the layer.
    pub(crate) fn read_or(
        cfg: &ConfigObject,
        vision: &VisionConfig,
        default_strategy: &str,
        default_layer: i64,
    ) -> Result<Features> {
        let strategy = cfg.string_or("vision_feature_select_strategy", default_strategy)?;
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
        let tower = vision.tower();
        let layers = feature_layers(cfg, default_layer, tower.encoder.num_layers)?;
        let class_token = vision.class_token();
        let grid = tower.grid();
        let seq = grid * grid + usize::from(class_token);
        let tokens = seq - usize::from(drop_first);
        if tokens == 0 {
            return Err(Error::bad_config(
                "config.json: the vision tower yields no tokens after vision_feature_select_strategy",
            ));
        }
        let grid = if class_token != drop_first {
            // a class token kept, or a patch dropped: no spatial layout
            [1, 1, tokens]
        } else {
            [1, grid, grid]
        };
        Ok(Features {
            layers,
            drop_first,
            tokens,
            grid,
        })
    }

    /// The selected tokens of each hidden state, concatenated along the channels.
    pub(crate) fn select(&self, states: Vec<Tensor>) -> Result<Tensor> {
        let selected = states
            .into_iter()
            .map(|h| {
                if self.drop_first {
                    let n = h.dim(1)?;
                    Ok(h.narrow(1, 1, n - 1)?)
                } else {
                    Ok(h)
                }
            })
            .collect::<Result<Vec<_>>>()?;
        concat_features(selected, 2)
    }
}

/// The language model's width: `text_config.hidden_size`, else read off the projector's
/// weights (the text model's class, and so its default width, varies).
pub(crate) fn text_width(cfg: &ConfigObject, proj: &Loader) -> Result<usize> {
    match cfg.object("text_config")? {
        Some(t) if t.contains("hidden_size") => t.positive_or("hidden_size", 0, MAX_DIM),
        _ => Ok(*proj.shape("linear_1.weight")?.first().ok_or_else(|| {
            Error::bad_weights("multi_modal_projector.linear_1.weight has no dimensions")
        })?),
    }
}

/// A LLaVA vision tower with its projector and image processor.
pub struct LlavaModel {
    info: ModelInfo,
    tower: Tower,
    features: Features,
    projector: MlpProjector,
    processor: Processor,
    dtype: DType,
    device: Device,
}

impl LlavaModel {
    /// Loads a `llava` checkpoint whose tower is `kind`.
    pub fn load(
        files: &ModelFiles,
        weights: &Weights,
        dtype: DType,
        device: &Device,
        kind: LlavaTower,
    ) -> Result<LlavaModel> {
        let cfg = &files.config;
        let vision = VisionConfig::read(cfg, kind)?;
        let features = Features::read(cfg, &vision)?;
        let root = Loader::new(weights, "", dtype, device);
        // Only the layers up to the deepest selected one run, so only they are loaded.
        let deepest = features.layers.iter().copied().max().unwrap_or(0);
        let tower = Tower::load(&root.sub("vision_tower"), &vision, deepest)?;
        let t = vision.tower();
        let d = t.encoder.hidden_size;
        let proj = root.sub("multi_modal_projector");
        let text_dim = text_width(cfg, &proj)?;
        let bias = cfg.bool_or("multimodal_projector_bias", true)?;
        let projector = MlpProjector::load(&proj, cfg, d * features.layers.len(), text_dim, bias)?;
        let processor = Processor::from_config(&files.preprocessor, t.image_size)?;
        let seq = t.num_patches() + usize::from(vision.class_token());
        let info = ModelInfo {
            family: "llava",
            model_type: files.model_type()?,
            output_dim: text_dim,
            vision_dim: d,
            patch_size: t.patch_size,
            image_size: (t.image_size, t.image_size),
            tokens_per_image: Some(features.tokens),
            max_batch: batch_for_budget(attention_bytes(t.encoder.num_heads, seq), 256 << 20),
            mixed_shape_batches: false,
            tokens: SpecialTokens {
                image: Some(
                    cfg.i64(cfg.aliased(&["image_token_index", "image_token_id"]))?
                        .unwrap_or(DEFAULT_IMAGE_TOKEN),
                ),
                ..SpecialTokens::default()
            },
        };
        Ok(LlavaModel {
            info,
            tower,
            features,
            projector,
            processor,
            dtype,
            device: device.clone(),
        })
    }
}

impl VisionModel for LlavaModel {
    fn info(&self) -> &ModelInfo {
        &self.info
    }

    fn preprocess(&self, image: &RgbImage, limits: &Limits) -> Result<Pixels> {
        let grid = self.features.grid;
        match &self.processor {
            Processor::Clip(p) => p.process(image, grid, limits),
            Processor::Siglip(p) => p.process(image, grid, limits),
        }
    }

    fn forward(&self, batch: &[&Pixels]) -> Result<Vec<Tensor>> {
        let x = stack_pixels(batch, self.dtype, &self.device)?;
        let states = self.tower.hidden_states(&x, &self.features.layers)?;
        let features = self.features.select(states)?;
        unstack(&self.projector.forward(&features)?)
    }
}
