//! Per-call preprocessing options: overrides of what `preprocessor_config.json` says, for the
//! processors that have such switches (Gemma3's pan-and-scan, Gemma 4's soft-token budget,
//! Qwen's pixel bounds, Pixtral's longest edge, the tile budget of tiled families, a token
//! budget). The default (all `None`) is the model's own configuration.

use crate::error::{Error, Result};
use crate::preprocess::settings::MAX_SIDE;

/// Largest accepted pan-and-scan crop count and crop size, per call as in
/// `preprocessor_config.json` (real values are 4 and 256).
pub(crate) const PAN_AND_SCAN_MAX_SETTING: usize = 1 << 16;

/// Overrides for one preprocess call. `None` everywhere = the model's preprocessor_config.json.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PreprocessOptions {
    /// Gemma3 pan-and-scan on or off (`do_pan_and_scan`).
    pub pan_and_scan: Option<bool>,
    /// Smallest crop side in pixels (`pan_and_scan_min_crop_size`, at least 1).
    pub pan_and_scan_min_crop_size: Option<usize>,
    /// Most crops per image (`pan_and_scan_max_num_crops`, at least 1).
    pub pan_and_scan_max_num_crops: Option<usize>,
    /// Aspect ratio (long side / short side) from which an image is cropped
    /// (`pan_and_scan_min_ratio_to_activate`, finite).
    pub pan_and_scan_min_ratio_to_activate: Option<f64>,
    /// Gemma 4's soft-token budget per image (`max_soft_tokens`: 70, 140, 280, 560 or 1120);
    /// every other model refuses it (invalid argument).
    pub max_soft_tokens: Option<usize>,
    /// Qwen2-VL / Qwen3-VL / Qwen3.5, GLM-4.xV, PaddleOCR-VL: the smallest pixel count of the
    /// resized image (the processor's `min_pixels` call kwarg, `size["shortest_edge"]`; GLM
    /// counts `temporal_patch_size` frames). Other models refuse it.
    pub min_pixels: Option<usize>,
    /// The same models: the largest pixel count of the resized image (`max_pixels`,
    /// `size["longest_edge"]`). Other models refuse it.
    pub max_pixels: Option<usize>,
    /// Pixtral / Mistral3: the longest edge the image is shrunk to fit (the image processor's
    /// `size={"longest_edge": n}` call kwarg) before rounding up to the patch window.
    pub longest_edge: Option<usize>,
    /// Any family: the most embeddings the image may yield. A family with a variable size
    /// (Qwen, Pixtral) picks the largest size its own resize rule allows within it; a family whose
    /// count is fixed refuses the call when that count is larger.
    pub max_tokens: Option<usize>,
    /// InternVL / Aya Vision (`GotOcr2ImageProcessor`): cut the image into tiles plus a
    /// thumbnail (`crop_to_patches`); their processors pass `true` by default.
    pub crop_to_patches: Option<bool>,
    /// InternVL / Aya Vision: the fewest tiles of the grid (`min_patches`, at least 1).
    /// LFM2-VL: `min_tiles`.
    pub min_patches: Option<usize>,
    /// InternVL / Aya Vision: the most tiles of the grid (`max_patches`, at least 1; the
    /// thumbnail is not counted). LFM2-VL: `max_tiles`.
    pub max_patches: Option<usize>,
    /// Idefics3 / SmolVLM: cut the image into a grid of tiles plus the global image
    /// (`do_image_splitting`); their processors split by default. LLaVA-OneVision: `false`
    /// processes the image as one of a multi-image prompt (padded square, one tile).
    /// LFM2-VL: off processes any image as one, on splits large ones into tiles and a
    /// thumbnail (`Lfm2VlImageProcessor`'s kwarg).
    pub do_image_splitting: Option<bool>,
}

/// Names of the per-call size knobs of [`PreprocessOptions`] that are given.
pub(crate) fn size_knobs_given(o: &PreprocessOptions) -> Vec<&'static str> {
    [
        ("min_pixels", o.min_pixels.is_some()),
        ("max_pixels", o.max_pixels.is_some()),
        ("longest_edge", o.longest_edge.is_some()),
        ("max_tokens", o.max_tokens.is_some()),
        ("crop_to_patches", o.crop_to_patches.is_some()),
        ("min_patches", o.min_patches.is_some()),
        ("max_patches", o.max_patches.is_some()),
        ("do_image_splitting", o.do_image_splitting.is_some()),
    ]
    .into_iter()
    .filter_map(|(n, given)| given.then_some(n))
    .collect()
}

impl PreprocessOptions {
    /// Whether nothing is overridden.
    pub fn is_default(&self) -> bool {
        *self == PreprocessOptions::default()
    }

    /// Whether any pan-and-scan setting is given.
    pub fn touches_pan_and_scan(&self) -> bool {
        self.pan_and_scan.is_some()
            || self.pan_and_scan_min_crop_size.is_some()
            || self.pan_and_scan_max_num_crops.is_some()
            || self.pan_and_scan_min_ratio_to_activate.is_some()
    }

    /// Checks the values themselves (whether the model supports them is its own business).
    pub fn validate(&self) -> Result<()> {
        for (name, value) in [
            (
                "pan_and_scan_min_crop_size",
                self.pan_and_scan_min_crop_size,
            ),
            (
                "pan_and_scan_max_num_crops",
                self.pan_and_scan_max_num_crops,
            ),
        ] {
            if let Some(v) = value {
                if v == 0 || v > PAN_AND_SCAN_MAX_SETTING {
                    return Err(Error::invalid_argument(format!(
                        "{name} {v} is not between 1 and {PAN_AND_SCAN_MAX_SETTING}"
                    )));
                }
            }
        }
        for (name, value) in [
            ("min_pixels", self.min_pixels),
            ("max_pixels", self.max_pixels),
            ("longest_edge", self.longest_edge),
            ("max_tokens", self.max_tokens),
        ] {
            if value == Some(0) {
                return Err(Error::invalid_argument(format!("{name} 0 is not allowed")));
            }
        }
        if let Some(e) = self.longest_edge.filter(|&e| e > MAX_SIDE) {
            return Err(Error::invalid_argument(format!(
                "longest_edge {e} is larger than {MAX_SIDE}"
            )));
        }
        if let Some(r) = self.pan_and_scan_min_ratio_to_activate {
            if !r.is_finite() {
                return Err(Error::invalid_argument(format!(
                    "pan_and_scan_min_ratio_to_activate {r} is not finite"
                )));
            }
        }
        Ok(())
    }
}
