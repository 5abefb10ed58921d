//! Which family loads which `model_type`.

use candle_core::{DType, Device};

use crate::config::ModelFiles;
use crate::error::{Error, Result, Status};
use crate::models::gemma3::Gemma3Model;
use crate::models::llava::{self, LlavaModel};
use crate::models::pixtral::PixtralModel;
use crate::models::qwen2_vl::QwenVlModel;
use crate::models::qwen3_vl::Qwen3VlModel;
use crate::models::siglip::SiglipModel;
use crate::models::VisionModel;
use crate::weights::Weights;

/// The `model_type` values this build can load.
pub const SUPPORTED_MODEL_TYPES: &[&str] = &[
    "siglip",
    "siglip_vision_model",
    "gemma3",
    "llava",
    "mistral3",
    "pixtral",
    "qwen2_vl",
    "qwen2_5_vl",
    "qwen2_vl_vision",
    "qwen2_5_vl_vision",
    "qwen3_vl",
    "qwen3_vl_moe",
    "qwen3_5",
    "qwen3_5_moe",
];

/// Fails with [`Status::UnsupportedModel`] (listing the supported types) unless this build
/// can load `model_type`.
pub fn check_supported(model_type: &str) -> Result<()> {
    if SUPPORTED_MODEL_TYPES.contains(&model_type) {
        Ok(())
    } else {
        Err(Error::new(
            Status::UnsupportedModel,
            format!(
                "config.json: model_type `{model_type}` is not supported; supported: {}",
                SUPPORTED_MODEL_TYPES.join(", ")
            ),
        ))
    }
}

/// Loads the model described by `files`.
pub fn load_model(
    files: &ModelFiles,
    weights: &Weights,
    dtype: DType,
    device: &Device,
) -> Result<Box<dyn VisionModel>> {
    let model_type = files.model_type()?;
    check_supported(&model_type)?;
    match model_type.as_str() {
        "siglip" | "siglip_vision_model" => {
            Ok(Box::new(SiglipModel::load(files, weights, dtype, device)?))
        }
        "qwen2_vl" | "qwen2_5_vl" | "qwen2_vl_vision" | "qwen2_5_vl_vision" => {
            Ok(Box::new(QwenVlModel::load(files, weights, dtype, device)?))
        }
        "qwen3_vl" | "qwen3_vl_moe" | "qwen3_5" | "qwen3_5_moe" => {
            Ok(Box::new(Qwen3VlModel::load(files, weights, dtype, device)?))
        }
        "gemma3" => Ok(Box::new(Gemma3Model::load(files, weights, dtype, device)?)),
        // `llava` is a wrapper: the vision tower's own model_type picks the implementation.
        "llava" => match llava::vision_model_type(files)?.as_str() {
            "clip_vision_model" | "siglip_vision_model" => {
                Ok(Box::new(LlavaModel::load(files, weights, dtype, device)?))
            }
            "pixtral" => Ok(Box::new(PixtralModel::load(files, weights, dtype, device)?)),
            other => Err(Error::new(
                Status::UnsupportedModel,
                format!(
                    "config.json: llava with vision_config.model_type `{other}` is not supported; \
                     supported: clip_vision_model, siglip_vision_model, pixtral"
                ),
            )),
        },
        "mistral3" | "pixtral" => Ok(Box::new(PixtralModel::load(files, weights, dtype, device)?)),
        other => unreachable!("check_supported accepted `{other}` without a loader"),
    }
}
