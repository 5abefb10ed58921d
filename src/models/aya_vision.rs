//! Aya Vision (`model_type` `aya_vision`, `AyaVisionForConditionalGeneration`, e.g.
//! `CohereForAI/aya-vision-8b`), `modeling_aya_vision.py`:
//!
//! 1. each image is cut into tiles plus a thumbnail by `GotOcr2ImageProcessor`
//!    ([`crate::preprocess::got_ocr2`]; `AyaVisionProcessor` passes `crop_to_patches=True`);
//! 2. every tile runs through the SigLIP tower (`AutoModel` of `vision_config`), whose
//!    `hidden_states[vision_feature_layer]` (default -1: the last layer's output, without
//!    `post_layernorm`) is selected as LLaVA selects it (strategy default `full`);
//! 3. `AyaVisionMultiModalProjector`: pixel shuffle by `downsample_factor`, `LayerNorm`
//!    (`adapter_layer_norm_eps`), `linear_1` to `alignment_intermediate_size`, SwiGLU
//!    (`silu(second half) * first half`), `linear_2` to the text width.
//!
//! The image's embeddings are its tiles' in order (grid tiles row-major, then the
//! thumbnail), what the language model receives at the `<|IMG_PATCH|>` positions.

use candle_core::{DType, Device, Tensor};

use crate::config::ConfigObject;
use crate::error::{Error, Result};
use crate::models::checkpoint::Checkpoint;
use crate::models::layers::{LayerNorm, Linear, Loader};
use crate::models::llava::{image_token_index, Features, LlavaTower, SelectedTower, VisionConfig};
use crate::models::projector::{pixel_shuffle, text_width};
use crate::models::tiles::got_ocr2_methods;
use crate::models::vit::MAX_DIM;
use crate::models::{
    attention_batch, ModelInfo, PromptBuilder, PromptLayout, SpecialTokens, VisionModel,
};
use crate::preprocess::got_ocr2::GotOcr2Processor;
use crate::preprocess::qwen_video::VideoMeta;
use crate::preprocess::Pixels;
use crate::tokenizer::AddedTokens;

/// `AyaVisionConfig.image_token_index` default (`<|IMG_PATCH|>`).
const DEFAULT_IMAGE_TOKEN: i64 = 255036;

/// The SigLIP config `AyaVisionConfig` builds when config.json has no `vision_config`.
const DEFAULT_VISION_CONFIG: &str = r#"{"model_type": "siglip_vision_model", "hidden_size": 1152,
    "intermediate_size": 4304, "patch_size": 14, "image_size": 384, "num_hidden_layers": 26,
    "num_attention_heads": 14, "vision_use_head": false}"#;

/// `AyaVisionMultiModalProjector`.
struct Projector {
    factor: usize,
    norm: LayerNorm,
    linear_1: Linear,
    linear_2: Linear,
    /// Half of `alignment_intermediate_size`: the width of each SwiGLU half.
    half: usize,
}

impl Projector {
    /// Reads `downsample_factor`, which must divide the `side` x `side` patch grid, and
    /// `alignment_intermediate_size`, and loads `multi_modal_projector.` under `root` for
    /// features `width` channels wide; returns it with its output (the text) width.
    fn load(
        root: &Loader,
        cfg: &ConfigObject,
        width: usize,
        side: usize,
    ) -> Result<(Projector, usize)> {
        let factor = cfg.positive_or("downsample_factor", 2, MAX_DIM)?;
        if side % factor != 0 {
            return Err(Error::bad_config(format!(
                "config.json: the {side}x{side} patch grid is not divisible by \
                 downsample_factor {factor}"
            )));
        }
        let proj = root.sub("multi_modal_projector");
        let text_dim = text_width(cfg, &proj, "linear_2")?;
        let inter = cfg.positive_or("alignment_intermediate_size", text_dim, MAX_DIM * 8)?;
        if inter % 2 != 0 {
            return Err(Error::bad_config(format!(
                "config.json: alignment_intermediate_size {inter} is odd (SwiGLU splits it in two)"
            )));
        }
        let in_dim = width * factor * factor;
        let eps = cfg.f64_or("adapter_layer_norm_eps", 1e-6)?;
        let projector = Projector {
            factor,
            norm: proj.layer_norm("layernorm", in_dim, eps)?,
            linear_1: proj.linear("linear_1", in_dim, inter, true)?,
            linear_2: proj.linear("linear_2", inter / 2, text_dim, true)?,
            half: inter / 2,
        };
        Ok((projector, text_dim))
    }

    /// `[n, s*s, d]` → `[n, (s/f)^2, text_dim]`.
    fn forward(&self, x: &Tensor, side: usize) -> Result<Tensor> {
        let x = pixel_shuffle(x, side, self.factor)?;
        let h = self.linear_1.forward(&self.norm.forward(&x)?)?;
        let last = h.rank() - 1;
        let up = h.narrow(last, 0, self.half)?;
        let gate = h.narrow(last, self.half, self.half)?;
        let h = (candle_nn::ops::silu(&gate.contiguous()?)? * up)?;
        self.linear_2.forward(&h)
    }
}

/// The processor's prompt strings (`AyaVisionProcessor.__init__`, from
/// `processor_config.json`).
struct PromptStrings {
    start: String,
    end: String,
    tile: String,
    tile_global: String,
}

