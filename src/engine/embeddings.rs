//! The result of a forward pass.

use candle_core::{DType, Tensor};
use once_cell::sync::OnceCell;

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

/// Embeddings of a batch of images: for image `i`, `n_tokens(i)` rows of `dim` values.
///
/// On the CPU each image's rows are host f32 from the start. On a GPU they stay where the
/// model computed them (in its compute dtype) and the f32 host copy is made on first use,
/// so a caller that copies the rows straight into its own GPU buffer never pays for a
/// device-to-host transfer.
#[derive(Debug, Clone)]
pub struct Embeddings {
    dim: usize,
    items: Vec<Rows>,
}

#[derive(Debug, Clone)]
struct Rows {
    n_tokens: usize,
    /// `[n_tokens, dim]` as the model returned it, on a GPU (`None` on the CPU, where the
    /// host copy is made at once and the tensor dropped, so the rows are not held twice).
    device: Option<Tensor>,
    /// The rows as host f32: set from the start on the CPU, on first use on a GPU.
    host: OnceCell<Vec<f32>>,
}

fn host_f32(tensor: &Tensor) -> Result<Vec<f32>> {
    Ok(tensor
        .to_dtype(DType::F32)?
        .flatten_all()?
        .to_vec1::<f32>()?)
}

impl Embeddings {
    /// Wraps the model's outputs, each `[n_tokens, dim]`.
    pub(crate) fn new(dim: usize, outputs: Vec<Tensor>) -> Result<Embeddings> {
        let items = outputs
            .into_iter()
            .enumerate()
            .map(|(i, tensor)| match *tensor.dims() {
                [n_tokens, d] if d == dim => {
                    let host = OnceCell::new();
                    let device = if tensor.device().is_cpu() {
                        host.get_or_try_init(|| host_f32(&tensor))?;
                        None
                    } else {
                        Some(tensor)
                    };
                    Ok(Rows {
                        n_tokens,
                        device,
                        host,
                    })
                }
                ref other => Err(Error::compute(format!(
                    "image {i}: output shape {other:?}, expected [n_tokens, {dim}]"
                ))),
            })
            .collect::<Result<_>>()?;
        Ok(Embeddings { dim, items })
    }

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
        self.items.get(index).map(|r| r.n_tokens)
    }

    fn rows(&self, index: usize) -> Result<&Rows> {
        self.items.get(index).ok_or_else(|| {
            Error::invalid_argument(format!(
                "index {index} is out of range (count {})",
                self.count()
            ))
        })
    }

    /// Row-major `[n_tokens, dim]` f32 data of image `index` (for a GPU model, copied to
    /// the host and converted from the compute dtype on the first call for that image).
    pub fn data(&self, index: usize) -> Result<&[f32]> {
        let rows = self.rows(index)?;
        let host = rows.host.get_or_try_init(|| match &rows.device {
            Some(t) => host_f32(t),
            None => Err(Error::compute(format!("image {index} has no rows"))),
        })?;
        Ok(host.as_slice())
    }

    /// Image `index`'s rows on the GPU, in the model's compute dtype, when the model ran on
    /// one (`None` on the CPU or past the end).
    pub fn device_rows(&self, index: usize) -> Option<&Tensor> {
        self.items.get(index).and_then(|r| r.device.as_ref())
    }

    /// Writes image `index`'s rows into `dst` as little-endian `ty` values (bf16 and f16
    /// rounded to nearest even, as torch converts).
    pub fn copy_to_host(&self, index: usize, ty: OutputType, dst: &mut [u8]) -> Result<()> {
        let needed = self.rows(index)?.n_tokens * self.dim * ty.size();
        if dst.len() < needed {
            return Err(Error::invalid_argument(format!(
                "destination holds {} bytes, image {index} needs {needed}",
                dst.len()
            )));
        }
        let rows = self.data(index)?;
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
        let rows = Tensor::new(
            &[[1.0f32, -2.5], [3.0e-3, 65504.0]],
            &candle_core::Device::Cpu,
        )
        .unwrap();
        let e = Embeddings::new(2, vec![rows]).unwrap();
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
        assert!(e.data(1).is_err());
        assert!(e.device_rows(0).is_none(), "CPU rows are not device rows");
    }

    #[test]
    fn host_rows_are_converted_from_the_compute_dtype() {
        let dev = candle_core::Device::Cpu;
        let rows = Tensor::new(&[[0.1f32, 1.0 / 3.0, -7.25]], &dev)
            .unwrap()
            .to_dtype(DType::BF16)
            .unwrap();
        let e = Embeddings::new(3, vec![rows]).unwrap();
        let want: Vec<f32> = [0.1f32, 1.0 / 3.0, -7.25]
            .iter()
            .map(|v| half::bf16::from_f32(*v).to_f32())
            .collect();
        let first = e.data(0).unwrap();
        assert_eq!(first, want.as_slice());
        assert!(std::ptr::eq(first, e.data(0).unwrap()), "one host copy");
        assert_eq!(e.n_tokens(0), Some(1));
    }

    #[test]
    fn device_rows_are_copied_to_the_host_on_first_read() {
        // The GPU layout, built by hand around a CPU tensor (the logic is the same).
        let t = Tensor::new(&[[1.5f32, -2.0], [0.25, 8.0]], &candle_core::Device::Cpu)
            .unwrap()
            .to_dtype(DType::F16)
            .unwrap();
        let e = Embeddings {
            dim: 2,
            items: vec![Rows {
                n_tokens: 2,
                device: Some(t),
                host: OnceCell::new(),
            }],
        };
        assert!(e.items[0].host.get().is_none(), "nothing copied yet");
        assert!(e.device_rows(0).is_some());
        let mut b = [0u8; 8];
        e.copy_to_host(0, OutputType::BF16, &mut b).unwrap();
        assert_eq!(half::bf16::from_le_bytes([b[6], b[7]]).to_f32(), 8.0);
        assert_eq!(e.data(0).unwrap(), &[1.5, -2.0, 0.25, 8.0]);
        assert!(e.items[0].host.get().is_some());
    }

    #[test]
    fn outputs_of_the_wrong_width_are_an_error() {
        let t = Tensor::zeros((2, 3), DType::F32, &candle_core::Device::Cpu).unwrap();
        assert!(Embeddings::new(4, vec![t]).is_err());
    }
}
