//! Image resizing that reproduces Pillow's `Image.resize(size, filter, reducing_gap=None)` bit
//! for bit on 8-bit RGB images.
//!
//! Hugging Face image processors (PIL backend) resize with Pillow, so the pixels a model sees
//! depend on Pillow's exact arithmetic. This module is an independent Rust implementation of
//! the algorithms of Pillow's `libImaging/Resample.c` (the convolution filters) and of the
//! nearest-neighbour path that `Image.resize(..., NEAREST)` takes through
//! `libImaging/Geometry.c` (`ImagingScaleAffine`):
//!
//! * Convolution filters (box, bilinear, hamming, bicubic, lanczos) are separable. For each
//!   axis `scale = in / out`, the kernel is widened by `max(scale, 1)` (antialiasing when
//!   shrinking), the taps of each output sample are evaluated in `f64`, normalized to sum to
//!   one, and converted to 22-bit fixed point with round-half-away-from-zero. Each output value
//!   is `clamp((2^21 + sum(pixel * coeff)) >> 22, 0, 255)` computed in `i32`.
//! * The two passes go through an 8-bit intermediate image, so their order matters. The
//!   horizontal pass runs first, except that since Pillow 13 the vertical pass runs first when
//!   the height shrinks by more than twice as many pixels as the width does
//!   (`in_h - out_h > max(0, 2 * (in_w - out_w))`, python-pillow/Pillow#9549). An axis whose
//!   size is unchanged is not resampled at all; with both unchanged the image is copied.
//! * Nearest neighbour maps output column `x` to source column `trunc(a*0.5 + x*a)` (with
//!   `a = in / out` and the position accumulated by repeated addition, as Pillow does), and
//!   likewise for rows.

use crate::error::{Error, Result};
use crate::preprocess::limits::{try_filled, try_with_capacity, Limits};
use crate::preprocess::rgb::RgbImage;
use rayon::prelude::*;

/// A resampling filter, numbered as Pillow's `Image.Resampling`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Filter {
    /// `Image.Resampling.NEAREST` (0): nearest neighbour, no antialiasing.
    Nearest,
    /// `Image.Resampling.LANCZOS` (1): Lanczos-windowed sinc with support 3.
    Lanczos,
    /// `Image.Resampling.BILINEAR` (2): triangle filter with support 1.
    Bilinear,
    /// `Image.Resampling.BICUBIC` (3): Keys cubic (a = -0.5) with support 2.
    Bicubic,
    /// `Image.Resampling.BOX` (4): box filter with support 0.5.
    Box,
    /// `Image.Resampling.HAMMING` (5): Hamming-windowed sinc with support 1.
    Hamming,
}

impl Filter {
    /// The filter with Pillow's `Image.Resampling` number `code`, e.g. the `resample` value of
    /// a `preprocessor_config.json`; `None` for numbers this module does not implement.
    pub fn from_pil(code: i64) -> Option<Filter> {
        match code {
            0 => Some(Filter::Nearest),
            1 => Some(Filter::Lanczos),
            2 => Some(Filter::Bilinear),
            3 => Some(Filter::Bicubic),
            4 => Some(Filter::Box),
            5 => Some(Filter::Hamming),
            _ => None,
        }
    }

    /// The convolution kernel; `None` for nearest neighbour.
    fn kernel(self) -> Option<Kernel> {
        let (support, eval): (f64, fn(f64) -> f64) = match self {
            Filter::Nearest => return None,
            Filter::Lanczos => (3.0, lanczos_kernel),
            Filter::Bilinear => (1.0, bilinear_kernel),
            Filter::Bicubic => (2.0, bicubic_kernel),
            Filter::Box => (0.5, box_kernel),
            Filter::Hamming => (1.0, hamming_kernel),
        };
        Some(Kernel { support, eval })
    }
}

/// A separable resampling kernel.
#[derive(Debug, Clone, Copy)]
struct Kernel {
    /// Half-width at scale 1 (widened by the scale when shrinking).
    support: f64,
    /// The kernel's value at a distance in source samples (at scale 1).
    eval: fn(f64) -> f64,
}

// The kernels keep Pillow's operation order and constants (the Hamming window's are `f32`
// literals widened to `f64` in Pillow), since coefficients are compared bit for bit.

fn box_kernel(x: f64) -> f64 {
    if x > -0.5 && x <= 0.5 {
        1.0
    } else {
        0.0
    }
}

