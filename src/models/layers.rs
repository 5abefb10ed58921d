//! Building blocks shared by the vision towers: weight loading with shape checks, linear
//! layers, norms (LayerNorm, Llama-style RMSNorm), gated MLPs and multi-head
//! attention (plain, or over several images packed into one sequence, with optional rotary
//! embeddings), written to match PyTorch's eager reference arithmetic.

use std::sync::Arc;

use candle_core::{DType, Device, Tensor, D};
use rayon::prelude::*;

use crate::error::{Error, Result};
use crate::kernels::PackedB;
use crate::models::activation::Activation;
use crate::models::fused;
use crate::models::rope::Rotary;
use crate::weights::Weights;

/// Loads tensors under a name prefix, checking shapes and converting to the compute dtype.
#[derive(Clone)]
pub struct Loader<'a> {
    weights: &'a Weights,
    prefix: String,
    dtype: DType,
    device: Device,
}

impl<'a> Loader<'a> {
    pub fn new(weights: &'a Weights, prefix: &str, dtype: DType, device: &Device) -> Loader<'a> {
        Loader {
            weights,
            prefix: prefix.to_string(),
            dtype,
            device: device.clone(),
        }
    }

    /// A loader for the sub-module `name` (`prefix.name.`).
    pub fn sub(&self, name: &str) -> Loader<'a> {
        Loader {
            prefix: format!("{}{name}.", self.prefix),
            ..self.clone()
        }
    }

    /// A loader for the tensors under `prefix` (a raw prefix ending in `.`, or `""` for
    /// this loader's own).
    pub fn sub_prefix(&self, prefix: &str) -> Loader<'a> {
        Loader {
            prefix: format!("{}{prefix}", self.prefix),
            ..self.clone()
        }
    }

    /// The canonical name of tensor `name` under this prefix.
    pub fn name(&self, name: &str) -> String {
        format!("{}{name}", self.prefix)
    }

    pub fn contains(&self, name: &str) -> bool {
        self.weights.contains(&self.name(name))
    }

    pub fn dtype(&self) -> DType {
        self.dtype
    }

    pub fn device(&self) -> &Device {
        &self.device
    }

    /// Tensor `name`, which must have exactly `shape`.
    pub fn tensor(&self, name: &str, shape: &[usize]) -> Result<Tensor> {
        self.weights
            .tensor(&self.name(name), shape, self.dtype, &self.device)
    }

    /// Tensor `name`, which must have exactly `shape`, in `dtype` (not the compute dtype).
    pub fn tensor_as(&self, name: &str, shape: &[usize], dtype: DType) -> Result<Tensor> {
        self.weights
            .tensor(&self.name(name), shape, dtype, &self.device)
    }

    /// Whether this loader's linear layers keep bf16 weights for the CPU bf16 kernels
    /// (a bf16 model on the CPU; everything else computes in f32).
    pub fn bf16_matmuls(&self) -> bool {
        self.device.is_cpu() && self.weights.bf16_matmuls()
    }

    /// `name.weight` `[out, in]` and, when `bias`, `name.bias` `[out]`.
    pub fn linear(&self, name: &str, in_dim: usize, out_dim: usize, bias: bool) -> Result<Linear> {
        let sub = self.sub(name);
        let bias = if bias {
            Some(sub.tensor("bias", &[out_dim])?)
        } else {
            None
        };
        if self.device.is_cpu() && self.weights.bf16_matmuls() {
            // bf16 weights read straight into the packed form of the bf16 kernels;
            // activations stay f32.
            let w = self
                .weights
                .packed_bf16(&sub.name("weight"), [out_dim, in_dim])?;
            return Ok(Linear {
                rhs: Rhs::Bf16(Arc::new(w)),
                bias,
            });
        }
        if self.device.is_cpu() {
            // Read straight into the `Wᵀ` layout the CPU matmul takes.
            let rhs = self.weights.tensor_transposed(
                &sub.name("weight"),
                [out_dim, in_dim],
                self.dtype,
            )?;
            return Ok(Linear {
                rhs: Rhs::Dense(rhs),
                bias,
            });
        }
        Linear::new(sub.tensor("weight", &[out_dim, in_dim])?, bias)
    }

    /// The linears `names` (each `[out_dim, in_dim]`, biased when `bias`) fused into one along
    /// the output dimension, as [`Linear::concat`] of each loaded alone (q/k/v, gate/up). On
    /// the CPU (f32 `Wᵀ` or packed bf16) the parts are read straight into the fused weight
    /// (no second copy).
    pub fn linear_fused(
        &self,
        names: &[&str],
        in_dim: usize,
        out_dim: usize,
        bias: bool,
    ) -> Result<Linear> {
        let dense_f32 = self.device.is_cpu() && self.dtype == DType::F32;
        if !self.bf16_matmuls() && !dense_f32 {
            let parts = names
                .iter()
                .map(|n| self.linear(n, in_dim, out_dim, bias))
                .collect::<Result<Vec<_>>>()?;
            return Linear::concat(&parts);
        }
        let subs: Vec<Loader> = names.iter().map(|n| self.sub(n)).collect();
        let weights: Vec<String> = subs.iter().map(|s| s.name("weight")).collect();
        let parts: Vec<(&str, [usize; 2])> = weights
            .iter()
            .map(|w| (w.as_str(), [out_dim, in_dim]))
            .collect();
        let rhs = if self.bf16_matmuls() {
            Rhs::Bf16(Arc::new(self.weights.packed_bf16_fused(&parts)?))
        } else {
            Rhs::Dense(self.weights.tensors_transposed(&parts, DType::F32)?)
        };
        let bias = if bias {
            let biases = subs
                .iter()
                .map(|s| s.tensor("bias", &[out_dim]))
                .collect::<Result<Vec<_>>>()?;
            Some(Tensor::cat(&biases, 0)?)
        } else {
            None
        };
        Ok(Linear { rhs, bias })
    }

    /// `name.weight` `[out_dim, in_dim]` (no bias) whose rows are stored, head by head, in
    /// interleaved rotary order (the pairs `(2i, 2i + 1)`: Mistral's own layout), as a linear
    /// with its rows in the rotate-half order (`i`, `i + head_dim / 2`) the rotary code uses:
    /// transformers' `PermuteForRope` on load.
    pub fn linear_rope_interleaved(
        &self,
        name: &str,
        in_dim: usize,
        out_dim: usize,
        heads: usize,
    ) -> Result<Linear> {
        if heads == 0 || out_dim % (2 * heads) != 0 {
            return Err(Error::bad_config(format!(
                "{}: {out_dim} rows do not split into {heads} heads of an even size",
                self.name(name)
            )));
        }
        let w = self.weight_for_linear(name, out_dim, in_dim)?;
        self.linear_from(rope_rows_to_half(&w, heads)?, None)
    }

    /// `name.weight` `[out_dim, in_dim]` in the dtype a linear keeps (bf16 for the CPU bf16
    /// kernels, else the compute dtype), for weights that are rearranged before use.
    pub fn weight_for_linear(&self, name: &str, out_dim: usize, in_dim: usize) -> Result<Tensor> {
        let dtype = if self.bf16_matmuls() {
            DType::BF16
        } else {
            self.dtype
        };
        self.sub(name)
            .tensor_as("weight", &[out_dim, in_dim], dtype)
    }

    /// A linear from a weight read by [`Loader::weight_for_linear`] (and rearranged).
    pub fn linear_from(&self, weight: Tensor, bias: Option<Tensor>) -> Result<Linear> {
        if self.bf16_matmuls() {
            Linear::new_bf16(&weight, bias)
        } else {
            Linear::new(weight, bias)
        }
    }

    /// The RGB patch convolution `name` (`weight` `[out, 3, patch, patch]`, `bias` `[out]`
    /// when `bias`; stride = kernel) as a linear map over `(c, ky, kx)`-flattened patches, the
    /// rows [`crate::models::pixels::patchify`] makes.
    pub fn patch_embedding(
        &self,
        name: &str,
        out_dim: usize,
        patch: usize,
        bias: bool,
    ) -> Result<Linear> {
        let sub = self.sub(name);
        let conv = sub.tensor("weight", &[out_dim, 3, patch, patch])?;
        let weight = conv.reshape((out_dim, 3 * patch * patch))?;
        let bias = if bias {
            Some(sub.tensor("bias", &[out_dim])?)
        } else {
            None
        };
        if self.bf16_matmuls() {
            return Linear::new_bf16(&weight, bias);
        }
        Linear::new(weight, bias)
    }

    /// Refuses a normalization epsilon that is not a positive finite number (a zero or
    /// negative one turns the output into NaN or infinity for some inputs).
    fn check_eps(&self, name: &str, eps: f64) -> Result<()> {
        if eps > 0.0 && eps.is_finite() {
            return Ok(());
        }
        Err(Error::bad_config(format!(
            "config.json: the epsilon of `{}` is {eps}; it must be a positive number \
             (layer_norm_eps / rms_norm_eps)",
            self.name(name)
        )))
    }

    /// `name.weight` `[dim]` of a Llama-style RMSNorm.
    pub fn rms_norm(&self, name: &str, dim: usize, eps: f64) -> Result<RmsNorm> {
        self.check_eps(name, eps)?;
        Ok(RmsNorm {
            weight: self.sub(name).tensor("weight", &[dim])?,
            eps,
        })
    }

    /// The stored shape of tensor `name` (for dimensions a config may leave out).
    pub fn shape(&self, name: &str) -> Result<Vec<usize>> {
        Ok(self.weights.meta(&self.name(name))?.shape)
    }

    /// `name.weight` `[dim]` of a Gemma-style RMSNorm.
    pub fn gemma_rms_norm(&self, name: &str, dim: usize, eps: f64) -> Result<GemmaRmsNorm> {
        self.check_eps(name, eps)?;
        let weight = self.sub(name).tensor("weight", &[dim])?;
        Ok(GemmaRmsNorm {
            scale: (weight.to_dtype(DType::F32)? + 1.0)?,
            eps,
        })
    }

    /// `name.weight` and `name.bias`, both `[dim]`.
    pub fn layer_norm(&self, name: &str, dim: usize, eps: f64) -> Result<LayerNorm> {
        self.check_eps(name, eps)?;
        let sub = self.sub(name);
        Ok(LayerNorm {
            weight: sub.tensor("weight", &[dim])?,
            bias: sub.tensor("bias", &[dim])?,
            eps,
        })
    }
}

