//! Loading, freeing and describing models.

use std::ffi::{c_char, CStr, CString};
use std::path::Path;
use std::sync::Arc;

use crate::engine::Model;
use crate::error::Error;
use crate::ffi::boundary::{arg, guard, guard_value, out_ptr, write};
use crate::ffi::error::vt_error;
use crate::ffi::params::{read_versioned, to_options, vt_load_params};
use crate::ffi::status::vt_status;

/// A loaded vision tower (encoder + projector) with its image preprocessing. Created by
/// vt_load, destroyed by vt_model_free. Functions taking `const vt_model *` may run concurrently
/// from any number of threads on the same model.
pub struct vt_model {
    /// Shared with the model's asynchronous jobs (vt_forward_async), which keep it alive.
    pub(crate) model: Arc<Model>,
    family: CString,
    model_type: CString,
}

/// Loads a model from a folder as Hugging Face `save_pretrained` writes it: `config.json`,
/// the image processor settings (`preprocessor_config.json`, or the `image_processor` object
/// of `processor_config.json`; optional), and `model.safetensors` or the shards listed in
/// `model.safetensors.index.json`. Only the vision tower and projector tensors are read.
/// `tokenizer.json` / `tokenizer_config.json`, when present, are read only for the special
/// token ids of vt_model_token_id.
///
/// - `model_dir`: NUL-terminated UTF-8 path. Borrowed for the call.
/// - `params`: options, or NULL for vt_load_params_default(). Borrowed for the call.
/// - `model_out`: receives the new model on VT_OK (untouched otherwise). The caller owns it
///   and frees it with vt_model_free.
/// - `err_out`: NULL, or receives an owned vt_error on failure (free with vt_error_free);
///   untouched on success.
///
/// Errors: VT_ERR_INVALID_ARGUMENT (NULL/non-UTF-8 path, bad params), VT_ERR_IO (missing
/// folder or files), VT_ERR_UNSUPPORTED_MODEL, VT_ERR_BAD_CONFIG, VT_ERR_BAD_WEIGHTS (missing
/// or misshapen tensor, corrupt or truncated safetensors), VT_ERR_DEVICE.
/// Threads: any thread; loads of different models may run concurrently.
#[no_mangle]
pub extern "C" fn vt_load(
    model_dir: *const c_char,
    params: *const vt_load_params,
    model_out: *mut *mut vt_model,
    err_out: *mut *mut vt_error,
) -> vt_status {
    guard(err_out, || {
        out_ptr(model_out, "model_out")?;
        if model_dir.is_null() {
            return Err(Error::invalid_argument("`model_dir` is NULL"));
        }
        // SAFETY: non-NULL, NUL-terminated by contract.
        let dir = unsafe { CStr::from_ptr(model_dir) }
            .to_str()
            .map_err(|_| Error::invalid_argument("`model_dir` is not valid UTF-8"))?;
        // SAFETY: NULL or a readable struct of struct_size bytes by contract.
        let params = unsafe { read_versioned(params) }?;
        let model = Model::load(Path::new(dir), &to_options(&params)?)?;
        let info = model.info();
        let boxed = Box::new(vt_model {
            family: CString::new(info.family).unwrap_or_default(),
            model_type: CString::new(info.model_type.clone()).unwrap_or_default(),
            model: Arc::new(model),
        });
        // SAFETY: checked non-NULL above.
        unsafe { write(model_out, Box::into_raw(boxed)) };
        Ok(())
    })
}

/// Frees a model. NULL is a no-op. Must not race with any other call using this model, and
/// images made by it can no longer be forwarded (free them too).
///
/// Jobs of vt_forward_async still queued or running are not affected: each holds the model
/// until it finishes, so they complete (or end cancelled, by vt_job_cancel or vt_job_free)
/// and their results stay valid; the model's memory is released when the last of them
/// finishes. Their vt_job handles must still be freed with vt_job_free.
///
/// Without such jobs, the model's worker and job threads have exited when this returns (it
/// waits for them): nothing of vtower runs any more on the model's behalf, so a host may
/// unload the library once its last model is freed.
#[no_mangle]
pub extern "C" fn vt_model_free(model: *mut vt_model) {
    guard_value((), || {
        if !model.is_null() {
            // SAFETY: `model` came from vt_load and is freed once (contract).
            drop(unsafe { Box::from_raw(model) });
        }
    })
}

/// The same as vt_model_free: the function's first name, kept so that existing programs
/// still compile and link. New code calls vt_model_free.
#[no_mangle]
pub extern "C" fn vt_free(model: *mut vt_model) {
    vt_model_free(model)
}

