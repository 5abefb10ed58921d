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

use crate::config::{axial_rope_theta, ConfigObject, ModelFiles, ROPE_SCALING_FIRST};
use crate::error::{Error, Result};
use crate::models::activation::Activation;
use crate::models::checkpoint::Checkpoint;
use crate::models::layers::{Attention, GatedMlp, Linear, Loader, RmsNorm};
use crate::models::pixels::{patchify, to_compute};
use crate::models::projector::{concat_features, feature_layers, MlpProjector};
use crate::models::rope::{pixtral_axial_angles, Rotary};
use crate::models::vit::{MAX_DIM, MAX_LAYERS};
use crate::models::{
    processor_methods, ModelInfo, PromptBuilder, PromptLayout, SpecialTokens, VisionModel,
};
use crate::preprocess::longest_edge::LongestEdgeProcessor;
use crate::preprocess::qwen_video::VideoMeta;
use crate::preprocess::settings::read_patch_size;
use crate::preprocess::Pixels;
use crate::tokenizer::AddedTokens;

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
/// `Mistral3Config` / `MistralLarge4Config` use when `vision_config` is absent altogether
/// (their `sub_configs_defaults` init kwargs, which transformers applies only then).
#[derive(Debug, Clone, Copy)]
pub struct PixtralDefaults {
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_layers: usize,
    pub num_heads: usize,
    pub patch_size: usize,
    pub image_size: usize,
    pub hidden_act: &'static str,
}

impl PixtralDefaults {
    pub(crate) const CLASS: PixtralDefaults = PixtralDefaults {
        hidden_size: 1024,
        intermediate_size: 4096,
        num_layers: 24,
        num_heads: 16,
        patch_size: 16,
        image_size: 1024,
        hidden_act: "gelu",
    };
    pub(crate) const MISTRAL3: PixtralDefaults = PixtralDefaults {
        patch_size: 14,
        image_size: 1540,
        ..PixtralDefaults::CLASS
    };
    /// Mistral Large 4's tower (as Mistral Small 3.1's, with a gated SiLU MLP).
    pub(crate) const MISTRAL_LARGE4: PixtralDefaults = PixtralDefaults {
        hidden_size: 2048,
        intermediate_size: 6144,
        num_layers: 30,
        num_heads: 16,
        patch_size: 14,
        image_size: 1540,
        hidden_act: "silu",
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
        let hidden_size = cfg.positive_or("hidden_size", d.hidden_size, MAX_DIM)?;
        let num_heads = cfg.positive_or("num_attention_heads", d.num_heads, MAX_DIM)?;
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
            intermediate_size: cfg.positive_or(
                "intermediate_size",
                d.intermediate_size,
                MAX_DIM * 8,
            )?,
            num_layers: cfg.positive_or("num_hidden_layers", d.num_layers, MAX_LAYERS)?,
            num_heads,
            head_dim,
            patch_size: int_or_pair(cfg, "patch_size", d.patch_size, false)?,
            image_size: int_or_pair(cfg, "image_size", d.image_size, true)?,
            act: Activation::from_name(&cfg.string_or("hidden_act", d.hidden_act)?)?,
            rope_theta: axial_rope_theta(cfg, ROPE_SCALING_FIRST)?,
        })
    }
}

struct PixtralLayer {
    attention_norm: RmsNorm,
    attention: Attention,
    ffn_norm: RmsNorm,
    mlp: GatedMlp,
}

/// How a checkpoint names the tower's and the Mistral3 projector's tensors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// transformers' names: `vision_tower.transformer.layers.N.attention.q_proj`, ...,
    /// `multi_modal_projector.{norm, patch_merger.merging_layer, linear_1, linear_2}`.
    Transformers,
    /// Mistral's own names, as `mistral_large4` checkpoints are stored (transformers renames
    /// them on load, `conversion_mapping.py`): `vision_encoder.` with `attention.w{q,k,v,o}`
    /// (the q and k rows in interleaved rotary order) and `feed_forward.w{1,3,2}` (gate, up,
    /// down); `pre_mm_projector_norm`, `patch_merger.merging_layer` and
    /// `vision_language_adapter.w_in` / `w_out` at the root.
    Mistral,
}

impl Layout {
    /// The tower's prefix under a wrapper model.
    fn tower_prefix(self) -> &'static str {
        match self {
            Layout::Transformers => "vision_tower.",
            Layout::Mistral => "vision_encoder.",
        }
    }
}

