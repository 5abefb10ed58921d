//! Image resizing that reproduces torchvision's `transforms.v2.functional.resize(image, size,
//! interpolation, antialias=True)` on `uint8` CPU tensors, as the Hugging Face *video*
//! processors (torchvision backend) resize frames.
//!
//! On CPU, torchvision hands `uint8` tensors straight to `torch.nn.functional.interpolate`
//! for bicubic (and for bilinear on AVX2 / AVX-512 / ARM machines), whose antialiased
//! `uint8` kernels (ATen `UpSampleKernel.cpp`, `_compute_index_ranges_int16_weights`) work
//! like Pillow's but not identically:
//!
//! * per axis, `scale = in / out` (f64), `support = (size / 2) * max(scale, 1)` (size 4 for
//!   bicubic, 2 for bilinear), output sample `i` reads source samples `xmin..xmin + xsize`
//!   with `center = scale * (i + 0.5)`, `xmin = max(trunc(center - support + 0.5), 0)`,
//!   `xsize = min(trunc(center + support + 0.5), in) - xmin` (at most `2 * ceil(support) +
//!   1`); weights `filter((j + xmin - center + 0.5) / max(scale, 1))` normalized to sum one;
//! * the bicubic filter is Keys' with `a = -0.5` written as ATen writes it;
//! * weights become `int16` with a per-axis precision: the largest `p < 22` such that the
//!   axis's largest weight times `2^(p + 1)` still rounds below `2^15`; each weight is
//!   rounded half away from zero;
//! * each output value is `clamp((2^(p-1) + sum(pixel * weight)) >> p, 0, 255)`;
//! * the horizontal pass runs first through an 8-bit intermediate image, then the vertical
//!   one; an axis whose size is unchanged is not resampled.

use crate::error::{Error, Result};
use crate::preprocess::limits::{try_filled, Limits};
use crate::preprocess::resample::Filter;
use crate::preprocess::rgb::RgbImage;

/// The interpolations torchvision resizes `uint8` frames with natively.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TvInterpolation {
    /// `InterpolationMode.BILINEAR` with antialias (triangle filter).
    Bilinear,
    /// `InterpolationMode.BICUBIC` with antialias (Keys cubic, a = -0.5).
    Bicubic,
}

impl TvInterpolation {
    /// transformers' `pil_torch_interpolation_mapping` for the filters vtower resizes
    /// video frames with; `None` for the others.
    pub fn from_filter(filter: Filter) -> Option<TvInterpolation> {
        match filter {
            Filter::Bilinear => Some(TvInterpolation::Bilinear),
            Filter::Bicubic => Some(TvInterpolation::Bicubic),
            _ => None,
        }
    }

    /// Half the filter's footprint at scale 1 (ATen's `interp_size / 2`).
    fn half_size(self) -> f64 {
        match self {
            TvInterpolation::Bilinear => 1.0,
            TvInterpolation::Bicubic => 2.0,
        }
    }

    fn eval(self, x: f64) -> f64 {
        match self {
            TvInterpolation::Bilinear => {
                let x = x.abs();
                if x < 1.0 {
                    1.0 - x
                } else {
                    0.0
                }
            }
            TvInterpolation::Bicubic => {
                // ATen's cubic_convolution1 / cubic_convolution2 with a = -0.5.
                const A: f64 = -0.5;
                let x = x.abs();
                if x < 1.0 {
                    ((A + 2.0) * x - (A + 3.0)) * x * x + 1.0
                } else if x < 2.0 {
                    ((A * x - 5.0 * A) * x + 8.0 * A) * x - 4.0 * A
                } else {
                    0.0
                }
            }
        }
    }
}

/// Most source samples one output sample may read (an axis shrunk ~100 000-fold).
const MAX_TAPS: usize = 1 << 18;

/// The `int16` weights of one axis.
struct AxisWeights {
    /// `(first source sample, offset into weights, count)` per output sample.
    taps: Vec<(usize, usize, usize)>,
    weights: Vec<i32>,
    precision: u32,
}

impl AxisWeights {
    fn new(in_size: usize, out_size: usize, interp: TvInterpolation) -> Result<AxisWeights> {
        let scale = in_size as f64 / out_size as f64;
        let support = if scale >= 1.0 {
            interp.half_size() * scale
        } else {
            interp.half_size()
        };
        let max_taps = support.ceil() as usize * 2 + 1;
        if max_taps > MAX_TAPS {
            return Err(Error::invalid_argument(format!(
                "resizing {in_size} pixels to {out_size} along one axis reads more than \
                 {MAX_TAPS} source pixels per output pixel"
            )));
        }
        let invscale = if scale >= 1.0 { 1.0 / scale } else { 1.0 };
        let mut taps = Vec::with_capacity(out_size);
        let mut float = Vec::new();
        let mut wt_max = 0.0f64;
        for i in 0..out_size {
            let center = scale * (i as f64 + 0.5);
            let xmin = ((center - support + 0.5) as i64).max(0);
            let xsize = ((center + support + 0.5) as i64).min(in_size as i64) - xmin;
            let xsize = xsize.clamp(0, max_taps as i64) as usize;
            let xmin = xmin as usize;
            let offset = float.len();
            let mut total = 0.0;
            for j in 0..xsize {
                let w = interp.eval((j as f64 + xmin as f64 - center + 0.5) * invscale);
                float.push(w);
                total += w;
            }
            if total != 0.0 {
                for w in &mut float[offset..] {
                    *w /= total;
                    wt_max = wt_max.max(*w);
                }
            }
            taps.push((xmin, offset, xsize));
        }
        let mut precision = 0u32;
        while precision < 22 {
            let next = (0.5 + wt_max * f64::from(1u32 << (precision + 1))) as i64;
            if next >= 1 << 15 {
                break;
            }
            precision += 1;
        }
        let unit = f64::from(1u32 << precision);
        let weights = float
            .iter()
            .map(|&w| {
                let v = w * unit;
                (if v < 0.0 { v - 0.5 } else { v + 0.5 }) as i16 as i32
            })
            .collect();
        Ok(AxisWeights {
            taps,
            weights,
            precision,
        })
    }

