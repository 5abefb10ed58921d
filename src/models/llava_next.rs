//! LLaVA-NeXT (`model_type` `llava_next`, e.g. `llava-hf/llava-v1.6-mistral-7b-hf`; also
//! `llava_next_video`'s images) and LLaVA-OneVision (`llava_onevision`, e.g.
//! `llava-hf/llava-onevision-qwen2-7b-ov-hf`): `modeling_llava_next.py`,
//! `modeling_llava_onevision.py`, `get_image_features` + `pack_image_features`:
//!
//! 1. the image becomes a base image plus the tiles of its best `image_grid_pinpoints`
//!    resolution ([`crate::preprocess::llava_next`]);
//! 2. every tile runs through the CLIP or SigLIP tower (`vision_config.model_type`), whose
//!    `hidden_states[vision_feature_layer]` are selected as LLaVA selects them and projected
//!    by the LLaVA MLP projector;
//! 3. packing: the base image's tokens first; then the tiles' token grids joined into one
//!    `rows x cols` map (row-major over tiles), the rows or columns of the black padding
//!    removed (`unpad_image`, from the original size), for OneVision shrunk bilinearly when
//!    it exceeds `anyres_max_N` tiles' worth by more than 10% (`vision_aspect_ratio`), and
//!    `image_newline` appended to each row.
//!
//! The packed rows are what the language model receives at the `<image>` positions; the
//! processor expands one `<image>` into exactly that many placeholders.
//!
//! OneVision treats the images of a sample with several images differently (the processor
//! pads each to a square as one tile; the model appends one newline, nothing else): per call
//! with `do_image_splitting = false`, as `LlavaOnevisionProcessor` does for
//! `images=[[a, b]]`.

use candle_core::{DType, Device, Tensor};

use crate::config::{ConfigObject, ModelFiles};
use crate::error::{Error, Result, Status};
use crate::models::checkpoint::Checkpoint;
use crate::models::llava::{
    image_token_index, load_projector, vision_model_type_or, Features, LlavaTower, SelectedTower,
    VisionConfig,
};
use crate::models::pixels::forward_frame_counts;
use crate::models::projector::MlpProjector;
use crate::models::vit::MAX_DIM;
use crate::models::{attention_batch, GemmaKnobs, ModelInfo, SpecialTokens, VisionModel};
use crate::preprocess::llava_next::{read_pinpoints, AnyresKind, AnyresProcessor};
use crate::preprocess::tiling::{best_resolution, Pinpoint};
use crate::preprocess::{Limits, Pixels, PreprocessOptions, RgbImage};

/// Which configuration class the checkpoint is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LlavaNextVariant {
    /// `llava_next` (`LlavaNextConfig`).
    Next,
    /// `llava_next_video` (`LlavaNextVideoConfig`): LLaVA-NeXT's image path; its video
    /// path (the pooled frames) is not implemented.
    NextVideo,
    /// `llava_onevision` (`LlavaOnevisionConfig`).
    OneVision,
}

/// The CLIP ViT-L/14-336 `LlavaNextConfig` / `LlavaNextVideoConfig` build without a
/// `vision_config`.
const NEXT_VISION_CONFIG: &str = r#"{"model_type": "clip_vision_model", "intermediate_size": 4096,
    "hidden_size": 1024, "patch_size": 14, "image_size": 336, "num_hidden_layers": 24,
    "num_attention_heads": 16}"#;

/// The SigLIP so400m-384 `LlavaOnevisionConfig` builds without a `vision_config`.
const ONEVISION_VISION_CONFIG: &str = r#"{"model_type": "siglip_vision_model",
    "hidden_size": 1152, "intermediate_size": 4304, "patch_size": 14, "image_size": 384,
    "num_hidden_layers": 26, "num_attention_heads": 16, "vision_use_head": false}"#;

const NEXT_PINPOINTS: &[Pinpoint] = &[(336, 672), (672, 336), (672, 672), (1008, 336), (336, 1008)];