/// `y = x Wᵀ + b` for a weight `W` `[out, in]` (torch's layout).
#[derive(Debug, Clone)]
pub struct Linear {
    rhs: Rhs,
    bias: Option<Tensor>,
}

/// The right operand of a [`Linear`]'s matmul.
#[derive(Debug, Clone)]
enum Rhs {
    /// `Wᵀ` `[in, out]`: a contiguous copy on the CPU (candle's gemm reads it up to 2.5x
    /// faster than the transposed view of `W`), the transposed view elsewhere (cuBLAS
    /// takes either).
    Dense(Tensor),
    /// `Wᵀ` in bf16, packed for [`crate::kernels`] (a bf16 model on the CPU): the only copy
    /// of the weight. Inputs are f32, rounded to bf16 per call; outputs are f32.
    Bf16(Arc<PackedB>),
}

impl Linear {
    /// A linear layer from its weight `[out, in]` and optional bias `[out]`.
    pub fn new(weight: Tensor, bias: Option<Tensor>) -> Result<Linear> {
        let rhs = if weight.device().is_cpu() {
            fused::transpose_2d(&weight)?
        } else {
            weight.t()?
        };
        Ok(Linear {
            rhs: Rhs::Dense(rhs),
            bias,
        })
    }

    /// A linear layer whose weight `[out, in]` is kept in bf16 for the CPU bf16 kernels
    /// (inputs and outputs in f32). Fails off the CPU.
    pub fn new_bf16(weight: &Tensor, bias: Option<Tensor>) -> Result<Linear> {
        Ok(Linear {
            rhs: Rhs::Bf16(Arc::new(fused::pack_bf16_weight(weight)?)),
            bias,
        })
    }

    /// The weight `[out, in]` (a view; for bf16-packed weights, an f32 copy).
    pub fn weight(&self) -> Result<Tensor> {
        match &self.rhs {
            Rhs::Dense(t) => Ok(t.t()?),
            Rhs::Bf16(p) => fused::unpack_bf16_weight(p),
        }
    }

