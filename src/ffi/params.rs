//! Options structs versioned by `struct_size`: `vt_load_params` for vt_load and
//! `vt_preprocess_params` for vt_preprocess_ex / vt_preprocess_rgb8_ex.

use std::mem::{offset_of, size_of};

use crate::engine::{DTypeRequest, DeviceRequest, LoadOptions, DEFAULT_MAX_IMAGE_PIXELS};
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
    }
}

/// Copies the fields that `struct_size` covers over the defaults.
///
/// # Safety
/// `params` is NULL or points to at least `(*params).struct_size` readable bytes.
pub(crate) unsafe fn read_params(params: *const vt_load_params) -> Result<vt_load_params> {
    let mut out = vt_load_params_default();
    if params.is_null() {
        return Ok(out);
    }
    // SAFETY: struct_size is the first field; the caller's struct has at least 4 bytes.
    let size = unsafe { params.cast::<u32>().read_unaligned() } as usize;
    let full = size_of::<vt_load_params>();
    if size < size_of::<u32>() {
        return Err(Error::invalid_argument(format!(
            "vt_load_params.struct_size {size} is too small; use vt_load_params_default()"
        )));
    }
    if size > full {
        return Err(Error::invalid_argument(format!(
            "vt_load_params.struct_size {size} is larger than this library's {full}: \
             the header is newer than the library"
        )));
    }
    macro_rules! take {
        ($field:ident) => {
            let offset = offset_of!(vt_load_params, $field);
            let end = offset + std::mem::size_of_val(&out.$field);
            if end <= size {
                // SAFETY: the field lies within the struct_size bytes the caller provides.
                out.$field = unsafe { read_at(params, offset) };
            }
        };
    }
    take!(device);
    take!(device_ordinal);
    take!(n_threads);
    take!(max_image_pixels);
    take!(dtype);
    out.struct_size = size as u32;
    Ok(out)
}

/// Reads a `T` at byte `offset` of `base`.
///
/// # Safety
/// `offset + size_of::<T>()` bytes are readable at `base`.
unsafe fn read_at<S, T>(base: *const S, offset: usize) -> T {
    // SAFETY: per this function's contract.
    unsafe { base.cast::<u8>().add(offset).cast::<T>().read_unaligned() }
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
        max_image_pixels: if p.max_image_pixels == 0 {
            DEFAULT_MAX_IMAGE_PIXELS
        } else {
            p.max_image_pixels
        },
        ..LoadOptions::default()
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
    }
}

/// Copies the fields that `struct_size` covers over the defaults.
///
/// # Safety
/// `params` is NULL or points to at least `(*params).struct_size` readable bytes.
pub(crate) unsafe fn read_preprocess_params(
    params: *const vt_preprocess_params,
) -> Result<vt_preprocess_params> {
    let mut out = vt_preprocess_params_default();
    if params.is_null() {
        return Ok(out);
    }
    // SAFETY: struct_size is the first field; the caller's struct has at least 4 bytes.
    let size = unsafe { params.cast::<u32>().read_unaligned() } as usize;
    let full = size_of::<vt_preprocess_params>();
    if size < size_of::<u32>() {
        return Err(Error::invalid_argument(format!(
            "vt_preprocess_params.struct_size {size} is too small; use vt_preprocess_params_default()"
        )));
    }
    if size > full {
        return Err(Error::invalid_argument(format!(
            "vt_preprocess_params.struct_size {size} is larger than this library's {full}: \
             the header is newer than the library"
        )));
    }
    macro_rules! take {
        ($field:ident) => {
            let offset = offset_of!(vt_preprocess_params, $field);
            let end = offset + std::mem::size_of_val(&out.$field);
            if end <= size {
                // SAFETY: the field lies within the struct_size bytes the caller provides.
                out.$field = unsafe { read_at(params, offset) };
            }
        };
    }
    take!(pan_and_scan);
    take!(pan_and_scan_min_crop_size);
    take!(pan_and_scan_max_num_crops);
    take!(pan_and_scan_min_ratio_to_activate);
    out.struct_size = size as u32;
    Ok(out)
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
    Ok(PreprocessOptions {
        pan_and_scan,
        pan_and_scan_min_crop_size: nonzero(p.pan_and_scan_min_crop_size),
        pan_and_scan_max_num_crops: nonzero(p.pan_and_scan_max_num_crops),
        pan_and_scan_min_ratio_to_activate: (ratio != 0.0).then_some(ratio),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn preprocess_params_read_and_convert() {
        let d = unsafe { read_preprocess_params(std::ptr::null()) }.unwrap();
        assert!(to_preprocess_options(&d).unwrap().is_default());
        let mut p = vt_preprocess_params_default();
        p.pan_and_scan = 1;
        p.pan_and_scan_max_num_crops = 3;
        p.pan_and_scan_min_ratio_to_activate = 1.5;
        // An older caller that only knows the first two fields.
        p.struct_size = offset_of!(vt_preprocess_params, pan_and_scan_min_crop_size) as u32;
        let r = unsafe { read_preprocess_params(&p) }.unwrap();
        let o = to_preprocess_options(&r).unwrap();
        assert_eq!(o.pan_and_scan, Some(true));
        assert_eq!(o.pan_and_scan_max_num_crops, None);
        p.struct_size = size_of::<vt_preprocess_params>() as u32;
        let o = to_preprocess_options(&unsafe { read_preprocess_params(&p) }.unwrap()).unwrap();
        assert_eq!(o.pan_and_scan_max_num_crops, Some(3));
        assert_eq!(o.pan_and_scan_min_ratio_to_activate, Some(1.5));
        p.pan_and_scan = 2;
        assert!(to_preprocess_options(&p).is_err());
        p.pan_and_scan = 0;
        p.pan_and_scan_min_ratio_to_activate = f64::NAN;
        assert!(to_preprocess_options(&p).is_err());
        p.struct_size = size_of::<vt_preprocess_params>() as u32 + 4;
        assert!(unsafe { read_preprocess_params(&p) }.is_err());
        p.struct_size = 2;
        assert!(unsafe { read_preprocess_params(&p) }.is_err());
    }

    #[test]
    fn struct_size_limits_what_is_read() {
        let mut p = vt_load_params_default();
        p.n_threads = 3;
        p.max_image_pixels = 7;
        p.dtype = VT_DTYPE_BF16;
        p.struct_size = offset_of!(vt_load_params, max_image_pixels) as u32;
        let r = unsafe { read_params(&p) }.unwrap();
        assert_eq!(r.n_threads, 3);
        assert_eq!(r.max_image_pixels, DEFAULT_MAX_IMAGE_PIXELS);
        assert_eq!(r.dtype, VT_DTYPE_AUTO);
        // A caller compiled against the first version of the struct (no dtype field).
        p.struct_size = offset_of!(vt_load_params, dtype) as u32;
        let r = unsafe { read_params(&p) }.unwrap();
        assert_eq!((r.max_image_pixels, r.dtype), (7, VT_DTYPE_AUTO));
        p.struct_size = size_of::<vt_load_params>() as u32 + 8;
        assert!(unsafe { read_params(&p) }.is_err());
        p.struct_size = 0;
        assert!(unsafe { read_params(&p) }.is_err());
        assert_eq!(
            unsafe { read_params(std::ptr::null()) }.unwrap(),
            vt_load_params_default()
        );
    }
}