fn bilinear_kernel(x: f64) -> f64 {
    let x = x.abs();
    if x < 1.0 {
        1.0 - x
    } else {
        0.0
    }
}

fn hamming_kernel(x: f64) -> f64 {
    let x = x.abs();
    if x == 0.0 {
        return 1.0;
    }
    if x >= 1.0 {
        return 0.0;
    }
    let x = x * std::f64::consts::PI;
    x.sin() / x * (f64::from(0.54f32) + f64::from(0.46f32) * x.cos())
}

fn bicubic_kernel(x: f64) -> f64 {
    const A: f64 = -0.5;
    let x = x.abs();
    if x < 1.0 {
        ((A + 2.0) * x - (A + 3.0)) * x * x + 1.0
    } else if x < 2.0 {
        (((x - 5.0) * x + 8.0) * x - 4.0) * A
    } else {
        0.0
    }
}

fn sinc(x: f64) -> f64 {
    if x == 0.0 {
        return 1.0;
    }
    let x = x * std::f64::consts::PI;
    x.sin() / x
}

fn lanczos_kernel(x: f64) -> f64 {
    if (-3.0..3.0).contains(&x) {
        sinc(x) * sinc(x / 3.0)
    } else {
        0.0
    }
}

/// Fixed-point fraction bits of the 8-bit coefficients (Pillow's `PRECISION_BITS`).
const PRECISION_BITS: u32 = 32 - 8 - 2;
/// The accumulator's starting value: one half, so that the final shift rounds.
const HALF: i32 = 1 << (PRECISION_BITS - 1);

/// The taps of one output sample: source samples `first..first + coeffs.len()`.
#[derive(Debug, Clone, Copy)]
struct Taps {
    /// First source sample read.
    first: usize,
    /// Start of this sample's coefficients in [`AxisCoeffs::coeffs`].
    offset: usize,
    /// Number of source samples (and coefficients).
    len: usize,
}

/// The geometry of one axis: where each output sample's taps lie.
#[derive(Debug, Clone, Copy)]
struct Axis {
    in_size: usize,
    out_size: usize,
    kernel: Kernel,
    /// Source samples per output sample.
    scale: f64,
    /// The kernel's half-width in source samples.
    support: f64,
    /// Most coefficients built at once ([`COEFF_BLOCK`]; smaller in tests).
    block: usize,
}

impl Axis {
    fn new(in_size: usize, out_size: usize, kernel: Kernel) -> Axis {
        // Pillow passes the source range as `float` box coordinates.
        let scale = f64::from(in_size as f32) / out_size as f64;
        let support = kernel.support * scale.max(1.0);
        Axis {
            in_size,
            out_size,
            kernel,
            scale,
            support,
            block: COEFF_BLOCK,
        }
    }

    /// Output sample `xx`'s kernel center, first source sample and tap count.
    fn window(&self, xx: usize) -> (f64, usize, usize) {
        let center = (xx as f64 + 0.5) * self.scale;
        // `as` truncates toward zero (and saturates), like C's `(int)` of an in-range value.
        let first = ((center - self.support + 0.5) as i64).max(0);
        let end = ((center + self.support + 0.5) as i64).min(self.in_size as i64);
        let len = (end - first).max(0) as usize;
        (center, first as usize, len)
    }

    /// Consecutive ranges of output samples whose coefficients together take at most
    /// `self.block` ([`COEFF_BLOCK`]) values (a single sample may take up to [`COEFF_MAX_TAPS`]), so that the
    /// tables of an extreme downscale (a 10⁸-pixel strip to 224 pixels needs 10⁸·4 taps) are
    /// built and used a block at a time. Fails when one sample needs more than
    /// [`COEFF_MAX_TAPS`] taps (an axis shrunk by more than about a millionfold).
    fn blocks(&self) -> Result<Vec<std::ops::Range<usize>>> {
        let mut blocks = Vec::new();
        let (mut start, mut taps) = (0, 0usize);
        for xx in 0..self.out_size {
            let (_, _, len) = self.window(xx);
            if len > COEFF_MAX_TAPS {
                return Err(Error::invalid_argument(format!(
                    "resizing {} pixels to {} along one axis needs {len} source pixels per                      output pixel, more than the {COEFF_MAX_TAPS} vtower supports",
                    self.in_size, self.out_size
                )));
            }
            if taps > 0 && taps + len > self.block {
                blocks.push(start..xx);
                (start, taps) = (xx, 0);
            }
            taps += len;
        }
        if start < self.out_size {
            blocks.push(start..self.out_size);
        }
        Ok(blocks)
    }
}

