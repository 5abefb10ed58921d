//! The LLaVA-style link between a vision tower and its language model, shared by every family
//! that follows `LlavaForConditionalGeneration` (LLaVA with CLIP/SigLIP towers, pixtral-12b,
//! Mistral3): which `hidden_states` feed the projector (`vision_feature_layer`) and the
//! two-layer MLP projector itself (`LlavaMultiModalProjector`); the language model's width
//! as the projectors read it; and the pixel shuffle of the tiled families.

use candle_core::Tensor;
use serde_json::Value;

use crate::config::ConfigObject;
use crate::error::{Error, Result};
use crate::models::activation::Activation;
use crate::models::layers::{Linear, Loader};
use crate::models::vit::{resolve_hidden_state, MAX_DIM};

/// `LlavaMultiModalProjector`: `linear_2(act(linear_1(x)))`.
pub struct MlpProjector {
    linear_1: Linear,
    act: Activation,
    linear_2: Linear,
}

impl MlpProjector {
    /// Loads `linear_1` (`in_dim` → `out_dim`) and `linear_2` (`out_dim` → `out_dim`) under
    /// `loader`, with biases when `bias`; the activation is config.json's
    /// `projector_hidden_act` (default `gelu`).
    pub fn load(
        loader: &Loader,
        cfg: &ConfigObject,
        in_dim: usize,
        out_dim: usize,
        bias: bool,
    ) -> Result<MlpProjector> {
        MlpProjector::load_named(loader, ["linear_1", "linear_2"], cfg, in_dim, out_dim, bias)
    }

    /// [`MlpProjector::load`] with the two linears under other names (first, second).
    pub fn load_named(
        loader: &Loader,
        names: [&str; 2],
        cfg: &ConfigObject,
        in_dim: usize,
        out_dim: usize,
        bias: bool,
    ) -> Result<MlpProjector> {
        let act = Activation::from_name(&cfg.string_or("projector_hidden_act", "gelu")?)
            .map_err(|e| e.context(format!("{}: projector_hidden_act", cfg.location())))?;
        Ok(MlpProjector {
            linear_1: loader.linear(names[0], in_dim, out_dim, bias)?,
            act,
            linear_2: loader.linear(names[1], out_dim, out_dim, bias)?,
        })
    }

    /// `[.., in_dim]` → `[.., out_dim]`.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        self.linear_2
            .forward(&self.linear_1.forward_act(x, self.act)?)
    }
}

/// The language model's width: `text_config.hidden_size`, else read off the output rows of
/// the projector's `linear` (the text model's class, and so its default width, varies).
pub(crate) fn text_width(cfg: &ConfigObject, proj: &Loader, linear: &str) -> Result<usize> {
    match cfg.object("text_config")? {
        Some(t) if t.contains("hidden_size") => t.positive_or("hidden_size", 0, MAX_DIM),
        _ => {
            let weight = proj.name(&format!("{linear}.weight"));
            Ok(*proj
                .shape(&format!("{linear}.weight"))?
                .first()
                .ok_or_else(|| Error::bad_weights(format!("{weight} has no dimensions")))?)
        }
    }
}

/// Reads `vision_feature_layer` (one index or a non-empty list, `default` when absent) and
/// resolves each index against the `num_layers + 1` hidden states of the tower, as
/// [`resolve_hidden_state`] does: 0 is the embeddings, negative values count from the end.
pub fn feature_layers(cfg: &ConfigObject, default: i64, num_layers: usize) -> Result<Vec<usize>> {
    let bad = |what: String| {
        Error::bad_config(format!(
            "{}: `vision_feature_layer`: {what}",
            cfg.location()
        ))
    };
    let raw = match cfg.value("vision_feature_layer") {
        None => vec![default],
        Some(Value::Array(items)) if !items.is_empty() => items
            .iter()
            .map(|v| {
                v.as_i64()
                    .ok_or_else(|| bad(format!("{v} is not an integer")))
            })
            .collect::<Result<Vec<_>>>()?,
        Some(v) => vec![v.as_i64().ok_or_else(|| {
            bad(format!(
                "expected an integer or a non-empty list, found {v}"
            ))
        })?],
    };
    raw.into_iter()
        .map(|i| resolve_hidden_state(i, num_layers))
        .collect::<Result<Vec<_>>>()
        .map_err(|e| e.context(format!("{}: vision_feature_layer", cfg.location())))
}

/// The pixel shuffle of InternVL (`InternVLModel.pixel_shuffle` with `scale_factor` = 1 /
/// `factor`) and Aya Vision (`AyaVisionMultiModalProjector.pixel_shuffle`): `[b, s*s, d]`
/// tokens of an `s` x `s` grid (row-major) become `[b, (s/f)^2, f*f*d]`, each output token
/// the `f` x `f` block at its place, channels ordered (row in the block, column in the
/// block, channel). Both references compute exactly this with their view / permute chains.
pub fn pixel_shuffle(x: &Tensor, side: usize, factor: usize) -> Result<Tensor> {
    merge_blocks(x, (side, side), (factor, factor))
}

