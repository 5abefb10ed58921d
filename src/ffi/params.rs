//! Options structs versioned by `struct_size`: `vt_load_params` for vt_load and
//! `vt_preprocess_params` for vt_preprocess_ex / vt_preprocess_rgb8_ex, both read by one
//! generic reader ([`read_versioned`]).

use std::mem::{offset_of, size_of};

use crate::engine::{
    DTypeRequest, DeviceRequest, LoadOptions, DEFAULT_MAX_IMAGE_PIXELS, DEFAULT_MAX_IMAGE_TOKENS,
};
use crate::error::{Error, Result};
use crate::preprocess::PreprocessOptions;

/// Which device runs the tower (a `VT_DEVICE_*` value).
pub type vt_device = u32;
/// The CPU.
pub const VT_DEVICE_CPU: vt_device = 0;
/// A CUDA GPU, chosen by vt_load_params.device_ordinal. Needs a CUDA-enabled build and a
/// GPU; otherwise vt_load fails with VT_ERR_DEVICE.
pub const VT_DEVICE_CUDA: vt_device = 1;
/// A GPU when one is usable, else the CPU (the fallback is logged at info level).
pub const VT_DEVICE_AUTO: vt_device = 2;

/// A floating-point type (a `VT_DTYPE_*` value): the compute type in vt_load_params, the
/// output type in vt_embeddings_copy.
pub type vt_dtype = u32;
/// The default: bf16 on a GPU, f32 on the CPU (load params only).
pub const VT_DTYPE_AUTO: vt_dtype = 0;
/// 32-bit IEEE float.
pub const VT_DTYPE_F32: vt_dtype = 1;
/// bfloat16 (the upper 16 bits of an f32), stored as uint16_t.
pub const VT_DTYPE_BF16: vt_dtype = 2;
/// IEEE half precision, stored as uint16_t.
pub const VT_DTYPE_F16: vt_dtype = 3;

/// Options for vt_load. Get defaults from vt_load_params_default(), change fields, pass a
/// pointer. `struct_size` must be `sizeof(vt_load_params)` of the header the caller was
/// compiled with: fields are only ever appended, and vtower reads only the fields that
/// `struct_size` covers (older callers get defaults for newer fields). A struct_size larger
/// than this library's struct (a newer header than the library) is refused.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct vt_load_params {
    /// `sizeof(vt_load_params)`; set by vt_load_params_default().
    pub struct_size: u32,
    /// VT_DEVICE_CPU, VT_DEVICE_CUDA or VT_DEVICE_AUTO (default VT_DEVICE_AUTO).
    pub device: vt_device,
    /// GPU ordinal for VT_DEVICE_CUDA (default 0).
    pub device_ordinal: i32,
    /// Worker threads for this model's CPU work; 0 (default) = one per core.
    pub n_threads: u32,
    /// Images with more pixels (width * height) than this are refused with
    /// VT_ERR_IMAGE_TOO_LARGE before they are decoded; 0 = the default, 89478485
    /// (Pillow's MAX_IMAGE_PIXELS).
    pub max_image_pixels: u64,
    /// Compute dtype: VT_DTYPE_AUTO (default: bf16 on a GPU, f32 on the CPU),
    /// VT_DTYPE_F32, VT_DTYPE_BF16 or VT_DTYPE_F16. Weights are converted once, at load;
    /// softmax and norms accumulate in f32 whatever the dtype.
    pub dtype: vt_dtype,
    /// The most embeddings (rows of vt_forward's output) one image may yield, counting every
    /// frame and pan-and-scan crop: the vt_image_n_tokens it would have. vt_preprocess and
    /// its variants refuse an image that would yield more with VT_ERR_IMAGE_TOO_LARGE,
    /// before allocating anything for it; this bounds the memory and time one image can
    /// take (variable-resolution models such as Qwen2-VL and Pixtral give large images many
    /// tokens). 0 = the default, 32768. Added after `dtype`: callers whose struct_size ends
    /// before it get the default.
    pub max_image_tokens: u64,
    /// Byte budget of the model's embedding cache; 0 (default) = no cache. With a cache, an
    /// image whose preprocessed tensor (pixels after decoding, resizing and normalizing, with
    /// its shape and token grid) equals one this model has already run gets the same
    /// embeddings back without a forward pass. Hits are confirmed by comparing the tensors
    /// bit for bit (never a false hit); each entry holds its preprocessed tensor and its
    /// embeddings, both counted in the budget; the least recently used entries are evicted
    /// to stay within it. Embeddings already handed out are not affected by eviction.
    /// Counters: vt_model_cache_stats.
    pub embedding_cache_bytes: u64,
    /// Most activation memory (bytes) one batch of vt_forward / vt_forward_async may take;
    /// 0 (default) = no limit. Before anything runs, each image's need is estimated from its
    /// size (vt_model_forward_bytes says how); a call whose images would exceed the limit
    /// together is split into smaller batches (results are unchanged), and an image over it
    /// alone fails the call with VT_ERR_IMAGE_TOO_LARGE.
    pub max_forward_bytes: u64,
}

