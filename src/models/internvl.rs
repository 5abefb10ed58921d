//! InternVL (`model_type` `internvl`, `InternVLForConditionalGeneration`; InternVL 2.5 / 3 /
//! 3.5 as converted to transformers, e.g. `OpenGVLab/InternVL3-1B-hf`), `modeling_internvl.py`:
//!
//! 1. each image is cut into tiles plus a thumbnail by `GotOcr2ImageProcessor`
//!    ([`crate::preprocess::got_ocr2`]; `InternVLProcessor` passes `crop_to_patches=True`);
//! 2. every tile runs through InternViT (`InternVLVisionModel`): a CLS token and absolute
//!    positions, pre-norm layers (`layer_norm` or `rms_norm`) with layer scales
//!    (`lambda_1`, `lambda_2`), optional RMS q/k norms over the whole projection, and a final
//!    `layernorm` unless `use_mean_pooling`;
//! 3. `get_image_features`: `last_hidden_state` for `vision_feature_layer` -1, else
//!    `hidden_states[i]`; strategy `default` drops the CLS token; the `s` x `s` patch grid is
//!    pixel-shuffled by `1 / downsample_ratio`; `InternVLMultiModalProjector`:
//!    `linear_2(act(linear_1(LayerNorm(x))))`.
//!
//! The image's embeddings are its tiles' in order (grid tiles row-major, then the
//! thumbnail): what `InternVLModel` scatters into the `<IMG_CONTEXT>` positions.

use candle_core::{DType, Device, Tensor};
use serde_json::Value;

use crate::config::ConfigObject;
use crate::error::{Error, Result};
use crate::models::activation::Activation;
use crate::models::cancel;
use crate::models::checkpoint::Checkpoint;
use crate::models::layers::{Attention, LayerNorm, Linear, Loader, RmsNorm};
use crate::models::pixels::patchify;
use crate::models::projector::{feature_layers, pixel_shuffle, text_width, MlpProjector};
use crate::models::tiles::{check_tokens_per_tile, got_ocr2_methods};
use crate::models::vit::{MAX_DIM, MAX_LAYERS};
use crate::models::{attention_batch, ModelInfo, SpecialTokens, VisionModel};
use crate::preprocess::got_ocr2::GotOcr2Processor;
use crate::tokenizer::AddedTokens;

/// `InternVLConfig.image_token_id` default.
const DEFAULT_IMAGE_TOKEN: i64 = 151667;

