//! Fused elementwise passes on tensors: on the CPU in f32 they run the vectorized kernels of
//! [`crate::models::kernels`] split across the calling thread's rayon pool (the model's pool
//! inside a forward pass), in place where the input is a fresh matmul result; on any other
//! device or dtype they fall back to the equivalent candle ops, so results never depend on
//! which path ran beyond f32 rounding.
//!
//! One pass instead of three (bias add, activation, residual add) saves memory traffic and
//! keeps candle's global elementwise thread pool (which ignores the model's thread count and
//! is shared by every model in the process) out of the forward pass.

use candle_core::{
    CpuStorage, CustomOp1, CustomOp3, DType, InplaceOp1, Layout, Shape, Storage, Tensor,
};
use rayon::prelude::*;

use crate::error::Result;
use crate::kernels::{self as simd, PackedB};
use crate::models::activation::Activation;
use crate::models::kernels;

/// Elements per parallel task: large enough to amortize scheduling, small enough to balance.
const TASK_ELEMENTS: usize = 16 * 1024;

/// Rows per task for rows of `width` elements.
fn rows_per_task(width: usize) -> usize {
    (TASK_ELEMENTS / width.max(1)).max(1)
}

/// Whether `t` can take the CPU kernels: f32, on the CPU, contiguous.
fn cpu_f32(t: &Tensor) -> bool {
    t.device().is_cpu() && t.dtype() == DType::F32 && t.is_contiguous()
}

/// Runs `f` on the f32 slice behind a contiguous CPU tensor.
fn with_slice<R>(t: &Tensor, f: impl FnOnce(&[f32]) -> R) -> candle_core::Result<R> {
    let (storage, layout) = t.storage_and_layout();
    let (start, end) = layout
        .contiguous_offsets()
        .ok_or_else(|| candle_core::Error::Msg("fused op: operand is not contiguous".into()))?;
    match &*storage {
        Storage::Cpu(CpuStorage::F32(v)) => Ok(f(&v[start..end])),
        _ => candle_core::bail!("fused op: operand is not an f32 CPU tensor"),
    }
}

/// The contiguous f32 values of a custom op's operand.
fn f32_values<'a>(s: &'a CpuStorage, l: &Layout, op: &str) -> candle_core::Result<&'a [f32]> {
    let CpuStorage::F32(data) = s else {
        candle_core::bail!("{op}: operand is not f32");
    };
    let (start, end) = l
        .contiguous_offsets()
        .ok_or_else(|| candle_core::Error::Msg(format!("{op}: operand is not contiguous")))?;
    Ok(&data[start..end])
}

/// [`f32_values`] of an in-place op's output.
fn f32_values_mut<'a>(
    s: &'a mut CpuStorage,
    l: &Layout,
    op: &str,
) -> candle_core::Result<&'a mut [f32]> {
    let CpuStorage::F32(data) = s else {
        candle_core::bail!("{op}: output is not f32");
    };
    let (start, end) = l
        .contiguous_offsets()
        .ok_or_else(|| candle_core::Error::Msg(format!("{op}: output is not contiguous")))?;
    Ok(&mut data[start..end])
}

/// `y ← act(y + bias) + residual`, written into `y`'s own storage.
struct Epilogue<'a> {
    width: usize,
    bias: Option<&'a Tensor>,
    act: Option<Activation>,
    residual: Option<&'a Tensor>,
}

impl Epilogue<'_> {
    fn run(&self, y: &mut [f32], bias: Option<&[f32]>, residual: Option<&[f32]>) {
        let chunk = rows_per_task(self.width) * self.width;
        y.par_chunks_mut(chunk).enumerate().for_each(|(i, part)| {
            let r = residual.map(|r| &r[i * chunk..i * chunk + part.len()]);
            kernels::epilogue(part, self.width, bias, self.act, r);
        });
    }
}

impl InplaceOp1 for Epilogue<'_> {
    fn name(&self) -> &'static str {
        "vtower-epilogue"
    }

    fn cpu_fwd(&self, storage: &mut CpuStorage, layout: &Layout) -> candle_core::Result<()> {
        let y = f32_values_mut(storage, layout, self.name())?;
        match (self.bias, self.residual) {
            (None, None) => {
                self.run(y, None, None);
                Ok(())
            }
            (Some(b), None) => with_slice(b, |b| self.run(y, Some(b), None)),
            (None, Some(r)) => with_slice(r, |r| self.run(y, None, Some(r))),
            (Some(b), Some(r)) => {
                with_slice(b, |b| with_slice(r, |r| self.run(y, Some(b), Some(r))))?
            }
        }
    }
}

