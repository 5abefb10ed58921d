//! The `smart_resize` rules of the Qwen-VL image processor's families: Qwen2-VL's ([`qwen`],
//! also Qwen2.5-VL, Qwen3-VL and Qwen3.5), GLM-4.xV's ([`glm`]) and PaddleOCR-VL's
//! ([`paddleocr_vl`]), with the rounding and pixel bounds they share. Pure size arithmetic,
//! below the processors that use it (`qwen2_vl.rs` dispatches on `ResizeRule`; `glm4v.rs`,
//! `paddleocr_vl.rs` and the video processors call it).

use crate::error::{Error, Result};

/// transformers' `smart_resize(height, width, factor, min_pixels, max_pixels)`: the
/// `(height, width)` to resize to, both multiples of `factor`, with about the same aspect
/// ratio and a pixel count within `[min_pixels, max_pixels]` (Python's round-half-to-even,
/// float arithmetic in f64 as CPython does it).
///
/// Fails (invalid argument) when the aspect ratio exceeds 200, as the reference does.
pub fn qwen(
    height: usize,
    width: usize,
    factor: usize,
    min_pixels: usize,
    max_pixels: usize,
) -> Result<(usize, usize)> {
    check_resize_input(height, width, factor)?;
    let sides = (height as f64, width as f64);
    round_within_bounds(
        (height, width),
        sides,
        factor,
        (1, 1),
        min_pixels,
        max_pixels,
    )
}

/// transformers' GLM `smart_resize(num_frames=temporal, height, width, temporal_factor=temporal,
/// factor, min_pixels, max_pixels)` for a still image: [`frames`] with `temporal` frames.
pub fn glm(
    height: usize,
    width: usize,
    factor: usize,
    temporal: usize,
    min_pixels: usize,
    max_pixels: usize,
) -> Result<(usize, usize)> {
    frames(
        temporal, height, width, temporal, factor, min_pixels, max_pixels,
    )
}

/// transformers' `smart_resize(num_frames, height, width, temporal_factor, factor, min_pixels,
/// max_pixels)` of GLM-4.xV's image processor and of Qwen3-VL's video processor: the
/// `(height, width)` to resize `num_frames` frames to, both multiples of `factor`. In Python's
/// float arithmetic (f64, round-half-to-even):
///
/// 1. fewer frames than `temporal` are refused;
/// 2. a side below `factor` scales both sides by `max(factor / h, factor / w)`, truncated;
/// 3. an aspect ratio above 200 is refused;
/// 4. each side rounds to a multiple of `factor`; with `t̄ = round(num_frames / temporal) ·
///    temporal`, when `t̄ · h̄ · w̄` is above `max_pixels`, `β = sqrt(num_frames · h · w /
///    max_pixels)` and the sides are `max(factor, floor(side / β / factor) · factor)`; below
///    `min_pixels`, `β = sqrt(min_pixels / (num_frames · h · w))` and
///    `ceil(side · β / factor) · factor`.
pub fn frames(
    num_frames: usize,
    height: usize,
    width: usize,
    temporal: usize,
    factor: usize,
    min_pixels: usize,
    max_pixels: usize,
) -> Result<(usize, usize)> {
    check_resize_input(height, width, factor)?;
    if temporal == 0 || num_frames < temporal {
        return Err(Error::invalid_argument(format!(
            "smart_resize of {num_frames} frames of {width}x{height}: t:{num_frames} must be \
             larger than temporal_factor:{temporal}"
        )));
    }
    let f = factor as f64;
    let (mut h, mut w) = (height as f64, width as f64);
    if height < factor || width < factor {
        let scale = (f / h).max(f / w);
        h = (h * scale).trunc();
        w = (w * scale).trunc();
    }
    let counted = (num_frames, temporal);
    round_within_bounds(
        (height, width),
        (h, w),
        factor,
        counted,
        min_pixels,
        max_pixels,
    )
}

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
pub fn paddleocr_vl(
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
    round_within_bounds(
        (height, width),
        (h, w),
        factor,
        (1, 1),
        min_pixels,
        max_pixels,
    )
}

/// Refuses a `smart_resize` of an empty image or with a zero factor (the rules divide by
/// each).
pub fn check_resize_input(height: usize, width: usize, factor: usize) -> Result<()> {
    if height == 0 || width == 0 || factor == 0 {
        return Err(Error::invalid_argument(format!(
            "smart_resize of a {width}x{height} image with factor {factor}"
        )));
    }
    Ok(())
}

