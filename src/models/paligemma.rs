//! PaliGemma 1 and 2 (`model_type` `paligemma`, `PaliGemmaForConditionalGeneration`,
//! `modeling_paligemma.py`, `PaliGemmaModel.get_image_features`): the SigLIP tower's
//! `last_hidden_state` (every layer, then `post_layernorm`; the attention-pooling head is
//! never used) through `PaliGemmaMultiModalProjector`, one biased `linear` to
//! `projection_dim`. transformers 5.x passes that to the language model unscaled.
//!
//! Preprocessing is `SiglipImageProcessor`'s (resize to the tower's square, rescale,
//! normalize). The prompt (`PaliGemmaProcessor`) is the image token repeated
//! `image_seq_length` times per image, then `<bos>`, the text and `"\n"`: the image token is
//! `image_token_index` (256000 by default) and `image_seq_length` must equal the tower's
//! patch count.

use crate::config::ConfigObject;
use crate::error::{Error, Result};
use crate::models::checkpoint::Checkpoint;
use crate::models::siglip::{self, SiglipModel, SiglipVisionConfig, SiglipVisionTower};
use crate::models::vit::MAX_DIM;
use crate::models::{attention_bytes, batch_for_budget, ModelInfo, SpecialTokens};
use crate::preprocess::fixed_size::FixedSizeProcessor;
use crate::preprocess::resample::Filter;

/// `PaliGemmaConfig` class defaults.
const DEFAULT_IMAGE_TOKEN: i64 = 256_000;
const DEFAULT_PROJECTION_DIM: usize = 2048;

/// The `vision_config` PaliGemmaConfig builds when config.json has none (its
/// `sub_configs_defaults` init kwargs; applied only then).
const DEFAULT_VISION_CONFIG: &str = r#"{"model_type": "siglip_vision_model",
    "intermediate_size": 4096, "hidden_size": 1152, "patch_size": 14, "image_size": 224,
    "num_hidden_layers": 27, "num_attention_heads": 16, "vision_use_head": false}"#;

/// `vision_config` (PaliGemmaConfig's default when absent), which must be a SigLIP tower.
fn vision_config(cfg: &ConfigObject) -> Result<SiglipVisionConfig> {
    let v = match cfg.object("vision_config")? {
        Some(v) => v,
        None => ConfigObject::parse(
            "config.json: vision_config (PaliGemmaConfig default)",
            DEFAULT_VISION_CONFIG,
        )?,
    };
    let kind = v.string_or("model_type", "siglip_vision_model")?;
    if kind != "siglip_vision_model" {
        return Err(Error::bad_config(format!(
            "{}: model_type `{kind}`: paligemma runs a `siglip_vision_model` tower",
            v.location()
        )));
    }
    siglip::vision_config(&v)
}

/// `image_seq_length` of preprocessor_config.json (what the processor expands each image
/// placeholder to) must be the tower's patch count, or the reference cannot run the prompt.
fn check_seq_length(pre: &ConfigObject, patches: usize) -> Result<()> {
    match pre.usize_max("image_seq_length", usize::MAX)? {
        Some(n) if n != patches => Err(Error::bad_config(format!(
            "{}: image_seq_length {n} differs from the vision tower's {patches} patches",
            pre.location()
        ))),
        _ => Ok(()),
    }
}

/// Loads a `paligemma` checkpoint (vision tensors only: `vision_tower.*`,
/// `multi_modal_projector.*`, with or without transformers 5.x's `model.` prefix) as a
/// SigLIP model with a linear projector.
pub fn load(ck: &Checkpoint) -> Result<SiglipModel> {
    let cfg = ck.config();
    let vision = vision_config(cfg)?;
    let root = ck.loader("");
    let tower = SiglipVisionTower::load(&root.sub("vision_tower"), &vision)?;
    let d = vision.encoder.hidden_size;
    let out_dim = cfg.positive_or("projection_dim", DEFAULT_PROJECTION_DIM, MAX_DIM)?;
    let projector = root
        .sub("multi_modal_projector")
        .linear("linear", d, out_dim, true)?;
    let processor = FixedSizeProcessor::from_siglip_config(
        &ck.files.preprocessor,
        vision.image_size,
        Filter::Bicubic,
    )?;
    let n = vision.num_patches();
    check_seq_length(&ck.files.preprocessor, n)?;
    let image = cfg.i64(cfg.aliased(&["image_token_index", "image_token_id"]))?;
    let info = ModelInfo {
        family: "paligemma",
        model_type: ck.files.model_type()?,
        output_dim: out_dim,
        vision_dim: d,
        patch_size: vision.patch_size,
        image_size: (vision.image_size, vision.image_size),
        tokens_per_image: Some(n),
        max_batch: batch_for_budget(attention_bytes(vision.encoder.num_heads, n), 256 << 20),
        mixed_shape_batches: false,
        tokens: SpecialTokens {
            image: Some(image.unwrap_or(DEFAULT_IMAGE_TOKEN)),
            ..SpecialTokens::default()
        },
    };
    Ok(SiglipModel::from_parts(
        info,
        tower,
        Some(projector),
        processor,
        ck.dtype,
        ck.device,
    ))
}
