//! Idefics3 (`model_type` `idefics3`, `Idefics3ForConditionalGeneration`, e.g.
//! `HuggingFaceM4/Idefics3-8B-Llama3` and SmolVLM v1, which shipped as `idefics3`) and SmolVLM
//! (`smolvlm`, `SmolVLMForConditionalGeneration`, e.g. SmolVLM2), `modeling_idefics3.py` /
//! `modeling_smolvlm.py` (the same image path):
//!
//! 1. each image is cut into `M` x `M` tiles plus a global image by the image processor
//!    ([`crate::preprocess::idefics3`]);
//! 2. every tile runs through the SigLIP-like tower (`Idefics3VisionTransformer`): a biased
//!    patch convolution, learned positions looked up through *bucketized* patch coordinates
//!    (`Idefics3VisionEmbeddings`: the tile's `n` x `n` patch grid mapped onto the table's
//!    `N` x `N` grid, `N` = `image_size / patch_size`, with torch's float32 arithmetic — not
//!    always the identity even when `n` = `N`), the SigLIP encoder, `post_layernorm`;
//! 3. the connector (`Idefics3Connector`): pixel shuffle by `scale_factor`, then
//!    `modality_projection.proj` (a linear map without bias) to the text width.
//!
//! The image's embeddings are its tiles' in order (grid tiles row-major, then the global
//! image), what the language model receives at the `<image>` positions.

use candle_core::{DType, Device, Tensor};

use crate::config::{ConfigObject, ModelFiles};
use crate::error::{Error, Result};
use crate::models::activation::Activation;
use crate::models::checkpoint::Checkpoint;
use crate::models::layers::{LayerNorm, Linear, Loader};
use crate::models::pixels::{forward_frames, patchify};
use crate::models::projector::{pixel_shuffle, text_width};
use crate::models::tiles::check_tokens_per_tile;
use crate::models::vit::{Encoder, VitDefaults, VitTowerConfig, MAX_DIM};
use crate::models::{
    attention_batch, processor_methods, GemmaKnobs, ModelInfo, PromptBuilder, PromptLayout,
    SpecialTokens, VisionModel,
};
use crate::preprocess::idefics3::Idefics3Processor;
use crate::preprocess::qwen_video::VideoMeta;
use crate::preprocess::Pixels;
use crate::tokenizer::AddedTokens;

/// Which family a checkpoint is (they differ only in names and processor classes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Idefics3Variant {
    /// `idefics3`.
    Idefics3,
    /// `smolvlm`.
    SmolVlm,
}

/// `Idefics3Config.image_token_id` / `SmolVLMConfig.image_token_id` default.
const DEFAULT_IMAGE_TOKEN: i64 = 128257;

/// `Idefics3VisionConfig` / `SmolVLMVisionConfig` class defaults.
const DEFAULTS: VitDefaults = VitDefaults {
    tower: VitTowerConfig {
        image_size: 224,
        patch_size: 32,
        encoder: crate::models::vit::VitConfig {
            hidden_size: 1152,
            intermediate_size: 3072,
            num_layers: 12,
            num_heads: 16,
            layer_norm_eps: 1e-6,
            act: Activation::GeluTanh,
        },
    },
    act_name: "gelu_pytorch_tanh",
};

/// The boundaries `torch.arange(1 / n, 1.0, 1 / n)` holds on the CPU: its length is
/// `ceil((end - start) / step)` in doubles, and its values come from torch's vectorized
/// kernel, which computes a float32 base `start + step * i` every 8 elements (two vectors at
/// a time while 16 remain) and `base + k * step` from it, the tail element by element.
fn arange_boundaries(n: usize) -> Vec<f32> {
    let step = 1.0 / n as f64;
    let count = ((1.0 - step) / step).ceil().max(0.0) as usize;
    const V: usize = 8;
    let mut out = Vec::with_capacity(count);
    let mut i = 0;
    while i + 2 * V <= count {
        for _ in 0..2 {
            let base = (step + step * i as f64) as f32;
            out.extend((0..V).map(|k| (f64::from(base) + k as f64 * step) as f32));
            i += V;
        }
    }
    while i < count {
        out.push((step + step * i as f64) as f32);
        i += 1;
    }
    out
}