/// The default load parameters (struct_size filled in). Any thread.
#[no_mangle]
pub extern "C" fn vt_load_params_default() -> vt_load_params {
    vt_load_params {
        struct_size: size_of::<vt_load_params>() as u32,
        device: VT_DEVICE_AUTO,
        device_ordinal: 0,
        n_threads: 0,
        max_image_pixels: DEFAULT_MAX_IMAGE_PIXELS,
        dtype: VT_DTYPE_AUTO,
        max_image_tokens: DEFAULT_MAX_IMAGE_TOKENS,
        embedding_cache_bytes: 0,
        max_forward_bytes: 0,
    }
}

/// A C options struct versioned by its leading `uint32_t struct_size`: fields are only ever
/// appended, and a caller compiled against an older header passes the smaller size of its
/// older struct. Implemented by [`versioned!`].
///
/// # Safety
/// `Self` is `repr(C)` and starts with `struct_size: u32`; `FIELDS` lists every other field
/// as (byte offset, byte size), and each of them accepts any bit pattern (integers, floats).
pub(crate) unsafe trait Versioned: Copy {
    /// The C name, for messages.
    const NAME: &'static str;
    /// (offset, size) of each field after struct_size.
    const FIELDS: &'static [(usize, usize)];
    /// The defaults (the `*_default()` function of the C API).
    fn defaults() -> Self;
}

/// Implements [`Versioned`] for a params struct from its default function and the list of
/// its fields after struct_size. The list must name every field (a struct pattern without
/// `..` checks that at compile time), so a new field cannot be forgotten by the reader.
macro_rules! versioned {
    ($ty:ident, $default:ident, [$($field:ident),+ $(,)?]) => {
        // SAFETY: repr(C), struct_size first, every field listed (checked below) with its
        // offset and size; the fields are integers and floats.
        unsafe impl Versioned for $ty {
            const NAME: &'static str = stringify!($ty);
            const FIELDS: &'static [(usize, usize)] = &[$((
                offset_of!($ty, $field),
                field_size(|p: &$ty| &p.$field),
            )),+];
            fn defaults() -> Self {
                let defaults = $default();
                let $ty { struct_size: _, $($field: _),+ } = defaults;
                defaults
            }
        }
    };
}

/// The size of the field that `_field` projects to.
const fn field_size<S, F>(_field: fn(&S) -> &F) -> usize {
    size_of::<F>()
}

versioned!(
    vt_load_params,
    vt_load_params_default,
    [
        device,
        device_ordinal,
        n_threads,
        max_image_pixels,
        dtype,
        max_image_tokens,
        embedding_cache_bytes,
        max_forward_bytes
    ]
);

versioned!(
    vt_preprocess_params,
    vt_preprocess_params_default,
    [
        pan_and_scan,
        pan_and_scan_min_crop_size,
        pan_and_scan_max_num_crops,
        pan_and_scan_min_ratio_to_activate,
        max_soft_tokens,
        min_pixels,
        max_pixels,
        max_tokens,
        longest_edge,
        crop_to_patches,
        min_patches,
        max_patches,
        do_image_splitting,
    ]
);

