//! Rotary position embeddings in the "rotate_half" convention of HF's Llama, Pixtral and Qwen
//! vision towers: for an angle vector `a` of length `head_dim / 2`,
//! `x' = x * cat(cos a, cos a) + rotate_half(x) * cat(sin a, sin a)` with
//! `rotate_half(x) = cat(-x[hd/2:], x[:hd/2])`, i.e. element `j` pairs with `j + hd/2`.
//!
//! Angles and their cos/sin are computed in f32 (as torch does), then cast to the compute
//! dtype; the rotation itself runs in that dtype (Pixtral, [`Rotary`]), or in f32 (Qwen,
//! [`apply_rotary_f32`] with the [`AxialRope`] tables).

use candle_core::{DType, Device, Tensor, D};

use crate::error::{Error, Result};
use crate::models::fused;

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
    /// Tables of another dtype than `x` (f32 tables, built with `dtype` F32, for a bf16 or f16
    /// `x`) rotate `x` upcast to theirs and cast the result back, as
    /// `apply_rotary_pos_emb_vision` does.
    pub fn apply(&self, x: &Tensor) -> Result<Tensor> {
        let dtype = x.dtype();
        if dtype != self.cos.dtype() {
            return Ok(self
                .apply(&x.to_dtype(self.cos.dtype())?)?
                .to_dtype(dtype)?);
        }
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
    if let Some(y) = fused::rotate_half_rotary(x, cos, sin)? {
        return Ok(y);
    }
    let dtype = x.dtype();
    let x = x.to_dtype(DType::F32)?;
    let cos = cos.to_dtype(DType::F32)?;
    let sin = sin.to_dtype(DType::F32)?;
    let y = (x.broadcast_mul(&cos)? + rotate_half(&x)?.broadcast_mul(&sin)?)?;
    Ok(y.to_dtype(dtype)?)
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

    /// The angle vector `[row·f, col·f]` (`head_dim / 2` values) of each of `positions`,
    /// row-major: the tables of a [`Rotary`] (`Rotary::from_angles(.., head_dim / 2, ..)`).
    pub fn angles(&self, positions: &[(usize, usize)]) -> Vec<f32> {
        let q = self.inv_freq.len();
        let mut out = Vec::with_capacity(positions.len() * 2 * q);
        for &(r, c) in positions {
            out.extend(self.inv_freq.iter().map(|f| r as f32 * f));
            out.extend(self.inv_freq.iter().map(|f| c as f32 * f));
        }
        out
    }

    /// `(cos, sin)`, each `[positions.len(), head_dim]` f32, for tokens at patch positions
    /// `(row, col)`.
    pub fn cos_sin(
        &self,
        positions: &[(usize, usize)],
        device: &Device,
    ) -> Result<(Tensor, Tensor)> {
        let n = positions.len();
        let mut cos = Vec::with_capacity(n * self.head_dim);
        let mut sin = Vec::with_capacity(n * self.head_dim);
        for angles in self.angles(positions).chunks_exact(self.head_dim / 2) {
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
    use crate::models::testing::uniform;

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

    #[test]
    fn rotary_equals_candle_ops_bit_for_bit() {
        let (tokens, heads, head_dim) = (700, 3, 8);
        let x = uniform(&[tokens, heads, head_dim], 10, 3.0);
        let cos = uniform(&[tokens, 1, head_dim], 11, 3.0);
        let sin = uniform(&[tokens, 1, head_dim], 12, 3.0);
        let want = (x.broadcast_mul(&cos).unwrap()
            + rotate_half(&x).unwrap().broadcast_mul(&sin).unwrap())
        .unwrap();
        let got = fused::rotate_half_rotary(&x, &cos, &sin)
            .unwrap()
            .expect("fused path");
        assert_eq!(
            got.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
            want.flatten_all().unwrap().to_vec1::<f32>().unwrap()
        );
        // Tables of the wrong size are left to candle (which reports the mismatch).
        let short = uniform(&[tokens - 1, 1, head_dim], 13, 3.0);
        assert!(fused::rotate_half_rotary(&x, &short, &sin)
            .unwrap()
            .is_none());
    }
}
