//! Preprocessing images.

use crate::engine::Image;
use crate::error::{Error, Result};
use crate::ffi::boundary::{arg, bytes, guard, guard_value, out_ptr, write};
use crate::ffi::error::vt_error;
use crate::ffi::model::vt_model;
use crate::ffi::params::{read_versioned, to_preprocess_options, vt_preprocess_params};
use crate::ffi::status::vt_status;
use crate::preprocess::PreprocessOptions;

/// The most dimensions vt_image_shape reports.
pub const VT_IMAGE_MAX_DIMS: usize = 4;

/// A preprocessed image: the normalized tensor that enters one model's tower. Created by
/// vt_preprocess / vt_preprocess_rgb8 for one model and only usable with that model; freed
/// with vt_image_free. A plain value: one thread at a time, any thread; several threads may
/// pass the same image to vt_forward concurrently (it is only read).
pub struct vt_image {
    pub(crate) image: Image,
}

/// Borrows the images of an `(images, n_images)` argument, in order; `(NULL, 0)` is none.
/// Each item is the image, or the error for a NULL entry (`images[i]`).
///
/// # Safety
/// When `n_images > 0`, `images` points to `n_images` readable pointers, each NULL or a live
/// image, for the duration of the call.
pub(crate) unsafe fn image_args<'a>(
    images: *const *const vt_image,
    n_images: usize,
) -> Result<impl ExactSizeIterator<Item = Result<&'a vt_image>>> {
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
    Ok(list.iter().enumerate().map(|(i, p)| {
        // SAFETY: each entry is NULL or a live image (contract).
        unsafe { arg(*p, &format!("images[{i}]")) }
    }))
}

/// Hands `image` to the caller through `image_out`, already checked by [`out_ptr`].
pub(crate) fn finish(image: Image, image_out: *mut *mut vt_image) {
    let boxed = Box::into_raw(Box::new(vt_image { image }));
    // SAFETY: checked non-NULL by the caller.
    unsafe { write(image_out, boxed) };
}

/// Reads optional preprocess params into engine options.
///
/// # Safety
/// `params` is NULL or points to at least `(*params).struct_size` readable bytes.
unsafe fn options(params: *const vt_preprocess_params) -> Result<PreprocessOptions> {
    // SAFETY: per this function's contract.
    to_preprocess_options(&unsafe { read_versioned(params) }?)
}

/// Shared body of vt_preprocess and vt_preprocess_ex.
fn preprocess_bytes(
    model: *const vt_model,
    data: *const u8,
    len: usize,
    params: *const vt_preprocess_params,
    image_out: *mut *mut vt_image,
) -> Result<()> {
    // SAFETY: NULL or a live model (contract).
    let m = unsafe { arg(model, "model") }?;
    out_ptr(image_out, "image_out")?;
    // SAFETY: NULL or a struct of struct_size readable bytes (contract).
    let opts = unsafe { options(params) }?;
    // SAFETY: `len` readable bytes at `data` (contract).
    let data = unsafe { bytes(data, len, "data") }?;
    finish(m.model.preprocess_with(data, &opts)?, image_out);
    Ok(())
}

/// Shared body of vt_preprocess_rgb8 and vt_preprocess_rgb8_ex.
#[allow(clippy::too_many_arguments)]
fn preprocess_pixels(
    model: *const vt_model,
    pixels: *const u8,
    width: u32,
    height: u32,
    row_stride: usize,
    params: *const vt_preprocess_params,
    image_out: *mut *mut vt_image,
) -> Result<()> {
    // SAFETY: NULL or a live model (contract).
    let m = unsafe { arg(model, "model") }?;
    out_ptr(image_out, "image_out")?;
    if pixels.is_null() {
        return Err(crate::error::Error::invalid_argument("`pixels` is NULL"));
    }
    // SAFETY: NULL or a struct of struct_size readable bytes (contract).
    let opts = unsafe { options(params) }?;
    // Sizes are validated (and the pixel limit applied) before touching memory.
    let needed = if width == 0 || height == 0 {
        0
    } else {
        (height as usize - 1)
            .checked_mul(row_stride)
            .and_then(|n| n.checked_add(width as usize * 3))
            .filter(|_| row_stride >= width as usize * 3)
            .unwrap_or(0)
    };
    let slice: &[u8] = if needed == 0 {
        &[]
    } else {
        // SAFETY: the caller provides `needed` readable bytes (contract).
        unsafe { bytes(pixels, needed, "pixels") }?
    };
    finish(
        m.model
            .preprocess_rgb8_with(slice, width, height, row_stride, &opts)?,
        image_out,
    );
    Ok(())
}

