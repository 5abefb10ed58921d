//! The activation functions of Hugging Face's `ACT2FN` that vision towers use, by config
//! name. The bottom of the model stack: the CPU kernels ([`crate::models::kernels`]), the
//! fused passes and the layers all take an [`Activation`].

use candle_core::Tensor;

use crate::error::{Error, Result};

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

    /// Applies the activation with candle's ops (layers fuse it into the preceding linear
    /// instead: [`crate::models::layers::Linear::forward_act`]).
    pub fn forward(self, x: &Tensor) -> Result<Tensor> {
        Ok(match self {
            Activation::GeluTanh => x.gelu()?,
            Activation::GeluErf => x.gelu_erf()?,
            Activation::QuickGelu => (x * candle_nn::ops::sigmoid(&x.affine(1.702, 0.0)?)?)?,
            Activation::Silu => x.silu()?,
        })
    }
}
