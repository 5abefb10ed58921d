//! `CLIPImageProcessor` and `LlavaImageProcessor` (PIL backend: `image_processing_pil_clip.py`,
//! `image_processing_pil_llava.py`, `PilBackend` in `image_processing_backends.py`):
//!
//! 1. LLaVA only, when `do_pad`: pad to a centered square filled with `int(255 * mean[c])`;
//! 2. resize (`size`): `{"shortest_edge": s}` keeps the aspect ratio (the long side becomes
//!    `int(s * long / short)`), `{"height", "width"}` stretches; BICUBIC by default;
//! 3. center crop (`crop_size`), padding with zeros where the image is smaller;
//! 4. rescale and normalize (OpenAI CLIP mean/std by default).

use crate::config::ConfigObject;
use crate::error::{Error, Result};
use crate::preprocess::normalize::Normalization;
use crate::preprocess::resample::{resize, Filter};
use crate::preprocess::settings::{
    read_filter, read_normalization, read_size, ResizeTo, OPENAI_CLIP_MEAN, OPENAI_CLIP_STD,
};
use crate::preprocess::{Limits, Pixels, RgbImage};

/// Which processor class the config names (they differ only in defaults and `do_pad`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClipKind {
    /// `CLIPImageProcessor`.
    Clip,
    /// `LlavaImageProcessor` (adds `do_pad`, pad-to-square before resizing).
    Llava,
}

/// `CLIPImageProcessor` / `LlavaImageProcessor`, configured from `preprocessor_config.json`.
#[derive(Debug, Clone)]
pub struct ClipProcessor {
    /// `do_pad` (LLaVA): the fill color of the square canvas.
    pub pad_to_square: Option<[u8; 3]>,
    /// `do_resize`: target and filter.
    pub resize: Option<(ResizeTo, Filter)>,
    /// `do_center_crop`: `(width, height)`.
    pub crop: Option<(u32, u32)>,
    pub normalization: Normalization,
    /// The tower's input side: every processed image must end up this size.
    pub tower_size: u32,
}

impl ClipProcessor {
    /// The processor of class `kind` for a tower taking `tower_size` x `tower_size` inputs.
    /// Fails when the configured output size cannot be the tower's.
    pub fn from_config(
        pre: &ConfigObject,
        kind: ClipKind,
        tower_size: usize,
    ) -> Result<ClipProcessor> {
        let size = read_size(pre, "size", true)?.unwrap_or(ResizeTo::ShortestEdge(224));
        let crop = match read_size(pre, "crop_size", false)? {
            Some(ResizeTo::Exact { width, height }) => (width, height),
            Some(ResizeTo::ShortestEdge(_)) => unreachable!("crop_size integers are squares"),
            None => (224, 224),
        };
        let do_resize = pre.bool_or("do_resize", true)?;
        let do_crop = pre.bool_or("do_center_crop", true)?;
        let pad = kind == ClipKind::Llava && pre.bool_or("do_pad", false)?;
        let pad_to_square = if pad {
            let mean = pre
                .f64_list("image_mean")?
                .unwrap_or(OPENAI_CLIP_MEAN.to_vec());
            let fill: Vec<i64> = mean.iter().map(|m| (m * 255.0) as i64).collect();
            match fill.as_slice() {
                [r, g, b] if fill.iter().all(|v| (0..=255).contains(v)) => {
                    Some([*r as u8, *g as u8, *b as u8])
                }
                _ => {
                    return Err(Error::bad_config(format!(
                        "{}: do_pad needs three `image_mean` values in [0, 1] for the fill color, found {mean:?}",
                        pre.location()
                    )))
                }
            }
        } else {
            None
        };
        let p = ClipProcessor {
            pad_to_square,
            resize: if do_resize {
                Some((size, read_filter(pre, Filter::Bicubic)?))
            } else {
                None
            },
            crop: do_crop.then_some(crop),
            normalization: read_normalization(pre, OPENAI_CLIP_MEAN, OPENAI_CLIP_STD)?,
            tower_size: tower_size as u32,
        };
        let fixed = match (p.crop, p.resize) {
            (Some(c), _) => Some(c),
            (None, Some((ResizeTo::Exact { width, height }, _))) => Some((width, height)),
            _ => None,
        };
        if let Some((w, h)) = fixed {
            if (w, h) != (p.tower_size, p.tower_size) {
                return Err(Error::bad_config(format!(
                    "{}: images come out {w}x{h} but the vision tower takes {tower_size}x{tower_size}",
                    pre.location()
                )));
            }
        }
        Ok(p)
    }

