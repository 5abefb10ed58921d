//! Gemma3 (`model_type` `gemma3`, `Gemma3ForConditionalGeneration`): the SigLIP tower's
//! `last_hidden_state`, then `Gemma3MultiModalProjector` (`modeling_gemma3.py`):
//!
//! 1. the `[N, D]` tokens as a `p x p` grid (`p = image_size // patch_size`);
//! 2. `AvgPool2d(k, stride=k)` with `k = p // int(sqrt(mm_tokens_per_image))`: `(p - k) // k + 1`
//!    outputs per side, so trailing patch rows/columns that do not fill a window are dropped;
//! 3. Gemma's RMSNorm (`1 + w`, f32, eps = `vision_config.layer_norm_eps`);
//! 4. `x @ mm_input_projection_weight`, a raw `[D, T]` matrix (not a `[out, in]` Linear).
//!
//! With pan-and-scan an image is the original plus its crops; its embeddings are those of
//! each frame in that order, `[(1 + crops) * tokens, T]`.

use candle_core::{DType, Device, Tensor};

use crate::config::ConfigObject;
use crate::error::{Error, Result};
use crate::models::checkpoint::Checkpoint;
use crate::models::layers::{GemmaRmsNorm, Linear, Loader};
use crate::models::pixels::forward_frames;
use crate::models::siglip::{self, SiglipVisionConfig, SiglipVisionTower};
use crate::models::vit::MAX_DIM;
use crate::models::{
    attention_bytes, batch_for_budget, processor_methods, GemmaKnobs, ModelInfo, PanAndScan,
    PromptBuilder, PromptLayout, SpecialTokens, VisionModel,
};
use crate::preprocess::gemma3::Gemma3Processor;
use crate::preprocess::qwen_video::VideoMeta;
use crate::preprocess::Pixels;

/// `Gemma3Config` class defaults.
const DEFAULT_MM_TOKENS: usize = 256;
const DEFAULT_BOI: i64 = 255_999;
const DEFAULT_EOI: i64 = 256_000;
const DEFAULT_IMAGE_TOKEN: i64 = 262_144;
/// `Gemma3TextConfig.hidden_size` default.
const DEFAULT_TEXT_HIDDEN: usize = 2304;

/// The projector's pooling geometry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pooling {
    /// Patches per side of the tower's grid.
    pub patches: usize,
    /// Pooling window (and stride).
    pub kernel: usize,
    /// Pooled tokens per side.
    pub side: usize,
}

impl Pooling {
    /// The geometry `Gemma3MultiModalProjector` builds from the config, refusing what the
    /// reference cannot run or what would not give `mm_tokens_per_image` tokens (the processor
    /// always inserts that many soft tokens, so the language model would reject the image).
    pub fn new(image_size: usize, patch_size: usize, mm_tokens: usize) -> Result<Pooling> {
        let patches = image_size / patch_size;
        // int(mm_tokens ** 0.5): the float square root, truncated.
        let per_side = (mm_tokens as f64).sqrt() as usize;
        if per_side == 0 || per_side > patches {
            return Err(Error::bad_config(format!(
                "config.json: mm_tokens_per_image {mm_tokens} needs {per_side} tokens per side, \
                 but the tower has {patches}x{patches} patches"
            )));
        }
        let kernel = patches / per_side;
        let side = (patches - kernel) / kernel + 1;
        if side * side != mm_tokens {
            return Err(Error::bad_config(format!(
                "config.json: mm_tokens_per_image {mm_tokens} does not match the projector's \
                 pooling ({patches}x{patches} patches, window {kernel} -> {side}x{side} = {} tokens)",
                side * side
            )));
        }
        Ok(Pooling {
            patches,
            kernel,
            side,
        })
    }

    /// `[B, p*p, D]` → `[B, side*side, D]`: mean over each `kernel x kernel` window.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let (b, n, d) = x.dims3()?;
        let (p, k, s) = (self.patches, self.kernel, self.side);
        if n != p * p {
            return Err(Error::compute(format!(
                "projector got {n} tokens, expected {p}x{p}"
            )));
        }
        let x = x.reshape((b, p, p, d))?;
        let x = if s * k != p {
            x.narrow(1, 0, s * k)?.narrow(2, 0, s * k)?.contiguous()?
        } else {
            x
        };
        let x = x
            .reshape(vec![b, s, k, s, k, d])?
            .sum(4)?
            .sum(2)?
            .affine(1.0 / (k * k) as f64, 0.0)?;
        Ok(x.reshape((b, s * s, d))?)
    }
}

