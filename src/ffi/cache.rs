//! The embedding cache's counters and the activation estimate of vt_load_params.max_forward_bytes.

use crate::ffi::boundary::guard_value;
use crate::ffi::boundary::{arg, guard};
use crate::ffi::error::vt_error;
use crate::ffi::image::vt_image;
use crate::ffi::model::vt_model;
use crate::ffi::status::vt_status;

/// Counters of a model's embedding cache (vt_load_params.embedding_cache_bytes), filled by
/// vt_model_cache_stats. All 0 for a model loaded without a cache.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct vt_cache_stats {
    /// Images answered from the cache (no forward pass), since the model was loaded.
    pub hits: u64,
    /// Images looked up and not found, then run, since the model was loaded.
    pub misses: u64,
    /// Bytes the cache holds now (preprocessed tensors and embeddings of every entry).
    pub bytes: u64,
    /// Images the cache holds now.
    pub entries: u64,
}

/// Reads the counters of the model's embedding cache into `*stats_out`.
///
/// Errors: VT_ERR_INVALID_ARGUMENT for a NULL pointer. Any thread, concurrently with other
/// calls on the model (the counters are read together, under the cache's lock).
#[no_mangle]
pub extern "C" fn vt_model_cache_stats(
    model: *const vt_model,
    stats_out: *mut vt_cache_stats,
    err_out: *mut *mut vt_error,
) -> vt_status {
    guard(err_out, || {
        // SAFETY: NULL or a live model (contract).
        let m = unsafe { arg(model, "model") }?;
        crate::ffi::boundary::out_ptr(stats_out, "stats_out")?;
        let s = m.model.cache_stats();
        let out = vt_cache_stats {
            hits: s.hits,
            misses: s.misses,
            bytes: s.bytes,
            entries: s.entries,
        };
        // SAFETY: checked non-NULL above.
        unsafe { crate::ffi::boundary::write(stats_out, out) };
        Ok(())
    })
}

/// The estimated activation memory, in bytes, of running `image` alone on `model`: what
/// vt_load_params.max_forward_bytes is compared with (a batch of B such images: B times
/// this). An upper estimate from the image's size, made before anything runs:
/// 4 * (16 * patches * vision_dim + levels * n_tokens * output_dim), plus on a GPU the
/// attention scores 4 * (vision_dim / 64) * patches^2 (the CPU computes them in bounded
/// chunks); `patches` is the larger of n_tokens * merge^2 and the pixel tensor's size over
/// 3 * patch_size^2. The 16 vectors of the encoder's width per patch cover one layer's live
/// tensors (input, norm, q, k, v, attention output, residual, an MLP of 4x the width before
/// and after its activation), counted as f32 whatever the dtype. 0 if an argument is NULL.
/// Any thread.
#[no_mangle]
pub extern "C" fn vt_model_forward_bytes(model: *const vt_model, image: *const vt_image) -> u64 {
    guard_value(0, || {
        // SAFETY: NULL or live objects (contract).
        match unsafe { (model.as_ref(), image.as_ref()) } {
            (Some(m), Some(i)) => m.model.forward_bytes(&i.image),
            _ => 0,
        }
    })
}
