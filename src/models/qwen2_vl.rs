//! Qwen2-VL (`model_type` `qwen2_vl`) and Qwen2.5-VL (`qwen2_5_vl`) vision towers with their
//! patch mergers, as `Qwen2VisionTransformerPretrainedModel` /
//! `Qwen2_5_VisionTransformerPretrainedModel` in transformers compute them:
//!
//! - 3-D patch embedding (a bias-free Conv3d over `temporal x patch x patch`, a linear map
//!   over the processor's flattened patch rows);
//! - the 2-D axial rotary embedding at each patch's (row, column);
//! - Qwen2-VL blocks: LayerNorm, fused-qkv attention, quick-GELU MLP; Qwen2.5-VL blocks:
//!   RMSNorm, the same attention, a gated SiLU MLP with biases;
//! - attention limited to each image (each frame), and in Qwen2.5-VL to windows of
//!   `window_size` pixels except in the `fullatt_block_indexes` blocks; Qwen2.5-VL runs the
//!   sequence in window order and restores raster order after the merger;
//! - the merger: norm, concatenation of each `merge x merge` block of tokens, Linear, GELU
//!   (erf), Linear to the language model's width.
//!
//! Several images of different sizes run in one packed sequence with per-image attention
//! segments. Embeddings come out in merged-grid raster order, one row per `<|image_pad|>`.
//! Tensor names `visual.*` (Hub and transformers 5.x) or `model.visual.*` (4.5x saves).

use candle_core::{DType, Device, Tensor};

use crate::config::{axial_rope_theta, ConfigObject, ROPE_PARAMETERS_FIRST};
use crate::error::{Error, Result};
use crate::models::activation::Activation;
use crate::models::checkpoint::Checkpoint;
use crate::models::layers::{segment_attention_with, GatedMlp, LayerNorm, Linear, Loader, RmsNorm};
use crate::models::rope::{apply_rotary_f32, AxialRope};
use crate::models::vit::{MAX_DIM, MAX_LAYERS};
use crate::models::{video_methods, ModelInfo, SpecialTokens, VisionModel, VISION_TOKEN_KEYS};
use crate::preprocess::qwen2_vl::{PatchGeometry, QwenImageProcessor};
use crate::preprocess::qwen_video::{
    load_video_processor, QwenVideoProcessor, VideoFlavor, VideoMeta, VideoTime,
};
use crate::preprocess::Pixels;

/// Both normalization layers are built with eps 1e-6 in the reference (not a config key).
const NORM_EPS: f64 = 1e-6;

/// Which tower.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QwenVariant {
    /// Qwen2-VL: LayerNorm, quick-GELU MLP, full attention per image.
    Qwen2,
    /// Qwen2.5-VL: RMSNorm, gated MLP, window attention.
    Qwen25,
}

/// The vision config (`Qwen2VLVisionConfig` / `Qwen2_5_VLVisionConfig`), with the widths
/// named for what they are (the config keys differ between the two: see `from_config`).
#[derive(Debug, Clone, PartialEq)]
pub struct QwenVisionConfig {
    pub variant: QwenVariant,
    pub depth: usize,
    /// Vision width (Qwen2-VL `embed_dim`, Qwen2.5-VL `hidden_size`).
    pub dim: usize,
    pub num_heads: usize,
    /// MLP width (Qwen2-VL `embed_dim * mlp_ratio`, Qwen2.5-VL `intermediate_size`).
    pub intermediate_size: usize,
    /// Merger output = the language model's width (Qwen2-VL `hidden_size`, Qwen2.5-VL
    /// `out_hidden_size`).
    pub out_dim: usize,
    pub geometry: PatchGeometry,
    pub act: Activation,
    pub rope_theta: f64,
    /// Qwen2.5-VL: the attention window side in pixels.
    pub window_size: usize,
    /// Qwen2.5-VL: blocks with full (per-frame) attention.
    pub fullatt_block_indexes: Vec<usize>,
    /// Qwen2.5-VL: `tokens_per_second` (temporal M-RoPE ids per second of video).
    pub tokens_per_second: f64,
}

