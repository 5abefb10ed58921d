//! What an engine needs to place image embeddings in a prompt: the special token ids around
//! them and the layout of each image's embeddings.

use std::ffi::CString;

use crate::error::Error;
use crate::ffi::boundary::{arg, guard, guard_value, out_ptr, write};
use crate::ffi::error::vt_error;
use crate::ffi::image::vt_image;
use crate::ffi::model::vt_model;
use crate::ffi::status::vt_status;
use crate::models::PromptSegment;

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
/// class token kept, or a patch dropped). Qwen2-VL: t x (h/merge) x (w/merge). InternVL, Aya
/// Vision: one frame per tile (grid tiles row-major, then the thumbnail when there is more
/// than one), each (size/patch/shuffle) on a side.
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
/// positions that overflow int64, or a video whose prompt lays its frames out one by one
/// (Qwen3-VL / Qwen3.5, Gemma 4, Kimi K2.5: take each group's positions with
/// vt_image_frame_mrope_positions). Nothing is written on error. Any thread.
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
        let needs = |n: usize| format!("3 x {} tokens = {n}", n / 3);
        // SAFETY: room for `positions_len` values (contract), checked non-NULL; `next_out`
        // NULL or writable.
        unsafe { write_positions(&ids, next, positions_out, positions_len, next_out, needs) }
    })
}

/// Writes M-RoPE position ids into the caller's `positions_out` (room for `positions_len`
/// values, checked non-NULL) and the following position into `next_out` unless it is NULL.
/// Nothing is written when `positions_len` is too small: the error says "positions_len ..
/// is smaller than `needs(ids.len())`".
///
/// # Safety
/// `positions_out` is writable for `positions_len` values; `next_out` is NULL or writable.
pub(crate) unsafe fn write_positions(
    ids: &[i64],
    next: i64,
    positions_out: *mut i64,
    positions_len: usize,
    next_out: *mut i64,
    needs: impl FnOnce(usize) -> String,
) -> crate::error::Result<()> {
    if positions_len < ids.len() {
        return Err(Error::invalid_argument(format!(
            "positions_len {positions_len} is smaller than {}",
            needs(ids.len())
        )));
    }
    // SAFETY: room for `positions_len >= ids.len()` values (contract).
    unsafe {
        std::ptr::copy_nonoverlapping(ids.as_ptr(), positions_out, ids.len());
        if !next_out.is_null() {
            write(next_out, next);
        }
    }
    Ok(())
}

/// Which kind of piece a vt_prompt_segment is (a `VT_SEGMENT_*` value).
pub type vt_segment_kind = u32;
/// Text for the engine to tokenize with the model's tokenizer, like the rest of the prompt
/// (`text`, `text_len`).
pub const VT_SEGMENT_TEXT: vt_segment_kind = 0;
/// One special token (`token_id`).
pub const VT_SEGMENT_TOKEN: vt_segment_kind = 1;
/// `count` placeholder tokens (`token_id`, or -1 when the model folder does not name it)
/// whose input embeddings are the image's embedding rows `start .. start + count - 1` (row
/// k of vt_embeddings_data for this image goes to the k-th placeholder of the image).
pub const VT_SEGMENT_EMBEDDINGS: vt_segment_kind = 2;

/// One piece of an image's prompt layout, filled by vt_prompt_segment_at. Set `struct_size` to
/// `sizeof(vt_prompt_segment)` before the call: fields are only ever appended, and vtower
/// writes only the fields that struct_size covers.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct vt_prompt_segment {
    /// `sizeof(vt_prompt_segment)`, set by the caller.
    pub struct_size: u32,
    /// VT_SEGMENT_TEXT, VT_SEGMENT_TOKEN or VT_SEGMENT_EMBEDDINGS.
    pub kind: vt_segment_kind,
    /// VT_SEGMENT_TEXT: the text, UTF-8, NUL-terminated, borrowed from the vt_prompt (valid
    /// until vt_prompt_free); NULL for the other kinds.
    pub text: *const std::ffi::c_char,
    /// VT_SEGMENT_TEXT: the text's length in bytes (without the NUL); 0 otherwise.
    pub text_len: usize,
    /// VT_SEGMENT_TOKEN: the token id. VT_SEGMENT_EMBEDDINGS: the placeholder token id, or
    /// -1 when unknown. VT_SEGMENT_TEXT: -1.
    pub token_id: i64,
    /// VT_SEGMENT_EMBEDDINGS: the first embedding row; 0 otherwise.
    pub start: usize,
    /// VT_SEGMENT_EMBEDDINGS: the number of placeholders (and rows); 0 otherwise.
    pub count: usize,
}