/// Most coefficients kept at once for one block of output samples (16 MB).
const COEFF_BLOCK: usize = 1 << 22;
/// Most taps of one output sample (64 MB of coefficients).
const COEFF_MAX_TAPS: usize = 1 << 24;

/// Fixed-point resampling coefficients of a range of output samples of one axis.
#[derive(Debug, Clone)]
struct AxisCoeffs {
    /// The first output sample covered.
    start: usize,
    taps: Vec<Taps>,
    coeffs: Vec<i32>,
}

impl AxisCoeffs {
    /// Pillow's `precompute_coeffs` + `normalize_coeffs_8bpc` for the full source range
    /// `[0, in_size)` and every output sample.
    #[cfg(test)]
    fn new(in_size: usize, out_size: usize, kernel: Kernel) -> AxisCoeffs {
        AxisCoeffs::range(&Axis::new(in_size, out_size, kernel), 0..out_size)
            .expect("test sizes fit in memory")
    }

    /// Pillow's `precompute_coeffs` + `normalize_coeffs_8bpc` for output samples `range`,
    /// stored compactly (the tap count is `O(in_size + out_size)` for any ratio).
    fn range(axis: &Axis, range: std::ops::Range<usize>) -> Result<AxisCoeffs> {
        let inv = 1.0 / axis.scale.max(1.0);
        let count: usize = range.clone().map(|xx| axis.window(xx).2).sum();
        let mut taps = try_with_capacity(range.len(), "resampling taps")?;
        let mut coeffs = try_with_capacity(count, "resampling coefficients")?;
        let mut weights = Vec::new();
        for xx in range.clone() {
            let (center, first, len) = axis.window(xx);
            weights.clear();
            let mut total = 0.0;
            for x in 0..len {
                let w = (axis.kernel.eval)(((x + first) as f64 - center + 0.5) * inv);
                weights.push(w);
                total += w;
            }
            let offset = coeffs.len();
            for &w in &weights {
                let w = if total != 0.0 { w / total } else { w };
                let scaled = w * f64::from(1u32 << PRECISION_BITS);
                // Round half away from zero, then truncate, as Pillow does.
                coeffs.push(if w < 0.0 {
                    (scaled - 0.5) as i32
                } else {
                    (scaled + 0.5) as i32
                });
            }
            taps.push(Taps { first, offset, len });
        }
        Ok(AxisCoeffs {
            start: range.start,
            taps,
            coeffs,
        })
    }

    /// The first source sample and the coefficients of output sample `index`.
    fn of(&self, index: usize) -> (usize, &[i32]) {
        let t = self.taps[index - self.start];
        (t.first, &self.coeffs[t.offset..t.offset + t.len])
    }

    /// Source samples read by any output sample: `first..end` (empty when there are none).
    #[cfg(test)]
    fn source_range(&self) -> (usize, usize) {
        match (self.taps.first(), self.taps.last()) {
            (Some(a), Some(b)) => (a.first, (b.first + b.len).max(a.first)),
            _ => (0, 0),
        }
    }
}

/// Converts a fixed-point accumulator to a pixel value (Pillow's `clip8`).
#[inline(always)]
fn clip8(acc: i32) -> u8 {
    (acc >> PRECISION_BITS).clamp(0, 255) as u8
}

/// Work (in multiply-adds) below which a pass runs on the calling thread.
const PARALLEL_MIN_WORK: usize = 1 << 18;

