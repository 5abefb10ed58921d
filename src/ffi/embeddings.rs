//! Running the tower and reading its output.

use std::ffi::c_void;

use crate::engine::{Embeddings, Image, OutputType};
use crate::error::{Error, Result};
use crate::ffi::boundary::{arg, guard, guard_value, host_buffer, out_ptr, write};
use crate::ffi::error::vt_error;
use crate::ffi::image::{image_args, vt_image};
use crate::ffi::model::vt_model;
use crate::ffi::params::{vt_dtype, VT_DTYPE_BF16, VT_DTYPE_F16, VT_DTYPE_F32};
use crate::ffi::status::vt_status;

/// The output of one vt_forward call: for each input image, a row-major
/// `[n_tokens, dim]` matrix, readable as f32 (vt_embeddings_data), copied out as
/// f32/bf16/f16 (vt_embeddings_copy) or, for a GPU model, copied device to device
/// (vt_embeddings_copy_to_cuda). For a GPU model it holds GPU memory until freed with
/// vt_embeddings_free. A plain value: one thread at a time, any thread.
pub struct vt_embeddings {
    pub(crate) emb: Embeddings,
}

/// Runs the vision tower and projector on `n_images` images preprocessed by this model.
/// Images of the same size run together as a batch; results equal one-image calls.
///
/// - `images`: array of `n_images` non-NULL image pointers (NULL allowed when n_images is
///   0); borrowed for the call.
/// - `out`: receives the embeddings on VT_OK; the caller frees them with vt_embeddings_free.
/// - `err_out`: NULL, or receives an owned vt_error on failure.
///
/// On a GPU model the work is complete when this returns (errors are reported here), and
/// the results stay on the GPU until read: see vt_embeddings_data and
/// vt_embeddings_copy_to_cuda.
///
/// Errors: VT_ERR_INVALID_ARGUMENT (NULL pointers, an image made by another model),
/// VT_ERR_COMPUTE, VT_ERR_OUT_OF_MEMORY.
/// Threads: any thread, concurrently with other calls on the same model.
#[no_mangle]
pub extern "C" fn vt_forward(
    model: *const vt_model,
    images: *const *const vt_image,
    n_images: usize,
    out: *mut *mut vt_embeddings,
    err_out: *mut *mut vt_error,
) -> vt_status {
    guard(err_out, || {
        // SAFETY: NULL or a live model (contract).
        let m = unsafe { arg(model, "model") }?;
        out_ptr(out, "out")?;
        // SAFETY: `n_images` pointers, each NULL or a live image (contract).
        let list = unsafe { image_args(images, n_images) }?;
        let mut refs: Vec<&Image> = Vec::with_capacity(list.len());
        for img in list {
            refs.push(&img?.image);
        }
        let emb = m.model.forward(&refs)?;
        // SAFETY: checked non-NULL above.
        unsafe { write(out, Box::into_raw(Box::new(vt_embeddings { emb }))) };
        Ok(())
    })
}

fn with_emb<T: Copy>(e: *const vt_embeddings, fallback: T, f: impl FnOnce(&Embeddings) -> T) -> T {
    guard_value(fallback, || {
        // SAFETY: NULL or live embeddings (contract).
        match unsafe { e.as_ref() } {
            Some(e) => f(&e.emb),
            None => fallback,
        }
    })
}

/// Number of images (= n_images of the vt_forward call). 0 if `e` is NULL.
#[no_mangle]
pub extern "C" fn vt_embeddings_count(e: *const vt_embeddings) -> usize {
    with_emb(e, 0, |e| e.count())
}

/// Rows for image `index`. 0 if `e` is NULL or `index` is out of range.
#[no_mangle]
pub extern "C" fn vt_embeddings_n_tokens(e: *const vt_embeddings, index: usize) -> usize {
    with_emb(e, 0, |e| e.n_tokens(index).unwrap_or(0))
}

/// Row width: the language model's hidden size. 0 if `e` is NULL.
#[no_mangle]
pub extern "C" fn vt_embeddings_dim(e: *const vt_embeddings) -> usize {
    with_emb(e, 0, |e| e.dim())
}