/// Options for vt_preprocess_video: what is known of the source video and per-call overrides
/// of the video processor's frame sampling. Get defaults from vt_video_params_default(),
/// change fields, pass a pointer (NULL = all defaults). `struct_size` works as in
/// vt_load_params.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct vt_video_params {
    /// `sizeof(vt_video_params)`; set by vt_video_params_default().
    pub struct_size: u32,
    /// -1 (default): as the video processor config's `do_sample_frames` (Qwen2-VL /
    /// Qwen2.5-VL: off, Qwen3-VL / Qwen3.5: on, when absent); 0: keep every frame given;
    /// 1: sample.
    pub do_sample_frames: i32,
    /// The source video's frame rate in frames per second (any positive value, e.g.
    /// 29.97); 0 (default) = unknown. Sampling at `fps` needs it (Qwen3-VL assumes 24 when
    /// unknown); it also sets Qwen2.5-VL's `second_per_grid_ts` and Qwen3-VL's timestamps.
    pub source_fps: f64,
    /// Frames per second to sample; 0 (default) = the config's `fps` (the processor call's
    /// `fps`).
    pub sample_fps: f64,
    /// Number of frames to sample; 0 (default) = the config's `num_frames`. Exclusive with
    /// a sampling fps (the config's or `sample_fps`), as in transformers.
    pub num_frames: u32,
}

/// The default video parameters (struct_size filled in). Any thread.
#[no_mangle]
pub extern "C" fn vt_video_params_default() -> vt_video_params {
    vt_video_params {
        struct_size: size_of::<vt_video_params>() as u32,
        do_sample_frames: -1,
        source_fps: 0.0,
        sample_fps: 0.0,
        num_frames: 0,
    }
}

versioned!(
    vt_video_params,
    vt_video_params_default,
    [do_sample_frames, source_fps, sample_fps, num_frames]
);

/// Converts C video params into `(source fps, sampling options)`.
pub(crate) fn to_video_options(
    p: &vt_video_params,
) -> Result<(Option<f64>, crate::preprocess::qwen_video::SampleOptions)> {
    let positive = |v: f64, name: &str| -> Result<Option<f64>> {
        if v == 0.0 {
            Ok(None)
        } else if v.is_finite() && v > 0.0 {
            Ok(Some(v))
        } else {
            Err(Error::invalid_argument(format!(
                "vt_video_params.{name} {v} must be 0 (unset) or a positive number"
            )))
        }
    };
    let do_sample_frames = match p.do_sample_frames {
        -1 => None,
        0 => Some(false),
        1 => Some(true),
        other => {
            return Err(Error::invalid_argument(format!(
                "vt_video_params.do_sample_frames {other} is not -1, 0 or 1"
            )))
        }
    };
    Ok((
        positive(p.source_fps, "source_fps")?,
        crate::preprocess::qwen_video::SampleOptions {
            do_sample_frames,
            fps: positive(p.sample_fps, "sample_fps")?,
            num_frames: (p.num_frames != 0).then_some(p.num_frames as usize),
        },
    ))
}

/// Reads a params struct the caller passed: the defaults, overwritten by every field that
/// `struct_size` covers entirely (a field the size only partly covers is not read). NULL
/// gives the defaults. A struct_size below 4 or above this library's struct (a header newer
/// than the library) is refused.
///
/// # Safety
/// `params` is NULL or points to at least `(*params).struct_size` readable bytes.
pub(crate) unsafe fn read_versioned<T: Versioned>(params: *const T) -> Result<T> {
    let mut out = T::defaults();
    if params.is_null() {
        return Ok(out);
    }
    // SAFETY: struct_size is the first field; the caller's struct has at least 4 bytes.
    let size = unsafe { params.cast::<u32>().read_unaligned() };
    let full = size_of::<T>();
    if (size as usize) < size_of::<u32>() {
        return Err(Error::invalid_argument(format!(
            "{}.struct_size {size} is too small; use {}_default()",
            T::NAME,
            T::NAME
        )));
    }
    if size as usize > full {
        return Err(Error::invalid_argument(format!(
            "{}.struct_size {size} is larger than this library's {full}: \
             the header is newer than the library",
            T::NAME
        )));
    }
    let src = params.cast::<u8>();
    let dst = (&raw mut out).cast::<u8>();
    // SAFETY: struct_size is a u32 at offset 0 of both structs.
    unsafe { dst.cast::<u32>().write_unaligned(size) };
    for &(offset, len) in T::FIELDS {
        if offset + len <= size as usize {
            // SAFETY: the field lies within the struct_size bytes the caller provides and
            // within `out`; any bit pattern is a valid value of it (trait contract).
            unsafe { std::ptr::copy_nonoverlapping(src.add(offset), dst.add(offset), len) };
        }
    }
    Ok(out)
}

