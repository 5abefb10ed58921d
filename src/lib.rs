//! vtower runs the vision tower of vision-language models — the image encoder and the
//! multimodal projector — and returns embeddings in the language model's hidden size.
//!
//! The crate is a C library first (`src/ffi/`, header `include/vtower.h`), and a plain Rust
//! library underneath:
//!
//! ```no_run
//! use vtower::{LoadOptions, Model};
//! let model = Model::load("path/to/model", &LoadOptions::default())?;
//! let image = model.preprocess(&std::fs::read("cat.jpg").unwrap())?;
//! let out = model.forward(&[&image])?;
//! println!("{} tokens x {}", out.n_tokens(0).unwrap(), out.dim());
//! # Ok::<(), vtower::Error>(())
//! ```

// Everything below the re-exports is internal: the Rust API is the items re-exported here,
// and the C API is the `vt_*` symbols of `ffi` (include/vtower.h).
pub(crate) mod config;
pub(crate) mod engine;
pub(crate) mod error;
pub(crate) mod ffi;
pub(crate) mod kernels;
pub(crate) mod log;
pub(crate) mod models;
pub(crate) mod preprocess;
#[cfg(test)]
mod structure;
pub(crate) mod tokenizer;
pub(crate) mod weights;

pub use engine::{
    CacheStats, DTypeRequest, DeviceRequest, Embeddings, Image, Job, LoadOptions, Model,
    OutputType, DEFAULT_MAX_IMAGE_PIXELS, DEFAULT_MAX_IMAGE_TOKENS,
};
pub use error::{Error, Result, Status};
pub use models::{ModelInfo, PromptLayout, PromptSegment, SpecialTokens};
pub use preprocess::qwen_video::{SampleOptions, VideoMeta, VideoTime};
pub use preprocess::PreprocessOptions;

/// The crate version (`CARGO_PKG_VERSION`).
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// Internals that vtower's own benchmarks (benches/cpu_ops.rs) time directly. Not part of
/// the API: hidden from the documentation, and may change in any release.
#[doc(hidden)]
pub mod __bench {
    /// The CPU bf16 matrix kernels' dispatch and entry points (tests and benches).
    pub mod kernels {
        pub use crate::kernels::{
            attention, attention_at, detected, gemm, gemm_at, isa, supported_levels, Heads, Isa,
            PackedB, Precision,
        };
    }
    pub use crate::models::layers;
}