/// `act(y + bias) + residual` over the last dimension of `y` (bias: `[width]`; residual:
/// `y`'s shape). `y` must be a tensor no one else holds (a fresh matmul result): on the CPU
/// in f32 it is overwritten and returned.
pub fn epilogue(
    y: Tensor,
    bias: Option<&Tensor>,
    act: Option<Activation>,
    residual: Option<&Tensor>,
) -> Result<Tensor> {
    if bias.is_none() && act.is_none() && residual.is_none() {
        return Ok(y);
    }
    let width = *y.dims().last().unwrap_or(&1);
    let fits = cpu_f32(&y)
        && width > 0
        && bias.is_none_or(|b| cpu_f32(b) && b.dims() == [width])
        && residual.is_none_or(|r| cpu_f32(r) && r.dims() == y.dims());
    if fits {
        y.inplace_op1(&Epilogue {
            width,
            bias,
            act,
            residual,
        })?;
        return Ok(y);
    }
    let mut y = y;
    if let Some(b) = bias {
        y = y.broadcast_add(b)?;
    }
    if let Some(a) = act {
        y = a.forward(&y)?;
    }
    if let Some(r) = residual {
        y = (y + r)?;
    }
    Ok(y)
}

/// `act(gate) * up` for `gu` `[.., 2 * hidden]` holding gate then up.
struct ActMul {
    hidden: usize,
    act: Activation,
}

impl CustomOp1 for ActMul {
    fn name(&self) -> &'static str {
        "vtower-act-mul"
    }

    fn cpu_fwd(
        &self,
        storage: &CpuStorage,
        layout: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let gu = f32_values(storage, layout, self.name())?;
        let h = self.hidden;
        let rows = gu.len() / (2 * h);
        let mut out = vec![0f32; rows * h];
        let per = rows_per_task(2 * h);
        out.par_chunks_mut(per * h)
            .zip(gu.par_chunks(per * 2 * h))
            .for_each(|(o, g)| kernels::act_mul(g, o, h, self.act));
        let mut dims = layout.shape().dims().to_vec();
        *dims.last_mut().expect("rank ≥ 1") = h;
        Ok((CpuStorage::F32(out), Shape::from(dims)))
    }
}

/// The middle of a gated MLP: `act(gu[.., :hidden]) * gu[.., hidden:]`.
pub fn act_mul(gu: &Tensor, hidden: usize, act: Activation) -> Result<Tensor> {
    let width = *gu.dims().last().unwrap_or(&0);
    if cpu_f32(gu) && hidden > 0 && width == 2 * hidden {
        return Ok(gu.apply_op1_no_bwd(&ActMul { hidden, act })?);
    }
    let gate = gu.narrow(candle_core::D::Minus1, 0, hidden)?;
    let up = gu.narrow(candle_core::D::Minus1, hidden, hidden)?;
    Ok((act.forward(&gate)? * up)?)
}

/// [`act_mul`] with its inputs clamped first (GLM-5.x Next's `swiglu_limit`): the gate
/// `gate.clamp(max=limit)`, the up projection `up.clamp(-limit, limit)`, in the tensor's dtype.
pub fn act_mul_clamped(gu: &Tensor, hidden: usize, act: Activation, limit: f64) -> Result<Tensor> {
    let gate = gu
        .narrow(candle_core::D::Minus1, 0, hidden)?
        .minimum(limit)?;
    let up = gu
        .narrow(candle_core::D::Minus1, hidden, hidden)?
        .clamp(-limit, limit)?;
    Ok((act.forward(&gate)? * up)?)
}

/// Row softmax of `scale · x`, in place.
struct ScaledSoftmax {
    scale: f32,
}

impl InplaceOp1 for ScaledSoftmax {
    fn name(&self) -> &'static str {
        "vtower-scaled-softmax"
    }

    fn cpu_fwd(&self, storage: &mut CpuStorage, layout: &Layout) -> candle_core::Result<()> {
        let width = *layout.shape().dims().last().unwrap_or(&1);
        f32_values_mut(storage, layout, self.name())?
            .par_chunks_mut(rows_per_task(width) * width)
            .for_each(|rows| kernels::softmax_rows(rows, width, self.scale));
        Ok(())
    }
}