/// `LlavaOnevisionConfig`'s default: every `[h, w]` with both in 384..=2304 by 384.
fn onevision_pinpoints() -> Vec<Pinpoint> {
    let sides = (1..=6).map(|i| i * 384);
    sides
        .clone()
        .flat_map(|h| sides.clone().map(move |w| (h, w)))
        .collect()
}

impl LlavaNextVariant {
    fn class(self) -> &'static str {
        match self {
            LlavaNextVariant::Next => "LlavaNextConfig",
            LlavaNextVariant::NextVideo => "LlavaNextVideoConfig",
            LlavaNextVariant::OneVision => "LlavaOnevisionConfig",
        }
    }

    /// (default vision config, strategy, feature layer, image token).
    fn defaults(self) -> (&'static str, &'static str, i64, i64) {
        match self {
            LlavaNextVariant::Next => (NEXT_VISION_CONFIG, "default", -2, 32000),
            LlavaNextVariant::NextVideo => (NEXT_VISION_CONFIG, "default", -2, 32001),
            LlavaNextVariant::OneVision => (ONEVISION_VISION_CONFIG, "full", -1, 151646),
        }
    }

    /// The tower `vision_config.model_type` names (the class's own when absent): CLIP or
    /// SigLIP.
    fn tower_kind(self, files: &ModelFiles) -> Result<(LlavaTower, String)> {
        let default_type = match self {
            LlavaNextVariant::OneVision => "siglip_vision_model",
            _ => "clip_vision_model",
        };
        let vision_type = vision_model_type_or(&files.config, default_type)?;
        match LlavaTower::named(&vision_type) {
            Some(kind) => Ok((kind, vision_type)),
            None => Err(Error::new(
                Status::UnsupportedModel,
                format!(
                    "config.json: vision_config.model_type `{vision_type}` is not supported \
                     for {} (clip_vision_model, siglip_vision_model)",
                    files.model_type()?
                ),
            )),
        }
    }

    /// The tower's config and its selected features, which `pack_image_features` must be
    /// able to reshape to the tile's square token grid.
    fn vision(self, files: &ModelFiles) -> Result<(VisionConfig, Features)> {
        let cfg = &files.config;
        let (default_vision, strategy, layer, _) = self.defaults();
        let (kind, vision_type) = self.tower_kind(files)?;
        let vision = VisionConfig::read_or(cfg, kind, self.class(), default_vision)?;
        let features = Features::read_or(cfg, &vision, strategy, layer)?;
        let side = vision.tower().grid();
        if features.tokens != side * side {
            return Err(Error::bad_config(format!(
                "config.json: vision_feature_select_strategy with this {vision_type} tower \
                 leaves {} tokens per tile, not the {side}x{side} grid that \
                 pack_image_features reshapes (use `default` with CLIP, `full` with SigLIP)",
                features.tokens
            )));
        }
        Ok((vision, features))
    }

    /// config.json's `image_grid_pinpoints` (the class default when absent), each a
    /// multiple of the tower's `tile`-pixel input.
    fn pinpoints(self, cfg: &ConfigObject, tile: usize) -> Result<Vec<Pinpoint>> {
        let pinpoints = match read_pinpoints(cfg, tile)? {
            Some(p) => p,
            None => match self {
                LlavaNextVariant::OneVision => onevision_pinpoints(),
                _ => NEXT_PINPOINTS.to_vec(),
            },
        };
        if let Some(bad) = pinpoints
            .iter()
            .find(|(h, w)| h % tile != 0 || w % tile != 0)
        {
            return Err(Error::bad_config(format!(
                "config.json: image_grid_pinpoints (class default) {bad:?} is not a multiple \
                 of the tower's {tile}-pixel input"
            )));
        }
        Ok(pinpoints)
    }

    /// The anyres image processor, which must tile by the model's `pinpoints`.
    fn processor(
        self,
        files: &ModelFiles,
        tile: usize,
        pinpoints: &[Pinpoint],
    ) -> Result<AnyresProcessor> {
        let kind = match self {
            LlavaNextVariant::OneVision => AnyresKind::OneVision,
            _ => AnyresKind::Next,
        };
        let processor = AnyresProcessor::from_config(&files.preprocessor, kind, tile, pinpoints)?;
        if processor.pinpoints != pinpoints {
            return Err(Error::bad_config(format!(
                "{}: image_grid_pinpoints differ from config.json's (the processor would count \
                 other tiles than the model packs)",
                files.preprocessor.location()
            )));
        }
        Ok(processor)
    }
}