    /// Pad, resize, crop and normalize into `[3, S, S]`; `grid` is the token grid. Every
    /// intermediate image is checked against `limits` before it is made.
    pub fn process(&self, image: &RgbImage, grid: [usize; 3], limits: &Limits) -> Result<Pixels> {
        let mut img = std::borrow::Cow::Borrowed(image);
        if let Some(fill) = self.pad_to_square {
            let (w, h) = (img.width, img.height);
            if w != h {
                let side = w.max(h);
                let (x, y) = if w > h {
                    (0, (side - h) / 2)
                } else {
                    ((side - w) / 2, 0)
                };
                let canvas = "the pad-to-square canvas (LlavaImageProcessor do_pad)";
                let padded =
                    img.place_on((side, side), (x as i64, y as i64), fill, limits, canvas)?;
                img = std::borrow::Cow::Owned(padded);
            }
        }
        if let Some((to, filter)) = self.resize {
            let (w, h) = to.output_size(img.width, img.height);
            if (w, h) != (img.width, img.height) {
                img = std::borrow::Cow::Owned(resize(&img, w, h, filter, limits)?);
            }
        }
        if let Some((cw, ch)) = self.crop {
            img = std::borrow::Cow::Owned(center_crop(&img, cw, ch, limits)?);
        }
        let s = self.tower_size;
        if (img.width, img.height) != (s, s) {
            return Err(Error::invalid_argument(format!(
                "image is {}x{} after preprocessing (preprocessor_config.json has no center crop) \
                 but the vision tower takes {s}x{s}",
                img.width, img.height
            )));
        }
        Ok(Pixels {
            data: self.normalization.to_chw(&img)?,
            shape: vec![3, s as usize, s as usize],
            grid,
            extra: Vec::new(),
        })
    }
}

