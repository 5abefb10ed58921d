//! Rotary position embeddings in the "rotate_half" convention of HF's Llama, Pixtral and Qwen
//! vision towers: for an angle vector `a` of length `head_dim / 2`,
//! `x' = x * cat(cos a, cos a) + rotate_half(x) * cat(sin a, sin a)` with
//! `rotate_half(x) = cat(-x[hd/2:], x[:hd/2])`, i.e. element `j` pairs with `j + hd/2`.
//!
//! Angles and their cos/sin are computed in f32 (as torch does), then cast to the compute
//! dtype; the rotation itself runs in that dtype (Pixtral; Qwen casts q/k to f32 first).

use candle_core::{DType, Device, Tensor};

use crate::error::{Error, Result};

/// Per-token cos/sin tables, `[tokens, head_dim / 2]` each.
#[derive(Debug, Clone)]
pub struct Rotary {
    cos: Tensor,
    sin: Tensor,
}

impl Rotary {
    /// Tables from angles given row-major as `[tokens, half]` (f32, one row per token).
    pub fn from_angles(
        angles: &[f32],
        half: usize,
        dtype: DType,
        device: &Device,
    ) -> Result<Rotary> {
        if half == 0 || angles.len() % half != 0 {
            return Err(Error::compute(format!(
                "rotary: {} angles is not a multiple of {half}",
                angles.len()
            )));
        }
        let n = angles.len() / half;
        let cos: Vec<f32> = angles.iter().map(|a| a.cos()).collect();
        let sin: Vec<f32> = angles.iter().map(|a| a.sin()).collect();
        let make = |v: Vec<f32>| -> Result<Tensor> {
            let t = Tensor::from_vec(v, (n, half), &Device::Cpu)?.to_dtype(dtype)?;
            Ok(if device.is_cpu() {
                t
            } else {
                t.to_device(device)?
            })
        };
        Ok(Rotary {
            cos: make(cos)?,
            sin: make(sin)?,
        })
    }

    /// Number of tokens the tables cover.
    pub fn len(&self) -> usize {
        self.cos.dims()[0]
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Rotates `x` `[batch, heads, tokens, head_dim]` (token `t` by row `t` of the tables).
    pub fn apply(&self, x: &Tensor) -> Result<Tensor> {
        let x = x.contiguous()?;
        let (_, _, n, hd) = x.dims4()?;
        if n != self.len() || hd != 2 * self.cos.dims()[1] {
            return Err(Error::compute(format!(
                "rotary: input {:?} does not match tables for {} tokens x {}",
                x.dims(),
                self.len(),
                2 * self.cos.dims()[1]
            )));
        }
        Ok(candle_nn::rotary_emb::rope(&x, &self.cos, &self.sin)?)
    }
}

/// The inverse frequencies `1 / theta^(2j / dim)`, `j < dim / 2`, in f32 as torch computes
/// them (`1.0 / (base ** (torch.arange(0, dim, 2, dtype=torch.float) / dim))`).
pub fn inverse_frequencies(dim: usize, theta: f64) -> Vec<f32> {
    let base = theta as f32;
    (0..dim / 2)
        .map(|j| 1.0f32 / base.powf((2 * j) as f32 / dim as f32))
        .collect()
}

/// Pixtral's 2D axial angles (`PixtralVisionRotaryEmbedding`) for images whose patch grids
/// are `grids` (`(rows, cols)` each, tokens row-major, images back to back): with
/// `f = inverse_frequencies(head_dim, theta)`, the patch at row `r`, column `c` gets
/// `[r·f0, r·f2, r·f4, …, c·f1, c·f3, c·f5, …]` (even-index frequencies for rows, odd-index
/// ones for columns, as the reference's `cat(f[0::2], f[1::2])` split in two halves).
/// Returns `[tokens, head_dim / 2]` row-major.
pub fn pixtral_axial_angles(grids: &[(usize, usize)], head_dim: usize, theta: f64) -> Vec<f32> {
    let f = inverse_frequencies(head_dim, theta);
    let even: Vec<f32> = f.iter().step_by(2).copied().collect();
    let odd: Vec<f32> = f.iter().skip(1).step_by(2).copied().collect();
    let tokens: usize = grids.iter().map(|(r, c)| r * c).sum();
    let mut out = Vec::with_capacity(tokens * (even.len() + odd.len()));
    for &(rows, cols) in grids {
        for r in 0..rows {
            for c in 0..cols {
                out.extend(even.iter().map(|f| r as f32 * f));
                out.extend(odd.iter().map(|f| c as f32 * f));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn axial_angles_split_even_and_odd_frequencies() {
        // head_dim 8: f = [1, 100^-1/4... ] with theta 100: f_j = 100^(-2j/8).
        let f = inverse_frequencies(8, 100.0);
        assert_eq!(f.len(), 4);
        assert_eq!(f[0], 1.0);
        assert!((f[2] - 0.1).abs() < 1e-7);
        let a = pixtral_axial_angles(&[(2, 3), (1, 1)], 8, 100.0);
        assert_eq!(a.len(), 7 * 4);
        // token (r=1, c=2) of the first image is index 5.
        assert_eq!(
            &a[5 * 4..6 * 4],
            &[1.0 * f[0], 1.0 * f[2], 2.0 * f[1], 2.0 * f[3]]
        );
        // the second image restarts at (0, 0).
        assert_eq!(&a[6 * 4..], &[0.0; 4]);
    }

    #[test]
    fn rotation_pairs_j_with_j_plus_half() {
        let r = Rotary::from_angles(
            &[std::f32::consts::FRAC_PI_2, 0.0],
            2,
            DType::F32,
            &Device::Cpu,
        )
        .unwrap();
        let x = Tensor::from_vec(vec![1f32, 2., 3., 4.], (1, 1, 1, 4), &Device::Cpu).unwrap();
        let y = r
            .apply(&x)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        // pair (0, 2) rotated by 90°: (1, 3) -> (-3, 1); pair (1, 3) by 0°: unchanged.
        let want = [-3f32, 2., 1., 4.];
        for (a, b) in y.iter().zip(want) {
            assert!((a - b).abs() < 1e-6, "{y:?}");
        }
    }
}
