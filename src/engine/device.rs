//! Choosing the compute device and dtype.

use candle_core::{DType, Device};

use crate::engine::options::{DTypeRequest, DeviceRequest};
use crate::error::{Error, Result, Status};
use crate::log;

/// The device and compute dtype a model runs with.
#[derive(Debug, Clone)]
pub struct Placement {
    pub device: Device,
    pub dtype: DType,
}

/// Whether this build has a GPU backend.
#[allow(dead_code, reason = "unused since crate-private (#19)")]
pub const CUDA_BUILT: bool = cfg!(feature = "cuda");

/// Opens CUDA device `ordinal`, or explains why it cannot be used. Never panics: the
/// CUDA libraries are looked for before cudarc (which panics without them) is touched.
#[cfg(feature = "cuda")]
fn cuda_device(ordinal: usize) -> Result<Device> {
    if let Some(missing) = crate::ffi::cuda::missing_cuda_library() {
        return Err(Error::new(
            Status::Device,
            format!("CUDA device {ordinal} requested, but {missing} cannot be loaded (no NVIDIA driver or CUDA libraries on the library path)"),
        ));
    }
    Device::new_cuda(ordinal).map_err(|e| {
        let text = e.to_string();
        let status = if text.contains("OUT_OF_MEMORY") {
            Status::OutOfMemory
        } else {
            Status::Device
        };
        Error::new(status, format!("CUDA device {ordinal}: {text}"))
    })
}

#[cfg(not(feature = "cuda"))]
fn cuda_device(ordinal: usize) -> Result<Device> {
    Err(Error::new(
        Status::Device,
        format!("CUDA device {ordinal} requested, but this build of vtower has no CUDA support (build with the `cuda` feature)"),
    ))
}

/// Resolves a device and dtype request. A CUDA request that cannot be served fails with
/// [`Status::Device`]; `Auto` uses CUDA device 0 when it works and falls back to the CPU
/// (logged). `DTypeRequest::Auto` is bf16 on a GPU and f32 on the CPU.
pub fn place(device: DeviceRequest, dtype: DTypeRequest) -> Result<Placement> {
    let device = match device {
        DeviceRequest::Cpu => Device::Cpu,
        DeviceRequest::Cuda(ordinal) => cuda_device(ordinal)?,
        DeviceRequest::Auto => match cuda_device(0) {
            Ok(d) => d,
            Err(e) => {
                log::info(&format!("device auto: using the CPU ({})", e.message()));
                Device::Cpu
            }
        },
    };
    let dtype = match dtype {
        DTypeRequest::Auto if device.is_cpu() => DType::F32,
        DTypeRequest::Auto => DType::BF16,
        DTypeRequest::F32 => DType::F32,
        DTypeRequest::BF16 => DType::BF16,
        DTypeRequest::F16 => DType::F16,
    };
    Ok(Placement { device, dtype })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_defaults_to_f32_and_honours_requests() {
        let p = place(DeviceRequest::Cpu, DTypeRequest::Auto).unwrap();
        assert!(p.device.is_cpu());
        assert_eq!(p.dtype, DType::F32);
        assert_eq!(
            place(DeviceRequest::Cpu, DTypeRequest::BF16).unwrap().dtype,
            DType::BF16
        );
    }

    #[test]
    fn auto_falls_back_to_cpu_without_a_gpu() {
        // On a machine without a usable GPU (CI), auto must give the CPU, never an error.
        let p = place(DeviceRequest::Auto, DTypeRequest::Auto).unwrap();
        if p.device.is_cpu() {
            assert_eq!(p.dtype, DType::F32);
        } else {
            assert_eq!(p.dtype, DType::BF16);
        }
    }
}
