//! What the tiled families share (an image cut into tiles that each run through the tower:
//! InternVL, Aya Vision, Idefics3 / SmolVLM, LLaVA-NeXT / OneVision): the refusal of other
//! families' per-call knobs.

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
