//! GLM-4.xV vision towers with their projector, as transformers 5.23 computes them:
//! `Glm4vVisionModel` (`model_type` `glm4v`: GLM-4.1V; `glm4v_moe`: GLM-4.5V, whose
//! `Glm4vMoeVisionModel` is the same module; `glm46v`: GLM-4.6V, whose tower is the one its
//! `vision_config.model_type` names), `GlmOcrVisionModel` (`glm_ocr`, or `glm46v` with a
//! `glm_ocr_vision` config) and `Glm5NextVisionModel` (`glm5_next`, with its own image
//! processor: `preprocess::glm5_next`; or `glm46v` with a `glm5_next_vision` config). Only the
//! vision tensors are read (`visual.*` / `model.visual.*`).
//!
//! - 3-D patch embedding: a Conv3d over `temporal x patch x patch` **with bias**, a linear map
//!   over the processor's flattened patch rows (`Glm4vImageProcessor`: Qwen2-VL's layout);
//! - GLM-4.1V only: an RMSNorm after the patch conv (`post_conv_layernorm`), then the learned
//!   position table (`embeddings.position_embedding`, `(image_size / patch)²` rows) resampled
//!   to each image's patch grid with bicubic `grid_sample` (align_corners false, border
//!   padding: [`grid_sample_bicubic`]) at `((i + 0.5) / n) · 2 − 1`, and added;
//! - the 2-D axial rotary embedding of Qwen2-VL at each patch's (row, column);
//! - blocks: RMSNorm, fused-qkv attention limited to each image (GLM-OCR, GLM-5.x Next:
//!   RMSNorm on each head's q and k before the rotation; biases on qkv / proj per
//!   `attention_bias`, GLM-4.1V's proj never has one), RMSNorm, SwiGLU MLP (`hidden_act`,
//!   GLM-4.1V: width `out_hidden_size`, no bias; GLM-OCR, GLM-5.x Next: `intermediate_size`,
//!   bias per `attention_bias`; GLM-5.x Next clamps its inputs: gate at most `swiglu_limit`,
//!   up within `±swiglu_limit`);
//! - `post_layernorm` (RMSNorm), then a `merge x merge` Conv2d with bias over each merge block
//!   (`downsample`: a linear map over the block's `merge²` tokens) to `out_hidden_size`;
//! - the merger (`Glm4vVisionPatchMerger`): Linear, LayerNorm (eps 1e-5), GELU (erf), then
//!   SwiGLU `down(act(gate(x)) · up(x))` of width `intermediate_size` (GLM-OCR:
//!   `out_hidden_size · in_channels`; GLM-5.x Next: `projection_intermediate_size`, inputs
//!   clamped as in the blocks), no biases.
//!
//! Several images of different sizes run in one packed sequence with per-image attention
//! segments. Embeddings come out in merged-grid raster order, one row per `<|image|>`; the
//! prompt is `<|begin_of_image|>`, the placeholders, `<|end_of_image|>`, with Qwen2-VL's
//! M-RoPE ids (`Glm4vModel.get_rope_index` gives an image the same ids; GLM-5.x Next's
//! language model has no rotary embedding: plain 1-D positions).

use candle_core::{DType, Device, Tensor};

use crate::config::{axial_rope_theta, ConfigObject, ModelFiles, ROPE_PARAMETERS_FIRST};
use crate::error::{Error, Result};
use crate::models::activation::Activation;
use crate::models::checkpoint::Checkpoint;
use crate::models::fused::{act_mul, act_mul_clamped};
use crate::models::grid_sample::{cell_centre, grid_sample_bicubic, GridPadding, GridTable};
use crate::models::layers::{segment_attention_with, GatedMlp, LayerNorm, Linear, Loader, RmsNorm};
use crate::models::qwen2_vl::{
    check_channels_and_heads, load_patch_embed, qwen_packed_forward, read_depth_and_heads,
    read_geometry, rotary_qkv,
};
use crate::models::rope::AxialRope;
use crate::models::vit::MAX_DIM;
use crate::models::{processor_methods, GemmaKnobs, ModelInfo, SpecialTokens, VisionModel};
use crate::preprocess::glm5_next::Glm5NextImageProcessor;
use crate::preprocess::qwen2_vl::{PatchGeometry, QwenImageProcessor};
use crate::preprocess::{Limits, Pixels, PreprocessOptions, RgbImage};

