//! A square learned position table resampled bilinearly to each image's patch grid as
//! transformers' `get_vision_interpolation_indices_and_weights(mode="bilinear")` computes it
//! (`vision_utils.py`): per axis, the source coordinate of target index `i` on an axis of
//! `size` is `i · (side − 1) / max(size − 1, 1)` (`align_corners`) or `(i + 0.5) · side / size
//! − 0.5` (not), in f32; the taps `floor` and `floor + 1` are clamped into the table (border)
//! and weighted `max(1 − |src − tap|, 0)`; the four 2-D taps are the products, gathered and
//! summed in f32.
//!
//! Qwen3-VL / Qwen3.5 (align_corners, patches in merge-block order) and PaddleOCR-VL
//! (align_corners false) resample their tables this way.

use candle_core::{DType, Device, Tensor};

use crate::error::Result;

/// Patch `(row, col)` of the patches of a `gh x gw` grid in merge-block order (block row,
/// block column, row in block, column in block); `merge` 1 is raster order.
pub fn merge_block_positions(gh: usize, gw: usize, merge: usize) -> Vec<(usize, usize)> {
    let unit = merge * merge;
    let wm = gw / merge.max(1);
    (0..gh * gw)
        .map(|i| {
            let (b, u) = (i / unit, i % unit);
            ((b / wm) * merge + u / merge, (b % wm) * merge + u % merge)
        })
        .collect()
}

/// Per-axis taps of `_interpolation_axis_taps_weights` (bilinear, border): for target index
/// `i` on an axis of `size`, the two source rows and their weights, in f32 as torch computes
/// them.
fn axis_taps(i: usize, size: usize, side: usize, align_corners: bool) -> [(usize, f32); 2] {
    let src = if align_corners {
        (i as f32 * (side - 1) as f32) / (size.saturating_sub(1).max(1)) as f32
    } else {
        (i as f32 + 0.5) * side as f32 / size as f32 - 0.5
    };
    let floor = src.floor();
    let mut out = [(0usize, 0f32); 2];
    for (o, slot) in out.iter_mut().enumerate() {
        let raw = floor + o as f32;
        let tap = (raw.max(0.0) as usize).min(side - 1);
        let distance = (src - floor - o as f32).abs();
        *slot = (tap, (1.0 - distance).max(0.0));
    }
    out
}

/// Gather indices (4 per patch) into the flattened `side x side` table and their weights,
/// for the patches of a `gh x gw` grid in merge-block order ([`merge_block_positions`]).
pub fn bilinear_taps(
    gh: usize,
    gw: usize,
    merge: usize,
    side: usize,
    align_corners: bool,
) -> (Vec<u32>, Vec<f32>) {
    let n = gh * gw;
    let mut idx = Vec::with_capacity(4 * n);
    let mut wts = Vec::with_capacity(4 * n);
    for (row, col) in merge_block_positions(gh, gw, merge) {
        let h = axis_taps(row, gh, side, align_corners);
        let w = axis_taps(col, gw, side, align_corners);
        for (hr, hw) in h {
            for (wc, ww) in w {
                idx.push((hr * side + wc) as u32);
                wts.push(hw * ww);
            }
        }
    }
    (idx, wts)
}

/// The position embeddings of a batch with patch grids `grids` (`[t, gh, gw]`, each frame
/// repeated `t` times): `table` (`[side², dim]`, f32) resampled to every grid, `[n, dim]` f32
/// in the packed order ([`bilinear_taps`]).
pub fn resample_table(
    table: &Tensor,
    grids: &[[usize; 3]],
    merge: usize,
    side: usize,
    align_corners: bool,
) -> Result<Tensor> {
    let dim = table.dim(1)?;
    let device = table.device();
    let (mut idx, mut wts) = (Vec::new(), Vec::new());
    for &[t, gh, gw] in grids {
        let (i, w) = bilinear_taps(gh, gw, merge, side, align_corners);
        for _ in 0..t {
            idx.extend_from_slice(&i);
            wts.extend_from_slice(&w);
        }
    }
    let n = idx.len() / 4;
    let idx = Tensor::from_vec(idx, 4 * n, &Device::Cpu)?.to_device(device)?;
    let wts = Tensor::from_vec(wts, (4 * n, 1), &Device::Cpu)?.to_device(device)?;
    let rows = table
        .to_dtype(DType::F32)?
        .index_select(&idx, 0)?
        .broadcast_mul(&wts)?;
    Ok(rows.reshape((n, 4, dim))?.sum(1)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bilinear_taps_match_torch_align_corners() {
        // Identity when the grid equals the table: one tap of weight 1 per axis.
        for i in 0..6 {
            let [(a, wa), (b, wb)] = axis_taps(i, 6, 6, true);
            assert_eq!((a, wa), (i, 1.0));
            assert_eq!(wb, 0.0);
            assert_eq!(b, (i + 1).min(5));
        }
        // Upsampling 2 -> 4 (align_corners): src = i * 3 (endpoints map to 0 and side - 1).
        assert_eq!(axis_taps(1, 2, 4, true), [(3, 1.0), (3, 0.0)]);
        // Downsampling 6 -> 4: src = i * 5 / 3; i = 1 -> 1.6667: taps 1 and 2.
        let [(a, wa), (b, wb)] = axis_taps(1, 4, 6, true);
        assert_eq!((a, b), (1, 2));
        assert!((wa - 1.0 / 3.0).abs() < 1e-6 && (wb - 2.0 / 3.0).abs() < 1e-6);
        // Weights of each patch sum to 1; indices follow the merge-block order.
        let (idx, w) = bilinear_taps(4, 6, 2, 5, true);
        assert_eq!(idx.len(), 4 * 24);
        for k in 0..24 {
            let s: f32 = w[4 * k..4 * k + 4].iter().sum();
            assert!((s - 1.0).abs() < 1e-6);
        }
        // Patch 2 of the first block is (row 1, col 0): src row = 1 * 4 / 3.
        assert_eq!(idx[8], 5); // floor(1.333) = 1 -> row 1, col 0 -> 1 * 5 + 0
    }

    #[test]
    fn bilinear_taps_match_torch_half_pixel() {
        // Identity at the table's own size.
        for i in 0..5 {
            assert_eq!(axis_taps(i, 5, 5, false)[0], (i, 1.0));
        }
        // 4 -> 2 (downsampling): src = (i + 0.5) * 2 - 0.5 = 0.5, 2.5.
        assert_eq!(axis_taps(0, 2, 4, false), [(0, 0.5), (1, 0.5)]);
        assert_eq!(axis_taps(1, 2, 4, false), [(2, 0.5), (3, 0.5)]);
        // 2 -> 4 (upsampling): src(0) = -0.25: both taps clamp to row 0 (weights 0.25, 0.75);
        // src(3) = 1.25: taps 1 and 2 -> 2 clamps to 1.
        assert_eq!(axis_taps(0, 4, 2, false), [(0, 0.25), (0, 0.75)]);
        assert_eq!(axis_taps(3, 4, 2, false), [(1, 0.75), (1, 0.25)]);
        // Raster order with merge 1.
        assert_eq!(merge_block_positions(2, 3, 1)[4], (1, 1));
        assert_eq!(merge_block_positions(2, 4, 2)[4], (0, 2));
    }
}