    /// Stacks several linears with the same input along the output dimension (fused QKV).
    pub fn concat(parts: &[Linear]) -> Result<Linear> {
        // Side by side in the transposed layout: `[in, out_1 + out_2 + ...]`, contiguous on
        // the CPU, without transposing anything again.
        let dense: Vec<&Tensor> = parts
            .iter()
            .filter_map(|l| match &l.rhs {
                Rhs::Dense(t) => Some(t),
                Rhs::Bf16(_) => None,
            })
            .collect();
        let packed: Vec<&PackedB> = parts
            .iter()
            .filter_map(|l| match &l.rhs {
                Rhs::Bf16(p) => Some(&**p),
                Rhs::Dense(_) => None,
            })
            .collect();
        let rhs = if packed.is_empty() {
            Rhs::Dense(Tensor::cat(&dense, 1)?)
        } else if dense.is_empty() {
            Rhs::Bf16(Arc::new(PackedB::concat(&packed)?))
        } else {
            return Err(Error::bad_weights(
                "fused projections mix bf16-packed and dense weights",
            ));
        };
        let bias = if parts.iter().all(|l| l.bias.is_some()) {
            let biases: Vec<&Tensor> = parts.iter().filter_map(|l| l.bias.as_ref()).collect();
            Some(Tensor::cat(&biases, 0)?)
        } else if parts.iter().all(|l| l.bias.is_none()) {
            None
        } else {
            return Err(Error::bad_weights(
                "fused projections mix biased and unbiased parts",
            ));
        };
        Ok(Linear { rhs, bias })
    }

    pub fn out_dim(&self) -> usize {
        match &self.rhs {
            Rhs::Dense(t) => t.dims()[1],
            Rhs::Bf16(p) => p.n(),
        }
    }

    /// Applies the layer to the last dimension of `x` (any number of leading dimensions).
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        self.forward_fused(x, None, None)
    }

    /// `act(x Wᵀ + b)`, the activation fused into the bias pass.
    pub fn forward_act(&self, x: &Tensor, act: Activation) -> Result<Tensor> {
        self.forward_fused(x, Some(act), None)
    }

    /// `residual + (x Wᵀ + b)` (a residual connection), fused into the bias pass.
    pub fn forward_add(&self, x: &Tensor, residual: &Tensor) -> Result<Tensor> {
        self.forward_fused(x, None, Some(residual))
    }

    fn forward_fused(
        &self,
        x: &Tensor,
        act: Option<Activation>,
        residual: Option<&Tensor>,
    ) -> Result<Tensor> {
        let dims = x.dims().to_vec();
        let in_dim = *dims
            .last()
            .expect("linear input has at least one dimension");
        let rows: usize = dims[..dims.len() - 1].iter().product();
        let x2 = x.reshape((rows, in_dim))?;
        let y = match &self.rhs {
            Rhs::Dense(t) => x2.matmul(t)?,
            Rhs::Bf16(p) => fused::matmul_bf16(&x2, p)?,
        };
        let residual = residual
            .map(|r| r.reshape((rows, self.out_dim())))
            .transpose()?;
        // `y` is the fresh matmul result: the epilogue may write into it.
        let y = fused::epilogue(y, self.bias.as_ref(), act, residual.as_ref())?;
        let mut out_dims = dims;
        *out_dims.last_mut().expect("non-empty") = self.out_dim();
        Ok(y.reshape(out_dims)?)
    }
}

/// torch `LayerNorm`: `(x - mean) / sqrt(var + eps) * w + b` with the biased variance.
#[derive(Debug, Clone)]
pub struct LayerNorm {
    pub weight: Tensor,
    pub bias: Tensor,
    pub eps: f64,
}

impl LayerNorm {
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        Ok(candle_nn::ops::layer_norm(
            &x.contiguous()?,
            &self.weight,
            &self.bias,
            self.eps as f32,
        )?)
    }
}

/// Llama-style RMSNorm (`LlamaRMSNorm`, `PixtralRMSNorm`, `Mistral3RMSNorm`, Qwen2.5-VL's):
/// `w * (x * rsqrt(mean(x²) + eps))`, normalized in f32 and cast back to the input dtype
/// *before* the weight multiply.
#[derive(Debug, Clone)]
pub struct RmsNorm {
    pub weight: Tensor,
    pub eps: f64,
}

impl RmsNorm {
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let x = x.contiguous()?;
        if x.dtype() == DType::F32 {
            return Ok(candle_nn::ops::rms_norm(&x, &self.weight, self.eps as f32)?);
        }
        let dtype = x.dtype();
        let h = x.to_dtype(DType::F32)?;
        let var = h.sqr()?.mean_keepdim(D::Minus1)?;
        let h = h.broadcast_div(&(var + self.eps)?.sqrt()?)?;
        Ok(h.to_dtype(dtype)?.broadcast_mul(&self.weight)?)
    }
}

/// Gemma's RMSNorm (`Gemma3RMSNorm`): `y = x · rsqrt(mean(x²) + eps) · (1 + w)`, computed in f32
/// (the weight is stored as an offset from 1) and cast back to the input dtype last.
#[derive(Debug, Clone)]
pub struct GemmaRmsNorm {
    /// `1 + w` in f32.
    pub scale: Tensor,
    pub eps: f64,
}

impl GemmaRmsNorm {
    /// Normalizes over the last dimension of `x`.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let dtype = x.dtype();
        let h = x.to_dtype(DType::F32)?;
        let mean_sq = h.sqr()?.mean_keepdim(candle_core::D::Minus1)?;
        let inv = (mean_sq + self.eps)?.sqrt()?.recip()?;
        let y = h.broadcast_mul(&inv)?.broadcast_mul(&self.scale)?;
        Ok(y.to_dtype(dtype)?)
    }
}

/// The gated MLP of Llama-style blocks (`MistralMLP`, `PixtralMLP`, Qwen2.5-VL's):
/// `down(act(gate(x)) * up(x))`, with gate and up fused into one projection.
#[derive(Debug, Clone)]
pub struct GatedMlp {
    gate_up: Linear,
    down: Linear,
    act: Activation,
    hidden: usize,
    /// Clamp of the SwiGLU inputs ([`GatedMlp::clamped`]).
    limit: Option<f64>,
}