    fn round(&self) -> i32 {
        if self.precision == 0 {
            0
        } else {
            1 << (self.precision - 1)
        }
    }

    fn clip(&self, acc: i32) -> u8 {
        (acc >> self.precision).clamp(0, 255) as u8
    }
}

/// Resizes `image` to `width` x `height` as torchvision's antialiased `resize` of a `uint8`
/// CPU tensor does. The same size returns a copy. The output size is checked against
/// `limits` before anything is allocated.
pub fn resize_tv(
    image: &RgbImage,
    width: u32,
    height: u32,
    interp: TvInterpolation,
    limits: &Limits,
) -> Result<RgbImage> {
    if width == 0 || height == 0 || image.width == 0 || image.height == 0 {
        return Err(Error::invalid_argument(format!(
            "resize of a {}x{} image to {width}x{height}: sizes must be > 0",
            image.width, image.height
        )));
    }
    limits.check_image("the resized frame", u64::from(width), u64::from(height))?;
    let (in_w, in_h) = (image.width as usize, image.height as usize);
    let (out_w, out_h) = (width as usize, height as usize);
    let mut data = image.data.clone();
    let mut w = in_w;
    if out_w != in_w {
        let axis = AxisWeights::new(in_w, out_w, interp)?;
        let mut out = try_filled(out_w * in_h * 3, 0u8, "the resized frame")?;
        for y in 0..in_h {
            let src = &data[y * in_w * 3..(y + 1) * in_w * 3];
            let dst = &mut out[y * out_w * 3..(y + 1) * out_w * 3];
            for (x, px) in dst.chunks_exact_mut(3).enumerate() {
                let (first, off, n) = axis.taps[x];
                let k = &axis.weights[off..off + n];
                let mut acc = [axis.round(); 3];
                for (p, &c) in src[first * 3..(first + n) * 3].chunks_exact(3).zip(k) {
                    for ch in 0..3 {
                        acc[ch] += i32::from(p[ch]) * c;
                    }
                }
                for ch in 0..3 {
                    px[ch] = axis.clip(acc[ch]);
                }
            }
        }
        data = out;
        w = out_w;
    }
    if out_h != in_h {
        let axis = AxisWeights::new(in_h, out_h, interp)?;
        let stride = w * 3;
        let mut out = try_filled(stride * out_h, 0u8, "the resized frame")?;
        let mut acc = vec![0i32; stride];
        for (y, dst) in out.chunks_exact_mut(stride).enumerate() {
            let (first, off, n) = axis.taps[y];
            acc.fill(axis.round());
            for (j, &c) in axis.weights[off..off + n].iter().enumerate() {
                let src = &data[(first + j) * stride..(first + j + 1) * stride];
                for (a, &p) in acc.iter_mut().zip(src) {
                    *a += i32::from(p) * c;
                }
            }
            for (o, &a) in dst.iter_mut().zip(&acc) {
                *o = axis.clip(a);
            }
        }
        data = out;
    }
    RgbImage::new(width, height, data)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_size_is_a_copy_and_constants_stay() {
        let img = RgbImage::new(3, 2, (0..18).collect()).unwrap();
        let lim = Limits::default();
        let same = resize_tv(&img, 3, 2, TvInterpolation::Bicubic, &lim).unwrap();
        assert_eq!(same, img);
        let flat = RgbImage::new(7, 5, vec![200; 105]).unwrap();
        let out = resize_tv(&flat, 3, 11, TvInterpolation::Bicubic, &lim).unwrap();
        assert!(out.data.iter().all(|&v| v == 200));
    }

    /// Cases from scripts/gen_tv_resize_cases.py: torchvision's resize of uint8 tensors.
    #[test]
    fn matches_torchvision_corpus() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/tv_resize");
        let manifest: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(format!("{dir}/cases.json")).unwrap())
                .unwrap();
        let bin = std::fs::read(format!("{dir}/cases.bin")).unwrap();
        let cases = manifest["cases"].as_array().unwrap();
        assert!(cases.len() >= 20);
        let lim = Limits::default();
        let (mut total, mut off_by_one, mut worse) = (0usize, 0usize, 0usize);
        for case in cases {
            let u = |k: &str| case[k].as_u64().unwrap() as usize;
            let src = &bin[u("in_offset")..u("in_offset") + u("in_w") * u("in_h") * 3];
            let want = &bin[u("out_offset")..u("out_offset") + u("out_w") * u("out_h") * 3];
            let interp = match case["interp"].as_str().unwrap() {
                "bicubic" => TvInterpolation::Bicubic,
                "bilinear" => TvInterpolation::Bilinear,
                other => panic!("{other}"),
            };
            let img = RgbImage::new(u("in_w") as u32, u("in_h") as u32, src.to_vec()).unwrap();
            let got = resize_tv(&img, u("out_w") as u32, u("out_h") as u32, interp, &lim).unwrap();
            for (&a, &b) in got.data.iter().zip(want) {
                total += 1;
                match a.abs_diff(b) {
                    0 => {}
                    1 => off_by_one += 1,
                    _ => worse += 1,
                }
            }
        }
        assert_eq!(worse, 0, "values off by more than one level");
        assert_eq!(off_by_one, 0, "values off by one level out of {total}");
    }
}
