//! Which family loads which `model_type`: one table, [`FAMILIES`], from which the list of
//! supported types and the error for the others are derived. A row names the `model_type`
//! and the family's loader, with the variant of the family that type is.

use candle_core::{DType, Device};

use crate::config::ModelFiles;
use crate::error::{Error, Result, Status};
use crate::models::gemma3::Gemma3Model;
use crate::models::llava::{self, LlavaModel, LlavaTower};
use crate::models::pixtral::{PixtralModel, PixtralVariant};
use crate::models::qwen2_vl::{QwenLayout, QwenVariant, QwenVlModel};
use crate::models::siglip::SiglipModel;
use crate::models::VisionModel;
use crate::weights::Weights;

/// A family's loader: the model folder's config files, its weights, the compute dtype and
/// device.
pub type LoadFn = fn(&ModelFiles, &Weights, DType, &Device) -> Result<Box<dyn VisionModel>>;

fn boxed<M: VisionModel + 'static>(model: Result<M>) -> Result<Box<dyn VisionModel>> {
    Ok(Box::new(model?))
}

/// Every `model_type` this build loads, with its loader (the order is that of the list in
/// the unsupported-model error).
pub const FAMILIES: &[(&str, LoadFn)] = &[
    ("siglip", |f, w, t, d| boxed(SiglipModel::load(f, w, t, d))),
    ("siglip_vision_model", |f, w, t, d| {
        boxed(SiglipModel::load(f, w, t, d))
    }),
    ("gemma3", |f, w, t, d| boxed(Gemma3Model::load(f, w, t, d))),
    // A wrapper: the vision tower's own model_type picks the loader (`LLAVA_TOWERS`).
    ("llava", load_llava),
    ("mistral3", |f, w, t, d| {
        boxed(PixtralModel::load(f, w, t, d, PixtralVariant::Mistral3))
    }),
    ("pixtral", |f, w, t, d| {
        boxed(PixtralModel::load(f, w, t, d, PixtralVariant::Standalone))
    }),
    ("qwen2_vl", |f, w, t, d| {
        boxed(QwenVlModel::load(
            f,
            w,
            t,
            d,
            QwenVariant::Qwen2,
            QwenLayout::Full,
        ))
    }),
    ("qwen2_5_vl", |f, w, t, d| {
        boxed(QwenVlModel::load(
            f,
            w,
            t,
            d,
            QwenVariant::Qwen25,
            QwenLayout::Full,
        ))
    }),
    ("qwen2_vl_vision", |f, w, t, d| {
        boxed(QwenVlModel::load(
            f,
            w,
            t,
            d,
            QwenVariant::Qwen2,
            QwenLayout::Bare,
        ))
    }),
    ("qwen2_5_vl_vision", |f, w, t, d| {
        boxed(QwenVlModel::load(
            f,
            w,
            t,
            d,
            QwenVariant::Qwen25,
            QwenLayout::Bare,
        ))
    }),
];

/// `llava`'s towers by `vision_config.model_type`.
pub const LLAVA_TOWERS: &[(&str, LoadFn)] = &[
    ("clip_vision_model", |f, w, t, d| {
        boxed(LlavaModel::load(f, w, t, d, LlavaTower::Clip))
    }),
    ("siglip_vision_model", |f, w, t, d| {
        boxed(LlavaModel::load(f, w, t, d, LlavaTower::Siglip))
    }),
    ("pixtral", |f, w, t, d| {
        boxed(PixtralModel::load(f, w, t, d, PixtralVariant::Llava))
    }),
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

fn load_llava(
    files: &ModelFiles,
    weights: &Weights,
    dtype: DType,
    device: &Device,
) -> Result<Box<dyn VisionModel>> {
    let tower = llava::vision_model_type(files)?;
    find(LLAVA_TOWERS, &tower, "llava with vision_config.model_type")?(
        files, weights, dtype, device,
    )
}

/// The loader of `model_type`, or [`Status::UnsupportedModel`] listing the supported types.
/// The engine looks it up before it opens the weights.
pub fn loader(model_type: &str) -> Result<LoadFn> {
    find(FAMILIES, model_type, "model_type")
}

/// The `model_type` values this build can load.
pub fn supported_model_types() -> impl Iterator<Item = &'static str> {
    FAMILIES.iter().map(|(t, _)| *t)
}