/// `softmax(scores * scale)` over the last dimension, accumulated in f32 whatever the dtype.
/// `scores` must be a tensor no one else holds (a fresh matmul result): on the CPU in f32 it
/// is overwritten and returned.
pub fn scaled_softmax(scores: Tensor, scale: f64) -> Result<Tensor> {
    if cpu_f32(&scores) && scores.dims().last().is_some_and(|&w| w > 0) {
        scores.inplace_op1(&ScaledSoftmax {
            scale: scale as f32,
        })?;
        return Ok(scores);
    }
    let dtype = scores.dtype();
    let s = (scores.to_dtype(DType::F32)? * scale)?;
    Ok(candle_nn::ops::softmax_last_dim(&s)?.to_dtype(dtype)?)
}

/// `x·cos + rotate_half(x)·sin` for `x` `[tokens, heads, head_dim]`.
struct RotateHalfRotary;

impl CustomOp3 for RotateHalfRotary {
    fn name(&self) -> &'static str {
        "vtower-rotate-half-rotary"
    }

    fn cpu_fwd(
        &self,
        x: &CpuStorage,
        xl: &Layout,
        cos: &CpuStorage,
        cl: &Layout,
        sin: &CpuStorage,
        sl: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let x = f32_values(x, xl, self.name())?;
        let cos = f32_values(cos, cl, self.name())?;
        let sin = f32_values(sin, sl, self.name())?;
        let (tokens, heads, head_dim) = xl.shape().dims3()?;
        let mut out = vec![0f32; x.len()];
        let per = rows_per_task(heads * head_dim);
        out.par_chunks_mut(per * heads * head_dim)
            .zip(x.par_chunks(per * heads * head_dim))
            .enumerate()
            .for_each(|(i, (o, xs))| {
                let t0 = i * per;
                let t1 = (t0 + per).min(tokens);
                kernels::rotate_half_rotary(
                    xs,
                    &cos[t0 * head_dim..t1 * head_dim],
                    &sin[t0 * head_dim..t1 * head_dim],
                    o,
                    heads,
                    head_dim,
                );
            });
        Ok((CpuStorage::F32(out), xl.shape().clone()))
    }
}

/// `x·cos + rotate_half(x)·sin` on the CPU in f32 for `x` `[tokens, heads, head_dim]` and
/// `cos`/`sin` holding `tokens × head_dim` values (`[tokens, 1, head_dim]` or
/// `[tokens, head_dim]`); `None` when the operands do not fit (the caller uses candle's ops).
pub fn rotate_half_rotary(x: &Tensor, cos: &Tensor, sin: &Tensor) -> Result<Option<Tensor>> {
    let Ok((tokens, _, head_dim)) = x.dims3() else {
        return Ok(None);
    };
    let table = |t: &Tensor| cpu_f32(t) && t.elem_count() == tokens * head_dim;
    if !(cpu_f32(x) && head_dim % 2 == 0 && table(cos) && table(sin)) {
        return Ok(None);
    }
    Ok(Some(x.apply_op3_no_bwd(cos, sin, &RotateHalfRotary)?))
}

/// A weight `W` `[out, in]` on the CPU (any float dtype) packed in bf16 for
/// [`crate::kernels::gemm`] (`B = Wᵀ`); bf16 values are kept as they are, others rounded.
pub fn pack_bf16_weight(w: &Tensor) -> Result<PackedB> {
    let (n, k) = w.dims2()?;
    if !w.device().is_cpu() {
        return Err(crate::error::Error::compute(
            "bf16-packed weights are for the CPU only",
        ));
    }
    let w = match w.dtype() {
        DType::BF16 | DType::F32 => w.contiguous()?,
        _ => w.to_dtype(DType::F32)?.contiguous()?,
    };
    let (storage, layout) = w.storage_and_layout();
    let (start, end) = layout
        .contiguous_offsets()
        .ok_or_else(|| candle_core::Error::Msg("pack: operand is not contiguous".into()))?;
    match &*storage {
        Storage::Cpu(CpuStorage::BF16(v)) => PackedB::from_nk_bf16(&v[start..end], n, k),
        Storage::Cpu(CpuStorage::F32(v)) => PackedB::from_nk_f32(&v[start..end], n, k),
        _ => Err(crate::error::Error::compute(
            "pack: unexpected weight storage",
        )),
    }
}

