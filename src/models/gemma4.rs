//! Gemma 4 (`model_type` `gemma4`, `Gemma4ForConditionalGeneration` / `Gemma4Model`; and the
//! bare tower `gemma4_vision`, `Gemma4VisionModel`): `modeling_gemma4.py`'s image path.
//!
//! 1. `Gemma4VisionPatchEmbedder`: `2 * (x - 0.5)` through a bias-free linear over the
//!    `(y, x, channel)` patch rows, plus rows `x` and `y` of the learned
//!    `position_embedding_table` `[2, size, D]`;
//! 2. `Gemma4VisionEncoderLayer`s: `x + post_attn_norm(attn(input_norm(x)))`, then
//!    `x + post_ff_norm(mlp(pre_ff_norm(x)))`. Norms are `Gemma4RMSNorm` (`x * rsqrt(mean(x²) +
//!    eps) * w` in f32, the weight used as is). Attention: q and k RMS-normed per head (with
//!    weights), v without weight; the 2-D axial rotary embedding rotates the first half of each
//!    head by the patch's x and the second half by its y (`apply_multidimensional_rope`); scale
//!    1; grouped-query heads. The MLP is `down(act(gate(x)) * up(x))`. With
//!    `use_clipped_linears` every projection clamps its input and its output to the stored
//!    `input_min/max`, `output_min/max`.
//! 3. `Gemma4VisionPooler`: the mean of each `k x k` window of patches (`k` =
//!    `pooling_kernel_size`), raster order, times `sqrt(D)` in f32; with `standardize`,
//!    `(x - std_bias) * std_scale`.
//! 4. `Gemma4MultimodalEmbedder` (not for `gemma4_vision`): RMSNorm without weight (eps =
//!    `vision_config.rms_norm_eps`), then a bias-free linear to the language model's width.
//!
//! The reference pads every image to the patch budget and masks the padding out of attention
//! and pooling; here each image's valid patches attend among themselves in one packed
//! sequence, which is the same arithmetic without the padding.

use candle_core::{DType, Device, Tensor};

use crate::config::{axial_rope_theta, ConfigObject, ROPE_PARAMETERS_FIRST};
use crate::error::{Error, Result};
use crate::models::activation::Activation;
use crate::models::checkpoint::Checkpoint;
use crate::models::layers::{segment_attention_with, GemmaRmsNorm, Linear, Loader};
use crate::models::pixels::to_compute;
use crate::models::rope::{apply_rotary_f32, inverse_frequencies};
use crate::models::vit::MAX_DIM;
use crate::models::{
    batch_for_budget, framed_layout, per_frame_layout, processor_methods, video_methods,
    GemmaKnobs, ModelInfo, PanAndScan, PromptLayout, SpecialTokens, VisionModel,
};
use crate::preprocess::gemma4::{Gemma4Processor, SUPPORTED_SOFT_TOKENS};
use crate::preprocess::gemma4_video::Gemma4VideoProcessor;
use crate::preprocess::qwen_video::{video_config, VideoMeta};
use crate::preprocess::Pixels;
use crate::weights::Weights;

/// `Gemma4Config` class defaults.
const DEFAULT_IMAGE_TOKEN: i64 = 258_880;
const DEFAULT_BOI: i64 = 255_999;
const DEFAULT_EOI: i64 = 258_882;
const DEFAULT_VIDEO_TOKEN: i64 = 258_884;
/// `Gemma4TextConfig.hidden_size` default.
const DEFAULT_TEXT_HIDDEN: usize = 2304;

/// `Gemma4VisionConfig`, with its class defaults.
#[derive(Debug, Clone, PartialEq)]
pub struct Gemma4VisionConfig {
    pub dim: usize,
    pub intermediate_size: usize,
    pub layers: usize,
    pub heads: usize,
    pub kv_heads: usize,
    pub head_dim: usize,
    pub act: Activation,
    pub eps: f64,
    pub rope_theta: f64,
    pub pooling: usize,
    pub patch_size: usize,
    pub position_embedding_size: usize,
    pub clipped_linears: bool,
    pub standardize: bool,
}