/// The position-table row of each patch of an `n` x `n` tile for a table of `side` x `side`
/// positions (`Idefics3VisionEmbeddings.forward` with an unpadded tile): row-major.
pub fn position_ids(n: usize, side: usize) -> Vec<u32> {
    let boundaries = arange_boundaries(side);
    let step = 1.0f32 / n as f32;
    let limit = (1.0f64 - 1e-6) as f32;
    let bucket: Vec<usize> = (0..n)
        .map(|k| {
            let frac = (k as f32 * step).min(limit);
            // torch.bucketize(right=True): how many boundaries are <= frac.
            boundaries.iter().filter(|&&b| b <= frac).count()
        })
        .collect();
    let mut ids = Vec::with_capacity(n * n);
    for &h in &bucket {
        for &w in &bucket {
            ids.push((h * side + w) as u32);
        }
    }
    ids
}

/// `Idefics3VisionTransformer` for tiles of one size, with the connector.
struct Tower {
    patch: Linear,
    /// The position rows of one tile's patches, `[n * n, D]`.
    positions: Tensor,
    encoder: Encoder,
    post_layernorm: LayerNorm,
    patch_size: usize,
    /// Patches per tile side.
    n: usize,
    scale: usize,
    proj: Linear,
}

impl Tower {
    /// Loads the tower (`model.vision_model.`) for tiles of `n` x `n` patches and the
    /// connector (`model.connector.`) from `v`'s width, shuffled by `scale`, to `text_dim`.
    fn load(
        root: &Loader,
        v: &VitTowerConfig,
        n: usize,
        scale: usize,
        text_dim: usize,
    ) -> Result<Tower> {
        let d = v.encoder.hidden_size;
        let tl = root.sub("vision_model");
        let emb = tl.sub("embeddings");
        let side = v.grid();
        let table = emb.tensor("position_embedding.weight", &[side * side, d])?;
        let ids = Tensor::from_vec(position_ids(n, side), n * n, table.device())?;
        let proj = root.sub("connector").sub("modality_projection");
        Ok(Tower {
            patch: emb.patch_embedding("patch_embedding", d, v.patch_size, true)?,
            positions: table.index_select(&ids, 0)?,
            encoder: Encoder::load_first(&tl.sub("encoder"), &v.encoder, v.encoder.num_layers)?,
            post_layernorm: tl.layer_norm("post_layernorm", d, v.encoder.layer_norm_eps)?,
            patch_size: v.patch_size,
            n,
            scale,
            proj: proj.linear("proj", d * scale * scale, text_dim, false)?,
        })
    }

    /// `[b, 3, M, M]` tiles → `[b, (n / scale)^2, text_dim]`.
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let patches = self.patch.forward(&patchify(x, self.patch_size)?)?;
        let h = patches.broadcast_add(&self.positions)?;
        let h = self.encoder.forward(&h, usize::MAX)?;
        let h = self.post_layernorm.forward(&h)?;
        let shuffled = pixel_shuffle(&h, self.n, self.scale)?;
        self.proj.forward(&shuffled)
    }
}

/// The processor's prompt strings.
struct PromptStrings {
    fake: String,
    global: String,
    added: AddedTokens,
}

impl PromptStrings {
    /// Idefics3Processor's fixed strings; SmolVLMProcessor's from the tokenizer.
    fn read(files: &ModelFiles, variant: Idefics3Variant) -> PromptStrings {
        let (fake, global) = match variant {
            Idefics3Variant::Idefics3 => (
                "<fake_token_around_image>".to_string(),
                "<global-img>".to_string(),
            ),
            Idefics3Variant::SmolVlm => (
                tokenizer_string(files, "fake_image_token", "<fake_token_around_image>"),
                tokenizer_string(files, "global_image_token", "<global-img>"),
            ),
        };
        PromptStrings {
            fake,
            global,
            added: AddedTokens::read(&files.dir),
        }
    }
}

