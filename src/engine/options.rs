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

/// Default cap on the embedding rows one image may produce (all its frames and crops
/// together): twice what the largest default of any supported processor gives (Qwen2-VL's
/// `max_pixels` = 12845056 is 16384 tokens).
pub const DEFAULT_MAX_IMAGE_TOKENS: u64 = 32_768;

/// How to load a model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadOptions {
    pub device: DeviceRequest,
    /// Compute dtype (weights are converted to it once, at load).
    pub dtype: DTypeRequest,
    /// Worker threads for this model's CPU work; 0 = one per core.
    pub n_threads: usize,
    /// Images with more pixels than this are refused before decoding, and no
    /// preprocessing step (padding canvas, resize target, crop) may produce a larger image.
    pub max_image_pixels: u64,
    /// Most embedding rows one image may produce (every frame and crop counted); an image
    /// whose preprocessing would give more is refused before anything is allocated for it.
    pub max_image_tokens: u64,
    /// Byte budget of the embedding cache (see [`crate::engine::cache`]): an image whose
    /// preprocessed tensor equals one already run returns the same embeddings without a
    /// forward pass. 0 (the default) = no cache.
    pub embedding_cache_bytes: u64,
    /// Most activation memory one batch of a forward pass may take, as estimated by
    /// [`crate::engine::Model::forward_bytes`]; larger batches are split, an image over it
    /// alone is refused with `ImageTooLarge` before anything runs. 0 (default) = no limit.
    pub max_forward_bytes: u64,
}

impl Default for LoadOptions {
    fn default() -> LoadOptions {
        LoadOptions {
            device: DeviceRequest::Cpu,
            dtype: DTypeRequest::Auto,
            n_threads: 0,
            max_image_pixels: DEFAULT_MAX_IMAGE_PIXELS,
            max_image_tokens: DEFAULT_MAX_IMAGE_TOKENS,
            embedding_cache_bytes: 0,
            max_forward_bytes: 0,
        }
    }
}
