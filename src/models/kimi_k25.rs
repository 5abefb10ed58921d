//! Kimi K2.5 (`model_type` `kimi_k25`): `modeling_kimi_k25.py`'s image path,
//! `Kimi_K25Model.get_image_features`. Only the vision tower and the projector are read; the
//! language model (DeepSeek-V3, a trillion parameters in the released checkpoint) is never
//! opened beyond the shard headers that hold vision tensors.
//!
//! 1. MoonViT (`Kimi_K25VisionModel`): the `patch x patch` Conv2d with bias as a linear map over
//!    the processor's `(channel, y, x)` patch rows; the learned `pos_emb_height x
//!    pos_emb_width` table resized to the image's patch grid with `F.interpolate(mode=
//!    "bicubic", align_corners=False)` in f32 ([`interpolate_bicubic`]) and added; the time
//!    table's row 0 for images, which is zero (`get_vision_frame_index`), adds nothing;
//! 2. blocks: LayerNorm (eps 1e-5), attention within each image with biased q / k / v and
//!    2-D axial RoPE (one set of `head_dim / 4` frequencies, angles laid out `[col·f0, row·f0,
//!    col·f1, …]` twice, rotate-half), output `proj`; LayerNorm, `fc2(act(fc1(x)))` with
//!    `hidden_act` (default `gelu_pytorch_tanh`); then `final_layernorm`;
//! 3. the 2x2 merge (`merge_kernel_size`) with temporal pooling (a mean over one frame for an
//!    image): each merged token the `kh x kw` block of patch rows, `(row, column, channel)`;
//! 4. `mm_projector`: LayerNorm per patch (`projection_layer_norm_eps`), the block's rows
//!    concatenated, `in_proj`, GELU (erf), `out_proj` to the language model's width.
//!
//! Checkpoint layouts, both written by transformers 5.23: `save_pretrained`'s default, the
//! original (Hub) one (`vision_tower.encoder.blocks.{i}.{norm0, norm1, wqkv, wo, mlp.fc0,
//! mlp.fc1}` with q and k rows in MoonViT's interleaved rotary order, undone here as
//! `PermuteForRope` does; `vision_tower.patch_embed.pos_emb.weight`; `mm_projector.proj.{0,
//! 2}`), and its internal one (`save_original_format=False`: `vision_tower.layers.{i}.{norm1,
//! norm2, attn.{q,k,v}_proj, attn.proj, mlp.fc1, mlp.fc2}`, `mm_projector.{in,out}_proj`).
//!
//! Preprocessing: [`crate::preprocess::kimi_k25`]. Prompt: `<|media_begin|>`
//! (`vision_start_token_id`), the text `image`, `<|media_content|>`, one `<|media_pad|>`
//! (`image_token_id`) per embedding row, `<|media_end|>` (`vision_end_token_id`): the layout
//! `Kimi_K25Processor` writes around a video chunk (`<|media_begin|>video<|media_content|>`),
//! for an image.

use candle_core::{DType, Device, Tensor};

use crate::config::{axial_rope_theta, ConfigObject, ModelFiles, ROPE_PARAMETERS_FIRST};
use crate::error::{Error, Result};
use crate::models::activation::Activation;
use crate::models::grid_sample::{interpolate_bicubic, GridTable};
use crate::models::layers::{rope_rows_to_half, Attention, LayerNorm, Linear, Loader};
use crate::models::pixels::{pack_single_frames, split_rows, to_compute};
use crate::models::projector::merge_blocks;
use crate::models::rope::{inverse_frequencies, Rotary};
use crate::models::vit::{MAX_DIM, MAX_LAYERS};
use crate::models::{
    batch_for_budget, processor_methods, ModelInfo, PromptBuilder, PromptSegment, SpecialTokens,
    VisionModel,
};
use crate::preprocess::kimi_k25::KimiK25Processor;
use crate::preprocess::limits::try_with_capacity;
use crate::preprocess::qwen_video::VideoMeta;
use crate::preprocess::Pixels;
use crate::tokenizer::AddedTokens;
use crate::weights::Weights;