/// Resizes `image` to `width` x `height` exactly as Pillow's
/// `Image.resize((width, height), resample=filter, reducing_gap=None)` does for an `RGB` image.
///
/// With the size unchanged the result is a copy, as in Pillow. An empty source (zero width or
/// height) yields black pixels, as in Pillow. Rows are processed in parallel on rayon's pool
/// for large images; the result does not depend on the thread count.
///
/// Memory is bounded before it is used: the output is checked against `limits.max_pixels`
/// (the intermediate image of a two-pass resize is never larger than both the source and the
/// output), coefficient tables are built a block of
/// output samples at a time, and every buffer is allocated fallibly
/// ([`crate::Status::OutOfMemory`] instead of an abort).
pub fn resize(
    image: &RgbImage,
    width: u32,
    height: u32,
    filter: Filter,
    limits: &Limits,
) -> Result<RgbImage> {
    if width == 0 || height == 0 {
        return Err(Error::invalid_argument(format!(
            "resize to {width}x{height}: width and height must be > 0"
        )));
    }
    let in_w = image.width as usize;
    let in_h = image.height as usize;
    if Some(image.data.len()) != in_w.checked_mul(in_h).and_then(|n| n.checked_mul(3)) {
        return Err(Error::invalid_argument(format!(
            "RGB buffer of {} bytes does not match {in_w}x{in_h}x3",
            image.data.len()
        )));
    }
    limits.check_image("the resized image", u64::from(width), u64::from(height))?;
    let out_w = width as usize;
    let out_h = height as usize;
    if out_w == in_w && out_h == in_h {
        let mut data = try_with_capacity(image.data.len(), "the resized image")?;
        data.extend_from_slice(&image.data);
        return RgbImage::new(width, height, data);
    }
    let data = match filter.kernel() {
        None => nearest(&image.data, in_w, in_h, out_w, out_h)?,
        Some(kernel) => convolve(&image.data, in_w, in_h, out_w, out_h, kernel)?,
    };
    RgbImage::new(width, height, data)
}

/// Pillow's `Image.resize(..., NEAREST)`: `ImagingScaleAffine` with `a = (in/out, 0, 0, 0,
/// in/out, 0)`, filling unmapped pixels with zero.
fn nearest(src: &[u8], in_w: usize, in_h: usize, out_w: usize, out_h: usize) -> Result<Vec<u8>> {
    /// The source index of each output index, `None` when it falls outside the source.
    fn map_axis(in_size: usize, out_size: usize) -> Vec<Option<usize>> {
        let step = f64::from(in_size as f32) / out_size as f64;
        let mut pos = step * 0.5;
        let mut map = Vec::with_capacity(out_size);
        for _ in 0..out_size {
            // Pillow's COORD(): -1 for negative positions, truncation otherwise.
            let index = if pos < 0.0 { None } else { Some(pos as usize) };
            map.push(index.filter(|&i| i < in_size));
            pos += step;
        }
        map
    }
    let xmap = map_axis(in_w, out_w);
    let ymap = map_axis(in_h, out_h);
    // Pillow copies the span between the first and last mapped columns; a column inside it
    // that was not mapped reads source column 0 (its table entry stays zero). With a
    // whole-image box every column maps, but keep the rule.
    let lo = xmap.iter().position(Option::is_some).unwrap_or(out_w);
    let hi = xmap.iter().rposition(Option::is_some).map_or(lo, |i| i + 1);
    let stride_in = in_w * 3;
    let stride_out = out_w * 3;
    let mut out = try_filled(stride_out * out_h, 0u8, "the resized image")?;
    let fill_row = |(y, row): (usize, &mut [u8])| {
        if let Some(sy) = ymap[y] {
            let src_row = &src[sy * stride_in..(sy + 1) * stride_in];
            for x in lo..hi {
                let sx = xmap[x].unwrap_or(0);
                row[x * 3..x * 3 + 3].copy_from_slice(&src_row[sx * 3..sx * 3 + 3]);
            }
        }
    };
    if stride_out * out_h >= PARALLEL_MIN_WORK {
        out.par_chunks_mut(stride_out)
            .enumerate()
            .with_min_len(16)
            .for_each(fill_row);
    } else {
        out.chunks_mut(stride_out).enumerate().for_each(fill_row);
    }
    Ok(out)
}

/// Pillow's `ImagingResampleInner` for an 8-bit, 3-channel image with a whole-image box.
///
/// Pillow crops the first pass to the source rows (or columns) the second pass reads; with a
/// whole-image box that is always the whole axis (the first output's taps start at 0 and the
/// last one's end at the source size, since the support is at least half the scale), so both
/// passes here run over whole images.
fn convolve(
    src: &[u8],
    in_w: usize,
    in_h: usize,
    out_w: usize,
    out_h: usize,
    kernel: Kernel,
) -> Result<Vec<u8>> {
    // `resize` handled the unchanged size, so at least one axis is resampled.
    let horiz = (out_w != in_w).then(|| Axis::new(in_w, out_w, kernel));
    let vert = (out_h != in_h).then(|| Axis::new(in_h, out_h, kernel));
    match (horiz, vert) {
        (Some(h), None) => horizontal_pass(src, in_h, &h),
        (None, Some(v)) => vertical_pass(src, in_w, &v),
        (Some(h), Some(v)) => {
            // The intermediate image is never larger than both the source and the output:
            // the vertical pass runs first whenever the height shrinks and the width grows.
            if vertical_first(in_w, in_h, out_w, out_h) {
                let mid = vertical_pass(src, in_w, &v)?;
                horizontal_pass(&mid, out_h, &h)
            } else {
                let mid = horizontal_pass(src, in_h, &h)?;
                vertical_pass(&mid, out_w, &v)
            }
        }
        (None, None) => {
            let mut out = try_with_capacity(src.len(), "the resized image")?;
            out.extend_from_slice(src);
            Ok(out)
        }
    }
}

