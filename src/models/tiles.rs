//! What the tiled families share (an image cut into tiles that each run through the tower:
//! InternVL, Aya Vision, Idefics3 / SmolVLM, LLaVA-NeXT / OneVision): the check of the
//! processor's placeholders per tile, and the methods of the `GotOcr2ImageProcessor`
//! families.

use crate::config::ConfigObject;
use crate::error::{Error, Result};

/// Refuses a `processor_config.json` whose `key` (the placeholders the processor writes per
/// tile) is not the tower's `per_tile` tokens (`formula` says how those are counted): such a
/// config cannot run in the reference either (the scatter fails).
pub(crate) fn check_tokens_per_tile(
    processor: &ConfigObject,
    key: &str,
    per_tile: usize,
    formula: &str,
) -> Result<()> {
    match processor.usize_max(key, usize::MAX)? {
        Some(n) if n != per_tile => Err(Error::bad_config(format!(
            "processor_config.json: {key} {n} placeholders per tile, but the tower yields \
             {per_tile} ({formula})"
        ))),
        _ => Ok(()),
    }
}

/// The [`crate::models::VisionModel`] methods of the families with a `GotOcr2ImageProcessor`
/// (InternVL, Aya Vision): a model with `info` (whose `image_size` is a tile's), `processor`,
/// `tiles_per_call`, `dtype`, `device` and `run_tiles(&self, x)` (`[n, 3, S, S]` tiles in),
/// `$tile_grid` (a `Fn(&Self) -> usize`) the side of a tile's block of embeddings: `info`,
/// `preprocess_with`, the knobs (the processor's `crop_to_patches`, `min_patches` and
/// `max_patches`; the tile budget in place of pan-and-scan) and `forward`.
macro_rules! got_ocr2_methods {
    ($tile_grid:expr) => {
        crate::models::processor_methods!(
            tower: $tile_grid;
            "crop_to_patches", "min_patches", "max_patches"
        );

        fn gemma_knobs(&self) -> crate::models::GemmaKnobs {
            crate::models::GemmaKnobs::tiled("max_patches")
        }

        fn forward(
            &self,
            batch: &[&crate::preprocess::Pixels],
        ) -> crate::error::Result<Vec<candle_core::Tensor>> {
            let s = self.info.image_size.0;
            crate::models::pixels::forward_frames(
                batch,
                [3, s, s],
                self.tiles_per_call,
                self.dtype,
                &self.device,
                |x| self.run_tiles(x),
            )
        }
    };
}
pub(crate) use got_ocr2_methods;