/// MoonViT's block and final norms are `nn.LayerNorm(hidden, eps=1e-5)`.
const NORM_EPS: f64 = 1e-5;
/// Largest accepted position table side.
const MAX_TABLE_SIDE: usize = 1 << 10;
/// `Kimi_K25Config`'s token ids: `<|media_pad|>`, `<|media_begin|>`, `<|media_end|>`.
const DEFAULT_TOKENS: [i64; 3] = [163605, 163602, 163604];
const MEDIA_CONTENT: &str = "<|media_content|>";
/// DeepSeek-V3's `hidden_size` default (a `text_config` without it).
const DEFAULT_TEXT_WIDTH: usize = 7168;

/// `Kimi_K25VisionConfig`, with its class defaults.
#[derive(Debug, Clone, PartialEq)]
pub struct KimiVisionConfig {
    pub patch_size: usize,
    /// Side of the learned position table (`pos_emb_height` = `pos_emb_width`).
    pub table_side: usize,
    pub num_heads: usize,
    pub depth: usize,
    pub dim: usize,
    pub intermediate_size: usize,
    pub act: Activation,
    /// `merge_kernel_size` (rows, columns).
    pub merge: (usize, usize),
    pub rope_theta: f64,
}

impl KimiVisionConfig {
    pub fn from_config(v: &ConfigObject) -> Result<KimiVisionConfig> {
        let loc = v.location();
        let (h, w) = (
            v.positive_or("pos_emb_height", 64, MAX_TABLE_SIDE)?,
            v.positive_or("pos_emb_width", 64, MAX_TABLE_SIDE)?,
        );
        if h != w {
            return Err(Error::bad_config(format!(
                "{loc}: pos_emb_height {h} differs from pos_emb_width {w}: the reference \
                 resamples the table as a square of side pos_emb_height"
            )));
        }
        let c = KimiVisionConfig {
            patch_size: v.positive_or("patch_size", 14, 1024)?,
            table_side: h,
            num_heads: v.positive_or("num_attention_heads", 16, MAX_DIM)?,
            depth: v.positive_or("num_hidden_layers", 27, MAX_LAYERS)?,
            dim: v.positive_or("hidden_size", 1152, MAX_DIM)?,
            intermediate_size: v.positive_or("intermediate_size", 4304, MAX_DIM * 8)?,
            act: Activation::from_name(&v.string_or("hidden_act", "gelu_pytorch_tanh")?)
                .map_err(|e| e.context(format!("{loc}: hidden_act")))?,
            merge: read_merge_kernel(v)?,
            rope_theta: read_rope_theta(v)?,
        };
        if c.dim % c.num_heads != 0 || c.head_dim() % 4 != 0 {
            return Err(Error::bad_config(format!(
                "{loc}: hidden_size {} / num_attention_heads {} must give a head dimension \
                 divisible by 4 (2-D rotary embedding)",
                c.dim, c.num_heads
            )));
        }
        Ok(c)
    }

    pub fn head_dim(&self) -> usize {
        self.dim / self.num_heads
    }
}

/// `merge_kernel_size`: two equal positive integers (the processor pads to one `merge_size`).
fn read_merge_kernel(v: &ConfigObject) -> Result<(usize, usize)> {
    let bad =
        |what: String| Error::bad_config(format!("{}: merge_kernel_size {what}", v.location()));
    let Some(value) = v.value("merge_kernel_size") else {
        return Ok((2, 2));
    };
    let sides: Vec<usize> = match value.as_array() {
        Some(items) if items.len() == 2 => items
            .iter()
            .map(|i| i.as_u64().filter(|&n| n > 0 && n <= 64).map(|n| n as usize))
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| bad(format!("{value} is not two integers in 1..=64")))?,
        _ => return Err(bad(format!("{value} is not a list of two integers"))),
    };
    if sides[0] != sides[1] {
        return Err(bad(format!(
            "{value} is not square (the processor pads to one merge_size)"
        )));
    }
    Ok((sides[0], sides[1]))
}

