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

pub mod config;
pub mod engine;
pub mod error;
pub mod ffi;
pub mod log;
pub mod models;
pub mod preprocess;
pub mod tokenizer;
pub mod weights;

pub use engine::{DTypeRequest, DeviceRequest, Embeddings, Image, LoadOptions, Model, OutputType};
pub use error::{Error, Result, Status};
pub use models::ModelInfo;
pub use preprocess::PreprocessOptions;

/// The crate version (`CARGO_PKG_VERSION`).
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
