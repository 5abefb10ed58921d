//! Pixtral vision tower (`PixtralVisionModel`) and the two projectors that use it:
//! - `llava` with a `pixtral` vision config (pixtral-12b): LLaVA's `linear_1 → act → linear_2`;
//! - `mistral3` (Mistral-Small-3.1): RMSNorm, patch merger (`spatial_merge_size`), then the
//!   same two-layer MLP;
//! - `pixtral` alone (a standalone `PixtralVisionModel`): `last_hidden_state`.
//!
//! Variable resolution: each image keeps its own size (longest edge bounded, sides rounded to
//! the patch window) and its own patch grid; 2D rotary embeddings give each patch its
//! `(row, col)`. Several images run as one packed sequence in which each image attends only
//! to itself (the reference's block-diagonal mask), so mixed sizes batch exactly.
//!
//! Forward (transformers 5.23 `modeling_pixtral.py`, `modeling_llava.py`,
//! `modeling_mistral3.py`): patch convolution without bias, `ln_pre` (RMSNorm, eps 1e-5
//! hard-coded), per layer `x += o(attn(rope(q, k), v))` on `attention_norm(x)` and
//! `x += down(act(gate(h)) * up(h))` on `h = ffn_norm(x)`; no final norm. The projector reads
//! `hidden_states[vision_feature_layer]` (index 0 is the `ln_pre` output).

use candle_core::{DType, Device, Tensor};
use serde_json::Value;

use crate::config::{ConfigObject, ModelFiles};
use crate::error::{Error, Result};
use crate::models::layers::{Activation, Attention, GatedMlp, Linear, Loader, RmsNorm};
use crate::models::rope::{pixtral_axial_angles, Rotary};
use crate::models::siglip::patchify;
use crate::models::vit::{MAX_DIM, MAX_LAYERS};
use crate::models::{ModelInfo, SpecialTokens, VisionModel};
use crate::preprocess::pixtral::{read_patch_size, LongestEdgeProcessor};
use crate::preprocess::{Limits, Pixels, RgbImage};
use crate::tokenizer::AddedTokens;
use crate::weights::Weights;

/// `PixtralRMSNorm` eps: hard-coded in `PixtralVisionModel` and `PixtralAttentionLayer`.
pub(crate) const PIXTRAL_RMS_EPS: f64 = 1e-5;

/// Largest accepted `spatial_merge_size`.
const MAX_MERGE: usize = 64;

/// `PixtralVisionConfig`.
#[derive(Debug, Clone, PartialEq)]
pub struct PixtralVisionConfig {
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_layers: usize,
    pub num_heads: usize,
    pub head_dim: usize,
    pub patch_size: usize,
    /// `image_size` (the longest edge the tower was trained for; unused by the forward).
    pub image_size: usize,
    pub act: Activation,
    /// `rope_parameters.rope_theta` (5.x) or `rope_theta` (Hub configs).
    pub rope_theta: f64,
}

/// Defaults for absent keys: `PixtralVisionConfig`'s class defaults, or the values
/// `Mistral3Config` uses when `vision_config` is absent altogether.
#[derive(Debug, Clone, Copy)]
pub struct PixtralDefaults {
    pub patch_size: usize,
    pub image_size: usize,
}

impl PixtralDefaults {
    pub(crate) const CLASS: PixtralDefaults = PixtralDefaults {
        patch_size: 16,
        image_size: 1024,
    };
    pub(crate) const MISTRAL3: PixtralDefaults = PixtralDefaults {
        patch_size: 14,
        image_size: 1540,
    };
}