/// `Gemma3MultiModalProjector`.
pub struct Gemma3Projector {
    pooling: Pooling,
    norm: GemmaRmsNorm,
    /// `mm_input_projection_weight` transposed into a `[T, D]` Linear.
    projection: Linear,
}

impl Gemma3Projector {
    /// Loads the projector under `loader` for a `vision` tower and a language model of width
    /// `text_dim`; the pooling comes from config.json's `mm_tokens_per_image`.
    pub fn load(
        loader: &Loader,
        cfg: &ConfigObject,
        vision: &SiglipVisionConfig,
        text_dim: usize,
    ) -> Result<Gemma3Projector> {
        let mm_tokens = cfg.positive_or("mm_tokens_per_image", DEFAULT_MM_TOKENS, MAX_DIM)?;
        let pooling = Pooling::new(vision.image_size, vision.patch_size, mm_tokens)?;
        let d = vision.encoder.hidden_size;
        let w = loader.tensor("mm_input_projection_weight", &[d, text_dim])?;
        Ok(Gemma3Projector {
            pooling,
            norm: loader.gemma_rms_norm("mm_soft_emb_norm", d, vision.encoder.layer_norm_eps)?,
            projection: Linear::new(w.t()?, None)?,
        })
    }

    /// `[B, N, D]` tower output → `[B, tokens, T]`.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let pooled = self.pooling.forward(x)?;
        self.projection.forward(&self.norm.forward(&pooled)?)
    }
}

/// A Gemma3 vision tower with its projector and image processor.
pub struct Gemma3Model {
    info: ModelInfo,
    tower: SiglipVisionTower,
    projector: Gemma3Projector,
    processor: Gemma3Processor,
    /// Frames (image or crop) per tower call.
    frames_per_call: usize,
    dtype: DType,
    device: Device,
}

impl Gemma3Model {
    pub fn load(ck: &Checkpoint) -> Result<Gemma3Model> {
        let cfg = ck.config();
        let vision_cfg = ck.vision_config()?;
        let vision_type = vision_cfg.string_or("model_type", "siglip_vision_model")?;
        if vision_type != "siglip_vision_model" {
            return Err(Error::bad_config(format!(
                "config.json: gemma3 with vision_config.model_type `{vision_type}` is not supported \
                 (siglip_vision_model)"
            )));
        }
        let vision = siglip::vision_config(&vision_cfg)?;
        let text_cfg = cfg
            .object("text_config")?
            .unwrap_or_else(|| ConfigObject::empty("config.json: text_config"));
        let text_dim = text_cfg.positive_or("hidden_size", DEFAULT_TEXT_HIDDEN, MAX_DIM)?;
        let d = vision.encoder.hidden_size;
        let root = ck.loader("");
        let tower = SiglipVisionTower::load(&root.sub("vision_tower"), &vision)?;
        let projector =
            Gemma3Projector::load(&root.sub("multi_modal_projector"), cfg, &vision, text_dim)?;
        let pooling = projector.pooling;
        let processor = Gemma3Processor::from_config(&ck.files.preprocessor, vision.image_size)?;
        let per_frame = attention_bytes(vision.encoder.num_heads, vision.num_patches());
        let frames_per_call = batch_for_budget(per_frame, 256 << 20);
        let tokens = pooling.side * pooling.side;
        let info = ModelInfo {
            family: "gemma3",
            model_type: ck.files.model_type()?,
            output_dim: text_dim,
            vision_dim: d,
            patch_size: vision.patch_size,
            image_size: (vision.image_size, vision.image_size),
            // With pan-and-scan on by default the count depends on the image's shape.
            tokens_per_image: (!processor.pan_and_scan.enabled).then_some(tokens),
            max_batch: frames_per_call,
            mixed_shape_batches: true,
            tokens: SpecialTokens {
                image: Some(
                    cfg.i64(cfg.aliased(&["image_token_index", "image_token_id"]))?
                        .unwrap_or(DEFAULT_IMAGE_TOKEN),
                ),
                image_start: Some(
                    cfg.i64(cfg.aliased(&["boi_token_index", "boi_token_id"]))?
                        .unwrap_or(DEFAULT_BOI),
                ),
                image_end: Some(
                    cfg.i64(cfg.aliased(&["eoi_token_index", "eoi_token_id"]))?
                        .unwrap_or(DEFAULT_EOI),
                ),
                image_break: None,
            },
        };
        Ok(Gemma3Model {
            info,
            tower,
            projector,
            processor,
            frames_per_call,
            dtype: ck.dtype,
            device: ck.device.clone(),
        })
    }
}