/// `int(vision_aspect_ratio.strip("anyres_max_"))`: the tile budget above which OneVision
/// shrinks the packed map.
fn anyres_max(cfg: &ConfigObject, key_location: &str) -> Result<usize> {
    let s = cfg.string_or("vision_aspect_ratio", "anyres_max_9")?;
    let digits = s.trim_matches(|c: char| "anyres_max_".contains(c));
    match digits.parse::<usize>() {
        Ok(n) if (1..=1 << 20).contains(&n) => Ok(n),
        _ => Err(Error::bad_config(format!(
            "{key_location}: vision_aspect_ratio `{s}` is not `anyres_max_N` with N >= 1"
        ))),
    }
}

/// How one image's tile features are packed (`pack_image_features`), all in tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Packing {
    /// Tiles down and across (`get_anyres_image_grid_shape`).
    tiles_h: usize,
    tiles_w: usize,
    /// The rows and columns kept by `unpad_image`: `(first, count)`.
    rows: (usize, usize),
    cols: (usize, usize),
    /// The map's size after OneVision's downsampling (`rows.1 x cols.1` without it).
    out: (usize, usize),
}

/// A LLaVA-NeXT / OneVision tower with its projector, `image_newline` and processor.
pub struct LlavaNextModel {
    info: ModelInfo,
    variant: LlavaNextVariant,
    tower: SelectedTower,
    projector: MlpProjector,
    /// `[text_dim]`.
    newline: Tensor,
    processor: AnyresProcessor,
    /// The model config's `image_grid_pinpoints`.
    pinpoints: Vec<Pinpoint>,
    /// Tokens per side of a tile.
    side: usize,
    /// OneVision's `anyres_max_N`.
    max_tiles: Option<usize>,
    tiles_per_call: usize,
    dtype: DType,
    device: Device,
}

impl LlavaNextModel {
    pub fn load(ck: &Checkpoint, variant: LlavaNextVariant) -> Result<LlavaNextModel> {
        let cfg = ck.config();
        let (vision, features) = variant.vision(ck.files)?;
        let t = vision.tower();
        let tile = t.image_size;
        let pinpoints = variant.pinpoints(cfg, tile)?;
        let processor = variant.processor(ck.files, tile, &pinpoints)?;
        let max_tiles = match variant {
            LlavaNextVariant::OneVision => Some(anyres_max(cfg, "config.json")?),
            _ => None,
        };
        check_processor(
            &ck.files.processor,
            variant,
            t.patch_size,
            &features,
            max_tiles,
        )?;
        let root = ck.loader("");
        let tower = SelectedTower::load(&root, &vision, features)?;
        let (projector, text_dim) = load_projector(&root, cfg, tower.width)?;
        let newline = root.tensor("image_newline", &[text_dim])?;
        let seq = t.num_patches() + usize::from(matches!(vision, VisionConfig::Clip(_)));
        let tiles_per_call = attention_batch(t.encoder.num_heads, seq);
        let info = ModelInfo {
            family: "llava_next",
            model_type: ck.files.model_type()?,
            output_dim: text_dim,
            vision_dim: t.encoder.hidden_size,
            patch_size: t.patch_size,
            image_size: (tile, tile),
            tokens_per_image: None,
            max_batch: tiles_per_call,
            mixed_shape_batches: true,
            tokens: SpecialTokens {
                image: Some(image_token_index(cfg, variant.defaults().3)?),
                ..SpecialTokens::default()
            },
        };
        Ok(LlavaNextModel {
            info,
            variant,
            tower,
            projector,
            newline,
            processor,
            pinpoints,
            side: t.grid(),
            max_tiles,
            tiles_per_call,
            dtype: ck.dtype,
            device: ck.device.clone(),
        })
    }

