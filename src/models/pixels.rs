//! Between preprocessed [`Pixels`] and the towers, for every family: stacking a batch into one
//! tensor on the compute device, cutting images into patch rows (the patch convolution as a
//! matmul), and splitting a batched result per image.

use candle_core::{DType, Device, Tensor};

use crate::error::{Error, Result};
use crate::preprocess::Pixels;

/// Cuts `[batch, C, H, W]` into non-overlapping `p`x`p` patches, row-major over the patch
/// grid, each flattened in `(c, ky, kx)` order: `[batch, (H/p)*(W/p), C*p*p]`. Trailing
/// pixels that do not fill a patch are dropped, as a strided convolution does.
pub fn patchify(pixels: &Tensor, p: usize) -> Result<Tensor> {
    let (b, c, h, w) = pixels.dims4()?;
    let (gh, gw) = (h / p, w / p);
    let x = if gh * p != h || gw * p != w {
        pixels
            .narrow(2, 0, gh * p)?
            .narrow(3, 0, gw * p)?
            .contiguous()?
    } else {
        pixels.clone()
    };
    let x = x
        .reshape(vec![b, c, gh, p, gw, p])?
        .permute(vec![0, 2, 4, 1, 3, 5])?
        .contiguous()?
        .reshape((b, gh * gw, c * p * p))?;
    Ok(x)
}

/// Stacks same-shaped preprocessed images into one `[batch, ...]` tensor on `device`.
pub fn stack_pixels(batch: &[&Pixels], dtype: DType, device: &Device) -> Result<Tensor> {
    let first = batch
        .first()
        .ok_or_else(|| Error::invalid_argument("empty batch"))?;
    let mut shape = vec![batch.len()];
    shape.extend_from_slice(&first.shape);
    let mut data = Vec::with_capacity(batch.len() * first.data.len());
    for p in batch {
        if p.shape != first.shape {
            return Err(Error::invalid_argument(format!(
                "images of shapes {:?} and {:?} in one batch",
                first.shape, p.shape
            )));
        }
        data.extend_from_slice(&p.data);
    }
    to_compute(Tensor::from_vec(data, shape, &Device::Cpu)?, dtype, device)
}

/// A tensor built on the CPU, converted to the compute dtype and moved to the compute device
/// (each step skipped when it would do nothing).
pub fn to_compute(t: Tensor, dtype: DType, device: &Device) -> Result<Tensor> {
    let t = if t.dtype() == dtype {
        t
    } else {
        t.to_dtype(dtype)?
    };
    Ok(if device.is_cpu() {
        t
    } else {
        t.to_device(device)?
    })
}

/// Packs the patch rows of a batch of variable-resolution images (the Qwen layout: `[n, dim]`
/// rows per image, `grid` = merged `[t, rows, cols]` tokens) into one `[Σn, dim]` tensor on the
/// compute device, with each image's patch grid `[t, rows·merge, cols·merge]`.
pub fn pack_patch_rows(
    batch: &[&Pixels],
    merge: usize,
    dim: usize,
    dtype: DType,
    device: &Device,
) -> Result<(Tensor, Vec<[usize; 3]>)> {
    let mut grids = Vec::with_capacity(batch.len());
    let mut data = Vec::with_capacity(batch.iter().map(|p| p.data.len()).sum());
    for p in batch {
        let [t, r, c] = p.grid;
        let n = t * r * merge * c * merge;
        if p.shape != [n, dim] || p.data.len() != n * dim {
            return Err(Error::invalid_argument(format!(
                "pixels of shape {:?} (token grid {:?}) do not fit this model's [n, {dim}] patch rows",
                p.shape, p.grid
            )));
        }
        grids.push([t, r * merge, c * merge]);
        data.extend_from_slice(&p.data);
    }
    let n: usize = grids.iter().map(|[t, h, w]| t * h * w).sum();
    let x = to_compute(
        Tensor::from_vec(data, (n, dim), &Device::Cpu)?,
        dtype,
        device,
    )?;
    Ok((x, grids))
}

/// [`pack_patch_rows`] for families whose images are one frame each: the patch grids as
/// `(rows, cols)`; a grid of several frames or no patches is refused (`what`: "a SigLIP2
/// image").
pub fn pack_single_frames(
    batch: &[&Pixels],
    merge: usize,
    dim: usize,
    dtype: DType,
    device: &Device,
    what: &str,
) -> Result<(Tensor, Vec<(usize, usize)>)> {
    let (x, grids) = pack_patch_rows(batch, merge, dim, dtype, device)?;
    let grids = grids
        .iter()
        .map(|&[t, r, c]| {
            if t != 1 || r == 0 || c == 0 {
                return Err(Error::invalid_argument(format!(
                    "a patch grid of {t} x {r} x {c} is not {what}"
                )));
            }
            Ok((r, c))
        })
        .collect::<Result<_>>()?;
    Ok((x, grids))
}