/// The merger's LayerNorm is `nn.LayerNorm(dim)`: eps 1e-5.
const MERGER_NORM_EPS: f64 = 1e-5;
/// Largest accepted position table (released: 336 / 14 = 24, 576 rows).
const MAX_POSITIONS: usize = 1 << 20;

/// Which `model_type` (the registry has matched it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GlmVariant {
    /// `glm4v` (GLM-4.1V): `Glm4vConfig`, always the GLM-4.1V tower.
    Glm4v,
    /// `glm4v_moe` (GLM-4.5V): `Glm4vMoeConfig`, the same tower.
    Glm4vMoe,
    /// `glm46v` (GLM-4.6V): the tower `vision_config.model_type` names (`AutoConfig`).
    Glm46v,
    /// `glm_ocr` (GLM-OCR): `GlmOcrConfig`, the GLM-OCR tower.
    GlmOcr,
    /// `glm5_next` (GLM-5.x Next): `Glm5NextConfig`, its own tower and image processor
    /// (`preprocess::glm5_next`).
    Glm5Next,
}

/// Which vision tower.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GlmTower {
    /// `Glm4vVisionModel` / `Glm4vMoeVisionModel`.
    Glm4v,
    /// `GlmOcrVisionModel`: no position table nor post-conv norm, q/k norms, MLP of
    /// `intermediate_size`, biases per `attention_bias`, a wider merger.
    Ocr,
    /// `Glm5NextVisionModel`: GLM-OCR's tower with clamped SwiGLUs (`swiglu_limit`) in the
    /// blocks and the merger, whose width is `projection_intermediate_size`.
    Next,
}

impl GlmVariant {
    /// The tower of this model type: fixed by the config class, except `glm46v`'s, whose
    /// `vision_config` is resolved by its own `model_type` (default `glm4v_vision`).
    fn tower(self, vision: &ConfigObject) -> Result<GlmTower> {
        Ok(match self {
            GlmVariant::Glm4v | GlmVariant::Glm4vMoe => GlmTower::Glm4v,
            GlmVariant::GlmOcr => GlmTower::Ocr,
            GlmVariant::Glm5Next => GlmTower::Next,
            GlmVariant::Glm46v => match vision.string("model_type")?.as_deref() {
                None | Some("glm4v_vision") | Some("glm4v_moe_vision") => GlmTower::Glm4v,
                Some("glm_ocr_vision") => GlmTower::Ocr,
                Some("glm5_next_vision") => GlmTower::Next,
                Some(other) => {
                    return Err(Error::bad_config(format!(
                        "{}: model_type `{other}` is not supported for glm46v (supported: \
                         glm4v_vision, glm4v_moe_vision, glm_ocr_vision, glm5_next_vision)",
                        vision.location()
                    )))
                }
            },
        })
    }

    /// The config class's default token ids: image, image start, image end.
    fn default_tokens(self, tower: GlmTower) -> [i64; 3] {
        match (self, tower) {
            (GlmVariant::GlmOcr, _) => [59280, 59256, 59257],
            (GlmVariant::Glm5Next, _) => [154854, 154830, 154831],
            (GlmVariant::Glm4vMoe, _) => [151363, 151339, 151340],
            _ => [151343, 151339, 151340],
        }
    }
}