/// The weight `[out, in]` behind a packed `Wᵀ`, in f32.
pub fn unpack_bf16_weight(p: &PackedB) -> Result<Tensor> {
    let (k, n) = (p.k(), p.n());
    let mut w = crate::preprocess::limits::try_filled(n * k, 0f32, "a weight")?;
    for (nn, row) in w.chunks_exact_mut(k.max(1)).enumerate().take(n) {
        for (kk, v) in row.iter_mut().enumerate() {
            *v = p.get(kk, nn).to_f32();
        }
    }
    Ok(Tensor::from_vec(w, (n, k), &candle_core::Device::Cpu)?)
}

/// `x · B` for `x` `[rows, k]` on the CPU (converted to f32 first if needed; rounded to bf16
/// by the kernel) and a packed bf16 `B` `[k, n]`: an f32 `[rows, n]` tensor, computed on the
/// calling thread's rayon pool.
pub fn matmul_bf16(x: &Tensor, b: &PackedB) -> Result<Tensor> {
    let (rows, k) = x.dims2()?;
    if k != b.k() {
        return Err(crate::error::Error::compute(format!(
            "matmul: input width {k}, weight expects {}",
            b.k()
        )));
    }
    let x = if x.dtype() == DType::F32 {
        x.contiguous()?
    } else {
        x.to_dtype(DType::F32)?.contiguous()?
    };
    let mut out = crate::preprocess::limits::try_filled_par(rows * b.n(), 0f32, "a matmul output")?;
    with_slice(&x, |a| simd::gemm(a, rows, b, &mut out))??;
    Ok(Tensor::from_vec(
        out,
        (rows, b.n()),
        &candle_core::Device::Cpu,
    )?)
}

/// Side of the square tiles a transpose copies at a time (each tile's rows and columns stay
/// in the caches).
const TRANSPOSE_TILE: usize = 32;

/// `src` `[rows, cols]` transposed into `dst` `[cols, rows]`, in tiles, split into blocks of
/// output rows across the calling thread's rayon pool.
fn transpose_into<T: Copy + Send + Sync>(src: &[T], rows: usize, cols: usize, dst: &mut [T]) {
    debug_assert_eq!(src.len(), rows * cols);
    debug_assert_eq!(dst.len(), rows * cols);
    if rows == 0 || cols == 0 {
        return;
    }
    dst.par_chunks_mut(TRANSPOSE_TILE * rows)
        .enumerate()
        .for_each(|(block, out)| {
            let c0 = block * TRANSPOSE_TILE;
            let width = out.len() / rows;
            for r0 in (0..rows).step_by(TRANSPOSE_TILE) {
                let r1 = (r0 + TRANSPOSE_TILE).min(rows);
                for dc in 0..width {
                    let line = &mut out[dc * rows..(dc + 1) * rows];
                    for r in r0..r1 {
                        line[r] = src[r * cols + c0 + dc];
                    }
                }
            }
        });
}

