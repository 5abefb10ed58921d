//! `torch.nn.functional.interpolate(..., mode="bilinear", align_corners=False,
//! antialias=True)` on a table of vectors, as the CPU kernel of PyTorch computes it in float32
//! (`UpSampleKernel.cpp`: `_separable_upsample_generic_Nd_kernel_impl` with
//! `HelperInterpLinear`):
//!
//! - separable: the width is resampled first (into a float32 intermediate), then the height;
//!   an axis whose size does not change is copied as is;
//! - per axis, `scale = in / out` (float32), `support = scale` when downsampling, else 1;
//!   output `i` has `center = scale · (i + 0.5)`, reads inputs `xmin .. xmin + xsize` with
//!   `xmin = max(trunc(center − support + 0.5), 0)`, `xsize = min(trunc(center + support +
//!   0.5), in) − xmin`, each weighted by the triangle filter `max(0, 1 − |(j + xmin − center +
//!   0.5) · invscale|)` (`invscale = 1 / scale` when downsampling, else 1), the weights divided
//!   by their sum;
//! - the weighted sum runs over the taps in order, `out = t₀w₀`, then `out = fma(tⱼ, wⱼ,
//!   out)` (the build of torch's kernel contracts `output += t * wts` into fused
//!   multiply-adds: with them 10 of the 19 torch cases come out bit-equal, without 3; the
//!   others are at most an ulp apart), in float32.
//!
//! The mixed float32 / double steps of the C++ (`center` is `float(double(scale) · (i +
//! 0.5))`, the filter argument is computed in double from a float32 difference) are reproduced
//! as written there.
//!
//! One quirk of that kernel is reproduced too: when the output is one column wide and the
//! height changes, every output row is a copy of output row 0 (the vertical pass reads the
//! first row's taps for all rows; torch 2.15 on the CPU, checked by the test cases). SigLIP2
//! meets it for an image one patch wide: all its patches then get the same position vector
//! in the reference, and here.
//!
//! SigLIP2 NaFlex resizes its learned position table to each image's patch grid this way
//! (`Siglip2VisionEmbeddings.resize_positional_embeddings`, on the CPU in float32).

use crate::models::grid_sample::GridTable;

/// The taps of one output position: the first input index and the normalized weights.
struct Taps {
    start: usize,
    weights: Vec<f32>,
}

/// The triangle filter (`HelperInterpLinear::aa_filter`).
fn triangle(x: f32) -> f32 {
    let x = x.abs();
    if x < 1.0 {
        (1.0 - f64::from(x)) as f32
    } else {
        0.0
    }
}

/// torch's `_compute_indices_min_size_weights_aa` for every output index of an axis resampled
/// from `input` to `output` entries (both non-zero).
fn axis_taps(input: usize, output: usize) -> Vec<Taps> {
    // area_pixel_compute_scale<float> without a scale factor: float(in) / out.
    let scale = input as f32 / output as f32;
    // interp_size 2 (linear): support = (2 * 0.5) * scale when downsampling, else 2 * 0.5.
    let support: f32 = if scale >= 1.0 { scale } else { 1.0 };
    let max_taps = (f64::from(support).ceil() as usize) * 2 + 1;
    let invscale: f32 = if scale >= 1.0 {
        (1.0 / f64::from(scale)) as f32
    } else {
        1.0
    };
    (0..output)
        .map(|i| {
            let center = (f64::from(scale) * (i as f64 + 0.5)) as f32;
            // static_cast<int64_t> truncates toward zero.
            let lo = (f64::from(center - support) + 0.5) as i64;
            let hi = (f64::from(center + support) + 0.5) as i64;
            let start = lo.max(0);
            let size = (hi.min(input as i64) - start).clamp(0, max_taps as i64);
            let mut weights: Vec<f32> = (0..size)
                .map(|j| {
                    let d = (j + start) as f32 - center;
                    triangle(((f64::from(d) + 0.5) * f64::from(invscale)) as f32)
                })
                .collect();
            let total: f32 = weights.iter().fold(0.0, |a, &w| a + w);
            if total != 0.0 {
                for w in weights.iter_mut() {
                    *w /= total;
                }
            }
            Taps {
                start: start as usize,
                weights,
            }
        })
        .collect()
}