/// The vision config (`Glm4vVisionConfig` / `GlmOcrVisionConfig` / `Glm5NextVisionConfig` of
/// transformers 5.23).
#[derive(Debug, Clone, PartialEq)]
pub struct GlmVisionConfig {
    pub tower: GlmTower,
    pub depth: usize,
    /// Vision width (`hidden_size`).
    pub dim: usize,
    pub num_heads: usize,
    /// `intermediate_size`: the merger's SwiGLU width (GLM-4.1V) or the blocks' MLP width
    /// (GLM-OCR, GLM-5.x Next).
    pub intermediate_size: usize,
    /// GLM-5.x Next: the merger's SwiGLU width (`projection_intermediate_size`, default 10240).
    pub projection_size: usize,
    /// GLM-5.x Next: the clamp of every SwiGLU's inputs (`swiglu_limit`, default 10).
    pub swiglu_limit: Option<f64>,
    /// Downsample and merger width = the language model's (`out_hidden_size`).
    pub out_dim: usize,
    pub geometry: PatchGeometry,
    pub act: Activation,
    pub rope_theta: f64,
    pub rms_norm_eps: f64,
    pub attention_bias: bool,
    /// Side of the position table, `image_size / patch_size` (GLM-4.1V only).
    pub position_side: usize,
}

impl GlmVisionConfig {
    /// Reads `vision_config` with the defaults of the `tower`'s config class.
    pub fn from_config(v: &ConfigObject, tower: GlmTower) -> Result<GlmVisionConfig> {
        // (hidden_size, attention_bias, num_heads, out_hidden_size, intermediate_size)
        let defaults = match tower {
            GlmTower::Glm4v => (1536, false, 12, 4096, 13696),
            GlmTower::Ocr | GlmTower::Next => (1024, true, 16, 1536, 4096),
        };
        let (depth, num_heads) = read_depth_and_heads(v, 24, defaults.2)?;
        let dim = v.positive_or("hidden_size", defaults.0, MAX_DIM)?;
        check_channels_and_heads(v, dim, num_heads)?;
        let patch_size = v.positive_or("patch_size", 14, 1024)?;
        let position_side = match tower {
            GlmTower::Glm4v => position_side(v, patch_size)?,
            GlmTower::Ocr | GlmTower::Next => 0,
        };
        let (projection_size, swiglu_limit) = match tower {
            GlmTower::Next => (
                v.positive_or("projection_intermediate_size", 10240, MAX_DIM * 8)?,
                Some(positive_f64(v, "swiglu_limit", 10.0)?),
            ),
            GlmTower::Glm4v | GlmTower::Ocr => (0, None),
        };
        Ok(GlmVisionConfig {
            tower,
            depth,
            dim,
            num_heads,
            intermediate_size: v.positive_or("intermediate_size", defaults.4, MAX_DIM * 8)?,
            projection_size,
            swiglu_limit,
            out_dim: v.positive_or("out_hidden_size", defaults.3, MAX_DIM)?,
            geometry: read_geometry(v, patch_size)?,
            act: Activation::from_name(&v.string_or("hidden_act", "silu")?)?,
            rope_theta: axial_rope_theta(v, ROPE_PARAMETERS_FIRST)?,
            rms_norm_eps: positive_f64(v, "rms_norm_eps", 1e-5)?,
            attention_bias: v.bool_or("attention_bias", defaults.1)?,
            position_side,
        })
    }

    pub fn head_dim(&self) -> usize {
        self.dim / self.num_heads
    }

    /// Width and bias of the blocks' SwiGLU MLP.
    fn mlp(&self) -> (usize, bool) {
        match self.tower {
            GlmTower::Glm4v => (self.out_dim, false),
            GlmTower::Ocr | GlmTower::Next => (self.intermediate_size, self.attention_bias),
        }
    }

    /// The merger's SwiGLU width (`context_dim`): `intermediate_size`, GLM-OCR's
    /// `out_hidden_size * in_channels` (3), or GLM-5.x Next's `projection_intermediate_size`.
    fn merger_width(&self) -> usize {
        match self.tower {
            GlmTower::Glm4v => self.intermediate_size,
            GlmTower::Ocr => self.out_dim * 3,
            GlmTower::Next => self.projection_size,
        }
    }
}

