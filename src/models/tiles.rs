//! What the tiled families share (an image cut into tiles that each run through the tower:
//! InternVL, Aya Vision, Idefics3 / SmolVLM, LLaVA-NeXT / OneVision): the refusal of other
//! families' per-call knobs and the check of the processor's placeholders per tile.

use crate::config::ConfigObject;
use crate::error::{Error, Result};
use crate::preprocess::PreprocessOptions;

/// Refuses the per-call settings of other families' processors (pan-and-scan, soft tokens).
pub(crate) fn refuse_other_knobs(family: &str, opts: &PreprocessOptions) -> Result<()> {
    if opts.touches_pan_and_scan() {
        return Err(Error::invalid_argument(format!(
            "{family} models have no pan-and-scan (it is Gemma3's); use max_patches"
        )));
    }
    crate::models::refuse_max_soft_tokens(family, opts)
}

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