/// The rotary base; `Kimi_K25VisionRotaryEmbedding` accepts only rope type `axial` (the class
/// default when `rope_parameters` names none).
fn read_rope_theta(v: &ConfigObject) -> Result<f64> {
    if let Some(params) = v.object("rope_parameters")? {
        match params
            .string(params.aliased(&["rope_type", "type"]))?
            .as_deref()
        {
            None | Some("axial") => {}
            Some(other) => {
                return Err(Error::bad_config(format!(
                    "{}: rope_type `{other}` is not supported (Kimi_K25VisionRotaryEmbedding \
                     supports only axial)",
                    params.location()
                )))
            }
        }
    }
    axial_rope_theta(v, ROPE_PARAMETERS_FIRST)
}

/// Which of the two checkpoint layouts (see the module doc).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Layout {
    Original,
    Internal,
}

impl Layout {
    fn detect(weights: &Weights) -> Layout {
        if weights.contains("vision_tower.encoder.blocks.0.wqkv.weight") {
            Layout::Original
        } else {
            Layout::Internal
        }
    }
}

struct Block {
    norm1: LayerNorm,
    attn: Attention,
    norm2: LayerNorm,
    fc1: Linear,
    fc2: Linear,
}

impl Block {
    fn load(l: &Loader, c: &KimiVisionConfig, layout: Layout) -> Result<Block> {
        let (d, i) = (c.dim, c.intermediate_size);
        let names = match layout {
            Layout::Original => ["norm0", "norm1", "wo", "mlp.fc0", "mlp.fc1"],
            Layout::Internal => ["norm1", "norm2", "attn.proj", "mlp.fc1", "mlp.fc2"],
        };
        let qkv = match layout {
            Layout::Original => fused_qkv(l, "wqkv", d, c.num_heads)?,
            Layout::Internal => {
                let a = l.sub("attn");
                Linear::concat(&[
                    a.linear("q_proj", d, d, true)?,
                    a.linear("k_proj", d, d, true)?,
                    a.linear("v_proj", d, d, true)?,
                ])?
            }
        };
        Ok(Block {
            norm1: l.layer_norm(names[0], d, NORM_EPS)?,
            attn: Attention::from_parts(qkv, l.linear(names[2], d, d, true)?, c.num_heads)?,
            norm2: l.layer_norm(names[1], d, NORM_EPS)?,
            fc1: l.linear(names[3], d, i, true)?,
            fc2: l.linear(names[4], i, d, true)?,
        })
    }
}

/// MoonViT's fused `wqkv` (`weight` `[3 · dim, dim]`, `bias`), q and k rows in the
/// interleaved rotary order, as transformers' converter loads it: chunked into q, k, v, q and
/// k permuted to the rotate-half order (`PermuteForRope`), fused again.
fn fused_qkv(l: &Loader, name: &str, dim: usize, heads: usize) -> Result<Linear> {
    let w = l.weight_for_linear(name, 3 * dim, dim)?;
    let b = l.sub(name).tensor("bias", &[3 * dim])?;
    let fix = |t: &Tensor| -> Result<Tensor> {
        let part = |i: usize| t.narrow(0, i * dim, dim);
        Ok(Tensor::cat(
            &[
                rope_rows_to_half(&part(0)?, heads)?,
                rope_rows_to_half(&part(1)?, heads)?,
                part(2)?,
            ],
            0,
        )?)
    };
    l.linear_from(fix(&w)?, Some(fix(&b)?))
}

/// `mm_projector`: LayerNorm per patch, then `out(gelu(in(block rows)))`.
struct Projector {
    pre_norm: LayerNorm,
    in_proj: Linear,
    out_proj: Linear,
}