impl GatedMlp {
    /// Loads `gate_proj` and `up_proj` (`[hidden, dim]`) and `down_proj` (`[dim, hidden]`),
    /// with biases when `bias`.
    pub fn load(
        loader: &Loader,
        dim: usize,
        hidden: usize,
        act: Activation,
        bias: bool,
    ) -> Result<GatedMlp> {
        let names = ["gate_proj", "up_proj", "down_proj"];
        GatedMlp::load_named(loader, names, dim, hidden, act, bias)
    }

    /// [`GatedMlp::load`] with the three linears under other names (gate, up, down).
    pub fn load_named(
        loader: &Loader,
        [gate, up, down]: [&str; 3],
        dim: usize,
        hidden: usize,
        act: Activation,
        bias: bool,
    ) -> Result<GatedMlp> {
        Ok(GatedMlp {
            gate_up: loader.linear_fused(&[gate, up], dim, hidden, bias)?,
            down: loader.linear(down, hidden, dim, bias)?,
            act,
            hidden,
            limit: None,
        })
    }

    /// This MLP with its inputs clamped before the activation ([`fused::act_mul_clamped`]:
    /// gate at most `limit`, up within `±limit`; GLM-5.x Next's `swiglu_limit`).
    pub fn clamped(self, limit: f64) -> GatedMlp {
        GatedMlp {
            limit: Some(limit),
            ..self
        }
    }

    /// `residual + mlp(x)` over the last dimension of `x`, the residual add fused into the
    /// last projection.
    pub fn forward_add(&self, x: &Tensor, residual: &Tensor) -> Result<Tensor> {
        let gu = self.gate_up.forward(x)?;
        let h = match self.limit {
            Some(limit) => fused::act_mul_clamped(&gu, self.hidden, self.act, limit)?,
            None => fused::act_mul(&gu, self.hidden, self.act)?,
        };
        self.down.forward_add(&h, residual)
    }
}

/// Multi-head self-attention with q/k/v fused into one projection: without mask over a
/// batch ([`Attention::forward_residual`]), or over several sequences packed into one, each attending
/// only to itself, optionally with rotary embeddings ([`Attention::forward_packed`]).
#[derive(Debug, Clone)]
pub struct Attention {
    qkv: Linear,
    out: Linear,
    heads: usize,
    head_dim: usize,
    /// RMSNorms of the whole q and k projections (InternViT's `q_norm` / `k_norm`), applied
    /// before the heads are split.
    qk_norm: Option<Box<[RmsNorm; 2]>>,
}

impl Linear {
    /// Whether the weight is kept in bf16 for the CPU bf16 kernels (a bf16 model on the
    /// CPU): the layer's attention then runs its matmuls in bf16 too.
    pub fn is_bf16(&self) -> bool {
        matches!(self.rhs, Rhs::Bf16(_))
    }
}

impl Attention {
    /// Loads `q_proj`, `k_proj`, `v_proj`, `out_proj_name` (all `[dim, dim]`, with biases
    /// when `bias`) and fuses the first three.
    pub fn load(
        loader: &Loader,
        dim: usize,
        heads: usize,
        out_proj_name: &str,
        bias: bool,
    ) -> Result<Attention> {
        if heads == 0 || dim % heads != 0 {
            return Err(Error::bad_config(format!(
                "hidden size {dim} is not divisible by num_attention_heads {heads}"
            )));
        }
        Ok(Attention {
            qkv: loader.linear_fused(&["q_proj", "k_proj", "v_proj"], dim, dim, bias)?,
            out: loader.linear(out_proj_name, dim, dim, bias)?,
            heads,
            head_dim: dim / heads,
            qk_norm: None,
        })
    }

    /// An attention from an already fused `qkv` projection (`[3 * dim, dim]`, rows q, k, v)
    /// and an output projection.
    pub fn from_parts(qkv: Linear, out: Linear, heads: usize) -> Result<Attention> {
        let dim = out.out_dim();
        if heads == 0 || dim % heads != 0 || qkv.out_dim() != 3 * dim {
            return Err(Error::bad_config(format!(
                "attention: {heads} heads, output width {dim}, fused qkv width {}",
                qkv.out_dim()
            )));
        }
        Ok(Attention {
            qkv,
            out,
            heads,
            head_dim: dim / heads,
            qk_norm: None,
        })
    }

    /// The attention with RMSNorms over the whole q and k projections (before the heads are
    /// split), as InternViT's `use_qk_norm`.
    pub fn with_qk_norm(mut self, q: RmsNorm, k: RmsNorm) -> Attention {
        self.qk_norm = Some(Box::new([q, k]));
        self
    }

    /// The fused projection's output `[.., 3 * dim]`, with q and k normalized when the
    /// attention has q/k norms.
    fn project_qkv(&self, x: &Tensor) -> Result<Tensor> {
        let qkv = self.qkv.forward(x)?;
        let Some(norms) = &self.qk_norm else {
            return Ok(qkv);
        };
        let d = self.heads * self.head_dim;
        let last = qkv.rank() - 1;
        let q = norms[0].forward(&qkv.narrow(last, 0, d)?)?;
        let k = norms[1].forward(&qkv.narrow(last, d, d)?)?;
        let v = qkv.narrow(last, 2 * d, d)?;
        Ok(Tensor::cat(&[q, k, v], last)?)
    }

    pub fn heads(&self) -> usize {
        self.heads
    }

    pub fn head_dim(&self) -> usize {
        self.head_dim
    }

    /// Self-attention over `x` `[tokens, dim]` holding several sequences back to back, of
    /// lengths `segments` (summing to `tokens`): each token attends only to the tokens of
    /// its own sequence. This is exactly the reference's block-diagonal additive mask
    /// (masked scores get a weight of exactly 0 after the softmax), without computing the
    /// masked blocks. `rope`, when given, rotates q and k (one row per token).
    ///
    /// With `residual`, returns `residual + attention(x)` (the add fused into the output
    /// projection).
    pub fn forward_packed(
        &self,
        x: &Tensor,
        segments: &[usize],
        rope: Option<&Rotary>,
        residual: Option<&Tensor>,
    ) -> Result<Tensor> {
        self.forward_packed_budget(x, segments, rope, residual, SEGMENT_SCORES_BUDGET)
    }