/// GLM-4.1V's position table side, `image_size / patch_size` (`image_size` an integer).
fn position_side(v: &ConfigObject, patch_size: usize) -> Result<usize> {
    let image_size = match v.value("image_size") {
        None => 336,
        Some(serde_json::Value::Number(_)) => v.positive_or("image_size", 336, 1 << 20)?,
        Some(other) => {
            return Err(Error::bad_config(format!(
                "{}: image_size {other} is not supported (the position table is \
                 (image_size // patch_size)² rows: an integer)",
                v.location()
            )))
        }
    };
    let side = image_size / patch_size;
    if side == 0 || side * side > MAX_POSITIONS {
        return Err(Error::bad_config(format!(
            "{}: image_size {image_size} / patch_size {patch_size} gives a position table \
             of side {side}",
            v.location()
        )));
    }
    Ok(side)
}

/// A positive finite number (`default` when absent).
fn positive_f64(v: &ConfigObject, key: &str, default: f64) -> Result<f64> {
    let x = v.f64_or(key, default)?;
    if !(x > 0.0 && x.is_finite()) {
        return Err(Error::bad_config(format!(
            "{}: {key} {x} must be a positive number",
            v.location()
        )));
    }
    Ok(x)
}

struct Block {
    norm1: RmsNorm,
    qkv: Linear,
    /// GLM-OCR's per-head q / k RMSNorms.
    qk_norm: Option<(RmsNorm, RmsNorm)>,
    proj: Linear,
    norm2: RmsNorm,
    mlp: GatedMlp,
}

impl Block {
    fn load(l: &Loader, c: &GlmVisionConfig) -> Result<Block> {
        let (d, eps) = (c.dim, c.rms_norm_eps);
        let (mlp_width, mlp_bias) = c.mlp();
        // GLM-OCR's and GLM-5.x Next's: q / k norms, a proj bias per attention_bias.
        let ocr = c.tower != GlmTower::Glm4v;
        let qk_norm = if ocr {
            Some((
                l.rms_norm("attn.q_norm", c.head_dim(), eps)?,
                l.rms_norm("attn.k_norm", c.head_dim(), eps)?,
            ))
        } else {
            None
        };
        let mlp = l.gated_mlp("mlp", d, mlp_width, mlp_bias, c.act)?;
        Ok(Block {
            norm1: l.rms_norm("norm1", d, eps)?,
            qkv: l.linear("attn.qkv", d, 3 * d, c.attention_bias)?,
            qk_norm,
            proj: l.linear("attn.proj", d, d, ocr && c.attention_bias)?,
            norm2: l.rms_norm("norm2", d, eps)?,
            mlp: match c.swiglu_limit {
                Some(limit) => mlp.clamped(limit),
                None => mlp,
            },
        })
    }
}

/// `Glm4vVisionPatchMerger`: `down(act(gate(h)) · up(h))` with `h = gelu(norm(proj(x)))`
/// (GLM-5.x Next: gate and up clamped first).
struct Merger {
    proj: Linear,
    norm: LayerNorm,
    gate_up: Linear,
    down: Linear,
    width: usize,
    act: Activation,
    limit: Option<f64>,
}

impl Merger {
    fn load(l: &Loader, c: &GlmVisionConfig) -> Result<Merger> {
        let (o, w) = (c.out_dim, c.merger_width());
        Ok(Merger {
            proj: l.linear("proj", o, o, false)?,
            norm: l.layer_norm("post_projection_norm", o, MERGER_NORM_EPS)?,
            gate_up: Linear::concat(&[
                l.linear("gate_proj", o, w, false)?,
                l.linear("up_proj", o, w, false)?,
            ])?,
            down: l.linear("down_proj", w, o, false)?,
            width: w,
            act: c.act,
            limit: c.swiglu_limit,
        })
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let h = self.norm.forward(&self.proj.forward(x)?)?.gelu_erf()?;
        let gu = self.gate_up.forward(&h)?;
        let h = match self.limit {
            Some(limit) => act_mul_clamped(&gu, self.width, self.act, limit)?,
            None => act_mul(&gu, self.width, self.act)?,
        };
        self.down.forward(&h)
    }
}

