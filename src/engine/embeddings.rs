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
///
/// A model with deepstack features (Qwen3-VL) gives each image several *levels* of rows of
/// the same shape: level 0 is what replaces the placeholder tokens, level k (k >= 1) is
/// added to the language model's hidden states after decoder layer [`Embeddings::level_layer`].
/// Other models have one level.
#[derive(Debug, Clone)]
pub struct Embeddings {
    dim: usize,
    /// Level 0 of each image.
    items: Vec<Rows>,
    /// `extra[k - 1][i]`: level k of image i.
    extra: Vec<Vec<Rows>>,
    /// Decoder layer of each extra level.
    layers: Vec<usize>,
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

impl Rows {
    /// Image `i`'s `[n_tokens, dim]` output.
    fn new(dim: usize, i: usize, tensor: Tensor) -> Result<Rows> {
        match *tensor.dims() {
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
        }
    }
}

fn host_f32(tensor: &Tensor) -> Result<Vec<f32>> {
    Ok(tensor
        .to_dtype(DType::F32)?
        .flatten_all()?
        .to_vec1::<f32>()?)
}

impl Embeddings {
    /// Wraps the model's outputs, each `[n_tokens, dim]` (one level).
    #[cfg(test)]
    pub(crate) fn new(dim: usize, outputs: Vec<Tensor>) -> Result<Embeddings> {
        let items = outputs
            .into_iter()
            .enumerate()
            .map(|(i, t)| Rows::new(dim, i, t))
            .collect::<Result<_>>()?;
        Ok(Embeddings {
            dim,
            items,
            extra: Vec::new(),
            layers: Vec::new(),
        })
    }

    /// Wraps the model's outputs with their levels: `outputs[i][level]`, each image with
    /// `1 + layers.len()` levels of the same `[n_tokens, dim]` shape; `layers[k - 1]` is the
    /// decoder layer of level k.
    pub(crate) fn with_levels(
        dim: usize,
        outputs: Vec<Vec<Tensor>>,
        layers: Vec<usize>,
    ) -> Result<Embeddings> {
        let mut items = Vec::with_capacity(outputs.len());
        let mut extra: Vec<Vec<Rows>> = (0..layers.len()).map(|_| Vec::new()).collect();
        for (i, levels) in outputs.into_iter().enumerate() {
            if levels.len() != 1 + layers.len() {
                return Err(Error::compute(format!(
                    "image {i}: {} embedding levels, expected {}",
                    levels.len(),
                    1 + layers.len()
                )));
            }
            let mut levels = levels.into_iter();
            let main = Rows::new(dim, i, levels.next().expect("one level at least"))?;
            for (k, t) in levels.enumerate() {
                let rows = Rows::new(dim, i, t)?;
                if rows.n_tokens != main.n_tokens {
                    return Err(Error::compute(format!(
                        "image {i}: level {} has {} rows, level 0 {}",
                        k + 1,
                        rows.n_tokens,
                        main.n_tokens
                    )));
                }
                extra[k].push(rows);
            }
            items.push(main);
        }
        Ok(Embeddings {
            dim,
            items,
            extra,
            layers,
        })
    }

    /// Embedding levels per image: 1 + the deepstack levels (1 for most models).
    pub fn n_levels(&self) -> usize {
        1 + self.layers.len()
    }

    /// The decoder layer (0-based) after which level `level` (>= 1) is added to the
    /// language model's hidden states; `None` for level 0 and past the last level.
    pub fn level_layer(&self, level: usize) -> Option<usize> {
        level
            .checked_sub(1)
            .and_then(|k| self.layers.get(k).copied())
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

    fn rows(&self, index: usize, level: usize) -> Result<&Rows> {
        let list = match level {
            0 => &self.items,
            k => self.extra.get(k - 1).ok_or_else(|| {
                Error::invalid_argument(format!(
                    "level {level} is out of range (this model gives {} level{})",
                    self.n_levels(),
                    if self.n_levels() == 1 { "" } else { "s" }
                ))
            })?,
        };
        list.get(index).ok_or_else(|| {
            Error::invalid_argument(format!(
                "index {index} is out of range (count {})",
                self.count()
            ))
        })
    }

    /// Row-major `[n_tokens, dim]` f32 data of image `index` (for a GPU model, copied to
    /// the host and converted from the compute dtype on the first call for that image).
    pub fn data(&self, index: usize) -> Result<&[f32]> {
        self.level_data(index, 0)
    }

    /// [`Embeddings::data`] of level `level`.
    pub fn level_data(&self, index: usize, level: usize) -> Result<&[f32]> {
        let rows = self.rows(index, level)?;
        let host = rows.host.get_or_try_init(|| match &rows.device {
            Some(t) => host_f32(t),
            None => Err(Error::compute(format!("image {index} has no rows"))),
        })?;
        Ok(host.as_slice())
    }

    /// Image `index`'s rows on the GPU, in the model's compute dtype, when the model ran on
    /// one (`None` on the CPU or past the end).
    pub fn device_rows(&self, index: usize) -> Option<&Tensor> {
        self.level_device_rows(index, 0)
    }

    /// [`Embeddings::device_rows`] of level `level`.
    pub fn level_device_rows(&self, index: usize, level: usize) -> Option<&Tensor> {
        self.rows(index, level).ok().and_then(|r| r.device.as_ref())
    }

    /// Writes image `index`'s rows into `dst` as little-endian `ty` values (bf16 and f16
    /// rounded to nearest even, as torch converts).
    pub fn copy_to_host(&self, index: usize, ty: OutputType, dst: &mut [u8]) -> Result<()> {
        self.copy_level_to_host(index, 0, ty, dst)
    }

    /// [`Embeddings::copy_to_host`] of level `level`.
    pub fn copy_level_to_host(
        &self,
        index: usize,
        level: usize,
        ty: OutputType,
        dst: &mut [u8],
    ) -> Result<()> {
        let needed = self.rows(index, level)?.n_tokens * self.dim * ty.size();
        if dst.len() < needed {
            return Err(Error::invalid_argument(format!(
                "destination holds {} bytes, image {index} needs {needed}",
                dst.len()
            )));
        }
        let rows = self.level_data(index, level)?;
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
            extra: Vec::new(),
            layers: Vec::new(),
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
