//! The result of a forward pass.

/// Embeddings of a batch of images: for image `i`, `n_tokens(i)` rows of `dim` floats.
#[derive(Debug, Clone, PartialEq)]
pub struct Embeddings {
    pub(crate) dim: usize,
    pub(crate) items: Vec<Vec<f32>>,
}

impl Embeddings {
    /// Number of images.
    pub fn count(&self) -> usize {
        self.items.len()
    }

    /// Row width (the language model's hidden size).
    pub fn dim(&self) -> usize {
        self.dim
    }

    /// Rows of image `index`, or `None` past the end.
    pub fn n_tokens(&self, index: usize) -> Option<usize> {
        self.items.get(index).map(|v| v.len() / self.dim.max(1))
    }

    /// Row-major `[n_tokens, dim]` data of image `index`.
    pub fn data(&self, index: usize) -> Option<&[f32]> {
        self.items.get(index).map(|v| v.as_slice())
    }
}