impl PromptStrings {
    fn read(p: &ConfigObject) -> Result<PromptStrings> {
        Ok(PromptStrings {
            start: p.string_or("start_of_img_token", "<|START_OF_IMG|>")?,
            end: p.string_or("end_of_img_token", "<|END_OF_IMG|>")?,
            tile: p.string_or("tile_token", "TILE")?,
            tile_global: p.string_or("tile_global_token", "TILE_GLOBAL")?,
        })
    }
}

/// AyaVisionProcessor counts (img_size // (patch_size * downsample_factor))^2 placeholders
/// per tile; a processor config that disagrees with the tower's `tile_side`² could never run
/// in the reference (the scatter fails), so it is refused here.
fn check_processor(p: &ConfigObject, tile_side: usize) -> Result<()> {
    let img_size = p.positive_or("img_size", 364, MAX_DIM)?;
    let per = p
        .positive_or("patch_size", 28, MAX_DIM)?
        .saturating_mul(p.positive_or("downsample_factor", 1, MAX_DIM)?);
    if p.contains("img_size") && (img_size / per) != tile_side {
        return Err(Error::bad_config(format!(
            "processor_config.json: img_size {img_size} with patch_size x \
             downsample_factor {per} gives {0}x{0} placeholders per tile, but the tower \
             yields {tile_side}x{tile_side}",
            img_size / per
        )));
    }
    Ok(())
}

/// An Aya Vision tower with its projector and image processor.
pub struct AyaVisionModel {
    info: ModelInfo,
    tower: SelectedTower,
    /// Patches per side of a tile.
    side: usize,
    projector: Projector,
    processor: GotOcr2Processor,
    prompt: PromptStrings,
    tiles_per_call: usize,
    dtype: DType,
    device: Device,
}

impl AyaVisionModel {
    pub fn load(ck: &Checkpoint) -> Result<AyaVisionModel> {
        let cfg = ck.config();
        let vision = VisionConfig::read_or(
            cfg,
            LlavaTower::Siglip,
            "AyaVisionConfig",
            DEFAULT_VISION_CONFIG,
        )?;
        let features = Features::read_or(cfg, &vision, "full", -1)?;
        if features.drop_first {
            // SigLIP has no class token: dropping the first patch leaves no square grid,
            // which the projector's pixel shuffle cannot reshape (nor can the reference).
            return Err(Error::bad_config(
                "config.json: vision_feature_select_strategy `default` is not supported for \
                 aya_vision (its pixel shuffle needs the whole patch grid; use `full`)",
            ));
        }
        let t = vision.tower();
        let side = t.grid();
        let root = ck.loader("");
        let width = t.encoder.hidden_size * features.layers.len();
        let (projector, text_dim) = Projector::load(&root, cfg, width, side)?;
        let tower = SelectedTower::load(&root, &vision, features)?;
        let processor =
            GotOcr2Processor::from_config(&ck.files.preprocessor, t.image_size, Some(true))?;
        check_processor(&ck.files.processor, side / projector.factor)?;
        let added = AddedTokens::read(&ck.files.dir);
        let prompt = PromptStrings::read(&ck.files.processor)?;
        let tiles_per_call = attention_batch(t.encoder.num_heads, t.num_patches());
        let info = ModelInfo {
            family: "aya_vision",
            model_type: ck.files.model_type()?,
            output_dim: text_dim,
            vision_dim: t.encoder.hidden_size,
            patch_size: t.patch_size,
            image_size: (t.image_size, t.image_size),
            tokens_per_image: None,
            max_batch: tiles_per_call,
            mixed_shape_batches: true,
            tokens: SpecialTokens {
                image: Some(image_token_index(cfg, DEFAULT_IMAGE_TOKEN)?),
                image_start: added.id(&prompt.start),
                image_end: added.id(&prompt.end),
                image_break: None,
            },
        };
        Ok(AyaVisionModel {
            info,
            tower,
            side,
            projector,
            processor,
            prompt,
            tiles_per_call,
            dtype: ck.dtype,
            device: ck.device.clone(),
        })
    }

    /// `[n, 3, S, S]` tiles → `[n, tokens, text_dim]`.
    fn run_tiles(&self, x: &Tensor) -> Result<Tensor> {
        self.projector.forward(&self.tower.forward(x)?, self.side)
    }
}

impl VisionModel for AyaVisionModel {
    got_ocr2_methods!(|m: &Self| m.side / m.projector.factor);

    fn prompt_layout(&self, pixels: &Pixels, _video: Option<&VideoMeta>) -> Result<PromptLayout> {
        // AyaVisionProcessor.replace_image_token: <|START_OF_IMG|>, per grid tile i (1-based)
        // the text `TILE_i` and its placeholders, `TILE_GLOBAL` and the thumbnail's (the only
        // tile when there is one), <|END_OF_IMG|>.
        let t = &self.info.tokens;
        let [tiles, rows, cols] = pixels.grid;
        let per_tile = rows * cols;
        let mut b = PromptBuilder::default();
        b.special(t.image_start, &self.prompt.start);
        for i in 1..tiles {
            b.text(&format!("{}_{i}", self.prompt.tile))
                .rows(t.image, per_tile);
        }
        b.text(&self.prompt.tile_global)
            .rows(t.image, per_tile)
            .special(t.image_end, &self.prompt.end);
        b.finish(pixels.n_tokens())
    }
}