/// An integer that may also be written as a list of equal integers (`[p, p]`); a list of
/// different values is refused unless `take_max`, which then returns the largest.
fn int_or_pair(cfg: &ConfigObject, key: &str, default: usize, take_max: bool) -> Result<usize> {
    match cfg.value(key) {
        Some(Value::Array(items)) => {
            let vals: Vec<usize> = items
                .iter()
                .map(|v| {
                    v.as_u64()
                        .filter(|n| *n > 0 && *n <= MAX_DIM as u64)
                        .map(|n| n as usize)
                })
                .collect::<Option<Vec<_>>>()
                .ok_or_else(|| {
                    Error::bad_config(format!(
                        "{}: `{key}`: expected positive integers, found {items:?}",
                        cfg.location()
                    ))
                })?;
            match vals.as_slice() {
                [a] => Ok(*a),
                [a, b] if a == b || take_max => Ok(*a.max(b)),
                _ => Err(Error::bad_config(format!(
                    "{}: `{key}` {vals:?}: only square values are supported",
                    cfg.location()
                ))),
            }
        }
        _ => cfg.positive_or(key, default, MAX_DIM),
    }
}

impl PixtralVisionConfig {
    /// Reads a Pixtral vision config object.
    pub fn from_config(cfg: &ConfigObject, d: PixtralDefaults) -> Result<PixtralVisionConfig> {
        let hidden_size = cfg.positive_or("hidden_size", 1024, MAX_DIM)?;
        let num_heads = cfg.positive_or("num_attention_heads", 16, MAX_DIM)?;
        if hidden_size % num_heads != 0 {
            return Err(Error::bad_config(format!(
                "{}: hidden_size {hidden_size} is not divisible by num_attention_heads {num_heads}",
                cfg.location()
            )));
        }
        let head_dim = hidden_size / num_heads;
        // Attention always uses hidden/heads; the rotary tables use `head_dim` when given.
        if let Some(hd) = cfg.usize_max("head_dim", MAX_DIM)? {
            if hd != head_dim {
                return Err(Error::bad_config(format!(
                    "{}: head_dim {hd} differs from hidden_size / num_attention_heads = {head_dim} (the reference cannot run it either)",
                    cfg.location()
                )));
            }
        }
        if head_dim % 2 != 0 {
            return Err(Error::bad_config(format!(
                "{}: head_dim {head_dim} must be even for rotary embeddings",
                cfg.location()
            )));
        }
        let channels = cfg.usize_or("num_channels", 3, MAX_DIM)?;
        if channels != 3 {
            return Err(Error::bad_config(format!(
                "{}: num_channels {channels} is not supported (RGB images have 3)",
                cfg.location()
            )));
        }
        Ok(PixtralVisionConfig {
            hidden_size,
            intermediate_size: cfg.positive_or("intermediate_size", 4096, MAX_DIM * 8)?,
            num_layers: cfg.positive_or("num_hidden_layers", 24, MAX_LAYERS)?,
            num_heads,
            head_dim,
            patch_size: int_or_pair(cfg, "patch_size", d.patch_size, false)?,
            image_size: int_or_pair(cfg, "image_size", d.image_size, true)?,
            act: Activation::from_name(&cfg.string_or("hidden_act", "gelu")?)?,
            rope_theta: read_rope_theta(cfg)?,
        })
    }
}

/// The rotary base, as `PreTrainedConfig` standardizes it: `rope_scaling` or
/// `rope_parameters` (`rope_theta`, `rope_type`), else a top-level `rope_theta`, else 10000.
/// The type must be axial (`"default"`, or absent, means axial for Pixtral).
fn read_rope_theta(cfg: &ConfigObject) -> Result<f64> {
    let params = match cfg.object("rope_scaling")? {
        Some(p) => Some(p),
        None => cfg.object("rope_parameters")?,
    };
    let top = cfg.f64("rope_theta")?;
    let (theta, kind) = match &params {
        Some(p) => (
            p.f64("rope_theta")?.or(top),
            p.string("rope_type")?.or(p.string("type")?),
        ),
        None => (top, None),
    };
    match kind.as_deref() {
        None | Some("default") | Some("axial") => {}
        Some(other) => {
            return Err(Error::bad_config(format!(
            "{}: rope type `{other}` is not supported (Pixtral uses axial 2D rotary embeddings)",
            cfg.location()
        )))
        }
    }
    let theta = theta.unwrap_or(10_000.0);
    if theta <= 0.0 {
        return Err(Error::bad_config(format!(
            "{}: rope_theta {theta} must be positive",
            cfg.location()
        )));
    }
    Ok(theta)
}