fn with_model<T: Copy>(model: *const vt_model, fallback: T, f: impl FnOnce(&vt_model) -> T) -> T {
    guard_value(fallback, || {
        // SAFETY: NULL or a live model (contract).
        match unsafe { model.as_ref() } {
            Some(m) => f(m),
            None => fallback,
        }
    })
}

/// The family implementing the model: "siglip", "siglip2" (SigLIP2 NaFlex: model types
/// `siglip2`, `siglip2_vision_model`), "gemma3", "gemma4", "llava", "paligemma",
/// "pixtral" (also Mistral3 and Mistral Large 4), "qwen2_vl", "qwen2_5_vl", "qwen3_vl",
/// "qwen3_5" (also Qwen4-Exp), "internvl", "aya_vision", "llava_next" (also LLaVA-NeXT-Video
/// and LLaVA-OneVision), "idefics3", "smolvlm", "glm4v" (model types `glm4v`, `glm4v_moe`,
/// `glm46v`, `glm_ocr`: GLM-4.1V, GLM-4.5V, GLM-4.6V, GLM-OCR), "glm5_next" (GLM-5.x Next),
/// "lfm2_vl" (LFM2-VL), "kimi_k25" (Kimi K2.5), "paddleocr_vl" (PaddleOCR-VL). A static
/// string; NULL if `model` is NULL. Any thread.
#[no_mangle]
pub extern "C" fn vt_model_family(model: *const vt_model) -> *const c_char {
    with_model(model, std::ptr::null(), |m| m.family.as_ptr())
}

/// `model_type` from config.json (e.g. "siglip_vision_model"). Borrowed from the model:
/// valid until vt_model_free. NULL if `model` is NULL. Any thread.
#[no_mangle]
pub extern "C" fn vt_model_type(model: *const vt_model) -> *const c_char {
    with_model(model, std::ptr::null(), |m| m.model_type.as_ptr())
}

/// Width of the output embeddings (the language model's hidden size; for a plain SigLIP
/// model, the vision width). 0 if `model` is NULL. Any thread.
#[no_mangle]
pub extern "C" fn vt_model_output_dim(model: *const vt_model) -> usize {
    with_model(model, 0, |m| m.model.info().output_dim)
}

/// Width of the vision encoder. 0 if `model` is NULL. Any thread.
#[no_mangle]
pub extern "C" fn vt_model_vision_dim(model: *const vt_model) -> usize {
    with_model(model, 0, |m| m.model.info().vision_dim)
}

/// Patch size of the vision encoder in pixels. 0 if `model` is NULL. Any thread.
#[no_mangle]
pub extern "C" fn vt_model_patch_size(model: *const vt_model) -> u32 {
    with_model(model, 0, |m| m.model.info().patch_size as u32)
}

/// Embeddings per image when the model yields a fixed number (SigLIP: (size/patch)^2;
/// Gemma3: mm_tokens_per_image; LLaVA: the patches, plus the class token with the `full`
/// strategy, minus one token with `default`), 0 when it depends on the image (Gemma3 with
/// pan-and-scan on in preprocessor_config.json), or when `model` is NULL. A Gemma3 image cut
/// by pan-and-scan (vt_preprocess_ex) yields this many per frame; vt_image_n_tokens is always
/// exact. Any thread.
#[no_mangle]
pub extern "C" fn vt_model_tokens_per_image(model: *const vt_model) -> usize {
    with_model(model, 0, |m| m.model.info().tokens_per_image.unwrap_or(0))
}

/// Worker threads the model uses for CPU work. 0 if `model` is NULL. Any thread.
#[no_mangle]
pub extern "C" fn vt_model_n_threads(model: *const vt_model) -> u32 {
    with_model(model, 0, |m| m.model.n_threads() as u32)
}

/// The native input size of the tower (the size images are resized to, or the largest
/// for variable-resolution families) in pixels.
///
/// - `width_out`, `height_out`: receive the size on VT_OK.
/// - `err_out`: NULL, or receives an owned vt_error on failure.
///
/// Errors: VT_ERR_INVALID_ARGUMENT for a NULL pointer. Any thread.
#[no_mangle]
pub extern "C" fn vt_model_image_size(
    model: *const vt_model,
    width_out: *mut u32,
    height_out: *mut u32,
    err_out: *mut *mut vt_error,
) -> vt_status {
    guard(err_out, || {
        // SAFETY: NULL or a live model (contract).
        let m = unsafe { arg(model, "model") }?;
        out_ptr(width_out, "width_out")?;
        out_ptr(height_out, "height_out")?;
        let (w, h) = m.model.info().image_size;
        // SAFETY: checked non-NULL above.
        unsafe {
            write(width_out, w as u32);
            write(height_out, h as u32);
        }
        Ok(())
    })
}