impl Gemma4VisionConfig {
    pub fn from_config(cfg: &ConfigObject) -> Result<Gemma4VisionConfig> {
        let c = Gemma4VisionConfig {
            dim: cfg.positive_or("hidden_size", 768, MAX_DIM)?,
            intermediate_size: cfg.positive_or("intermediate_size", 3072, MAX_DIM)?,
            layers: cfg.usize_or("num_hidden_layers", 16, 4096)?,
            heads: cfg.positive_or("num_attention_heads", 12, MAX_DIM)?,
            kv_heads: cfg.positive_or("num_key_value_heads", 12, MAX_DIM)?,
            head_dim: cfg.positive_or("head_dim", 64, MAX_DIM)?,
            act: Activation::from_name(&cfg.string_or("hidden_activation", "gelu_pytorch_tanh")?)?,
            eps: cfg.f64_or("rms_norm_eps", 1e-6)?,
            // `default_theta = 100.0` when the config names no base.
            rope_theta: if cfg.contains("rope_parameters") || cfg.contains("rope_theta") {
                axial_rope_theta(cfg, ROPE_PARAMETERS_FIRST)?
            } else {
                100.0
            },
            pooling: cfg.positive_or("pooling_kernel_size", 3, 1024)?,
            patch_size: cfg.positive_or("patch_size", 16, 1024)?,
            position_embedding_size: cfg.positive_or("position_embedding_size", 10240, 1 << 24)?,
            clipped_linears: cfg.bool_or("use_clipped_linears", false)?,
            standardize: cfg.bool_or("standardize", false)?,
        };
        let loc = cfg.location();
        if c.heads % c.kv_heads != 0 {
            return Err(Error::bad_config(format!(
                "{loc}: num_attention_heads {} is not a multiple of num_key_value_heads {}",
                c.heads, c.kv_heads
            )));
        }
        if c.head_dim % 4 != 0 {
            return Err(Error::bad_config(format!(
                "{loc}: head_dim {} must be a multiple of 4 (the axial rotary embedding splits \
                 each head in two rotated halves)",
                c.head_dim
            )));
        }
        if c.pooling < 2 {
            // With k = 1 the reference pooler skips pooling and returns the padding mask where
            // the valid mask belongs, so get_image_features cannot produce the tokens.
            return Err(Error::bad_config(format!(
                "{loc}: pooling_kernel_size {} cannot produce the soft tokens (the reference \
                 pools k x k windows of patches; k = 1 is not supported by transformers' pooler)",
                c.pooling
            )));
        }
        Ok(c)
    }
}

/// `Gemma4RMSNorm`: `x * rsqrt(mean(x²) + eps) * w` in f32 (the weight used as is), or
/// without weight.
fn rms_norm(loader: &Loader, name: Option<&str>, dim: usize, eps: f64) -> Result<GemmaRmsNorm> {
    if !(eps > 0.0 && eps.is_finite()) {
        return Err(Error::bad_config(format!(
            "config.json: vision_config.rms_norm_eps {eps} must be a positive number"
        )));
    }
    let scale = match name {
        Some(n) => loader
            .sub(n)
            .tensor("weight", &[dim])?
            .to_dtype(DType::F32)?,
        None => Tensor::ones(dim, DType::F32, loader.device())?,
    };
    Ok(GemmaRmsNorm { scale, eps })
}

/// `Gemma4ClippableLinear`: a bias-free linear at `name.linear`, with input and output
/// clamped to stored bounds when the config says so.
struct ClipLinear {
    linear: Linear,
    /// `(input_min, input_max, output_min, output_max)`.
    clip: Option<[f64; 4]>,
}

impl ClipLinear {
    fn load(loader: &Loader, name: &str, i: usize, o: usize, clipped: bool) -> Result<ClipLinear> {
        let sub = loader.sub(name);
        let clip = if clipped {
            let mut b = [0f64; 4];
            for (v, n) in b
                .iter_mut()
                .zip(["input_min", "input_max", "output_min", "output_max"])
            {
                *v = sub
                    .tensor(n, &[])?
                    .to_dtype(DType::F32)?
                    .to_scalar::<f32>()? as f64;
            }
            Some(b)
        } else {
            None
        };
        Ok(ClipLinear {
            linear: sub.linear("linear", i, o, false)?,
            clip,
        })
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        match self.clip {
            None => self.linear.forward(x),
            Some([a, b, c, d]) => {
                let y = self.linear.forward(&x.clamp(a, b)?)?;
                Ok(y.clamp(c, d)?)
            }
        }
    }
}

