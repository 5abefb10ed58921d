//! The settings every Hugging Face image processor reads from `preprocessor_config.json`, one
//! reader per convention: `size`-style dicts ([`read_size`], [`read_patch_size`]), the
//! resample filter, rescale and normalization, and the shared defaults. Family processors
//! read their own keys and call these for the common ones.

use serde_json::Value;

use crate::config::ConfigObject;
use crate::error::{Error, Result};
use crate::preprocess::normalize::{three_channels, Normalization};
use crate::preprocess::resample::Filter;

/// Largest accepted size per side in any `size`-style setting (a real one is at most a few
/// thousand pixels).
pub(crate) const MAX_SIDE: usize = 16384;

/// `OPENAI_CLIP_MEAN` / `OPENAI_CLIP_STD` of `image_utils.py` (the defaults of the CLIP,
/// LLaVA, Pixtral and Qwen2-VL processors).
pub(crate) const OPENAI_CLIP_MEAN: [f64; 3] = [0.48145466, 0.4578275, 0.40821073];
pub(crate) const OPENAI_CLIP_STD: [f64; 3] = [0.26862954, 0.26130258, 0.27577711];

/// A resize target as `get_size_dict` normalizes `size`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResizeTo {
    /// Scale so that the short side is this long, keeping the aspect ratio.
    ShortestEdge(u32),
    /// Stretch to exactly this size.
    Exact { width: u32, height: u32 },
}

impl ResizeTo {
    /// The output `(width, height)` for an input of `width` x `height`
    /// (`get_resize_output_image_size` with `default_to_square=False`).
    pub fn output_size(self, width: u32, height: u32) -> (u32, u32) {
        match self {
            ResizeTo::Exact { width, height } => (width, height),
            ResizeTo::ShortestEdge(s) => {
                let (short, long) = if width <= height {
                    (width, height)
                } else {
                    (height, width)
                };
                // Python: int(s * long / short), a true division of exact integers.
                let new_long = (s as f64 * long as f64 / short as f64) as u32;
                if width <= height {
                    (s, new_long)
                } else {
                    (new_long, s)
                }
            }
        }
    }
}

/// Reads a size value as transformers' `get_size_dict` normalizes it: an integer
/// (`shortest_edge` when `int_is_shortest_edge`, i.e. the processor's `default_to_square` is
/// false; else a square), `[height, width]`, or a dict with `shortest_edge` or `height` and
/// `width` (null entries ignored). `None` when the key is absent.
pub fn read_size(
    pre: &ConfigObject,
    key: &str,
    int_is_shortest_edge: bool,
) -> Result<Option<ResizeTo>> {
    let bad = |what: String| Error::bad_config(format!("{}: `{key}`: {what}", pre.location()));
    let side = |v: &Value| -> Result<u32> {
        let n = v.as_u64().or_else(|| {
            v.as_f64()
                .filter(|f| f.fract() == 0.0 && *f >= 0.0)
                .map(|f| f as u64)
        });
        match n {
            Some(n) if n >= 1 && n as usize <= MAX_SIDE => Ok(n as u32),
            _ => Err(bad(format!("{v} is not a size between 1 and {MAX_SIDE}"))),
        }
    };
    match pre.value(key) {
        None => Ok(None),
        Some(v @ Value::Number(_)) => {
            let s = side(v)?;
            Ok(Some(if int_is_shortest_edge {
                ResizeTo::ShortestEdge(s)
            } else {
                ResizeTo::Exact {
                    width: s,
                    height: s,
                }
            }))
        }
        Some(Value::Array(items)) if items.len() == 2 => Ok(Some(ResizeTo::Exact {
            height: side(&items[0])?,
            width: side(&items[1])?,
        })),
        Some(Value::Object(map)) => {
            let get = |k: &str| map.get(k).filter(|v| !v.is_null());
            let mut keys: Vec<&str> = map
                .iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, _)| k.as_str())
                .collect();
            keys.sort_unstable();
            match keys.as_slice() {
                ["shortest_edge"] => Ok(Some(ResizeTo::ShortestEdge(side(
                    get("shortest_edge").expect("present"),
                )?))),
                ["height", "width"] => Ok(Some(ResizeTo::Exact {
                    height: side(get("height").expect("present"))?,
                    width: side(get("width").expect("present"))?,
                })),
                other => Err(bad(format!(
                    "keys {other:?} are not supported (use shortest_edge, or height and width)"
                ))),
            }
        }
        Some(other) => Err(bad(format!("expected a size, found {other}"))),
    }
}