/// Resamples `table` (`[height, width, channels]`, channels last) to `out_height` x
/// `out_width` as `F.interpolate(table.permute(2, 0, 1)[None], size=(out_height, out_width),
/// mode="bilinear", align_corners=False, antialias=True)` does on the CPU in float32.
/// Returns `[out_height, out_width, channels]` row-major (empty when an output side is 0).
pub fn interpolate_bilinear_aa(table: GridTable, out_height: usize, out_width: usize) -> Vec<f32> {
    let GridTable {
        data,
        height,
        width,
        channels,
    } = table;
    assert_eq!(data.len(), height * width * channels, "interpolate table");
    if out_height == 0 || out_width == 0 || channels == 0 {
        return Vec::new();
    }
    assert!(height > 0 && width > 0, "interpolate from an empty table");
    // Horizontal pass: [height, out_width, channels].
    let horizontal = if out_width == width {
        data.to_vec()
    } else {
        let taps = axis_taps(width, out_width);
        let mut out = vec![0f32; height * out_width * channels];
        for y in 0..height {
            let row = &data[y * width * channels..(y + 1) * width * channels];
            for (x, t) in taps.iter().enumerate() {
                let dst = &mut out[(y * out_width + x) * channels..][..channels];
                weighted_sum(row, t, channels, dst);
            }
        }
        out
    };
    // Vertical pass: [out_height, out_width, channels]; a whole row is one vector.
    if out_height == height {
        return horizontal;
    }
    let row_len = out_width * channels;
    let taps = axis_taps(height, out_height);
    let mut out = vec![0f32; out_height * row_len];
    for (y, t) in taps.iter().enumerate() {
        if out_width == 1 && y > 0 {
            // torch's CPU kernel: a one-column output repeats row 0 (see the module doc).
            out.copy_within(0..row_len, y * row_len);
            continue;
        }
        weighted_sum(&horizontal, t, row_len, &mut out[y * row_len..][..row_len]);
    }
    out
}

/// `dst = Σ_j weights[j] · src[(start + j) · stride ..][..dst.len()]`, term by term in order
/// (`interpolate_aa_single_dim`: the first product, then fused multiply-adds of the others).
fn weighted_sum(src: &[f32], taps: &Taps, stride: usize, dst: &mut [f32]) {
    let n = dst.len();
    for (j, &w) in taps.weights.iter().enumerate() {
        let s = &src[(taps.start + j) * stride..][..n];
        if j == 0 {
            for (d, &v) in dst.iter_mut().zip(s) {
                *d = v * w;
            }
        } else {
            for (d, &v) in dst.iter_mut().zip(s) {
                *d = v.mul_add(w, *d);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(serde::Deserialize)]
    struct Case {
        name: String,
        height: usize,
        width: usize,
        channels: usize,
        out_height: usize,
        out_width: usize,
        table: Vec<f32>,
        expected: Vec<f32>,
    }

    #[derive(serde::Deserialize)]
    struct Cases {
        cases: Vec<Case>,
    }

    /// Every case of `tests/fixtures/resample/interpolate_bilinear_aa.json` (torch's CPU
    /// `F.interpolate(mode="bilinear", align_corners=False, antialias=True)`, made by
    /// `scripts/gen_interpolate_aa_cases.py`): odd table and output sizes, up- and
    /// downsampling on each axis, one axis kept, extreme ratios, one-column outputs (torch
    /// repeats row 0 there), SigLIP2's 16x16 table to NaFlex patch grids.
    #[test]
    fn matches_torch_interpolate() {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/resample/interpolate_bilinear_aa.json"
        );
        let cases: Cases = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
        assert!(cases.cases.len() >= 10);
        let (mut worst, mut exact) = (0f32, 0usize);
        for c in &cases.cases {
            let table = GridTable {
                data: &c.table,
                height: c.height,
                width: c.width,
                channels: c.channels,
            };
            let got = interpolate_bilinear_aa(table, c.out_height, c.out_width);
            assert_eq!(got.len(), c.expected.len(), "{}", c.name);
            for (i, (g, w)) in got.iter().zip(&c.expected).enumerate() {
                // torch's vectorized loops may contract multiply-adds: a few ulps apart.
                let d = (g - w).abs() / (1.0 + w.abs());
                worst = worst.max(d);
                assert!(d <= 1e-6, "{} value {i}: {g} vs torch {w}", c.name);
            }
            exact += (got == c.expected) as usize;
        }
        println!(
            "{} of {} cases bit-equal to torch, worst relative difference {worst:.2e}",
            exact,
            cases.cases.len()
        );
    }

    #[test]
    fn same_size_is_the_identity_and_weights_sum_to_one() {
        let data: Vec<f32> = (0..3 * 5 * 2).map(|v| v as f32 * 0.37 - 4.0).collect();
        let table = GridTable {
            data: &data,
            height: 3,
            width: 5,
            channels: 2,
        };
        assert_eq!(interpolate_bilinear_aa(table, 3, 5), data);
        for (i, o) in [(16, 7), (16, 33), (5, 1), (1, 9), (13, 13)] {
            for t in axis_taps(i, o) {
                let s: f32 = t.weights.iter().sum();
                assert!((s - 1.0).abs() < 1e-6, "{i} -> {o}: {s}");
                assert!(t.start + t.weights.len() <= i);
            }
        }
        // A constant table stays constant whatever the size.
        let ones = vec![1.5f32; 4 * 4];
        let t = GridTable {
            data: &ones,
            height: 4,
            width: 4,
            channels: 1,
        };
        for v in interpolate_bilinear_aa(t, 7, 3) {
            assert!((v - 1.5).abs() < 1e-6);
        }
        assert!(interpolate_bilinear_aa(t, 0, 3).is_empty());
    }
}