/// Pass order: since Pillow 13 (python-pillow/Pillow#9549) the vertical pass runs first when
/// the height shrinks by more than twice as many pixels as the width does. The order changes
/// the result through the 8-bit intermediate image.
fn vertical_first(in_w: usize, in_h: usize, out_w: usize, out_h: usize) -> bool {
    let shrink_w = in_w as i128 - out_w as i128;
    let shrink_h = in_h as i128 - out_h as i128;
    shrink_h > 0 && shrink_h > 2 * shrink_w
}

/// Resamples each of the `rows` rows of `src` along `axis` (source width to output width).
fn horizontal_pass(src: &[u8], rows: usize, axis: &Axis) -> Result<Vec<u8>> {
    let stride_in = axis.in_size * 3;
    let stride_out = axis.out_size * 3;
    let mut out = try_filled(stride_out * rows, 0u8, "a resampling pass")?;
    if stride_out == 0 || rows == 0 {
        return Ok(out);
    }
    for block in axis.blocks()? {
        let coeffs = AxisCoeffs::range(axis, block.clone())?;
        let do_row = |(y, row): (usize, &mut [u8])| {
            let src_row = &src[y * stride_in..(y + 1) * stride_in];
            let row = &mut row[block.start * 3..block.end * 3];
            for (xx, px) in block.clone().zip(row.chunks_exact_mut(3)) {
                let (first, k) = coeffs.of(xx);
                let taps = &src_row[first * 3..(first + k.len()) * 3];
                let (mut s0, mut s1, mut s2) = (HALF, HALF, HALF);
                for (p, &c) in taps.chunks_exact(3).zip(k) {
                    s0 += i32::from(p[0]) * c;
                    s1 += i32::from(p[1]) * c;
                    s2 += i32::from(p[2]) * c;
                }
                px[0] = clip8(s0);
                px[1] = clip8(s1);
                px[2] = clip8(s2);
            }
        };
        if coeffs.coeffs.len() * 3 * rows >= PARALLEL_MIN_WORK {
            out.par_chunks_mut(stride_out)
                .enumerate()
                .with_min_len(8)
                .for_each(do_row);
        } else {
            out.chunks_mut(stride_out).enumerate().for_each(do_row);
        }
    }
    Ok(out)
}

/// Columns (in bytes) accumulated at once by the vertical pass: bounds its scratch memory for
/// images of any width.
const VERTICAL_CHUNK: usize = 3 * 4096;