struct Block {
    input_norm: GemmaRmsNorm,
    post_attn_norm: GemmaRmsNorm,
    pre_ff_norm: GemmaRmsNorm,
    post_ff_norm: GemmaRmsNorm,
    q: ClipLinear,
    k: ClipLinear,
    v: ClipLinear,
    o: ClipLinear,
    q_norm: GemmaRmsNorm,
    k_norm: GemmaRmsNorm,
    v_norm: GemmaRmsNorm,
    gate: ClipLinear,
    up: ClipLinear,
    down: ClipLinear,
}

impl Block {
    fn load(l: &Loader, c: &Gemma4VisionConfig) -> Result<Block> {
        let (d, hd, cl) = (c.dim, c.head_dim, c.clipped_linears);
        let a = l.sub("self_attn");
        let m = l.sub("mlp");
        Ok(Block {
            input_norm: rms_norm(l, Some("input_layernorm"), d, c.eps)?,
            post_attn_norm: rms_norm(l, Some("post_attention_layernorm"), d, c.eps)?,
            pre_ff_norm: rms_norm(l, Some("pre_feedforward_layernorm"), d, c.eps)?,
            post_ff_norm: rms_norm(l, Some("post_feedforward_layernorm"), d, c.eps)?,
            q: ClipLinear::load(&a, "q_proj", d, c.heads * hd, cl)?,
            k: ClipLinear::load(&a, "k_proj", d, c.kv_heads * hd, cl)?,
            v: ClipLinear::load(&a, "v_proj", d, c.kv_heads * hd, cl)?,
            o: ClipLinear::load(&a, "o_proj", c.heads * hd, d, cl)?,
            q_norm: rms_norm(&a, Some("q_norm"), hd, c.eps)?,
            k_norm: rms_norm(&a, Some("k_norm"), hd, c.eps)?,
            v_norm: rms_norm(&a, None, hd, c.eps)?,
            gate: ClipLinear::load(&m, "gate_proj", d, c.intermediate_size, cl)?,
            up: ClipLinear::load(&m, "up_proj", d, c.intermediate_size, cl)?,
            down: ClipLinear::load(&m, "down_proj", c.intermediate_size, d, cl)?,
        })
    }
}

/// Per-token cos/sin tables `[n, 1, 2, head_dim / 2]` (f32) of the axial rotary embedding:
/// half 0 of each head turns by the patch's x, half 1 by its y, each half in the
/// rotate-half convention (`Gemma4VisionRotaryEmbedding` + `apply_multidimensional_rope`).
fn rotary_tables(
    positions: &[(usize, usize)],
    head_dim: usize,
    theta: f64,
    device: &Device,
) -> Result<(Tensor, Tensor)> {
    let f = inverse_frequencies(head_dim / 2, theta);
    let q = f.len();
    let n = positions.len();
    let (mut cos, mut sin) = (Vec::with_capacity(n * 4 * q), Vec::with_capacity(n * 4 * q));
    for &(x, y) in positions {
        for p in [x, y] {
            for _ in 0..2 {
                for fj in &f {
                    let a = p as f32 * fj;
                    cos.push(a.cos());
                    sin.push(a.sin());
                }
            }
        }
    }
    let make = |v: Vec<f32>| -> Result<Tensor> {
        Ok(Tensor::from_vec(v, (n, 1, 2, 2 * q), &Device::Cpu)?.to_device(device)?)
    };
    Ok((make(cos)?, make(sin)?))
}

/// The tower and the embedder.
pub struct Gemma4VisionTower {
    config: Gemma4VisionConfig,
    input_proj: Linear,
    /// `position_embedding_table` rows for x (`[size, D]`) and y.
    pos_x: Tensor,
    pos_y: Tensor,
    blocks: Vec<Block>,
    /// `(std_bias, std_scale)` in f32.
    standardize: Option<(Tensor, Tensor)>,
}

