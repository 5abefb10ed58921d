//! `Glm4vImageProcessor` (PIL backend, `image_processing_pil_glm4v.py`; `Glm46VImageProcessor`
//! is the same class), used by GLM-4.1V / 4.5V / 4.6V and GLM-OCR: the processing is
//! `Qwen2VLImageProcessor`'s (bicubic resize, rescale, normalize, the still image repeated
//! over `temporal_patch_size` frames in `(channel, frame, y, x)` patch rows in merge-block
//! order: [`QwenImageProcessor`] with [`ResizeRule::Glm4v`]) except for the size rule, GLM's own
//! `smart_resize` ([`smart_resize`]), and the bounds: `size.shortest_edge` /
//! `size.longest_edge` (class defaults 112·112 and 28·28·15000) count `temporal_patch_size`
//! frames, and the legacy top-level `min_pixels` / `max_pixels` keys do nothing.

use crate::config::ConfigObject;
use crate::error::{Error, Result};
use crate::preprocess::qwen2_vl::{
    check_resize_input, round_within_bounds, PatchGeometry, QwenImageProcessor, ResizeRule,
};

/// transformers' GLM `smart_resize(num_frames=temporal, height, width, temporal_factor=temporal,
/// factor, min_pixels, max_pixels)` for a still image: the `(height, width)` to resize to,
/// both multiples of `factor`. In Python's float arithmetic (f64, round-half-to-even):
///
/// 1. a side below `factor` scales both sides by `max(factor / h, factor / w)`, truncated;
/// 2. an aspect ratio above 200 is refused;
/// 3. each side rounds to a multiple of `factor`; when `temporal · h̄ · w̄` is above
///    `max_pixels`, `β = sqrt(temporal · h · w / max_pixels)` and the sides are
///    `max(factor, floor(side / β / factor) · factor)`; below `min_pixels`,
///    `β = sqrt(min_pixels / (temporal · h · w))` and `ceil(side · β / factor) · factor`.
pub fn smart_resize(
    height: usize,
    width: usize,
    factor: usize,
    temporal: usize,
    min_pixels: usize,
    max_pixels: usize,
) -> Result<(usize, usize)> {
    check_resize_input(height, width, factor)?;
    if temporal == 0 {
        return Err(Error::invalid_argument(format!(
            "smart_resize of a {width}x{height} image with temporal_patch_size 0"
        )));
    }
    let f = factor as f64;
    let (mut h, mut w) = (height as f64, width as f64);
    if height < factor || width < factor {
        let scale = (f / h).max(f / w);
        h = (h * scale).trunc();
        w = (w * scale).trunc();
    }
    round_within_bounds(
        (height, width),
        (h, w),
        factor,
        temporal,
        min_pixels,
        max_pixels,
    )
}

/// The processor of a GLM-4.xV model from `preprocessor_config.json` (or the `image_processor`
/// of `processor_config.json`); `model` is the tower's geometry, which the file's
/// `patch_size`, `merge_size` and `temporal_patch_size` must match.
pub fn processor(pre: &ConfigObject, model: PatchGeometry) -> Result<QwenImageProcessor> {
    QwenImageProcessor::from_config_with(pre, model, ResizeRule::Glm4v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn smart_resize_matches_python() {
        // transformers.models.glm4v.image_processing_pil_glm4v.smart_resize(2, h, w, 2, 28,
        // 12544, 11760000) and other bounds, evaluated with CPython.
        let (lo, hi) = (112 * 112, 28 * 28 * 15000);
        assert_eq!(
            smart_resize(1080, 1920, 28, 2, lo, hi).unwrap(),
            (1092, 1932)
        );
        assert_eq!(smart_resize(480, 640, 28, 2, lo, hi).unwrap(), (476, 644));
        // Above max_pixels (2·h·w counted): beta = sqrt(2·1080·1920 / (28·28·2·1568)).
        assert_eq!(
            smart_resize(1080, 1920, 28, 2, lo, 28 * 28 * 2 * 1568).unwrap(),
            (812, 1456)
        );
        // Below the factor: 10x300 scales by 2.8 to 28x840 first.
        assert_eq!(smart_resize(10, 300, 28, 2, lo, hi).unwrap(), (28, 840));
        // Below min_pixels: 2·56·56 < 12544.
        assert_eq!(smart_resize(56, 56, 28, 2, lo, hi).unwrap(), (84, 84));
        // Ties round to even: 40/16 = 2.5 -> 2, 24/16 = 1.5 -> 2.
        assert_eq!(smart_resize(40, 24, 16, 2, 512, 4096).unwrap(), (32, 32));
        assert!(smart_resize(28, 28 * 201, 28, 2, lo, hi).is_err());
        assert!(smart_resize(0, 5, 28, 2, lo, hi).is_err());
    }
}
