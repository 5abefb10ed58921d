//! Qwen3-VL (`model_type` `qwen3_vl`, `qwen3_vl_moe`) and Qwen3.5 (`qwen3_5`,
//! `qwen3_5_moe`) vision towers, as `Qwen3VLVisionModel` / `Qwen3_5VisionModel` in
//! transformers 5.23 compute them. The MoE checkpoints carry the same tower as the dense
//! ones; only the vision tensors are read (the experts are never opened).
//!
//! - 3-D patch embedding: a Conv3d over `temporal x patch x patch` **with bias**, a linear
//!   map over the processor's flattened patch rows;
//! - a learned position table `pos_embed` (`num_position_embeddings` = side² rows) resampled
//!   bilinearly with `align_corners=True` to each image's patch grid, as the gather of 4
//!   rows and weights of `get_vision_interpolation_indices_and_weights`, in the
//!   processor's merge-block order, and added;
//! - the 2-D axial rotary embedding of Qwen2-VL at each patch's (row, column);
//! - blocks: LayerNorm (eps 1e-6), fused-qkv attention limited to each image (frame),
//!   LayerNorm, `linear_fc2(act(linear_fc1(x)))` with `hidden_act` (`gelu_pytorch_tanh`);
//! - the merger: LayerNorm over the vision width, `merge²` tokens concatenated, fc1, GELU
//!   (erf), fc2 to the language model's width (`out_hidden_size`);
//! - Qwen3-VL's deepstack: after each block named in `deepstack_visual_indexes`, that
//!   block's output goes through its own merger (`deepstack_merger_list[i]`, `i` = the
//!   block's position in the list) whose LayerNorm runs over the concatenated `merge² x
//!   width` features (`use_postshuffle_norm`). The features come out in block order; the
//!   language model adds feature k to its hidden states at the image positions after
//!   decoder layer k. Qwen3.5 has no deepstack (its config class deletes the key).
//!
//! Several images of different sizes run in one packed sequence with per-image attention
//! segments. Embeddings come out in merged-grid raster order, one row per `<|image_pad|>`.

use candle_core::{DType, Device, Tensor};

use crate::config::{axial_rope_theta, ConfigObject, ROPE_PARAMETERS_FIRST};
use crate::error::{Error, Result};
use crate::models::activation::Activation;
use crate::models::checkpoint::Checkpoint;
use crate::models::layers::{segment_attention_with, LayerNorm, Linear, Loader};
use crate::models::pixels::{pack_patch_rows, split_rows};
use crate::models::position_taps::{merge_block_positions, resample_table};
use crate::models::qwen2_vl::{
    check_channels_and_heads, load_patch_embed, qwen_image_methods, read_depth_and_heads,
    read_geometry, rotary_qkv,
};
use crate::models::rope::AxialRope;
use crate::models::vit::MAX_DIM;
use crate::models::{
    framed_layout, per_frame_layout, video_methods, ModelInfo, PromptLayout, SpecialTokens,
    VisionModel, VISION_TOKEN_KEYS,
};
use crate::preprocess::qwen2_vl::{PatchGeometry, QwenImageProcessor};
use crate::preprocess::qwen_video::{
    load_video_processor, QwenVideoProcessor, VideoFlavor, VideoMeta, VideoTime,
};
use crate::preprocess::Pixels;

/// Every LayerNorm of the tower and mergers is built with eps 1e-6 (not a config key).
const NORM_EPS: f64 = 1e-6;
/// Largest accepted `num_position_embeddings` (released: 2304 = 48²).
const MAX_POSITIONS: usize = 1 << 20;

/// Which model family.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Qwen3Variant {
    /// Qwen3-VL (`qwen3_vl`, `qwen3_vl_moe`): with deepstack mergers.
    Qwen3Vl,
    /// Qwen3.5 (`qwen3_5`, `qwen3_5_moe`) and Qwen4-Exp (`qwen4_exp`, whose vision model is
    /// Qwen3.5-MoE's): the same tower without deepstack.
    Qwen35,
}