impl Gemma4VisionTower {
    pub fn load(l: &Loader, c: &Gemma4VisionConfig) -> Result<Gemma4VisionTower> {
        let pe = l.sub("patch_embedder");
        let p = c.patch_size;
        let table = pe.tensor(
            "position_embedding_table",
            &[2, c.position_embedding_size, c.dim],
        )?;
        let blocks = (0..c.layers)
            .map(|i| Block::load(&l.sub(&format!("encoder.layers.{i}")), c))
            .collect::<Result<Vec<_>>>()?;
        let standardize = if c.standardize {
            let f =
                |n: &str| -> Result<Tensor> { Ok(l.tensor(n, &[c.dim])?.to_dtype(DType::F32)?) };
            Some((f("std_bias")?, f("std_scale")?))
        } else {
            None
        };
        Ok(Gemma4VisionTower {
            config: c.clone(),
            input_proj: pe.linear("input_proj", 3 * p * p, c.dim, false)?,
            pos_x: table.get(0)?,
            pos_y: table.get(1)?,
            blocks,
            standardize,
        })
    }

    fn attention(
        &self,
        b: &Block,
        h: &Tensor,
        rope: &(Tensor, Tensor),
        segs: &[(usize, usize)],
    ) -> Result<Tensor> {
        let c = &self.config;
        let n = h.dim(0)?;
        let (hd, half) = (c.head_dim, c.head_dim / 2);
        let rotate = |t: Tensor, heads: usize| -> Result<Tensor> {
            let t = t.reshape((n, heads, 2, half))?;
            let t = apply_rotary_f32(&t, &rope.0, &rope.1)?;
            Ok(t.reshape((n, heads, hd))?)
        };
        let q = b
            .q_norm
            .forward(&b.q.forward(h)?.reshape((n, c.heads, hd))?)?;
        let k = b
            .k_norm
            .forward(&b.k.forward(h)?.reshape((n, c.kv_heads, hd))?)?;
        let v = b
            .v_norm
            .forward(&b.v.forward(h)?.reshape((n, c.kv_heads, hd))?)?;
        let q = rotate(q, c.heads)?.transpose(0, 1)?.contiguous()?;
        let rep = c.heads / c.kv_heads;
        let expand = |t: Tensor| -> Result<Tensor> {
            let t = t.transpose(0, 1)?;
            let t = if rep == 1 {
                t
            } else {
                t.unsqueeze(1)?
                    .expand((c.kv_heads, rep, n, hd))?
                    .reshape((c.heads, n, hd))?
            };
            Ok(t.contiguous()?)
        };
        let k = expand(rotate(k, c.kv_heads)?)?;
        let v = expand(v)?;
        // q·kᵀ and p·v in bf16 when the layer's weights are (the CPU bf16 path).
        let o = segment_attention_with(&q, &k, &v, segs, 1.0, b.q.linear.is_bf16())?;
        b.o.forward(&o)
    }

    /// Runs the tower on packed patch rows `[n, 3 * patch²]` of images with patch grids
    /// `grids` (`(rows, cols)`, raster order, back to back). Returns the soft tokens of all
    /// images back to back, `[tokens, D]` in the compute dtype.
    pub fn forward(&self, patches: &Tensor, grids: &[(usize, usize)]) -> Result<Tensor> {
        let c = &self.config;
        let device = patches.device();
        let mut positions = Vec::with_capacity(patches.dim(0)?);
        let mut segments = Vec::with_capacity(grids.len());
        for &(rows, cols) in grids {
            if rows.max(cols) > c.position_embedding_size {
                return Err(Error::invalid_argument(format!(
                    "a {rows}x{cols} patch grid does not fit the position table of {} entries \
                     (position_embedding_size)",
                    c.position_embedding_size
                )));
            }
            segments.push((positions.len(), rows * cols));
            positions.extend((0..rows * cols).map(|i| (i % cols, i / cols)));
        }
        let idx = |f: fn(&(usize, usize)) -> usize| -> Result<Tensor> {
            let v: Vec<u32> = positions.iter().map(|p| f(p) as u32).collect();
            Ok(Tensor::from_vec(v, positions.len(), &Device::Cpu)?.to_device(device)?)
        };
        let pos = (self.pos_x.index_select(&idx(|p| p.0)?, 0)?
            + self.pos_y.index_select(&idx(|p| p.1)?, 0)?)?;
        let x = ((patches.to_dtype(DType::F32)? - 0.5)? * 2.0)?.to_dtype(patches.dtype())?;
        let mut x = (self.input_proj.forward(&x)? + pos)?;
        let rope = rotary_tables(&positions, c.head_dim, c.rope_theta, device)?;
        for b in &self.blocks {
            let a = self.attention(b, &b.input_norm.forward(&x)?, &rope, &segments)?;
            x = (&x + b.post_attn_norm.forward(&a)?)?;
            let h = b.pre_ff_norm.forward(&x)?;
            let g = c.act.forward(&b.gate.forward(&h)?)?;
            let m = b.down.forward(&(g * b.up.forward(&h)?)?)?;
            x = (&x + b.post_ff_norm.forward(&m)?)?;
        }
        self.pool(&x, grids)
    }

