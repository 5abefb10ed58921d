//! Which family loads which `model_type`: one table, [`FAMILIES`], from which the list of
//! supported types and the error for the others are derived. A row names the `model_type`
//! and the family's loader, with the variant of the family that type is.

use crate::error::{Error, Result, Status};
use crate::models::aya_vision::AyaVisionModel;
use crate::models::checkpoint::Checkpoint;
use crate::models::gemma3::Gemma3Model;
use crate::models::gemma4::{Gemma4Model, Gemma4Variant};
use crate::models::glm4v::{GlmVariant, GlmVlModel};
use crate::models::idefics3::{Idefics3Model, Idefics3Variant};
use crate::models::internvl::InternVlModel;
use crate::models::kimi_k25::KimiK25Model;
use crate::models::lfm2_vl::Lfm2VlModel;
use crate::models::llava::{self, LlavaModel, LlavaTower};
use crate::models::llava_next::{LlavaNextModel, LlavaNextVariant};
use crate::models::paddleocr_vl::PaddleOcrVlModel;
use crate::models::paligemma;
use crate::models::pixtral::{PixtralModel, PixtralVariant};
use crate::models::qwen2_vl::{QwenLayout, QwenVariant, QwenVlModel};
use crate::models::qwen3_vl::{Qwen3Variant, Qwen3VlModel};
use crate::models::siglip::SiglipModel;
use crate::models::siglip2::{Siglip2Model, Siglip2Variant};
use crate::models::VisionModel;

/// A family's loader: the model folder being loaded (config files, weights, compute dtype
/// and device).
pub type LoadFn = fn(&Checkpoint) -> Result<Box<dyn VisionModel>>;

fn boxed<M: VisionModel + 'static>(model: Result<M>) -> Result<Box<dyn VisionModel>> {
    Ok(Box::new(model?))
}

/// A [`LoadFn`] calling a family's `load(checkpoint, variant...)`.
macro_rules! load {
    ($load:path $(, $variant:expr)*) => {
        |ck| boxed($load(ck $(, $variant)*))
    };
}