/// Resamples the columns of `src` (`width` pixels wide) along `axis` (source height to output
/// height).
fn vertical_pass(src: &[u8], width: usize, axis: &Axis) -> Result<Vec<u8>> {
    let stride = width * 3;
    let mut out = try_filled(stride * axis.out_size, 0u8, "a resampling pass")?;
    if stride == 0 {
        return Ok(out);
    }
    for block in axis.blocks()? {
        let coeffs = AxisCoeffs::range(axis, block.clone())?;
        let init = || vec![0i32; stride.min(VERTICAL_CHUNK)];
        let do_row = |acc: &mut Vec<i32>, (i, row): (usize, &mut [u8])| {
            let (first, k) = coeffs.of(block.start + i);
            for (c0, out_chunk) in (0..stride)
                .step_by(VERTICAL_CHUNK)
                .zip(row.chunks_mut(VERTICAL_CHUNK))
            {
                let acc = &mut acc[..out_chunk.len()];
                acc.fill(HALF);
                for (j, &c) in k.iter().enumerate() {
                    let start = (first + j) * stride + c0;
                    let src_row = &src[start..start + out_chunk.len()];
                    for (a, &p) in acc.iter_mut().zip(src_row) {
                        *a += i32::from(p) * c;
                    }
                }
                for (o, &a) in out_chunk.iter_mut().zip(acc.iter()) {
                    *o = clip8(a);
                }
            }
        };
        let rows = &mut out[block.start * stride..block.end * stride];
        if coeffs.coeffs.len() * stride >= PARALLEL_MIN_WORK {
            rows.par_chunks_mut(stride)
                .enumerate()
                .with_min_len(4)
                .for_each_init(init, do_row);
        } else {
            let mut acc = init();
            for item in rows.chunks_mut(stride).enumerate() {
                do_row(&mut acc, item);
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image(width: u32, height: u32, f: impl Fn(u32, u32, usize) -> u8) -> RgbImage {
        let mut data = Vec::with_capacity(width as usize * height as usize * 3);
        for y in 0..height {
            for x in 0..width {
                for c in 0..3 {
                    data.push(f(x, y, c));
                }
            }
        }
        RgbImage::new(width, height, data).unwrap()
    }

    fn pseudo_random(width: u32, height: u32, seed: u32) -> RgbImage {
        image(width, height, |x, y, c| {
            let mut h = x
                .wrapping_mul(0x9E37_79B1)
                .wrapping_add(y.wrapping_mul(0x85EB_CA77))
                .wrapping_add((c as u32 + seed).wrapping_mul(0xC2B2_AE3D));
            h ^= h >> 15;
            h = h.wrapping_mul(0x2C1B_3C6D);
            h ^= h >> 12;
            (h >> 24) as u8
        })
    }

    const ALL: [Filter; 6] = [
        Filter::Nearest,
        Filter::Lanczos,
        Filter::Bilinear,
        Filter::Bicubic,
        Filter::Box,
        Filter::Hamming,
    ];

    #[test]
    fn from_pil_numbers() {
        for (code, f) in ALL.iter().enumerate() {
            assert_eq!(Filter::from_pil(code as i64), Some(*f));
        }
        assert_eq!(Filter::from_pil(-1), None);
        assert_eq!(Filter::from_pil(6), None);
        assert_eq!(Filter::from_pil(7), None);
    }

    #[test]
    fn same_size_is_a_copy() {
        let img = pseudo_random(13, 7, 1);
        for f in ALL {
            assert_eq!(resize(&img, 13, 7, f, &Limits::default()).unwrap(), img);
        }
    }

    #[test]
    fn output_has_requested_size() {
        let img = pseudo_random(17, 9, 2);
        for f in ALL {
            for (w, h) in [(1, 1), (5, 30), (17, 3), (40, 9), (3, 100)] {
                let out = resize(&img, w, h, f, &Limits::default()).unwrap();
                assert_eq!((out.width, out.height), (w, h));
                assert_eq!(out.data.len(), (w * h * 3) as usize);
            }
        }
    }

    #[test]
    fn constant_image_stays_constant() {
        // Normalized coefficients sum to 1 within rounding, so flat colors survive exactly.
        let img = image(37, 23, |_, _, c| [0u8, 128, 255][c]);
        for f in ALL {
            for (w, h) in [(5, 4), (80, 61), (37, 5), (2, 23), (1, 1)] {
                let out = resize(&img, w, h, f, &Limits::default()).unwrap();
                for px in out.data.chunks_exact(3) {
                    assert_eq!(px, [0, 128, 255], "{f:?} {w}x{h}");
                }
            }
        }
    }

    #[test]
    fn box_integer_downscale_is_block_mean() {
        let img = pseudo_random(12, 8, 3);
        let out = resize(&img, 3, 2, Filter::Box, &Limits::default()).unwrap();
        for oy in 0..2 {
            for ox in 0..3 {
                for c in 0..3 {
                    let mut sum = 0u32;
                    for y in 0..4 {
                        for x in 0..4 {
                            sum += u32::from(img.pixel(ox * 4 + x, oy * 4 + y)[c]);
                        }
                    }
                    let mean = (f64::from(sum) / 16.0).round() as i32;
                    let got = i32::from(out.pixel(ox, oy)[c]);
                    assert!((got - mean).abs() <= 1, "({ox},{oy},{c}): {got} vs {mean}");
                }
            }
        }
    }

    #[test]
    fn nearest_integer_upscale_replicates_pixels() {
        let img = pseudo_random(4, 3, 4);
        let out = resize(&img, 12, 6, Filter::Nearest, &Limits::default()).unwrap();
        for y in 0..6 {
            for x in 0..12 {
                assert_eq!(out.pixel(x, y), img.pixel(x / 3, y / 2));
            }
        }
    }

    #[test]
    fn upscale_single_pixel_is_flat() {
        let img = image(1, 1, |_, _, c| [10u8, 200, 77][c]);
        for f in ALL {
            let out = resize(&img, 9, 4, f, &Limits::default()).unwrap();
            assert!(
                out.data.chunks_exact(3).all(|p| p == [10, 200, 77]),
                "{f:?}"
            );
        }
    }

    #[test]
    fn empty_source_gives_black() {
        let img = RgbImage::new(0, 0, Vec::new()).unwrap();
        for f in ALL {
            let out = resize(&img, 3, 2, f, &Limits::default()).unwrap();
            assert_eq!(out.data, vec![0u8; 18], "{f:?}");
        }
    }

    #[test]
    fn parallel_passes_match_serial_ones() {
        // A large one-axis resize takes the rayon path; each row (column) of it must equal the
        // same row (column) resized alone, which takes the serial path.
        let img = pseudo_random(700, 400, 5);
        for f in ALL {
            let wide = resize(&img, 333, 400, f, &Limits::default()).unwrap();
            for y in (0..400).step_by(37) {
                let row = image(700, 1, |x, _, c| img.pixel(x, y)[c]);
                let alone = resize(&row, 333, 1, f, &Limits::default()).unwrap();
                let start = y as usize * 333 * 3;
                assert_eq!(
                    &wide.data[start..start + 333 * 3],
                    &alone.data[..],
                    "{f:?} row {y}"
                );
            }
            let tall = resize(&img, 700, 250, f, &Limits::default()).unwrap();
            for x in (0..700).step_by(53) {
                let col = image(1, 400, |_, y, c| img.pixel(x, y)[c]);
                let alone = resize(&col, 1, 250, f, &Limits::default()).unwrap();
                for y in 0..250 {
                    assert_eq!(tall.pixel(x, y), alone.pixel(0, y), "{f:?} column {x}");
                }
            }
        }
    }

    #[test]
    fn blocked_coefficient_tables_give_the_same_pixels() {
        // Tables built a few output samples at a time (as an extreme downscale needs) must
        // give exactly what one whole table gives.
        let img = pseudo_random(301, 97, 6);
        for f in ALL {
            let Some(kernel) = f.kernel() else {
                continue;
            };
            for (w, h) in [(37usize, 11usize), (500, 200), (3, 96)] {
                let whole_h = Axis::new(301, w, kernel);
                let whole_v = Axis::new(97, h, kernel);
                let small = |a: Axis| Axis { block: 50, ..a };
                assert!(small(whole_h).blocks().unwrap().len() > 1);
                let a = horizontal_pass(&img.data, 97, &whole_h).unwrap();
                let b = horizontal_pass(&img.data, 97, &small(whole_h)).unwrap();
                assert_eq!(a, b, "{f:?} horizontal {w}");
                let a = vertical_pass(&img.data, 301, &whole_v).unwrap();
                let b = vertical_pass(&img.data, 301, &small(whole_v)).unwrap();
                assert_eq!(a, b, "{f:?} vertical {h}");
                let c = AxisCoeffs::new(301, w, kernel);
                assert_eq!(c.source_range(), (0, 301));
            }
        }
    }

    #[test]
    fn extreme_strips_resize_in_bounded_memory() {
        // A 4,000,000 x 1 strip to 224 x 224 (as a fixed-size processor does): the whole
        // coefficient table would be 64 MB; blocks keep it at 16 MB, and the result is the
        // constant the strip holds.
        let strip = RgbImage::new(4_000_000, 1, [9u8, 99, 199].repeat(4_000_000)).unwrap();
        let out = resize(&strip, 224, 224, Filter::Bicubic, &Limits::default()).unwrap();
        assert!(out.data.chunks_exact(3).all(|p| p == [9, 99, 199]));
        // Outputs over the pixel limit are refused before anything is allocated.
        let tight = Limits {
            max_pixels: 1000,
            ..Limits::default()
        };
        let e = resize(&strip, 100, 100, Filter::Bicubic, &tight).unwrap_err();
        assert_eq!(e.status(), crate::Status::ImageTooLarge);
        assert!(resize(&strip, 0, 5, Filter::Box, &tight).is_err());
    }

    #[test]
    fn pass_order_follows_pillow_13() {
        assert!(vertical_first(24, 20, 31, 11)); // width grows, height shrinks
        assert!(vertical_first(16, 16, 14, 11)); // 5 > 2 * 2
        assert!(!vertical_first(16, 16, 14, 12)); // 4 == 2 * 2
        assert!(!vertical_first(4000, 3000, 384, 384));
        assert!(!vertical_first(20, 20, 40, 30)); // height grows
        assert!(!vertical_first(20, 20, 30, 40));
    }

    #[test]
    fn accumulators_cannot_overflow() {
        // The sum of |coefficients| bounds every partial sum; check it against i32 for a
        // sweep of ratios, including heavy shrinking and edge-truncated kernels.
        let limit = (i64::from(i32::MAX) - i64::from(HALF)) / 255;
        for f in ALL {
            let Some(kernel) = f.kernel() else {
                continue;
            };
            for in_size in [1usize, 2, 3, 5, 7, 10, 31, 100, 257, 1000, 4000] {
                for out_size in [1usize, 2, 3, 4, 7, 9, 33, 100, 384, 999, 5000] {
                    let ax = AxisCoeffs::new(in_size, out_size, kernel);
                    for i in 0..out_size {
                        let (_, k) = ax.of(i);
                        let abs: i64 = k.iter().map(|&c| i64::from(c).abs()).sum();
                        assert!(abs < limit, "{f:?} {in_size}->{out_size}: {abs}");
                    }
                }
            }
        }
    }

    #[derive(serde::Deserialize)]
    struct Manifest {
        pillow_version: String,
        bin_len: usize,
        inputs: Vec<(String, u32, u32, usize)>,
        cases: Vec<(String, usize, i64, u32, u32, usize)>,
    }

    /// Every case of `tests/fixtures/resample` (made by `scripts/gen_resample_cases.py` with
    /// Pillow) must match byte for byte.
    #[test]
    fn matches_pillow_corpus() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/resample");
        let manifest: Manifest = serde_json::from_slice(
            &std::fs::read(format!("{dir}/cases.json")).expect("read cases.json"),
        )
        .expect("parse cases.json");
        let blob = std::fs::read(format!("{dir}/cases.bin")).expect("read cases.bin");
        assert_eq!(blob.len(), manifest.bin_len, "cases.bin length");
        let inputs: Vec<RgbImage> = manifest
            .inputs
            .iter()
            .map(|(name, w, h, off)| {
                let len = *w as usize * *h as usize * 3;
                RgbImage::new(*w, *h, blob[*off..*off + len].to_vec())
                    .unwrap_or_else(|e| panic!("input {name}: {e}"))
            })
            .collect();
        let mut failures = Vec::new();
        let mut orders = [0usize; 2];
        for (name, input, code, w, h, off) in &manifest.cases {
            let filter = Filter::from_pil(*code).unwrap_or_else(|| panic!("{name}: filter"));
            let expected = &blob[*off..*off + *w as usize * *h as usize * 3];
            let src = &inputs[*input];
            if src.width != *w && src.height != *h && filter != Filter::Nearest {
                let (iw, ih) = (src.width as usize, src.height as usize);
                orders[usize::from(vertical_first(iw, ih, *w as usize, *h as usize))] += 1;
            }
            let got = resize(src, *w, *h, filter, &Limits::default()).unwrap();
            assert_eq!((got.width, got.height), (*w, *h), "{name}");
            if got.data != expected {
                let diffs: Vec<i32> = got
                    .data
                    .iter()
                    .zip(expected)
                    .map(|(&a, &b)| (i32::from(a) - i32::from(b)).abs())
                    .filter(|&d| d != 0)
                    .collect();
                failures.push(format!(
                    "{name}: {} of {} values differ, max diff {}",
                    diffs.len(),
                    expected.len(),
                    diffs.iter().max().copied().unwrap_or(0)
                ));
            }
        }
        assert!(
            failures.is_empty(),
            "{} of {} cases differ from Pillow {}:\n{}",
            failures.len(),
            manifest.cases.len(),
            manifest.pillow_version,
            failures.join("\n")
        );
        // Keep the corpus covering both pass orders (horizontal first, vertical first).
        assert!(
            orders[0] > 0 && orders[1] > 0,
            "pass orders covered: {orders:?}"
        );
    }
}