struct PixtralLayer {
    attention_norm: RmsNorm,
    attention: Attention,
    ffn_norm: RmsNorm,
    mlp: GatedMlp,
}

impl PixtralLayer {
    fn load(l: &Loader, c: &PixtralVisionConfig) -> Result<PixtralLayer> {
        let d = c.hidden_size;
        Ok(PixtralLayer {
            attention_norm: l.rms_norm("attention_norm", d, PIXTRAL_RMS_EPS)?,
            attention: Attention::load(&l.sub("attention"), d, c.num_heads, "o_proj", false)?,
            ffn_norm: l.rms_norm("ffn_norm", d, PIXTRAL_RMS_EPS)?,
            mlp: GatedMlp::load(&l.sub("feed_forward"), d, c.intermediate_size, c.act, false)?,
        })
    }

    fn forward(&self, x: &Tensor, segments: &[usize], rope: &Rotary) -> Result<Tensor> {
        let x = self.attention.forward_packed(
            &self.attention_norm.forward(x)?,
            segments,
            Some(rope),
            Some(x),
        )?;
        self.mlp.forward_add(&self.ffn_norm.forward(&x)?, &x)
    }
}

/// The Pixtral tower: `patch_conv`, `ln_pre`, `transformer.layers`.
pub struct PixtralVisionTower {
    config: PixtralVisionConfig,
    /// The patch convolution (no bias) as a linear map over `(c, ky, kx)`-flattened patches.
    patch: Linear,
    ln_pre: RmsNorm,
    layers: Vec<PixtralLayer>,
}

impl PixtralVisionTower {
    /// Loads the tower whose tensors are under `loader`.
    pub fn load(loader: &Loader, config: &PixtralVisionConfig) -> Result<PixtralVisionTower> {
        let d = config.hidden_size;
        let p = config.patch_size;
        let conv = loader.tensor("patch_conv.weight", &[d, 3, p, p])?;
        let layers = (0..config.num_layers)
            .map(|i| PixtralLayer::load(&loader.sub(&format!("transformer.layers.{i}")), config))
            .collect::<Result<Vec<_>>>()?;
        Ok(PixtralVisionTower {
            config: config.clone(),
            patch: Linear::new(conv.reshape((d, 3 * p * p))?, None)?,
            ln_pre: loader.rms_norm("ln_pre", d, PIXTRAL_RMS_EPS)?,
            layers,
        })
    }

    pub fn config(&self) -> &PixtralVisionConfig {
        &self.config
    }

    /// Runs the images (`[1, 3, H, W]` each, any sizes) as one packed sequence and returns
    /// `hidden_states[i]` for each `i` of `wanted` (0 = after `ln_pre`, `num_layers` = last
    /// layer). Trailing pixels that do not fill a patch are dropped, as the strided
    /// convolution does.
    pub fn hidden_states(&self, images: &[Tensor], wanted: &[usize]) -> Result<TowerStates> {
        let p = self.config.patch_size;
        let mut grids = Vec::with_capacity(images.len());
        let mut patches = Vec::with_capacity(images.len());
        for img in images {
            let (_, _, h, w) = img.dims4()?;
            grids.push((h / p, w / p));
            patches.push(patchify(img, p)?.squeeze(0)?);
        }
        let x = if patches.len() == 1 {
            patches.pop().expect("one image")
        } else {
            Tensor::cat(&patches, 0)?
        };
        let segments: Vec<usize> = grids.iter().map(|(r, c)| r * c).collect();
        let mut x = self.ln_pre.forward(&self.patch.forward(&x)?)?;
        let angles = pixtral_axial_angles(&grids, self.config.head_dim, self.config.rope_theta);
        let rope = Rotary::from_angles(&angles, self.config.head_dim / 2, x.dtype(), x.device())?;
        let last = wanted.iter().copied().max().unwrap_or(0);
        if last > self.layers.len() {
            return Err(Error::compute(format!(
                "hidden state {last} requested from a tower of {} layers",
                self.layers.len()
            )));
        }
        let mut states: Vec<Option<Tensor>> = vec![None; last + 1];
        states[0] = Some(x.clone());
        for (i, layer) in self.layers.iter().take(last).enumerate() {
            x = layer.forward(&x, &segments, &rope)?;
            states[i + 1] = Some(x.clone());
        }
        let states = wanted
            .iter()
            .map(|&i| states[i].clone().expect("computed above"))
            .collect();
        Ok(TowerStates { states, grids })
    }
}

