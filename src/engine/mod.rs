//! The engine: the thread-safe model object, its images and embeddings, batching and
//! device placement.

pub mod batch;
pub mod cache;
pub mod device;
pub mod embeddings;
pub mod image;
pub mod jobs;
pub mod model;
pub mod options;
mod workers;

pub use cache::CacheStats;
pub use embeddings::{Embeddings, OutputType};
pub use image::Image;
pub use jobs::Job;
pub use model::Model;
pub use options::{
    DTypeRequest, DeviceRequest, LoadOptions, DEFAULT_MAX_IMAGE_PIXELS, DEFAULT_MAX_IMAGE_TOKENS,
};