/// Runs `run` over the frames of a batch of images whose pixels are `grid[0]` frames of
/// `frame` (`[C, H, W]`) each, e.g. tiles plus thumbnail or an image and its crops:
/// `per_call` frames at a time, in order, across image boundaries. `run` maps `[n, C, H, W]`
/// to `[n, tokens, D]`; each image gets its frames' rows as one `[frames * tokens, D]`
/// tensor (in the compute dtype, on the compute device).
pub fn forward_frames(
    batch: &[&Pixels],
    frame: [usize; 3],
    per_call: usize,
    dtype: DType,
    device: &Device,
    run: impl Fn(&Tensor) -> Result<Tensor>,
) -> Result<Vec<Tensor>> {
    let counts: Vec<usize> = batch.iter().map(|p| p.grid[0]).collect();
    forward_frame_counts(batch, &counts, frame, per_call, dtype, device, run)
}

/// [`forward_frames`] for images whose frame counts are `counts[i]` (families whose token
/// grid does not count the frames, e.g. LLaVA-NeXT's packed tiles).
pub fn forward_frame_counts(
    batch: &[&Pixels],
    counts: &[usize],
    frame: [usize; 3],
    per_call: usize,
    dtype: DType,
    device: &Device,
    run: impl Fn(&Tensor) -> Result<Tensor>,
) -> Result<Vec<Tensor>> {
    let frame_len: usize = frame.iter().product();
    let mut frames = Vec::with_capacity(batch.len());
    let mut data = Vec::with_capacity(batch.iter().map(|p| p.data.len()).sum());
    for (p, &f) in batch.iter().zip(counts) {
        if f == 0 || p.data.len() != f * frame_len {
            return Err(Error::invalid_argument(format!(
                "preprocessed image of shape {:?} does not hold {f} frames of {frame:?}",
                p.shape
            )));
        }
        data.extend_from_slice(&p.data);
        frames.push(f);
    }
    if frames.len() != batch.len() {
        return Err(Error::invalid_argument(
            "one frame count per image is needed",
        ));
    }
    let total: usize = frames.iter().sum();
    let [c, h, w] = frame;
    let all = Tensor::from_vec(data, (total, c, h, w), &Device::Cpu)?;
    let mut outs = Vec::new();
    let mut start = 0;
    while start < total {
        let n = per_call.max(1).min(total - start);
        let x = to_compute(all.narrow(0, start, n)?, dtype, device)?;
        outs.push(run(&x)?);
        start += n;
    }
    let out = Tensor::cat(&outs, 0)?;
    let (_, tokens, d) = out.dims3()?;
    let rows = out.reshape((total * tokens, d))?;
    split_rows(
        &rows,
        &frames.iter().map(|f| f * tokens).collect::<Vec<_>>(),
    )
}

/// Cuts `[Σk, D]` rows into consecutive per-image pieces of `counts[i]` rows.
pub fn split_rows(x: &Tensor, counts: &[usize]) -> Result<Vec<Tensor>> {
    let mut start = 0;
    counts
        .iter()
        .map(|&k| {
            let t = x.narrow(0, start, k)?;
            start += k;
            Ok(t)
        })
        .collect()
}

/// Splits a `[batch, N, D]` result into per-image tensors (in the compute dtype, on the
/// compute device).
pub fn unstack(x: &Tensor) -> Result<Vec<Tensor>> {
    (0..x.dim(0)?).map(|i| Ok(x.get(i)?)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patchify_matches_a_strided_convolution() {
        // 1 image, 2 channels, 4x6 pixels, patch 2 → 2x3 grid, 8 values per patch.
        let data: Vec<f32> = (0..48).map(|v| v as f32).collect();
        let x = Tensor::from_vec(data, (1, 2, 4, 6), &Device::Cpu).unwrap();
        let p = patchify(&x, 2).unwrap();
        assert_eq!(p.dims(), &[1, 6, 8]);
        let rows = p.get(0).unwrap().to_vec2::<f32>().unwrap();
        // Patch (0, 1): channel 0 rows 0-1 cols 2-3, then channel 1.
        assert_eq!(rows[1], vec![2., 3., 8., 9., 26., 27., 32., 33.]);
        // Patch (1, 2): rows 2-3, cols 4-5.
        assert_eq!(rows[5], vec![16., 17., 22., 23., 40., 41., 46., 47.]);
        // Trailing pixels are dropped.
        let q = patchify(&x, 4).unwrap();
        assert_eq!(q.dims(), &[1, 1, 32]);
    }
}