/// The transpose of a 2-D tensor as a new contiguous tensor: on the CPU (f32, bf16, f16) a
/// tiled copy on the calling thread's pool, which for weights of real size is many times
/// faster than candle's single-threaded strided copy (`t().contiguous()`); elsewhere that
/// copy. The values are the same either way.
pub fn transpose_2d(t: &Tensor) -> Result<Tensor> {
    let (rows, cols) = t.dims2()?;
    if !t.device().is_cpu() || !t.is_contiguous() {
        return Ok(t.t()?.contiguous()?);
    }
    let (storage, layout) = t.storage_and_layout();
    let (start, end) = layout
        .contiguous_offsets()
        .ok_or_else(|| candle_core::Error::Msg("transpose: operand is not contiguous".into()))?;
    fn run<T: candle_core::WithDType + Default + Send + Sync>(
        src: &[T],
        rows: usize,
        cols: usize,
    ) -> Result<Tensor> {
        let mut out = crate::preprocess::limits::try_filled(src.len(), T::default(), "a weight")?;
        transpose_into(src, rows, cols, &mut out);
        Ok(Tensor::from_vec(
            out,
            (cols, rows),
            &candle_core::Device::Cpu,
        )?)
    }
    match &*storage {
        Storage::Cpu(CpuStorage::F32(v)) => run(&v[start..end], rows, cols),
        Storage::Cpu(CpuStorage::BF16(v)) => run(&v[start..end], rows, cols),
        Storage::Cpu(CpuStorage::F16(v)) => run(&v[start..end], rows, cols),
        _ => Ok(t.t()?.contiguous()?),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn randn(shape: &[usize], seed: u64) -> Tensor {
        crate::models::testing::uniform(shape, seed, 3.0)
    }

    fn max_rel(a: &Tensor, b: &Tensor) -> f32 {
        let d = (a - b).unwrap().abs().unwrap().max_all().unwrap();
        let m = b.abs().unwrap().max_all().unwrap();
        (d / m).unwrap().to_scalar::<f32>().unwrap()
    }

    #[test]
    fn tiled_transpose_equals_candles_strided_copy() {
        for (rows, cols) in [
            (1, 1),
            (1, 70),
            (70, 1),
            (31, 33),
            (64, 32),
            (97, 130),
            (0, 5),
        ] {
            let t = randn(&[rows.max(1), cols], 7).narrow(0, 0, rows).unwrap();
            for dtype in [DType::F32, DType::BF16, DType::F16] {
                let t = t.to_dtype(dtype).unwrap().contiguous().unwrap();
                let want = t.t().unwrap().contiguous().unwrap();
                let got = transpose_2d(&t).unwrap();
                assert_eq!(got.dims(), want.dims(), "{rows}x{cols} {dtype:?}");
                assert!(got.is_contiguous());
                let (g, w) = (
                    got.to_dtype(DType::F32).unwrap().flatten_all().unwrap(),
                    want.to_dtype(DType::F32).unwrap().flatten_all().unwrap(),
                );
                assert_eq!(
                    g.to_vec1::<f32>().unwrap(),
                    w.to_vec1::<f32>().unwrap(),
                    "{rows}x{cols} {dtype:?}"
                );
            }
        }
    }

    /// The fused CPU path against candle's ops on the same values (the fallback path), over
    /// sizes that span several parallel tasks.
    #[test]
    fn fused_ops_equal_the_unfused_candle_ops() {
        let (rows, width) = (300, 97);
        let bias = randn(&[width], 1);
        let residual = randn(&[rows, width], 2);
        for act in [
            None,
            Some(Activation::GeluTanh),
            Some(Activation::GeluErf),
            Some(Activation::QuickGelu),
            Some(Activation::Silu),
        ] {
            let y = randn(&[rows, width], 3);
            let mut want = y.broadcast_add(&bias).unwrap();
            if let Some(a) = act {
                want = a.forward(&want).unwrap();
            }
            let want = (want + &residual).unwrap();
            let got = epilogue(y.copy().unwrap(), Some(&bias), act, Some(&residual)).unwrap();
            assert!(max_rel(&got, &want) < 1e-6, "{act:?}");
        }

        let gu = randn(&[rows, 2 * width], 4);
        for act in [Activation::GeluTanh, Activation::Silu] {
            let gate = gu.narrow(1, 0, width).unwrap();
            let up = gu.narrow(1, width, width).unwrap();
            let want = (act.forward(&gate).unwrap() * up).unwrap();
            assert!(max_rel(&act_mul(&gu, width, act).unwrap(), &want) < 1e-6);
        }

        let scores = randn(&[4, 50, 333], 5);
        let want = candle_nn::ops::softmax_last_dim(&(&scores * 0.3).unwrap()).unwrap();
        let got = scaled_softmax(scores.copy().unwrap(), 0.3).unwrap();
        assert!(max_rel(&got, &want) < 1e-6);
    }

    #[test]
    fn other_dtypes_take_the_candle_path() {
        let y = randn(&[8, 16], 6).to_dtype(DType::BF16).unwrap();
        let bias = randn(&[16], 7).to_dtype(DType::BF16).unwrap();
        let got = epilogue(y.clone(), Some(&bias), Some(Activation::Silu), None).unwrap();
        let want = y.broadcast_add(&bias).unwrap().silu().unwrap();
        assert_eq!(
            got.to_dtype(DType::F32).unwrap().to_vec2::<f32>().unwrap(),
            want.to_dtype(DType::F32).unwrap().to_vec2::<f32>().unwrap()
        );
    }
}
