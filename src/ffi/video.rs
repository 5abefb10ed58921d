//! Video input (Qwen2-VL, Qwen2.5-VL, Qwen3-VL, Qwen3.5, Gemma 4, Kimi K2.5): decoded frames in, one vt_image
//! out, plus what the prompt needs (timestamps, Qwen2.5-VL's seconds per temporal patch,
//! per-frame M-RoPE positions).

use crate::engine::model::strided_len;
use crate::error::Error;
use crate::ffi::boundary::{arg, bytes, guard, guard_value, out_ptr, write};
use crate::ffi::error::vt_error;
use crate::ffi::image::{finish, vt_image};
use crate::ffi::model::vt_model;
use crate::ffi::params::{read_versioned, to_video_options, vt_video_params};
use crate::ffi::prompt::write_positions;
use crate::ffi::status::vt_status;

/// The most frames vt_preprocess_video takes in one call.
pub const VT_VIDEO_MAX_FRAMES: usize = 1 << 20;

/// Preprocesses a decoded video for `model` as the model's Hugging Face video processor does:
/// frame sampling (`do_sample_frames`, `fps`, `num_frames`, `min_frames` / `max_frames` of
/// the video processor config, or vt_video_params), resize (torchvision's antialiased
/// resize of 8-bit frames), rescale / normalize, and the grouping of `temporal_patch_size`
/// consecutive frames (a short last group repeats the last frame; Qwen only). The result is
/// a vt_image that vt_forward takes like any other (mixed with still images and other
/// videos); its token grid (vt_image_token_grid) is `groups x rows x cols` and its patch grid
/// (vt_image_patch_grid) the processor's `video_grid_thw`. Gemma 4 (`Gemma4VideoProcessor`):
/// `num_frames` frames (class default 32; more than the video has is an error, as in
/// transformers) or `fps`, each kept frame resized like an image to the video processor's
/// own `max_soft_tokens` (class default 70) and run as one; the token grid is `frames x rows
/// x cols`, vt_image_pixels the processor's `pixel_values_videos` (`[frames *
/// max_patches, 3 * patch²]`, padded per frame). Kimi K2.5 (`Kimi_K25VideoProcessor`):
/// `fps` (class default 2; needs the source frame rate) or `num_frames` frames, in chunks
/// of `temporal_patch_size` (4) frames, the last one shorter; each frame resized and padded
/// like an image (`navit_resize` with the video processor's `max_patches`, class default
/// 4096); the tower pools each chunk's frames into one frame of tokens: the token grid is
/// `chunks x rows x cols`, vt_image_pixels every kept frame's patch rows.
///
/// The settings come from `processor_config.json`'s `video_processor`, else
/// `video_preprocessor_config.json`, else `preprocessor_config.json`, as transformers reads
/// them.
///
/// - `frames`: `n_frames` pointers, frame `i` at `frames[i]`: `height` rows of `width * 3`
///   bytes (R, G, B), row `y` at `frames[i] + y * row_stride`; at least `(height - 1) *
///   row_stride + width * 3` readable bytes each. All frames have one size. Only the kept
///   frames are read; nothing is kept after the call.
/// - `row_stride`: bytes between row starts, at least `width * 3`.
/// - `params`: NULL for the defaults, or a struct from vt_video_params_default() (the source
///   frame rate, sampling overrides). Borrowed for the call.
/// - `image_out`: receives a new image on VT_OK; free with vt_image_free.
///
/// Prompt (Qwen2-VL, Qwen2.5-VL): `<|vision_start|>`, vt_image_n_tokens VT_TOKEN_VIDEO
/// placeholders, `<|vision_end|>`; positions from vt_image_mrope_positions. Qwen3-VL /
/// Qwen3.5: per temporal group `g`, the text `<T seconds>` (T = vt_image_video_timestamps
/// value `g` printed with one decimal, `%.1f`), `<|vision_start|>`, rows x cols placeholders,
/// `<|vision_end|>`; positions per group from vt_image_frame_mrope_positions. Gemma 4: per
/// frame `f`, the text `mm:ss` (vt_image_video_timestamps value `f` as zero-padded minutes
/// and whole seconds), a space, VT_TOKEN_IMAGE_START (`boi`), rows x cols VT_TOKEN_VIDEO
/// placeholders, VT_TOKEN_IMAGE_END (`eoi`), the frames joined by a space
/// (`Gemma4Processor.replace_video_token`); the rows replace the placeholders in order, and
/// the language model does not scale them. Kimi K2.5: per chunk `c`, the text
/// `HH:MM:SS.mmm` (vt_image_video_timestamps value `c`, milliseconds truncated), then
/// VT_TOKEN_IMAGE_START (`<|media_begin|>`), the text `video`, `<|media_content|>`, rows x
/// cols VT_TOKEN_VIDEO placeholders, VT_TOKEN_IMAGE_END (`<|media_end|>`)
/// (`Kimi_K25Processor.replace_video_token`); vt_image_prompt spells it out.
///
/// Errors: VT_ERR_INVALID_ARGUMENT (NULL pointers, no frames or more than
/// VT_VIDEO_MAX_FRAMES, zero size, stride too small, bad params, sampling the config or
/// params cannot do, e.g. `fps` without a source frame rate on Qwen2-VL, or a family without
/// video), VT_ERR_BAD_CONFIG (an unusable video processor config), VT_ERR_IMAGE_TOO_LARGE
/// (frames over max_image_pixels, or more tokens than max_image_tokens of vt_load_params,
/// checked before the frames are read).
/// Threads: any thread, concurrently with other calls on the same model.
#[no_mangle]
#[allow(clippy::too_many_arguments)]
pub extern "C" fn vt_preprocess_video(
    model: *const vt_model,
    frames: *const *const u8,
    n_frames: usize,
    width: u32,
    height: u32,
    row_stride: usize,
    params: *const vt_video_params,
    image_out: *mut *mut vt_image,
    err_out: *mut *mut vt_error,
) -> vt_status {
    guard(err_out, || {
        // SAFETY: NULL or a live model (contract).
        let m = unsafe { arg(model, "model") }?;
        out_ptr(image_out, "image_out")?;
        // SAFETY: NULL or a struct of struct_size readable bytes (contract).
        let p = unsafe { read_versioned(params) }?;
        let (source_fps, opts) = to_video_options(&p)?;
        if frames.is_null() {
            return Err(Error::invalid_argument("`frames` is NULL"));
        }
        if n_frames == 0 || n_frames > VT_VIDEO_MAX_FRAMES {
            return Err(Error::invalid_argument(format!(
                "n_frames {n_frames} must be 1 to {VT_VIDEO_MAX_FRAMES}"
            )));
        }
        if width == 0 || height == 0 {
            return Err(Error::invalid_argument(format!(
                "frame size {width}x{height} is empty"
            )));
        }
        let needed = strided_len(width, height, row_stride)?;
        // SAFETY: `n_frames` readable pointers at `frames` (contract).
        let ptrs = unsafe { std::slice::from_raw_parts(frames, n_frames) };
        let mut slices = Vec::with_capacity(n_frames);
        for (i, &f) in ptrs.iter().enumerate() {
            if f.is_null() {
                return Err(Error::invalid_argument(format!("`frames[{i}]` is NULL")));
            }
            // SAFETY: each frame has `needed` readable bytes (contract).
            slices.push(unsafe { bytes(f, needed, "frames[i]") }?);
        }
        let image = m
            .model
            .preprocess_video(&slices, width, height, row_stride, source_fps, &opts)?;
        finish(image, image_out);
        Ok(())
    })
}