/// Hidden states of a packed run of several images.
pub struct TowerStates {
    /// One `[total_patches, hidden]` tensor per requested index, images back to back.
    pub states: Vec<Tensor>,
    /// Each image's patch grid `(rows, cols)`, in input order.
    pub grids: Vec<(usize, usize)>,
}

/// `Mistral3PatchMerger`'s feature order: an image's `[rows * cols, dim]` features (row-major)
/// become `[(rows/m) * (cols/m), dim * m * m]`, each merged vector holding channel `c` of
/// window position `(ky, kx)` at index `c * m * m + ky * m + kx` (torch `unfold`), windows
/// row-major. Trailing rows/columns that do not fill a window are dropped, as `unfold` does.
pub fn unfold_merge(x: &Tensor, rows: usize, cols: usize, m: usize) -> Result<Tensor> {
    let d = x.dim(1)?;
    let (gr, gc) = (rows / m, cols / m);
    let x = x.reshape((rows, cols, d))?;
    let x = if gr * m != rows || gc * m != cols {
        x.narrow(0, 0, gr * m)?.narrow(1, 0, gc * m)?
    } else {
        x
    };
    Ok(x.reshape((gr, m, gc, m, d))?
        .permute((0, 2, 4, 1, 3))?
        .contiguous()?
        .reshape((gr * gc, d * m * m))?)
}

/// The projector between the tower and the language model.
enum Projector {
    /// A standalone tower: its last hidden state is the output.
    None,
    /// `LlavaMultiModalProjector`: `linear_2(act(linear_1(x)))`.
    Llava {
        linear_1: Linear,
        act: Activation,
        linear_2: Linear,
    },
    /// `Mistral3MultiModalProjector`: RMSNorm, patch merger, then the LLaVA MLP.
    Mistral3 {
        norm: RmsNorm,
        merge: usize,
        merging_layer: Linear,
        linear_1: Linear,
        act: Activation,
        linear_2: Linear,
    },
}

impl Projector {
    fn forward(&self, x: &Tensor, grids: &[(usize, usize)]) -> Result<Tensor> {
        match self {
            Projector::None => Ok(x.clone()),
            Projector::Llava {
                linear_1,
                act,
                linear_2,
            } => linear_2.forward(&linear_1.forward_act(x, *act)?),
            Projector::Mistral3 {
                norm,
                merge,
                merging_layer,
                linear_1,
                act,
                linear_2,
            } => {
                let x = norm.forward(x)?;
                let mut merged = Vec::with_capacity(grids.len());
                let mut start = 0;
                for &(r, c) in grids {
                    let part = x.narrow(0, start, r * c)?;
                    merged.push(unfold_merge(&part, r, c, *merge)?);
                    start += r * c;
                }
                let x = if merged.len() == 1 {
                    merged.pop().expect("one image")
                } else {
                    Tensor::cat(&merged, 0)?
                };
                let x = merging_layer.forward(&x)?;
                linear_2.forward(&linear_1.forward_act(&x, *act)?)
            }
        }
    }
}