    /// `Gemma4VisionPooler` and the standardization: `[tokens, D]`, cast back to `x`'s dtype.
    fn pool(&self, x: &Tensor, grids: &[(usize, usize)]) -> Result<Tensor> {
        let c = &self.config;
        let (k, d) = (c.pooling, c.dim);
        let x32 = x.to_dtype(DType::F32)?;
        let mut outs = Vec::with_capacity(grids.len());
        let mut start = 0;
        for &(rows, cols) in grids {
            let img = x32.narrow(0, start, rows * cols)?;
            start += rows * cols;
            let pooled = img
                .reshape((rows / k, k, cols / k, k, d))?
                .sum(3)?
                .sum(1)?
                .reshape(((rows / k) * (cols / k), d))?;
            outs.push(pooled);
        }
        let scale = (d as f64).sqrt() / (k * k) as f64;
        let mut y = (Tensor::cat(&outs, 0)? * scale)?;
        if let Some((bias, s)) = &self.standardize {
            y = y.broadcast_sub(bias)?.broadcast_mul(s)?;
        }
        Ok(y.to_dtype(x.dtype())?)
    }
}

/// `Gemma4MultimodalEmbedder`.
struct Embedder {
    norm: GemmaRmsNorm,
    projection: Linear,
}

impl Embedder {
    /// `embed_vision.embedding_projection` (`[text_dim, D]`, with or without `model.`).
    fn load(
        weights: &Weights,
        c: &Gemma4VisionConfig,
        text_dim: usize,
        dtype: DType,
        device: &Device,
    ) -> Result<Embedder> {
        let prefix = if weights.contains("model.embed_vision.embedding_projection.weight") {
            "model.embed_vision."
        } else {
            "embed_vision."
        };
        let l = Loader::new(weights, prefix, dtype, device);
        Ok(Embedder {
            norm: rms_norm(&l, None, c.dim, c.eps)?,
            projection: l.linear("embedding_projection", c.dim, text_dim, false)?,
        })
    }
}

/// The prompt's token ids from config.json (`Gemma4Config` defaults when absent).
fn special_tokens(cfg: &ConfigObject) -> Result<SpecialTokens> {
    SpecialTokens::from_config(
        cfg,
        ["image_token_id", "boi_token_id", "eoi_token_id"],
        [DEFAULT_IMAGE_TOKEN, DEFAULT_BOI, DEFAULT_EOI],
    )
}

/// A Gemma 4 model's image path: tower, embedder (none for `gemma4_vision`), processor.
pub struct Gemma4Model {
    info: ModelInfo,
    tower: Gemma4VisionTower,
    embedder: Option<Embedder>,
    processor: Gemma4Processor,
    /// The video processor, or why its config is unusable (images still work).
    video: std::result::Result<Gemma4VideoProcessor, String>,
    /// `video_token_id` (none for the bare tower).
    video_token: Option<i64>,
    dtype: DType,
    device: Device,
}