/// `value`, or `default` when it is 0 (the "0 = the default" fields).
fn or_default(value: u64, default: u64) -> u64 {
    if value == 0 {
        default
    } else {
        value
    }
}

/// More worker threads than this is a mistake, not a configuration.
const MAX_THREADS: u32 = 4096;

/// Converts C params into engine options.
pub(crate) fn to_options(p: &vt_load_params) -> Result<LoadOptions> {
    let device = match p.device {
        VT_DEVICE_CPU => DeviceRequest::Cpu,
        VT_DEVICE_AUTO => DeviceRequest::Auto,
        VT_DEVICE_CUDA => {
            if p.device_ordinal < 0 {
                return Err(Error::invalid_argument(format!(
                    "vt_load_params.device_ordinal {} is negative",
                    p.device_ordinal
                )));
            }
            DeviceRequest::Cuda(p.device_ordinal as usize)
        }
        other => {
            return Err(Error::invalid_argument(format!(
                "vt_load_params.device {other} is not a VT_DEVICE_* value"
            )))
        }
    };
    if p.n_threads > MAX_THREADS {
        return Err(Error::invalid_argument(format!(
            "vt_load_params.n_threads {} is larger than {MAX_THREADS}",
            p.n_threads
        )));
    }
    let dtype = match p.dtype {
        VT_DTYPE_AUTO => DTypeRequest::Auto,
        VT_DTYPE_F32 => DTypeRequest::F32,
        VT_DTYPE_BF16 => DTypeRequest::BF16,
        VT_DTYPE_F16 => DTypeRequest::F16,
        other => {
            return Err(Error::invalid_argument(format!(
                "vt_load_params.dtype {other} is not a VT_DTYPE_* value"
            )))
        }
    };
    Ok(LoadOptions {
        device,
        dtype,
        n_threads: p.n_threads as usize,
        max_image_pixels: or_default(p.max_image_pixels, DEFAULT_MAX_IMAGE_PIXELS),
        max_image_tokens: or_default(p.max_image_tokens, DEFAULT_MAX_IMAGE_TOKENS),
        embedding_cache_bytes: p.embedding_cache_bytes,
        max_forward_bytes: p.max_forward_bytes,
    })
}

