//! What an engine needs to place image embeddings in a prompt: the special token ids around
//! them and the layout of each image's embeddings.

use crate::error::Error;
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
/// The placeholder a video's prompt repeats once per embedding (Qwen's `<|video_pad|>`,
/// Gemma 4's `<|video|>`: config.json's `video_token_id`), for images from
/// vt_preprocess_video; the video's start / end tokens are VT_TOKEN_IMAGE_START /
/// VT_TOKEN_IMAGE_END.
pub const VT_TOKEN_VIDEO: vt_token_role = 4;

/// The language-model token id for `role`, or -1 when the model has no such token, the
/// model folder does not say (or `model` is NULL, or `role` is unknown). Any thread.
///
/// Where the ids come from: VT_TOKEN_IMAGE from config.json (`image_token_index`) where the
/// model has one; tokens that only the tokenizer knows (Pixtral's `[IMG_BREAK]` and
/// `[IMG_END]`) from the added tokens of `tokenizer.json` (`added_tokens`) or
/// `tokenizer_config.json` (`added_tokens_decoder`), looked up by the token strings
/// `processor_config.json` names (`image_break_token`, `image_end_token`; defaults
/// `[IMG_BREAK]`, `[IMG_END]`).
///
/// Gemma 4 prompt layout (`Gemma4Processor.replace_image_token`): per image,
/// VT_TOKEN_IMAGE_START (`boi_token_id`), vt_image_n_tokens VT_TOKEN_IMAGE placeholders
/// (`image_token_id`), VT_TOKEN_IMAGE_END (`eoi_token_id`), with no text around them; the
/// k-th placeholder takes row k of the image's embeddings. The embeddings are what the
/// language model receives: it does not scale them (its `sqrt(hidden_size)` embedding scale
/// applies to text tokens only; the tower already scaled the soft tokens before the
/// embedder's norm). transformers also feeds the per-layer inputs of placeholder positions
/// from the pad token (`text_config.pad_token_id`).
///
/// Pixtral / Mistral3 prompt layout: per image, each of the `rows` rows of the token grid
/// (vt_image_token_grid) is `cols` VT_TOKEN_IMAGE placeholders followed by
/// VT_TOKEN_IMAGE_BREAK, and the last VT_TOKEN_IMAGE_BREAK is replaced by VT_TOKEN_IMAGE_END;
/// the k-th placeholder takes row k of the image's embeddings (examples/c/pixtral_prompt.c).
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
            VT_TOKEN_VIDEO => m.model.video_token(),
            _ => None,
        };
        id.unwrap_or(-1)
    })
}

/// Writes a `[frames, rows, cols]` grid to three outputs, after checking all of them.
fn write_grid(
    [t, r, c]: [usize; 3],
    frames_out: *mut u32,
    rows_out: *mut u32,
    cols_out: *mut u32,
) -> crate::error::Result<()> {
    out_ptr(frames_out, "frames_out")?;
    out_ptr(rows_out, "rows_out")?;
    out_ptr(cols_out, "cols_out")?;
    // SAFETY: checked non-NULL above; writable by contract.
    unsafe {
        write(frames_out, t as u32);
        write(rows_out, r as u32);
        write(cols_out, c as u32);
    }
    Ok(())
}

/// The layout of the embeddings this image yields: `frames x rows x cols` tokens, in
/// row-major order (frame, then row, then column). Their product is vt_image_n_tokens.
/// For a plain SigLIP model: 1 x (size/patch) x (size/patch). Pixtral: 1 x (H/patch) x
/// (W/patch) of the resized image; Mistral3: the grid after the 2 x 2 patch merge. Gemma3: one
/// frame per image plus one per pan-and-scan crop, each sqrt(mm_tokens_per_image) on a side;
/// each frame is wrapped in its own image start/end tokens in the prompt. Gemma 4: 1 x
/// (patch rows / k) x (patch columns / k) of the resized image, k = `pooling_kernel_size`
/// (vt_model_merge_size). LLaVA: 1 x
/// (size/patch) x (size/patch), or 1 x 1 x n when the kept tokens have no grid layout (a
/// class token kept, or a patch dropped). Qwen2-VL: t x (h/merge) x (w/merge).
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
        write_grid(img.image.token_grid(), frames_out, rows_out, cols_out)
    })
}