/// The position table of GLM-4.1V and its post-conv norm.
struct Positions {
    post_conv_norm: RmsNorm,
    /// `embeddings.position_embedding.weight` `[side², dim]` as f32 on the CPU (the reference
    /// resamples it in f32).
    table: Vec<f32>,
    side: usize,
}

impl Positions {
    fn load(l: &Loader, c: &GlmVisionConfig) -> Result<Positions> {
        let side = c.position_side;
        let table = l
            .tensor_as(
                "embeddings.position_embedding.weight",
                &[side * side, c.dim],
                DType::F32,
            )?
            .to_device(&Device::Cpu)?
            .flatten_all()?
            .to_vec1::<f32>()?;
        Ok(Positions {
            post_conv_norm: l.rms_norm("post_conv_layernorm", c.dim, c.rms_norm_eps)?,
            table,
            side,
        })
    }

    /// The resampled table rows `[n, dim]` (f32) of the patches at `positions` of images
    /// whose patch grids are `sizes` (`(rows, cols)` per position).
    fn rows(
        &self,
        positions: &[(usize, usize)],
        sizes: &[(usize, usize)],
        dim: usize,
        device: &Device,
    ) -> Result<Tensor> {
        // Glm4vVisionEmbeddings: ((coord + 0.5) / size) * 2 - 1 in f32, as (x, y).
        let points: Vec<[f32; 2]> = positions
            .iter()
            .zip(sizes)
            .map(|(&(r, c), &(gh, gw))| [cell_centre(c, gw), cell_centre(r, gh)])
            .collect();
        let table = GridTable {
            data: &self.table,
            height: self.side,
            width: self.side,
            channels: dim,
        };
        let rows = grid_sample_bicubic(table, &points, false, GridPadding::Border);
        Ok(Tensor::from_vec(rows, (points.len(), dim), &Device::Cpu)?.to_device(device)?)
    }
}

/// The tower with its downsample and merger.
pub struct GlmVisionTower {
    config: GlmVisionConfig,
    patch_embed: Linear,
    positions: Option<Positions>,
    rope: AxialRope,
    blocks: Vec<Block>,
    post_norm: RmsNorm,
    /// The `merge x merge` Conv2d as a linear map over a block's tokens `(row, col, channel)`.
    downsample: Linear,
    merger: Merger,
}

impl GlmVisionTower {
    /// Loads the tower under `loader` (which points at `visual.`).
    pub fn load(loader: &Loader, config: &GlmVisionConfig) -> Result<GlmVisionTower> {
        let c = config;
        let g = c.geometry;
        let (d, m) = (c.dim, g.merge_size);
        // Checked first: GLM-4.1V's MLPs are out_hidden_size wide too.
        let shape = loader.shape("downsample.weight")?;
        if shape.first() != Some(&c.out_dim) {
            return Err(Error::bad_config(format!(
                "config.json: vision_config.out_hidden_size {} disagrees with {} {shape:?} \
                 (the downsample's output width)",
                c.out_dim,
                loader.name("downsample.weight")
            )));
        }
        let patch_embed = load_patch_embed(loader, d, g, true)?;
        let positions = match c.tower {
            GlmTower::Glm4v => Some(Positions::load(loader, c)?),
            GlmTower::Ocr | GlmTower::Next => None,
        };
        let blocks = (0..c.depth)
            .map(|i| Block::load(&loader.sub(&format!("blocks.{i}")), c))
            .collect::<Result<Vec<_>>>()?;
        let w = loader.tensor("downsample.weight", &[c.out_dim, d, m, m])?;
        let w = w
            .permute((0, 2, 3, 1))?
            .contiguous()?
            .reshape((c.out_dim, m * m * d))?;
        let downsample = Linear::new(w, Some(loader.tensor("downsample.bias", &[c.out_dim])?))?;
        Ok(GlmVisionTower {
            config: c.clone(),
            patch_embed,
            positions,
            rope: AxialRope::new(c.head_dim(), c.rope_theta)?,
            blocks,
            post_norm: loader.rms_norm("post_layernorm", d, c.rms_norm_eps)?,
            downsample,
            merger: Merger::load(&loader.sub("merger"), c)?,
        })
    }