impl VisionModel for Gemma3Model {
    processor_methods!(tower: |m: &Self| m.projector.pooling.side;);

    /// Pan-and-scan, Gemma3's own.
    fn gemma_knobs(&self) -> GemmaKnobs {
        GemmaKnobs {
            pan_and_scan: PanAndScan::Takes,
            refuse_max_soft_tokens: true,
        }
    }

    fn forward(&self, batch: &[&Pixels]) -> Result<Vec<Tensor>> {
        let s = self.tower.config().image_size;
        forward_frames(
            batch,
            [3, s, s],
            self.frames_per_call,
            self.dtype,
            &self.device,
            |x| self.projector.forward(&self.tower.forward(x)?),
        )
    }

    fn prompt_layout(&self, pixels: &Pixels, _video: Option<&VideoMeta>) -> Result<PromptLayout> {
        // Gemma3Processor.full_image_sequence / replace_image_token.
        let t = &self.info.tokens;
        let per_frame = pixels.grid[1] * pixels.grid[2];
        let mut b = PromptBuilder::default();
        let image = |b: &mut PromptBuilder| {
            b.text("\n\n")
                .token(t.image_start)
                .rows(t.image, per_frame)
                .token(t.image_end)
                .text("\n\n");
        };
        let crops = pixels.grid[0].saturating_sub(1);
        if crops == 0 {
            image(&mut b);
        } else {
            b.text("Here is the original image ");
            image(&mut b);
            b.text(" and here are some crops to help you see better ");
            for k in 0..crops {
                if k > 0 {
                    b.text(" ");
                }
                image(&mut b);
            }
        }
        b.finish(pixels.n_tokens())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pooling_geometry_follows_the_reference() {
        // gemma-3: 896 / 14 = 64 patches, 256 tokens -> window 4, 16x16.
        let p = Pooling::new(896, 14, 256).unwrap();
        assert_eq!((p.patches, p.kernel, p.side), (64, 4, 16));
        // 5x5 patches, 4 tokens: window 2, the last row and column are dropped.
        let p = Pooling::new(30, 6, 4).unwrap();
        assert_eq!((p.patches, p.kernel, p.side), (5, 2, 2));
        // 6x6 patches, 16 tokens: window 6 // 4 = 1 gives 6x6 = 36 tokens, not 16.
        assert!(Pooling::new(48, 8, 16).is_err());
        // not a square: int(sqrt(8)) = 2 -> 2x2 = 4 != 8.
        assert!(Pooling::new(64, 8, 8).is_err());
        // more tokens per side than patches.
        assert!(Pooling::new(16, 8, 9).is_err());
    }

    #[test]
    fn pooling_averages_windows_in_raster_order() {
        // 1 image, 5x5 patches of 1 channel holding their index; 4 tokens -> window 2,
        // 2x2 outputs, patch row 4 and column 4 dropped.
        let p = Pooling::new(10, 2, 4).unwrap();
        let x: Vec<f32> = (0..25).map(|v| v as f32).collect();
        let t = Tensor::from_vec(x, (1, 25, 1), &Device::Cpu).unwrap();
        let y = p.forward(&t).unwrap().flatten_all().unwrap();
        let y = y.to_vec1::<f32>().unwrap();
        // window (0,0): 0,1,5,6 -> 3; (0,1): 2,3,7,8 -> 5; (1,0): 10,11,15,16 -> 13; (1,1): 15.
        assert_eq!(y, vec![3.0, 5.0, 13.0, 15.0]);
    }
}