/// `hidden_states` indices for `vision_feature_layer` (an integer or a list; negative values
/// count from the end of the `num_layers + 1` hidden states).
pub fn feature_layers(cfg: &ConfigObject, default: i64, num_layers: usize) -> Result<Vec<usize>> {
    let raw: Vec<i64> = match cfg.value("vision_feature_layer") {
        None => vec![default],
        Some(Value::Array(items)) => items
            .iter()
            .map(|v| v.as_i64())
            .collect::<Option<Vec<_>>>()
            .filter(|v| !v.is_empty())
            .ok_or_else(|| {
                Error::bad_config(format!(
                    "{}: `vision_feature_layer` must be an integer or a non-empty list of integers",
                    cfg.location()
                ))
            })?,
        Some(_) => vec![cfg.i64("vision_feature_layer")?.expect("present")],
    };
    let n = num_layers as i64 + 1;
    raw.iter()
        .map(|&i| {
            let idx = if i < 0 { n + i } else { i };
            if (0..n).contains(&idx) {
                Ok(idx as usize)
            } else {
                Err(Error::bad_config(format!(
                    "{}: vision_feature_layer {i} is out of range for a tower of {num_layers} layers",
                    cfg.location()
                )))
            }
        })
        .collect()
}

/// The language model's hidden size and RMSNorm eps: `text_config` keys, with the defaults
/// of its config class (`None` when the class is unknown and the key is absent).
fn text_hidden_and_eps(
    cfg: &ConfigObject,
    default_type: &str,
    absent: (usize, f64),
) -> Result<(usize, f64)> {
    let Some(text) = cfg.object("text_config")? else {
        return Ok(absent);
    };
    let kind = text.string_or("model_type", default_type)?;
    let class_defaults = match kind.as_str() {
        "llama" | "mistral" | "ministral" => Some((4096, 1e-6)),
        "ministral3" => Some((4096, 1e-5)),
        _ => None,
    };
    let missing = |key: &str| {
        Error::bad_config(format!(
            "{}: no `{key}` (and text model type `{kind}` has no known default)",
            text.location()
        ))
    };
    let hidden = match text.usize_max("hidden_size", MAX_DIM * 4)? {
        Some(0) => {
            return Err(Error::bad_config(format!(
                "{}: hidden_size is 0",
                text.location()
            )))
        }
        Some(h) => h,
        None => class_defaults.ok_or_else(|| missing("hidden_size"))?.0,
    };
    let eps = match text.f64("rms_norm_eps")? {
        Some(e) => e,
        None => class_defaults.ok_or_else(|| missing("rms_norm_eps"))?.1,
    };
    Ok((hidden, eps))
}

/// Pixtral-based models: standalone tower, LLaVA (pixtral-12b) or Mistral3.
pub struct PixtralModel {
    info: ModelInfo,
    tower: PixtralVisionTower,
    projector: Projector,
    /// `hidden_states` indices fed to the projector (concatenated along features).
    feature_layers: Vec<usize>,
    processor: LongestEdgeProcessor,
    dtype: DType,
    device: Device,
}

/// Which wrapper a checkpoint uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Standalone,
    Llava,
    Mistral3,
}