    /// The packing of an image of `height` x `width` pixels (its features' layout).
    fn packing(&self, height: usize, width: usize) -> Result<Packing> {
        let (h32, w32) = (
            u32::try_from(height).map_err(|_| Error::invalid_argument("image too tall"))?,
            u32::try_from(width).map_err(|_| Error::invalid_argument("image too wide"))?,
        );
        if h32 == 0 || w32 == 0 {
            return Err(Error::invalid_argument("the image has no pixels"));
        }
        let (ph, pw) = best_resolution(h32, w32, &self.pinpoints)
            .ok_or_else(|| Error::bad_config("config.json: image_grid_pinpoints is empty"))?;
        let tile = self.info.image_size.0;
        let (tiles_h, tiles_w) = (ph / tile, pw / tile);
        let g = self.side;
        let (cur_h, cur_w) = (tiles_h * g, tiles_w * g);
        let (oh, ow) = (height as f64, width as f64);
        // unpad_image: the side the image does not fill loses (cur - new) // 2 on each end.
        let (mut rows, mut cols) = ((0, cur_h), (0, cur_w));
        if ow / oh > cur_w as f64 / cur_h as f64 {
            let new_h = round7(oh * (cur_w as f64 / ow));
            let pad = (cur_h as i64 - new_h).div_euclid(2);
            rows = unpadded(cur_h, pad)?;
        } else {
            let new_w = round7(ow * (cur_h as f64 / oh));
            let pad = (cur_w as i64 - new_w).div_euclid(2);
            cols = unpadded(cur_w, pad)?;
        }
        let mut out = (rows.1, cols.1);
        if let Some(max) = self.max_tiles {
            let ratio = ((rows.1 * cols.1) as f64 / (max * g * g) as f64).sqrt();
            if ratio > 1.1 {
                out = (
                    (rows.1 as f64 / ratio).floor() as usize,
                    (cols.1 as f64 / ratio).floor() as usize,
                );
            }
        }
        Ok(Packing {
            tiles_h,
            tiles_w,
            rows,
            cols,
            out,
        })
    }

    /// Embeddings of an image whose tile features (base first) are `x` (`[tiles * g², D]`),
    /// packed as `pack_image_features` packs them.
    fn pack(&self, x: &Tensor, extra: &[usize]) -> Result<Tensor> {
        let g = self.side;
        let d = self.info.output_dim;
        let [height, width, split] = extra else {
            return Err(Error::invalid_argument(
                "preprocessed image lacks its original size (not preprocessed by this model)",
            ));
        };
        let newline = self.newline.to_dtype(x.dtype())?;
        if *split == 0 {
            // One tile (OneVision multi-image): its tokens, then one newline.
            return Ok(Tensor::cat(&[x, &newline.reshape((1, d))?], 0)?);
        }
        let p = self.packing(*height, *width)?;
        let n_tiles = p.tiles_h * p.tiles_w;
        if x.dim(0)? != (1 + n_tiles) * g * g {
            return Err(Error::invalid_argument(format!(
                "preprocessed image holds {} tile rows, its size calls for {}",
                x.dim(0)?,
                (1 + n_tiles) * g * g
            )));
        }
        let base = x.narrow(0, 0, g * g)?;
        let map = x
            .narrow(0, g * g, n_tiles * g * g)?
            .reshape((p.tiles_h, p.tiles_w, g, g, d))?
            .permute((0, 2, 1, 3, 4))?
            .reshape((p.tiles_h * g, p.tiles_w * g, d))?
            .narrow(0, p.rows.0, p.rows.1)?
            .narrow(1, p.cols.0, p.cols.1)?;
        let (h, w) = p.out;
        if h == 0 {
            return Ok(base);
        }
        let nl = newline.reshape((1, 1, d))?.broadcast_as((h, 1, d))?;
        let rows = if w == 0 {
            nl.reshape((h, d))?
        } else {
            let map = if p.out != (p.rows.1, p.cols.1) {
                bilinear(&map, p.out)?
            } else {
                map
            };
            Tensor::cat(&[&map, &nl], 1)?.reshape((h * (w + 1), d))?
        };
        Ok(Tensor::cat(&[&base, &rows], 0)?)
    }

