//! Building blocks shared by the vision towers: weight loading with shape checks, linear
//! layers, norms, activations and multi-head attention, written to match PyTorch's eager
//! reference arithmetic.

use candle_core::{DType, Device, Tensor};

use crate::error::{Error, Result};
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

    /// `name.weight` `[out, in]` and, when `bias`, `name.bias` `[out]`.
    pub fn linear(&self, name: &str, in_dim: usize, out_dim: usize, bias: bool) -> Result<Linear> {
        let sub = self.sub(name);
        Ok(Linear {
            weight: sub.tensor("weight", &[out_dim, in_dim])?,
            bias: if bias {
                Some(sub.tensor("bias", &[out_dim])?)
            } else {
                None
            },
        })
    }

    /// The stored shape of tensor `name` (for dimensions a config may leave out).
    pub fn shape(&self, name: &str) -> Result<Vec<usize>> {
        Ok(self.weights.meta(&self.name(name))?.shape)
    }

    /// `name.weight` `[dim]` of a Gemma-style RMSNorm.
    pub fn gemma_rms_norm(&self, name: &str, dim: usize, eps: f64) -> Result<GemmaRmsNorm> {
        let weight = self.sub(name).tensor("weight", &[dim])?;
        Ok(GemmaRmsNorm {
            scale: (weight.to_dtype(DType::F32)? + 1.0)?,
            eps,
        })
    }

    /// `name.weight` and `name.bias`, both `[dim]`.
    pub fn layer_norm(&self, name: &str, dim: usize, eps: f64) -> Result<LayerNorm> {
        let sub = self.sub(name);
        Ok(LayerNorm {
            weight: sub.tensor("weight", &[dim])?,
            bias: sub.tensor("bias", &[dim])?,
            eps,
        })
    }
}

/// `y = x Wᵀ + b` with `W` stored `[out, in]`.
#[derive(Debug, Clone)]
pub struct Linear {
    pub weight: Tensor,
    pub bias: Option<Tensor>,
}

impl Linear {
    /// Stacks several linears with the same input along the output dimension (fused QKV).
    pub fn concat(parts: &[Linear]) -> Result<Linear> {
        let weights: Vec<&Tensor> = parts.iter().map(|l| &l.weight).collect();
        let weight = Tensor::cat(&weights, 0)?;
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
        Ok(Linear { weight, bias })
    }

    pub fn out_dim(&self) -> usize {
        self.weight.dims()[0]
    }

    /// Applies the layer to the last dimension of `x` (any number of leading dimensions).
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let dims = x.dims().to_vec();
        let in_dim = *dims
            .last()
            .expect("linear input has at least one dimension");
        let rows: usize = dims[..dims.len() - 1].iter().product();
        let x2 = x.reshape((rows, in_dim))?;
        let mut y = x2.matmul(&self.weight.t()?)?;
        if let Some(b) = &self.bias {
            y = y.broadcast_add(b)?;
        }
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

/// The activation functions of HF's `ACT2FN` used by vision towers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Activation {
    /// `gelu_pytorch_tanh` / `gelu_new` / `gelu_fast`: tanh approximation.
    GeluTanh,
    /// `gelu`: exact, with erf.
    GeluErf,
    /// `quick_gelu`: `x * sigmoid(1.702 x)`.
    QuickGelu,
    /// `silu` / `swish`: `x * sigmoid(x)`.
    Silu,
}

impl Activation {
    /// The activation named `name` in a config file.
    pub fn from_name(name: &str) -> Result<Activation> {
        match name {
            "gelu_pytorch_tanh" | "gelu_new" | "gelu_fast" => Ok(Activation::GeluTanh),
            "gelu" => Ok(Activation::GeluErf),
            "quick_gelu" => Ok(Activation::QuickGelu),
            "silu" | "swish" => Ok(Activation::Silu),
            other => Err(Error::bad_config(format!(
                "activation `{other}` is not supported (gelu, gelu_pytorch_tanh, quick_gelu, silu)"
            ))),
        }
    }

    pub fn forward(self, x: &Tensor) -> Result<Tensor> {
        Ok(match self {
            Activation::GeluTanh => x.gelu()?,
            Activation::GeluErf => x.gelu_erf()?,
            Activation::QuickGelu => (x * candle_nn::ops::sigmoid(&x.affine(1.702, 0.0)?)?)?,
            Activation::Silu => x.silu()?,
        })
    }
}

/// Multi-head self-attention without mask, with q/k/v fused into one projection.
#[derive(Debug, Clone)]
pub struct Attention {
    qkv: Linear,
    out: Linear,
    heads: usize,
    head_dim: usize,
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
        let q = loader.linear("q_proj", dim, dim, bias)?;
        let k = loader.linear("k_proj", dim, dim, bias)?;
        let v = loader.linear("v_proj", dim, dim, bias)?;
        Ok(Attention {
            qkv: Linear::concat(&[q, k, v])?,
            out: loader.linear(out_proj_name, dim, dim, bias)?,
            heads,
            head_dim: dim / heads,
        })
    }

    /// `x`: `[batch, tokens, dim]`.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let (b, n, d) = x.dims3()?;
        let qkv = self.qkv.forward(x)?;
        let qkv = qkv
            .reshape((b, n, 3, self.heads, self.head_dim))?
            .permute((2, 0, 3, 1, 4))?;
        let q = qkv.get(0)?.contiguous()?;
        let k = qkv.get(1)?.contiguous()?;
        let v = qkv.get(2)?.contiguous()?;
        let scale = (self.head_dim as f64).powf(-0.5);
        let scores = (q.matmul(&k.t()?)? * scale)?;
        let probs = softmax_f32(&scores)?;
        let o = probs.matmul(&v)?;
        let o = o.transpose(1, 2)?.reshape((b, n, d))?;
        self.out.forward(&o)
    }
}

/// Softmax over the last dimension, accumulated in f32 whatever the dtype.
pub fn softmax_f32(x: &Tensor) -> Result<Tensor> {
    let dtype = x.dtype();
    if dtype == DType::F32 {
        Ok(candle_nn::ops::softmax_last_dim(x)?)
    } else {
        Ok(candle_nn::ops::softmax_last_dim(&x.to_dtype(DType::F32)?)?.to_dtype(dtype)?)
    }
}