/// The vision config (`Qwen3VLVisionConfig` / `Qwen3_5VisionConfig` of transformers 5.23).
#[derive(Debug, Clone, PartialEq)]
pub struct Qwen3VisionConfig {
    pub depth: usize,
    /// Vision width (`hidden_size`).
    pub dim: usize,
    pub num_heads: usize,
    pub intermediate_size: usize,
    /// Merger output = the language model's width (`out_hidden_size`).
    pub out_dim: usize,
    pub geometry: PatchGeometry,
    pub act: Activation,
    pub rope_theta: f64,
    /// Rows of the learned position table.
    pub num_position_embeddings: usize,
    /// `deepstack_visual_indexes` as listed (merger `i` reads block `deepstack[i]`);
    /// empty for Qwen3.5.
    pub deepstack: Vec<usize>,
}

/// `deepstack_visual_indexes`: a list of distinct block indexes below `depth`.
fn deepstack_indexes(v: &ConfigObject, depth: usize) -> Result<Vec<usize>> {
    let items = v
        .usize_list("deepstack_visual_indexes")?
        .unwrap_or_else(|| vec![8, 16, 24]);
    for (k, &i) in items.iter().enumerate() {
        if i >= depth {
            return Err(Error::bad_config(format!(
                "{}: deepstack_visual_indexes names block {i} of a {depth}-block tower (its \
                 merger would never run and the language model would miss that level)",
                v.location()
            )));
        }
        if items[..k].contains(&i) {
            return Err(Error::bad_config(format!(
                "{}: deepstack_visual_indexes names block {i} twice (not supported: the reference \
                 runs only the first of those mergers)",
                v.location()
            )));
        }
    }
    Ok(items)
}

impl Qwen3VisionConfig {
    /// Reads `vision_config` with the class defaults of transformers 5.23.
    pub fn from_config(v: &ConfigObject, variant: Qwen3Variant) -> Result<Qwen3VisionConfig> {
        let (depth, num_heads) = read_depth_and_heads(v, 27, 16)?;
        let dim = v.positive_or("hidden_size", 1152, MAX_DIM)?;
        check_channels_and_heads(v, dim, num_heads)?;
        let num_position_embeddings =
            v.positive_or("num_position_embeddings", 2304, MAX_POSITIONS)?;
        let deepstack = match variant {
            Qwen3Variant::Qwen3Vl => deepstack_indexes(v, depth)?,
            Qwen3Variant::Qwen35 => {
                // Qwen3_5VisionConfig deletes the attribute and the tower has no deepstack
                // mergers: a value in the file (the released ones carry `[]`) does nothing.
                if let Some(serde_json::Value::Array(items)) = v.value("deepstack_visual_indexes") {
                    if !items.is_empty() {
                        crate::log::warn(&format!(
                            "{}: deepstack_visual_indexes is ignored (Qwen3.5 towers have no \
                             deepstack)",
                            v.location()
                        ));
                    }
                }
                Vec::new()
            }
        };
        Ok(Qwen3VisionConfig {
            depth,
            dim,
            num_heads,
            intermediate_size: v.positive_or("intermediate_size", 4304, MAX_DIM * 8)?,
            out_dim: v.positive_or("out_hidden_size", 3584, MAX_DIM)?,
            geometry: read_geometry(v, v.positive_or("patch_size", 16, 1024)?)?,
            act: Activation::from_name(&v.string_or("hidden_act", "gelu_pytorch_tanh")?)?,
            rope_theta: axial_rope_theta(v, ROPE_PARAMETERS_FIRST)?,
            num_position_embeddings,
            deepstack,
        })
    }

    pub fn head_dim(&self) -> usize {
        self.dim / self.num_heads
    }

    /// Side of the square position table: `int(num_position_embeddings ** 0.5)`.
    pub fn grid_side(&self) -> usize {
        (self.num_position_embeddings as f64).sqrt() as usize
    }
}

/// A patch merger: `fc2(gelu(fc1(concat_merge²(norm(x)))))`, with the norm over the vision
/// width (main merger) or over the concatenation (deepstack, `use_postshuffle_norm`).
struct Merger {
    norm: LayerNorm,
    postshuffle: bool,
    fc1: Linear,
    fc2: Linear,
}