/// Which `model_type` is loaded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gemma4Variant {
    /// `gemma4`: tower under `vision_tower.`, embedder under `embed_vision.` (both with or
    /// without `model.`).
    Full,
    /// `gemma4_vision`: the bare tower (`Gemma4VisionModel.save_pretrained`), soft tokens out.
    Tower,
}

impl Gemma4Model {
    pub fn load(ck: &Checkpoint, variant: Gemma4Variant) -> Result<Gemma4Model> {
        let cfg = ck.config();
        let vision_cfg = match variant {
            Gemma4Variant::Tower => cfg.clone(),
            Gemma4Variant::Full => cfg.object("vision_config")?.ok_or_else(|| {
                Error::bad_config(
                    "config.json: this gemma4 checkpoint has no vision_config (a text-only or \
                     audio-only Gemma 4): it has no image path",
                )
            })?,
        };
        let c = Gemma4VisionConfig::from_config(&vision_cfg)?;
        let (tower_prefix, text_dim) = match variant {
            Gemma4Variant::Tower => ("", c.dim),
            Gemma4Variant::Full => {
                let text = cfg
                    .object("text_config")?
                    .unwrap_or_else(|| ConfigObject::empty("config.json: text_config"));
                (
                    "vision_tower.",
                    text.positive_or("hidden_size", DEFAULT_TEXT_HIDDEN, MAX_DIM)?,
                )
            }
        };
        let tower = Gemma4VisionTower::load(&ck.loader(tower_prefix), &c)?;
        let embedder = match variant {
            Gemma4Variant::Tower => None,
            Gemma4Variant::Full => Some(Embedder::load(
                ck.weights, &c, text_dim, ck.dtype, ck.device,
            )?),
        };
        let processor =
            Gemma4Processor::from_config(&ck.files.preprocessor, c.patch_size, c.pooling)?;
        let (tokens, video_token) = match variant {
            Gemma4Variant::Tower => (SpecialTokens::default(), None),
            Gemma4Variant::Full => (
                special_tokens(cfg)?,
                Some(cfg.i64("video_token_id")?.unwrap_or(DEFAULT_VIDEO_TOKEN)),
            ),
        };
        let video = video_config(ck.files)
            .and_then(|v| Gemma4VideoProcessor::from_config(&v, c.patch_size, c.pooling))
            .map_err(|e| e.message().to_string());
        let max_patches =
            SUPPORTED_SOFT_TOKENS[SUPPORTED_SOFT_TOKENS.len() - 1] * c.pooling * c.pooling;
        let side =
            ((processor.max_soft_tokens as f64).sqrt() as usize * c.pooling * c.patch_size).max(1);
        let width = (4 * c.dim).max(2 * c.intermediate_size);
        let per_image = max_patches.saturating_mul(width).saturating_mul(8);
        let info = ModelInfo {
            family: "gemma4",
            model_type: ck.files.model_type()?,
            output_dim: text_dim,
            vision_dim: c.dim,
            patch_size: c.patch_size,
            image_size: (side, side),
            tokens_per_image: None,
            max_batch: batch_for_budget(per_image, 512 << 20),
            mixed_shape_batches: true,
            tokens,
        };
        Ok(Gemma4Model {
            info,
            tower,
            embedder,
            processor,
            video,
            video_token,
            dtype: ck.dtype,
            device: ck.device.clone(),
        })
    }
}

impl VisionModel for Gemma4Model {
    processor_methods!();

    /// The soft-token budget, Gemma 4's own.
    fn gemma_knobs(&self) -> GemmaKnobs {
        GemmaKnobs {
            pan_and_scan: PanAndScan::RefusesOn,
            refuse_max_soft_tokens: false,
        }
    }

    fn spatial_merge_size(&self) -> usize {
        self.processor.pooling
    }

    video_methods!();

    fn prompt_layout(&self, pixels: &Pixels, video: Option<&VideoMeta>) -> Result<PromptLayout> {
        let t = &self.info.tokens;
        let Some(meta) = video else {
            // Gemma4Processor.replace_image_token: boi, the placeholders, eoi.
            return framed_layout(t, t.image, pixels.n_tokens());
        };
        // Gemma4Processor.replace_video_token: per frame `mm:ss`, a space, boi, the frame's
        // placeholders, eoi; frames joined by a space.
        per_frame_layout(t, pixels, meta, self.video_token, |b, f, s| {
            if f > 0 {
                b.text(" ");
            }
            // Python: int(s // 60), int(s % 60) for a non-negative float.
            let (m, sec) = ((s / 60.0).floor() as u64, (s % 60.0).floor() as u64);
            b.text(&format!("{m:02}:{sec:02} ")).token(t.image_start);
        })
    }

