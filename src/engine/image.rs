//! A preprocessed image, tied to the model that made it.

use crate::preprocess::Pixels;

/// An image preprocessed by one model, ready for that model's forward pass.
#[derive(Debug, Clone, PartialEq)]
pub struct Image {
    pub(crate) model_id: u64,
    pub(crate) pixels: Pixels,
}

impl Image {
    /// The normalized input tensor, row-major, in the reference processor's layout.
    pub fn pixels(&self) -> &[f32] {
        &self.pixels.data
    }

    /// The shape of [`Image::pixels`] (e.g. `[3, H, W]`).
    pub fn shape(&self) -> &[usize] {
        &self.pixels.shape
    }

    /// How many embedding rows this image yields.
    pub fn n_tokens(&self) -> usize {
        self.pixels.n_tokens()
    }

    /// The output embeddings as a `[frames, rows, cols]` grid (row-major order).
    pub fn token_grid(&self) -> [usize; 3] {
        self.pixels.grid
    }
}
