//! `PaddleOCRVLImageProcessor` (`image_processing_paddleocr_vl.py`, the torchvision backend
//! that `AutoImageProcessor` picks by default), PaddleOCR-VL's processor: the Qwen2-VL steps
//! ([`QwenImageProcessor`] with [`ResizeRule::PaddleOcr`]) with its own size rule
//! ([`crate::preprocess::smart_resize::paddleocr_vl`]), class `size` 384·384 .. 1536·1536 (legacy top-level `min_pixels` /
//! `max_pixels` win, as its `__init__` pops them), `temporal_patch_size` 1, torchvision's
//! antialiased bicubic resize of the `uint8` image, the backend's fused f32
//! rescale-normalize (OpenAI CLIP mean / std), and `(channel, y, x)` patch rows in raster
//! order (the tower merges `merge x merge` blocks in its projector, not in the processor).

use crate::config::ConfigObject;
use crate::error::Result;
use crate::preprocess::qwen2_vl::{PatchGeometry, QwenImageProcessor, ResizeRule};

/// The processor of a PaddleOCR-VL model from `preprocessor_config.json`; `model` is the
/// tower's geometry (`temporal_patch_size` 1: its patch embedding is a Conv2d over three
/// channels), which the file's `patch_size`, `merge_size` and `temporal_patch_size` must
/// match.
pub fn processor(pre: &ConfigObject, model: PatchGeometry) -> Result<QwenImageProcessor> {
    QwenImageProcessor::from_config_with(pre, model, ResizeRule::PaddleOcr)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn processor_defaults_and_refusals() {
        let geo = PatchGeometry {
            patch_size: 14,
            merge_size: 2,
            temporal_patch_size: 1,
        };
        let parse = |s: &str| ConfigObject::parse("preprocessor_config.json", s).unwrap();
        let p = processor(&parse("{}"), geo).unwrap();
        assert_eq!((p.min_pixels, p.max_pixels), (147456, 2359296));
        let p = processor(&parse(r#"{"min_pixels": 1000, "max_pixels": 9000}"#), geo).unwrap();
        assert_eq!((p.min_pixels, p.max_pixels), (1000, 9000));
        for (bad, word) in [
            (r#"{"temporal_patch_size": 2}"#, "do not match"),
            (r#"{"resample": 1}"#, "resample"),
            (r#"{"size": {"shortest_edge": 10}}"#, "longest_edge"),
        ] {
            let e = processor(&parse(bad), geo).unwrap_err();
            assert!(e.message().contains(word), "{bad}: {e}");
        }
    }
}
