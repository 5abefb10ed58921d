//! Which family loads which `model_type`.

use candle_core::{DType, Device};

use crate::config::ModelFiles;
use crate::error::{Error, Result, Status};
use crate::models::pixtral::PixtralModel;
use crate::models::qwen2_vl::QwenVlModel;
use crate::models::siglip::SiglipModel;
use crate::models::VisionModel;
use crate::weights::Weights;

/// The `model_type` values this build can load.
pub const SUPPORTED_MODEL_TYPES: &[&str] = &[
    "siglip",
    "siglip_vision_model",
    "llava",
    "mistral3",
    "pixtral",
    "qwen2_vl",
    "qwen2_5_vl",
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
        "qwen2_vl" | "qwen2_5_vl" => {
            Ok(Box::new(QwenVlModel::load(files, weights, dtype, device)?))
        }
        "llava" => {
            // LlavaConfig's default vision tower is CLIP.
            let vision_type = match files.config.object("vision_config")? {
                Some(v) => v.string_or("model_type", "clip_vision_model")?,
                None => "clip_vision_model".to_string(),
            };
            match vision_type.as_str() {
                "pixtral" => Ok(Box::new(PixtralModel::load(files, weights, dtype, device)?)),
                other => Err(Error::new(
                    Status::UnsupportedModel,
                    format!(
                        "config.json: model_type `llava` with vision_config.model_type `{other}` is not supported; supported vision towers: pixtral"
                    ),
                )),
            }
        }
        "mistral3" | "pixtral" => Ok(Box::new(PixtralModel::load(files, weights, dtype, device)?)),
        other => unreachable!("check_supported accepted `{other}` without a loader"),
    }
}