    fn forward(&self, batch: &[&Pixels]) -> Result<Vec<Tensor>> {
        let (p, k) = (self.processor.patch_size, self.processor.pooling);
        let dim = 3 * p * p;
        let mut grids = Vec::with_capacity(batch.len());
        let mut data = Vec::new();
        for px in batch {
            // An image is one frame; a video's frames each hold `shape[0] / frames` padded
            // patch rows, and each runs as an image.
            let [f, r, c] = px.grid;
            let n = r * k * c * k;
            let per_frame = px.shape.first().map_or(0, |&rows| rows / f.max(1));
            if f == 0
                || px.shape.len() != 2
                || px.shape[1] != dim
                || per_frame < n
                || px.shape[0] != per_frame * f
                || px.data.len() != px.shape[0] * dim
            {
                return Err(Error::invalid_argument(format!(
                    "pixels of shape {:?} (token grid {:?}) do not fit this model's [n, {dim}] patch rows",
                    px.shape, px.grid
                )));
            }
            for frame in px.data.chunks_exact(per_frame * dim) {
                grids.push((r * k, c * k));
                data.extend_from_slice(&frame[..n * dim]);
            }
        }
        let n: usize = grids.iter().map(|(r, c)| r * c).sum();
        let x = to_compute(
            Tensor::from_vec(data, (n, dim), &Device::Cpu)?,
            self.dtype,
            &self.device,
        )?;
        let mut y = self.tower.forward(&x, &grids)?;
        if let Some(e) = &self.embedder {
            y = e.projection.forward(&e.norm.forward(&y)?)?;
        }
        let y = y.to_dtype(DType::F32)?;
        // One output per image or video: a video's frames' tokens one after the other.
        let mut start = 0;
        batch
            .iter()
            .map(|px| {
                let [f, r, c] = px.grid;
                let t = f * r * c;
                let out = y.narrow(0, start, t)?;
                start += t;
                Ok(out)
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_defaults_and_refusals() {
        let parse = |s: &str| ConfigObject::parse("config.json: vision_config", s).unwrap();
        let c = Gemma4VisionConfig::from_config(&parse("{}")).unwrap();
        assert_eq!(
            (c.dim, c.heads, c.head_dim, c.pooling, c.patch_size),
            (768, 12, 64, 3, 16)
        );
        assert_eq!(c.rope_theta, 100.0);
        assert_eq!(c.act, Activation::GeluTanh);
        let c = Gemma4VisionConfig::from_config(&parse(
            r#"{"rope_parameters": {"rope_type": "axial", "rope_theta": 50.0}}"#,
        ))
        .unwrap();
        assert_eq!(c.rope_theta, 50.0);
        for (bad, word) in [
            (r#"{"pooling_kernel_size": 1}"#, "pooling_kernel_size"),
            (r#"{"head_dim": 18}"#, "head_dim"),
            (r#"{"num_key_value_heads": 5}"#, "num_key_value_heads"),
            (r#"{"rope_parameters": {"rope_type": "yarn"}}"#, "rope type"),
        ] {
            let e = Gemma4VisionConfig::from_config(&parse(bad)).unwrap_err();
            assert!(e.message().contains(word), "{e}");
        }
    }

    #[test]
    fn rotary_halves_follow_x_then_y() {
        let (cos, _) = rotary_tables(&[(3, 5)], 8, 100.0, &Device::Cpu).unwrap();
        let v = cos.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        let f = inverse_frequencies(4, 100.0);
        let want: Vec<f32> = [3f32, 3., 3., 3., 5., 5., 5., 5.]
            .iter()
            .zip([0, 1, 0, 1, 0, 1, 0, 1])
            .map(|(p, j)| (p * f[j]).cos())
            .collect();
        assert_eq!(v, want);
    }
}