/// Qwen's `smart_resize` (one frame), and the last steps of GLM's / Qwen3-VL video's
/// ([`frames`]) and PaddleOCR-VL's on the sides `(h, w)` after the rule's own first step, for
/// frames of `height` x `width` (named in errors): the aspect-ratio check, the rounding to
/// multiples of `factor` and the pixel bounds, which count `(num_frames, temporal)` as
/// [`frames`] says. Sides that round to 0 or to 2⁴⁰ or more are refused.
pub fn round_within_bounds(
    (height, width): (usize, usize),
    (h, w): (f64, f64),
    factor: usize,
    (num_frames, temporal): (usize, usize),
    min_pixels: usize,
    max_pixels: usize,
) -> Result<(usize, usize)> {
    let f = factor as f64;
    let ratio = h.max(w) / h.min(w);
    if ratio.is_nan() || ratio > 200.0 {
        return Err(Error::invalid_argument(format!(
            "image of {width}x{height}: absolute aspect ratio must be smaller than 200, got {ratio}"
        )));
    }
    let mut h_bar = (h / f).round_ties_even() * f;
    let mut w_bar = (w / f).round_ties_even() * f;
    let t_bar = (num_frames as f64 / temporal as f64).round_ties_even() * temporal as f64;
    let t = num_frames as f64;
    if t_bar * h_bar * w_bar > max_pixels as f64 {
        let beta = (t * h * w / max_pixels as f64).sqrt();
        h_bar = f.max((h / beta / f).floor() * f);
        w_bar = f.max((w / beta / f).floor() * f);
    } else if t_bar * h_bar * w_bar < min_pixels as f64 {
        let beta = (min_pixels as f64 / (t * h * w)).sqrt();
        h_bar = (h * beta / f).ceil() * f;
        w_bar = (w * beta / f).ceil() * f;
    }
    if !(h_bar >= f && w_bar >= f && h_bar < (1u64 << 40) as f64 && w_bar < (1u64 << 40) as f64) {
        return Err(Error::invalid_argument(format!(
            "image of {width}x{height}: smart_resize gives {w_bar}x{h_bar}"
        )));
    }
    Ok((h_bar as usize, w_bar as usize))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn qwen_matches_python() {
        // Values from transformers' smart_resize (factor 28, Hub min/max pixels).
        let (lo, hi) = (3136, 12845056);
        assert_eq!(qwen(1080, 1920, 28, lo, hi).unwrap(), (1092, 1932));
        assert_eq!(qwen(480, 640, 28, lo, hi).unwrap(), (476, 644));
        assert_eq!(qwen(1080, 1920, 28, lo, 1003520).unwrap(), (728, 1316));
        assert_eq!(qwen(300, 10, 28, lo, hi).unwrap(), (308, 28));
        // Ties round to even: 40/16 = 2.5 -> 2, 24/16 = 1.5 -> 2, 56/16 = 3.5 -> 4.
        assert_eq!(qwen(56, 40, 16, 512, 2048).unwrap(), (64, 32));
        assert_eq!(qwen(24, 32, 16, 512, 2048).unwrap(), (32, 32));
        // max(factor, ...) guard and the min_pixels branch.
        assert_eq!(qwen(20, 180, 16, 512, 2048).unwrap(), (16, 128));
        assert_eq!(qwen(12, 20, 16, 512, 2048).unwrap(), (32, 32));
        // Python: qwen(1, 200, 16, 512, 2048) == (16, 320), above max_pixels.
        assert_eq!(qwen(1, 200, 16, 512, 2048).unwrap(), (16, 320));
        assert!(qwen(1, 201, 16, 512, 2048).is_err());
        assert!(qwen(1, 200, 16, 512, 2048).is_ok());
    }

    #[test]
    fn glm_matches_python() {
        // transformers.models.glm4v.image_processing_pil_glm4v.glm(2, h, w, 2, 28,
        // 12544, 11760000) and other bounds, evaluated with CPython.
        let (lo, hi) = (112 * 112, 28 * 28 * 15000);
        assert_eq!(glm(1080, 1920, 28, 2, lo, hi).unwrap(), (1092, 1932));
        assert_eq!(glm(480, 640, 28, 2, lo, hi).unwrap(), (476, 644));
        // Above max_pixels (2·h·w counted): beta = sqrt(2·1080·1920 / (28·28·2·1568)).
        assert_eq!(
            glm(1080, 1920, 28, 2, lo, 28 * 28 * 2 * 1568).unwrap(),
            (812, 1456)
        );
        // Below the factor: 10x300 scales by 2.8 to 28x840 first.
        assert_eq!(glm(10, 300, 28, 2, lo, hi).unwrap(), (28, 840));
        // Below min_pixels: 2·56·56 < 12544.
        assert_eq!(glm(56, 56, 28, 2, lo, hi).unwrap(), (84, 84));
        // Ties round to even: 40/16 = 2.5 -> 2, 24/16 = 1.5 -> 2.
        assert_eq!(glm(40, 24, 16, 2, 512, 4096).unwrap(), (32, 32));
        assert!(glm(28, 28 * 201, 28, 2, lo, hi).is_err());
        assert!(glm(0, 5, 28, 2, lo, hi).is_err());
    }

    #[test]
    fn frames_matches_python() {
        // transformers.models.qwen3_vl.video_processing_qwen3_vl.smart_resize(num_frames, h, w,
        // temporal_factor, factor, min_pixels, max_pixels), evaluated with CPython.
        let r = |n, h, w, t, f, lo, hi| frames(n, h, w, t, f, lo, hi).unwrap();
        assert_eq!(r(8, 1080, 1920, 2, 32, 4096, 25165824), (1088, 1920));
        // Above max_pixels: beta counts the 4 frames.
        assert_eq!(r(4, 480, 640, 2, 32, 4096, 819200), (384, 512));
        assert_eq!(r(2, 10, 300, 2, 32, 4096, 25165824), (32, 960));
        // Below min_pixels.
        assert_eq!(r(16, 56, 56, 2, 32, 2097152, 25165824), (384, 384));
        // 3 frames: the bound compares round(3 / 2) * 2 = 4 frames, beta counts 3.
        assert_eq!(r(3, 360, 640, 2, 32, 4096, 102400), (128, 224));
        assert_eq!(r(5, 240, 320, 2, 28, 4096, 1000000), (252, 308));
        let e = frames(1, 100, 100, 2, 32, 4096, 100000).unwrap_err();
        assert!(
            e.message()
                .contains("t:1 must be larger than temporal_factor:2"),
            "{e}"
        );
        let e = frames(4, 10, 2100, 2, 32, 4096, 100000).unwrap_err();
        assert!(
            e.message()
                .contains("aspect ratio must be smaller than 200"),
            "{e}"
        );
        assert!(frames(2, 100, 100, 0, 32, 4096, 100000).is_err());
        assert!(frames(2, 0, 100, 2, 32, 4096, 100000).is_err());
    }

    #[test]
    fn paddleocr_vl_matches_python() {
        // transformers.models.paddleocr_vl.image_processing_paddleocr_vl.smart_resize,
        // evaluated with CPython (factor 28, class bounds 384² .. 1536²).
        let (lo, hi) = (384 * 384, 1536 * 1536);
        assert_eq!(paddleocr_vl(1080, 1920, 28, lo, hi).unwrap(), (1092, 1932));
        assert_eq!(paddleocr_vl(480, 640, 28, lo, hi).unwrap(), (476, 644));
        assert_eq!(paddleocr_vl(100, 100, 28, lo, hi).unwrap(), (392, 392));
        assert_eq!(paddleocr_vl(4000, 3000, 28, lo, hi).unwrap(), (1764, 1316));
        // A side below the factor: 10x300 -> 28 x round(840) first, then the min bound.
        assert_eq!(paddleocr_vl(10, 300, 28, lo, hi).unwrap(), (84, 2128));
        // Ties round to even: 40/16 = 2.5 -> 2; 12 < 16: width round(20 * 16 / 12) = 27.
        assert_eq!(paddleocr_vl(40, 24, 16, 256, 4096).unwrap(), (32, 32));
        assert_eq!(paddleocr_vl(12, 20, 16, 256, 4096).unwrap(), (16, 32));
        assert!(paddleocr_vl(28, 28 * 201, 28, lo, hi).is_err());
        assert!(paddleocr_vl(0, 5, 28, lo, hi).is_err());
    }
}