impl PixtralModel {
    /// Loads `pixtral` (standalone `PixtralVisionModel`), `llava` with a `pixtral` vision
    /// config, or `mistral3` checkpoints.
    pub fn load(
        files: &ModelFiles,
        weights: &Weights,
        dtype: DType,
        device: &Device,
    ) -> Result<PixtralModel> {
        let model_type = files.model_type()?;
        let cfg = &files.config;
        let kind = match model_type.as_str() {
            "pixtral" => Kind::Standalone,
            "llava" => Kind::Llava,
            "mistral3" => Kind::Mistral3,
            other => {
                return Err(Error::bad_config(format!(
                    "config.json: model_type `{other}` is not a Pixtral-based model"
                )))
            }
        };
        let (vision_cfg, defaults) = match kind {
            Kind::Standalone => (cfg.clone(), PixtralDefaults::CLASS),
            _ => match cfg.object("vision_config")? {
                Some(v) => (v, PixtralDefaults::CLASS),
                None if kind == Kind::Mistral3 => (
                    ConfigObject::empty("config.json: vision_config (absent)"),
                    PixtralDefaults::MISTRAL3,
                ),
                None => {
                    return Err(Error::bad_config(
                        "config.json: model_type `llava` without a `vision_config`",
                    ))
                }
            },
        };
        if kind != Kind::Standalone {
            let vt = vision_cfg.string_or("model_type", "pixtral")?;
            if vt != "pixtral" {
                return Err(Error::bad_config(format!(
                    "{}: model_type `{vt}`: expected `pixtral`",
                    vision_cfg.location()
                )));
            }
        }
        let config = PixtralVisionConfig::from_config(&vision_cfg, defaults)?;
        let d = config.hidden_size;
        let tower_prefix = if kind == Kind::Standalone {
            ""
        } else {
            "vision_tower."
        };
        let tower =
            PixtralVisionTower::load(&Loader::new(weights, tower_prefix, dtype, device), &config)?;

        let (feature_layers, projector, merge, output_dim) = match kind {
            Kind::Standalone => (vec![config.num_layers], Projector::None, 1, d),
            Kind::Llava | Kind::Mistral3 => {
                let llava = kind == Kind::Llava;
                if llava {
                    let strategy = cfg.string_or("vision_feature_select_strategy", "default")?;
                    if strategy != "full" {
                        return Err(Error::bad_config(format!(
                            "config.json: vision_feature_select_strategy `{strategy}` with a Pixtral tower: only `full` works (`default` drops a CLS token that Pixtral does not have; the reference fails too)"
                        )));
                    }
                }
                let layers = feature_layers(cfg, if llava { -2 } else { -1 }, config.num_layers)?;
                if !llava && layers.len() != 1 {
                    return Err(Error::bad_config(
                        "config.json: mistral3 takes a single vision_feature_layer (its projector norm and merger are as wide as one layer)",
                    ));
                }
                let (text_hidden, text_eps) = if llava {
                    text_hidden_and_eps(cfg, "llama", (4096, 1e-6))?
                } else {
                    text_hidden_and_eps(cfg, "mistral", (5120, 1e-5))?
                };
                let bias = cfg.bool_or("multimodal_projector_bias", llava)?;
                let act = Activation::from_name(&cfg.string_or("projector_hidden_act", "gelu")?)?;
                let pl = Loader::new(weights, "multi_modal_projector.", dtype, device);
                let in_dim = d * layers.len();
                let linear_1 = pl.linear("linear_1", in_dim, text_hidden, bias)?;
                let linear_2 = pl.linear("linear_2", text_hidden, text_hidden, bias)?;
                if llava {
                    let proj = Projector::Llava {
                        linear_1,
                        act,
                        linear_2,
                    };
                    (layers, proj, 1, text_hidden)
                } else {
                    let merge = cfg.positive_or("spatial_merge_size", 2, MAX_MERGE)?;
                    let proj = Projector::Mistral3 {
                        norm: pl.rms_norm("norm", d, text_eps)?,
                        merge,
                        merging_layer: pl.linear(
                            "patch_merger.merging_layer",
                            d * merge * merge,
                            d,
                            false,
                        )?,
                        linear_1,
                        act,
                        linear_2,
                    };
                    (layers, proj, merge, text_hidden)
                }
            }
        };

        // The rounding multiple of the resize: PixtralProcessor passes
        // patch_size * spatial_merge_size from processor_config.json (it must be what the
        // model needs); a standalone tower's image processor uses its own patch_size.
        let window = config.patch_size * merge;
        let round_to = if let Some(pp) = read_patch_size(&files.processor, "patch_size")? {
            let pm = files
                .processor
                .positive_or("spatial_merge_size", 1, MAX_MERGE)?;
            if pp * pm != window {
                return Err(Error::bad_config(format!(
                    "processor_config.json: patch_size {pp} x spatial_merge_size {pm} = {} but the model's patch window is {window} ({} x {merge})",
                    pp * pm,
                    config.patch_size
                )));
            }
            window
        } else if kind == Kind::Standalone {
            read_patch_size(&files.preprocessor, "patch_size")?.unwrap_or(window)
        } else {
            window
        };
        let processor = LongestEdgeProcessor::from_config(
            &files.preprocessor,
            round_to,
            config.patch_size,
            merge,
        )?;

        let tokens = special_tokens(files, kind)?;
        let (max_h, max_w) = processor.max_size;
        let max_tokens = (max_h / config.patch_size).max(1) * (max_w / config.patch_size).max(1);
        // Per image: activations of the widest layer for every patch (attention runs one
        // image at a time, in blocks of query rows, so its scores do not add up).
        let per_image = max_tokens
            .saturating_mul(3 * config.intermediate_size + 8 * d)
            .saturating_mul(4);
        let info = ModelInfo {
            family: "pixtral",
            model_type,
            output_dim,
            vision_dim: d,
            patch_size: config.patch_size,
            image_size: (max_w, max_h),
            tokens_per_image: None,
            max_batch: crate::models::batch_for_budget(per_image, 1 << 30),
            mixed_shape_batches: true,
            tokens,
        };
        Ok(PixtralModel {
            info,
            tower,
            projector,
            feature_layers,
            processor,
            dtype,
            device: device.clone(),
        })
    }