    fn preprocess_split(&self, image: &RgbImage, split: bool, limits: &Limits) -> Result<Pixels> {
        let g = self.side;
        let tokens = if split {
            let p = self.packing(image.height as usize, image.width as usize)?;
            g * g + p.out.0 * (p.out.1 + 1)
        } else {
            g * g + 1
        };
        limits.check_tokens(tokens as u64, &|| "the image's packed tiles".to_string())?;
        let extra = vec![
            image.height as usize,
            image.width as usize,
            usize::from(split),
        ];
        self.processor
            .process(image, split, [1, 1, tokens], extra, limits)
    }
}

/// Python's `int(round(x, 7))` for the non-negative sizes of `unpad_image`.
fn round7(x: f64) -> i64 {
    ((x * 1e7).round() / 1e7) as i64
}

/// `tensor[pad : cur - pad]` as `(first, count)`. A very flat image can keep nothing
/// (count 0), as in the reference: then it yields only the base image's tokens (no rows) or
/// only the newlines (no columns).
fn unpadded(cur: usize, pad: i64) -> Result<(usize, usize)> {
    let cur = cur as i64;
    if pad < 0 || cur - 2 * pad < 0 {
        return Err(Error::invalid_argument(format!(
            "unpadding {cur} tokens by {pad} on each side leaves nothing to keep"
        )));
    }
    Ok((pad as usize, (cur - 2 * pad) as usize))
}

/// `F.interpolate(mode="bilinear", align_corners=False)` of a `[H, W, C]` map to `out`
/// (`(H', W')`), weights in f32 as torch computes them.
fn bilinear(x: &Tensor, out: (usize, usize)) -> Result<Tensor> {
    let dtype = x.dtype();
    let x = x.to_dtype(DType::F32)?.contiguous()?;
    let x = interp_axis(&x, 0, out.0)?;
    let x = interp_axis(&x.contiguous()?, 1, out.1)?;
    Ok(x.to_dtype(dtype)?)
}

/// Linear interpolation of `x` along `axis` (0 or 1 of `[H, W, C]`) to `n` samples.
fn interp_axis(x: &Tensor, axis: usize, n: usize) -> Result<Tensor> {
    let len = x.dim(axis)?;
    if n == 0 {
        return Err(Error::invalid_argument("bilinear resize to zero tokens"));
    }
    let scale = len as f32 / n as f32;
    let (mut i0, mut i1, mut w0, mut w1) = (
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
    );
    for o in 0..n {
        let src = (scale * (o as f32 + 0.5) - 0.5).max(0.0);
        let a = (src as usize).min(len - 1);
        let b = if a < len - 1 { a + 1 } else { a };
        let l1 = src - a as f32;
        i0.push(a as u32);
        i1.push(b as u32);
        w0.push(1.0 - l1);
        w1.push(l1);
    }
    let dev = x.device();
    let a = x.index_select(&Tensor::new(i0, dev)?, axis)?;
    let b = x.index_select(&Tensor::new(i1, dev)?, axis)?;
    let shape: Vec<usize> = (0..3).map(|d| if d == axis { n } else { 1 }).collect();
    let w0 = Tensor::new(w0, dev)?.reshape(shape.as_slice())?;
    let w1 = Tensor::new(w1, dev)?.reshape(shape.as_slice())?;
    Ok((a.broadcast_mul(&w0)? + b.broadcast_mul(&w1)?)?)
}