/// Decodes an encoded image file (PNG, JPEG, WebP, GIF (first frame), BMP, TIFF) and
/// preprocesses it for `model` exactly as the model's Hugging Face image processor does
/// (RGB conversion with alpha composited on white, resize, rescale, normalize).
///
/// - `data`, `len`: the file's bytes; copied during the call, not kept.
/// - `image_out`: receives a new image on VT_OK; the caller frees it with vt_image_free.
/// - `err_out`: NULL, or receives an owned vt_error on failure.
///
/// Errors: VT_ERR_INVALID_ARGUMENT (NULL pointers), VT_ERR_IMAGE_DECODE (corrupt,
/// truncated, empty or unsupported data), VT_ERR_IMAGE_TOO_LARGE (more pixels than
/// vt_load_params.max_image_pixels, detected from the header before decoding, or more
/// embeddings than vt_load_params.max_image_tokens).
/// Threads: any thread, concurrently with other calls on the same model.
#[no_mangle]
pub extern "C" fn vt_preprocess(
    model: *const vt_model,
    data: *const u8,
    len: usize,
    image_out: *mut *mut vt_image,
    err_out: *mut *mut vt_error,
) -> vt_status {
    guard(err_out, || {
        preprocess_bytes(model, data, len, std::ptr::null(), image_out)
    })
}

/// vt_preprocess with per-call options (Gemma3 pan-and-scan; see vt_preprocess_params).
///
/// - `params`: NULL for the defaults (= vt_preprocess: everything as the model's
///   preprocessor_config.json says), or a struct from vt_preprocess_params_default() with
///   fields changed. Borrowed for the call.
/// - `data`, `len`, `image_out`, `err_out`: as vt_preprocess.
///
/// Errors: as vt_preprocess, plus VT_ERR_INVALID_ARGUMENT for bad params (struct_size,
/// out-of-range values) or `pan_and_scan = 1` on a model without pan-and-scan.
/// Threads: any thread, concurrently with other calls on the same model.
#[no_mangle]
pub extern "C" fn vt_preprocess_ex(
    model: *const vt_model,
    data: *const u8,
    len: usize,
    params: *const vt_preprocess_params,
    image_out: *mut *mut vt_image,
    err_out: *mut *mut vt_error,
) -> vt_status {
    guard(err_out, || {
        preprocess_bytes(model, data, len, params, image_out)
    })
}

/// Preprocesses raw 8-bit RGB pixels (R, G, B bytes per pixel, no alpha) for `model`.
///
/// - `pixels`: `height` rows of `width * 3` bytes, row `y` starting at `pixels + y *
///   row_stride`; at least `(height - 1) * row_stride + width * 3` readable bytes. Copied
///   during the call, not kept.
/// - `row_stride`: bytes between row starts, at least `width * 3`.
/// - `image_out`: receives a new image on VT_OK; free with vt_image_free.
///
/// Errors: VT_ERR_INVALID_ARGUMENT (NULL pointers, zero size, stride too small),
/// VT_ERR_IMAGE_TOO_LARGE (over max_image_pixels or max_image_tokens of vt_load_params).
/// Threads: any thread, concurrently on the same model.
#[no_mangle]
pub extern "C" fn vt_preprocess_rgb8(
    model: *const vt_model,
    pixels: *const u8,
    width: u32,
    height: u32,
    row_stride: usize,
    image_out: *mut *mut vt_image,
    err_out: *mut *mut vt_error,
) -> vt_status {
    guard(err_out, || {
        preprocess_pixels(
            model,
            pixels,
            width,
            height,
            row_stride,
            std::ptr::null(),
            image_out,
        )
    })
}