/// Where the tower is in the checkpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QwenLayout {
    /// The full model (`qwen2_vl`, `qwen2_5_vl`): `vision_config`, tensors under `visual.`,
    /// special tokens in config.json.
    Full,
    /// A bare vision tower saved on its own (`Qwen2VisionTransformerPretrainedModel`,
    /// `qwen2_vl_vision`; `Qwen2_5_VisionTransformerPretrainedModel`, `qwen2_5_vl_vision`):
    /// config.json is the vision config itself, no tensor prefix, no special tokens.
    Bare,
}

/// The widths and activation, whose keys differ between the variants: `(dim, mlp width,
/// merger output, hidden_act)`.
fn read_widths(v: &ConfigObject, variant: QwenVariant) -> Result<(usize, usize, usize, String)> {
    Ok(match variant {
        QwenVariant::Qwen2 => {
            let dim = v.positive_or("embed_dim", 1280, MAX_DIM)?;
            let ratio = v.f64_or("mlp_ratio", 4.0)?;
            // int(embed_dim * mlp_ratio)
            let inter = (dim as f64 * ratio).trunc();
            if !(inter >= 1.0 && inter <= (MAX_DIM * 8) as f64) {
                return Err(Error::bad_config(format!(
                    "{}: mlp_ratio {ratio} gives an MLP width of {inter}",
                    v.location()
                )));
            }
            (
                dim,
                inter as usize,
                v.positive_or("hidden_size", 3584, MAX_DIM)?,
                v.string_or("hidden_act", "quick_gelu")?,
            )
        }
        QwenVariant::Qwen25 => (
            v.positive_or("hidden_size", 3584, MAX_DIM)?,
            v.positive_or("intermediate_size", 3420, MAX_DIM * 8)?,
            v.positive_or("out_hidden_size", 3584, MAX_DIM)?,
            v.string_or("hidden_act", "silu")?,
        ),
    })
}

/// `depth` and `num_heads` of a packed tower's `vision_config` (Qwen-VL, GLM-4.xV), either
/// under its alias, with the config class's defaults.
pub(crate) fn read_depth_and_heads(
    v: &ConfigObject,
    depth: usize,
    num_heads: usize,
) -> Result<(usize, usize)> {
    Ok((
        v.positive_or(
            v.aliased(&["depth", "num_hidden_layers"]),
            depth,
            MAX_LAYERS,
        )?,
        v.positive_or(
            v.aliased(&["num_heads", "num_attention_heads"]),
            num_heads,
            MAX_DIM,
        )?,
    ))
}

/// The patch geometry of a packed tower's `vision_config` with patches of `patch_size`:
/// `spatial_merge_size` and `temporal_patch_size` (class defaults 2).
pub(crate) fn read_geometry(v: &ConfigObject, patch_size: usize) -> Result<PatchGeometry> {
    Ok(PatchGeometry {
        patch_size,
        merge_size: v.positive_or("spatial_merge_size", 2, 64)?,
        temporal_patch_size: v.positive_or("temporal_patch_size", 2, 64)?,
    })
}

/// A packed tower's Conv3d patch embedding as a linear map over a patch row:
/// `patch_embed.proj.weight` `[dim, 3, T, P, P]`, and `patch_embed.proj.bias` when `bias`.
pub(crate) fn load_patch_embed(
    loader: &Loader,
    dim: usize,
    g: PatchGeometry,
    bias: bool,
) -> Result<Linear> {
    let w = loader.tensor(
        "patch_embed.proj.weight",
        &[dim, 3, g.temporal_patch_size, g.patch_size, g.patch_size],
    )?;
    let b = if bias {
        Some(loader.tensor("patch_embed.proj.bias", &[dim])?)
    } else {
        None
    };
    Linear::new(w.reshape((dim, g.patch_dim()))?, b)
}