/// The vision tower with its projector.
pub struct KimiVisionTower {
    config: KimiVisionConfig,
    patch_embed: Linear,
    /// The position table `[side, side, dim]` in f32 on the host (resampled in f32).
    table: Vec<f32>,
    blocks: Vec<Block>,
    final_norm: LayerNorm,
    projector: Projector,
}

impl KimiVisionTower {
    /// Loads the tower and projector (canonical names `vision_tower.*`, `mm_projector.*`);
    /// `proj_eps` is `projection_layer_norm_eps`, `out_dim` the language model's width.
    fn load(
        root: &Loader,
        c: &KimiVisionConfig,
        layout: Layout,
        proj_eps: f64,
        out_dim: usize,
    ) -> Result<KimiVisionTower> {
        let (d, p, s) = (c.dim, c.patch_size, c.table_side);
        let vt = root.sub("vision_tower");
        let (patch, table, blocks, final_norm) = match layout {
            // transformers 5.23 writes the patch conv under `encoder.`; the Hub files beside it.
            Layout::Original if vt.contains("encoder.patch_embed.proj.weight") => (
                "encoder.patch_embed.proj",
                "patch_embed.pos_emb.weight",
                "encoder.blocks",
                "encoder.final_layernorm",
            ),
            Layout::Original => (
                "patch_embed.proj",
                "patch_embed.pos_emb.weight",
                "encoder.blocks",
                "encoder.final_layernorm",
            ),
            Layout::Internal => (
                "patch_embed.proj",
                "patch_embed.pos_emb.position_embeddings",
                "layers",
                "final_layernorm",
            ),
        };
        let table = vt
            .tensor_as(table, &[s, s, d], DType::F32)?
            .to_device(&Device::Cpu)?
            .flatten_all()?
            .to_vec1::<f32>()?;
        let blocks = (0..c.depth)
            .map(|i| Block::load(&vt.sub(&format!("{blocks}.{i}")), c, layout))
            .collect::<Result<Vec<_>>>()?;
        let mm = root.sub("mm_projector");
        let wide = d * c.merge.0 * c.merge.1;
        let (in_name, out_name) = match layout {
            Layout::Original => ("proj.0", "proj.2"),
            Layout::Internal => ("in_proj", "out_proj"),
        };
        Ok(KimiVisionTower {
            config: c.clone(),
            patch_embed: vt.patch_embedding(patch, d, p, true)?,
            table,
            blocks,
            final_norm: vt.layer_norm(final_norm, d, NORM_EPS)?,
            projector: Projector {
                pre_norm: mm.layer_norm("pre_norm", d, proj_eps)?,
                in_proj: mm.linear(in_name, wide, wide, true)?,
                out_proj: mm.linear(out_name, wide, out_dim, true)?,
            },
        })
    }

    /// The resampled position table rows of the images with patch grids `grids` (`(rows,
    /// cols)`, raster order, back to back): `[n, dim]` f32 on the host.
    fn positions(&self, grids: &[(usize, usize)]) -> Result<Tensor> {
        let (d, s) = (self.config.dim, self.config.table_side);
        let n: usize = grids.iter().map(|(r, c)| r * c).sum();
        let mut pos = try_with_capacity(n * d, "the position embeddings")?;
        let table = GridTable {
            data: &self.table,
            height: s,
            width: s,
            channels: d,
        };
        for &(rows, cols) in grids {
            pos.extend_from_slice(&interpolate_bicubic(table, rows, cols));
        }
        Ok(Tensor::from_vec(pos, (n, d), &Device::Cpu)?)
    }

    /// The rotary tables of the patches of `grids` (raster order): angles `[col·f_k,
    /// row·f_k]` for each of the `head_dim / 4` frequencies.
    fn rotary(&self, grids: &[(usize, usize)], dtype: DType, device: &Device) -> Result<Rotary> {
        let hd = self.config.head_dim();
        let f = inverse_frequencies(hd / 2, self.config.rope_theta);
        let n: usize = grids.iter().map(|(r, c)| r * c).sum();
        let mut angles = try_with_capacity(n * hd / 2, "the rotary angles")?;
        for &(rows, cols) in grids {
            for (r, c) in (0..rows).flat_map(|r| (0..cols).map(move |c| (r, c))) {
                angles.extend(f.iter().flat_map(|f| [c as f32 * f, r as f32 * f]));
            }
        }
        Rotary::from_angles(&angles, hd / 2, dtype, device)
    }