/// The prompt layout of one image: an immutable list of segments (vt_image_prompt).
pub struct vt_prompt {
    segments: Vec<PromptSegment>,
    /// The text of each segment (empty for non-text ones), NUL-terminated.
    texts: Vec<CString>,
}

/// The pieces of the prompt that stand for `image` in the language model's input, in order,
/// as the model's reference processor lays them out: text (to tokenize), special tokens, and
/// runs of placeholder tokens that take the image's embedding rows. The placeholder runs
/// cover every embedding row exactly once, in order. This is the one call an engine needs
/// for every family; vt_model_token_id and vt_image_token_grid give the same information in
/// parts. Per family:
/// - SigLIP, SigLIP2: one run (no token id).
/// - LLaVA, PaliGemma: `image_token_index` x n (PaliGemma's `<bos>` and text follow in the
///   prompt, not in the layout).
/// - Gemma3: text "\n\n", `<start_of_image>`, placeholders, `<end_of_image>`, text "\n\n"; with
///   pan-and-scan crops, "Here is the original image " before the first block, " and here are
///   some crops to help you see better " before the crops' blocks, joined by " ".
/// - Gemma 4: `boi`, placeholders, `eoi`; a video: per frame the text "mm:ss ", `boi`, the
///   frame's video placeholders, `eoi`, frames joined by " ".
/// - Pixtral / Mistral3: per row of the token grid, `cols` `[IMG]` then `[IMG_BREAK]`, the last
///   `[IMG_BREAK]` being `[IMG_END]`.
/// - Qwen2-VL / Qwen2.5-VL / Qwen3-VL / Qwen3.5: `<|vision_start|>`, placeholders
///   (`<|image_pad|>` or `<|video_pad|>`), `<|vision_end|>` (the whole block the chat template
///   writes); a Qwen3-VL / Qwen3.5 video: per temporal group the text `<T seconds>`,
///   `<|vision_start|>`, the group's `<|video_pad|>`, `<|vision_end|>`.
/// - InternVL: `<img>`, `<IMG_CONTEXT>` x (tokens per tile x tiles), `</img>`.
/// - Aya Vision: `<|START_OF_IMG|>`; per grid tile i (from 1) the text `TILE_i` and its
///   `<|IMG_PATCH|>` run; the text `TILE_GLOBAL` and the thumbnail's run (the only tile's
///   when there is one); `<|END_OF_IMG|>`.
///
/// A special token whose id the model folder does not give appears as its text.
///
/// - `image`: preprocessed by this model (vt_preprocess*, vt_preprocess_video).
/// - `prompt_out`: receives a new layout on VT_OK; free with vt_prompt_free. It does not
///   refer to the model or the image.
///
/// Errors: VT_ERR_INVALID_ARGUMENT (NULL pointers, an image of another model).
/// Threads: any thread, concurrently with other calls on the same model.
#[no_mangle]
pub extern "C" fn vt_image_prompt(
    model: *const vt_model,
    image: *const vt_image,
    prompt_out: *mut *mut vt_prompt,
    err_out: *mut *mut vt_error,
) -> vt_status {
    guard(err_out, || {
        // SAFETY: NULL or live objects (contract).
        let m = unsafe { arg(model, "model") }?;
        // SAFETY: as above.
        let img = unsafe { arg(image, "image") }?;
        out_ptr(prompt_out, "prompt_out")?;
        let segments = m.model.prompt_layout(&img.image)?;
        let texts = segments
            .iter()
            .map(|s| match s {
                PromptSegment::Text(t) => CString::new(t.as_str())
                    .map_err(|_| Error::compute("prompt text holds a NUL byte")),
                _ => Ok(CString::default()),
            })
            .collect::<crate::error::Result<Vec<_>>>()?;
        let boxed = Box::into_raw(Box::new(vt_prompt { segments, texts }));
        // SAFETY: checked non-NULL above.
        unsafe { write(prompt_out, boxed) };
        Ok(())
    })
}

