//! `Glm4vImageProcessor` (PIL backend, `image_processing_pil_glm4v.py`; `Glm46VImageProcessor`
//! is the same class), used by GLM-4.1V / 4.5V / 4.6V and GLM-OCR: the processing is
//! `Qwen2VLImageProcessor`'s (bicubic resize, rescale, normalize, the still image repeated
//! over `temporal_patch_size` frames in `(channel, frame, y, x)` patch rows in merge-block
//! order: [`QwenImageProcessor`] with [`ResizeRule::Glm4v`]) except for the size rule, GLM's own
//! `smart_resize` ([`crate::preprocess::smart_resize::glm`]), and the bounds: `size.shortest_edge` /
//! `size.longest_edge` (class defaults 112·112 and 28·28·15000) count `temporal_patch_size`
//! frames, and the legacy top-level `min_pixels` / `max_pixels` keys do nothing.

use crate::config::ConfigObject;
use crate::error::Result;
use crate::preprocess::qwen2_vl::{PatchGeometry, QwenImageProcessor, ResizeRule};

/// The processor of a GLM-4.xV model from `preprocessor_config.json` (or the `image_processor`
/// of `processor_config.json`); `model` is the tower's geometry, which the file's
/// `patch_size`, `merge_size` and `temporal_patch_size` must match.
pub fn processor(pre: &ConfigObject, model: PatchGeometry) -> Result<QwenImageProcessor> {
    QwenImageProcessor::from_config_with(pre, model, ResizeRule::Glm4v)
}