/// Refuses inputs that are not RGB and a `head_dim` the attention cannot have.
pub(crate) fn check_channels_and_heads(
    v: &ConfigObject,
    dim: usize,
    num_heads: usize,
) -> Result<()> {
    let channels = v.usize_or(v.aliased(&["in_channels", "in_chans"]), 3, MAX_DIM)?;
    if channels != 3 {
        return Err(Error::bad_config(format!(
            "{}: in_channels {channels} is not supported (RGB images have 3)",
            v.location()
        )));
    }
    if dim % num_heads != 0 {
        return Err(Error::bad_config(format!(
            "{}: vision width {dim} is not divisible by num_heads {num_heads}",
            v.location()
        )));
    }
    if let Some(hd) = v.usize_max("head_dim", MAX_DIM)? {
        if hd != dim / num_heads {
            return Err(Error::bad_config(format!(
                "{}: head_dim {hd} differs from width / heads = {}",
                v.location(),
                dim / num_heads
            )));
        }
    }
    Ok(())
}

/// Qwen2.5-VL's window attention: `window_size` and `fullatt_block_indexes` (Qwen2-VL has
/// none: `(0, [])`).
fn read_windows(
    v: &ConfigObject,
    variant: QwenVariant,
    geometry: PatchGeometry,
) -> Result<(usize, Vec<usize>)> {
    if variant == QwenVariant::Qwen2 {
        return Ok((0, Vec::new()));
    }
    let ws = v.positive_or("window_size", 112, 1 << 20)?;
    if ws < geometry.factor() {
        return Err(Error::bad_config(format!(
            "{}: window_size {ws} is smaller than patch_size x spatial_merge_size = {}",
            v.location(),
            geometry.factor()
        )));
    }
    let full = v
        .usize_list("fullatt_block_indexes")?
        .unwrap_or_else(|| vec![7, 15, 23, 31]);
    Ok((ws, full))
}

impl QwenVisionConfig {
    /// Reads `vision_config` with the class defaults of transformers 5.23.
    pub fn from_config(v: &ConfigObject, variant: QwenVariant) -> Result<QwenVisionConfig> {
        let (depth, num_heads) = read_depth_and_heads(v, 32, 16)?;
        let (dim, intermediate_size, out_dim, act) = read_widths(v, variant)?;
        check_channels_and_heads(v, dim, num_heads)?;
        let geometry = read_geometry(v, v.positive_or("patch_size", 14, 1024)?)?;
        let (window_size, fullatt_block_indexes) = read_windows(v, variant, geometry)?;
        Ok(QwenVisionConfig {
            variant,
            depth,
            dim,
            num_heads,
            intermediate_size,
            out_dim,
            geometry,
            act: Activation::from_name(&act)?,
            rope_theta: axial_rope_theta(v, ROPE_PARAMETERS_FIRST)?,
            window_size,
            fullatt_block_indexes,
            tokens_per_second: match variant {
                QwenVariant::Qwen2 => 1.0,
                QwenVariant::Qwen25 => v.f64_or("tokens_per_second", 4.0)?,
            },
        })
    }

    pub fn head_dim(&self) -> usize {
        self.dim / self.num_heads
    }

    /// Qwen2.5-VL: the window side in merged tokens (`window_size / merge / patch`).
    pub fn window_tokens(&self) -> usize {
        self.window_size / self.geometry.merge_size / self.geometry.patch_size
    }
}

enum Norm {
    Layer(LayerNorm),
    Rms(RmsNorm),
}

impl Norm {
    fn load(l: &Loader, name: &str, dim: usize, variant: QwenVariant) -> Result<Norm> {
        Ok(match variant {
            QwenVariant::Qwen2 => Norm::Layer(l.layer_norm(name, dim, NORM_EPS)?),
            QwenVariant::Qwen25 => Norm::Rms(l.rms_norm(name, dim, NORM_EPS)?),
        })
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        match self {
            Norm::Layer(n) => n.forward(x),
            Norm::Rms(n) => n.forward(x),
        }
    }
}