/// Number of segments of `prompt`; 0 if `prompt` is NULL. Any thread.
#[no_mangle]
pub extern "C" fn vt_prompt_n_segments(prompt: *const vt_prompt) -> usize {
    guard_value(0, || {
        // SAFETY: NULL or a live prompt (contract).
        unsafe { prompt.as_ref() }.map_or(0, |p| p.segments.len())
    })
}

/// Fills `segment_out` with segment `index` (0-based, below vt_prompt_n_segments) of
/// `prompt`. The caller sets `segment_out->struct_size` first (at least up to `count` of this
/// header's struct); text pointers are borrowed from `prompt`.
///
/// Errors: VT_ERR_INVALID_ARGUMENT (NULL pointers, `index` out of range, a struct_size too
/// small). Any thread.
#[no_mangle]
pub extern "C" fn vt_prompt_segment_at(
    prompt: *const vt_prompt,
    index: usize,
    segment_out: *mut vt_prompt_segment,
    err_out: *mut *mut vt_error,
) -> vt_status {
    guard(err_out, || {
        // SAFETY: NULL or a live prompt (contract).
        let p = unsafe { arg(prompt, "prompt") }?;
        out_ptr(segment_out, "segment_out")?;
        // SAFETY: checked non-NULL; the caller's struct is readable for its first field.
        let size = unsafe { std::ptr::addr_of!((*segment_out).struct_size).read_unaligned() };
        let full = std::mem::size_of::<vt_prompt_segment>();
        if (size as usize) < full {
            return Err(Error::invalid_argument(format!(
                "segment_out->struct_size {size} is smaller than sizeof(vt_prompt_segment) \
                 = {full}; set it before the call"
            )));
        }
        let s = p.segments.get(index).ok_or_else(|| {
            Error::invalid_argument(format!(
                "segment {index} of a layout of {} segments",
                p.segments.len()
            ))
        })?;
        let mut out = vt_prompt_segment {
            struct_size: size,
            kind: VT_SEGMENT_TEXT,
            text: std::ptr::null(),
            text_len: 0,
            token_id: -1,
            start: 0,
            count: 0,
        };
        match s {
            PromptSegment::Text(t) => {
                out.text = p.texts[index].as_ptr();
                out.text_len = t.len();
            }
            PromptSegment::Token(id) => {
                out.kind = VT_SEGMENT_TOKEN;
                out.token_id = *id;
            }
            PromptSegment::Embeddings {
                token,
                start,
                count,
            } => {
                out.kind = VT_SEGMENT_EMBEDDINGS;
                out.token_id = token.unwrap_or(-1);
                out.start = *start;
                out.count = *count;
            }
        }
        // SAFETY: checked non-NULL; the caller's struct covers all of this header's fields
        // (struct_size checked above).
        unsafe { write(segment_out, out) };
        Ok(())
    })
}

/// Frees a prompt layout (and the texts borrowed from it). NULL is a no-op.
#[no_mangle]
pub extern "C" fn vt_prompt_free(prompt: *mut vt_prompt) {
    guard_value((), || {
        if !prompt.is_null() {
            // SAFETY: `prompt` came from vt_image_prompt and is freed once (contract).
            drop(unsafe { Box::from_raw(prompt) });
        }
    })
}