impl Merger {
    fn load(l: &Loader, c: &Qwen3VisionConfig, postshuffle: bool) -> Result<Merger> {
        let merged = c.dim * c.geometry.merge_size * c.geometry.merge_size;
        let norm_dim = if postshuffle { merged } else { c.dim };
        Ok(Merger {
            norm: l.layer_norm("norm", norm_dim, NORM_EPS)?,
            postshuffle,
            fc1: l.linear("linear_fc1", merged, merged, true)?,
            fc2: l.linear("linear_fc2", merged, c.out_dim, true)?,
        })
    }

    fn forward(&self, x: &Tensor, merged: usize) -> Result<Tensor> {
        let n = x.elem_count() / merged;
        let h = if self.postshuffle {
            self.norm.forward(&x.reshape((n, merged))?)?
        } else {
            self.norm.forward(x)?.reshape((n, merged))?
        };
        let h = self.fc1.forward_act(&h, Activation::GeluErf)?;
        self.fc2.forward(&h)
    }
}

struct Block {
    norm1: LayerNorm,
    qkv: Linear,
    proj: Linear,
    norm2: LayerNorm,
    fc1: Linear,
    fc2: Linear,
}

/// The tower with its merger and deepstack mergers.
pub struct Qwen3VisionTower {
    config: Qwen3VisionConfig,
    patch_embed: Linear,
    /// `pos_embed.weight` `[num_position_embeddings, dim]`, f32 (the reference gathers in
    /// the weight dtype and sums in f32).
    pos_embed: Tensor,
    rope: AxialRope,
    blocks: Vec<Block>,
    merger: Merger,
    /// `deepstack_merger_list`, in config order.
    deepstack: Vec<Merger>,
}

/// The tower's outputs for a packed batch: `levels[0]` = the merger, `levels[k]` = the k-th
/// deepstack feature in block order, each `[n_tokens, out_dim]`; the token count of each
/// image.
pub struct TowerOutput {
    pub levels: Vec<Tensor>,
    pub tokens: Vec<usize>,
}

