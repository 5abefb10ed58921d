//! What an engine needs to place image embeddings in a prompt: the special token ids around
//! them and the layout of each image's embeddings.

use crate::ffi::boundary::{arg, guard, guard_value, out_ptr, write};
use crate::ffi::error::vt_error;
use crate::ffi::image::vt_image;
use crate::ffi::model::vt_model;
use crate::ffi::status::vt_status;

/// Which special token vt_model_token_id returns (a `VT_TOKEN_*` value).
pub type vt_token_role = u32;
/// The placeholder token the prompt repeats once per embedding; the engine replaces the
/// placeholders' embeddings with the image's rows (`<image_soft_token>`, `<image>`, `[IMG]`,
/// `<|image_pad|>`).
pub const VT_TOKEN_IMAGE: vt_token_role = 0;
/// The token that opens an image (`<start_of_image>`, `<|vision_start|>`).
pub const VT_TOKEN_IMAGE_START: vt_token_role = 1;
/// The token that closes an image (`<end_of_image>`, `[IMG_END]`, `<|vision_end|>`).
pub const VT_TOKEN_IMAGE_END: vt_token_role = 2;
/// The token that ends each row of image embeddings (`[IMG_BREAK]`).
pub const VT_TOKEN_IMAGE_BREAK: vt_token_role = 3;

/// The language-model token id the checkpoint's config gives for `role`, or -1 when the
/// model has no such token (or `model` is NULL, or `role` is unknown). Any thread.
#[no_mangle]
pub extern "C" fn vt_model_token_id(model: *const vt_model, role: vt_token_role) -> i64 {
    guard_value(-1, || {
        // SAFETY: NULL or a live model (contract).
        let Some(m) = (unsafe { model.as_ref() }) else {
            return -1;
        };
        let t = &m.model.info().tokens;
        let id = match role {
            VT_TOKEN_IMAGE => t.image,
            VT_TOKEN_IMAGE_START => t.image_start,
            VT_TOKEN_IMAGE_END => t.image_end,
            VT_TOKEN_IMAGE_BREAK => t.image_break,
            _ => None,
        };
        id.unwrap_or(-1)
    })
}

/// The layout of the embeddings this image yields: `frames x rows x cols` tokens, in
/// row-major order (frame, then row, then column). Their product is vt_image_n_tokens.
/// For a plain SigLIP model: 1 x (size/patch) x (size/patch). Gemma3: one frame per image
/// plus one per pan-and-scan crop, each sqrt(mm_tokens_per_image) on a side; each frame is
/// wrapped in its own image start/end tokens in the prompt. LLaVA: 1 x (size/patch) x
/// (size/patch), or 1 x 1 x n when the kept tokens have no grid layout (a class token kept,
/// or a patch dropped).
///
/// - `frames_out`, `rows_out`, `cols_out`: receive the grid on VT_OK.
///
/// Errors: VT_ERR_INVALID_ARGUMENT for NULL pointers. Any thread.
#[no_mangle]
pub extern "C" fn vt_image_token_grid(
    image: *const vt_image,
    frames_out: *mut u32,
    rows_out: *mut u32,
    cols_out: *mut u32,
    err_out: *mut *mut vt_error,
) -> vt_status {
    guard(err_out, || {
        // SAFETY: NULL or a live image (contract).
        let img = unsafe { arg(image, "image") }?;
        out_ptr(frames_out, "frames_out")?;
        out_ptr(rows_out, "rows_out")?;
        out_ptr(cols_out, "cols_out")?;
        let [t, r, c] = img.image.token_grid();
        // SAFETY: checked non-NULL above.
        unsafe {
            write(frames_out, t as u32);
            write(rows_out, r as u32);
            write(cols_out, c as u32);
        }
        Ok(())
    })
}