/// Per-call preprocessing options for vt_preprocess_ex and vt_preprocess_rgb8_ex. Get
/// defaults from vt_preprocess_params_default(), change fields, pass a pointer (NULL = all
/// defaults). The default of every field is "as the model's preprocessor_config.json says".
/// `struct_size` works as in vt_load_params: fields are only ever appended, vtower reads only
/// what struct_size covers, and a struct_size larger than this library's is refused.
///
/// Pan-and-scan (Gemma3): an image whose long side is at least
/// `pan_and_scan_min_ratio_to_activate` times its short side is also cut into about
/// long/short equal crops along the long side (at least 2, at most
/// `pan_and_scan_max_num_crops`; no crops at all when they would be narrower than
/// `pan_and_scan_min_crop_size` pixels); the image then yields its own tokens followed by each
/// crop's (vt_image_token_grid reports 1 + crops frames). Other models have no pan-and-scan:
/// they refuse `pan_and_scan = 1` and ignore the other pan-and-scan fields.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct vt_preprocess_params {
    /// `sizeof(vt_preprocess_params)`; set by vt_preprocess_params_default().
    pub struct_size: u32,
    /// -1 (default): as preprocessor_config.json's `do_pan_and_scan` (off when absent or
    /// null); 0: off; 1: on.
    pub pan_and_scan: i32,
    /// Smallest crop side in pixels; 0 (default): preprocessor_config.json's
    /// `pan_and_scan_min_crop_size`, 256 when absent or null.
    pub pan_and_scan_min_crop_size: u32,
    /// Most crops per image; 0 (default): `pan_and_scan_max_num_crops`, 4 when absent or null.
    pub pan_and_scan_max_num_crops: u32,
    /// Long side / short side from which an image is cropped; 0 (default):
    /// `pan_and_scan_min_ratio_to_activate`, 1.2 when absent or null. Must be finite and not
    /// negative.
    pub pan_and_scan_min_ratio_to_activate: f64,
    /// Gemma 4: the soft-token budget per image (`max_soft_tokens`), one of 70, 140, 280, 560,
    /// 1120 (any other value fails with VT_ERR_INVALID_ARGUMENT); the image is resized to
    /// hold at most this many embeddings. 0 (default): preprocessor_config.json's
    /// `max_soft_tokens` (280 when absent). Other models refuse a non-zero value with
    /// VT_ERR_INVALID_ARGUMENT. Appended after the pan-and-scan fields: a struct_size that
    /// ends before it (an older header) reads 0.
    pub max_soft_tokens: u32,
    /// Qwen2-VL / Qwen3-VL / Qwen3.5, GLM-4.xV and PaddleOCR-VL: smallest pixel count of the
    /// resized image (the processor's `min_pixels` kwarg: `smart_resize` keeps the aspect
    /// ratio, sides multiples of patch_size * merge_size; GLM counts `temporal_patch_size`
    /// frames, as its `size.shortest_edge` does); 0 (default): preprocessor_config.json's.
    /// Other models refuse it with VT_ERR_INVALID_ARGUMENT.
    pub min_pixels: u64,
    /// The same models: largest pixel count of the resized image (`max_pixels`); 0
    /// (default): preprocessor_config.json's. Other models refuse it.
    pub max_pixels: u64,
    /// Any model: the most embeddings (vt_image_n_tokens) the image may yield; 0 (default): no
    /// such bound. Qwen picks the largest size its resize rule allows within it (the same as
    /// `max_pixels` = max_tokens * (patch_size * merge_size)^2); Pixtral / Mistral3 the
    /// largest `longest_edge` (at most the configured or given one) whose image yields at
    /// most max_tokens; SigLIP2 NaFlex takes it as the processor's `max_num_patches` (the
    /// patch budget it resizes to, replacing preprocessor_config.json's, larger or smaller);
    /// models with a fixed count (SigLIP, Gemma3, LLaVA) and Gemma 4 (whose
    /// budget is `max_soft_tokens`) refuse the image with VT_ERR_INVALID_ARGUMENT when it
    /// would yield more. An image no size of which fits is refused with
    /// VT_ERR_INVALID_ARGUMENT.
    pub max_tokens: u64,
    /// Pixtral / Mistral3: the longest edge in pixels the image is shrunk to fit (the image
    /// processor's `size={"longest_edge": n}` kwarg; each side is then rounded up to the
    /// patch window, so the result may be a little larger), at most 16384; 0 (default):
    /// preprocessor_config.json's `size`. Idefics3 / SmolVLM: the long side the image is
    /// resized to (up or down) before it is cut into tiles (the same kwarg; the tile count
    /// follows from it). Other models refuse it with VT_ERR_INVALID_ARGUMENT. Appended after
    /// max_tokens: a struct_size that ends before it reads 0.
    pub longest_edge: u32,
    /// InternVL / Aya Vision (`GotOcr2ImageProcessor`): -1 (default): cut the image into
    /// tiles plus a thumbnail, as their processors do by default (`crop_to_patches=True`);
    /// 0: one tile, the whole image stretched to the tile size; 1: tiles. Other models
    /// refuse 0 and 1 with VT_ERR_INVALID_ARGUMENT. Appended after longest_edge (as are
    /// min_patches and max_patches): a struct_size that ends before a field reads its
    /// default.
    pub crop_to_patches: i32,
    /// InternVL / Aya Vision: the fewest tiles of the grid (`min_patches`); -1 (default):
    /// preprocessor_config.json's (1 when absent). 0 or more than 1024 fails with
    /// VT_ERR_INVALID_ARGUMENT, as does a value above the max_patches in effect. LFM2-VL:
    /// the processor's `min_tiles` (the file's, 2 when absent).
    pub min_patches: i32,
    /// InternVL / Aya Vision: the most tiles of the grid, the thumbnail not counted
    /// (`max_patches`, the tile budget); -1 (default): preprocessor_config.json's (12 when
    /// absent). 1 means no tiling. 0 or more than 1024 fails with VT_ERR_INVALID_ARGUMENT.
    /// vt_image_token_grid then gives `tiles x rows x cols` (tiles counting the thumbnail).
    /// LFM2-VL: the processor's `max_tiles` (the file's, 10 when absent; `min_tiles` and
    /// `max_tiles` both 1 is no splitting); a split image's token grid is `1 x 1 x n`.
    /// Kimi K2.5: the processor's `max_patches` kwarg, the patch budget its resize shrinks
    /// the image to before padding (the file's, 16384 when absent; 0 fails, no upper bound
    /// but the size limits).
    pub max_patches: i32,
    /// Idefics3 / SmolVLM: -1 (default): as preprocessor_config.json's `do_image_splitting`
    /// (on when absent): the image is cut into a grid of tiles plus the global image; 0: one
    /// tile, the whole image stretched to the tile size; 1: split. LLaVA-OneVision: 0 treats
    /// the image as one of a prompt with several images (`LlavaOnevisionProcessor` with
    /// `images=[[a, b]]`: padded to a square, one tile plus one newline); -1 / 1: anyres
    /// tiles. LFM2-VL: 0 processes any image as one (`smart_resize`); -1 / 1: as the file
    /// (on when absent): an image above the processor's size threshold is split into tiles
    /// and a thumbnail. Other models refuse 0 and 1 with VT_ERR_INVALID_ARGUMENT. (Their `size={"longest_edge": n}` kwarg is the
    /// `longest_edge` field.) Appended after max_patches: a struct_size that ends before it
    /// reads -1.
    pub do_image_splitting: i32,
}