    fn forward_packed_budget(
        &self,
        x: &Tensor,
        segments: &[usize],
        rope: Option<&Rotary>,
        residual: Option<&Tensor>,
        score_budget: usize,
    ) -> Result<Tensor> {
        let (n, d) = x.dims2()?;
        if segments.iter().sum::<usize>() != n {
            return Err(Error::compute(format!(
                "attention: segments {segments:?} do not add up to {n} tokens"
            )));
        }
        let qkv = self.project_qkv(x)?;
        // [heads, n, head_dim] views into the projection's output; segment attention makes
        // them contiguous where the device needs it.
        let qkv = qkv
            .reshape((n, 3, self.heads, self.head_dim))?
            .permute((1, 2, 0, 3))?;
        let (mut q, mut k, v) = (qkv.get(0)?, qkv.get(1)?, qkv.get(2)?);
        if let Some(r) = rope {
            q = r.apply(&q.unsqueeze(0)?.contiguous()?)?.squeeze(0)?;
            k = r.apply(&k.unsqueeze(0)?.contiguous()?)?.squeeze(0)?;
        }
        let scale = (self.head_dim as f64).powf(-0.5);
        let mut ranges = Vec::with_capacity(segments.len());
        let mut start = 0;
        for &len in segments.iter().filter(|&&l| l > 0) {
            ranges.push((start, len));
            start += len;
        }
        let x = SegmentQkv {
            q: &q,
            k: &k,
            v: &v,
            segments: &ranges,
            scale,
        };
        let o = segment_attention_budget(x, score_budget, self.qkv.is_bf16())?;
        debug_assert_eq!(o.dims(), &[n, d]);
        self.project_out(&o, residual)
    }

    fn project_out(&self, o: &Tensor, residual: Option<&Tensor>) -> Result<Tensor> {
        match residual {
            Some(r) => self.out.forward_add(o, r),
            None => self.out.forward(o),
        }
    }

    /// Self-attention over `x` `[batch, tokens, dim]`, each image on its own; with
    /// `residual`, returns `residual + attention(x)` (the add fused into the output
    /// projection).
    pub fn forward_residual(&self, x: &Tensor, residual: Option<&Tensor>) -> Result<Tensor> {
        self.forward_budget(x, residual, SEGMENT_SCORES_BUDGET)
    }

    fn forward_budget(
        &self,
        x: &Tensor,
        residual: Option<&Tensor>,
        score_budget: usize,
    ) -> Result<Tensor> {
        let (b, n, d) = x.dims3()?;
        let scores_bytes = b
            .saturating_mul(self.heads)
            .saturating_mul(n)
            .saturating_mul(n)
            .saturating_mul(4);
        if x.device().is_cpu() || scores_bytes > score_budget {
            // Each image as one segment of a packed sequence: on the CPU that path runs
            // heads in parallel; on a GPU, long sequences (Gemma3's 4096 tokens) take it so
            // that queries go in chunks and the scores never take more than the budget.
            let residual = residual.map(|r| r.reshape((b * n, d))).transpose()?;
            let y = self.forward_packed_budget(
                &x.reshape((b * n, d))?,
                &vec![n; b],
                None,
                residual.as_ref(),
                score_budget,
            )?;
            return Ok(y.reshape((b, n, d))?);
        }
        self.forward_batched(x, residual)
    }

    /// All images and heads in one batched matmul, unmasked (`x`: `[batch, tokens, dim]`).
    fn forward_batched(&self, x: &Tensor, residual: Option<&Tensor>) -> Result<Tensor> {
        let (b, n, d) = x.dims3()?;
        let qkv = self.project_qkv(x)?;
        let qkv = qkv
            .reshape((b, n, 3, self.heads, self.head_dim))?
            .permute((2, 0, 3, 1, 4))?;
        let q = qkv.get(0)?.contiguous()?;
        let k = qkv.get(1)?.contiguous()?;
        let v = qkv.get(2)?.contiguous()?;
        let scale = (self.head_dim as f64).powf(-0.5);
        let probs = fused::scaled_softmax(q.matmul(&k.t()?)?, scale)?;
        let o = probs.matmul(&v)?;
        let o = o.transpose(1, 2)?.reshape((b, n, d))?;
        self.project_out(&o, residual)
    }
}

/// The rows (first dimension) of `t` — a projection's weight `[out, in]` or bias `[out]` —
/// from the interleaved rotary order, head by head (pairs `(2i, 2i + 1)`), to the
/// rotate-half order (`i`, `i + head_dim / 2`): transformers' `PermuteForRope` on load.
pub fn rope_rows_to_half(t: &Tensor, heads: usize) -> Result<Tensor> {
    let dims = t.dims().to_vec();
    let out = dims.first().copied().unwrap_or(0);
    if heads == 0 || out % (2 * heads) != 0 {
        return Err(Error::bad_config(format!(
            "{out} projection rows do not split into {heads} heads of an even size"
        )));
    }
    let rest: usize = dims[1..].iter().product();
    Ok(t.reshape((heads, out / heads / 2, 2, rest))?
        .transpose(1, 2)?
        .contiguous()?
        .reshape(dims)?)
}

impl Loader<'_> {
    /// A gated MLP `name.{gate_proj, up_proj}` `[hidden, dim]`, `name.down_proj`
    /// `[dim, hidden]`, with biases when `bias`.
    pub fn gated_mlp(
        &self,
        name: &str,
        dim: usize,
        hidden: usize,
        bias: bool,
        act: Activation,
    ) -> Result<GatedMlp> {
        GatedMlp::load(&self.sub(name), dim, hidden, act, bias)
    }
}

/// Bytes of attention scores one query chunk may take (larger segments are processed in
/// query chunks; each row's softmax is independent, so the result does not change).
const SEGMENT_SCORES_BUDGET: usize = 64 << 20;