/// 1 if `image` came from vt_preprocess_video, else 0 (also for NULL). Any thread.
#[no_mangle]
pub extern "C" fn vt_image_is_video(image: *const vt_image) -> i32 {
    guard_value(0, || {
        // SAFETY: NULL or a live image (contract).
        unsafe { image.as_ref() }.map_or(0, |i| i32::from(i.image.video().is_some()))
    })
}

/// The time in seconds of each temporal group of a video (what Qwen3-VL / Qwen3.5 write
/// before each group as `<T seconds>` with T printed `%.1f`): the mean of the first and last
/// kept frame's `index / source_fps` (24 fps when the source rate is unknown), as
/// transformers' `Qwen3VLProcessor._calculate_timestamps`. Gemma 4: each kept frame's
/// `index / source_fps` (24 fps when unknown; the prompt writes it `mm:ss`). Kimi K2.5: each
/// chunk's first kept frame's `index / source_fps` (24 fps when unknown). One value per
/// group: the token grid's `frames`.
///
/// - `timestamps_out`: room for `len` values, or NULL with `len` 0 to ask the count.
/// - `count_out`: receives the number of groups.
///
/// Errors: VT_ERR_INVALID_ARGUMENT for NULL pointers, a still image, or `len` below the
/// count (nothing written then but `count_out`). Any thread.
#[no_mangle]
pub extern "C" fn vt_image_video_timestamps(
    image: *const vt_image,
    timestamps_out: *mut f64,
    len: usize,
    count_out: *mut usize,
    err_out: *mut *mut vt_error,
) -> vt_status {
    guard(err_out, || {
        // SAFETY: NULL or a live image (contract).
        let img = unsafe { arg(image, "image") }?;
        out_ptr(count_out, "count_out")?;
        let video = img
            .image
            .video()
            .ok_or_else(|| Error::invalid_argument("the image is not a video"))?;
        let ts = &video.timestamps;
        // SAFETY: checked non-NULL above.
        unsafe { write(count_out, ts.len()) };
        if len == 0 && timestamps_out.is_null() {
            return Ok(());
        }
        out_ptr(timestamps_out, "timestamps_out")?;
        if len < ts.len() {
            return Err(Error::invalid_argument(format!(
                "len {len} is smaller than the {} timestamps",
                ts.len()
            )));
        }
        // SAFETY: room for `len >= ts.len()` values (contract), checked non-NULL.
        unsafe { std::ptr::copy_nonoverlapping(ts.as_ptr(), timestamps_out, ts.len()) };
        Ok(())
    })
}

