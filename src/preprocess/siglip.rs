//! `SiglipImageProcessor` (PIL backend, `image_processing_pil_siglip.py`): stretch-resize to a
//! fixed size (no aspect preservation, no crop), rescale, normalize. Gemma3's default path is
//! the same pipeline with a bilinear filter.

use crate::config::ConfigObject;
use crate::error::{Error, Result};
use crate::preprocess::normalize::{three_channels, Normalization};
use crate::preprocess::resample::{resize, Filter};
use crate::preprocess::{Pixels, RgbImage};

/// Largest accepted target size per side (a real one is a few hundred pixels).
const MAX_SIDE: usize = 16384;

/// Fixed-size resize + normalize, configured from `preprocessor_config.json`.
#[derive(Debug, Clone)]
pub struct FixedSizeProcessor {
    /// Target `(width, height)`.
    pub size: (u32, u32),
    pub do_resize: bool,
    pub filter: Filter,
    pub normalization: Normalization,
}

/// Reads `size` given as `{"height": h, "width": w}` or as one integer.
fn read_size(pre: &ConfigObject, default: (usize, usize)) -> Result<(usize, usize)> {
    if let Some(obj) = pre.object("size").ok().flatten() {
        let h = obj.usize_max("height", MAX_SIDE)?;
        let w = obj.usize_max("width", MAX_SIDE)?;
        return match (w, h) {
            (Some(w), Some(h)) if w > 0 && h > 0 => Ok((w, h)),
            _ => Err(Error::bad_config(format!(
                "{}: `size` must have positive `height` and `width`",
                pre.location()
            ))),
        };
    }
    match pre.usize_max("size", MAX_SIDE)? {
        Some(0) => Err(Error::bad_config(format!(
            "{}: `size` is 0",
            pre.location()
        ))),
        Some(s) => Ok((s, s)),
        None => Ok(default),
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

impl FixedSizeProcessor {
    /// The SigLIP processor for a model whose tower takes `image_size` x `image_size`
    /// inputs. `default_filter` is the processor class's default resample filter.
    pub fn from_config(
        pre: &ConfigObject,
        image_size: usize,
        default_filter: Filter,
    ) -> Result<FixedSizeProcessor> {
        let (w, h) = read_size(pre, (image_size, image_size))?;
        let do_resize = pre.bool_or("do_resize", true)?;
        if do_resize && (w != image_size || h != image_size) {
            return Err(Error::bad_config(format!(
                "{}: `size` {w}x{h} does not match the vision tower's image_size {image_size}",
                pre.location()
            )));
        }
        Ok(FixedSizeProcessor {
            size: (image_size as u32, image_size as u32),
            do_resize,
            filter: read_filter(pre, default_filter)?,
            normalization: read_normalization(pre, [0.5; 3], [0.5; 3])?,
        })
    }

    /// Resizes (when needed) and normalizes into `[3, H, W]`; `grid` is the token grid the
    /// model will produce from it.
    pub fn process(&self, image: &RgbImage, grid: [usize; 3]) -> Result<Pixels> {
        let (w, h) = self.size;
        let resized;
        let image = if image.width == w && image.height == h {
            image
        } else if self.do_resize {
            resized = resize(image, w, h, self.filter);
            &resized
        } else {
            return Err(Error::invalid_argument(format!(
                "image is {}x{} but the model takes {w}x{h} and preprocessor_config.json sets do_resize=false",
                image.width, image.height
            )));
        };
        Ok(Pixels {
            data: self.normalization.to_chw(image),
            shape: vec![3, h as usize, w as usize],
            grid,
        })
    }
}
