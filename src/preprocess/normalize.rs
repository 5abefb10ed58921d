//! Rescale and normalize exactly as transformers' numpy code does it:
//! `rescale`: `float32(float64(u8) * factor)`; `normalize`: `(x - float32(mean)) / float32(std)`
//! computed in float32. Both are functions of the 8-bit value alone, so a 256-entry table per
//! channel reproduces them bit for bit.

use crate::error::{Error, Result};
use crate::preprocess::limits::try_filled;
use crate::preprocess::RgbImage;

/// The per-channel affine map from 8-bit values to model input.
#[derive(Debug, Clone, PartialEq)]
pub struct Normalization {
    /// `rescale_factor` when `do_rescale` (usually 1/255).
    pub rescale: Option<f64>,
    /// `(image_mean, image_std)` when `do_normalize`.
    pub mean_std: Option<([f32; 3], [f32; 3])>,
}

/// Reads a per-channel list that may be given as one value for all channels.
pub fn three_channels(values: &[f64], what: &str) -> Result<[f32; 3]> {
    match values {
        [v] => Ok([*v as f32; 3]),
        [a, b, c] => Ok([*a as f32, *b as f32, *c as f32]),
        _ => Err(Error::bad_config(format!(
            "preprocessor_config.json: `{what}` must have 1 or 3 values, found {}",
            values.len()
        ))),
    }
}

impl Normalization {
    /// Checks the values (a zero std would produce infinities).
    pub fn validate(&self) -> Result<()> {
        if let Some((_, std)) = &self.mean_std {
            if std.iter().any(|s| *s == 0.0 || !s.is_finite()) {
                return Err(Error::bad_config(format!(
                    "preprocessor_config.json: `image_std` {std:?} must be finite and non-zero"
                )));
            }
        }
        Ok(())
    }

    /// The table of output values for each channel and 8-bit input.
    fn table(&self) -> [[f32; 256]; 3] {
        let mut t = [[0f32; 256]; 3];
        for (c, row) in t.iter_mut().enumerate() {
            for (v, out) in row.iter_mut().enumerate() {
                let mut x = match self.rescale {
                    Some(f) => (v as f64 * f) as f32,
                    None => v as f32,
                };
                if let Some((mean, std)) = &self.mean_std {
                    x = (x - mean[c]) / std[c];
                }
                *out = x;
            }
        }
        t
    }

    /// Converts an RGB image into a `[3, H, W]` float tensor (channels first); fails
    /// (out of memory) instead of aborting when the tensor cannot be allocated.
    pub fn to_chw(&self, image: &RgbImage) -> Result<Vec<f32>> {
        let table = self.table();
        let plane = image.width as usize * image.height as usize;
        let mut out = try_filled(3 * plane, 0f32, "the normalized image tensor")?;
        let (r, rest) = out.split_at_mut(plane);
        let (g, b) = rest.split_at_mut(plane);
        for (i, px) in image.data.chunks_exact(3).enumerate() {
            r[i] = table[0][px[0] as usize];
            g[i] = table[1][px[1] as usize];
            b[i] = table[2][px[2] as usize];
        }
        Ok(out)
    }
}

/// The torchvision backend's fused rescale + normalize to a `[3, H, W]` plane:
/// `(x - f32(mean) * f32(1 / rescale)) / (f32(std) * f32(1 / rescale))` in f32, or
/// `x * rescale` without normalization.
pub fn tv_normalize(
    image: &RgbImage,
    rescale: Option<f64>,
    mean_std: Option<([f64; 3], [f64; 3])>,
) -> Result<Vec<f32>> {
    let mut table = [[0f32; 256]; 3];
    for (c, row) in table.iter_mut().enumerate() {
        for (v, out) in row.iter_mut().enumerate() {
            *out = match (&mean_std, rescale) {
                (Some((mean, std)), Some(r)) => {
                    let k = (1.0 / r) as f32;
                    (v as f32 - mean[c] as f32 * k) / (std[c] as f32 * k)
                }
                (Some((mean, std)), None) => (v as f32 - mean[c] as f32) / std[c] as f32,
                (None, Some(r)) => v as f32 * r as f32,
                (None, None) => v as f32,
            };
        }
    }
    let plane = image.width as usize * image.height as usize;
    let mut out = try_filled(3 * plane, 0f32, "a video frame")?;
    for (i, px) in image.data.chunks_exact(3).enumerate() {
        for c in 0..3 {
            out[c * plane + i] = table[c][px[c] as usize];
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_numpy_arithmetic() {
        let n = Normalization {
            rescale: Some(1.0 / 255.0),
            mean_std: Some(([0.5; 3], [0.5; 3])),
        };
        let img = RgbImage::new(2, 1, vec![0, 128, 255, 1, 2, 3]).unwrap();
        let chw = n.to_chw(&img).unwrap();
        assert_eq!(chw.len(), 6);
        assert_eq!(chw[0], -1.0);
        assert_eq!(chw[1], ((1.0f64 / 255.0) as f32 - 0.5) / 0.5);
        assert_eq!(chw[2], ((128.0f64 / 255.0) as f32 - 0.5) / 0.5);
        assert_eq!(chw[4], 1.0);
        assert!(three_channels(&[1.0, 2.0], "image_mean").is_err());
        assert_eq!(three_channels(&[0.5], "x").unwrap(), [0.5; 3]);
        let bad = Normalization {
            rescale: None,
            mean_std: Some(([0.0; 3], [0.0, 1.0, 1.0])),
        };
        assert!(bad.validate().is_err());
    }
}