    /// Runs the tower, downsample and merger on packed patch rows `[n_patches, patch_dim]`
    /// of images with patch grids `grids` (`t, h, w` in patches); returns the embeddings
    /// `[n_tokens, out_dim]` of all images and the token count of each.
    pub fn forward(&self, patches: &Tensor, grids: &[[usize; 3]]) -> Result<(Tensor, Vec<usize>)> {
        let c = &self.config;
        let m = c.geometry.merge_size;
        let unit = m * m;
        let device = patches.device();
        // Patch (row, col) of each row in the processor's block order and its image's grid,
        // per frame; attention segments per frame.
        let (mut positions, mut sizes, mut segments, mut tokens) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        let mut base = 0;
        for &[t, gh, gw] in grids {
            let wm = gw / m;
            for _ in 0..t {
                positions.extend((0..gh * gw).map(|i| {
                    let (b, u) = (i / unit, i % unit);
                    ((b / wm) * m + u / m, (b % wm) * m + u % m)
                }));
                sizes.extend(std::iter::repeat_n((gh, gw), gh * gw));
                segments.push((base, gh * gw));
                base += gh * gw;
            }
            tokens.push(t * gh * gw / unit);
        }
        let mut x = self.patch_embed.forward(patches)?;
        if let Some(p) = &self.positions {
            x = p.post_conv_norm.forward(&x)?;
            let pos = p.rows(&positions, &sizes, c.dim, device)?;
            x = (&x + pos.to_dtype(x.dtype())?)?;
        }
        let (cos, sin) = self.rope.cos_sin(&positions, device)?;
        let (cos, sin) = (cos.unsqueeze(1)?, sin.unsqueeze(1)?);
        let n = x.dim(0)?;
        let (heads, hd) = (c.num_heads, c.head_dim());
        let scale = (hd as f64).powf(-0.5);
        for block in &self.blocks {
            crate::models::cancel::check()?;
            let h = block.norm1.forward(&x)?;
            let qkv = block.qkv.forward(&h)?;
            let shape = [n, c.dim, heads, hd];
            let [q, k, v] = rotary_qkv(&qkv, shape, block.qk_norm.as_ref(), (&cos, &sin))?;
            let o = segment_attention_with(&q, &k, &v, &segments, scale, block.qkv.is_bf16())?;
            x = block.proj.forward_add(&o, &x)?;
            x = block.mlp.forward_add(&block.norm2.forward(&x)?, &x)?;
        }
        let h = self
            .post_norm
            .forward(&x)?
            .reshape((n / unit, unit * c.dim))?;
        let h = self.downsample.forward(&h)?;
        Ok((self.merger.forward(&h)?, tokens))
    }
}

/// Refuses a language model whose width is not the projector's output.
fn check_text_width(files: &ModelFiles, out_dim: usize) -> Result<()> {
    let text = files.config.object("text_config")?;
    let width = match &text {
        Some(t) => t.usize_max("hidden_size", MAX_DIM)?,
        None => files.config.usize_max("hidden_size", MAX_DIM)?,
    };
    match width {
        Some(w) if w != out_dim => Err(Error::bad_config(format!(
            "config.json: vision_config.out_hidden_size {out_dim} differs from the language \
             model's hidden_size {w} (the image embeddings replace token embeddings)"
        ))),
        _ => Ok(()),
    }
}

