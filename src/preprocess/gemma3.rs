//! `Gemma3ImageProcessor` (PIL backend, `image_processing_pil_gemma3.py`): the SigLIP pipeline
//! (stretch-resize to a fixed size, BILINEAR by default, rescale, normalize with mean = std =
//! 0.5) plus optional pan-and-scan: a wide or tall image is also cut into 2..=max crops along
//! its long side, each cut from the original image and then resized like the image itself.
//! The output is the image followed by its crops.
//!
//! Pan-and-scan settings that `preprocessor_config.json` leaves out or sets to null take the
//! values `Gemma3Processor` passes (`processing_gemma3.py`: off, 256, 4, 1.2).

use crate::config::ConfigObject;
use crate::error::{Error, Result};
use crate::preprocess::fixed_size::FixedSizeProcessor;
use crate::preprocess::limits::try_with_capacity;
use crate::preprocess::resample::Filter;
use crate::preprocess::{Limits, Pixels, PreprocessOptions, RgbImage};

use crate::preprocess::options::PAN_AND_SCAN_MAX_SETTING as MAX_SETTING;

/// Pan-and-scan parameters.
#[derive(Debug, Clone, PartialEq)]
pub struct PanAndScan {
    pub enabled: bool,
    pub min_crop_size: usize,
    pub max_num_crops: usize,
    pub min_ratio_to_activate: f64,
}

impl Default for PanAndScan {
    /// `Gemma3Processor`'s defaults.
    fn default() -> PanAndScan {
        PanAndScan {
            enabled: false,
            min_crop_size: 256,
            max_num_crops: 4,
            min_ratio_to_activate: 1.2,
        }
    }
}

impl PanAndScan {
    /// These settings with the call's overrides applied.
    pub fn with(&self, opts: &PreprocessOptions) -> PanAndScan {
        PanAndScan {
            enabled: opts.pan_and_scan.unwrap_or(self.enabled),
            min_crop_size: opts
                .pan_and_scan_min_crop_size
                .unwrap_or(self.min_crop_size),
            max_num_crops: opts
                .pan_and_scan_max_num_crops
                .unwrap_or(self.max_num_crops),
            min_ratio_to_activate: opts
                .pan_and_scan_min_ratio_to_activate
                .unwrap_or(self.min_ratio_to_activate),
        }
    }

    /// How an image is cut, exactly as `Gemma3ImageProcessorPil.pan_and_scan` decides:
    /// `(columns, rows, crop width, crop height)`, or `None` when it is not cropped.
    pub fn crop_grid(&self, width: u32, height: u32) -> Option<(u32, u32, u32, u32)> {
        if !self.enabled || width == 0 || height == 0 {
            return None;
        }
        let (w, h) = (width as f64, height as f64);
        let min_crop = self.min_crop_size.max(1) as f64;
        let max_crops = self.max_num_crops.max(1);
        let pick = |long: f64, short: f64| -> Option<usize> {
            if long / short < self.min_ratio_to_activate {
                return None;
            }
            let n = (long / short + 0.5).floor() as usize;
            let n = n.min((long / min_crop).floor() as usize);
            Some(n.max(2).min(max_crops))
        };
        // `n` is at most the long side (a u32) or 2.
        let (nw, nh) = if width >= height {
            (pick(w, h)? as u32, 1)
        } else {
            (1, pick(h, w)? as u32)
        };
        let crop_w = width.div_ceil(nw);
        let crop_h = height.div_ceil(nh);
        if (crop_w.min(crop_h) as usize) < self.min_crop_size {
            return None;
        }
        Some((nw, nh, crop_w, crop_h))
    }

    /// The crop rectangles `(x, y, width, height)` of an image, row by row (empty when the
    /// image is not cropped). Rectangles may reach past the image; they are cut to it when
    /// applied.
    pub fn crop_boxes(&self, width: u32, height: u32) -> Vec<(u32, u32, u32, u32)> {
        let Some((nw, nh, crop_w, crop_h)) = self.crop_grid(width, height) else {
            return Vec::new();
        };
        (0..nh)
            .flat_map(|iy| (0..nw).map(move |ix| (crop_w * ix, crop_h * iy, crop_w, crop_h)))
            .collect()
    }
}

/// The Gemma3 image processor, configured from `preprocessor_config.json`.
#[derive(Debug, Clone)]
pub struct Gemma3Processor {
    /// Resize + normalize of the image and of each crop.
    pub base: FixedSizeProcessor,
    /// The configured pan-and-scan (before per-call overrides).
    pub pan_and_scan: PanAndScan,
}

impl Gemma3Processor {
    /// The processor for a tower taking `image_size` x `image_size` inputs.
    pub fn from_config(pre: &ConfigObject, image_size: usize) -> Result<Gemma3Processor> {
        let base = FixedSizeProcessor::from_config(pre, image_size, Filter::Bilinear)?;
        let d = PanAndScan::default();
        let pas = PanAndScan {
            enabled: pre.bool_or("do_pan_and_scan", d.enabled)?,
            min_crop_size: pre.usize_or(
                "pan_and_scan_min_crop_size",
                d.min_crop_size,
                MAX_SETTING,
            )?,
            max_num_crops: pre.usize_or(
                "pan_and_scan_max_num_crops",
                d.max_num_crops,
                MAX_SETTING,
            )?,
            min_ratio_to_activate: pre.f64_or(
                "pan_and_scan_min_ratio_to_activate",
                d.min_ratio_to_activate,
            )?,
        };
        if pas.min_crop_size == 0 || pas.max_num_crops == 0 {
            return Err(Error::bad_config(format!(
                "{}: pan_and_scan_min_crop_size and pan_and_scan_max_num_crops must be at least 1",
                pre.location()
            )));
        }
        Ok(Gemma3Processor {
            base,
            pan_and_scan: pas,
        })
    }

