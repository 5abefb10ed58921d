//! Options for loading a model.

/// Which device runs the tower.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceRequest {
    /// The CPU (always available).
    Cpu,
    /// A CUDA GPU by ordinal (needs a build with the `cuda` feature and a GPU).
    Cuda(usize),
    /// A GPU when one is usable, else the CPU.
    Auto,
}

/// The floating-point type the tower computes in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DTypeRequest {
    /// bf16 on a GPU, f32 on the CPU.
    Auto,
    F32,
    BF16,
    F16,
}

/// PIL's default `Image.MAX_IMAGE_PIXELS`.
pub const DEFAULT_MAX_IMAGE_PIXELS: u64 = 89_478_485;

/// How to load a model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadOptions {
    pub device: DeviceRequest,
    /// Compute dtype (weights are converted to it once, at load).
    pub dtype: DTypeRequest,
    /// Worker threads for this model's CPU work; 0 = one per core.
    pub n_threads: usize,
    /// Images with more pixels than this are refused before decoding.
    pub max_image_pixels: u64,
}

impl Default for LoadOptions {
    fn default() -> LoadOptions {
        LoadOptions {
            device: DeviceRequest::Cpu,
            dtype: DTypeRequest::Auto,
            n_threads: 0,
            max_image_pixels: DEFAULT_MAX_IMAGE_PIXELS,
        }
    }
}
