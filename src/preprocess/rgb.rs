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
}