enum Mlp {
    /// `fc2(act(fc1(x)))`.
    Plain {
        fc1: Linear,
        fc2: Linear,
        act: Activation,
    },
    Gated(GatedMlp),
}

impl Mlp {
    /// `residual + mlp(x)`.
    fn forward_add(&self, x: &Tensor, residual: &Tensor) -> Result<Tensor> {
        match self {
            Mlp::Plain { fc1, fc2, act } => fc2.forward_add(&fc1.forward_act(x, *act)?, residual),
            Mlp::Gated(m) => m.forward_add(x, residual),
        }
    }
}

struct Block {
    norm1: Norm,
    qkv: Linear,
    proj: Linear,
    norm2: Norm,
    mlp: Mlp,
    /// Full (per-frame) attention rather than windows (always true for Qwen2-VL).
    full_attention: bool,
}

/// Everything about a packed batch that does not depend on the weights.
struct Packing {
    /// Patch rows in the order the blocks see them (global indices into the packed input);
    /// `None` when that is the input order.
    order: Option<Vec<u32>>,
    /// Patch `(row, col)` of each row of the sequence, in sequence order.
    positions: Vec<(usize, usize)>,
    /// Per-frame attention segments `(start, len)`.
    full: Vec<(usize, usize)>,
    /// Window segments (Qwen2.5-VL; empty for Qwen2-VL).
    windows: Vec<(usize, usize)>,
    /// Merged rows back to raster order (inverse of the window order), if reordered.
    restore: Option<Vec<u32>>,
    /// Merged tokens per image.
    tokens: Vec<usize>,
}

/// The tower with its merger.
pub struct QwenVisionTower {
    config: QwenVisionConfig,
    patch_embed: Linear,
    rope: AxialRope,
    blocks: Vec<Block>,
    merger_norm: Norm,
    merger_fc1: Linear,
    merger_fc2: Linear,
}

