//! Running the tower and reading its output.

use crate::engine::{Embeddings, Image};
use crate::error::Error;
use crate::ffi::boundary::{arg, guard, guard_value, out_ptr, write};
use crate::ffi::error::vt_error;
use crate::ffi::image::vt_image;
use crate::ffi::model::vt_model;
use crate::ffi::status::vt_status;

/// The output of one vt_forward call: for each input image, a row-major
/// `[n_tokens, dim]` f32 matrix. Freed with vt_embeddings_free. A plain value: one thread
/// at a time, any thread.
pub struct vt_embeddings {
    emb: Embeddings,
}

/// Runs the vision tower and projector on `n_images` images preprocessed by this model.
/// Images of the same size run together as a batch; results equal one-image calls.
///
/// - `images`: array of `n_images` non-NULL image pointers (NULL allowed when n_images is
///   0); borrowed for the call.
/// - `out`: receives the embeddings on VT_OK; the caller frees them with vt_embeddings_free.
/// - `err_out`: NULL, or receives an owned vt_error on failure.
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
        let list: &[*const vt_image] = if n_images == 0 {
            &[]
        } else if images.is_null() {
            return Err(Error::invalid_argument(format!(
                "`images` is NULL but n_images is {n_images}"
            )));
        } else {
            // SAFETY: `n_images` readable pointers (contract).
            unsafe { std::slice::from_raw_parts(images, n_images) }
        };
        let mut refs: Vec<&Image> = Vec::with_capacity(list.len());
        for (i, p) in list.iter().enumerate() {
            // SAFETY: each entry is NULL or a live image (contract).
            let img = unsafe { arg(*p, &format!("images[{i}]")) }?;
            refs.push(&img.image);
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
/// vt_embeddings_free(e). NULL if `e` is NULL or `index` is out of range.
#[no_mangle]
pub extern "C" fn vt_embeddings_data(e: *const vt_embeddings, index: usize) -> *const f32 {
    with_emb(e, std::ptr::null(), |e| {
        e.data(index).map_or(std::ptr::null(), |d| d.as_ptr())
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