/// An Idefics3 / SmolVLM tower with its connector and image processor.
pub struct Idefics3Model {
    info: ModelInfo,
    tower: Tower,
    processor: Idefics3Processor,
    prompt: PromptStrings,
    tiles_per_call: usize,
    dtype: DType,
    device: Device,
}

impl Idefics3Variant {
    fn family(self) -> &'static str {
        match self {
            Idefics3Variant::Idefics3 => "idefics3",
            Idefics3Variant::SmolVlm => "smolvlm",
        }
    }
}

/// Patches per side of a tile of `tile` pixels: `patch`-pixel patches, a count that
/// `scale` must divide for the connector's pixel shuffle.
fn tile_patches(files: &ModelFiles, tile: usize, patch: usize, scale: usize) -> Result<usize> {
    let n = tile / patch;
    if n == 0 || n % scale != 0 {
        return Err(Error::bad_config(format!(
            "{}: tiles of max_image_size {tile} px hold {n}x{n} patches of {patch} px, which \
             scale_factor {scale} cannot pixel-shuffle (the reference cannot either)",
            files.preprocessor.location()
        )));
    }
    Ok(n)
}

/// A string attribute of the tokenizer (`tokenizer_config.json`), as SmolVLMProcessor reads
/// `fake_image_token` / `global_image_token` with `getattr(tokenizer, name, default)`.
fn tokenizer_string(files: &ModelFiles, key: &str, default: &str) -> String {
    let path = files.dir.join("tokenizer_config.json");
    ConfigObject::read(&path)
        .ok()
        .and_then(|c| c.string(key).ok().flatten())
        .unwrap_or_else(|| default.to_string())
}

impl Idefics3Model {
    pub fn load(ck: &Checkpoint, variant: Idefics3Variant) -> Result<Idefics3Model> {
        let cfg = ck.config();
        let v = VitTowerConfig::read(&ck.vision_config()?, &DEFAULTS)?;
        let scale = cfg.positive_or("scale_factor", 2, MAX_DIM)?;
        let processor = Idefics3Processor::from_config(&ck.files.preprocessor)?;
        let n = tile_patches(ck.files, processor.tile, v.patch_size, scale)?;
        check_tokens_per_tile(
            &ck.files.processor,
            "image_seq_len",
            (n / scale) * (n / scale),
            "(max_image_size / patch_size / scale_factor)^2",
        )?;
        let root = ck.loader("model.");
        let connector = root.sub("connector").sub("modality_projection");
        let text_dim = text_width(cfg, &connector, "proj")?;
        let tower = Tower::load(&root, &v, n, scale, text_dim)?;
        let prompt = PromptStrings::read(ck.files, variant);
        let tiles_per_call = attention_batch(v.encoder.num_heads, n * n);
        let m = processor.tile;
        let info = ModelInfo {
            family: variant.family(),
            model_type: ck.files.model_type()?,
            output_dim: text_dim,
            vision_dim: v.encoder.hidden_size,
            patch_size: v.patch_size,
            image_size: (m, m),
            tokens_per_image: None,
            max_batch: tiles_per_call,
            mixed_shape_batches: true,
            tokens: SpecialTokens {
                image: Some(cfg.i64("image_token_id")?.unwrap_or(DEFAULT_IMAGE_TOKEN)),
                image_start: prompt.added.id(&prompt.fake),
                image_end: prompt.added.id(&prompt.fake),
                image_break: None,
            },
        };
        Ok(Idefics3Model {
            info,
            tower,
            processor,
            prompt,
            tiles_per_call,
            dtype: ck.dtype,
            device: ck.device.clone(),
        })
    }

    fn tile_grid(&self) -> usize {
        self.tower.n / self.tower.scale
    }
}

impl VisionModel for Idefics3Model {
    processor_methods!(tower: Self::tile_grid; "longest_edge", "do_image_splitting");