    /// The embeddings of packed patch rows `[n, 3 · patch²]` of images with patch grids
    /// `grids`: `[Σ tokens, out_dim]`, and the token count of each image.
    pub fn forward(
        &self,
        patches: &Tensor,
        grids: &[(usize, usize)],
    ) -> Result<(Tensor, Vec<usize>)> {
        let (dtype, device) = (patches.dtype(), patches.device());
        let pos = to_compute(self.positions(grids)?, dtype, device)?;
        let mut x = (self.patch_embed.forward(patches)? + pos)?;
        let rope = self.rotary(grids, dtype, device)?;
        let segments: Vec<usize> = grids.iter().map(|(r, c)| r * c).collect();
        for b in &self.blocks {
            crate::models::cancel::check()?;
            x = b
                .attn
                .forward_packed(&b.norm1.forward(&x)?, &segments, Some(&rope), Some(&x))?;
            let h = b.fc1.forward_act(&b.norm2.forward(&x)?, self.config.act)?;
            x = b.fc2.forward_add(&h, &x)?;
        }
        let x = self
            .projector
            .pre_norm
            .forward(&self.final_norm.forward(&x)?)?;
        let (kh, kw) = self.config.merge;
        let mut merged = Vec::with_capacity(grids.len());
        for (rows, &(r, c)) in split_rows(&x, &segments)?.iter().zip(grids) {
            merged.push(merge_blocks(&rows.unsqueeze(0)?, (r, c), (kh, kw))?.squeeze(0)?);
        }
        let tokens: Vec<usize> = merged.iter().map(|t| t.dims()[0]).collect();
        let p = &self.projector;
        let h = p
            .in_proj
            .forward_act(&Tensor::cat(&merged, 0)?, Activation::GeluErf)?;
        Ok((p.out_proj.forward(&h)?, tokens))
    }
}

/// A Kimi K2.5 model: tower, projector and processor.
pub struct KimiK25Model {
    info: ModelInfo,
    tower: KimiVisionTower,
    processor: KimiK25Processor,
    media_content: Option<i64>,
    dtype: DType,
    device: Device,
}

impl KimiK25Model {
    pub fn load(
        files: &ModelFiles,
        weights: &Weights,
        dtype: DType,
        device: &Device,
    ) -> Result<KimiK25Model> {
        let cfg = &files.config;
        let vision_cfg = cfg
            .object("vision_config")?
            .unwrap_or_else(|| ConfigObject::empty("config.json: vision_config"));
        let vision = KimiVisionConfig::from_config(&vision_cfg)?;
        let proj_dim = cfg.positive_or("projection_hidden_size", 1152, MAX_DIM)?;
        if proj_dim != vision.dim {
            return Err(Error::bad_config(format!(
                "config.json: projection_hidden_size {proj_dim} differs from the vision \
                 hidden_size {} (the projector's pre_norm normalizes the tower's rows)",
                vision.dim
            )));
        }
        let proj_eps = cfg.f64_or("projection_layer_norm_eps", 1e-5)?;
        let out_dim = match cfg.object("text_config")? {
            Some(t) => t.positive_or("hidden_size", DEFAULT_TEXT_WIDTH, MAX_DIM)?,
            None => DEFAULT_TEXT_WIDTH,
        };
        let layout = Layout::detect(weights);
        let root = Loader::new(weights, "", dtype, device);
        let tower = KimiVisionTower::load(&root, &vision, layout, proj_eps, out_dim)?;
        let m = vision.merge.0;
        let processor = KimiK25Processor::from_config(&files.preprocessor, vision.patch_size, m)?;
        let token = |key: &str, default: i64| -> Result<Option<i64>> {
            Ok(Some(cfg.i64(key)?.unwrap_or(default)))
        };
        let p = vision.patch_size;
        let max_patches = processor.max_patches;
        let side = ((max_patches as f64).sqrt() as usize).min(processor.max_side) * p;
        let width = (4 * vision.dim).max(2 * vision.intermediate_size);
        let per_image = max_patches.saturating_mul(width).saturating_mul(8);
        let info = ModelInfo {
            family: "kimi_k25",
            model_type: files.model_type()?,
            output_dim: out_dim,
            vision_dim: vision.dim,
            patch_size: p,
            image_size: (side.max(p), side.max(p)),
            tokens_per_image: None,
            max_batch: batch_for_budget(per_image, 512 << 20),
            mixed_shape_batches: true,
            tokens: SpecialTokens {
                image: token("image_token_id", DEFAULT_TOKENS[0])?,
                image_start: token("vision_start_token_id", DEFAULT_TOKENS[1])?,
                image_end: token("vision_end_token_id", DEFAULT_TOKENS[2])?,
                image_break: None,
            },
        };
        Ok(KimiK25Model {
            info,
            tower,
            processor,
            media_content: AddedTokens::read(&files.dir).id(MEDIA_CONTENT),
            dtype,
            device: device.clone(),
        })
    }
}

