//! Kimi K2.5 (`model_type` `kimi_k25`): `modeling_kimi_k25.py`'s image and video paths,
//! `Kimi_K25Model.get_image_features` / `get_video_features`. Only the vision tower and the
//! projector are read; the language model (DeepSeek-V3, a trillion parameters in the released
//! checkpoint) is never opened beyond the shard headers that hold vision tensors.
//!
//! Video: transformers 5.23's `get_video_features` raises on any chunk of several frames (its
//! final split counts `t · h · w / 4` rows where the pooled chunk has `h · w / 4`), and its
//! `get_vision_temporal_merge_index` on chunks of different lengths in one call; vtower
//! computes what the tower and projector define (each chunk its own attention segment and
//! pooling group), checked against them chunk by chunk.
//!
//! 1. MoonViT (`Kimi_K25VisionModel`): the `patch x patch` Conv2d with bias as a linear map over
//!    the processor's `(channel, y, x)` patch rows; the learned `pos_emb_height x
//!    pos_emb_width` table resized to the image's patch grid with `F.interpolate(mode=
//!    "bicubic", align_corners=False)` in f32 ([`interpolate_bicubic`]) and added; then the
//!    time table (`time_position_embeddings`, sinusoids of `pos_emb_time` frames, computed,
//!    not loaded): frame `f` of a clip of several frames (a video chunk) adds row `f`, a
//!    one-frame clip (an image) the zero row (`get_vision_frame_index`);
//! 2. blocks: LayerNorm (eps 1e-5), attention within each clip, all its frames together
//!    (`merge_temporal=True`), with biased q / k / v and
//!    2-D axial RoPE (one set of `head_dim / 4` frequencies, angles laid out `[col·f0, row·f0,
//!    col·f1, …]` twice, rotate-half), output `proj`; LayerNorm, `fc2(act(fc1(x)))` with
//!    `hidden_act` (default `gelu_pytorch_tanh`); then `final_layernorm`;
//! 3. temporal pooling, the mean over a clip's frames patch by patch (over one frame for an
//!    image), and the 2x2 merge (`merge_kernel_size`): each merged token the `kh x kw` block
//!    of patch rows, `(row, column, channel)`;
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
//! Preprocessing: [`crate::preprocess::kimi_k25`] (images and video; a video is its chunks,
//! each a clip of up to `temporal_patch_size` frames). Prompt: `<|media_begin|>`
//! (`vision_start_token_id`), the text `image`, `<|media_content|>`, one `<|media_pad|>`
//! (`image_token_id`) per embedding row, `<|media_end|>` (`vision_end_token_id`): the layout
//! `Kimi_K25Processor` writes around a video chunk (`<|media_begin|>video<|media_content|>`),
//! for an image; for a video, per chunk its timestamp `HH:MM:SS.mmm` before that.

use candle_core::{DType, Device, Tensor};

use crate::config::{axial_rope_theta, ConfigObject, ROPE_PARAMETERS_FIRST};
use crate::error::{Error, Result};
use crate::models::activation::Activation;
use crate::models::checkpoint::Checkpoint;
use crate::models::grid_sample::{interpolate_bicubic, GridTable};
use crate::models::layers::{rope_rows_to_half, Attention, LayerNorm, Linear, Loader};
use crate::models::pixels::{split_rows, to_compute};
use crate::models::projector::merge_blocks;
use crate::models::rope::{inverse_frequencies, Rotary};
use crate::models::vit::{MAX_DIM, MAX_LAYERS};
use crate::models::{
    batch_for_budget, per_frame_layout, processor_methods, video_methods, ModelInfo, PromptBuilder,
    PromptLayout, SpecialTokens, VisionModel, VISION_TOKEN_KEYS,
};
use crate::preprocess::kimi_k25::{chunk_timestamp, KimiK25Processor, KimiK25VideoProcessor};
use crate::preprocess::limits::try_with_capacity;
use crate::preprocess::qwen_video::{video_config, VideoMeta};
use crate::preprocess::Pixels;
use crate::tokenizer::AddedTokens;
use crate::weights::Weights;