/// How many patches per side one embedding covers: Qwen2-VL's `spatial_merge_size` (2 in
/// the released models), Gemma 4's `pooling_kernel_size` (3 in the released models), 1 for
/// families whose embeddings are patches (SigLIP). An image's patch grid
/// (vt_image_patch_grid) is its token grid (vt_image_token_grid) with rows and columns
/// multiplied by this. 0 if `model` is NULL. Any thread.
#[no_mangle]
pub extern "C" fn vt_model_merge_size(model: *const vt_model) -> u32 {
    guard_value(0, || {
        // SAFETY: NULL or a live model (contract).
        unsafe { model.as_ref() }.map_or(0, |m| m.model.merge_size() as u32)
    })
}

/// The grid of patches the tower sees for this image, `frames x rows x cols`: for Qwen2-VL
/// and Qwen2.5-VL exactly the processor's `image_grid_thw` (temporal patches, height / patch
/// size, width / patch size). Equals the token grid times the merge size in rows and
/// columns (vt_model_merge_size).
///
/// - `frames_out`, `rows_out`, `cols_out`: receive the grid on VT_OK.
///
/// Errors: VT_ERR_INVALID_ARGUMENT for NULL pointers. Any thread.
#[no_mangle]
pub extern "C" fn vt_image_patch_grid(
    image: *const vt_image,
    frames_out: *mut u32,
    rows_out: *mut u32,
    cols_out: *mut u32,
    err_out: *mut *mut vt_error,
) -> vt_status {
    guard(err_out, || {
        // SAFETY: NULL or a live image (contract).
        let img = unsafe { arg(image, "image") }?;
        write_grid(img.image.patch_grid(), frames_out, rows_out, cols_out)
    })
}

/// The M-RoPE position ids (Qwen2-VL, Qwen2.5-VL) of this image's embeddings when the
/// image's first embedding sits at position `start` of the prompt, exactly as transformers'
/// `get_rope_index` assigns them. Text tokens have the same id on all three axes
/// (`p, p, p`, counting up by one); the embedding at (frame f, row i, column j) of the token
/// grid (vt_image_token_grid, row-major) gets temporal id `start + f`, height id
/// `start + i` and width id `start + j`; the text after the image continues at
/// `start + max(rows, cols)`. For a prompt `... <|vision_start|>` ending at position
/// `start - 1`, pass `start`; the `<|vision_end|>` token then gets `*next_out`.
///
/// - `start`: the position of the image's first embedding (the number of positions used
///   before it, not the number of tokens).
/// - `positions_out`: room for `positions_len` values; receives `3 * n_tokens` values
///   (n_tokens = vt_image_n_tokens): the temporal ids of all embeddings, then the height
///   ids, then the width ids (the layout of transformers' `position_ids[:, 0, span]`).
/// - `positions_len`: at least `3 * n_tokens`.
/// - `next_out`: NULL, or receives the position the following text starts at.
///
/// Errors: VT_ERR_INVALID_ARGUMENT for NULL pointers, a `positions_len` that is too small,
/// or positions that overflow int64. Nothing is written on error. Any thread.
#[no_mangle]
pub extern "C" fn vt_image_mrope_positions(
    image: *const vt_image,
    start: i64,
    positions_out: *mut i64,
    positions_len: usize,
    next_out: *mut i64,
    err_out: *mut *mut vt_error,
) -> vt_status {
    guard(err_out, || {
        // SAFETY: NULL or a live image (contract).
        let img = unsafe { arg(image, "image") }?;
        out_ptr(positions_out, "positions_out")?;
        let (ids, next) = img.image.mrope_positions(start)?;
        if positions_len < ids.len() {
            return Err(Error::invalid_argument(format!(
                "positions_len {positions_len} is smaller than 3 x {} tokens = {}",
                ids.len() / 3,
                ids.len()
            )));
        }
        // SAFETY: room for `positions_len >= ids.len()` values (contract), checked non-NULL.
        unsafe {
            std::ptr::copy_nonoverlapping(ids.as_ptr(), positions_out, ids.len());
            if !next_out.is_null() {
                write(next_out, next);
            }
        }
        Ok(())
    })
}