/// Attention restricted to segments of a packed sequence (flash-attention's `cu_seqlens`):
/// tokens attend to the tokens of their own segment only, with no mask inside a segment.
///
/// `q`, `k`, `v`: `[heads, tokens, head_dim]`; `segments`: `(start, len)` ranges that tile
/// `0..tokens` in order. Scores are `q·kᵀ·scale`, softmax in f32. Returns
/// `[tokens, heads * head_dim]` (heads concatenated per token).
pub fn segment_attention(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    segments: &[(usize, usize)],
    scale: f64,
) -> Result<Tensor> {
    segment_attention_with(q, k, v, segments, scale, false)
}

/// [`segment_attention`], with `q·kᵀ` and `p·v` in bf16 (operands rounded to bf16, f32
/// accumulation, softmax in f32) when `bf16` and the operands are f32 on the CPU (a bf16
/// model on the CPU: pass [`Linear::is_bf16`] of the layer's projection).
pub fn segment_attention_with(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    segments: &[(usize, usize)],
    scale: f64,
    bf16: bool,
) -> Result<Tensor> {
    let x = SegmentQkv {
        q,
        k,
        v,
        segments,
        scale,
    };
    segment_attention_budget(x, SEGMENT_SCORES_BUDGET, bf16)
}

/// The operands of a segment attention: `q`, `k`, `v` `[heads, tokens, head_dim]`, the
/// segments that tile `0..tokens`, the score scale.
#[derive(Clone, Copy)]
struct SegmentQkv<'a> {
    q: &'a Tensor,
    k: &'a Tensor,
    v: &'a Tensor,
    segments: &'a [(usize, usize)],
    scale: f64,
}

/// Segments longer than this are split into one task per head on the CPU (many small
/// batched matmuls over heads parallelize worse than independent per-head work).
const PER_HEAD_MIN_TOKENS: usize = 128;

/// [`segment_attention`] with score chunks of at most `budget` bytes.
///
/// On the CPU (f32 operands), the fused kernel of `crate::kernels::attention` runs: tasks of
/// (head, segment, query block) on the calling thread's rayon pool, an online softmax over
/// key blocks, no scores beyond one block; its products are bf16 when `bf16`. Elsewhere
/// (GPU), one batched computation per segment, its queries in chunks whose scores take at most
/// `budget` bytes.
fn segment_attention_budget(x: SegmentQkv<'_>, budget: usize, bf16: bool) -> Result<Tensor> {
    if x.q.device().is_cpu() && x.q.dtype() == DType::F32 {
        let precision = if bf16 {
            crate::kernels::Precision::Bf16
        } else {
            crate::kernels::Precision::F32
        };
        return fused_cpu_attention(x, precision);
    }
    segment_attention_tasks(x, budget)
}

/// The fused CPU kernel on `[heads, tokens, head_dim]` tensors (any strides); returns
/// `[tokens, heads * head_dim]`.
fn fused_cpu_attention(x: SegmentQkv<'_>, precision: crate::kernels::Precision) -> Result<Tensor> {
    let SegmentQkv {
        q,
        k,
        v,
        segments,
        scale,
    } = x;
    let (heads, tokens, head_dim) = q.dims3()?;
    for (name, t) in [("k", k), ("v", v)] {
        if t.dims() != q.dims() {
            return Err(Error::compute(format!(
                "attention: {name} is {:?}, q is {:?}",
                t.dims(),
                q.dims()
            )));
        }
    }
    crate::kernels::check_segments(segments, tokens)?;
    let rows = |t: &Tensor| -> Result<Vec<f32>> { Ok(t.flatten_all()?.to_vec1::<f32>()?) };
    let (qh, kh, vh) = (rows(q)?, rows(k)?, rows(v)?);
    let mut out = crate::preprocess::limits::try_filled_par(qh.len(), 0f32, "attention output")?;
    let x = crate::kernels::Heads {
        q: &qh,
        k: &kh,
        v: &vh,
        heads,
        head_dim,
        segments,
    };
    crate::kernels::attention(x, scale as f32, precision, &mut out)?;
    let o = Tensor::from_vec(out, (heads, tokens, head_dim), q.device())?;
    Ok(o.transpose(0, 1)?.reshape((tokens, heads * head_dim))?)
}

/// The unfused attention (public for `benches/cpu_ops.rs`, which compares it with the fused
/// kernel): per task (segment and head on the CPU, segment elsewhere), query chunks whose
/// scores take at most `task_scores` bytes, scores written out, softmax, product with `v`.
pub fn segment_attention_unfused(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    segments: &[(usize, usize)],
    scale: f64,
    task_scores: usize,
) -> Result<Tensor> {
    let x = SegmentQkv {
        q,
        k,
        v,
        segments,
        scale,
    };
    segment_attention_tasks(x, task_scores)
}

/// The unfused computation: on the CPU one task per (segment, head) for long segments and one
/// per segment (all heads batched) for short ones, run on the calling thread's rayon pool;
/// elsewhere (GPU) tasks run in order, each one batched over all heads. Every task computes
/// exactly the same arithmetic as the batched path, so the result does not depend on the
/// split.
fn segment_attention_tasks(x: SegmentQkv<'_>, task_scores: usize) -> Result<Tensor> {
    let SegmentQkv {
        q,
        k,
        v,
        segments,
        scale,
    } = x;
    let (heads, tokens, head_dim) = q.dims3()?;
    crate::kernels::check_segments(segments, tokens)?;
    let on_cpu = q.device().is_cpu();
    // (segment start, segment length, first head, heads)
    let mut tasks = Vec::new();
    for &(start, len) in segments {
        if on_cpu && len > PER_HEAD_MIN_TOKENS {
            tasks.extend((0..heads).map(|h| (start, len, h, 1)));
        } else {
            tasks.push((start, len, 0, heads));
        }
    }
    // CUDA matmuls want (batch-)contiguous operands; candle's CPU matmul takes strided ones.
    let operand = |t: Tensor| if on_cpu { Ok(t) } else { t.contiguous() };
    let run = |&(start, len, h0, hn): &(usize, usize, usize, usize)| -> Result<Tensor> {
        let qs = q.narrow(0, h0, hn)?.narrow(1, start, len)?;
        // kᵀ copied contiguous on every device, as before the strided views came in.
        let kt = k
            .narrow(0, h0, hn)?
            .narrow(1, start, len)?
            .t()?
            .contiguous()?;
        let vs = operand(v.narrow(0, h0, hn)?.narrow(1, start, len)?)?;
        let per_row = hn.saturating_mul(len).saturating_mul(4).max(1);
        let chunk = (task_scores / per_row).clamp(1, len);
        let mut parts = Vec::with_capacity(len.div_ceil(chunk));
        let mut q0 = 0;
        while q0 < len {
            let n = chunk.min(len - q0);
            let qc = operand(qs.narrow(1, q0, n)?)?;
            let probs = fused::scaled_softmax(qc.matmul(&kt)?, scale)?;
            parts.push(probs.matmul(&vs)?);
            q0 += n;
        }
        Ok(if parts.len() == 1 {
            parts.pop().expect("one part")
        } else {
            Tensor::cat(&parts, 1)?
        })
    };
    let outputs: Vec<Tensor> = if on_cpu {
        tasks.par_iter().map(run).collect::<Result<_>>()?
    } else {
        tasks.iter().map(run).collect::<Result<_>>()?
    };
    let o = join_tasks(&tasks, &outputs)?;
    Ok(o.transpose(0, 1)?.reshape((tokens, heads * head_dim))?)
}