/// Qwen2.5-VL's `second_per_grid_ts` of a video: seconds per temporal group,
/// `temporal_patch_size / sampled fps` (sampled fps = kept / given frames * source fps, or
/// 24 when the source rate is unknown). vt_image_mrope_positions already applies it.
///
/// Errors: VT_ERR_INVALID_ARGUMENT for NULL pointers or a still image. Any thread.
#[no_mangle]
pub extern "C" fn vt_image_video_second_per_grid(
    image: *const vt_image,
    seconds_out: *mut f64,
    err_out: *mut *mut vt_error,
) -> vt_status {
    guard(err_out, || {
        // SAFETY: NULL or a live image (contract).
        let img = unsafe { arg(image, "image") }?;
        out_ptr(seconds_out, "seconds_out")?;
        let video = img
            .image
            .video()
            .ok_or_else(|| Error::invalid_argument("the image is not a video"))?;
        // SAFETY: checked non-NULL above.
        unsafe { write(seconds_out, video.second_per_grid) };
        Ok(())
    })
}

/// The M-RoPE position ids of temporal group `frame` of a Qwen3-VL / Qwen3.5 video, whose
/// groups the prompt lays out one by one (`<T seconds><|vision_start|>` group
/// `<|vision_end|>`), when the group's first embedding sits at position `start`: as
/// vt_image_mrope_positions for a 1 x rows x cols image (`3 * rows * cols` values: temporal
/// ids, then height ids, then width ids; `*next_out` = `start + max(rows, cols)`). For a still
/// image, frame 0 gives vt_image_mrope_positions.
///
/// Errors: VT_ERR_INVALID_ARGUMENT for NULL pointers, `frame` out of range, a
/// `positions_len` below `3 * rows * cols`, positions that overflow int64, or a Qwen2-VL /
/// Qwen2.5-VL video (whose frames are laid out together: use vt_image_mrope_positions).
/// Nothing is written on error. Any thread.
#[no_mangle]
pub extern "C" fn vt_image_frame_mrope_positions(
    image: *const vt_image,
    frame: u32,
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
        let (ids, next) = img.image.frame_mrope_positions(frame as usize, start)?;
        let needs = |n: usize| n.to_string();
        // SAFETY: room for `positions_len` values (contract), checked non-NULL; `next_out`
        // NULL or writable.
        unsafe { write_positions(&ids, next, positions_out, positions_len, next_out, needs) }
    })
}
