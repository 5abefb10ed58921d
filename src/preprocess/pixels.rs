//! The preprocessed tensor that enters a vision tower.

/// A preprocessed image: the normalized float tensor in the layout the reference image
/// processor returns (e.g. `[3, H, W]`), and the grid of embeddings it will produce.
#[derive(Debug, Clone, PartialEq)]
pub struct Pixels {
    /// Row-major tensor data.
    pub data: Vec<f32>,
    /// The tensor's shape.
    pub shape: Vec<usize>,
    /// The output embeddings as a `[frames, rows, cols]` grid, in output order (row-major).
    /// Families without a spatial output layout use `[1, 1, n_tokens]`.
    pub grid: [usize; 3],
    /// Family-specific numbers the forward pass needs beyond the tensor (LLaVA-NeXT /
    /// OneVision: the original image height and width, for unpadding); empty for most
    /// families. Part of the image's identity: images that differ here are different images.
    pub extra: Vec<usize>,
}

impl Pixels {
    /// Number of embedding rows the model produces for this image.
    pub fn n_tokens(&self) -> usize {
        self.grid.iter().product()
    }
}