/// Row-major `[n_tokens, dim]` f32 rows of image `index`, borrowed from `e`: valid until
/// vt_embeddings_free(e). NULL if `e` is NULL, `index` is out of range or the rows could
/// not be copied from the GPU (the reason goes to the log; vt_embeddings_copy returns it).
///
/// On a GPU model the rows are copied to host memory on the first call for each image
/// (not by vt_forward), so callers that only use vt_embeddings_copy_to_cuda never pay for
/// that transfer. Threads: one thread at a time per vt_embeddings.
#[no_mangle]
pub extern "C" fn vt_embeddings_data(e: *const vt_embeddings, index: usize) -> *const f32 {
    with_emb(e, std::ptr::null(), |e| match e.data(index) {
        Ok(d) => d.as_ptr(),
        Err(err) => {
            if index < e.count() {
                crate::log::warn(&format!("vt_embeddings_data: {err}"));
            }
            std::ptr::null()
        }
    })
}

/// Frees embeddings. NULL is a no-op.
#[no_mangle]
pub extern "C" fn vt_embeddings_free(e: *mut vt_embeddings) {
    guard_value((), || {
        if !e.is_null() {
            // SAFETY: `e` came from vt_forward and is freed once (contract).
            drop(unsafe { Box::from_raw(e) });
        }
    })
}

pub(crate) fn output_type(dtype: vt_dtype) -> crate::error::Result<OutputType> {
    match dtype {
        VT_DTYPE_F32 => Ok(OutputType::F32),
        VT_DTYPE_BF16 => Ok(OutputType::BF16),
        VT_DTYPE_F16 => Ok(OutputType::F16),
        other => Err(Error::invalid_argument(format!(
            "dtype {other} is not VT_DTYPE_F32, VT_DTYPE_BF16 or VT_DTYPE_F16"
        ))),
    }
}

/// Copies image `index`'s rows (row-major `[n_tokens, dim]`) into host memory as `dtype`
/// (VT_DTYPE_F32, VT_DTYPE_BF16 or VT_DTYPE_F16; bf16/f16 are rounded to nearest even,
/// stored as uint16_t bit patterns in native little-endian order).
///
/// - `dst`: caller-owned buffer of `dst_bytes` bytes, at least n_tokens * dim * element
///   size; written only on VT_OK.
///
/// Errors: VT_ERR_INVALID_ARGUMENT (NULL pointers, index out of range, unknown dtype,
/// buffer too small). Threads: one thread at a time per vt_embeddings.
#[no_mangle]
pub extern "C" fn vt_embeddings_copy(
    e: *const vt_embeddings,
    index: usize,
    dtype: vt_dtype,
    dst: *mut c_void,
    dst_bytes: usize,
    err_out: *mut *mut vt_error,
) -> vt_status {
    let what = || format!("image {index}");
    guard(err_out, || {
        // SAFETY: `e` is NULL or live embeddings, `dst` writable for `dst_bytes` bytes
        // (contract).
        unsafe { copy_level(e, index, 0, dtype, dst, dst_bytes, &what) }
    })
}

/// Copies image `index`'s rows (row-major `[n_tokens, dim]`, as `dtype`) into a CUDA
/// device buffer the caller owns, without a round trip through host memory.
///
/// - `dst_device_ptr`: a device address (CUdeviceptr) of an allocation of at least
///   `dst_bytes` bytes on the GPU the model runs on (vt_load_params.device_ordinal).
/// - Synchronization: the copy is enqueued on vtower's own stream and this call returns
///   after it has completed, so the data is ready for any stream of the caller; vtower
///   keeps no reference to `dst_device_ptr`.
///
/// Errors: VT_ERR_DEVICE when the model does not run on a CUDA GPU (or this build has no
/// CUDA support) or the copy fails; VT_ERR_INVALID_ARGUMENT (NULL `e`, index out of range,
/// unknown dtype, buffer too small). Threads: one thread at a time per vt_embeddings.
#[no_mangle]
pub extern "C" fn vt_embeddings_copy_to_cuda(
    e: *const vt_embeddings,
    index: usize,
    dtype: vt_dtype,
    dst_device_ptr: u64,
    dst_bytes: usize,
    err_out: *mut *mut vt_error,
) -> vt_status {
    guard(err_out, || {
        // SAFETY: `e` is NULL or live embeddings (contract).
        unsafe { copy_level_to_cuda(e, index, 0, dtype, dst_device_ptr, dst_bytes) }
    })
}