/// MoonViT's block and final norms are `nn.LayerNorm(hidden, eps=1e-5)`.
const NORM_EPS: f64 = 1e-5;
/// Largest accepted position table side.
const MAX_TABLE_SIDE: usize = 1 << 10;
/// Largest accepted `pos_emb_time`.
const MAX_TIME: usize = 1 << 12;
/// `Kimi_K25Config.video_token_id`'s default (`<|kimi_k25_video_placeholder|>`).
const DEFAULT_VIDEO_TOKEN: i64 = 163840;
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
    /// `pos_emb_time`: rows of the sinusoidal time table, the most frames a video chunk may
    /// have.
    pub pos_emb_time: usize,
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
            pos_emb_time: v.positive_or("pos_emb_time", 4, MAX_TIME)?,
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
    /// The time table `[pos_emb_time, dim]` (`time_position_embeddings` without its zero row
    /// 0): the row of frame `f` of a multi-frame clip.
    time: Vec<f32>,
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
            time: time_table(c.pos_emb_time, d),
            blocks,
            final_norm: vt.layer_norm(final_norm, d, NORM_EPS)?,
            projector: Projector {
                pre_norm: mm.layer_norm("pre_norm", d, proj_eps)?,
                in_proj: mm.linear(in_name, wide, wide, true)?,
                out_proj: mm.linear(out_name, wide, out_dim, true)?,
            },
        })
    }

    /// The position rows of the clips `clips` (`(frames, rows, cols)`, each frame's patches in
    /// raster order, frame after frame, clips back to back): the table resampled to the
    /// frame's grid, plus for frame `f` of a clip of several frames the time row `f`
    /// (`get_vision_frame_index`: a one-frame clip, an image, adds the zero row): `[n, dim]`
    /// f32 on the host.
    fn positions(&self, clips: &[(usize, usize, usize)]) -> Result<Tensor> {
        let (d, s) = (self.config.dim, self.config.table_side);
        let n: usize = clips.iter().map(|(t, r, c)| t * r * c).sum();
        let mut pos = try_with_capacity(n * d, "the position embeddings")?;
        let table = GridTable {
            data: &self.table,
            height: s,
            width: s,
            channels: d,
        };
        for &(t, rows, cols) in clips {
            let spatial = interpolate_bicubic(table, rows, cols);
            if t == 1 {
                pos.extend_from_slice(&spatial);
                continue;
            }
            for f in 0..t {
                let time = &self.time[f * d..(f + 1) * d];
                for row in spatial.chunks_exact(d) {
                    pos.extend(row.iter().zip(time).map(|(a, b)| a + b));
                }
            }
        }
        Ok(Tensor::from_vec(pos, (n, d), &Device::Cpu)?)
    }

    /// The rotary tables of the patches of `clips` (each frame in raster order, the same
    /// angles in every frame): angles `[col·f_k, row·f_k]` for each of the `head_dim / 4`
    /// frequencies.
    fn rotary(
        &self,
        clips: &[(usize, usize, usize)],
        dtype: DType,
        device: &Device,
    ) -> Result<Rotary> {
        let hd = self.config.head_dim();
        let f = inverse_frequencies(hd / 2, self.config.rope_theta);
        let n: usize = clips.iter().map(|(t, r, c)| t * r * c).sum();
        let mut angles = try_with_capacity(n * hd / 2, "the rotary angles")?;
        for &(t, rows, cols) in clips {
            for _ in 0..t {
                for (r, c) in (0..rows).flat_map(|r| (0..cols).map(move |c| (r, c))) {
                    angles.extend(f.iter().flat_map(|f| [c as f32 * f, r as f32 * f]));
                }
            }
        }
        Rotary::from_angles(&angles, hd / 2, dtype, device)
    }

    /// The embeddings of packed patch rows `[n, 3 · patch²]` of clips `clips` (`(frames,
    /// rows, cols)`: an image is one frame, a video chunk up to `pos_emb_time`): `[Σ tokens,
    /// out_dim]`, and the token count of each clip. Attention spans a clip's frames together
    /// (`merge_temporal=True`); after `final_layernorm` each clip's frames are averaged
    /// (`get_vision_temporal_merge_index` + `mean(dim=1)`) before the projector.
    pub fn forward(
        &self,
        patches: &Tensor,
        clips: &[(usize, usize, usize)],
    ) -> Result<(Tensor, Vec<usize>)> {
        let (dtype, device) = (patches.dtype(), patches.device());
        if let Some(&(t, _, _)) = clips
            .iter()
            .find(|(t, _, _)| *t == 0 || *t > self.config.pos_emb_time)
        {
            return Err(Error::invalid_argument(format!(
                "a clip of {t} frames: Kimi K2.5's time table has pos_emb_time {} rows \
                 (video chunks of temporal_patch_size frames must not exceed it)",
                self.config.pos_emb_time
            )));
        }
        let pos = to_compute(self.positions(clips)?, dtype, device)?;
        let mut x = (self.patch_embed.forward(patches)? + pos)?;
        let rope = self.rotary(clips, dtype, device)?;
        let segments: Vec<usize> = clips.iter().map(|(t, r, c)| t * r * c).collect();
        for b in &self.blocks {
            crate::models::cancel::check()?;
            x = b
                .attn
                .forward_packed(&b.norm1.forward(&x)?, &segments, Some(&rope), Some(&x))?;
            let h = b.fc1.forward_act(&b.norm2.forward(&x)?, self.config.act)?;
            x = b.fc2.forward_add(&h, &x)?;
        }
        let x = self.final_norm.forward(&x)?;
        // Temporal pooling: the mean over a clip's frames, patch by patch (in f32).
        let mut pooled = Vec::with_capacity(clips.len());
        for (rows, &(t, r, c)) in split_rows(&x, &segments)?.into_iter().zip(clips) {
            pooled.push(if t == 1 {
                rows
            } else {
                rows.to_dtype(DType::F32)?
                    .reshape((t, r * c, self.config.dim))?
                    .mean(0)?
                    .to_dtype(dtype)?
            });
        }
        let frames: Vec<usize> = clips.iter().map(|(_, r, c)| r * c).collect();
        let x = self.projector.pre_norm.forward(&Tensor::cat(&pooled, 0)?)?;
        let (kh, kw) = self.config.merge;
        let mut merged = Vec::with_capacity(clips.len());
        for (rows, &(_, r, c)) in split_rows(&x, &frames)?.iter().zip(clips) {
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

/// `Kimi_K25VisionPositionEmbeddings.compute_pos_embed` without its zero row: for frame `f`
/// of `frames`, `[sin(f · ω_k)…, cos(f · ω_k)…]` with `ω_k = 1 / 10000^(2k / dim)`, in f32
/// as torch computes it. `dim` is even (the rotary check makes it a multiple of 4).
fn time_table(frames: usize, dim: usize) -> Vec<f32> {
    let inv: Vec<f32> = (0..dim / 2)
        .map(|k| 1.0 / 10000f32.powf((2 * k) as f32 / dim as f32))
        .collect();
    let mut out = Vec::with_capacity(frames * dim);
    for f in 0..frames {
        let angles: Vec<f32> = inv.iter().map(|w| f as f32 * w).collect();
        out.extend(angles.iter().map(|a| a.sin()));
        out.extend(angles.iter().map(|a| a.cos()));
    }
    out
}

/// A Kimi K2.5 model: tower, projector and processor.
pub struct KimiK25Model {
    info: ModelInfo,
    tower: KimiVisionTower,
    processor: KimiK25Processor,
    /// The video processor, or why its config is unusable (images still work).
    video: std::result::Result<KimiK25VideoProcessor, String>,
    video_token: i64,
    media_content: Option<i64>,
    dtype: DType,
    device: Device,
}

impl KimiK25Model {
    pub fn load(ck: &Checkpoint) -> Result<KimiK25Model> {
        let cfg = ck.config();
        let vision_cfg = ck.vision_config()?;
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
        let layout = Layout::detect(ck.weights);
        let root = ck.loader("");
        let tower = KimiVisionTower::load(&root, &vision, layout, proj_eps, out_dim)?;
        let m = vision.merge.0;
        let processor =
            KimiK25Processor::from_config(&ck.files.preprocessor, vision.patch_size, m)?;
        let video = video_config(ck.files)
            .and_then(|v| {
                let vp = KimiK25VideoProcessor::from_config(&v, vision.patch_size, m)?;
                if vp.temporal_patch_size > vision.pos_emb_time {
                    return Err(Error::bad_config(format!(
                        "{}: temporal_patch_size {} exceeds the vision tower's pos_emb_time {} \
                         (a chunk's frames index the time table)",
                        v.location(),
                        vp.temporal_patch_size,
                        vision.pos_emb_time
                    )));
                }
                Ok(vp)
            })
            .map_err(|e| e.message().to_string());
        let p = vision.patch_size;
        let max_patches = processor.max_patches;
        let side = ((max_patches as f64).sqrt() as usize).min(processor.max_side) * p;
        let width = (4 * vision.dim).max(2 * vision.intermediate_size);
        let per_image = max_patches.saturating_mul(width).saturating_mul(8);
        let info = ModelInfo {
            family: "kimi_k25",
            model_type: ck.files.model_type()?,
            output_dim: out_dim,
            vision_dim: vision.dim,
            patch_size: p,
            image_size: (side.max(p), side.max(p)),
            tokens_per_image: None,
            max_batch: batch_for_budget(per_image, 512 << 20),
            mixed_shape_batches: true,
            tokens: SpecialTokens::from_config(cfg, VISION_TOKEN_KEYS, DEFAULT_TOKENS)?,
        };
        Ok(KimiK25Model {
            info,
            tower,
            processor,
            video,
            video_token: cfg.i64("video_token_id")?.unwrap_or(DEFAULT_VIDEO_TOKEN),
            media_content: AddedTokens::read(&ck.files.dir).id(MEDIA_CONTENT),
            dtype: ck.dtype,
            device: ck.device.clone(),
        })
    }
}

impl VisionModel for KimiK25Model {
    // Per call, `max_patches` is the processor's kwarg of that name (`navit_resize`'s budget).
    processor_methods!("max_patches");

    video_methods!();

    fn forward(&self, batch: &[&Pixels]) -> Result<Vec<Tensor>> {
        let (p, m) = (self.processor.patch_size, self.processor.merge_size);
        let dim = 3 * p * p;
        let mut clips = Vec::with_capacity(batch.len());
        let mut per_item = Vec::with_capacity(batch.len());
        let mut data =
            try_with_capacity(batch.iter().map(|px| px.data.len()).sum(), "the patch rows")?;
        for px in batch {
            // An image is one frame; a video holds its kept frames, frame after frame, in
            // `grid[0]` chunks of temporal_patch_size frames (the last one shorter).
            let [chunks, r, c] = px.grid;
            let per_frame = r * m * c * m;
            let frames = px.shape.first().map_or(0, |&n| n / per_frame.max(1));
            let bad = chunks == 0
                || per_frame == 0
                || frames == 0
                || px.shape != [frames * per_frame, dim]
                || px.data.len() != frames * per_frame * dim;
            let sizes = match (&self.video, chunks) {
                _ if bad => None,
                (_, 1) => Some(vec![frames]),
                (Ok(v), _) => Some(v.chunks(frames)).filter(|s| s.len() == chunks),
                (Err(_), _) => None,
            };
            let Some(sizes) = sizes else {
                return Err(Error::invalid_argument(format!(
                    "pixels of shape {:?} (token grid {:?}) do not fit this model's frames of \
                     [n, {dim}] patch rows",
                    px.shape, px.grid
                )));
            };
            per_item.push(sizes.len());
            clips.extend(sizes.iter().map(|&t| (t, r * m, c * m)));
            data.extend_from_slice(&px.data);
        }
        let n = data.len() / dim;
        let x = to_compute(
            Tensor::from_vec(data, (n, dim), &Device::Cpu)?,
            self.dtype,
            &self.device,
        )?;
        let (y, tokens) = self.tower.forward(&x, &clips)?;
        // One output per image or video: a video's chunks' tokens one after the other.
        let mut counts = Vec::with_capacity(batch.len());
        let mut k = 0;
        for chunks in per_item {
            counts.push(tokens[k..k + chunks].iter().sum());
            k += chunks;
        }
        split_rows(&y, &counts)
    }

    fn prompt_layout(&self, pixels: &Pixels, video: Option<&VideoMeta>) -> Result<PromptLayout> {
        let t = &self.info.tokens;
        let Some(meta) = video else {
            let mut b = PromptBuilder::default();
            b.token(t.image_start)
                .text("image")
                .special(self.media_content, MEDIA_CONTENT)
                .rows(t.image, pixels.n_tokens())
                .token(t.image_end);
            return b.finish(pixels.n_tokens());
        };
        // Kimi_K25Processor.replace_video_token: per chunk its first frame's time
        // `HH:MM:SS.mmm`, then `<|media_begin|>video<|media_content|>`, the chunk's
        // placeholders, `<|media_end|>`.
        per_frame_layout(t, pixels, meta, Some(self.video_token), |b, _, s| {
            b.text(&chunk_timestamp(s))
                .token(t.image_start)
                .text("video")
                .special(self.media_content, MEDIA_CONTENT);
        })
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