impl Qwen3VisionTower {
    /// Loads `patch_embed.`, `pos_embed.`, `blocks.{i}.`, `merger.` and
    /// `deepstack_merger_list.{i}.` under `loader` (which points at `visual.`).
    pub fn load(loader: &Loader, config: &Qwen3VisionConfig) -> Result<Qwen3VisionTower> {
        let c = config;
        let g = c.geometry;
        let d = c.dim;
        let patch_embed = load_patch_embed(loader, d, g, true)?;
        let pos_embed = loader
            .tensor("pos_embed.weight", &[c.num_position_embeddings, d])?
            .to_dtype(DType::F32)?;
        let blocks = (0..c.depth)
            .map(|i| {
                let l = loader.sub(&format!("blocks.{i}"));
                Ok(Block {
                    norm1: l.layer_norm("norm1", d, NORM_EPS)?,
                    qkv: l.linear("attn.qkv", d, 3 * d, true)?,
                    proj: l.linear("attn.proj", d, d, true)?,
                    norm2: l.layer_norm("norm2", d, NORM_EPS)?,
                    fc1: l.linear("mlp.linear_fc1", d, c.intermediate_size, true)?,
                    fc2: l.linear("mlp.linear_fc2", c.intermediate_size, d, true)?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let deepstack = (0..c.deepstack.len())
            .map(|i| Merger::load(&loader.sub(&format!("deepstack_merger_list.{i}")), c, true))
            .collect::<Result<Vec<_>>>()?;
        Ok(Qwen3VisionTower {
            config: c.clone(),
            patch_embed,
            pos_embed,
            rope: AxialRope::new(c.head_dim(), c.rope_theta)?,
            blocks,
            merger: Merger::load(&loader.sub("merger"), c, false)?,
            deepstack,
        })
    }

    /// The interpolated position embeddings of a batch with patch grids `grids`, `[n, dim]`
    /// f32, in the packed (merge-block) order.
    fn position_embeddings(&self, grids: &[[usize; 3]]) -> Result<Tensor> {
        let m = self.config.geometry.merge_size;
        resample_table(&self.pos_embed, grids, m, self.config.grid_side(), true)
    }

    /// Runs the tower and mergers on packed patch rows `[n_patches, patch_dim]` of images
    /// with patch grids `grids` (`t, h, w` in patches).
    pub fn forward(&self, patches: &Tensor, grids: &[[usize; 3]]) -> Result<TowerOutput> {
        let c = &self.config;
        let m = c.geometry.merge_size;
        let unit = m * m;
        let device = patches.device();
        // Patch (row, col) of each row in the processor's block order, per frame; attention
        // segments per frame.
        let mut positions = Vec::new();
        let mut segments = Vec::new();
        let mut tokens = Vec::new();
        let mut base = 0;
        for &[t, gh, gw] in grids {
            let frame = merge_block_positions(gh, gw, m);
            for _ in 0..t {
                positions.extend_from_slice(&frame);
                segments.push((base, gh * gw));
                base += gh * gw;
            }
            tokens.push(t * gh * gw / unit);
        }
        let x = self.patch_embed.forward(patches)?;
        let pos = self.position_embeddings(grids)?.to_dtype(x.dtype())?;
        let mut x = (x + pos)?;
        let (cos, sin) = self.rope.cos_sin(&positions, device)?;
        let (cos, sin) = (cos.unsqueeze(1)?, sin.unsqueeze(1)?);
        let n = x.dim(0)?;
        let (heads, hd) = (c.num_heads, c.head_dim());
        let scale = (hd as f64).powf(-0.5);
        let merged = c.dim * unit;
        let mut levels = vec![None; 1 + c.deepstack.len()];
        let mut next_level = 1;
        for (li, block) in self.blocks.iter().enumerate() {
            crate::models::cancel::check()?;
            let h = block.norm1.forward(&x)?;
            let qkv = block.qkv.forward(&h)?;
            let [q, k, v] = rotary_qkv(&qkv, [n, c.dim, heads, hd], None, (&cos, &sin))?;
            let o = segment_attention_with(&q, &k, &v, &segments, scale, block.qkv.is_bf16())?;
            x = block.proj.forward_add(&o, &x)?;
            let h = block.fc1.forward_act(&block.norm2.forward(&x)?, c.act)?;
            x = block.fc2.forward_add(&h, &x)?;
            if let Some(i) = c.deepstack.iter().position(|&b| b == li) {
                levels[next_level] = Some(self.deepstack[i].forward(&x, merged)?);
                next_level += 1;
            }
        }
        levels[0] = Some(self.merger.forward(&x, merged)?);
        let levels = levels
            .into_iter()
            .map(|l| l.ok_or_else(|| Error::compute("a deepstack level was not computed")))
            .collect::<Result<Vec<_>>>()?;
        Ok(TowerOutput { levels, tokens })
    }
}

/// A Qwen3-VL or Qwen3.5 model: tower, mergers and preprocessing.
pub struct Qwen3VlModel {
    info: ModelInfo,
    tower: Qwen3VisionTower,
    processor: QwenImageProcessor,
    /// The video processor, or why its config is unusable (images still work).
    video: std::result::Result<QwenVideoProcessor, String>,
    video_token: i64,
    /// Decoder layer of each deepstack level (level k goes after layer k - 1).
    deepstack_layers: Vec<usize>,
    dtype: DType,
    device: Device,
}

impl Qwen3VlModel {
    /// Loads a Qwen3-VL (`qwen3_vl`, `qwen3_vl_moe`) or Qwen3.5-tower (`qwen3_5`,
    /// `qwen3_5_moe`, `qwen4_exp`) checkpoint of the `variant` the registry picked (vision
    /// tensors only: `visual.*` / `model.visual.*`).
    pub fn load(ck: &Checkpoint, variant: Qwen3Variant) -> Result<Qwen3VlModel> {
        let model_type = ck.files.model_type()?;
        // The family name and the config classes' default special token ids (image,
        // vision start, vision end, video).
        let (family, tokens) = match variant {
            Qwen3Variant::Qwen3Vl => ("qwen3_vl", [151655, 151652, 151653, 151656]),
            Qwen3Variant::Qwen35 => ("qwen3_5", [248056, 248053, 248054, 248057]),
        };
        let vision = ck.vision_config()?;
        let config = Qwen3VisionConfig::from_config(&vision, variant)?;
        let tower = Qwen3VisionTower::load(&ck.loader("visual."), &config)?;
        let processor = QwenImageProcessor::from_config(&ck.files.preprocessor, config.geometry)?;
        let video = load_video_processor(ck.files, VideoFlavor::Qwen3, config.geometry);
        let video_token = ck.config().i64("video_token_id")?.unwrap_or(tokens[3]);
        let [image, start, end, _] = tokens;
        let special =
            SpecialTokens::from_config(ck.config(), VISION_TOKEN_KEYS, [image, start, end])?;
        let info = ModelInfo::packed(
            family,
            model_type,
            [config.out_dim, config.dim, config.intermediate_size],
            config.geometry,
            processor.max_pixels,
            special,
        );
        Ok(Qwen3VlModel {
            info,
            deepstack_layers: (0..config.deepstack.len()).collect(),
            tower,
            processor,
            video,
            video_token,
            dtype: ck.dtype,
            device: ck.device.clone(),
        })
    }
}

impl VisionModel for Qwen3VlModel {
    qwen_image_methods!();

    fn deepstack_layers(&self) -> &[usize] {
        &self.deepstack_layers
    }

    video_methods!(|_, _: &VideoMeta| VideoTime::PerFrame);

    fn prompt_layout(&self, pixels: &Pixels, video: Option<&VideoMeta>) -> Result<PromptLayout> {
        let t = &self.info.tokens;
        let Some(meta) = video else {
            return framed_layout(t, t.image, pixels.n_tokens());
        };
        // Qwen3VLProcessor.replace_video_token: per temporal group `<T seconds>` (T with
        // one decimal), <|vision_start|>, the group's placeholders, <|vision_end|>.
        per_frame_layout(t, pixels, meta, Some(self.video_token), |b, _, ts| {
            b.text(&format!("<{ts:.1} seconds>")).token(t.image_start);
        })
    }

    fn forward(&self, batch: &[&Pixels]) -> Result<Vec<Tensor>> {
        Ok(self
            .forward_levels(batch)?
            .into_iter()
            .map(|mut levels| levels.swap_remove(0))
            .collect())
    }

    fn forward_levels(&self, batch: &[&Pixels]) -> Result<Vec<Vec<Tensor>>> {
        let g = self.tower.config.geometry;
        let (x, grids) =
            pack_patch_rows(batch, g.merge_size, g.patch_dim(), self.dtype, &self.device)?;
        let out = self.tower.forward(&x, &grids)?;
        // Per level, per image; then regrouped per image, per level.
        let levels = out
            .levels
            .iter()
            .map(|l| split_rows(&l.to_dtype(DType::F32)?, &out.tokens))
            .collect::<Result<Vec<_>>>()?;
        Ok((0..out.tokens.len())
            .map(|i| levels.iter().map(|l| l[i].clone()).collect())
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deepstack_indexes_are_checked() {
        let parse = |s: &str| ConfigObject::parse("config.json: vision_config", s).unwrap();
        let c = Qwen3VisionConfig::from_config(&parse(r#"{"depth": 27}"#), Qwen3Variant::Qwen3Vl)
            .unwrap();
        assert_eq!(c.deepstack, vec![8, 16, 24]);
        assert_eq!((c.dim, c.out_dim, c.grid_side()), (1152, 3584, 48));
        assert_eq!(c.geometry.factor(), 32);
        assert_eq!(c.act, Activation::GeluTanh);
        let c = Qwen3VisionConfig::from_config(
            &parse(r#"{"depth": 27, "deepstack_visual_indexes": [1]}"#),
            Qwen3Variant::Qwen35,
        )
        .unwrap();
        assert!(c.deepstack.is_empty());
        for bad in [
            r#"{"depth": 4, "deepstack_visual_indexes": [4]}"#,
            r#"{"depth": 4, "deepstack_visual_indexes": [1, 1]}"#,
            r#"{"depth": 4, "deepstack_visual_indexes": 2}"#,
            r#"{"depth": 4, "deepstack_visual_indexes": [-1]}"#,
        ] {
            let e = Qwen3VisionConfig::from_config(&parse(bad), Qwen3Variant::Qwen3Vl).unwrap_err();
            assert!(e.message().contains("deepstack_visual_indexes"), "{e}");
        }
    }
}
