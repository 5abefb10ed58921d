//! A decoded 8-bit RGB image, the common currency between decoding, resizing and normalizing.

use crate::error::{Error, Result};
use crate::preprocess::limits::{buffer_len, try_with_capacity, Limits};

/// Tightly packed 8-bit RGB pixels, row-major, `width * height * 3` bytes.
#[derive(Clone, PartialEq, Eq)]
pub struct RgbImage {
    pub width: u32,
    pub height: u32,
    pub data: Vec<u8>,
}

impl std::fmt::Debug for RgbImage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "RgbImage({}x{})", self.width, self.height)
    }
}

impl RgbImage {
    /// An image from packed RGB bytes; fails when the length does not match the size.
    pub fn new(width: u32, height: u32, data: Vec<u8>) -> Result<RgbImage> {
        let expected = (width as usize)
            .checked_mul(height as usize)
            .and_then(|n| n.checked_mul(3));
        if expected != Some(data.len()) {
            return Err(Error::invalid_argument(format!(
                "RGB buffer of {} bytes does not match {width}x{height}x3",
                data.len()
            )));
        }
        Ok(RgbImage {
            width,
            height,
            data,
        })
    }

    /// The three channel values of pixel (x, y).
    pub fn pixel(&self, x: u32, y: u32) -> [u8; 3] {
        let i = (y as usize * self.width as usize + x as usize) * 3;
        [self.data[i], self.data[i + 1], self.data[i + 2]]
    }

    /// The `width` x `height` region whose top-left corner is (`x`, `y`), cut to the image
    /// bounds as numpy slicing `image[y:y+height, x:x+width]` does. Empty when (`x`, `y`) lies
    /// outside. The result is never larger than this image.
    pub fn crop(&self, x: u32, y: u32, width: u32, height: u32) -> Result<RgbImage> {
        let x1 = x.saturating_add(width).min(self.width);
        let y1 = y.saturating_add(height).min(self.height);
        let (x0, y0) = (x.min(x1), y.min(y1));
        let row = (x1 - x0) as usize * 3;
        let mut data = try_with_capacity(row * (y1 - y0) as usize, "an image crop")?;
        for yy in y0..y1 {
            let start = (yy as usize * self.width as usize + x0 as usize) * 3;
            data.extend_from_slice(&self.data[start..start + row]);
        }
        Ok(RgbImage {
            width: x1 - x0,
            height: y1 - y0,
            data,
        })
    }

    /// Places this image on a `(width, height)` canvas filled with `fill`, its top-left corner
    /// at `(x, y)` (parts falling outside the canvas are dropped). `step` names the canvas in
    /// errors; its size is checked against `limits` before anything is allocated.
    pub fn place_on(
        &self,
        (width, height): (u32, u32),
        (x, y): (i64, i64),
        fill: [u8; 3],
        limits: &Limits,
        step: &str,
    ) -> Result<RgbImage> {
        limits.check_image(step, u64::from(width), u64::from(height))?;
        let len = buffer_len(u64::from(width), u64::from(height), 3, step)?;
        let mut data = try_with_capacity(len, step)?;
        for _ in 0..len / 3 {
            data.extend_from_slice(&fill);
        }
        // The source columns and rows that land on the canvas.
        let span = |offset: i64, src: u32, dst: u32| -> (i64, i64) {
            let lo = (-offset).clamp(0, i64::from(src));
            let hi = (i64::from(dst) - offset).clamp(lo, i64::from(src));
            (lo, hi)
        };
        let (sx0, sx1) = span(x, self.width, width);
        let (sy0, sy1) = span(y, self.height, height);
        let run = (sx1 - sx0) as usize * 3;
        for sy in (sy0..sy1).filter(|_| run > 0) {
            let s = ((sy * i64::from(self.width) + sx0) * 3) as usize;
            let d = (((sy + y) * i64::from(width) + sx0 + x) * 3) as usize;
            data[d..d + run].copy_from_slice(&self.data[s..s + run]);
        }
        Ok(RgbImage {
            width,
            height,
            data,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crop_clips_like_numpy_and_place_on_pads() {
        // 3x2 image, pixel value = 10*y + x in every channel.
        let data: Vec<u8> = (0..2u8)
            .flat_map(|y| (0..3u8).flat_map(move |x| [10 * y + x; 3]))
            .collect();
        let img = RgbImage::new(3, 2, data).unwrap();
        let c = img.crop(1, 1, 5, 5).unwrap();
        assert_eq!((c.width, c.height), (2, 1));
        assert_eq!(c.pixel(0, 0), [11; 3]);
        assert_eq!(c.pixel(1, 0), [12; 3]);
        assert_eq!(img.crop(4, 0, 2, 2).unwrap().width, 0);
        let l = Limits::default();
        let p = img
            .place_on((5, 3), (1, -1), [7, 8, 9], &l, "canvas")
            .unwrap();
        assert_eq!((p.width, p.height), (5, 3));
        assert_eq!(p.pixel(0, 0), [7, 8, 9]);
        assert_eq!(p.pixel(1, 0), [10; 3]);
        assert_eq!(p.pixel(3, 0), [12; 3]);
        assert_eq!(p.pixel(1, 1), [7, 8, 9]);
        // Far outside on every side: only the fill.
        for (x, y) in [(-10, 0), (10, 0), (0, -10), (0, 10)] {
            let q = img
                .place_on((2, 2), (x, y), [1, 2, 3], &l, "canvas")
                .unwrap();
            assert!(q.data.chunks(3).all(|px| px == [1, 2, 3]));
        }
        // A canvas over the limit is refused before it is allocated.
        let big = img
            .place_on(
                (1_000_000, 1_000_000),
                (0, 0),
                [0; 3],
                &l,
                "pad-to-square canvas",
            )
            .unwrap_err();
        assert_eq!(big.status(), crate::Status::ImageTooLarge);
        assert!(big.message().contains("pad-to-square canvas"), "{big}");
    }
}
