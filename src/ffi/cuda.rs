//! CUDA-only pieces that need `unsafe`: looking for the CUDA libraries before cudarc (which
//! panics when they are missing) is used, and copying embeddings into a caller's device
//! buffer.

use candle_core::{DType, Storage, Tensor};
use cudarc::driver::DevicePtr;

use crate::error::{Error, Result, Status};

/// The first CUDA library that cannot be loaded, if any (driver, cuBLAS, cuBLASLt, cuRAND).
pub(crate) fn missing_cuda_library() -> Option<&'static str> {
    // SAFETY: each probe only dlopens the library by name and closes it again.
    unsafe {
        if !cudarc::driver::sys::is_culib_present() {
            return Some("the CUDA driver (libcuda.so.1)");
        }
        if !cudarc::cublas::sys::is_culib_present() {
            return Some("cuBLAS (libcublas.so.13)");
        }
        if !cudarc::cublaslt::sys::is_culib_present() {
            return Some("cuBLASLt (libcublasLt.so.13)");
        }
        if !cudarc::curand::sys::is_culib_present() {
            return Some("cuRAND (libcurand.so.10)");
        }
    }
    None
}

/// Copies `tensor` (on a CUDA device), converted to `dtype`, to the device address `dst`
/// (`dst_bytes` long) and waits for the copy to finish.
pub(crate) fn copy_to_device(
    tensor: &Tensor,
    dtype: DType,
    dst: u64,
    dst_bytes: usize,
) -> Result<()> {
    let t = tensor.to_dtype(dtype)?.contiguous()?;
    let bytes = t.elem_count() * dtype.size_in_bytes();
    if dst_bytes < bytes {
        return Err(Error::invalid_argument(format!(
            "destination holds {dst_bytes} bytes, the embeddings need {bytes}"
        )));
    }
    let (storage, layout) = t.storage_and_layout();
    let Storage::Cuda(cs) = &*storage else {
        return Err(Error::new(
            Status::Device,
            "these embeddings are not on a CUDA device",
        ));
    };
    let stream = cs.device.cuda_stream();
    let offset = layout.start_offset() * dtype.size_in_bytes();
    let (src, _sync) = match dtype {
        DType::F32 => cs.as_cuda_slice::<f32>()?.device_ptr(&stream),
        DType::BF16 => cs.as_cuda_slice::<half::bf16>()?.device_ptr(&stream),
        DType::F16 => cs.as_cuda_slice::<half::f16>()?.device_ptr(&stream),
        other => {
            return Err(Error::invalid_argument(format!(
                "dtype {other:?} is not an output type"
            )))
        }
    };
    // SAFETY: `src + offset` holds `bytes` bytes (a contiguous tensor of that size); the
    // caller promises `dst` is a device allocation of at least `dst_bytes` bytes on the
    // same device (documented contract of vt_embeddings_copy_to_cuda).
    unsafe {
        cudarc::driver::result::memcpy_dtod_async(
            dst,
            src + offset as u64,
            bytes,
            stream.cu_stream(),
        )
        .map_err(|e| Error::new(Status::Device, format!("device copy failed: {e}")))?;
    }
    stream
        .synchronize()
        .map_err(|e| Error::new(Status::Device, format!("device copy failed: {e}")))?;
    Ok(())
}
