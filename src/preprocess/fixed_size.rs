//! Fixed-size preprocessing, shared by every processor that stretches an image to the tower's
//! square input: `SiglipImageProcessor` (PIL backend, `image_processing_pil_siglip.py`:
//! stretch-resize to a fixed size, no aspect preservation, no crop, rescale, normalize; used
//! by SigLIP and LLaVA with `SiglipImageProcessor`) and the base of Gemma3's processor (the same
//! pipeline with a bilinear filter).

use crate::config::ConfigObject;
use crate::error::{Error, Result};
use crate::preprocess::normalize::Normalization;
use crate::preprocess::resample::{resize, Filter};
use crate::preprocess::settings::{read_filter, read_normalization, read_size, ResizeTo};
use crate::preprocess::{Limits, Pixels, RgbImage};

/// Fixed-size resize + normalize, configured from `preprocessor_config.json`.
#[derive(Debug, Clone)]
pub struct FixedSizeProcessor {
    /// Target `(width, height)`.
    pub size: (u32, u32),
    /// `size` was given as one integer (or `{"shortest_edge": s}`) to a processor whose
    /// `default_to_square` is false (`SiglipImageProcessor`): transformers then resizes the
    /// shortest edge to `s` keeping the aspect ratio, so only images that come out `size`
    /// (square ones) are valid; others fail in the model there, and are refused here.
    pub shortest_edge: bool,
    pub do_resize: bool,
    pub filter: Filter,
    pub normalization: Normalization,
}

impl FixedSizeProcessor {
    /// The processor for a model whose tower takes `image_size` x `image_size` inputs, for a
    /// processor class with `default_to_square` true (Gemma3's: an integer `size` is a
    /// square). `default_filter` is the processor class's default resample filter.
    pub fn from_config(
        pre: &ConfigObject,
        image_size: usize,
        default_filter: Filter,
    ) -> Result<FixedSizeProcessor> {
        FixedSizeProcessor::read(pre, image_size, default_filter, true)
    }

    /// As [`FixedSizeProcessor::from_config`] for `SiglipImageProcessor`, whose
    /// `default_to_square` is false: an integer `size` means `{"shortest_edge": size}`.
    pub fn from_siglip_config(
        pre: &ConfigObject,
        image_size: usize,
        default_filter: Filter,
    ) -> Result<FixedSizeProcessor> {
        FixedSizeProcessor::read(pre, image_size, default_filter, false)
    }

    fn read(
        pre: &ConfigObject,
        image_size: usize,
        default_filter: Filter,
        default_to_square: bool,
    ) -> Result<FixedSizeProcessor> {
        let size = read_size(pre, "size", !default_to_square)?.unwrap_or(ResizeTo::Exact {
            width: image_size as u32,
            height: image_size as u32,
        });
        let (w, h, shortest_edge) = match size {
            ResizeTo::Exact { width, height } => (width as usize, height as usize, false),
            ResizeTo::ShortestEdge(s) => (s as usize, s as usize, true),
        };
        let do_resize = pre.bool_or("do_resize", true)?;
        if do_resize && (w != image_size || h != image_size) {
            let what = if shortest_edge {
                format!("shortest edge {w}")
            } else {
                format!("{w}x{h}")
            };
            return Err(Error::bad_config(format!(
                "{}: `size` {what} does not match the vision tower's image_size {image_size}",
                pre.location()
            )));
        }
        Ok(FixedSizeProcessor {
            size: (image_size as u32, image_size as u32),
            shortest_edge,
            do_resize,
            filter: read_filter(pre, default_filter)?,
            normalization: read_normalization(pre, [0.5; 3], [0.5; 3])?,
        })
    }

    /// Resizes (when needed) and normalizes into `[3, H, W]`; `grid` is the token grid the
    /// model will produce from it.
    pub fn process(&self, image: &RgbImage, grid: [usize; 3], limits: &Limits) -> Result<Pixels> {
        let (w, h) = self.size;
        let resized;
        let image = if image.width == w && image.height == h {
            image
        } else if self.do_resize {
            if self.shortest_edge {
                let (ow, oh) = ResizeTo::ShortestEdge(w).output_size(image.width, image.height);
                if (ow, oh) != (w, h) {
                    return Err(Error::invalid_argument(format!(
                        "image is {}x{}: preprocessor_config.json gives `size` as a shortest edge \
                         ({w}), which keeps the aspect ratio and gives {ow}x{oh}, but the model \
                         takes {w}x{h} (transformers fails on it too)",
                        image.width, image.height
                    )));
                }
            }
            resized = resize(image, w, h, self.filter, limits)?;
            &resized
        } else {
            return Err(Error::invalid_argument(format!(
                "image is {}x{} but the model takes {w}x{h} and preprocessor_config.json sets do_resize=false",
                image.width, image.height
            )));
        };
        Ok(Pixels {
            data: self.normalization.to_chw(image)?,
            shape: vec![3, h as usize, w as usize],
            grid,
            extra: Vec::new(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image(w: u32, h: u32) -> RgbImage {
        RgbImage::new(w, h, (0..w * h * 3).map(|v| (v % 251) as u8).collect()).unwrap()
    }

    #[test]
    fn an_integer_size_is_a_shortest_edge_for_siglip_and_a_square_for_gemma3() {
        let int = ConfigObject::parse("p", r#"{"size": 4}"#).unwrap();
        let edge = ConfigObject::parse("p", r#"{"size": {"shortest_edge": 4}}"#).unwrap();
        let hw = ConfigObject::parse("p", r#"{"size": {"height": 4, "width": 4}}"#).unwrap();
        for pre in [&int, &edge] {
            let p = FixedSizeProcessor::from_siglip_config(pre, 4, Filter::Bicubic).unwrap();
            assert!(p.shortest_edge);
            // Square images come out 4x4 either way, as the stretch would give them.
            let want = FixedSizeProcessor::from_siglip_config(&hw, 4, Filter::Bicubic)
                .unwrap()
                .process(&image(8, 8), [1, 1, 1], &Limits::default())
                .unwrap();
            assert_eq!(
                p.process(&image(8, 8), [1, 1, 1], &Limits::default())
                    .unwrap()
                    .data,
                want.data
            );
            // Others keep their aspect (8x6 -> 5x4): transformers cannot run them.
            let e = p
                .process(&image(8, 6), [1, 1, 1], &Limits::default())
                .unwrap_err();
            assert!(e.message().contains("5x4"), "{e}");
        }
        let square = FixedSizeProcessor::from_config(&int, 4, Filter::Bilinear).unwrap();
        assert!(!square.shortest_edge);
        assert!(square
            .process(&image(8, 6), [1, 1, 1], &Limits::default())
            .is_ok());
        let e = FixedSizeProcessor::from_siglip_config(&int, 6, Filter::Bicubic).unwrap_err();
        assert!(e.message().contains("shortest edge 4"), "{e}");
    }
}
