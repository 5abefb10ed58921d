//! Choosing the compute device and dtype.

use candle_core::{DType, Device};

use crate::engine::options::DeviceRequest;
use crate::error::{Error, Result, Status};
use crate::log;

/// The device and compute dtype a model runs with.
#[derive(Debug, Clone)]
pub struct Placement {
    pub device: Device,
    pub dtype: DType,
}

/// Resolves a device request. This build runs on the CPU in f32; a CUDA request fails with
/// [`Status::Device`] and `Auto` falls back to the CPU.
pub fn place(request: DeviceRequest) -> Result<Placement> {
    let cpu = Placement {
        device: Device::Cpu,
        dtype: DType::F32,
    };
    match request {
        DeviceRequest::Cpu => Ok(cpu),
        DeviceRequest::Cuda(ordinal) => Err(Error::new(
            Status::Device,
            format!(
                "CUDA device {ordinal} requested, but this build of vtower has no CUDA support"
            ),
        )),
        DeviceRequest::Auto => {
            log::info("device auto: no GPU backend in this build, using the CPU");
            Ok(cpu)
        }
    }
}