    /// Preprocesses an image: `[3, S, S]` without crops, else `[1 + crops, 3, S, S]` (the
    /// image first). `tokens_side` is the side of each frame's token grid; the grid is
    /// `[1 + crops, side, side]`.
    pub fn process(
        &self,
        image: &RgbImage,
        opts: &PreprocessOptions,
        tokens_side: usize,
        limits: &Limits,
    ) -> Result<Pixels> {
        opts.validate()?;
        let pas = self.pan_and_scan.with(opts);
        let crops = pas
            .crop_grid(image.width, image.height)
            .map_or(0, |(nw, nh, _, _)| u64::from(nw) * u64::from(nh));
        let per_frame = (tokens_side * tokens_side) as u64;
        limits.check_tokens((1 + crops).saturating_mul(per_frame), &|| {
            format!("pan-and-scan into {crops} crops of {per_frame} tokens plus the image")
        })?;
        let boxes = pas.crop_boxes(image.width, image.height);
        let grid = [1 + boxes.len(), tokens_side, tokens_side];
        let first = self.base.process(image, grid, limits)?;
        if boxes.is_empty() {
            return Ok(first);
        }
        let mut data = try_with_capacity(first.data.len() * grid[0], "pan-and-scan frames")?;
        data.extend_from_slice(&first.data);
        for (x, y, w, h) in boxes {
            let mut crop = image.crop(x, y, w, h)?;
            if (crop.width == 0 || crop.height == 0) && self.base.do_resize {
                // More crops than the long side has room for (only with tiny images and crop
                // sizes): the reference slices an empty array, which PIL resizes to black.
                let (sw, sh) = self.base.size;
                crop = RgbImage::new(sw, sh, vec![0; sw as usize * sh as usize * 3])?;
            }
            data.extend_from_slice(&self.base.process(&crop, grid, limits)?.data);
        }
        let mut shape = vec![grid[0]];
        shape.extend_from_slice(&first.shape);
        Ok(Pixels {
            data,
            shape,
            grid,
            extra: Vec::new(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pas(min_crop: usize, max_crops: usize) -> PanAndScan {
        PanAndScan {
            enabled: true,
            min_crop_size: min_crop,
            max_num_crops: max_crops,
            min_ratio_to_activate: 1.2,
        }
    }

    #[test]
    fn crop_boxes_follow_the_reference_rules() {
        // 300x200: ratio 1.5 -> round(1.5) = 2 crops of 150x200.
        assert_eq!(
            pas(20, 3).crop_boxes(300, 200),
            vec![(0, 0, 150, 200), (150, 0, 150, 200)]
        );
        // 30x100 portrait: ratio 3.33 -> 3 crops of ceil(100/3) = 34 rows (the last is cut).
        assert_eq!(
            pas(20, 3).crop_boxes(30, 100),
            vec![(0, 0, 30, 34), (0, 34, 30, 34), (0, 68, 30, 34)]
        );
        // 120x30: ratio 4 -> 4, capped at max_num_crops 3.
        assert_eq!(pas(20, 3).crop_boxes(120, 30).len(), 3);
        // Below the activation ratio: nothing.
        assert!(pas(20, 3).crop_boxes(110, 100).is_empty());
        // 32x24: 2 crops of 16 px < min crop 20: nothing.
        assert!(pas(20, 3).crop_boxes(32, 24).is_empty());
        // floor(long / min_crop) limits the count, but never below 2.
        assert_eq!(pas(256, 4).crop_boxes(1000, 300).len(), 3);
        assert_eq!(pas(256, 4).crop_boxes(600, 100).len(), 0); // 300 x 100 crops: 100 < 256
                                                               // 5x1 with 4 crops of ceil(5/4) = 2: the last starts past the image.
        let boxes = pas(1, 4).crop_boxes(5, 1);
        assert_eq!(boxes.last(), Some(&(6, 0, 2, 1)));
        let processor = Gemma3Processor {
            base: FixedSizeProcessor::from_config(
                &ConfigObject::parse("p", r#"{"size": {"height": 4, "width": 4}}"#).unwrap(),
                4,
                Filter::Bilinear,
            )
            .unwrap(),
            pan_and_scan: pas(1, 4),
        };
        let img = RgbImage::new(5, 1, vec![9; 15]).unwrap();
        let px = processor
            .process(&img, &PreprocessOptions::default(), 2, &Limits::default())
            .unwrap();
        assert_eq!(px.shape, vec![5, 3, 4, 4]);
        // Frame 4 is the empty crop: black, -1 after normalization with mean = std = 0.5
        // (transformers 5.23 gives the same).
        assert!(px.data[4 * 48..].iter().all(|&v| v == -1.0));
        assert!(px.data[3 * 48..4 * 48].iter().all(|&v| v != -1.0));
        let off = PanAndScan {
            enabled: false,
            ..pas(1, 4)
        };
        assert!(off.crop_boxes(1000, 10).is_empty());
        // Per-call settings that would cut a 20000x1 strip into 20000 crops are refused by
        // the token cap before any crop is made.
        let strip = RgbImage::new(20_000, 1, vec![1; 60_000]).unwrap();
        let greedy = PreprocessOptions {
            pan_and_scan: Some(true),
            pan_and_scan_min_crop_size: Some(1),
            pan_and_scan_max_num_crops: Some(65_536),
            pan_and_scan_min_ratio_to_activate: Some(1e-9),
            ..PreprocessOptions::default()
        };
        let e = processor
            .process(&strip, &greedy, 2, &Limits::default())
            .unwrap_err();
        assert_eq!(e.status(), crate::Status::ImageTooLarge);
        assert!(e.message().contains("20000 crops"), "{e}");
    }
}
