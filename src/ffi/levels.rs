//! Embedding levels: Qwen3-VL's deepstack features beside the main embeddings.

use std::ffi::c_void;

use crate::ffi::boundary::{guard, guard_value};
use crate::ffi::embeddings::{copy_level, copy_level_to_cuda, vt_embeddings};
use crate::ffi::error::vt_error;
use crate::ffi::model::vt_model;
use crate::ffi::params::vt_dtype;
use crate::ffi::status::vt_status;

/// Embedding levels each image of this model yields: 1 for most models; 1 + the number of
/// `deepstack_visual_indexes` for Qwen3-VL (`qwen3_vl`, `qwen3_vl_moe`; 4 in the released
/// models). Qwen3.5 has no deepstack: 1. 0 if `model` is NULL. Any thread.
///
/// What a language model does with the levels of an image whose placeholder tokens
/// (`VT_TOKEN_IMAGE`, one per row) sit at positions P of the prompt:
/// - level 0 (vt_embeddings_data / vt_embeddings_copy) replaces the token embeddings at P
///   before the first decoder layer, as for every other model;
/// - level k >= 1 (vt_embeddings_level_data / vt_embeddings_level_copy) is **added** to the
///   decoder's hidden states at P right after decoder layer vt_model_level_layer(model, k)
///   (= k - 1: after layers 0, 1, 2 for the released models), row i to the hidden state of
///   the i-th placeholder. Nothing else changes (not the other positions, not the norms).
///   With several images in one prompt, each image's rows go to its own placeholders.
///
/// A Qwen3-VL language model run without these additions gives wrong output.
#[no_mangle]
pub extern "C" fn vt_model_n_levels(model: *const vt_model) -> usize {
    guard_value(0, || {
        // SAFETY: NULL or a live model (contract).
        unsafe { model.as_ref() }.map_or(0, |m| m.model.n_levels())
    })
}

/// The language model's decoder layer (0-based) after which embedding level `level` is
/// added to its hidden states at the image positions (see vt_model_n_levels): `level - 1`
/// for Qwen3-VL's deepstack levels. -1 for level 0 (it replaces the placeholder embeddings
/// before the first layer), for a level past the last and for a NULL `model`. Any thread.
#[no_mangle]
pub extern "C" fn vt_model_level_layer(model: *const vt_model, level: usize) -> i32 {
    guard_value(-1, || {
        // SAFETY: NULL or a live model (contract).
        unsafe { model.as_ref() }
            .and_then(|m| m.model.level_layer(level))
            .map_or(-1, |l| l as i32)
    })
}

/// Embedding levels per image in `e` (the same for every image; = vt_model_n_levels of the
/// model that made them). 0 if `e` is NULL. Threads: one thread at a time per
/// vt_embeddings.
#[no_mangle]
pub extern "C" fn vt_embeddings_n_levels(e: *const vt_embeddings) -> usize {
    guard_value(0, || {
        // SAFETY: NULL or live embeddings (contract).
        unsafe { e.as_ref() }.map_or(0, |e| e.emb.n_levels())
    })
}

/// Row-major `[n_tokens, dim]` f32 rows of level `level` of image `index` (the same shape
/// as level 0: vt_embeddings_n_tokens x vt_embeddings_dim), borrowed from `e`: valid until
/// vt_embeddings_free(e). Level 0 is vt_embeddings_data. NULL if `e` is NULL, `index` or
/// `level` is out of range, or the rows could not be copied from the GPU (the reason goes
/// to the log; vt_embeddings_level_copy returns it). On a GPU model the rows are copied to
/// host memory on the first call for each image and level. Threads: one thread at a time
/// per vt_embeddings.
#[no_mangle]
pub extern "C" fn vt_embeddings_level_data(
    e: *const vt_embeddings,
    index: usize,
    level: usize,
) -> *const f32 {
    guard_value(std::ptr::null(), || {
        // SAFETY: NULL or live embeddings (contract).
        let Some(e) = (unsafe { e.as_ref() }) else {
            return std::ptr::null();
        };
        match e.emb.level_data(index, level) {
            Ok(d) => d.as_ptr(),
            Err(err) => {
                if index < e.emb.count() && level < e.emb.n_levels() {
                    crate::log::warn(&format!("vt_embeddings_level_data: {err}"));
                }
                std::ptr::null()
            }
        }
    })
}

/// vt_embeddings_copy for level `level` of image `index`: copies its rows (row-major
/// `[n_tokens, dim]`) into host memory as `dtype` (VT_DTYPE_F32, VT_DTYPE_BF16 or
/// VT_DTYPE_F16). Level 0 is exactly vt_embeddings_copy.
///
/// - `dst`: caller-owned buffer of `dst_bytes` bytes, at least n_tokens * dim * element
///   size; written only on VT_OK.
///
/// Errors: VT_ERR_INVALID_ARGUMENT (NULL pointers, index or level out of range, unknown
/// dtype, buffer too small). Threads: one thread at a time per vt_embeddings.
#[no_mangle]
pub extern "C" fn vt_embeddings_level_copy(
    e: *const vt_embeddings,
    index: usize,
    level: usize,
    dtype: vt_dtype,
    dst: *mut c_void,
    dst_bytes: usize,
    err_out: *mut *mut vt_error,
) -> vt_status {
    let what = || format!("level {level} of image {index}");
    guard(err_out, || {
        // SAFETY: `e` is NULL or live embeddings, `dst` writable for `dst_bytes` bytes
        // (contract).
        unsafe { copy_level(e, index, level, dtype, dst, dst_bytes, &what) }
    })
}

/// vt_embeddings_copy_to_cuda for level `level` of image `index`: copies its rows (as
/// `dtype`) into a CUDA device buffer the caller owns, device to device. Level 0 is
/// exactly vt_embeddings_copy_to_cuda; the same synchronization and ownership rules apply
/// (the copy has completed when this returns; no reference to `dst_device_ptr` is kept).
///
/// Errors: VT_ERR_DEVICE when the model does not run on a CUDA GPU (or this build has no
/// CUDA support) or the copy fails; VT_ERR_INVALID_ARGUMENT (NULL `e`, index or level out
/// of range, unknown dtype, `dst_device_ptr` 0, buffer too small). Threads: one thread at
/// a time per vt_embeddings.
#[no_mangle]
pub extern "C" fn vt_embeddings_level_copy_to_cuda(
    e: *const vt_embeddings,
    index: usize,
    level: usize,
    dtype: vt_dtype,
    dst_device_ptr: u64,
    dst_bytes: usize,
    err_out: *mut *mut vt_error,
) -> vt_status {
    guard(err_out, || {
        // SAFETY: `e` is NULL or live embeddings (contract).
        unsafe { copy_level_to_cuda(e, index, level, dtype, dst_device_ptr, dst_bytes) }
    })
}