    fn gemma_knobs(&self) -> GemmaKnobs {
        GemmaKnobs::tiled("do_image_splitting")
    }

    fn forward(&self, batch: &[&Pixels]) -> Result<Vec<Tensor>> {
        let m = self.processor.tile;
        forward_frames(
            batch,
            [3, m, m],
            self.tiles_per_call,
            self.dtype,
            &self.device,
            |x| self.tower.forward(x),
        )
    }

    fn prompt_layout(&self, pixels: &Pixels, _video: Option<&VideoMeta>) -> Result<PromptLayout> {
        // Idefics3Processor / SmolVLMProcessor: per grid tile <fake_token_around_image>,
        // <row_r_col_c> and its placeholders, "\n" after each row; then "\n", and the global
        // image as <fake_token_around_image><global-img> placeholders
        // <fake_token_around_image> (the whole prompt of an image that is not split).
        let [rows, cols] = pixels.extra[..] else {
            return Err(Error::invalid_argument(format!(
                "preprocessed image without its tile grid (extra {:?})",
                pixels.extra
            )));
        };
        let (t, s) = (&self.info.tokens, &self.prompt);
        let fake = |b: &mut PromptBuilder| {
            b.special(t.image_start, &s.fake);
        };
        let per_tile = pixels.grid[1] * pixels.grid[2];
        if pixels.grid[0] != if rows == 0 { 1 } else { rows * cols + 1 } {
            return Err(Error::invalid_argument(format!(
                "preprocessed image of {} tiles does not match its {rows}x{cols} grid",
                pixels.grid[0]
            )));
        }
        let mut b = PromptBuilder::default();
        for r in 1..=rows {
            for c in 1..=cols {
                fake(&mut b);
                let tag = format!("<row_{r}_col_{c}>");
                b.special(s.added.id(&tag), &tag).rows(t.image, per_tile);
            }
            b.text("\n");
        }
        if rows > 0 {
            b.text("\n");
        }
        fake(&mut b);
        b.special(s.added.id(&s.global), &s.global)
            .rows(t.image, per_tile);
        fake(&mut b);
        b.finish(pixels.n_tokens())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn position_buckets_follow_torch() {
        // Values of Idefics3VisionEmbeddings (torch 2.15, CPU) for an unpadded tile.
        assert_eq!(position_ids(4, 4), (0..16).collect::<Vec<u32>>());
        // n = N = 19: torch's float32 boundaries put patch 12 in bucket 11.
        let b19: Vec<u32> = position_ids(19, 19).iter().take(19).copied().collect();
        let want: Vec<u32> = [
            0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 11, 13, 14, 15, 16, 17, 18,
        ]
        .into_iter()
        .collect();
        assert_eq!(b19, want);
        // A 6x6 tile on an 8x8 table.
        let b: Vec<u32> = position_ids(6, 8).iter().take(6).copied().collect();
        assert_eq!(b, vec![0, 1, 2, 4, 5, 6]);
        assert_eq!(arange_boundaries(26).len(), 25);
        assert_eq!(arange_boundaries(27).len(), 27);
        assert_eq!(arange_boundaries(1).len(), 0);
    }

    #[test]
    fn position_ids_equal_the_fixtures_hooked_lookup() {
        // scripts/fixtures/idefics3.py records what position_embedding looked up for a tile.
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
        for name in ["idefics3_f32", "smolvlm_hub_bf16"] {
            let text = std::fs::read_to_string(dir.join(name).join("expected.json")).unwrap();
            let exp: serde_json::Value = serde_json::from_str(&text).unwrap();
            let p = &exp["position_ids"];
            let n = p["tile_patches_per_side"].as_u64().unwrap() as usize;
            let side = p["table_side"].as_u64().unwrap() as usize;
            let want: Vec<u32> = p["ids"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_u64().unwrap() as u32)
                .collect();
            assert_eq!(position_ids(n, side), want, "{name}");
        }
    }
}