impl VisionModel for KimiK25Model {
    // Per call, `max_patches` is the processor's kwarg of that name (`navit_resize`'s budget).
    processor_methods!("max_patches");

    fn forward(&self, batch: &[&Pixels]) -> Result<Vec<Tensor>> {
        let p = self.processor.patch_size;
        let m = self.processor.merge_size;
        let (x, grids) = pack_single_frames(
            batch,
            m,
            3 * p * p,
            self.dtype,
            &self.device,
            "a Kimi K2.5 image",
        )?;
        let (y, tokens) = self.tower.forward(&x, &grids)?;
        split_rows(&y, &tokens)
    }

    fn prompt_layout(
        &self,
        pixels: &Pixels,
        _video: Option<&VideoMeta>,
    ) -> Result<Vec<PromptSegment>> {
        let t = &self.info.tokens;
        let mut b = PromptBuilder::default();
        b.token(t.image_start)
            .text("image")
            .special(self.media_content, MEDIA_CONTENT)
            .rows(t.image, pixels.n_tokens())
            .token(t.image_end);
        b.finish(pixels.n_tokens())
    }

    fn spatial_merge_size(&self) -> usize {
        self.processor.merge_size
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_defaults_and_refusals() {
        let parse = |s: &str| ConfigObject::parse("config.json: vision_config", s).unwrap();
        let c = KimiVisionConfig::from_config(&parse("{}")).unwrap();
        assert_eq!(
            (c.patch_size, c.table_side, c.num_heads, c.depth, c.dim),
            (14, 64, 16, 27, 1152)
        );
        assert_eq!(
            (c.intermediate_size, c.act, c.merge, c.rope_theta),
            (4304, Activation::GeluTanh, (2, 2), 10000.0)
        );
        for (bad, word) in [
            (
                r#"{"pos_emb_height": 8, "pos_emb_width": 6}"#,
                "pos_emb_width",
            ),
            (r#"{"merge_kernel_size": [2, 3]}"#, "not square"),
            (r#"{"merge_kernel_size": 2}"#, "merge_kernel_size"),
            (r#"{"rope_parameters": {"rope_type": "default"}}"#, "axial"),
            (
                r#"{"hidden_size": 24, "num_attention_heads": 4}"#,
                "divisible by 4",
            ),
            (r#"{"hidden_act": "relu2"}"#, "relu2"),
        ] {
            let e = KimiVisionConfig::from_config(&parse(bad)).unwrap_err();
            assert!(e.message().contains(word), "{bad}: {e}");
        }
    }
}