/// The default preprocess parameters (struct_size filled in, every setting taken from the
/// model's preprocessor_config.json). Any thread.
#[no_mangle]
pub extern "C" fn vt_preprocess_params_default() -> vt_preprocess_params {
    vt_preprocess_params {
        struct_size: size_of::<vt_preprocess_params>() as u32,
        pan_and_scan: -1,
        pan_and_scan_min_crop_size: 0,
        pan_and_scan_max_num_crops: 0,
        pan_and_scan_min_ratio_to_activate: 0.0,
        max_soft_tokens: 0,
        min_pixels: 0,
        max_pixels: 0,
        max_tokens: 0,
        longest_edge: 0,
        crop_to_patches: -1,
        min_patches: -1,
        max_patches: -1,
        do_image_splitting: -1,
    }
}

/// Converts C preprocess params into engine options.
pub(crate) fn to_preprocess_options(p: &vt_preprocess_params) -> Result<PreprocessOptions> {
    let pan_and_scan = match p.pan_and_scan {
        -1 => None,
        0 => Some(false),
        1 => Some(true),
        other => {
            return Err(Error::invalid_argument(format!(
                "vt_preprocess_params.pan_and_scan {other} is not -1, 0 or 1"
            )))
        }
    };
    let ratio = p.pan_and_scan_min_ratio_to_activate;
    if !ratio.is_finite() || ratio < 0.0 {
        return Err(Error::invalid_argument(format!(
            "vt_preprocess_params.pan_and_scan_min_ratio_to_activate {ratio} must be finite and \
             not negative"
        )));
    }
    let nonzero = |v: u32| (v != 0).then_some(v as usize);
    let crop_to_patches = match p.crop_to_patches {
        -1 => None,
        0 => Some(false),
        1 => Some(true),
        other => {
            return Err(Error::invalid_argument(format!(
                "vt_preprocess_params.crop_to_patches {other} is not -1, 0 or 1"
            )))
        }
    };
    let tiles = |name: &str, v: i32| -> Result<Option<usize>> {
        match v {
            -1 => Ok(None),
            v if v >= 0 => Ok(Some(v as usize)),
            other => Err(Error::invalid_argument(format!(
                "vt_preprocess_params.{name} {other} is not -1 (the default) or a tile count"
            ))),
        }
    };
    Ok(PreprocessOptions {
        pan_and_scan,
        pan_and_scan_min_crop_size: nonzero(p.pan_and_scan_min_crop_size),
        pan_and_scan_max_num_crops: nonzero(p.pan_and_scan_max_num_crops),
        pan_and_scan_min_ratio_to_activate: (ratio != 0.0).then_some(ratio),
        max_soft_tokens: nonzero(p.max_soft_tokens),
        min_pixels: size_knob(p.min_pixels),
        max_pixels: size_knob(p.max_pixels),
        max_tokens: size_knob(p.max_tokens),
        longest_edge: nonzero(p.longest_edge),
        crop_to_patches,
        min_patches: tiles("min_patches", p.min_patches)?,
        max_patches: tiles("max_patches", p.max_patches)?,
        do_image_splitting: match p.do_image_splitting {
            -1 => None,
            0 => Some(false),
            1 => Some(true),
            other => {
                return Err(Error::invalid_argument(format!(
                    "vt_preprocess_params.do_image_splitting {other} is not -1, 0 or 1"
                )))
            }
        },
    })
}