/// [`pixel_shuffle`] of a `rows x cols` grid by `kh x kw` blocks: `[b, rows · cols, d]`
/// (row-major) becomes `[b, (rows / kh) · (cols / kw), kh · kw · d]`, each output token the
/// block at its place, channels ordered (row in the block, column in the block, channel)
/// (Kimi K2.5's `get_vision_temporal_merge_index` gather for one frame).
pub fn merge_blocks(
    x: &Tensor,
    (rows, cols): (usize, usize),
    (kh, kw): (usize, usize),
) -> Result<Tensor> {
    let (b, n, d) = x.dims3()?;
    if kh == 0 || kw == 0 || n != rows * cols || rows % kh != 0 || cols % kw != 0 {
        return Err(Error::compute(format!(
            "block merge: {n} tokens are not a {rows}x{cols} grid divisible by {kh}x{kw}"
        )));
    }
    let (r, c) = (rows / kh, cols / kw);
    Ok(x.reshape(vec![b, r, kh, c, kw, d])?
        .permute(vec![0, 1, 3, 2, 4, 5])?
        .contiguous()?
        .reshape((b, r * c, kh * kw * d))?)
}

/// Concatenates per-layer features along the channels (one layer: itself).
pub fn concat_features(mut states: Vec<Tensor>, dim: usize) -> Result<Tensor> {
    Ok(if states.len() == 1 {
        states.pop().expect("one state")
    } else {
        Tensor::cat(&states, dim)?
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pixel_shuffle_matches_the_reference_chain() {
        // InternVL's chain on a [1, 4, 4, 2] grid holding (row, col, channel) codes:
        // view(1, 4, 2, 4) -> permute(0, 2, 1, 3) -> view(1, 2, 2, 8) -> permute(0, 2, 1, 3).
        let code = |r: usize, c: usize, ch: usize| (r * 100 + c * 10 + ch) as f32;
        let mut v = Vec::new();
        for r in 0..4 {
            for c in 0..4 {
                for ch in 0..2 {
                    v.push(code(r, c, ch));
                }
            }
        }
        let x = Tensor::from_vec(v, (1, 16, 2), &candle_core::Device::Cpu).unwrap();
        let y = pixel_shuffle(&x, 4, 2).unwrap();
        assert_eq!(y.dims(), &[1, 4, 8]);
        let y = y.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        // Output token (R, C), channel (i, j, ch) = input (2R + i, 2C + j, ch).
        for rr in 0..2 {
            for cc in 0..2 {
                for i in 0..2 {
                    for j in 0..2 {
                        for ch in 0..2 {
                            let at = (rr * 2 + cc) * 8 + i * 4 + j * 2 + ch;
                            assert_eq!(y[at], code(2 * rr + i, 2 * cc + j, ch));
                        }
                    }
                }
            }
        }
        assert!(pixel_shuffle(&x, 4, 3).is_err());
        // A 2x4 grid in 2x2 blocks: token (0, 1) holds (0, 2), (0, 3), (1, 2), (1, 3).
        let v: Vec<f32> = (0..8).map(|i| i as f32).collect();
        let x = Tensor::from_vec(v, (1, 8, 1), &candle_core::Device::Cpu).unwrap();
        let y = merge_blocks(&x, (2, 4), (2, 2)).unwrap();
        let y = y.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        assert_eq!(y, [0., 1., 4., 5., 2., 3., 6., 7.]);
        assert!(merge_blocks(&x, (2, 4), (2, 3)).is_err());
    }

    #[test]
    fn feature_layer_indices() {
        let cfg = |s: &str| ConfigObject::parse("config.json", s).unwrap();
        assert_eq!(feature_layers(&cfg("{}"), -1, 4).unwrap(), vec![4]);
        assert_eq!(feature_layers(&cfg("{}"), -2, 4).unwrap(), vec![3]);
        assert_eq!(
            feature_layers(&cfg(r#"{"vision_feature_layer": [-1, 0, 2]}"#), -1, 4).unwrap(),
            vec![4, 0, 2]
        );
        assert!(feature_layers(&cfg(r#"{"vision_feature_layer": 5}"#), -1, 4).is_err());
        assert!(feature_layers(&cfg(r#"{"vision_feature_layer": -6}"#), -1, 4).is_err());
        assert!(feature_layers(&cfg(r#"{"vision_feature_layer": []}"#), -1, 4).is_err());
        assert!(feature_layers(&cfg(r#"{"vision_feature_layer": "x"}"#), -1, 4).is_err());
    }
}
