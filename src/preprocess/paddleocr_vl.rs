//! `PaddleOCRVLImageProcessor` (`image_processing_paddleocr_vl.py`, the torchvision backend
//! that `AutoImageProcessor` picks by default), PaddleOCR-VL's processor: the Qwen2-VL steps
//! ([`QwenImageProcessor`] with [`ResizeRule::PaddleOcr`]) with its own size rule
//! ([`smart_resize`]), class `size` 384·384 .. 1536·1536 (legacy top-level `min_pixels` /
//! `max_pixels` win, as its `__init__` pops them), `temporal_patch_size` 1, torchvision's
//! antialiased bicubic resize of the `uint8` image, the backend's fused f32
//! rescale-normalize (OpenAI CLIP mean / std), and `(channel, y, x)` patch rows in raster
//! order (the tower merges `merge x merge` blocks in its projector, not in the processor).

use crate::config::ConfigObject;
use crate::error::Result;
use crate::preprocess::qwen2_vl::{
    check_resize_input, round_within_bounds, PatchGeometry, QwenImageProcessor, ResizeRule,
};

/// transformers' PaddleOCR-VL `smart_resize(height, width, factor, min_pixels, max_pixels)`:
/// the `(height, width)` to resize to, both multiples of `factor`. In Python's arithmetic
/// (f64 division, `round` half to even):
///
/// 1. a height below `factor` becomes `factor` and the width `round(width · factor /
///    height)`; then a width below `factor` likewise;
/// 2. an aspect ratio (of those sides) above 200 is refused;
/// 3. as GLM's with one frame ([`round_within_bounds`]): each side rounds to a multiple of
///    `factor`; above `max_pixels`, `β = sqrt(h · w / max_pixels)` and the sides are
///    `max(factor, floor(side / β / factor) · factor)`; below `min_pixels`,
///    `β = sqrt(min_pixels / (h · w))` and `ceil(side · β / factor) · factor`.
pub fn smart_resize(
    height: usize,
    width: usize,
    factor: usize,
    min_pixels: usize,
    max_pixels: usize,
) -> Result<(usize, usize)> {
    check_resize_input(height, width, factor)?;
    let f = factor as f64;
    let (mut h, mut w) = (height as f64, width as f64);
    if h < f {
        w = (w * f / h).round_ties_even();
        h = f;
    }
    if w < f {
        h = (h * f / w).round_ties_even();
        w = f;
    }
    round_within_bounds((height, width), (h, w), factor, 1, min_pixels, max_pixels)
}

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
    fn smart_resize_matches_python() {
        // transformers.models.paddleocr_vl.image_processing_paddleocr_vl.smart_resize,
        // evaluated with CPython (factor 28, class bounds 384² .. 1536²).
        let (lo, hi) = (384 * 384, 1536 * 1536);
        assert_eq!(smart_resize(1080, 1920, 28, lo, hi).unwrap(), (1092, 1932));
        assert_eq!(smart_resize(480, 640, 28, lo, hi).unwrap(), (476, 644));
        assert_eq!(smart_resize(100, 100, 28, lo, hi).unwrap(), (392, 392));
        assert_eq!(smart_resize(4000, 3000, 28, lo, hi).unwrap(), (1764, 1316));
        // A side below the factor: 10x300 -> 28 x round(840) first, then the min bound.
        assert_eq!(smart_resize(10, 300, 28, lo, hi).unwrap(), (84, 2128));
        // Ties round to even: 40/16 = 2.5 -> 2; 12 < 16: width round(20 * 16 / 12) = 27.
        assert_eq!(smart_resize(40, 24, 16, 256, 4096).unwrap(), (32, 32));
        assert_eq!(smart_resize(12, 20, 16, 256, 4096).unwrap(), (16, 32));
        assert!(smart_resize(28, 28 * 201, 28, lo, hi).is_err());
        assert!(smart_resize(0, 5, 28, lo, hi).is_err());
    }

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
