//! The embedding cache's counters.

use crate::ffi::boundary::{arg, guard};
use crate::ffi::error::vt_error;
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