/// The image processor of a model type.
enum GlmProcessor {
    /// `Glm4vImageProcessor` / `Glm46VImageProcessor` (`preprocess::glm4v`).
    Glm4v(QwenImageProcessor),
    /// `Glm5NextImageProcessor`.
    Next(Glm5NextImageProcessor),
}

impl GlmProcessor {
    fn process_with(&self, image: &RgbImage, o: &PreprocessOptions, l: &Limits) -> Result<Pixels> {
        match self {
            GlmProcessor::Glm4v(p) => p.process_with(image, o, l),
            GlmProcessor::Next(p) => p.process_with(image, o, l),
        }
    }

    fn load(pre: &ConfigObject, variant: GlmVariant, geometry: PatchGeometry) -> Result<Self> {
        Ok(match variant {
            GlmVariant::Glm5Next => {
                GlmProcessor::Next(Glm5NextImageProcessor::from_config(pre, geometry)?)
            }
            _ => GlmProcessor::Glm4v(crate::preprocess::glm4v::processor(pre, geometry)?),
        })
    }

    /// The most pixels one frame it produces can have.
    fn frame_pixels(&self, g: PatchGeometry) -> usize {
        match self {
            // The bounds count the frames.
            GlmProcessor::Glm4v(p) => p.max_pixels / g.temporal_patch_size,
            GlmProcessor::Next(p) => p.max_tokens.saturating_mul(g.factor() * g.factor()),
        }
    }
}

/// A GLM-4.xV model: tower, projector and preprocessing.
pub struct GlmVlModel {
    info: ModelInfo,
    tower: GlmVisionTower,
    processor: GlmProcessor,
    dtype: DType,
    device: Device,
}

impl GlmVlModel {
    /// Loads a GLM-4.xV checkpoint of `variant` (vision tensors only).
    pub fn load(ck: &Checkpoint, variant: GlmVariant) -> Result<GlmVlModel> {
        let vision = ck.vision_config()?;
        let tower_kind = variant.tower(&vision)?;
        let config = GlmVisionConfig::from_config(&vision, tower_kind)?;
        check_text_width(ck.files, config.out_dim)?;
        let processor = GlmProcessor::load(&ck.files.preprocessor, variant, config.geometry)?;
        let tower = GlmVisionTower::load(&ck.loader("visual."), &config)?;
        let defaults = variant.default_tokens(tower_kind);
        let keys = [
            "image_token_id",
            "image_start_token_id",
            "image_end_token_id",
        ];
        let tokens = SpecialTokens::from_config(ck.config(), keys, defaults)?;
        let family = match variant {
            GlmVariant::Glm5Next => "glm5_next",
            _ => "glm4v",
        };
        let info = ModelInfo::packed(
            family,
            ck.files.model_type()?,
            [config.out_dim, config.dim, config.mlp().0],
            config.geometry,
            processor.frame_pixels(config.geometry),
            tokens,
        );
        Ok(GlmVlModel {
            info,
            tower,
            processor,
            dtype: ck.dtype,
            device: ck.device.clone(),
        })
    }
}

impl VisionModel for GlmVlModel {
    processor_methods!(@image via process_with);

    fn gemma_knobs(&self) -> GemmaKnobs {
        match &self.processor {
            GlmProcessor::Glm4v(_) => GemmaKnobs::QWEN,
            GlmProcessor::Next(_) => GemmaKnobs::NONE,
        }
    }