impl QwenVisionTower {
    /// Loads `patch_embed.`, `blocks.{i}.`, `merger.` under `loader` (which points at
    /// `visual.`).
    pub fn load(loader: &Loader, config: &QwenVisionConfig) -> Result<QwenVisionTower> {
        let c = config;
        let g = c.geometry;
        let d = c.dim;
        let patch_embed = load_patch_embed(loader, d, g, false)?;
        if let Some(&i) = c.fullatt_block_indexes.iter().find(|&&i| i >= c.depth) {
            crate::log::warn(&format!(
                "config.json: fullatt_block_indexes names block {i} of a {}-block tower; ignored",
                c.depth
            ));
        }
        let blocks = (0..c.depth)
            .map(|i| {
                let l = loader.sub(&format!("blocks.{i}"));
                let mlp = match c.variant {
                    QwenVariant::Qwen2 => Mlp::Plain {
                        fc1: l.linear("mlp.fc1", d, c.intermediate_size, true)?,
                        fc2: l.linear("mlp.fc2", c.intermediate_size, d, true)?,
                        act: c.act,
                    },
                    QwenVariant::Qwen25 => {
                        Mlp::Gated(l.gated_mlp("mlp", d, c.intermediate_size, true, c.act)?)
                    }
                };
                Ok(Block {
                    norm1: Norm::load(&l, "norm1", d, c.variant)?,
                    qkv: l.linear("attn.qkv", d, 3 * d, true)?,
                    proj: l.linear("attn.proj", d, d, true)?,
                    norm2: Norm::load(&l, "norm2", d, c.variant)?,
                    mlp,
                    full_attention: c.variant == QwenVariant::Qwen2
                        || c.fullatt_block_indexes.contains(&i),
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let merged = d * g.merge_size * g.merge_size;
        let m = loader.sub("merger");
        Ok(QwenVisionTower {
            config: c.clone(),
            patch_embed,
            rope: AxialRope::new(c.head_dim(), c.rope_theta)?,
            blocks,
            merger_norm: Norm::load(&m, "ln_q", d, c.variant)?,
            merger_fc1: m.linear("mlp.0", merged, merged, true)?,
            merger_fc2: m.linear("mlp.2", merged, c.out_dim, true)?,
        })
    }

    #[allow(dead_code, reason = "unused since crate-private (#19)")]
    pub fn config(&self) -> &QwenVisionConfig {
        &self.config
    }

    /// Lays out a batch of images with patch grids `(t, gh, gw)` (in patches) as one sequence.
    fn pack(&self, grids: &[[usize; 3]]) -> Packing {
        let m = self.config.geometry.merge_size;
        let unit = m * m;
        let windowed = self.config.variant == QwenVariant::Qwen25;
        let ws = self.config.window_tokens().max(1);
        let mut p = Packing {
            order: windowed.then(Vec::new),
            positions: Vec::new(),
            full: Vec::new(),
            windows: Vec::new(),
            restore: windowed.then(Vec::new),
            tokens: Vec::new(),
        };
        let mut patch_base = 0;
        let mut merged_base = 0;
        let mut window_order = Vec::new();
        for &[t, gh, gw] in grids {
            let (hm, wm) = (gh / m, gw / m);
            // Patch (row, col) of each patch row, in the processor's block order.
            let frame_positions: Vec<(usize, usize)> = (0..hm * wm * unit)
                .map(|i| {
                    let (b, u) = (i / unit, i % unit);
                    ((b / wm) * m + u / m, (b % wm) * m + u % m)
                })
                .collect();
            for ti in 0..t {
                p.full.push((patch_base + ti * gh * gw, gh * gw));
            }
            if windowed {
                // Windows of ws x ws merged tokens in raster order per frame; inside each
                // window the merged tokens in raster order (HF's get_vision_window_index).
                window_order.clear();
                for ti in 0..t {
                    for wr in 0..hm.div_ceil(ws) {
                        for wc in 0..wm.div_ceil(ws) {
                            let start = window_order.len();
                            for i in wr * ws..((wr + 1) * ws).min(hm) {
                                for j in wc * ws..((wc + 1) * ws).min(wm) {
                                    window_order.push(ti * hm * wm + i * wm + j);
                                }
                            }
                            let n = window_order.len() - start;
                            p.windows.push((patch_base + start * unit, n * unit));
                        }
                    }
                }
                let order = p.order.as_mut().expect("windowed");
                let restore = p.restore.as_mut().expect("windowed");
                let mut inverse = vec![0u32; window_order.len()];
                for (k, &id) in window_order.iter().enumerate() {
                    inverse[id] = (merged_base + k) as u32;
                    for u in 0..unit {
                        order.push((patch_base + id * unit + u) as u32);
                        p.positions
                            .push(frame_positions[(id % (hm * wm)) * unit + u]);
                    }
                }
                restore.extend(inverse);
            } else {
                for _ in 0..t {
                    p.positions.extend_from_slice(&frame_positions);
                }
            }
            patch_base += t * gh * gw;
            merged_base += t * hm * wm;
            p.tokens.push(t * hm * wm);
        }
        p
    }

    /// Runs the tower and merger on packed patch rows `[n_patches, patch_dim]` of images with
    /// patch grids `grids`; returns the merged embeddings `[n_tokens, out_dim]` of all images
    /// in raster order, and the token count of each image.
    pub fn forward(&self, patches: &Tensor, grids: &[[usize; 3]]) -> Result<(Tensor, Vec<usize>)> {
        let c = &self.config;
        let packing = self.pack(grids);
        let device = patches.device();
        let index = |v: &[u32]| Tensor::from_slice(v, v.len(), device);
        let patches = match &packing.order {
            Some(order) => patches.index_select(&index(order)?, 0)?,
            None => patches.clone(),
        };
        let mut x = self.patch_embed.forward(&patches)?;
        let (cos, sin) = self.rope.cos_sin(&packing.positions, device)?;
        let (cos, sin) = (cos.unsqueeze(1)?, sin.unsqueeze(1)?);
        let n = x.dim(0)?;
        let (heads, hd) = (c.num_heads, c.head_dim());
        let scale = (hd as f64).powf(-0.5);
        for block in &self.blocks {
            crate::models::cancel::check()?;
            let h = block.norm1.forward(&x)?;
            let qkv = block.qkv.forward(&h)?;
            let [q, k, v] = rotary_qkv(&qkv, [n, c.dim, heads, hd], None, (&cos, &sin))?;
            let segments = if block.full_attention {
                &packing.full
            } else {
                &packing.windows
            };
            let o = segment_attention_with(&q, &k, &v, segments, scale, block.qkv.is_bf16())?;
            x = block.proj.forward_add(&o, &x)?;
            x = block.mlp.forward_add(&block.norm2.forward(&x)?, &x)?;
        }
        let unit = c.geometry.merge_size * c.geometry.merge_size;
        let h = self
            .merger_norm
            .forward(&x)?
            .reshape((n / unit, c.dim * unit))?;
        let h = self.merger_fc1.forward_act(&h, Activation::GeluErf)?;
        let out = self.merger_fc2.forward(&h)?;
        let out = match &packing.restore {
            Some(restore) => out.index_select(&index(restore)?, 0)?,
            None => out,
        };
        Ok((out, packing.tokens))
    }
}

/// The attention inputs of a packed tower's block (Qwen2-VL to Qwen3.5, GLM-4.xV): the fused
/// projection `qkv` (`[n, 3 · dim]`) split into q, k and v of `heads` heads of `head_dim`
/// (`shape` is `[n, dim, heads, head_dim]`), q and k normed per head by `qk_norm` when given
/// (GLM-OCR) and rotated by `(cos, sin)`; each `[heads, n, head_dim]`, contiguous.
pub(crate) fn rotary_qkv(
    qkv: &Tensor,
    [n, dim, heads, head_dim]: [usize; 4],
    qk_norm: Option<&(RmsNorm, RmsNorm)>,
    (cos, sin): (&Tensor, &Tensor),
) -> Result<[Tensor; 3]> {
    let split = |i: usize| -> Result<Tensor> {
        Ok(qkv.narrow(1, i * dim, dim)?.reshape((n, heads, head_dim))?)
    };
    let (mut q, mut k) = (split(0)?, split(1)?);
    if let Some((qn, kn)) = qk_norm {
        q = qn.forward(&q)?;
        k = kn.forward(&k)?;
    }
    let q = apply_rotary_f32(&q, cos, sin)?;
    let k = apply_rotary_f32(&k, cos, sin)?;
    let heads_first = |t: Tensor| -> Result<Tensor> { Ok(t.transpose(0, 1)?.contiguous()?) };
    Ok([heads_first(q)?, heads_first(k)?, heads_first(split(2)?)?])
}

/// A Qwen2-VL or Qwen2.5-VL model: tower, merger and preprocessing.
pub struct QwenVlModel {
    info: ModelInfo,
    tower: QwenVisionTower,
    processor: QwenImageProcessor,
    /// The video processor, or why its config is unusable (images still work).
    video: std::result::Result<QwenVideoProcessor, String>,
    /// `video_token_id` of config.json (none for a bare tower).
    video_token: Option<i64>,
    dtype: DType,
    device: Device,
}

impl QwenVlModel {
    /// Loads a `variant` checkpoint (vision tensors only) in `layout`: the full model, or a
    /// bare vision tower saved on its own, whose output is the same merger output (its
    /// `pooler_output`).
    pub fn load(ck: &Checkpoint, variant: QwenVariant, layout: QwenLayout) -> Result<QwenVlModel> {
        let family = match variant {
            QwenVariant::Qwen2 => "qwen2_vl",
            QwenVariant::Qwen25 => "qwen2_5_vl",
        };
        let bare = layout == QwenLayout::Bare;
        let vision = if bare {
            ck.config().clone()
        } else {
            ck.vision_config()?
        };
        let config = QwenVisionConfig::from_config(&vision, variant)?;
        let prefix = if bare { "" } else { "visual." };
        let tower = QwenVisionTower::load(&ck.loader(prefix), &config)?;
        let processor = QwenImageProcessor::from_config(&ck.files.preprocessor, config.geometry)?;
        let video = load_video_processor(ck.files, VideoFlavor::Qwen2, config.geometry);
        let video_token = if bare {
            None
        } else {
            Some(ck.config().i64("video_token_id")?.unwrap_or(151656))
        };
        // The special tokens belong to the language model: a bare tower has none.
        let tokens = if bare {
            SpecialTokens::default()
        } else {
            SpecialTokens::from_config(ck.config(), VISION_TOKEN_KEYS, [151655, 151652, 151653])?
        };
        let info = ModelInfo::packed(
            family,
            ck.files.model_type()?,
            [config.out_dim, config.dim, config.intermediate_size],
            config.geometry,
            processor.max_pixels,
            tokens,
        );
        Ok(QwenVlModel {
            info,
            tower,
            processor,
            video,
            video_token,
            dtype: ck.dtype,
            device: ck.device.clone(),
        })
    }

    #[allow(dead_code, reason = "unused since crate-private (#19)")]
    pub fn tower(&self) -> &QwenVisionTower {
        &self.tower
    }

    #[allow(dead_code, reason = "unused since crate-private (#19)")]
    pub fn processor(&self) -> &QwenImageProcessor {
        &self.processor
    }
}

/// The [`VisionModel`] methods the Qwen-VL models share (Qwen2-VL, Qwen2.5-VL here; Qwen3-VL,
/// Qwen3.5 in `qwen3_vl.rs`): a model with `info`, a `processor` ([`QwenImageProcessor`]) and
/// a `tower` whose `config.geometry` is its [`PatchGeometry`].
macro_rules! qwen_image_methods {
    () => {
        crate::models::processor_methods!(
            via process_with;
            "min_pixels", "max_pixels", "max_tokens"
        );

        fn gemma_knobs(&self) -> crate::models::GemmaKnobs {
            crate::models::GemmaKnobs::QWEN
        }

        fn spatial_merge_size(&self) -> usize {
            self.tower.config.geometry.merge_size
        }
    };
}
pub(crate) use qwen_image_methods;

/// The [`VisionModel::forward`] of the models whose `tower.forward(patches, grids)` returns
/// every image's rows in one tensor and each image's token count (Qwen2-VL, Qwen2.5-VL,
/// GLM-4.xV, PaddleOCR-VL): the patch rows packed per `tower.config.geometry`, the rows split
/// per image in f32. The model has `dtype` and `device`.
macro_rules! qwen_packed_forward {
    () => {
        fn forward(&self, batch: &[&Pixels]) -> Result<Vec<Tensor>> {
            let g = self.tower.config.geometry;
            let (x, grids) = crate::models::pixels::pack_patch_rows(
                batch,
                g.merge_size,
                g.patch_dim(),
                self.dtype,
                &self.device,
            )?;
            let (out, tokens) = self.tower.forward(&x, &grids)?;
            crate::models::pixels::split_rows(&out.to_dtype(DType::F32)?, &tokens)
        }
    };
}
pub(crate) use qwen_packed_forward;

impl VisionModel for QwenVlModel {
    qwen_image_methods!();

    video_methods!(|model: &QwenVlModel, m: &VideoMeta| {
        let c = &model.tower.config;
        match c.variant {
            QwenVariant::Qwen2 => VideoTime::Index,
            // second_per_grid_ts is a float32 tensor; tokens_per_second * it stays f32.
            QwenVariant::Qwen25 => {
                VideoTime::Scaled(c.tokens_per_second as f32 * m.second_per_grid as f32)
            }
        }
    });

    qwen_packed_forward!();
}