/// vt_preprocess_rgb8 with per-call options (see vt_preprocess_params).
///
/// - `params`: NULL for the defaults (= vt_preprocess_rgb8), or a struct from
///   vt_preprocess_params_default() with fields changed. Borrowed for the call.
/// - other arguments: as vt_preprocess_rgb8.
///
/// Errors: as vt_preprocess_rgb8, plus those of vt_preprocess_ex for `params`.
/// Threads: any thread, concurrently on the same model.
#[no_mangle]
#[allow(clippy::too_many_arguments)]
pub extern "C" fn vt_preprocess_rgb8_ex(
    model: *const vt_model,
    pixels: *const u8,
    width: u32,
    height: u32,
    row_stride: usize,
    params: *const vt_preprocess_params,
    image_out: *mut *mut vt_image,
    err_out: *mut *mut vt_error,
) -> vt_status {
    guard(err_out, || {
        preprocess_pixels(model, pixels, width, height, row_stride, params, image_out)
    })
}

/// The preprocessed tensor (what enters the tower), in the layout the reference image
/// processor returns for this one image, row-major f32: `[3, H, W]` for SigLIP, LLaVA and
/// Gemma3; `[1 + crops, 3, H, W]` for a Gemma3 image cut by pan-and-scan (the image first);
/// Gemma 4: `pixel_values[0]`, `[max_soft_tokens * k * k, 3 * patch * patch]` (k =
/// `pooling_kernel_size`): one row per patch of the resized image in raster order, values
/// `(y, x, channel)` in [0, 1], then zero rows up to the budget. Gemma 4's
/// `image_position_ids` are `(x, y)` of each patch row over the patch grid
/// (vt_image_patch_grid), row-major, and `(-1, -1)` for the padding rows.
///
/// - `data_out`: receives a pointer borrowed from `image`, valid until vt_image_free.
/// - `len_out`: receives the number of floats.
///
/// Errors: VT_ERR_INVALID_ARGUMENT for NULL pointers. Any thread.
#[no_mangle]
pub extern "C" fn vt_image_pixels(
    image: *const vt_image,
    data_out: *mut *const f32,
    len_out: *mut usize,
    err_out: *mut *mut vt_error,
) -> vt_status {
    guard(err_out, || {
        // SAFETY: NULL or a live image (contract).
        let img = unsafe { arg(image, "image") }?;
        out_ptr(data_out, "data_out")?;
        out_ptr(len_out, "len_out")?;
        let px = img.image.pixels();
        // SAFETY: checked non-NULL above.
        unsafe {
            write(data_out, px.as_ptr());
            write(len_out, px.len());
        }
        Ok(())
    })
}

/// The shape of the tensor vt_image_pixels returns.
///
/// - `shape_out`: room for VT_IMAGE_MAX_DIMS values; receives the dimensions.
/// - `ndim_out`: receives how many dimensions were written.
///
/// Errors: VT_ERR_INVALID_ARGUMENT for NULL pointers. Any thread.
#[no_mangle]
pub extern "C" fn vt_image_shape(
    image: *const vt_image,
    shape_out: *mut usize,
    ndim_out: *mut usize,
    err_out: *mut *mut vt_error,
) -> vt_status {
    guard(err_out, || {
        // SAFETY: NULL or a live image (contract).
        let img = unsafe { arg(image, "image") }?;
        out_ptr(shape_out, "shape_out")?;
        out_ptr(ndim_out, "ndim_out")?;
        let shape = img.image.shape();
        debug_assert!(shape.len() <= VT_IMAGE_MAX_DIMS);
        for (i, d) in shape.iter().take(VT_IMAGE_MAX_DIMS).enumerate() {
            // SAFETY: room for VT_IMAGE_MAX_DIMS values (contract).
            unsafe { write(shape_out.add(i), *d) };
        }
        // SAFETY: checked non-NULL above.
        unsafe { write(ndim_out, shape.len().min(VT_IMAGE_MAX_DIMS)) };
        Ok(())
    })
}

/// How many embedding rows this image will yield in vt_forward. 0 if `image` is NULL.
/// Any thread.
#[no_mangle]
pub extern "C" fn vt_image_n_tokens(image: *const vt_image) -> usize {
    guard_value(0, || {
        // SAFETY: NULL or a live image (contract).
        unsafe { image.as_ref() }.map_or(0, |i| i.image.n_tokens())
    })
}

/// Frees an image. NULL is a no-op.
#[no_mangle]
pub extern "C" fn vt_image_free(image: *mut vt_image) {
    guard_value((), || {
        if !image.is_null() {
            // SAFETY: `image` came from vt_preprocess* and is freed once (contract).
            drop(unsafe { Box::from_raw(image) });
        }
    })
}
