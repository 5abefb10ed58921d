//! A decoded 8-bit RGB image, the common currency between decoding, resizing and normalizing.

use crate::error::{Error, Result};

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
    /// outside.
    pub fn crop(&self, x: u32, y: u32, width: u32, height: u32) -> RgbImage {
        let x1 = x.saturating_add(width).min(self.width);
        let y1 = y.saturating_add(height).min(self.height);
        let (x0, y0) = (x.min(x1), y.min(y1));
        let row = (x1 - x0) as usize * 3;
        let mut data = Vec::with_capacity(row * (y1 - y0) as usize);
        for yy in y0..y1 {
            let start = (yy as usize * self.width as usize + x0 as usize) * 3;
            data.extend_from_slice(&self.data[start..start + row]);
        }
        RgbImage {
            width: x1 - x0,
            height: y1 - y0,
            data,
        }
    }

    /// Places this image on a `width` x `height` canvas filled with `fill`, its top-left corner
    /// at (`x`, `y`) (parts falling outside the canvas are dropped).
    pub fn place_on(&self, width: u32, height: u32, x: i64, y: i64, fill: [u8; 3]) -> RgbImage {
        let mut data = Vec::with_capacity(width as usize * height as usize * 3);
        for _ in 0..width as usize * height as usize {
            data.extend_from_slice(&fill);
        }
        for sy in 0..self.height as i64 {
            let dy = sy + y;
            if dy < 0 || dy >= height as i64 {
                continue;
            }
            for sx in 0..self.width as i64 {
                let dx = sx + x;
                if dx < 0 || dx >= width as i64 {
                    continue;
                }
                let s = ((sy * self.width as i64 + sx) * 3) as usize;
                let d = ((dy * width as i64 + dx) * 3) as usize;
                data[d..d + 3].copy_from_slice(&self.data[s..s + 3]);
            }
        }
        RgbImage {
            width,
            height,
            data,
        }
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
        let c = img.crop(1, 1, 5, 5);
        assert_eq!((c.width, c.height), (2, 1));
        assert_eq!(c.pixel(0, 0), [11; 3]);
        assert_eq!(c.pixel(1, 0), [12; 3]);
        assert_eq!(img.crop(4, 0, 2, 2).width, 0);
        let p = img.place_on(5, 3, 1, -1, [7, 8, 9]);
        assert_eq!((p.width, p.height), (5, 3));
        assert_eq!(p.pixel(0, 0), [7, 8, 9]);
        assert_eq!(p.pixel(1, 0), [10; 3]);
        assert_eq!(p.pixel(3, 0), [12; 3]);
        assert_eq!(p.pixel(1, 1), [7, 8, 9]);
    }
}