/// A u64 size knob: 0 = not given; values past usize are clamped (no image gets there).
fn size_knob(v: u64) -> Option<usize> {
    (v != 0).then(|| usize::try_from(v).unwrap_or(usize::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn preprocess_params_read_and_convert() {
        let d = unsafe { read_versioned::<vt_preprocess_params>(std::ptr::null()) }.unwrap();
        assert!(to_preprocess_options(&d).unwrap().is_default());
        let mut p = vt_preprocess_params_default();
        p.pan_and_scan = 1;
        p.pan_and_scan_max_num_crops = 3;
        p.pan_and_scan_min_ratio_to_activate = 1.5;
        // An older caller that only knows the first two fields.
        p.struct_size = offset_of!(vt_preprocess_params, pan_and_scan_min_crop_size) as u32;
        let r = unsafe { read_versioned(&p) }.unwrap();
        let o = to_preprocess_options(&r).unwrap();
        assert_eq!(o.pan_and_scan, Some(true));
        assert_eq!(o.pan_and_scan_max_num_crops, None);
        p.struct_size = size_of::<vt_preprocess_params>() as u32;
        let o = to_preprocess_options(&unsafe { read_versioned(&p) }.unwrap()).unwrap();
        assert_eq!(o.pan_and_scan_max_num_crops, Some(3));
        assert_eq!(o.pan_and_scan_min_ratio_to_activate, Some(1.5));
        // longest_edge was appended last: a struct_size ending before it reads 0.
        p.longest_edge = 512;
        let o = to_preprocess_options(&unsafe { read_versioned(&p) }.unwrap()).unwrap();
        assert_eq!(o.longest_edge, Some(512));
        p.struct_size = offset_of!(vt_preprocess_params, longest_edge) as u32;
        let o = to_preprocess_options(&unsafe { read_versioned(&p) }.unwrap()).unwrap();
        assert_eq!(o.longest_edge, None);
        p.struct_size = size_of::<vt_preprocess_params>() as u32;
        // do_image_splitting (appended after max_patches) reads -1 when not covered.
        p.do_image_splitting = 0;
        let o = to_preprocess_options(&unsafe { read_versioned(&p) }.unwrap()).unwrap();
        assert_eq!(o.do_image_splitting, Some(false));
        p.struct_size = offset_of!(vt_preprocess_params, do_image_splitting) as u32;
        let o = to_preprocess_options(&unsafe { read_versioned(&p) }.unwrap()).unwrap();
        assert_eq!(o.do_image_splitting, None);
        p.do_image_splitting = 2;
        p.struct_size = size_of::<vt_preprocess_params>() as u32;
        assert!(to_preprocess_options(&p).is_err());
        p.do_image_splitting = -1;
        p.longest_edge = 0;
        p.pan_and_scan = 2;
        assert!(to_preprocess_options(&p).is_err());
        p.pan_and_scan = 0;
        p.pan_and_scan_min_ratio_to_activate = f64::NAN;
        assert!(to_preprocess_options(&p).is_err());
        p.struct_size = size_of::<vt_preprocess_params>() as u32 + 4;
        let e = unsafe { read_versioned(&p) }.unwrap_err();
        assert!(
            e.message().contains("vt_preprocess_params.struct_size"),
            "{e}"
        );
        p.struct_size = 2;
        let e = unsafe { read_versioned(&p) }.unwrap_err();
        assert!(
            e.message().contains("vt_preprocess_params_default()"),
            "{e}"
        );
    }

    #[test]
    fn struct_size_limits_what_is_read() {
        let mut p = vt_load_params_default();
        p.n_threads = 3;
        p.max_image_pixels = 7;
        p.dtype = VT_DTYPE_BF16;
        p.max_image_tokens = 9;
        p.struct_size = offset_of!(vt_load_params, max_image_pixels) as u32;
        let r = unsafe { read_versioned(&p) }.unwrap();
        assert_eq!(r.struct_size, p.struct_size);
        assert_eq!(r.n_threads, 3);
        assert_eq!(r.max_image_pixels, DEFAULT_MAX_IMAGE_PIXELS);
        assert_eq!(r.dtype, VT_DTYPE_AUTO);
        // A caller compiled against the first version of the struct (no dtype field).
        p.struct_size = offset_of!(vt_load_params, dtype) as u32;
        let r = unsafe { read_versioned(&p) }.unwrap();
        assert_eq!((r.max_image_pixels, r.dtype), (7, VT_DTYPE_AUTO));
        // A size that covers only part of a field does not read it.
        p.struct_size = offset_of!(vt_load_params, dtype) as u32 + 2;
        assert_eq!(unsafe { read_versioned(&p) }.unwrap().dtype, VT_DTYPE_AUTO);
        p.struct_size = size_of::<vt_load_params>() as u32 + 8;
        let e = unsafe { read_versioned(&p) }.unwrap_err();
        assert!(e.message().contains("newer than the library"), "{e}");
        p.struct_size = 0;
        let e = unsafe { read_versioned(&p) }.unwrap_err();
        assert!(e.message().contains("vt_load_params_default()"), "{e}");
        assert_eq!(
            unsafe { read_versioned::<vt_load_params>(std::ptr::null()) }.unwrap(),
            vt_load_params_default()
        );
    }

    /// The layout of vt_load_params before max_image_tokens was appended (what a caller
    /// compiled against that header passes).
    #[repr(C)]
    struct LoadParamsWithDtype {
        struct_size: u32,
        device: vt_device,
        device_ordinal: i32,
        n_threads: u32,
        max_image_pixels: u64,
        dtype: vt_dtype,
    }

    #[test]
    fn max_image_tokens_reaches_load_options() {
        // A caller of the older header: its smaller struct, nothing readable after it.
        let old = LoadParamsWithDtype {
            struct_size: size_of::<LoadParamsWithDtype>() as u32,
            device: VT_DEVICE_CPU,
            device_ordinal: 0,
            n_threads: 2,
            max_image_pixels: 1000,
            dtype: VT_DTYPE_F32,
        };
        assert_eq!(
            size_of::<LoadParamsWithDtype>(),
            offset_of!(vt_load_params, max_image_tokens)
        );
        let r = unsafe { read_versioned((&raw const old).cast::<vt_load_params>()) }.unwrap();
        let o = to_options(&r).unwrap();
        assert_eq!(o.max_image_tokens, DEFAULT_MAX_IMAGE_TOKENS);
        assert_eq!((o.n_threads, o.max_image_pixels), (2, 1000));
        assert_eq!((o.device, o.dtype), (DeviceRequest::Cpu, DTypeRequest::F32));

        // The current struct: the value reaches LoadOptions; 0 means the default.
        let mut p = vt_load_params_default();
        assert_eq!(
            to_options(&p).unwrap().max_image_tokens,
            DEFAULT_MAX_IMAGE_TOKENS
        );
        p.max_image_tokens = 256;
        let o = to_options(&unsafe { read_versioned(&p) }.unwrap()).unwrap();
        assert_eq!(o.max_image_tokens, 256);
        p.max_image_tokens = 0;
        let o = to_options(&unsafe { read_versioned(&p) }.unwrap()).unwrap();
        assert_eq!(o.max_image_tokens, DEFAULT_MAX_IMAGE_TOKENS);
    }

    #[test]
    fn defaults_equal_the_engine_defaults() {
        let mut o = to_options(&vt_load_params_default()).unwrap();
        // The C default is VT_DEVICE_AUTO; the Rust default is the CPU.
        assert_eq!(o.device, DeviceRequest::Auto);
        o.device = DeviceRequest::Cpu;
        assert_eq!(o, LoadOptions::default());
    }

    #[test]
    fn field_lists_cover_the_structs() {
        fn check<T: Versioned>() {
            let mut end = size_of::<u32>();
            for &(offset, len) in T::FIELDS {
                assert!(offset >= end, "{}: fields out of order", T::NAME);
                end = offset + len;
            }
            assert_eq!(
                end.next_multiple_of(align_of::<T>()),
                size_of::<T>(),
                "{}",
                T::NAME
            );
        }
        check::<vt_load_params>();
        check::<vt_preprocess_params>();
    }
}