/// Reads a size given as an integer or as `[height, width]` (InternVLVisionConfig's
/// `image_size` / `patch_size`); both sides must agree.
fn square(cfg: &ConfigObject, key: &str, default: usize) -> Result<usize> {
    let bad = |what: String| Error::bad_config(format!("{}: `{key}` {what}", cfg.location()));
    let side = |v: &Value| -> Result<usize> {
        match v.as_u64() {
            Some(n) if n >= 1 && n as usize <= MAX_DIM => Ok(n as usize),
            _ => Err(bad(format!("{v} is not a size between 1 and {MAX_DIM}"))),
        }
    };
    match cfg.value(key) {
        None | Some(Value::Null) => Ok(default),
        Some(Value::Array(items)) if items.len() == 2 => {
            let (h, w) = (side(&items[0])?, side(&items[1])?);
            if h != w {
                return Err(bad(format!(
                    "{h}x{w} is not square (only square tiles are supported)"
                )));
            }
            Ok(h)
        }
        Some(v) => side(v),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum NormType {
    Layer,
    Rms,
}

/// `InternVLVisionConfig`, with its class defaults.
#[derive(Debug, Clone)]
struct VisionConfig {
    hidden: usize,
    intermediate: usize,
    layers: usize,
    heads: usize,
    attention_bias: bool,
    qk_norm: bool,
    act: Activation,
    norm: NormType,
    eps: f64,
    image_size: usize,
    patch_size: usize,
    absolute_positions: bool,
    mean_pooling: bool,
}

impl VisionConfig {
    fn read(c: &ConfigObject) -> Result<VisionConfig> {
        let norm = match c.string_or("norm_type", "layer_norm")?.as_str() {
            "layer_norm" => NormType::Layer,
            "rms_norm" => NormType::Rms,
            other => {
                return Err(Error::bad_config(format!(
                    "{}: norm_type `{other}` is not supported (layer_norm, rms_norm)",
                    c.location()
                )))
            }
        };
        let v = VisionConfig {
            hidden: c.positive_or("hidden_size", 1024, MAX_DIM)?,
            intermediate: c.positive_or("intermediate_size", 4096, MAX_DIM * 8)?,
            layers: c.positive_or("num_hidden_layers", 24, MAX_LAYERS)?,
            heads: c.positive_or("num_attention_heads", 16, MAX_DIM)?,
            attention_bias: c.bool_or("attention_bias", false)?,
            qk_norm: c.bool_or("use_qk_norm", false)?,
            act: Activation::from_name(&c.string_or("hidden_act", "gelu")?)
                .map_err(|e| e.context(format!("{}: hidden_act", c.location())))?,
            norm,
            eps: c.f64_or("layer_norm_eps", 1e-6)?,
            image_size: square(c, "image_size", 448)?,
            patch_size: square(c, "patch_size", 14)?,
            absolute_positions: c.bool_or("use_absolute_position_embeddings", true)?,
            mean_pooling: c.bool_or("use_mean_pooling", true)?,
        };
        if c.usize_or("num_channels", 3, MAX_DIM)? != 3 {
            return Err(Error::bad_config(format!(
                "{}: num_channels must be 3 (RGB)",
                c.location()
            )));
        }
        if v.patch_size > v.image_size {
            return Err(Error::bad_config(format!(
                "{}: patch_size {} is larger than image_size {}",
                c.location(),
                v.patch_size,
                v.image_size
            )));
        }
        Ok(v)
    }

    fn grid(&self) -> usize {
        self.image_size / self.patch_size
    }
}

/// `NORM2FN[norm_type]`.
enum Norm {
    Layer(LayerNorm),
    Rms(RmsNorm),
}

impl Norm {
    fn load(l: &Loader, name: &str, c: &VisionConfig) -> Result<Norm> {
        Ok(match c.norm {
            NormType::Layer => Norm::Layer(l.layer_norm(name, c.hidden, c.eps)?),
            NormType::Rms => Norm::Rms(l.rms_norm(name, c.hidden, c.eps)?),
        })
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        match self {
            Norm::Layer(n) => n.forward(x),
            Norm::Rms(n) => n.forward(x),
        }
    }
}

/// `InternVLVisionLayer`.
struct Layer {
    before: Norm,
    attn: Attention,
    lambda_1: Tensor,
    after: Norm,
    fc1: Linear,
    fc2: Linear,
    lambda_2: Tensor,
    act: Activation,
}

impl Layer {
    fn load(l: &Loader, c: &VisionConfig) -> Result<Layer> {
        let d = c.hidden;
        if d % c.heads != 0 {
            return Err(Error::bad_config(format!(
                "vision_config: hidden_size {d} is not divisible by num_attention_heads {}",
                c.heads
            )));
        }
        let a = l.sub("attention");
        let qkv = Linear::concat(&[
            a.linear("q_proj", d, d, c.attention_bias)?,
            a.linear("k_proj", d, d, c.attention_bias)?,
            a.linear("v_proj", d, d, c.attention_bias)?,
        ])?;
        let mut attn =
            Attention::from_parts(qkv, a.linear("projection_layer", d, d, true)?, c.heads)?;
        if c.qk_norm {
            // InternVLVisionRMSNorm(embed_dim): its own default eps, not layer_norm_eps.
            attn = attn.with_qk_norm(
                a.rms_norm("q_norm", d, 1e-6)?,
                a.rms_norm("k_norm", d, 1e-6)?,
            );
        }
        Ok(Layer {
            before: Norm::load(l, "layernorm_before", c)?,
            attn,
            lambda_1: l.tensor("lambda_1", &[d])?,
            after: Norm::load(l, "layernorm_after", c)?,
            fc1: l.linear("mlp.fc1", d, c.intermediate, true)?,
            fc2: l.linear("mlp.fc2", c.intermediate, d, true)?,
            lambda_2: l.tensor("lambda_2", &[d])?,
            act: c.act,
        })
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let a = self.attn.forward_residual(&self.before.forward(x)?, None)?;
        let x = (a.broadcast_mul(&self.lambda_1)? + x)?;
        let h = self.fc1.forward_act(&self.after.forward(&x)?, self.act)?;
        let m = self.fc2.forward(&h)?;
        Ok((m.broadcast_mul(&self.lambda_2)? + x)?)
    }
}

/// `InternVLVisionModel`, up to the hidden state the projector reads.
struct Tower {
    patch: Linear,
    cls: Tensor,
    positions: Option<Tensor>,
    layers: Vec<Layer>,
    /// `layernorm` (absent with `use_mean_pooling`), applied when the whole stack runs.
    final_norm: Option<LayerNorm>,
    patch_size: usize,
}

impl Tower {
    /// Loads the embeddings, the first `depth` layers and, when `final_norm`, `layernorm`.
    fn load(l: &Loader, c: &VisionConfig, depth: usize, final_norm: bool) -> Result<Tower> {
        let d = c.hidden;
        let emb = l.sub("embeddings");
        let n = c.grid() * c.grid();
        Ok(Tower {
            patch: emb.patch_embedding("patch_embeddings.projection", d, c.patch_size, true)?,
            cls: emb.tensor("cls_token", &[1, 1, d])?,
            positions: if c.absolute_positions {
                Some(emb.tensor("position_embeddings", &[1, n + 1, d])?)
            } else {
                None
            },
            layers: (0..depth)
                .map(|i| Layer::load(&l.sub(&format!("encoder.layer.{i}")), c))
                .collect::<Result<Vec<_>>>()?,
            final_norm: if final_norm {
                Some(l.layer_norm("layernorm", d, c.eps)?)
            } else {
                None
            },
            patch_size: c.patch_size,
        })
    }

    /// `[b, 3, S, S]` → the hidden state after all loaded layers (then `layernorm` when
    /// loaded): `[b, 1 + N, D]`.
    fn forward(&self, pixels: &Tensor) -> Result<Tensor> {
        let patches = self.patch.forward(&patchify(pixels, self.patch_size)?)?;
        let b = patches.dim(0)?;
        let d = patches.dim(2)?;
        let cls = self
            .cls
            .to_dtype(patches.dtype())?
            .broadcast_as((b, 1, d))?;
        let mut x = Tensor::cat(&[&cls, &patches], 1)?;
        if let Some(p) = &self.positions {
            x = x.broadcast_add(p)?;
        }
        for layer in &self.layers {
            cancel::check()?;
            x = layer.forward(&x)?;
        }
        match &self.final_norm {
            Some(n) => n.forward(&x),
            None => Ok(x),
        }
    }
}

/// `InternVLMultiModalProjector`, after the pixel shuffle by `shuffle`.
struct Projector {
    shuffle: usize,
    norm: LayerNorm,
    mlp: MlpProjector,
}

impl Projector {
    /// Reads `downsample_ratio` (1 / n for a whole n that divides the tower's patch `grid`)
    /// and loads `multi_modal_projector.` under `root` for a tower `hidden` wide; returns it
    /// with its output (the text) width.
    fn load(
        root: &Loader,
        cfg: &ConfigObject,
        hidden: usize,
        grid: usize,
    ) -> Result<(Projector, usize)> {
        let ratio = cfg.f64_or("downsample_ratio", 0.5)?;
        let shuffle = (1.0 / ratio).round();
        if !(ratio > 0.0 && ratio <= 1.0) || (1.0 / ratio - shuffle).abs() > 1e-9 {
            return Err(Error::bad_config(format!(
                "config.json: downsample_ratio {ratio} is not 1 / n for a whole n"
            )));
        }
        let shuffle = shuffle as usize;
        if grid % shuffle != 0 {
            return Err(Error::bad_config(format!(
                "config.json: the {grid}x{grid} patch grid cannot be pixel-shuffled by \
                 downsample_ratio {ratio} (transformers refuses it too)"
            )));
        }
        let proj = root.sub("multi_modal_projector");
        let text_dim = text_width(cfg, &proj, "linear_1")?;
        let in_dim = hidden * shuffle * shuffle;
        let projector = Projector {
            shuffle,
            // nn.LayerNorm's default eps.
            norm: proj.layer_norm("layer_norm", in_dim, 1e-5)?,
            mlp: MlpProjector::load(&proj, cfg, in_dim, text_dim, true)?,
        };
        Ok((projector, text_dim))
    }

    /// `[n, side², D]` patch tokens → `[n, (side / shuffle)², text_dim]`.
    fn forward(&self, x: &Tensor, side: usize) -> Result<Tensor> {
        let shuffled = pixel_shuffle(x, side, self.shuffle)?;
        self.mlp.forward(&self.norm.forward(&shuffled)?)
    }
}

/// The hidden state `get_image_features` reads: `vision_feature_layer` (one index, default
/// -1) of a tower of `num_layers`, and whether it is `last_hidden_state` (-1: through
/// `layernorm` unless mean pooling; any other index is `hidden_states[i]`, never normed).
/// Only strategy `default` (drop the CLS token) is accepted.
fn feature_layer(cfg: &ConfigObject, num_layers: usize) -> Result<(usize, bool)> {
    let strategy = cfg.string_or("vision_feature_select_strategy", "default")?;
    if strategy != "default" {
        // The CLS token kept: 1 + N tokens are no square grid, which the reference
        // cannot reshape either.
        return Err(Error::bad_config(format!(
            "config.json: vision_feature_select_strategy `{strategy}` is not supported \
             for internvl (default; the pixel shuffle needs the patch grid alone)"
        )));
    }
    let layers = feature_layers(cfg, -1, num_layers)?;
    let [layer] = layers[..] else {
        return Err(Error::bad_config(
            "config.json: internvl takes one vision_feature_layer, not a list",
        ));
    };
    let last = matches!(cfg.value("vision_feature_layer"), None | Some(Value::Null))
        || cfg.i64("vision_feature_layer")? == Some(-1);
    Ok((layer, last))
}

/// An InternVL vision tower with its projector and image processor.
pub struct InternVlModel {
    info: ModelInfo,
    tower: Tower,
    projector: Projector,
    processor: GotOcr2Processor,
    tiles_per_call: usize,
    dtype: DType,
    device: Device,
}

impl InternVlModel {
    pub fn load(ck: &Checkpoint) -> Result<InternVlModel> {
        let cfg = ck.config();
        let v = VisionConfig::read(&ck.vision_config()?)?;
        let grid = v.grid();
        let (layer, last) = feature_layer(cfg, v.layers)?;
        let root = ck.loader("");
        let (projector, text_dim) = Projector::load(&root, cfg, v.hidden, grid)?;
        let final_norm = last && !v.mean_pooling;
        let tower = Tower::load(&root.sub("vision_tower"), &v, layer, final_norm)?;
        let processor =
            GotOcr2Processor::from_config(&ck.files.preprocessor, v.image_size, Some(true))?;
        // InternVLProcessor writes `image_seq_length` placeholders per tile (config.json's
        // own `image_seq_length` is unused).
        let per_tile = (grid / projector.shuffle).pow(2);
        check_tokens_per_tile(
            &ck.files.processor,
            "image_seq_length",
            per_tile,
            "(image_size / patch_size * downsample_ratio)^2",
        )?;
        let added = AddedTokens::read(&ck.files.dir);
        let tiles_per_call = attention_batch(v.heads, grid * grid + 1);
        let info = ModelInfo {
            family: "internvl",
            model_type: ck.files.model_type()?,
            output_dim: text_dim,
            vision_dim: v.hidden,
            patch_size: v.patch_size,
            image_size: (v.image_size, v.image_size),
            tokens_per_image: None,
            max_batch: tiles_per_call,
            mixed_shape_batches: true,
            tokens: SpecialTokens {
                image: Some(
                    cfg.i64(cfg.aliased(&["image_token_id", "image_token_index"]))?
                        .unwrap_or(DEFAULT_IMAGE_TOKEN),
                ),
                image_start: added.id("<img>"),
                image_end: added.id("</img>"),
                image_break: None,
            },
        };
        Ok(InternVlModel {
            info,
            tower,
            projector,
            processor,
            tiles_per_call,
            dtype: ck.dtype,
            device: ck.device.clone(),
        })
    }

    fn tile_grid(&self) -> usize {
        self.info.image_size.0 / self.info.patch_size / self.projector.shuffle
    }

    /// `[n, 3, S, S]` tiles → `[n, tokens, text_dim]`: strategy `default` drops the CLS
    /// token before the pixel shuffle.
    fn run_tiles(&self, x: &Tensor) -> Result<Tensor> {
        let h = self.tower.forward(x)?;
        let n = h.dim(1)?;
        let side = self.info.image_size.0 / self.info.patch_size;
        self.projector.forward(&h.narrow(1, 1, n - 1)?, side)
    }
}

impl VisionModel for InternVlModel {
    got_ocr2_methods!(Self::tile_grid);

    // prompt_layout: the default, as InternVLProcessor.replace_image_token lays an image out:
    // <img>, image_seq_length x tiles <IMG_CONTEXT>, </img>.
}
