//! Rotary position embeddings ("rotate_half" convention: element `j` pairs with `j + d/2`)
//! as the vision towers use them, computed in f32 like the reference.

use candle_core::{DType, Device, Tensor, D};

use crate::error::{Error, Result};

/// `cat(-x[.., d/2..], x[.., ..d/2])` over the last dimension.
pub fn rotate_half(x: &Tensor) -> Result<Tensor> {
    let d = x.dim(D::Minus1)?;
    if d % 2 != 0 {
        return Err(Error::compute(format!("rotary dimension {d} is odd")));
    }
    let x1 = x.narrow(D::Minus1, 0, d / 2)?;
    let x2 = x.narrow(D::Minus1, d / 2, d / 2)?;
    Ok(Tensor::cat(&[&x2.neg()?, &x1], D::Minus1)?)
}

/// `x·cos + rotate_half(x)·sin`, computed in f32 and cast back to `x`'s dtype
/// (`apply_rotary_pos_emb_vision`). `cos` and `sin` broadcast against `x`.
pub fn apply_rotary_f32(x: &Tensor, cos: &Tensor, sin: &Tensor) -> Result<Tensor> {
    let dtype = x.dtype();
    let x = x.to_dtype(DType::F32)?;
    let cos = cos.to_dtype(DType::F32)?;
    let sin = sin.to_dtype(DType::F32)?;
    let y = (x.broadcast_mul(&cos)? + rotate_half(&x)?.broadcast_mul(&sin)?)?;
    Ok(y.to_dtype(dtype)?)
}

/// The inverse frequencies `1 / theta^(i/dim)` for `i = 0, 2, 4, .. < dim`, in f32 as torch
/// computes them (`arange(0, dim, 2, dtype=float) / dim`, then `theta ** that`).
pub fn inverse_frequencies(dim: usize, theta: f64) -> Vec<f32> {
    (0..dim)
        .step_by(2)
        .map(|i| {
            let exponent = i as f32 / dim as f32;
            1.0 / (theta as f32).powf(exponent)
        })
        .collect()
}

/// The 2-D axial rotary embedding of the Qwen2-VL / Qwen2.5-VL vision towers
/// (`Qwen2VLVisionRotaryEmbedding`, rope type `axial`): one set of `head_dim / 4`
/// frequencies used for rows and columns alike; a token at patch `(row, col)` gets the angle
/// vector `[row·f, col·f]`, repeated twice to cover the head dimension.
#[derive(Debug, Clone)]
pub struct AxialRope {
    inv_freq: Vec<f32>,
    head_dim: usize,
}

impl AxialRope {
    /// For heads of `head_dim` (a multiple of 4) and base `theta`.
    pub fn new(head_dim: usize, theta: f64) -> Result<AxialRope> {
        if head_dim == 0 || head_dim % 4 != 0 {
            return Err(Error::bad_config(format!(
                "axial rotary embedding needs a head dimension divisible by 4, found {head_dim}"
            )));
        }
        if !(theta.is_finite() && theta > 0.0) {
            return Err(Error::bad_config(format!(
                "rope_theta {theta} must be a positive number"
            )));
        }
        Ok(AxialRope {
            inv_freq: inverse_frequencies(head_dim / 2, theta),
            head_dim,
        })
    }

    /// `(cos, sin)`, each `[positions.len(), head_dim]` f32, for tokens at patch positions
    /// `(row, col)`.
    pub fn cos_sin(
        &self,
        positions: &[(usize, usize)],
        device: &Device,
    ) -> Result<(Tensor, Tensor)> {
        let n = positions.len();
        let q = self.inv_freq.len();
        let mut cos = Vec::with_capacity(n * self.head_dim);
        let mut sin = Vec::with_capacity(n * self.head_dim);
        let mut angles = vec![0f32; 2 * q];
        for &(r, c) in positions {
            for (k, f) in self.inv_freq.iter().enumerate() {
                angles[k] = r as f32 * f;
                angles[q + k] = c as f32 * f;
            }
            for _ in 0..2 {
                cos.extend(angles.iter().map(|a| a.cos()));
                sin.extend(angles.iter().map(|a| a.sin()));
            }
        }
        let cos = Tensor::from_vec(cos, (n, self.head_dim), &Device::Cpu)?;
        let sin = Tensor::from_vec(sin, (n, self.head_dim), &Device::Cpu)?;
        Ok((cos.to_device(device)?, sin.to_device(device)?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rotate_half_pairs_j_with_j_plus_half() {
        let x = Tensor::new(&[[1f32, 2., 3., 4.]], &Device::Cpu).unwrap();
        let r = rotate_half(&x).unwrap().to_vec2::<f32>().unwrap();
        assert_eq!(r, vec![vec![-3., -4., 1., 2.]]);
        // A rotation by 90 degrees of each pair (j, j + d/2).
        let cos = Tensor::zeros((1, 4), DType::F32, &Device::Cpu).unwrap();
        let sin = Tensor::ones((1, 4), DType::F32, &Device::Cpu).unwrap();
        let y = apply_rotary_f32(&x, &cos, &sin).unwrap();
        assert_eq!(y.to_vec2::<f32>().unwrap(), vec![vec![-3., -4., 1., 2.]]);
    }

    #[test]
    fn axial_angles() {
        let rope = AxialRope::new(8, 10000.0).unwrap();
        assert_eq!(rope.inv_freq, vec![1.0, 0.01]);
        let (cos, sin) = rope.cos_sin(&[(0, 0), (2, 3)], &Device::Cpu).unwrap();
        let s = sin.to_vec2::<f32>().unwrap();
        let c = cos.to_vec2::<f32>().unwrap();
        assert_eq!(c[0], vec![1.0; 8]);
        let a = [2.0f32, 0.02, 3.0, 0.03];
        for k in 0..8 {
            assert_eq!(s[1][k], a[k % 4].sin());
            assert_eq!(c[1][k], a[k % 4].cos());
        }
        assert!(AxialRope::new(6, 10000.0).is_err());
        assert!(AxialRope::new(8, 0.0).is_err());
    }
}