    fn pixels_tensor(&self, p: &Pixels) -> Result<Tensor> {
        let [c, h, w] = p.shape[..] else {
            return Err(Error::invalid_argument(format!(
                "expected a [3, H, W] image, found shape {:?}",
                p.shape
            )));
        };
        let t = Tensor::from_slice(&p.data, (1, c, h, w), &Device::Cpu)?.to_dtype(self.dtype)?;
        Ok(if self.device.is_cpu() {
            t
        } else {
            t.to_device(&self.device)?
        })
    }
}

/// The special token ids: the image placeholder from config.json (`image_token_index`, the id
/// the language model replaces), `[IMG_BREAK]` / `[IMG_END]` (and the standalone tower's
/// `[IMG]`) looked up in the tokenizer files by the strings processor_config.json names.
fn special_tokens(files: &ModelFiles, kind: Kind) -> Result<SpecialTokens> {
    let p = &files.processor;
    let image_str = p.string_or("image_token", "[IMG]")?;
    let break_str = p.string_or("image_break_token", "[IMG_BREAK]")?;
    let end_str = p.string_or("image_end_token", "[IMG_END]")?;
    let added = AddedTokens::read(&files.dir);
    let cfg = &files.config;
    let image = match kind {
        Kind::Standalone => added.id(&image_str),
        Kind::Llava | Kind::Mistral3 => Some(
            match (cfg.i64("image_token_index")?, cfg.i64("image_token_id")?) {
                (Some(i), _) | (None, Some(i)) => i,
                (None, None) if kind == Kind::Llava => 32000,
                (None, None) => 10,
            },
        ),
    };
    Ok(SpecialTokens {
        image,
        image_start: None,
        image_end: added.id(&end_str),
        image_break: added.id(&break_str),
    })
}

impl VisionModel for PixtralModel {
    fn info(&self) -> &ModelInfo {
        &self.info
    }

    fn preprocess(&self, image: &RgbImage, limits: &Limits) -> Result<Pixels> {
        self.processor.process(image, limits)
    }