/// The outputs of segment-major `tasks` (`(segment start, len, first head, heads)`, each
/// `[heads, len, head_dim]`) as `[heads, tokens, head_dim]`: each segment's heads put back
/// together, then the segments.
fn join_tasks(tasks: &[(usize, usize, usize, usize)], outputs: &[Tensor]) -> Result<Tensor> {
    let mut per_segment = Vec::new();
    let mut i = 0;
    while i < outputs.len() {
        let (start, ..) = tasks[i];
        let j = i + tasks[i..].iter().take_while(|t| t.0 == start).count();
        per_segment.push(if j - i == 1 {
            outputs[i].clone()
        } else {
            Tensor::cat(&outputs[i..j], 0)?
        });
        i = j;
    }
    Ok(if per_segment.len() == 1 {
        per_segment.pop().expect("one segment")
    } else {
        Tensor::cat(&per_segment, 1)?
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::models::testing::{max_abs_diff, uniform};

    fn randn(shape: &[usize], seed: u64) -> Tensor {
        uniform(shape, seed, 1.0)
    }

    fn attention(dim: usize, heads: usize) -> Attention {
        let qkv = Linear::new(randn(&[3 * dim, dim], 1), Some(randn(&[3 * dim], 2))).unwrap();
        let out = Linear::new(randn(&[dim, dim], 3), None).unwrap();
        Attention::from_parts(qkv, out, heads).unwrap()
    }

    #[test]
    fn packed_attention_equals_separate_runs_and_row_blocks() {
        let (dim, heads) = (8, 2);
        let a = attention(dim, heads);
        let x = randn(&[12, dim], 4);
        let segments = [5, 7];
        let packed = a.forward_packed(&x, &segments, None, None).unwrap();
        // Each segment alone, through the unmasked batch path.
        let mut start = 0;
        for len in segments {
            let alone = a
                .forward_batched(
                    &x.narrow(0, start, len).unwrap().unsqueeze(0).unwrap(),
                    None,
                )
                .unwrap()
                .squeeze(0)
                .unwrap();
            let diff = max_abs_diff(&packed.narrow(0, start, len).unwrap(), &alone);
            assert!(diff < 1e-5, "segment at {start}: {diff}");
            start += len;
        }
        // A batch through the packed path (the CPU's, and a GPU's over the score budget),
        // residual included, equals the direct batched computation.
        let batch = randn(&[3, 6, dim], 8);
        let residual = randn(&[3, 6, dim], 9);
        let direct = a.forward_batched(&batch, Some(&residual)).unwrap();
        for budget in [64, usize::MAX] {
            let packed = a.forward_budget(&batch, Some(&residual), budget).unwrap();
            let diff = max_abs_diff(&direct, &packed);
            assert!(diff < 1e-5, "budget {budget}: {diff}");
        }
        assert!(a.forward_packed(&x, &[5, 6], None, None).is_err());
        assert!(Attention::from_parts(
            Linear::new(randn(&[2 * dim, dim], 5), None).unwrap(),
            Linear::new(randn(&[dim, dim], 6), None).unwrap(),
            heads
        )
        .is_err());
    }

    #[test]
    fn rms_norm_matches_the_formula() {
        let x = Tensor::from_vec(vec![1f32, 2., 3., 4.], (1, 4), &Device::Cpu).unwrap();
        let n = RmsNorm {
            weight: Tensor::from_vec(vec![1f32, -1., 0.5, 2.], 4, &Device::Cpu).unwrap(),
            eps: 1e-5,
        };
        let y = n.forward(&x).unwrap().to_vec2::<f32>().unwrap();
        let r = (7.5f32 + 1e-5).sqrt();
        let want = [1. / r, -2. / r, 1.5 / r, 8. / r];
        for (a, b) in y[0].iter().zip(want) {
            assert!((a - b).abs() < 1e-6, "{y:?}");
        }
        // Lower precision: normalized in f32, cast, then multiplied.
        let nb = RmsNorm {
            weight: n.weight.to_dtype(DType::BF16).unwrap(),
            eps: n.eps,
        };
        let h = nb
            .forward(&x.to_dtype(DType::BF16).unwrap())
            .unwrap()
            .to_dtype(DType::F32)
            .unwrap()
            .to_vec2::<f32>()
            .unwrap();
        for (a, b) in h[0].iter().zip(want) {
            assert!((a - b).abs() < 2e-2, "{h:?}");
        }
    }

    #[test]
    fn long_segments_split_per_head_equal_the_batched_computation() {
        let (heads, d) = (3, 8);
        let lens = [PER_HEAD_MIN_TOKENS + 3, 40, 2 * PER_HEAD_MIN_TOKENS];
        let n: usize = lens.iter().sum();
        let (q, k, v) = (
            randn(&[heads, n, d], 11),
            randn(&[heads, n, d], 12),
            randn(&[heads, n, d], 13),
        );
        let mut segs = Vec::new();
        let mut start = 0;
        for len in lens {
            segs.push((start, len));
            start += len;
        }
        let got = segment_attention(&q, &k, &v, &segs, 0.3).unwrap();
        // The unfused computation, one query row per chunk.
        let chunked = segment_attention_unfused(&q, &k, &v, &segs, 0.3, 1).unwrap();
        for &(start, len) in &segs {
            // The plain batched computation over all heads with candle's own softmax.
            let qs = q.narrow(1, start, len).unwrap();
            let ks = k.narrow(1, start, len).unwrap();
            let vs = v.narrow(1, start, len).unwrap();
            let scores = (qs.matmul(&ks.t().unwrap()).unwrap() * 0.3).unwrap();
            let probs = candle_nn::ops::softmax_last_dim(&scores).unwrap();
            let want = probs
                .matmul(&vs)
                .unwrap()
                .transpose(0, 1)
                .unwrap()
                .reshape((len, heads * d))
                .unwrap();
            for out in [&got, &chunked] {
                let diff = max_abs_diff(&out.narrow(0, start, len).unwrap(), &want);
                assert!(diff < 1e-5, "segment ({start}, {len}): {diff}");
            }
        }
    }

    /// A bf16-packed linear layer equals the f32 layer on bf16-rounded weights and inputs
    /// (up to f32 summation order), epilogues and fused projections included.
    #[test]
    fn bf16_linear_matches_f32_on_rounded_operands() {
        let round = |t: &Tensor| {
            t.to_dtype(DType::BF16)
                .unwrap()
                .to_dtype(DType::F32)
                .unwrap()
        };
        let (w1, w2) = (randn(&[13, 37], 31), randn(&[20, 37], 32));
        let (b1, b2) = (randn(&[13], 33), randn(&[20], 34));
        let x = randn(&[2, 9, 37], 35);
        let packed = Linear::concat(&[
            Linear::new_bf16(&w1, Some(b1.clone())).unwrap(),
            Linear::new_bf16(&w2, Some(b2.clone())).unwrap(),
        ])
        .unwrap();
        assert!(packed.is_bf16());
        let dense = Linear::new(
            Tensor::cat(&[round(&w1), round(&w2)], 0).unwrap(),
            Some(Tensor::cat(&[b1, b2], 0).unwrap()),
        )
        .unwrap();
        assert_eq!(packed.out_dim(), 33);
        assert_eq!(
            packed.weight().unwrap().to_vec2::<f32>().unwrap(),
            dense.weight().unwrap().to_vec2::<f32>().unwrap()
        );
        let residual = randn(&[2, 9, 33], 36);
        let xr = round(&x);
        for (got, want) in [
            (packed.forward(&x), dense.forward(&xr)),
            (
                packed.forward_act(&x, Activation::GeluTanh),
                dense.forward_act(&xr, Activation::GeluTanh),
            ),
            (
                packed.forward_add(&x, &residual),
                dense.forward_add(&xr, &residual),
            ),
        ] {
            let (got, want) = (got.unwrap(), want.unwrap());
            assert_eq!(got.dims(), &[2, 9, 33]);
            assert!(max_abs_diff(&got, &want) < 1e-4);
        }
    }

    #[test]
    fn bf16_attention_is_close_to_f32() {
        let (heads, d) = (3, 10);
        let lens = [5, PER_HEAD_MIN_TOKENS + 9];
        let n: usize = lens.iter().sum();
        let (q, k, v) = (
            randn(&[heads, n, d], 21),
            randn(&[heads, n, d], 22),
            randn(&[heads, n, d], 23),
        );
        let segs = [(0, lens[0]), (lens[0], lens[1])];
        let f32 = segment_attention(&q, &k, &v, &segs, 0.4).unwrap();
        let bf16 = segment_attention_with(&q, &k, &v, &segs, 0.4, true).unwrap();
        assert_eq!(bf16.dims(), f32.dims());
        let diff = max_abs_diff(&bf16, &f32);
        let scale = f32
            .abs()
            .unwrap()
            .max_all()
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        assert!(diff > 0.0 && diff < 2e-2 * scale, "{diff} vs {scale}");
        // The unfused f32 computation agrees with the fused f32 kernel.
        let unfused = segment_attention_unfused(&q, &k, &v, &segs, 0.4, 1).unwrap();
        let diff = max_abs_diff(&unfused, &f32);
        assert!(diff < 1e-5, "{diff}");
    }

    #[test]
    fn segment_attention_isolates_segments_and_chunks_exactly() {
        let dev = Device::Cpu;
        let (h, n, d) = (2, 7, 4);
        let data = |seed: f32| -> Tensor {
            let v: Vec<f32> = (0..h * n * d)
                .map(|i| (i as f32 * 0.37 + seed).sin() * 2.0)
                .collect();
            Tensor::from_vec(v, (h, n, d), &dev).unwrap()
        };
        let (q, k, v) = (data(0.1), data(1.3), data(2.9));
        let segs = [(0, 3), (3, 4)];
        let whole = segment_attention(&q, &k, &v, &segs, 0.5).unwrap();
        assert_eq!(whole.dims(), &[n, h * d]);
        // Each segment alone gives the same rows.
        let first = segment_attention(
            &q.narrow(1, 0, 3).unwrap(),
            &k.narrow(1, 0, 3).unwrap(),
            &v.narrow(1, 0, 3).unwrap(),
            &[(0, 3)],
            0.5,
        )
        .unwrap();
        let a = whole.narrow(0, 0, 3).unwrap().to_vec2::<f32>().unwrap();
        assert_eq!(a, first.to_vec2::<f32>().unwrap());
        // The unfused computation, one query row per chunk: same result.
        let chunked = segment_attention_unfused(&q, &k, &v, &segs, 0.5, 1).unwrap();
        let diff = max_abs_diff(&chunked, &whole);
        assert!(diff <= 1e-6, "{diff}");
        // Segments must tile the sequence.
        assert!(segment_attention(&q, &k, &v, &[(0, 3), (4, 3)], 0.5).is_err());
        assert!(segment_attention(&q, &k, &v, &[(0, 3)], 0.5).is_err());
        assert!(segment_attention(&q, &k, &v, &[(0, 0), (0, 7)], 0.5).is_err());
    }
}