/// `image_transforms.center_crop`: the centered `width` x `height` window (offsets rounded
/// down), padding with zeros first where the image is smaller than the window. The padded
/// canvas is never made: the window is cut from it directly.
pub fn center_crop(image: &RgbImage, width: u32, height: u32, limits: &Limits) -> Result<RgbImage> {
    let (iw, ih) = (image.width as i64, image.height as i64);
    let (cw, ch) = (width as i64, height as i64);
    let top = (ih - ch).div_euclid(2);
    let left = (iw - cw).div_euclid(2);
    if top >= 0 && left >= 0 && top + ch <= ih && left + cw <= iw {
        return image.crop(left as u32, top as u32, width, height);
    }
    // The reference pads to max(crop, image) per side, the image at ceil(pad / 2), then cuts
    // the window [l, l + cw) x [t, t + ch) of that canvas, clipped to it.
    let (nw, nh) = (cw.max(iw), ch.max(ih));
    let (pad_left, pad_top) = ((nw - iw + 1) / 2, (nh - ih + 1) / 2);
    let (t, l) = (top + pad_top, left + pad_left);
    let (t0, l0) = (t.max(0), l.max(0));
    let (t1, l1) = ((t + ch).min(nh), (l + cw).min(nw));
    image.place_on(
        ((l1 - l0) as u32, (t1 - t0) as u32),
        (pad_left - l0, pad_top - t0),
        [0, 0, 0],
        limits,
        "the center crop",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gradient(w: u32, h: u32) -> RgbImage {
        let data = (0..h)
            .flat_map(|y| (0..w).flat_map(move |x| [x as u8, y as u8, 7]))
            .collect();
        RgbImage::new(w, h, data).unwrap()
    }

    #[test]
    fn center_crop_offsets_round_down_and_pad_with_zeros() {
        let img = gradient(7, 4);
        let l = Limits::default();
        let c = center_crop(&img, 4, 2, &l).unwrap();
        // top = (4-2)//2 = 1, left = (7-4)//2 = 1
        assert_eq!((c.width, c.height), (4, 2));
        assert_eq!(c.pixel(0, 0), [1, 1, 7]);
        // Larger than the image: 7x4 -> 9x7 canvas, image at (ceil(2/2), ceil(3/2)) = (1, 2).
        let p = center_crop(&img, 9, 7, &l).unwrap();
        assert_eq!((p.width, p.height), (9, 7));
        assert_eq!(p.pixel(0, 0), [0, 0, 0]);
        assert_eq!(p.pixel(1, 2), [0, 0, 7]);
        assert_eq!(p.pixel(7, 5), [6, 3, 7]);
        // Mixed: taller window than the image, narrower than it.
        let m = center_crop(&img, 3, 6, &l).unwrap();
        assert_eq!((m.width, m.height), (3, 6));
        // left = (7-3)//2 = 2; rows: image at canvas row 1 (ceil(2/2)), top = -1 + 1 = 0.
        assert_eq!(m.pixel(0, 0), [0, 0, 0]);
        assert_eq!(m.pixel(0, 1), [2, 0, 7]);
    }

    /// The reference algorithm as written: pad to a canvas, then cut the window.
    fn padded_then_cut(image: &RgbImage, width: u32, height: u32) -> RgbImage {
        let (iw, ih) = (image.width as i64, image.height as i64);
        let (cw, ch) = (width as i64, height as i64);
        let (top, left) = ((ih - ch).div_euclid(2), (iw - cw).div_euclid(2));
        let (nw, nh) = (cw.max(iw), ch.max(ih));
        let (pad_left, pad_top) = ((nw - iw + 1) / 2, (nh - ih + 1) / 2);
        let l = Limits::default();
        let canvas = image
            .place_on((nw as u32, nh as u32), (pad_left, pad_top), [0; 3], &l, "c")
            .unwrap();
        let (t, le) = (top + pad_top, left + pad_left);
        let (t0, l0) = (t.max(0), le.max(0));
        let (t1, l1) = ((t + ch).min(nh), (le + cw).min(nw));
        canvas
            .crop(l0 as u32, t0 as u32, (l1 - l0) as u32, (t1 - t0) as u32)
            .unwrap()
    }

    #[test]
    fn center_crop_equals_padding_then_cutting_without_the_canvas() {
        let l = Limits::default();
        for (iw, ih) in [(7, 4), (4, 7), (1, 9), (9, 1), (3, 3), (10, 2)] {
            let img = gradient(iw, ih);
            for (cw, ch) in [(1, 1), (4, 2), (2, 4), (9, 7), (12, 12), (5, 1), (3, 6)] {
                let got = center_crop(&img, cw, ch, &l).unwrap();
                assert_eq!(got, padded_then_cut(&img, cw, ch), "{iw}x{ih} -> {cw}x{ch}");
            }
        }
        // A 10^6 x 1 strip center-cropped to 32x32 needs no 10^6 x 32 canvas.
        let strip = RgbImage::new(1_000_000, 1, vec![5; 3_000_000]).unwrap();
        let tight = Limits {
            max_pixels: 2000,
            ..Limits::default()
        };
        let c = center_crop(&strip, 32, 32, &tight).unwrap();
        assert_eq!((c.width, c.height), (32, 32));
        assert_eq!(c.pixel(0, 16), [5; 3]);
        assert_eq!(c.pixel(0, 0), [0; 3]);
    }

    #[test]
    fn pad_to_square_is_bounded_by_the_pixel_limit() {
        let pre = ConfigObject::parse(
            "preprocessor_config.json",
            r#"{"size": 32, "crop_size": 32, "do_pad": true}"#,
        )
        .unwrap();
        let p = ClipProcessor::from_config(&pre, ClipKind::Llava, 32).unwrap();
        let strip = RgbImage::new(1_000_000, 1, vec![0; 3_000_000]).unwrap();
        let e = p
            .process(&strip, [1, 2, 2], &Limits::default())
            .unwrap_err();
        assert_eq!(e.status(), crate::Status::ImageTooLarge);
        assert!(e.message().contains("pad-to-square"), "{e}");
        // Without padding the shortest-edge resize would scale the long side to 32·10⁶.
        let clip = ClipProcessor::from_config(&pre, ClipKind::Clip, 32).unwrap();
        let e = clip
            .process(&strip, [1, 2, 2], &Limits::default())
            .unwrap_err();
        assert_eq!(e.status(), crate::Status::ImageTooLarge);
    }

    #[test]
    fn config_sizes_and_mismatches() {
        let pre = ConfigObject::parse(
            "preprocessor_config.json",
            r#"{"size": 32, "crop_size": 32, "do_pad": true}"#,
        )
        .unwrap();
        let p = ClipProcessor::from_config(&pre, ClipKind::Llava, 32).unwrap();
        assert_eq!(p.resize.unwrap().0, ResizeTo::ShortestEdge(32));
        assert_eq!(p.crop, Some((32, 32)));
        // int(0.48145466 * 255) = 122, int(0.4578275 * 255) = 116, int(0.40821073 * 255) = 104
        assert_eq!(p.pad_to_square, Some([122, 116, 104]));
        // CLIP ignores do_pad (it only pads batches to a common size).
        let c = ClipProcessor::from_config(&pre, ClipKind::Clip, 32).unwrap();
        assert_eq!(c.pad_to_square, None);
        let e = ClipProcessor::from_config(&pre, ClipKind::Clip, 48).unwrap_err();
        assert!(e.message().contains("48x48"), "{}", e.message());
        let bad = ConfigObject::parse(
            "preprocessor_config.json",
            r#"{"size": {"shortest_edge": 32, "longest_edge": 64}}"#,
        )
        .unwrap();
        assert!(ClipProcessor::from_config(&bad, ClipKind::Clip, 224).is_err());
    }
}
