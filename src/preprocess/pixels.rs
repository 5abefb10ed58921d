//! The preprocessed tensor that enters a vision tower.

/// A preprocessed image: the normalized float tensor in the layout the reference image
/// processor returns (e.g. `[3, H, W]`), and how many embeddings it will produce.
#[derive(Debug, Clone, PartialEq)]
pub struct Pixels {
    /// Row-major tensor data.
    pub data: Vec<f32>,
    /// The tensor's shape.
    pub shape: Vec<usize>,
    /// Number of embedding rows the model produces for this image.
    pub n_tokens: usize,
}
