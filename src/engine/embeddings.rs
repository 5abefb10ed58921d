//! The result of a forward pass.

use candle_core::Tensor;

use crate::error::{Error, Result};

/// Element types embeddings can be copied out as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputType {
    F32,
    BF16,
    F16,
}

impl OutputType {
    pub fn size(self) -> usize {
        match self {
            OutputType::F32 => 4,
            OutputType::BF16 | OutputType::F16 => 2,
        }
    }
}

/// Embeddings of a batch of images: for image `i`, `n_tokens(i)` rows of `dim` floats.
#[derive(Debug, Clone)]
pub struct Embeddings {
    pub(crate) dim: usize,
    pub(crate) items: Vec<Vec<f32>>,
    /// The same rows on the GPU when the model runs there (empty on the CPU), in the
    /// model's compute dtype, for copies that never touch host memory.
    pub(crate) device_items: Vec<Tensor>,
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

    /// The GPU copy of image `index`'s rows, when the model ran on a GPU.
    pub fn device_rows(&self, index: usize) -> Option<&Tensor> {
        self.device_items.get(index)
    }

    /// Writes image `index`'s rows into `dst` as little-endian `ty` values (bf16 and f16
    /// rounded to nearest even, as torch converts).
    pub fn copy_to_host(&self, index: usize, ty: OutputType, dst: &mut [u8]) -> Result<()> {
        let rows = self.data(index).ok_or_else(|| {
            Error::invalid_argument(format!(
                "index {index} is out of range (count {})",
                self.count()
            ))
        })?;
        let needed = rows.len() * ty.size();
        if dst.len() < needed {
            return Err(Error::invalid_argument(format!(
                "destination holds {} bytes, image {index} needs {needed}",
                dst.len()
            )));
        }
        match ty {
            OutputType::F32 => {
                for (d, v) in dst.chunks_exact_mut(4).zip(rows) {
                    d.copy_from_slice(&v.to_le_bytes());
                }
            }
            OutputType::BF16 => {
                for (d, v) in dst.chunks_exact_mut(2).zip(rows) {
                    d.copy_from_slice(&half::bf16::from_f32(*v).to_le_bytes());
                }
            }
            OutputType::F16 => {
                for (d, v) in dst.chunks_exact_mut(2).zip(rows) {
                    d.copy_from_slice(&half::f16::from_f32(*v).to_le_bytes());
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_copies_convert_and_check_sizes() {
        let e = Embeddings {
            dim: 2,
            items: vec![vec![1.0, -2.5, 3.0e-3, 65504.0]],
            device_items: vec![],
        };
        let mut f32s = [0u8; 16];
        e.copy_to_host(0, OutputType::F32, &mut f32s).unwrap();
        assert_eq!(f32::from_le_bytes(f32s[4..8].try_into().unwrap()), -2.5);
        let mut b = [0u8; 8];
        e.copy_to_host(0, OutputType::BF16, &mut b).unwrap();
        assert_eq!(half::bf16::from_le_bytes([b[2], b[3]]).to_f32(), -2.5);
        e.copy_to_host(0, OutputType::F16, &mut b).unwrap();
        assert_eq!(half::f16::from_le_bytes([b[6], b[7]]).to_f32(), 65504.0);
        assert!(e.copy_to_host(0, OutputType::F16, &mut [0u8; 7]).is_err());
        assert!(e.copy_to_host(1, OutputType::F32, &mut f32s).is_err());
    }
}