/// The body of vt_embeddings_level_copy (and of vt_embeddings_copy, its level 0); `what`
/// names the rows in the error for a buffer that is too small.
///
/// # Safety
/// `e` is NULL or live embeddings; `dst` is writable for `dst_bytes` bytes for the duration
/// of the call.
pub(crate) unsafe fn copy_level(
    e: *const vt_embeddings,
    index: usize,
    level: usize,
    dtype: vt_dtype,
    dst: *mut c_void,
    dst_bytes: usize,
    what: &dyn Fn() -> String,
) -> Result<()> {
    // SAFETY: NULL or live embeddings (contract).
    let e = unsafe { arg(e, "e") }?;
    out_ptr(dst, "dst")?;
    let ty = output_type(dtype)?;
    let needed = level_bytes(&e.emb, index, level, ty)?;
    // SAFETY: `dst` is writable for `dst_bytes` bytes (contract), checked non-NULL.
    let out = unsafe { host_buffer(dst, dst_bytes, needed, what) }?;
    e.emb.copy_level_to_host(index, level, ty, out)
}

/// The body of vt_embeddings_level_copy_to_cuda (and of vt_embeddings_copy_to_cuda, its
/// level 0).
///
/// # Safety
/// `e` is NULL or live embeddings.
pub(crate) unsafe fn copy_level_to_cuda(
    e: *const vt_embeddings,
    index: usize,
    level: usize,
    dtype: vt_dtype,
    dst_device_ptr: u64,
    dst_bytes: usize,
) -> Result<()> {
    // SAFETY: NULL or live embeddings (contract).
    let e = unsafe { arg(e, "e") }?;
    let ty = output_type(dtype)?;
    level_bytes(&e.emb, index, level, ty)?;
    if dst_device_ptr == 0 {
        return Err(Error::invalid_argument("`dst_device_ptr` is 0"));
    }
    copy_rows_to_cuda(&e.emb, index, level, ty, dst_device_ptr, dst_bytes)
}

/// The bytes of level `level` of image `index` as `ty`, or why there are none.
fn level_bytes(e: &Embeddings, index: usize, level: usize, ty: OutputType) -> Result<usize> {
    let n = e.n_tokens(index).ok_or_else(|| {
        Error::invalid_argument(format!(
            "index {index} is out of range (count {})",
            e.count()
        ))
    })?;
    if level >= e.n_levels() {
        return Err(Error::invalid_argument(format!(
            "level {level} is out of range (these embeddings have {} level{})",
            e.n_levels(),
            if e.n_levels() == 1 { "" } else { "s" }
        )));
    }
    Ok(n * e.dim() * ty.size())
}

/// Copies level `level` of image `index` (level 0: the embeddings) to CUDA memory at `dst`.
#[cfg(feature = "cuda")]
pub(crate) fn copy_rows_to_cuda(
    emb: &Embeddings,
    index: usize,
    level: usize,
    ty: OutputType,
    dst: u64,
    dst_bytes: usize,
) -> crate::error::Result<()> {
    let rows = emb.level_device_rows(index, level).ok_or_else(|| {
        crate::error::Error::new(
            crate::error::Status::Device,
            "these embeddings were computed on the CPU; load the model on a CUDA device",
        )
    })?;
    let dtype = match ty {
        OutputType::F32 => candle_core::DType::F32,
        OutputType::BF16 => candle_core::DType::BF16,
        OutputType::F16 => candle_core::DType::F16,
    };
    crate::ffi::cuda::copy_to_device(rows, dtype, dst, dst_bytes)
}

#[cfg(not(feature = "cuda"))]
pub(crate) fn copy_rows_to_cuda(
    _emb: &Embeddings,
    _index: usize,
    _level: usize,
    _ty: OutputType,
    _dst: u64,
    _dst_bytes: usize,
) -> crate::error::Result<()> {
    Err(crate::error::Error::new(
        crate::error::Status::Device,
        "this build of vtower has no CUDA support",
    ))
}