    fn size_knobs(&self) -> &'static [&'static str] {
        match &self.processor {
            GlmProcessor::Glm4v(_) => &["min_pixels", "max_pixels", "max_tokens"],
            GlmProcessor::Next(_) => &["max_tokens"],
        }
    }

    fn spatial_merge_size(&self) -> usize {
        self.tower.config.geometry.merge_size
    }

    qwen_packed_forward!();
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> ConfigObject {
        ConfigObject::parse("config.json: vision_config", s).unwrap()
    }

    #[test]
    fn class_defaults_and_towers() {
        let c = GlmVisionConfig::from_config(&parse("{}"), GlmTower::Glm4v).unwrap();
        assert_eq!((c.depth, c.dim, c.num_heads), (24, 1536, 12));
        assert_eq!(
            (c.out_dim, c.intermediate_size, c.position_side),
            (4096, 13696, 24)
        );
        assert_eq!(c.geometry.factor(), 28);
        assert_eq!(
            (c.act, c.rms_norm_eps, c.attention_bias),
            (Activation::Silu, 1e-5, false)
        );
        assert_eq!((c.mlp(), c.merger_width()), ((4096, false), 13696));
        let c = GlmVisionConfig::from_config(&parse("{}"), GlmTower::Ocr).unwrap();
        assert_eq!((c.dim, c.num_heads, c.out_dim), (1024, 16, 1536));
        assert_eq!((c.mlp(), c.merger_width()), ((4096, true), 4608));
        assert_eq!(c.swiglu_limit, None);
        // Glm5NextVisionConfig: GLM-OCR's sizes, merger 10240 wide, clamp 10.
        let c = GlmVisionConfig::from_config(&parse("{}"), GlmTower::Next).unwrap();
        assert_eq!(
            (c.depth, c.dim, c.num_heads, c.out_dim),
            (24, 1024, 16, 1536)
        );
        assert_eq!((c.mlp(), c.merger_width()), ((4096, true), 10240));
        assert_eq!((c.swiglu_limit, c.rope_theta), (Some(10.0), 10000.0));
        let c = GlmVisionConfig::from_config(
            &parse(
                r#"{"num_attention_heads": 4, "num_hidden_layers": 3, "image_size": [336, 336],
                    "swiglu_limit": 7, "rope_parameters": {"rope_type": "axial", "rope_theta": 500}}"#,
            ),
            GlmTower::Next,
        )
        .unwrap();
        assert_eq!((c.num_heads, c.depth), (4, 3));
        assert_eq!((c.swiglu_limit, c.rope_theta), (Some(7.0), 500.0));
        for bad in [r#"{"swiglu_limit": 0}"#, r#"{"swiglu_limit": -1.5}"#] {
            let e = GlmVisionConfig::from_config(&parse(bad), GlmTower::Next).unwrap_err();
            assert!(e.message().contains("swiglu_limit"), "{bad}: {e}");
        }
        let t = |s: &str| GlmVariant::Glm46v.tower(&parse(s));
        assert_eq!(t("{}").unwrap(), GlmTower::Glm4v);
        assert_eq!(
            t(r#"{"model_type": "glm4v_moe_vision"}"#).unwrap(),
            GlmTower::Glm4v
        );
        assert_eq!(
            t(r#"{"model_type": "glm_ocr_vision"}"#).unwrap(),
            GlmTower::Ocr
        );
        assert_eq!(
            t(r#"{"model_type": "glm5_next_vision"}"#).unwrap(),
            GlmTower::Next
        );
        let e = t(r#"{"model_type": "siglip_vision_model"}"#).unwrap_err();
        assert!(e.message().contains("siglip_vision_model"), "{e}");
        // glm4v's config class is fixed: a vision model_type in the file does not change it.
        assert_eq!(
            GlmVariant::Glm4v
                .tower(&parse(r#"{"model_type": "glm_ocr_vision"}"#))
                .unwrap(),
            GlmTower::Glm4v
        );
        for bad in [
            r#"{"image_size": [336, 336]}"#,
            r#"{"image_size": 10, "patch_size": 14}"#,
            r#"{"rms_norm_eps": 0}"#,
        ] {
            assert!(
                GlmVisionConfig::from_config(&parse(bad), GlmTower::Glm4v).is_err(),
                "{bad}"
            );
        }
    }
}