/// Every `model_type` this build loads, with its loader and the variant of the family (the
/// order is that of the list in the unsupported-model error).
pub const FAMILIES: &[(&str, LoadFn)] = &[
    ("siglip", load!(SiglipModel::load)),
    ("siglip_vision_model", load!(SiglipModel::load)),
    // SigLIP2 NaFlex: the dual model (only its vision tower is read) or the bare tower.
    ("siglip2", load!(Siglip2Model::load, Siglip2Variant::Dual)),
    (
        "siglip2_vision_model",
        load!(Siglip2Model::load, Siglip2Variant::Tower),
    ),
    // LFM2-VL: the SigLIP2 NaFlex tower, pixel unshuffle and an MLP projector.
    ("lfm2_vl", load!(Lfm2VlModel::load)),
    ("gemma3", load!(Gemma3Model::load)),
    ("gemma4", load!(Gemma4Model::load, Gemma4Variant::Full)),
    (
        "gemma4_vision",
        load!(Gemma4Model::load, Gemma4Variant::Tower),
    ),
    ("aya_vision", load!(AyaVisionModel::load)),
    (
        "idefics3",
        load!(Idefics3Model::load, Idefics3Variant::Idefics3),
    ),
    (
        "smolvlm",
        load!(Idefics3Model::load, Idefics3Variant::SmolVlm),
    ),
    // A wrapper: the vision tower's own model_type picks the loader (`LLAVA_TOWERS`).
    ("llava", |ck| {
        let tower = llava::vision_model_type(ck.files)?;
        find(LLAVA_TOWERS, &tower, "llava with vision_config.model_type")?(ck)
    }),
    (
        "llava_next",
        load!(LlavaNextModel::load, LlavaNextVariant::Next),
    ),
    (
        "llava_next_video",
        load!(LlavaNextModel::load, LlavaNextVariant::NextVideo),
    ),
    (
        "llava_onevision",
        load!(LlavaNextModel::load, LlavaNextVariant::OneVision),
    ),
    (
        "mistral3",
        load!(PixtralModel::load, PixtralVariant::Mistral3),
    ),
    (
        "mistral_large4",
        load!(PixtralModel::load, PixtralVariant::MistralLarge4),
    ),
    ("internvl", load!(InternVlModel::load)),
    ("paligemma", load!(paligemma::load)),
    (
        "pixtral",
        load!(PixtralModel::load, PixtralVariant::Standalone),
    ),
    (
        "qwen2_vl",
        load!(QwenVlModel::load, QwenVariant::Qwen2, QwenLayout::Full),
    ),
    (
        "qwen2_5_vl",
        load!(QwenVlModel::load, QwenVariant::Qwen25, QwenLayout::Full),
    ),
    (
        "qwen2_vl_vision",
        load!(QwenVlModel::load, QwenVariant::Qwen2, QwenLayout::Bare),
    ),
    (
        "qwen2_5_vl_vision",
        load!(QwenVlModel::load, QwenVariant::Qwen25, QwenLayout::Bare),
    ),
    // The MoE checkpoints differ only in the language model; Qwen4-Exp's vision model is
    // Qwen3.5-MoE's (`Qwen4ExpVisionModel(Qwen3_5MoeVisionModel)`).
    ("qwen3_vl", load!(Qwen3VlModel::load, Qwen3Variant::Qwen3Vl)),
    (
        "qwen3_vl_moe",
        load!(Qwen3VlModel::load, Qwen3Variant::Qwen3Vl),
    ),
    ("qwen3_5", load!(Qwen3VlModel::load, Qwen3Variant::Qwen35)),
    (
        "qwen3_5_moe",
        load!(Qwen3VlModel::load, Qwen3Variant::Qwen35),
    ),
    ("qwen4_exp", load!(Qwen3VlModel::load, Qwen3Variant::Qwen35)),
    // GLM-4.5V's tower is GLM-4.1V's; GLM-4.6V's is the one its vision_config names.
    ("glm4v", load!(GlmVlModel::load, GlmVariant::Glm4v)),
    ("glm4v_moe", load!(GlmVlModel::load, GlmVariant::Glm4vMoe)),
    ("glm46v", load!(GlmVlModel::load, GlmVariant::Glm46v)),
    ("glm_ocr", load!(GlmVlModel::load, GlmVariant::GlmOcr)),
    ("glm5_next", load!(GlmVlModel::load, GlmVariant::Glm5Next)),
    // Kimi K2.5: MoonViT and its projector (the language model's tensors are never read).
    ("kimi_k25", load!(KimiK25Model::load)),
    // PaddleOCR-VL: a SigLIP tower with 2-D rotary embeddings and its own projector.
    ("paddleocr_vl", load!(PaddleOcrVlModel::load)),
];

/// `llava`'s towers by `vision_config.model_type`.
pub const LLAVA_TOWERS: &[(&str, LoadFn)] = &[
    (
        "clip_vision_model",
        load!(LlavaModel::load, LlavaTower::Clip),
    ),
    (
        "siglip_vision_model",
        load!(LlavaModel::load, LlavaTower::Siglip),
    ),
    ("pixtral", load!(PixtralModel::load, PixtralVariant::Llava)),
];

/// The loader of `model_type` in `table`, or [`Status::UnsupportedModel`] naming what is
/// (`what` says which key was looked up).
fn find(table: &[(&str, LoadFn)], model_type: &str, what: &str) -> Result<LoadFn> {
    match table.iter().find(|(t, _)| *t == model_type) {
        Some(&(_, load)) => Ok(load),
        None => Err(Error::new(
            Status::UnsupportedModel,
            format!(
                "config.json: {what} `{model_type}` is not supported; supported: {}",
                table.iter().map(|(t, _)| *t).collect::<Vec<_>>().join(", ")
            ),
        )),
    }
}

/// The loader of `model_type`, or [`Status::UnsupportedModel`] listing the supported types.
/// The engine looks it up before it opens the weights.
pub fn loader(model_type: &str) -> Result<LoadFn> {
    find(FAMILIES, model_type, "model_type")
}