/// Reads `key`, a positive integer (`default` when absent, at most `max`) that must equal the
/// model's own `want`, described by `what` for the error (e.g. "the vision tower's patch_size
/// 14 (config.json)").
pub fn read_matching(
    pre: &ConfigObject,
    key: &str,
    default: usize,
    max: usize,
    want: usize,
    what: &str,
) -> Result<usize> {
    let value = pre.positive_or(key, default, max)?;
    if value != want {
        return Err(Error::bad_config(format!(
            "{}: {key} {value} does not match {what}",
            pre.location()
        )));
    }
    Ok(value)
}

/// Reads a patch size given as an integer or as `{"height": p, "width": p}`.
pub fn read_patch_size(cfg: &ConfigObject, key: &str) -> Result<Option<usize>> {
    if let Some(obj) = cfg.object(key).ok().flatten() {
        let h = obj.usize_max("height", MAX_SIDE)?;
        let w = obj.usize_max("width", MAX_SIDE)?;
        return match (h, w) {
            (Some(h), Some(w)) if h == w && h > 0 => Ok(Some(h)),
            _ => Err(Error::bad_config(format!(
                "{}: `{key}` must be a positive integer or a square {{height, width}} (found {h:?} x {w:?})",
                cfg.location()
            ))),
        };
    }
    match cfg.usize_max(key, MAX_SIDE)? {
        Some(0) => Err(Error::bad_config(format!(
            "{}: `{key}` must be positive",
            cfg.location()
        ))),
        other => Ok(other),
    }
}

/// Reads the rescale/normalize settings shared by every HF image processor.
pub fn read_normalization(
    pre: &ConfigObject,
    default_mean: [f64; 3],
    default_std: [f64; 3],
) -> Result<Normalization> {
    let rescale = if pre.bool_or("do_rescale", true)? {
        Some(pre.f64_or("rescale_factor", 1.0 / 255.0)?)
    } else {
        None
    };
    let mean_std = if pre.bool_or("do_normalize", true)? {
        let mean = pre.f64_list("image_mean")?.unwrap_or(default_mean.to_vec());
        let std = pre.f64_list("image_std")?.unwrap_or(default_std.to_vec());
        Some((
            three_channels(&mean, "image_mean")?,
            three_channels(&std, "image_std")?,
        ))
    } else {
        None
    };
    let n = Normalization { rescale, mean_std };
    n.validate()?;
    Ok(n)
}

/// Reads `resample` (a PIL filter number), defaulting to `default`.
pub fn read_filter(pre: &ConfigObject, default: Filter) -> Result<Filter> {
    match pre.i64("resample")? {
        None => Ok(default),
        Some(code) => Filter::from_pil(code).ok_or_else(|| {
            Error::bad_config(format!(
                "{}: `resample` {code} is not a PIL filter (0..=5)",
                pre.location()
            ))
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shortest_edge_sizes_match_python() {
        // int(32 * 61 / 37) = 52
        assert_eq!(ResizeTo::ShortestEdge(32).output_size(61, 37), (52, 32));
        assert_eq!(ResizeTo::ShortestEdge(32).output_size(37, 61), (32, 52));
        assert_eq!(
            ResizeTo::ShortestEdge(336).output_size(300, 200),
            (504, 336)
        );
        assert_eq!(ResizeTo::ShortestEdge(30).output_size(48, 48), (30, 30));
    }
}
