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
use crate::models::checkpoint::Checkpoint;
use crate::models::clip::{self, ClipVisionConfig, ClipVisionTower};
use crate::models::layers::Loader;
use crate::models::pixels::{stack_pixels, unstack};
use crate::models::projector::{concat_features, feature_layers, text_width, MlpProjector};
use crate::models::siglip::{self, SiglipVisionConfig, SiglipVisionTower};
use crate::models::vit::VitTowerConfig;
use crate::models::{attention_batch, ModelInfo, SpecialTokens, VisionModel};
use crate::preprocess::clip::{ClipKind, ClipProcessor};
use crate::preprocess::fixed_size::FixedSizeProcessor;
use crate::preprocess::resample::Filter;
use crate::preprocess::{Limits, Pixels, PreprocessOptions, RgbImage};

/// `LlavaConfig` class defaults.
const DEFAULT_IMAGE_TOKEN: i64 = 32000;
const DEFAULT_FEATURE_LAYER: i64 = -2;

/// The `vision_config` LlavaConfig builds when config.json has none (CLIP ViT-L/14-336).
const DEFAULT_VISION_CONFIG: &str = r#"{"model_type": "clip_vision_model", "intermediate_size": 4096,
    "hidden_size": 1024, "patch_size": 14, "image_size": 336, "num_hidden_layers": 24,
    "num_attention_heads": 16}"#;

/// `vision_config.model_type` as LlavaConfig resolves it (`clip_vision_model` when absent).
pub fn vision_model_type(files: &ModelFiles) -> Result<String> {
    vision_model_type_or(&files.config, "clip_vision_model")
}

/// `vision_config.model_type` as a LLaVA-style config class resolves it: `default` (the
/// class's own tower) when absent.
pub(crate) fn vision_model_type_or(cfg: &ConfigObject, default: &str) -> Result<String> {
    match cfg.object("vision_config")? {
        Some(v) => v.string_or("model_type", default),
        None => Ok(default.to_string()),
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

impl LlavaTower {
    /// The tower a `vision_config.model_type` names, if this file runs it.
    pub(crate) fn named(model_type: &str) -> Option<LlavaTower> {
        match model_type {
            "clip_vision_model" => Some(LlavaTower::Clip),
            "siglip_vision_model" => Some(LlavaTower::Siglip),
            _ => None,
        }
    }
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

enum Tower {
    Clip(ClipVisionTower),
    Siglip(SiglipVisionTower),
}

impl Tower {
    /// Loads the embeddings and the first `layers` encoder layers (what
    /// `hidden_states[layers]` needs; never `post_layernorm`).
    fn load(loader: &Loader, vision: &VisionConfig, layers: usize) -> Result<Tower> {
        Ok(match vision {
            VisionConfig::Clip(c) => Tower::Clip(ClipVisionTower::load(loader, c, layers)?),
            VisionConfig::Siglip(c) => {
                Tower::Siglip(SiglipVisionTower::load_parts(loader, c, layers, false)?)
            }
        })
    }

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

/// The tower with the selection of its hidden states: `get_image_features` up to the
/// projector, shared by the families built on LlavaConfig's tower settings.
pub(crate) struct SelectedTower {
    tower: Tower,
    pub(crate) features: Features,
    /// Channels of the selected features (the tower's width times the selected layers).
    pub(crate) width: usize,
}

impl SelectedTower {
    /// Loads `vision_tower.` under `root`: only the layers up to the deepest selected one
    /// run, so only they are loaded.
    pub(crate) fn load(
        root: &Loader,
        vision: &VisionConfig,
        features: Features,
    ) -> Result<SelectedTower> {
        let deepest = features.layers.iter().copied().max().unwrap_or(0);
        Ok(SelectedTower {
            tower: Tower::load(&root.sub("vision_tower"), vision, deepest)?,
            width: vision.tower().encoder.hidden_size * features.layers.len(),
            features,
        })
    }

    /// `[n, 3, S, S]` → `[n, tokens, width]`: the selected tokens of the selected layers.
    pub(crate) fn forward(&self, pixels: &Tensor) -> Result<Tensor> {
        let states = self.tower.hidden_states(pixels, &self.features.layers)?;
        self.features.select(states)
    }
}

/// `multi_modal_projector` (`LlavaMultiModalProjector`) from `in_dim` features to the
/// language model's width, biased per `multimodal_projector_bias`; with that width.
pub(crate) fn load_projector(
    root: &Loader,
    cfg: &ConfigObject,
    in_dim: usize,
) -> Result<(MlpProjector, usize)> {
    let proj = root.sub("multi_modal_projector");
    let text_dim = text_width(cfg, &proj, "linear_1")?;
    let bias = cfg.bool_or("multimodal_projector_bias", true)?;
    let projector = MlpProjector::load(&proj, cfg, in_dim, text_dim, bias)?;
    Ok((projector, text_dim))
}

/// `image_token_index` (or its alias `image_token_id`), else the config class's `default`.
pub(crate) fn image_token_index(cfg: &ConfigObject, default: i64) -> Result<i64> {
    Ok(cfg
        .i64(cfg.aliased(&["image_token_index", "image_token_id"]))?
        .unwrap_or(default))
}

/// A LLaVA vision tower with its projector and image processor.
pub struct LlavaModel {
    info: ModelInfo,
    tower: SelectedTower,
    projector: MlpProjector,
    processor: Processor,
    dtype: DType,
    device: Device,
}

impl LlavaModel {
    /// Loads a `llava` checkpoint whose tower is `kind`.
    pub fn load(ck: &Checkpoint, kind: LlavaTower) -> Result<LlavaModel> {
        let cfg = ck.config();
        let vision = VisionConfig::read(cfg, kind)?;
        let features = Features::read(cfg, &vision)?;
        let root = ck.loader("");
        let tower = SelectedTower::load(&root, &vision, features)?;
        let (projector, text_dim) = load_projector(&root, cfg, tower.width)?;
        let t = vision.tower();
        let processor = Processor::from_config(&ck.files.preprocessor, t.image_size)?;
        let seq = t.num_patches() + usize::from(vision.class_token());
        let info = ModelInfo {
            family: "llava",
            model_type: ck.files.model_type()?,
            output_dim: text_dim,
            vision_dim: t.encoder.hidden_size,
            patch_size: t.patch_size,
            image_size: (t.image_size, t.image_size),
            tokens_per_image: Some(tower.features.tokens),
            max_batch: attention_batch(t.encoder.num_heads, seq),
            mixed_shape_batches: false,
            tokens: SpecialTokens {
                image: Some(image_token_index(cfg, DEFAULT_IMAGE_TOKEN)?),
                ..SpecialTokens::default()
            },
        };
        Ok(LlavaModel {
            info,
            tower,
            projector,
            processor,
            dtype: ck.dtype,
            device: ck.device.clone(),
        })
    }
}

impl VisionModel for LlavaModel {
    fn info(&self) -> &ModelInfo {
        &self.info
    }

    fn preprocess_with(
        &self,
        image: &RgbImage,
        _opts: &PreprocessOptions,
        limits: &Limits,
    ) -> Result<Pixels> {
        let grid = self.tower.features.grid;
        match &self.processor {
            Processor::Clip(p) => p.process(image, grid, limits),
            Processor::Siglip(p) => p.process(image, grid, limits),
        }
    }

    fn forward(&self, batch: &[&Pixels]) -> Result<Vec<Tensor>> {
        let x = stack_pixels(batch, self.dtype, &self.device)?;
        unstack(&self.projector.forward(&self.tower.forward(&x)?)?)
    }
}