/// Refuses a `processor_config.json` whose token count could never match the model's (the
/// reference would fail at the placeholder scatter): another `patch_size` (LLaVA-NeXT), a
/// `num_image_tokens` other than the tower's (OneVision), another `vision_aspect_ratio`.
fn check_processor(
    p: &ConfigObject,
    variant: LlavaNextVariant,
    patch: usize,
    features: &Features,
    max_tiles: Option<usize>,
) -> Result<()> {
    let loc = p.location();
    let per_tile = features.tokens;
    let drop = p.string_or("vision_feature_select_strategy", "")? == "default";
    match variant {
        LlavaNextVariant::OneVision => {
            if let Some(n) = p.usize_max("num_image_tokens", MAX_DIM * MAX_DIM)? {
                if n.saturating_sub(usize::from(drop)) != per_tile {
                    return Err(Error::bad_config(format!(
                        "{loc}: num_image_tokens {n} disagrees with the tower's {per_tile} \
                         tokens per tile"
                    )));
                }
            }
            if p.contains("vision_aspect_ratio") {
                let mine = max_tiles.unwrap_or(9);
                if anyres_max(p, loc)? != mine {
                    return Err(Error::bad_config(format!(
                        "{loc}: vision_aspect_ratio disagrees with config.json's anyres_max_{mine}"
                    )));
                }
            }
        }
        _ => {
            if let Some(ps) = p.usize_max("patch_size", MAX_DIM)? {
                if ps != patch {
                    return Err(Error::bad_config(format!(
                        "{loc}: patch_size {ps} disagrees with the tower's {patch}"
                    )));
                }
            }
        }
    }
    Ok(())
}

impl VisionModel for LlavaNextModel {
    fn info(&self) -> &ModelInfo {
        &self.info
    }

    fn preprocess_with(
        &self,
        image: &RgbImage,
        opts: &PreprocessOptions,
        limits: &Limits,
    ) -> Result<Pixels> {
        // The engine refuses knobs not in size_knobs(): only OneVision reaches here with one.
        let split = opts.do_image_splitting.unwrap_or(true);
        self.preprocess_split(image, split, limits)
    }

    fn gemma_knobs(&self) -> GemmaKnobs {
        GemmaKnobs::tiled("max_patches")
    }

    fn size_knobs(&self) -> &'static [&'static str] {
        match self.variant {
            // `do_image_splitting = false`: an image of a multi-image sample.
            LlavaNextVariant::OneVision => &["do_image_splitting"],
            _ => &[],
        }
    }

    fn forward(&self, batch: &[&Pixels]) -> Result<Vec<Tensor>> {
        let s = self.info.image_size.0;
        let counts: Vec<usize> = batch
            .iter()
            .map(|p| p.shape.first().copied().unwrap_or(0))
            .collect();
        let rows = forward_frame_counts(
            batch,
            &counts,
            [3, s, s],
            self.tiles_per_call,
            self.dtype,
            &self.device,
            |x| self.projector.forward(&self.tower.forward(x)?),
        )?;
        rows.iter()
            .zip(batch)
            .map(|(x, p)| self.pack(x, &p.extra))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bilinear_matches_torch_align_corners_false() {
        // torch: F.interpolate(torch.arange(12.).view(1, 1, 3, 4), size=[2, 3],
        // mode="bilinear") = [[1.1667, 2.5000, 3.8333], [7.1667, 8.5000, 9.8333]].
        let x = Tensor::arange(0f32, 12., &Device::Cpu)
            .unwrap()
            .reshape((3, 4, 1))
            .unwrap();
        let y = bilinear(&x, (2, 3)).unwrap();
        let v: Vec<f32> = y.flatten_all().unwrap().to_vec1().unwrap();
        let want = [1.1667, 2.5, 3.8333, 7.1667, 8.5, 9.8333];
        for (a, b) in v.iter().zip(want) {
            assert!((a - b).abs() < 1e-3, "{v:?}");
        }
    }

    #[test]
    fn anyres_max_parses_as_python_strip() {
        let cfg = |s: &str| {
            ConfigObject::parse("t", &format!(r#"{{"vision_aspect_ratio": "{s}"}}"#)).unwrap()
        };
        assert_eq!(anyres_max(&cfg("anyres_max_9"), "t").unwrap(), 9);
        assert_eq!(anyres_max(&cfg("anyres_max_16"), "t").unwrap(), 16);
        assert!(anyres_max(&cfg("anyres_max_0"), "t").is_err());
        assert!(anyres_max(&cfg("anyres"), "t").is_err());
        assert_eq!(round7(22.999_999_999_96), 23);
        assert_eq!(round7(22.6), 22);
    }
}