    fn forward(&self, batch: &[&Pixels]) -> Result<Vec<Tensor>> {
        if batch.is_empty() {
            return Ok(Vec::new());
        }
        let images = batch
            .iter()
            .map(|p| self.pixels_tensor(p))
            .collect::<Result<Vec<_>>>()?;
        let TowerStates { states, grids } =
            self.tower.hidden_states(&images, &self.feature_layers)?;
        let features = if states.len() == 1 {
            states.into_iter().next().expect("one state")
        } else {
            Tensor::cat(&states, 1)?
        };
        let out = self.projector.forward(&features, &grids)?;
        let out = out.to_dtype(DType::F32)?;
        let mut results = Vec::with_capacity(batch.len());
        let mut start = 0;
        for (p, &(r, c)) in batch.iter().zip(&grids) {
            let [_, rows, cols] = p.grid;
            let n = rows * cols;
            let expected = match self.projector {
                Projector::Mistral3 { merge, .. } => (r / merge) * (c / merge),
                _ => r * c,
            };
            if n != expected {
                return Err(Error::compute(format!(
                    "image grid {rows}x{cols} does not match the tower's {expected} output tokens"
                )));
            }
            results.push(out.narrow(0, start, n)?);
            start += n;
        }
        Ok(results)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unfold_merge_is_channel_major() {
        // 2 channels, a 2x4 grid, merge 2 -> 1x2 windows of 8 values.
        let rows = 2;
        let cols = 4;
        let data: Vec<f32> = (0..rows * cols)
            .flat_map(|t| [t as f32, 100.0 + t as f32])
            .collect();
        let x = Tensor::from_vec(data, (rows * cols, 2), &Device::Cpu).unwrap();
        let m = unfold_merge(&x, rows, cols, 2).unwrap();
        assert_eq!(m.dims(), &[2, 8]);
        let v = m.to_vec2::<f32>().unwrap();
        // Window 0 holds tokens 0, 1 (row 0) and 4, 5 (row 1): channel 0 first.
        assert_eq!(v[0], vec![0., 1., 4., 5., 100., 101., 104., 105.]);
        assert_eq!(v[1], vec![2., 3., 6., 7., 102., 103., 106., 107.]);
        // Odd grids drop the trailing row/column like torch unfold.
        let x = Tensor::zeros((3 * 5, 2), DType::F32, &Device::Cpu).unwrap();
        assert_eq!(unfold_merge(&x, 3, 5, 2).unwrap().dims(), &[2, 8]);
    }

    #[test]
    fn feature_layer_indices() {
        let cfg = |s: &str| ConfigObject::parse("config.json", s).unwrap();
        assert_eq!(feature_layers(&cfg("{}"), -1, 4).unwrap(), vec![4]);
        assert_eq!(feature_layers(&cfg("{}"), -2, 4).unwrap(), vec![3]);
        assert_eq!(
            feature_layers(&cfg(r#"{"vision_feature_layer": [-1, 0, 2]}"#), -1, 4).unwrap(),
            vec![4, 0, 2]
        );
        assert!(feature_layers(&cfg(r#"{"vision_feature_layer": 5}"#), -1, 4).is_err());
        assert!(feature_layers(&cfg(r#"{"vision_feature_layer": -6}"#), -1, 4).is_err());
        assert!(feature_layers(&cfg(r#"{"vision_feature_layer": []}"#), -1, 4).is_err());
        assert!(feature_layers(&cfg(r#"{"vision_feature_layer": "x"}"#), -1, 4).is_err());
    }

    #[test]
    fn vision_config_reading() {
        let cfg = |s: &str| ConfigObject::parse("config.json", s).unwrap();
        let c = PixtralVisionConfig::from_config(&cfg("{}"), PixtralDefaults::CLASS).unwrap();
        assert_eq!(
            (c.hidden_size, c.num_heads, c.head_dim, c.patch_size),
            (1024, 16, 64, 16)
        );
        assert_eq!(c.act, Activation::GeluErf);
        assert_eq!(c.rope_theta, 10_000.0);
        let c = PixtralVisionConfig::from_config(
            &cfg(r#"{"rope_theta": 50.0, "patch_size": [8, 8], "hidden_act": "silu"}"#),
            PixtralDefaults::MISTRAL3,
        )
        .unwrap();
        assert_eq!((c.rope_theta, c.patch_size, c.image_size), (50.0, 8, 1540));
        let c = PixtralVisionConfig::from_config(
            &cfg(r#"{"rope_theta": 50.0, "rope_parameters": {"rope_theta": 7.0, "rope_type": "axial"}}"#),
            PixtralDefaults::CLASS,
        )
        .unwrap();
        assert_eq!(c.rope_theta, 7.0);
        for bad in [
            r#"{"head_dim": 32}"#,
            r#"{"hidden_size": 20, "num_attention_heads": 4}"#,
            r#"{"rope_parameters": {"rope_type": "yarn"}}"#,
            r#"{"patch_size": [8, 16]}"#,
            r#"{"num_channels": 4}"#,
            r#"{"hidden_act": "relu6"}"#,
        ] {
            assert!(
                PixtralVisionConfig::from_config(&cfg(bad), PixtralDefaults::CLASS).is_err(),
                "{bad}"
            );
        }
    }
}