impl PixtralLayer {
    fn load(l: &Loader, c: &PixtralVisionConfig, layout: Layout) -> Result<PixtralLayer> {
        let d = c.hidden_size;
        let (a, ff) = (l.sub("attention"), l.sub("feed_forward"));
        let (attention, mlp) = match layout {
            Layout::Transformers => (
                Attention::load(&a, d, c.num_heads, "o_proj", false)?,
                GatedMlp::load(&ff, d, c.intermediate_size, c.act, false)?,
            ),
            Layout::Mistral => {
                let q = a.linear_rope_interleaved("wq", d, d, c.num_heads)?;
                let k = a.linear_rope_interleaved("wk", d, d, c.num_heads)?;
                let v = a.linear("wv", d, d, false)?;
                let qkv = Linear::concat(&[q, k, v])?;
                let names = ["w1", "w3", "w2"];
                (
                    Attention::from_parts(qkv, a.linear("wo", d, d, false)?, c.num_heads)?,
                    GatedMlp::load_named(&ff, names, d, c.intermediate_size, c.act, false)?,
                )
            }
        };
        Ok(PixtralLayer {
            attention_norm: l.rms_norm("attention_norm", d, PIXTRAL_RMS_EPS)?,
            attention,
            ffn_norm: l.rms_norm("ffn_norm", d, PIXTRAL_RMS_EPS)?,
            mlp,
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
    /// Loads the tower whose tensors are under `loader`, named as `layout` says.
    pub fn load(
        loader: &Loader,
        config: &PixtralVisionConfig,
        layout: Layout,
    ) -> Result<PixtralVisionTower> {
        let d = config.hidden_size;
        let p = config.patch_size;
        let layers = (0..config.num_layers)
            .map(|i| {
                let l = loader.sub(&format!("transformer.layers.{i}"));
                PixtralLayer::load(&l, config, layout)
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(PixtralVisionTower {
            config: config.clone(),
            patch: loader.patch_embedding("patch_conv", d, p, false)?,
            ln_pre: loader.rms_norm("ln_pre", d, PIXTRAL_RMS_EPS)?,
            layers,
        })
    }

    #[allow(dead_code, reason = "unused since crate-private (#19)")]
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
            crate::models::cancel::check()?;
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

/// Which wrapper a checkpoint uses around the Pixtral tower (the registry picks it from
/// `model_type`, and for `llava` from `vision_config.model_type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PixtralVariant {
    /// `pixtral`: a standalone `PixtralVisionModel`; its last hidden state is the output.
    Standalone,
    /// `llava` with a `pixtral` vision config (pixtral-12b).
    Llava,
    /// `mistral3` (Mistral-Small-3.1, Ministral 3).
    Mistral3,
    /// `mistral_large4`: Mistral3's projector (RMSNorm, patch merger, MLP) with other
    /// defaults for absent config objects.
    MistralLarge4,
}

impl PixtralVariant {
    /// The tower's config object and the defaults for its absent keys.
    fn vision_config(self, cfg: &ConfigObject) -> Result<(ConfigObject, PixtralDefaults)> {
        let (vision_cfg, defaults) = match (self, cfg.object("vision_config")?) {
            (PixtralVariant::Standalone, _) => return Ok((cfg.clone(), PixtralDefaults::CLASS)),
            (_, Some(v)) => (v, PixtralDefaults::CLASS),
            (PixtralVariant::Mistral3, None) => (
                ConfigObject::empty("config.json: vision_config (absent)"),
                PixtralDefaults::MISTRAL3,
            ),
            (PixtralVariant::MistralLarge4, None) => (
                ConfigObject::empty("config.json: vision_config (absent)"),
                PixtralDefaults::MISTRAL_LARGE4,
            ),
            (PixtralVariant::Llava, None) => {
                return Err(Error::bad_config(
                    "config.json: model_type `llava` without a `vision_config`",
                ))
            }
        };
        let vt = vision_cfg.string_or("model_type", "pixtral")?;
        if vt != "pixtral" {
            return Err(Error::bad_config(format!(
                "{}: model_type `{vt}`: expected `pixtral`",
                vision_cfg.location()
            )));
        }
        Ok((vision_cfg, defaults))
    }
}

/// `Mistral3MultiModalProjector`: RMSNorm, patch merger, then the LLaVA MLP.
struct Mistral3Projector {
    norm: RmsNorm,
    merge: usize,
    merging_layer: Linear,
    mlp: MlpProjector,
}

impl Mistral3Projector {
    /// Loads the projector from the model's root `loader`, named as `layout` says.
    fn load(
        root: &Loader,
        layout: Layout,
        cfg: &ConfigObject,
        dim: usize,
        text: (usize, f64),
    ) -> Result<Mistral3Projector> {
        let merge = cfg.positive_or("spatial_merge_size", 2, MAX_MERGE)?;
        let (loader, norm, mlp) = match layout {
            Layout::Transformers => (
                root.sub("multi_modal_projector"),
                "norm",
                ["linear_1", "linear_2"],
            ),
            Layout::Mistral => (
                root.clone(),
                "pre_mm_projector_norm",
                [
                    "vision_language_adapter.w_in",
                    "vision_language_adapter.w_out",
                ],
            ),
        };
        let bias = cfg.bool_or("multimodal_projector_bias", false)?;
        Ok(Mistral3Projector {
            norm: loader.rms_norm(norm, dim, text.1)?,
            merge,
            merging_layer: loader.linear(
                "patch_merger.merging_layer",
                dim * merge * merge,
                dim,
                false,
            )?,
            mlp: MlpProjector::load_named(&loader, mlp, cfg, dim, text.0, bias)?,
        })
    }

    fn forward(&self, x: &Tensor, grids: &[(usize, usize)]) -> Result<Tensor> {
        let x = self.norm.forward(x)?;
        let mut merged = Vec::with_capacity(grids.len());
        let mut start = 0;
        for &(r, c) in grids {
            let part = x.narrow(0, start, r * c)?;
            merged.push(unfold_merge(&part, r, c, self.merge)?);
            start += r * c;
        }
        let x = concat_features(merged, 0)?;
        self.mlp.forward(&self.merging_layer.forward(&x)?)
    }
}

/// The projector between the tower and the language model.
enum Projector {
    /// A standalone tower: its last hidden state is the output.
    None,
    /// `LlavaMultiModalProjector`.
    Llava(MlpProjector),
    Mistral3(Mistral3Projector),
}

impl Projector {
    /// Reads the projector settings of `variant` from config.json and loads its weights
    /// (`multi_modal_projector.`); returns it with the `hidden_states` indices it reads and
    /// its output width.
    fn load(
        variant: PixtralVariant,
        cfg: &ConfigObject,
        root: &Loader,
        layout: Layout,
        tower: &PixtralVisionConfig,
    ) -> Result<(Projector, Vec<usize>, usize)> {
        let loader = &root.sub("multi_modal_projector");
        let d = tower.hidden_size;
        match variant {
            PixtralVariant::Standalone => Ok((Projector::None, vec![tower.num_layers], d)),
            PixtralVariant::Llava => {
                let strategy = cfg.string_or("vision_feature_select_strategy", "default")?;
                if strategy != "full" {
                    return Err(Error::bad_config(format!(
                        "config.json: vision_feature_select_strategy `{strategy}` with a Pixtral tower: only `full` works (`default` drops a CLS token that Pixtral does not have; the reference fails too)"
                    )));
                }
                let layers = feature_layers(cfg, -2, tower.num_layers)?;
                let (text_hidden, _) = text_hidden_and_eps(cfg, "llama", (4096, 1e-6))?;
                let bias = cfg.bool_or("multimodal_projector_bias", true)?;
                let mlp = MlpProjector::load(loader, cfg, d * layers.len(), text_hidden, bias)?;
                Ok((Projector::Llava(mlp), layers, text_hidden))
            }
            PixtralVariant::Mistral3 | PixtralVariant::MistralLarge4 => {
                let layers = feature_layers(cfg, -1, tower.num_layers)?;
                if layers.len() != 1 {
                    return Err(Error::bad_config(
                        "config.json: mistral3 / mistral_large4 take a single vision_feature_layer (the projector norm and merger are as wide as one layer)",
                    ));
                }
                // The text config's class (`model_type`) when it does not say, and its
                // values when text_config is absent (the `sub_configs_defaults`).
                let text = if variant == PixtralVariant::Mistral3 {
                    text_hidden_and_eps(cfg, "mistral", (5120, 1e-5))?
                } else {
                    text_hidden_and_eps(cfg, "mistral_large4_text", (6144, 1e-5))?
                };
                let projector = Mistral3Projector::load(root, layout, cfg, d, text)?;
                Ok((Projector::Mistral3(projector), layers, text.0))
            }
        }
    }

    /// Patches per side merged into one output token.
    fn merge(&self) -> usize {
        match self {
            Projector::Mistral3(p) => p.merge,
            _ => 1,
        }
    }

    fn forward(&self, x: &Tensor, grids: &[(usize, usize)]) -> Result<Tensor> {
        match self {
            Projector::None => Ok(x.clone()),
            Projector::Llava(mlp) => mlp.forward(x),
            Projector::Mistral3(p) => p.forward(x, grids),
        }
    }
}

/// The language model's hidden size and RMSNorm eps: `text_config` keys, with the defaults
/// of its config class (`absent` when there is no `text_config`).
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
        "mistral_large4_text" => Some((6144, 1e-5)),
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

/// The image processor: `PixtralImageProcessor` settings, rounding to the patch window
/// (`patch_size * merge`). PixtralProcessor passes patch_size * spatial_merge_size from
/// processor_config.json (it must be what the model needs); a standalone tower's image
/// processor uses its own `patch_size`.
fn processor(
    files: &ModelFiles,
    variant: PixtralVariant,
    patch_size: usize,
    merge: usize,
) -> Result<LongestEdgeProcessor> {
    let window = patch_size * merge;
    let round_to = if let Some(pp) = read_patch_size(&files.processor, "patch_size")? {
        let pm = files
            .processor
            .positive_or("spatial_merge_size", 1, MAX_MERGE)?;
        if pp * pm != window {
            return Err(Error::bad_config(format!(
                "processor_config.json: patch_size {pp} x spatial_merge_size {pm} = {} but the model's patch window is {window} ({patch_size} x {merge})",
                pp * pm,
            )));
        }
        window
    } else if variant == PixtralVariant::Standalone {
        read_patch_size(&files.preprocessor, "patch_size")?.unwrap_or(window)
    } else {
        window
    };
    LongestEdgeProcessor::from_config(&files.preprocessor, round_to, patch_size, merge)
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

impl PixtralModel {
    /// Loads a Pixtral-based checkpoint of the given variant.
    pub fn load(ck: &Checkpoint, variant: PixtralVariant) -> Result<PixtralModel> {
        let cfg = ck.config();
        let (vision_cfg, defaults) = variant.vision_config(cfg)?;
        let config = PixtralVisionConfig::from_config(&vision_cfg, defaults)?;
        let root = ck.loader("");
        let layout = match variant {
            PixtralVariant::MistralLarge4
                if ck.weights.contains("vision_encoder.patch_conv.weight") =>
            {
                Layout::Mistral
            }
            _ => Layout::Transformers,
        };
        let tower_loader = match variant {
            PixtralVariant::Standalone => root.clone(),
            _ => root.sub_prefix(layout.tower_prefix()),
        };
        let tower = PixtralVisionTower::load(&tower_loader, &config, layout)?;
        let (projector, feature_layers, output_dim) =
            Projector::load(variant, cfg, &root, layout, &config)?;
        let processor = processor(ck.files, variant, config.patch_size, projector.merge())?;
        let (max_h, max_w) = processor.max_size;
        let max_tokens = (max_h / config.patch_size).max(1) * (max_w / config.patch_size).max(1);
        // Per image: activations of the widest layer for every patch (attention runs one
        // image at a time, in blocks of query rows, so its scores do not add up).
        let per_image = max_tokens
            .saturating_mul(3 * config.intermediate_size + 8 * config.hidden_size)
            .saturating_mul(4);
        let info = ModelInfo {
            family: "pixtral",
            model_type: ck.files.model_type()?,
            output_dim,
            vision_dim: config.hidden_size,
            patch_size: config.patch_size,
            image_size: (max_w, max_h),
            tokens_per_image: None,
            max_batch: crate::models::batch_for_budget(per_image, 1 << 30),
            mixed_shape_batches: true,
            tokens: special_tokens(ck.files, variant)?,
        };
        Ok(PixtralModel {
            info,
            tower,
            projector,
            feature_layers,
            processor,
            dtype: ck.dtype,
            device: ck.device.clone(),
        })
    }

    fn pixels_tensor(&self, p: &Pixels) -> Result<Tensor> {
        let [c, h, w] = p.shape[..] else {
            return Err(Error::invalid_argument(format!(
                "expected a [3, H, W] image, found shape {:?}",
                p.shape
            )));
        };
        let t = Tensor::from_slice(&p.data, (1, c, h, w), &Device::Cpu)?;
        to_compute(t, self.dtype, &self.device)
    }
}

/// The special token ids: the image placeholder from config.json (`image_token_index`, the id
/// the language model replaces), `[IMG_BREAK]` / `[IMG_END]` (and the standalone tower's
/// `[IMG]`) looked up in the tokenizer files by the strings processor_config.json names.
fn special_tokens(files: &ModelFiles, variant: PixtralVariant) -> Result<SpecialTokens> {
    let p = &files.processor;
    let image_str = p.string_or("image_token", "[IMG]")?;
    let break_str = p.string_or("image_break_token", "[IMG_BREAK]")?;
    let end_str = p.string_or("image_end_token", "[IMG_END]")?;
    let added = AddedTokens::read(&files.dir);
    let cfg = &files.config;
    let image = match variant {
        PixtralVariant::Standalone => added.id(&image_str),
        PixtralVariant::Llava | PixtralVariant::Mistral3 | PixtralVariant::MistralLarge4 => Some(
            match cfg.i64(cfg.aliased(&["image_token_index", "image_token_id"]))? {
                Some(i) => i,
                None if variant == PixtralVariant::Llava => 32000,
                None => 10,
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
    processor_methods!(via process_with; "longest_edge", "max_tokens");

    fn prompt_layout(&self, pixels: &Pixels, _video: Option<&VideoMeta>) -> Result<PromptLayout> {
        // PixtralProcessor: each row of the token grid is `cols` [IMG] then [IMG_BREAK]; the
        // last [IMG_BREAK] is [IMG_END].
        let t = &self.info.tokens;
        let [_, rows, cols] = pixels.grid;
        let mut b = PromptBuilder::default();
        for r in 0..rows {
            b.rows(t.image, cols).token(if r + 1 == rows {
                t.image_end
            } else {
                t.image_break
            });
        }
        b.finish(pixels.n_tokens())
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
        let features = concat_features(states, 1)?;
        let out = self.projector.forward(&features, &grids)?;
        let out = out.to_dtype(DType::F32)?;
        let mut results = Vec::with_capacity(batch.len());
        let mut start = 0;
        for (p, &(r, c)) in batch.iter().zip(&grids) {
            let [_, rows, cols] = p.grid;
            let n = rows * cols;
            let merge = self.projector.merge();
            let expected = (r / merge) * (c / merge);
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

    /// A wrapper's own tower defaults (its `sub_configs_defaults` init kwargs) apply only
    /// when `vision_config` is absent; a given one takes `PixtralVisionConfig`'s.
    #[test]
    fn wrapper_defaults_apply_only_without_a_vision_config() {
        let cfg = |s: &str| ConfigObject::parse("config.json", s).unwrap();
        let read = |variant: PixtralVariant, text: &str| {
            let (v, d) = variant.vision_config(&cfg(text)).unwrap();
            let c = PixtralVisionConfig::from_config(&v, d).unwrap();
            let shape = (
                c.hidden_size,
                c.intermediate_size,
                c.num_layers,
                c.num_heads,
            );
            (shape, c.patch_size, c.image_size, c.act)
        };
        let large4 = read(PixtralVariant::MistralLarge4, "{}");
        assert_eq!(large4, ((2048, 6144, 30, 16), 14, 1540, Activation::Silu));
        let m3 = read(PixtralVariant::Mistral3, "{}");
        assert_eq!(m3, ((1024, 4096, 24, 16), 14, 1540, Activation::GeluErf));
        for variant in [PixtralVariant::Mistral3, PixtralVariant::MistralLarge4] {
            let given = read(variant, r#"{"vision_config": {"hidden_size": 64}}"#);
            assert_eq!(given, ((64, 4096, 24, 16), 16, 1024, Activation::GeluErf));
        }
        assert!(PixtralVariant::Llava.vision_config(&cfg("{}")).is_err());
    }
}
