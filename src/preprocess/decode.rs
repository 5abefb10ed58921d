//! Decoding encoded image bytes into 8-bit RGB, exactly as the Hugging Face reference does it:
//! `PIL.Image.open(BytesIO(data))` (Pillow 13, no EXIF transpose) followed by transformers'
//! `convert_to_rgb` (an image with an `A` band or a `transparency` entry is converted to RGBA
//! and alpha-composited onto opaque white; anything else goes through `.convert("RGB")`).
//!
//! Supported: PNG (all bit depths and colour types, `tRNS`, Adam7), JPEG (baseline,
//! progressive, grayscale, CMYK/YCCK, through libjpeg-turbo like Pillow), WebP (lossy,
//! lossless, alpha), GIF (first frame), BMP and TIFF.
//!
//! Pillow behaviours reproduced on purpose (each checked against Pillow 13):
//! * 16-bit PNG/TIFF colour samples keep only their high byte; 16-bit grayscale (`I;16`) is
//!   clipped to 255, not scaled.
//! * A `tRNS` colour of a gray or RGB PNG is compared, masked to its low byte, with the pixel
//!   *after* its reduction to 8 bits (so 16-bit and 2/4-bit gray keys behave oddly, like
//!   Pillow).
//! * Palette indices past the end of the palette are opaque black.
//! * CMYK JPEGs are read as inverted ("Adobe") CMYK and converted with Pillow's formula.
//! * JPEG warnings (extraneous bytes, corrupt entropy data) are tolerated, but data that ends
//!   before the EOI marker is an error, as Pillow raises "image file is truncated".
//! * The GIF canvas outside the first frame is palette index 0, or transparent (white) when the
//!   frame has a transparent index; a frame larger than the screen grows the canvas.
//!
//! * Cut-off tails that Pillow tolerates are tolerated: a PNG that ends after its image data
//!   (no IEND), a BMP that lacks only its last row's padding, bytes after the image's end.
//!
//! Known differences (all rare; each fails with [`Status::ImageDecode`] or is noted):
//! * TIFF: palette (`P`), gray+alpha (`LA`) and premultiplied-alpha TIFFs are not supported;
//!   JPEG-compressed TIFFs decode with off-by-one differences on some pixels.
//! * BMP wider or taller than 65535 pixels is refused (Pillow decodes it).
//! * PNG: a zlib stream that ends before the last row (Pillow fills zeros), or a bad IDAT CRC
//!   (Pillow ignores it), is an error here. For APNG the default image is decoded.
//!   Reproduced: a bad CRC in any chunk before the image data, and `iCCP` / `zTXt` / `iTXt`
//!   chunks inflating past 1 MiB (or text past 64 MiB in all) are errors, as in Pillow.
//! * WebP: a chunk that claims more bytes than the RIFF payload holds is an error, as in
//!   libwebp's demuxer (which Pillow uses).
//! * A progressive JPEG with more than 500 scans is refused (a scan-bomb guard).
//! * Pillow only warns between `MAX_IMAGE_PIXELS` and twice that; here anything over
//!   `max_pixels` is refused.
//!
//! Safety: the size is read from the header and checked against the pixel limit before any
//! pixel buffer is allocated; the image crate and the png/gif decoders get memory limits
//! derived from that size; buffers are reserved fallibly ([`Status::OutOfMemory`]); no input
//! makes this module panic (fuzzed with mutated and truncated fixtures).

use std::io::Cursor;

use crate::error::{Error, Result, Status};
use crate::preprocess::rgb::RgbImage;

/// The image container formats that [`decode_to_rgb`] understands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ImageFormat {
    /// Portable Network Graphics.
    Png,
    /// JPEG / JFIF.
    Jpeg,
    /// WebP (lossy VP8, lossless VP8L, extended VP8X).
    WebP,
    /// GIF 87a / 89a; only the first frame is decoded.
    Gif,
    /// Windows bitmap.
    Bmp,
    /// TIFF (little- or big-endian, classic or BigTIFF); the first page is decoded.
    Tiff,
}

impl ImageFormat {
    /// The format's usual name.
    pub fn name(self) -> &'static str {
        match self {
            ImageFormat::Png => "PNG",
            ImageFormat::Jpeg => "JPEG",
            ImageFormat::WebP => "WebP",
            ImageFormat::Gif => "GIF",
            ImageFormat::Bmp => "BMP",
            ImageFormat::Tiff => "TIFF",
        }
    }
}

impl std::fmt::Display for ImageFormat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// The format of encoded image bytes, recognised by their magic number (as Pillow's plugins
/// do); `None` when no supported format matches.
pub fn sniff_format(data: &[u8]) -> Option<ImageFormat> {
    if data.starts_with(b"\x89PNG\r\n\x1a\n") {
        Some(ImageFormat::Png)
    } else if data.starts_with(&[0xFF, 0xD8, 0xFF]) {
        Some(ImageFormat::Jpeg)
    } else if data.len() >= 12 && &data[0..4] == b"RIFF" && &data[8..12] == b"WEBP" {
        Some(ImageFormat::WebP)
    } else if data.starts_with(b"GIF87a") || data.starts_with(b"GIF89a") {
        Some(ImageFormat::Gif)
    } else if data.starts_with(b"BM") {
        Some(ImageFormat::Bmp)
    } else if data.starts_with(b"II*\0")
        || data.starts_with(b"MM\0*")
        || data.starts_with(b"II+\0")
        || data.starts_with(b"MM\0+")
    {
        Some(ImageFormat::Tiff)
    } else {
        None
    }
}

/// Decodes an encoded image (format sniffed from the bytes) into 8-bit RGB, pixel for pixel
/// as Pillow 13 + transformers' `convert_to_rgb` would.
///
/// Fails with [`Status::ImageTooLarge`] when the header's `width * height` exceeds
/// `max_pixels` (checked before decoding; Pillow's default is 89 478 485), and with
/// [`Status::ImageDecode`] for empty, zero-sized, truncated, corrupt or unsupported input.
pub fn decode_to_rgb(data: &[u8], max_pixels: u64) -> Result<RgbImage> {
    if data.is_empty() {
        return Err(Error::image_decode("empty input: 0 bytes"));
    }
    let Some(format) = sniff_format(data) else {
        return Err(Error::image_decode(format!(
            "unknown or unsupported image format ({} bytes, starting with {})",
            data.len(),
            hex_prefix(data)
        )));
    };
    match format {
        ImageFormat::Png => png_decode(data, max_pixels),
        ImageFormat::Jpeg => jpeg_decode(data, max_pixels),
        ImageFormat::Gif => gif_decode(data, max_pixels),
        ImageFormat::WebP => image_crate_decode(format, data, max_pixels),
        ImageFormat::Bmp => image_crate_decode(format, data, max_pixels),
        ImageFormat::Tiff => image_crate_decode(format, data, max_pixels),
    }
}

/// One channel of straight-alpha `c` (opacity `a`) composited onto white, with the rounding of
/// Pillow's `Image.alpha_composite` onto an opaque white RGBA canvas:
/// `(c*a + 255*(255-a) + 127) / 255`.
pub const fn composite_channel(c: u8, a: u8) -> u8 {
    let (c, a) = (c as u32, a as u32);
    ((c * a + 255 * (255 - a) + 127) / 255) as u8
}

/// Straight (non-premultiplied) RGBA pixels, `width * height * 4` bytes row-major,
/// alpha-composited onto opaque white with Pillow's exact rounding (see
/// [`composite_channel`]).
///
/// Note: transformers' *numpy* path for raw 4-channel arrays computes
/// `round(c*a/255 + (1 - a/255)*255)` in floating point; for every `(c, a)` pair that equals
/// this function's result.
#[cfg(test)]
pub fn composite_on_white(width: u32, height: u32, rgba: &[u8]) -> Result<RgbImage> {
    let expected = (width as usize)
        .checked_mul(height as usize)
        .and_then(|n| n.checked_mul(4));
    if expected != Some(rgba.len()) {
        return Err(Error::invalid_argument(format!(
            "RGBA buffer of {} bytes does not match {width}x{height}x4",
            rgba.len()
        )));
    }
    let mut out = alloc_rgb(width, height)?;
    for px in rgba.chunks_exact(4) {
        push_rgba(&mut out, px[0], px[1], px[2], px[3]);
    }
    RgbImage::new(width, height, out)
}

// ---------------------------------------------------------------------------------------------
// Shared helpers
// ---------------------------------------------------------------------------------------------

fn hex_prefix(data: &[u8]) -> String {
    let n = data.len().min(8);
    let mut s = String::with_capacity(2 * n + 3);
    for b in &data[..n] {
        s.push_str(&format!("{b:02x}"));
    }
    if data.len() > n {
        s.push_str("...");
    }
    s
}

fn decode_err(format: ImageFormat, what: impl std::fmt::Display) -> Error {
    Error::image_decode(format!("{format}: {what}"))
}

/// Checks a header's size: zero is a decode error, more than `max_pixels` is too large.
fn check_size(format: ImageFormat, width: u64, height: u64, max_pixels: u64) -> Result<()> {
    if width == 0 || height == 0 {
        return Err(decode_err(
            format,
            format!("image has a zero dimension ({width}x{height})"),
        ));
    }
    let pixels = width.saturating_mul(height);
    if pixels > max_pixels {
        return Err(Error::new(
            Status::ImageTooLarge,
            format!(
                "{format} image is {width}x{height} = {pixels} pixels, more than the limit of \
                 {max_pixels}"
            ),
        ));
    }
    if width > u64::from(u32::MAX) || height > u64::from(u32::MAX) {
        return Err(decode_err(
            format,
            format!("image size {width}x{height} is out of range"),
        ));
    }
    Ok(())
}

/// A memory budget for a decoder: its output at `bytes_per_pixel` plus slack for auxiliary
/// buffers.
fn alloc_budget(width: u32, height: u32, bytes_per_pixel: u64) -> u64 {
    (u64::from(width) * u64::from(height))
        .saturating_mul(bytes_per_pixel)
        .saturating_add(64 << 20)
}

/// An empty buffer with room for `width * height` RGB pixels; allocation failure is reported
/// instead of aborting.
fn alloc_rgb(width: u32, height: u32) -> Result<Vec<u8>> {
    alloc_bytes(u64::from(width) * u64::from(height) * 3)
}

fn alloc_bytes(len: u64) -> Result<Vec<u8>> {
    let oom = || {
        Error::new(
            Status::OutOfMemory,
            format!("cannot allocate {len} bytes for the decoded image"),
        )
    };
    let n = usize::try_from(len).map_err(|_| oom())?;
    let mut v = Vec::new();
    v.try_reserve_exact(n).map_err(|_| oom())?;
    Ok(v)
}

/// A zero-filled buffer of `len` bytes (for decoders that write into a slice).
fn alloc_zeroed(len: u64) -> Result<Vec<u8>> {
    let mut v = alloc_bytes(len)?;
    // `alloc_bytes` proved that `len` fits in usize and reserved it: no reallocation here.
    v.resize(len as usize, 0);
    Ok(v)
}

#[inline]
fn push_rgba(out: &mut Vec<u8>, r: u8, g: u8, b: u8, a: u8) {
    match a {
        255 => out.extend_from_slice(&[r, g, b]),
        0 => out.extend_from_slice(&[255, 255, 255]),
        _ => out.extend_from_slice(&[
            composite_channel(r, a),
            composite_channel(g, a),
            composite_channel(b, a),
        ]),
    }
}

fn finish(format: ImageFormat, width: u32, height: u32, data: Vec<u8>) -> Result<RgbImage> {
    RgbImage::new(width, height, data).map_err(|e| decode_err(format, e.message()))
}

// ---------------------------------------------------------------------------------------------
// PNG (png crate, raw samples: Pillow's conversions differ from libpng's expansions)
// ---------------------------------------------------------------------------------------------

fn png_err(err: png::DecodingError) -> Error {
    let what = match err {
        png::DecodingError::IoError(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
            "file is truncated".to_string()
        }
        png::DecodingError::LimitsExceeded => "decoder memory limit exceeded".to_string(),
        other => other.to_string(),
    };
    decode_err(ImageFormat::Png, what)
}

fn png_decode(data: &[u8], max_pixels: u64) -> Result<RgbImage> {
    png_pillow_chunk_checks(data)?;
    match png_decode_inner(data, max_pixels) {
        Err(err) if err.status() == Status::ImageDecode => match png_complete_tail(data) {
            // Pillow stops reading after the image data: a file cut after its last IDAT
            // chunk still decodes. Retry with the complete chunks and a fresh IEND.
            Some(repaired) => png_decode_inner(&repaired, max_pixels).map_err(|_| err),
            None => Err(err),
        },
        other => other,
    }
}

/// When `data` lacks its IEND chunk, the complete chunks followed by IEND (an IDAT whose
/// data is whole but whose CRC is cut gets a fresh CRC, as Pillow never checks IDAT CRCs);
/// `None` when IEND is present or there is no IDAT.
fn png_complete_tail(data: &[u8]) -> Option<Vec<u8>> {
    let mut pos = 8;
    let mut seen_idat = false;
    let mut repaired_idat: Option<(usize, usize)> = None;
    while pos + 8 <= data.len() {
        let len = u32::from_be_bytes([data[pos], data[pos + 1], data[pos + 2], data[pos + 3]]);
        let kind = &data[pos + 4..pos + 8];
        if kind == b"IEND" {
            return None;
        }
        let body_end = (pos + 8).checked_add(usize::try_from(len).ok()?)?;
        if body_end.checked_add(4)? > data.len() {
            if kind == b"IDAT" && body_end <= data.len() {
                repaired_idat = Some((pos, body_end));
            }
            break;
        }
        seen_idat |= kind == b"IDAT";
        pos = body_end + 4;
    }
    if !seen_idat && repaired_idat.is_none() {
        return None;
    }
    let mut out = Vec::with_capacity(pos + 24);
    out.extend_from_slice(&data[..pos]);
    if let Some((start, end)) = repaired_idat {
        out.extend_from_slice(&data[start..end]);
        out.extend_from_slice(&crc32(&data[start + 4..end]).to_be_bytes());
    }
    out.extend_from_slice(&[0, 0, 0, 0, b'I', b'E', b'N', b'D', 0xAE, 0x42, 0x60, 0x82]);
    Some(out)
}

/// CRC-32 (IEEE, as in PNG chunks).
fn crc32(bytes: &[u8]) -> u32 {
    crc32fast::hash(bytes)
}

/// Pillow's `PngImagePlugin.MAX_TEXT_CHUNK` (`ImageFile.SAFEBLOCK`): the most bytes one
/// compressed text or ICC chunk may inflate to.
const PNG_MAX_TEXT_CHUNK: usize = 1 << 20;
/// Pillow's `MAX_TEXT_MEMORY`: the most text all chunks of a file may hold together.
const PNG_MAX_TEXT_MEMORY: usize = 64 * PNG_MAX_TEXT_CHUNK;

/// The checks Pillow's PNG reader makes on the chunks around the image data, which the png
/// crate does not make (or makes differently):
/// * every chunk before the first `IDAT` must have a correct CRC ("broken PNG file");
/// * an `iCCP`, `zTXt` or compressed `iTXt` chunk may inflate to at most 1 MiB ("Decompressed
///   data too large"), and all text together may take at most 64 MiB ("Too much memory used
///   in text chunks"); a zlib stream that fails to inflate is ignored, as in Pillow;
/// * an `iCCP` or `zTXt` chunk with a compression method other than 0 is an error.
///
/// Chunks after the image data are read as Pillow's `load_end` reads them: without CRC
/// checks, stopping quietly at the first chunk that does not fit.
fn png_pillow_chunk_checks(data: &[u8]) -> Result<()> {
    const F: ImageFormat = ImageFormat::Png;
    let mut pos = 8;
    let mut seen_idat = false;
    let mut text = 0usize;
    while pos + 8 <= data.len() {
        let len = u32::from_be_bytes([data[pos], data[pos + 1], data[pos + 2], data[pos + 3]]);
        let kind: [u8; 4] = data[pos + 4..pos + 8].try_into().expect("4 bytes");
        let name = String::from_utf8_lossy(&kind).into_owned();
        let Some(body_end) = usize::try_from(len)
            .ok()
            .and_then(|l| (pos + 8).checked_add(l))
        else {
            return Ok(());
        };
        if kind == *b"IEND" || body_end > data.len() {
            return Ok(());
        }
        seen_idat |= kind == *b"IDAT";
        let body = &data[pos + 8..body_end];
        if !seen_idat {
            let stored = data.get(body_end..body_end + 4);
            let crc = crc32(&data[pos + 4..body_end]).to_be_bytes();
            if stored != Some(&crc[..]) {
                return Err(decode_err(
                    F,
                    format!("broken PNG file (bad checksum in chunk {name})"),
                ));
            }
        }
        let compressed = match &kind {
            b"iCCP" | b"zTXt" => keyword_compressed_stream(&kind, body)?,
            b"iTXt" => itxt_compressed_text(body),
            b"tEXt" => {
                text += body.len();
                None
            }
            _ => None,
        };
        if let Some(stream) = compressed.filter(|s| !s.is_empty()) {
            use miniz_oxide::inflate::{decompress_to_vec_zlib_with_limit, TINFLStatus};
            match decompress_to_vec_zlib_with_limit(stream, PNG_MAX_TEXT_CHUNK) {
                Ok(v) => {
                    if kind != *b"iCCP" {
                        text += v.len();
                    }
                }
                Err(e) if e.status == TINFLStatus::HasMoreOutput => {
                    return Err(decode_err(
                        F,
                        format!("{name} chunk: decompressed data too large (over {PNG_MAX_TEXT_CHUNK} bytes)"),
                    ))
                }
                Err(_) => {}
            }
        }
        if text > PNG_MAX_TEXT_MEMORY {
            return Err(decode_err(
                F,
                format!("too much memory used in text chunks (over {PNG_MAX_TEXT_MEMORY} bytes)"),
            ));
        }
        pos = body_end + 4;
    }
    Ok(())
}

/// The zlib stream of an `iCCP` or `zTXt` chunk (keyword \0, compression method, zlib
/// stream), as Pillow finds it; an error for a compression method other than 0.
fn keyword_compressed_stream<'a>(kind: &[u8; 4], body: &'a [u8]) -> Result<Option<&'a [u8]>> {
    let nul = body.iter().position(|&b| b == 0);
    match (nul, kind) {
        (None, b"iCCP") => Ok(None),
        (None, _) => Ok(Some(&body[body.len()..])),
        (Some(i), _) => match body.get(i + 1) {
            Some(0) | None => Ok(Some(body.get(i + 2..).unwrap_or_default())),
            Some(m) => Err(decode_err(
                ImageFormat::Png,
                format!(
                    "unknown compression method {m} in {} chunk",
                    String::from_utf8_lossy(kind)
                ),
            )),
        },
    }
}

/// The zlib stream of a compressed `iTXt` chunk (keyword \0 flag method language \0
/// translated keyword \0 text), as Pillow's `chunk_iTXt` finds it; `None` when the chunk is
/// not compressed (or not laid out so that Pillow would inflate it).
fn itxt_compressed_text(body: &[u8]) -> Option<&[u8]> {
    let i = body.iter().position(|&b| b == 0)?;
    let rest = body.get(i + 1..)?;
    let (&flag, &method) = (rest.first()?, rest.get(1)?);
    if flag == 0 || method != 0 {
        return None;
    }
    let rest = &rest[2..];
    let lang = rest.iter().position(|&b| b == 0)?;
    let rest = &rest[lang + 1..];
    let tk = rest.iter().position(|&b| b == 0)?;
    Some(&rest[tk + 1..])
}

fn png_decode_inner(data: &[u8], max_pixels: u64) -> Result<RgbImage> {
    const F: ImageFormat = ImageFormat::Png;
    let mut decoder = png::Decoder::new(Cursor::new(data));
    decoder.set_transformations(png::Transformations::IDENTITY);
    decoder.set_ignore_text_chunk(true);
    decoder.set_ignore_iccp_chunk(true);
    let (width, height) = {
        let info = decoder.read_header_info().map_err(png_err)?;
        (info.width, info.height)
    };
    check_size(F, u64::from(width), u64::from(height), max_pixels)?;
    let budget = usize::try_from(alloc_budget(width, height, 8)).unwrap_or(usize::MAX);
    decoder.set_limits(png::Limits { bytes: budget });
    let mut reader = decoder.read_info().map_err(png_err)?;

    let info = reader.info();
    let color = info.color_type;
    let depth = info.bit_depth as u8;
    let palette: Vec<u8> = info
        .palette
        .as_deref()
        .map(<[u8]>::to_vec)
        .unwrap_or_default();
    let trns: Option<Vec<u8>> = info.trns.as_deref().map(<[u8]>::to_vec);
    if color == png::ColorType::Indexed && palette.is_empty() {
        return Err(decode_err(F, "palette image without a PLTE chunk"));
    }

    let size = reader
        .output_buffer_size()
        .ok_or_else(|| decode_err(F, "image buffer size overflows"))?;
    let mut buf = alloc_zeroed(size as u64)?;
    let frame = reader.next_frame(&mut buf).map_err(png_err)?;
    let line = frame.line_size;
    let (w, h) = (width as usize, height as usize);
    if buf.len() < line * h {
        return Err(decode_err(F, "decoded buffer is shorter than the image"));
    }

    let mut out = alloc_rgb(width, height)?;
    let format = PngFormat {
        color,
        depth,
        palette: &palette,
        trns: trns.as_deref(),
    };
    png_rows_to_rgb(&format, &buf, line, (w, h), &mut out);
    finish(F, width, height, out)
}

/// How a PNG's decoded samples are laid out.
struct PngFormat<'a> {
    color: png::ColorType,
    depth: u8,
    palette: &'a [u8],
    trns: Option<&'a [u8]>,
}

/// Appends the `w x h` pixels of the decoded rows (`line` bytes each) to `out` as RGB, the
/// way Pillow converts each PNG mode (transparency composited on white).
fn png_rows_to_rgb(
    f: &PngFormat,
    buf: &[u8],
    line: usize,
    (w, h): (usize, usize),
    out: &mut Vec<u8>,
) {
    match f.color {
        png::ColorType::Grayscale => {
            // Pillow: 1-bit -> mode "1" (0/255), 2/4-bit -> "L" scaled by 85/17, 8-bit "L",
            // 16-bit "I;16" clipped at 255. tRNS: Pillow compares the 8-bit value with the key
            // masked to its low byte (mode "1" maps any non-zero key to 255).
            // (The png crate keeps only the low byte of a key below 16 bits.)
            let key = f.trns.and_then(|t| match (f.depth, t) {
                (1, [v, ..]) => Some(if *v != 0 { 255u8 } else { 0 }),
                (16, [_, lo, ..]) => Some(*lo),
                (_, [v, ..]) => Some(*v),
                _ => None,
            });
            for row in buf.chunks_exact(line).take(h) {
                for x in 0..w {
                    let v = gray_sample(row, x, f.depth);
                    match key {
                        Some(k) if k == v => out.extend_from_slice(&[255, 255, 255]),
                        _ => out.extend_from_slice(&[v, v, v]),
                    }
                }
            }
        }
        png::ColorType::Rgb => {
            // 16-bit: Pillow's "RGB;16B" keeps the high byte.
            let key = f.trns.and_then(|t| match (f.depth, t) {
                (16, [_, r, _, g, _, b, ..]) => Some([*r, *g, *b]),
                (_, [r, g, b, ..]) if f.depth < 16 => Some([*r, *g, *b]),
                _ => None,
            });
            let step = if f.depth == 16 { 2 } else { 1 };
            for row in buf.chunks_exact(line).take(h) {
                for px in row[..w * 3 * step].chunks_exact(3 * step) {
                    let p = [px[0], px[step], px[2 * step]];
                    match key {
                        Some(k) if k == p => out.extend_from_slice(&[255, 255, 255]),
                        _ => out.extend_from_slice(&p),
                    }
                }
            }
        }
        png::ColorType::Indexed => {
            let table = palette_table(f.palette, f.trns);
            for row in buf.chunks_exact(line).take(h) {
                for x in 0..w {
                    let [r, g, b, a] = table[packed_sample(row, x, f.depth) as usize];
                    push_rgba(out, r, g, b, a);
                }
            }
        }
        png::ColorType::GrayscaleAlpha => {
            // 16-bit: Pillow's "LA;16B" -> RGBA keeps the high bytes.
            let step = if f.depth == 16 { 2 } else { 1 };
            for row in buf.chunks_exact(line).take(h) {
                for px in row[..w * 2 * step].chunks_exact(2 * step) {
                    push_rgba(out, px[0], px[0], px[0], px[step]);
                }
            }
        }
        png::ColorType::Rgba => {
            let step = if f.depth == 16 { 2 } else { 1 };
            for row in buf.chunks_exact(line).take(h) {
                for px in row[..w * 4 * step].chunks_exact(4 * step) {
                    push_rgba(out, px[0], px[step], px[2 * step], px[3 * step]);
                }
            }
        }
    }
}

/// The `x`-th sample of a row packed at `depth` bits (1, 2, 4 or 8), MSB first.
#[inline]
fn packed_sample(row: &[u8], x: usize, depth: u8) -> u8 {
    match depth {
        1 => (row[x / 8] >> (7 - (x % 8))) & 1,
        2 => (row[x / 4] >> (6 - 2 * (x % 4))) & 3,
        4 => (row[x / 2] >> (4 - 4 * (x % 2))) & 15,
        _ => row[x],
    }
}

/// A gray sample as Pillow's 8-bit value (see `png_decode`).
#[inline]
fn gray_sample(row: &[u8], x: usize, depth: u8) -> u8 {
    match depth {
        1 => packed_sample(row, x, 1) * 255,
        2 => packed_sample(row, x, 2) * 85,
        4 => packed_sample(row, x, 4) * 17,
        8 => row[x],
        _ => {
            let v = u16::from_be_bytes([row[2 * x], row[2 * x + 1]]);
            v.min(255) as u8
        }
    }
}

/// A 256-entry RGBA table from a palette (`r g b` triplets) and optional per-entry alpha;
/// entries past the palette are opaque black, like Pillow's.
fn palette_table(palette: &[u8], alpha: Option<&[u8]>) -> Vec<[u8; 4]> {
    let mut table = vec![[0u8, 0, 0, 255]; 256];
    for (i, rgb) in palette.chunks_exact(3).take(256).enumerate() {
        table[i] = [rgb[0], rgb[1], rgb[2], 255];
    }
    if let Some(alpha) = alpha {
        for (i, a) in alpha.iter().take(256).enumerate() {
            table[i][3] = *a;
        }
    }
    table
}

// ---------------------------------------------------------------------------------------------
// JPEG (libjpeg-turbo through the turbojpeg crate, like Pillow: ISLOW IDCT, fancy upsampling)
// ---------------------------------------------------------------------------------------------

/// Most scans a progressive JPEG may have (libjpeg-turbo's recommended guard against scan
/// bombs; real encoders write about ten).
const JPEG_SCAN_LIMIT: u32 = 500;

/// libjpeg warning texts (jerror.h `JWRN_*`). turbojpeg reports a warning as a failure, but
/// the image is fully decoded and Pillow, which silences libjpeg warnings, accepts it.
/// "Premature end of JPEG file" is deliberately absent: Pillow raises on truncated data.
const JPEG_WARNINGS: &[&str] = &[
    "Unknown Adobe color transform code",
    "Corrupt JPEG data",
    "Inconsistent progression sequence",
    "Warning: unknown JFIF revision number",
    "Invalid SOS parameters for sequential JPEG",
    "Application transferred too many scanlines",
];

fn jpeg_err(what: impl std::fmt::Display) -> Error {
    decode_err(ImageFormat::Jpeg, what)
}

fn jpeg_decode(data: &[u8], max_pixels: u64) -> Result<RgbImage> {
    use turbojpeg::{Colorspace, Image, PixelFormat};
    const F: ImageFormat = ImageFormat::Jpeg;

    let mut decompressor = turbojpeg::Decompressor::new().map_err(jpeg_err)?;
    let header = decompressor
        .read_header(data)
        .map_err(|e| jpeg_err(format!("invalid header: {e}")))?;
    check_size(F, header.width as u64, header.height as u64, max_pixels)?;
    check_jpeg_markers(data)?;
    decompressor
        .set_scan_limit(JPEG_SCAN_LIMIT)
        .map_err(jpeg_err)?;

    let (width, height) = (header.width, header.height);
    let cmyk = matches!(header.colorspace, Colorspace::CMYK | Colorspace::YCCK);
    let format = if cmyk {
        PixelFormat::CMYK
    } else {
        PixelFormat::RGB
    };
    let channels = format.size();
    let len = (width as u64) * (height as u64) * channels as u64;
    let mut pixels = alloc_zeroed(len)?;
    let image = Image {
        pixels: pixels.as_mut_slice(),
        width,
        pitch: width * channels,
        height,
        format,
    };
    if let Err(err) = decompressor.decompress(data, image) {
        let text = err.to_string();
        let warning = JPEG_WARNINGS.iter().any(|w| text.contains(w));
        if !warning {
            return Err(jpeg_err(text.trim_start_matches("TurboJPEG error: ")));
        }
    }
    let (w, h) = (width as u32, height as u32);
    if cmyk {
        // Pillow reads 4-channel JPEGs as "CMYK;I" (Adobe-inverted) and converts with
        // r = 255 - k' - (c' * (255 - k') / 255)  where c' = 255 - c_raw, k' = 255 - k_raw.
        let mut out = alloc_rgb(w, h)?;
        for px in pixels.chunks_exact(4) {
            let nk = u32::from(px[3]); // 255 - k' == raw k
            for &c in &px[..3] {
                let c = 255 - u32::from(c);
                let tmp = c * nk + 128;
                let m = ((tmp >> 8) + tmp) >> 8;
                out.push(nk.saturating_sub(m) as u8);
            }
        }
        finish(F, w, h, out)
    } else {
        finish(F, w, h, pixels)
    }
}

/// Walks the JPEG marker structure and fails unless an EOI marker is reached inside `data`:
/// Pillow raises "image file is truncated" whenever libjpeg asks for bytes past the end.
fn check_jpeg_markers(data: &[u8]) -> Result<()> {
    let truncated = || jpeg_err("file is truncated (no EOI marker before the end of the data)");
    let n = data.len();
    let mut pos = 2; // after SOI
    loop {
        // next marker: skip junk up to 0xFF, then fill bytes
        while pos < n && data[pos] != 0xFF {
            pos += 1;
        }
        while pos < n && data[pos] == 0xFF {
            pos += 1;
        }
        if pos >= n {
            return Err(truncated());
        }
        let marker = data[pos];
        pos += 1;
        match marker {
            0xD9 => return Ok(()),
            0x00 | 0x01 | 0xD0..=0xD7 | 0xD8 => continue,
            _ => {
                if pos + 2 > n {
                    return Err(truncated());
                }
                let len = usize::from(u16::from_be_bytes([data[pos], data[pos + 1]]));
                if len < 2 {
                    // libjpeg rejects this itself with a precise message
                    return Ok(());
                }
                pos += len;
                if pos > n {
                    return Err(truncated());
                }
                if marker == 0xDA {
                    // entropy-coded data up to the next real marker
                    loop {
                        while pos < n && data[pos] != 0xFF {
                            pos += 1;
                        }
                        let mut next = pos + 1;
                        while next < n && data[next] == 0xFF {
                            next += 1;
                        }
                        if next >= n {
                            return Err(truncated());
                        }
                        match data[next] {
                            0x00 | 0xD0..=0xD7 => pos = next + 1,
                            _ => {
                                pos = next - 1;
                                break;
                            }
                        }
                    }
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// GIF (first frame, gif crate in indexed mode to reproduce Pillow's canvas)
// ---------------------------------------------------------------------------------------------

fn gif_err(err: gif::DecodingError) -> Error {
    let what = match err {
        gif::DecodingError::Io(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
            "file is truncated".to_string()
        }
        other => other.to_string(),
    };
    decode_err(ImageFormat::Gif, what)
}

/// A GIF's logical screen `(width, height)`, read and checked against `max_pixels` before
/// anything else is decoded.
fn gif_screen(data: &[u8], max_pixels: u64) -> Result<(u16, u16)> {
    if data.len() < 13 {
        return Err(decode_err(
            ImageFormat::Gif,
            "file is truncated (incomplete header)",
        ));
    }
    let screen_w = u16::from_le_bytes([data[6], data[7]]);
    let screen_h = u16::from_le_bytes([data[8], data[9]]);
    if u64::from(screen_w) * u64::from(screen_h) > max_pixels {
        check_size(
            ImageFormat::Gif,
            screen_w.into(),
            screen_h.into(),
            max_pixels,
        )?;
    }
    Ok((screen_w, screen_h))
}

fn gif_decode(data: &[u8], max_pixels: u64) -> Result<RgbImage> {
    const F: ImageFormat = ImageFormat::Gif;
    let (screen_w, screen_h) = gif_screen(data, max_pixels)?;

    let mut options = gif::DecodeOptions::new();
    options.set_color_output(gif::ColorOutput::Indexed);
    let frame_budget = std::num::NonZeroU64::new(max_pixels.saturating_add(1))
        .map_or(gif::MemoryLimit::Unlimited, gif::MemoryLimit::Bytes);
    options.set_memory_limit(frame_budget);
    let mut decoder = options.read_info(Cursor::new(data)).map_err(gif_err)?;
    let global: Option<Vec<u8>> = decoder.global_palette().map(<[u8]>::to_vec);

    let (left, top, fw, fh, transparent, local) =
        match decoder.next_frame_info().map_err(gif_err)? {
            Some(f) => (
                usize::from(f.left),
                usize::from(f.top),
                usize::from(f.width),
                usize::from(f.height),
                f.transparent,
                f.palette.clone(),
            ),
            None => return Err(decode_err(F, "no image in the file")),
        };
    // Pillow's decoder refuses an empty first frame ("tile cannot extend outside image"),
    // before it would paint a canvas of any size (one it grew to hold the frame) with the
    // background.
    if fw == 0 || fh == 0 {
        return Err(decode_err(
            F,
            format!("the first frame is empty ({fw}x{fh} at {left},{top})"),
        ));
    }
    // Pillow grows the canvas to hold a frame that sticks out of the logical screen.
    let width = usize::from(screen_w).max(left + fw);
    let height = usize::from(screen_h).max(top + fh);
    check_size(F, width as u64, height as u64, max_pixels)?;

    let mut indices = alloc_zeroed((fw as u64) * (fh as u64))?;
    decoder.read_into_buffer(&mut indices).map_err(gif_err)?;

    // Pillow: a palette that is the identity gray ramp is dropped (mode "L", value = index).
    let palette = local.or(global);
    let table: Vec<[u8; 4]> = match palette.as_deref() {
        Some(p) if !is_gray_ramp(p) => palette_table(p, None),
        _ => (0..=255u8).map(|i| [i, i, i, 255]).collect(),
    };
    let color = |index: u8| -> [u8; 3] {
        if transparent == Some(index) {
            [255, 255, 255]
        } else {
            let [r, g, b, _] = table[index as usize];
            [r, g, b]
        }
    };
    // Outside the frame: the transparent index if any, else index 0.
    let fill = color(transparent.unwrap_or(0));

    let (w, h) = (width as u32, height as u32);
    let mut out = alloc_rgb(w, h)?;
    for y in 0..height {
        for x in 0..width {
            let inside = x >= left && x < left + fw && y >= top && y < top + fh;
            let rgb = if inside {
                color(indices[(y - top) * fw + (x - left)])
            } else {
                fill
            };
            out.extend_from_slice(&rgb);
        }
    }
    finish(F, w, h, out)
}

/// Whether a GIF palette maps every index `i` to `(i, i, i)` (Pillow then uses mode "L").
fn is_gray_ramp(palette: &[u8]) -> bool {
    palette
        .chunks_exact(3)
        .enumerate()
        .all(|(i, c)| c.iter().all(|&v| usize::from(v) == i))
}

// ---------------------------------------------------------------------------------------------
// WebP, BMP, TIFF (image crate)
// ---------------------------------------------------------------------------------------------

fn image_err(format: ImageFormat, err: image::ImageError) -> Error {
    use image::ImageError;
    match err {
        ImageError::Limits(e) => decode_err(format, format!("decoder limit exceeded: {e}")),
        ImageError::IoError(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
            decode_err(format, "file is truncated")
        }
        other => decode_err(format, other),
    }
}

fn image_crate_decode(format: ImageFormat, data: &[u8], max_pixels: u64) -> Result<RgbImage> {
    use image::codecs::{bmp::BmpDecoder, tiff::TiffDecoder, webp::WebPDecoder};
    let map = |e| image_err(format, e);
    match format {
        ImageFormat::WebP => {
            // libwebp (Pillow) refuses a file shorter than its RIFF header says.
            if data.len() >= 8 {
                let riff = u32::from_le_bytes([data[4], data[5], data[6], data[7]]);
                let need = u64::from(riff) + 8;
                if (data.len() as u64) < need {
                    return Err(decode_err(
                        format,
                        format!(
                            "file is truncated ({} of {need} bytes in the RIFF container)",
                            data.len()
                        ),
                    ));
                }
            }
            webp_check_chunks(data)?;
            if let Some((w, h)) = webp_header_size(data) {
                check_size(format, w, h, max_pixels)?;
            }
            let decoder = WebPDecoder::new(Cursor::new(data)).map_err(map)?;
            image_decoder_to_rgb(format, decoder, max_pixels)
        }
        ImageFormat::Bmp => {
            // The image crate refuses large sizes itself; report them as too large first.
            if let Some((w, h)) = bmp_header_size(data) {
                check_size(format, w, h, max_pixels)?;
            }
            let decoder = BmpDecoder::new(Cursor::new(data)).map_err(map)?;
            match image_decoder_to_rgb(format, decoder, max_pixels) {
                Err(err) if err.status() == Status::ImageDecode => {
                    // Pillow accepts a file that lacks only the last row's padding.
                    let pad = bmp_last_row_padding(data);
                    if pad == 0 {
                        return Err(err);
                    }
                    let mut padded = data.to_vec();
                    padded.resize(data.len() + pad, 0);
                    let decoder = BmpDecoder::new(Cursor::new(&padded[..])).map_err(map)?;
                    image_decoder_to_rgb(format, decoder, max_pixels).map_err(|_| err)
                }
                other => other,
            }
        }
        _ => {
            if let Some((w, h)) = tiff_header_size(data) {
                check_size(format, w, h, max_pixels)?;
            }
            let decoder = TiffDecoder::new(Cursor::new(data)).map_err(map)?;
            image_decoder_to_rgb(format, decoder, max_pixels)
        }
    }
}

/// libwebp's demuxer (through which Pillow decodes every WebP) refuses a file whose chunks do
/// not fit in its RIFF payload; the image crate reads such a file anyway.
fn webp_check_chunks(data: &[u8]) -> Result<()> {
    let Some(riff) = data.get(4..8) else {
        return Ok(());
    };
    let riff = u32::from_le_bytes(riff.try_into().expect("4 bytes")) as usize;
    let end = riff.saturating_add(8).min(data.len());
    let mut pos = 12;
    while pos + 8 <= end {
        let size = u32::from_le_bytes(data[pos + 4..pos + 8].try_into().expect("4 bytes"));
        let body_end = (pos + 8).saturating_add(size as usize);
        if body_end > end {
            return Err(decode_err(
                ImageFormat::WebP,
                format!(
                    "chunk {} at byte {pos} claims {size} bytes, past the end of the RIFF data \
                     ({end} bytes)",
                    String::from_utf8_lossy(&data[pos..pos + 4])
                ),
            ));
        }
        pos = body_end + (size as usize & 1);
    }
    Ok(())
}

/// Width and height from the first chunk of a WebP file (VP8, VP8L or VP8X), if readable.
fn webp_header_size(data: &[u8]) -> Option<(u64, u64)> {
    let chunk = data.get(12..16)?;
    let body = data.get(20..)?;
    match chunk {
        b"VP8 " => {
            // 3-byte frame tag, start code 9d 01 2a, then 14-bit width and height
            if body.get(3..6)? != [0x9d, 0x01, 0x2a] {
                return None;
            }
            let w = u16::from_le_bytes(body.get(6..8)?.try_into().ok()?) & 0x3FFF;
            let h = u16::from_le_bytes(body.get(8..10)?.try_into().ok()?) & 0x3FFF;
            Some((w.into(), h.into()))
        }
        b"VP8L" => {
            let bits = u32::from_le_bytes(body.get(1..5)?.try_into().ok()?);
            Some((
                u64::from(bits & 0x3FFF) + 1,
                u64::from((bits >> 14) & 0x3FFF) + 1,
            ))
        }
        b"VP8X" => {
            let b = body.get(4..10)?;
            let w = u32::from_le_bytes([b[0], b[1], b[2], 0]);
            let h = u32::from_le_bytes([b[3], b[4], b[5], 0]);
            Some((u64::from(w) + 1, u64::from(h) + 1))
        }
        _ => None,
    }
}

/// ImageWidth and ImageLength of the first IFD of a TIFF or BigTIFF file, if readable.
fn tiff_header_size(data: &[u8]) -> Option<(u64, u64)> {
    let little = data.get(..2)? == b"II";
    let int = |at: usize, n: usize| -> Option<u64> {
        let bytes = data.get(at..at.checked_add(n)?)?;
        let mut v = 0u64;
        for i in 0..n {
            let b = if little { bytes[n - 1 - i] } else { bytes[i] };
            v = (v << 8) | u64::from(b);
        }
        Some(v)
    };
    let big = int(2, 2)? == 43;
    let (ifd, count_size, entry_size, value_at) = if big {
        (usize::try_from(int(8, 8)?).ok()?, 8, 20, 12)
    } else {
        (usize::try_from(int(4, 4)?).ok()?, 2, 12, 8)
    };
    let count = usize::try_from(int(ifd, count_size)?).ok()?;
    let (mut width, mut height) = (None, None);
    for i in 0..count.min(4096) {
        let e = ifd + count_size + i * entry_size;
        let tag = int(e, 2)?;
        let value = match int(e + 2, 2)? {
            3 => int(e + value_at, 2)?,  // SHORT
            4 => int(e + value_at, 4)?,  // LONG
            16 => int(e + value_at, 8)?, // LONG8 (BigTIFF)
            _ => continue,
        };
        match tag {
            256 => width = Some(value),
            257 => height = Some(value),
            _ => {}
        }
        if let (Some(w), Some(h)) = (width, height) {
            return Some((w, h));
        }
    }
    None
}

/// Width and height from a BMP info header (any version), if present.
fn bmp_header_size(data: &[u8]) -> Option<(u64, u64)> {
    let field = |at: usize, n: usize| data.get(at..at + n);
    let header_size = u32::from_le_bytes(field(14, 4)?.try_into().ok()?);
    if header_size == 12 {
        let w = u16::from_le_bytes(field(18, 2)?.try_into().ok()?);
        let h = u16::from_le_bytes(field(20, 2)?.try_into().ok()?);
        Some((w.into(), h.into()))
    } else {
        let w = i32::from_le_bytes(field(18, 4)?.try_into().ok()?);
        let h = i32::from_le_bytes(field(22, 4)?.try_into().ok()?);
        Some((w.unsigned_abs().into(), h.unsigned_abs().into()))
    }
}

/// Bytes of padding after each row of an uncompressed BMP with a BITMAPINFOHEADER or later
/// (0 for anything else).
fn bmp_last_row_padding(data: &[u8]) -> usize {
    if data.len() < 34 {
        return 0;
    }
    let header_size = u32::from_le_bytes([data[14], data[15], data[16], data[17]]);
    let width = i32::from_le_bytes([data[18], data[19], data[20], data[21]]);
    let bpp = u16::from_le_bytes([data[28], data[29]]);
    let compression = u32::from_le_bytes([data[30], data[31], data[32], data[33]]);
    if header_size < 40 || !(compression == 0 || compression == 3) || width <= 0 {
        return 0;
    }
    let bits = u64::from(width.unsigned_abs()) * u64::from(bpp);
    let row = bits.div_ceil(8);
    let stride = bits.div_ceil(32) * 4;
    (stride - row) as usize
}

fn image_decoder_to_rgb(
    format: ImageFormat,
    mut decoder: impl image::ImageDecoder,
    max_pixels: u64,
) -> Result<RgbImage> {
    use image::ColorType;
    let (width, height) = decoder.dimensions();
    check_size(format, width.into(), height.into(), max_pixels)?;
    let mut limits = image::Limits::default();
    limits.max_image_width = Some(width);
    limits.max_image_height = Some(height);
    limits.max_alloc = Some(alloc_budget(width, height, 16));
    decoder
        .set_limits(limits)
        .map_err(|e| image_err(format, e))?;

    let color = decoder.color_type();
    let mut buf = alloc_zeroed(decoder.total_bytes())?;
    decoder
        .read_image(&mut buf)
        .map_err(|e| image_err(format, e))?;

    let mut out = alloc_rgb(width, height)?;
    match color {
        ColorType::Rgb8 => out.extend_from_slice(&buf),
        ColorType::Rgba8 => {
            for px in buf.chunks_exact(4) {
                push_rgba(&mut out, px[0], px[1], px[2], px[3]);
            }
        }
        ColorType::L8 => {
            for &v in &buf {
                out.extend_from_slice(&[v, v, v]);
            }
        }
        ColorType::La8 => {
            for px in buf.chunks_exact(2) {
                push_rgba(&mut out, px[0], px[0], px[0], px[1]);
            }
        }
        // 16-bit (native-endian u16): Pillow keeps the high byte of colour samples and clips
        // 16-bit gray ("I;16") at 255.
        ColorType::L16 => {
            for s in buf.chunks_exact(2) {
                let v = u16::from_ne_bytes([s[0], s[1]]).min(255) as u8;
                out.extend_from_slice(&[v, v, v]);
            }
        }
        ColorType::La16 => {
            for px in buf.chunks_exact(4) {
                let l = high_byte(&px[0..2]);
                push_rgba(&mut out, l, l, l, high_byte(&px[2..4]));
            }
        }
        ColorType::Rgb16 => {
            for s in buf.chunks_exact(2) {
                out.push(high_byte(s));
            }
        }
        ColorType::Rgba16 => {
            for px in buf.chunks_exact(8) {
                push_rgba(
                    &mut out,
                    high_byte(&px[0..2]),
                    high_byte(&px[2..4]),
                    high_byte(&px[4..6]),
                    high_byte(&px[6..8]),
                );
            }
        }
        other => {
            return Err(decode_err(
                format,
                format!("unsupported pixel type {other:?}"),
            ))
        }
    }
    finish(format, width, height, out)
}

#[inline]
fn high_byte(sample: &[u8]) -> u8 {
    (u16::from_ne_bytes([sample[0], sample[1]]) >> 8) as u8
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    const MAX_PIXELS: u64 = 89_478_485;

    fn fixtures() -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/images")
    }

    fn manifest() -> serde_json::Value {
        let text = std::fs::read_to_string(fixtures().join("manifest.json"))
            .expect("tests/fixtures/images/manifest.json (run scripts/gen_images.py)");
        serde_json::from_str(&text).expect("manifest.json is valid JSON")
    }

    #[test]
    fn gif_with_an_empty_first_frame_is_refused_as_pillow_does() {
        // A 4x4 screen with a 2-colour palette and a 4x0 first frame, and the fuzzer's
        // 1x29440 screen with a 38x0 frame at (1792, 1373) that grew the canvas to 1830 x
        // 29440 (seconds of resizing under ASan): Pillow 13 raises "tile cannot extend
        // outside image" for both.
        for (screen, frame) in [
            ([4u16, 4], [0u16, 0, 4, 0]),
            ([1, 29440], [1792, 1373, 38, 0]),
        ] {
            let mut g = b"GIF89a".to_vec();
            g.extend(screen.iter().flat_map(|v| v.to_le_bytes()));
            g.extend_from_slice(&[0x80, 0, 0, 0, 0, 0, 255, 255, 255, 0x2c]);
            g.extend(frame.iter().flat_map(|v| v.to_le_bytes()));
            g.extend_from_slice(&[0, 2, 2, 0x4c, 0x01, 0, 0x3b]);
            let e = decode_to_rgb(&g, 1 << 30).unwrap_err();
            assert_eq!(e.status(), Status::ImageDecode, "{e}");
            assert!(e.message().contains("first frame is empty"), "{e}");
        }
    }

    #[test]
    fn composite_matches_formula_for_every_pair() {
        for c in 0..=255u32 {
            for a in 0..=255u32 {
                let want = (c * a + 255 * (255 - a) + 127) / 255;
                assert_eq!(
                    u32::from(composite_channel(c as u8, a as u8)),
                    want,
                    "c={c} a={a}"
                );
                // transformers' numpy path: round(a/255*c + (1-a/255)*255), half to even
                let alpha = f64::from(a) / 255.0;
                let float = (alpha * f64::from(c) + (1.0 - alpha) * 255.0).round_ties_even();
                assert_eq!(float as u32, want, "numpy rounding differs at c={c} a={a}");
            }
        }
    }

    #[test]
    fn composite_on_white_buffer() {
        let rgba = [10, 20, 30, 0, 10, 20, 30, 255, 200, 100, 0, 128];
        let img = composite_on_white(3, 1, &rgba).unwrap();
        assert_eq!(img.data, vec![255, 255, 255, 10, 20, 30, 227, 177, 127]);
        let err = composite_on_white(2, 1, &rgba).unwrap_err();
        assert_eq!(err.status(), Status::InvalidArgument);
    }

    #[test]
    fn sniffing() {
        assert_eq!(
            sniff_format(b"\x89PNG\r\n\x1a\nxxxx"),
            Some(ImageFormat::Png)
        );
        assert_eq!(
            sniff_format(&[0xFF, 0xD8, 0xFF, 0xE0]),
            Some(ImageFormat::Jpeg)
        );
        assert_eq!(
            sniff_format(b"RIFF\0\0\0\0WEBPVP8 "),
            Some(ImageFormat::WebP)
        );
        assert_eq!(sniff_format(b"GIF89a"), Some(ImageFormat::Gif));
        assert_eq!(sniff_format(b"BM\0\0"), Some(ImageFormat::Bmp));
        assert_eq!(sniff_format(b"II*\0"), Some(ImageFormat::Tiff));
        assert_eq!(sniff_format(b"MM\0*"), Some(ImageFormat::Tiff));
        assert_eq!(sniff_format(b"II+\0"), Some(ImageFormat::Tiff));
        assert_eq!(sniff_format(b"hello"), None);
        assert_eq!(sniff_format(b""), None);
    }

    #[test]
    fn parity_with_pillow() {
        let dir = fixtures();
        let decoded = std::fs::read(dir.join("decoded.safetensors")).expect("decoded.safetensors");
        let tensors = safetensors::SafeTensors::deserialize(&decoded).expect("safetensors");
        let manifest = manifest();
        let mut failures = Vec::new();
        let valid = manifest["valid"].as_array().expect("valid list");
        assert!(!valid.is_empty());
        for entry in valid {
            let name = entry["file"].as_str().unwrap();
            let format = entry["format"].as_str().unwrap();
            let data = std::fs::read(dir.join(name)).unwrap();
            let want = tensors
                .tensor(name)
                .unwrap_or_else(|_| panic!("{name} in safetensors"));
            assert_eq!(want.dtype(), safetensors::Dtype::U8);
            let shape = want.shape();
            let got = match decode_to_rgb(&data, MAX_PIXELS) {
                Ok(img) => img,
                Err(e) => {
                    failures.push(format!("{name} ({format}): decode failed: {e}"));
                    continue;
                }
            };
            if [got.height as usize, got.width as usize, 3] != shape[..] {
                failures.push(format!(
                    "{name} ({format}): size {}x{} but Pillow gives {}x{}",
                    got.width, got.height, shape[1], shape[0]
                ));
                continue;
            }
            let expected = want.data();
            let mut max_diff = 0u8;
            let mut differing = 0usize;
            for (a, b) in got.data.iter().zip(expected) {
                let d = a.abs_diff(*b);
                if d > 0 {
                    differing += 1;
                    max_diff = max_diff.max(d);
                }
            }
            if differing > 0 {
                failures.push(format!(
                    "{name} ({format}): {differing} of {} values differ, max diff {max_diff}",
                    expected.len()
                ));
            }
        }
        assert!(
            failures.is_empty(),
            "parity failures:\n{}",
            failures.join("\n")
        );
    }

    #[test]
    fn invalid_inputs_fail_with_the_expected_status() {
        let dir = fixtures();
        let manifest = manifest();
        let invalid = manifest["invalid"].as_array().expect("invalid list");
        assert!(!invalid.is_empty());
        for entry in invalid {
            let name = entry["file"].as_str().unwrap();
            let want = match entry["expected_status"].as_str().unwrap() {
                "ImageDecode" => Status::ImageDecode,
                "ImageTooLarge" => Status::ImageTooLarge,
                other => panic!("unknown status {other} in manifest"),
            };
            let data = std::fs::read(dir.join(name)).unwrap();
            let err = decode_to_rgb(&data, MAX_PIXELS).expect_err(name);
            assert_eq!(err.status(), want, "{name}: {err}");
            assert!(!err.message().is_empty());
        }
    }

    #[test]
    fn pixel_limit_is_checked_before_decoding() {
        let dir = fixtures();
        for entry in manifest()["valid"].as_array().unwrap() {
            let name = entry["file"].as_str().unwrap();
            let pixels = entry["width"].as_u64().unwrap() * entry["height"].as_u64().unwrap();
            let data = std::fs::read(dir.join(name)).unwrap();
            let err = decode_to_rgb(&data, pixels - 1).expect_err(name);
            assert_eq!(err.status(), Status::ImageTooLarge, "{name}: {err}");
            assert!(
                decode_to_rgb(&data, pixels).is_ok(),
                "{name} at its exact size"
            );
        }
    }

    #[test]
    fn huge_headers_are_refused_before_decoding() {
        let dir = fixtures();
        let too_large = |name: &str, data: &[u8]| {
            let err = decode_to_rgb(data, MAX_PIXELS).expect_err(name);
            assert_eq!(err.status(), Status::ImageTooLarge, "{name}: {err}");
        };
        // JPEG: SOF0 claims 65000x65000
        let mut jpeg = std::fs::read(dir.join("jpeg444.jpg")).unwrap();
        let sof = jpeg.windows(2).position(|w| w == [0xFF, 0xC0]).unwrap();
        jpeg[sof + 5..sof + 9].copy_from_slice(&[0xFD, 0xE8, 0xFD, 0xE8]);
        too_large("jpeg", &jpeg);
        // GIF: logical screen 65535x65535
        let mut gif = std::fs::read(dir.join("anim_trns.gif")).unwrap();
        gif[6..10].copy_from_slice(&[0xFF; 4]);
        too_large("gif", &gif);
        // BMP: 100000x100000
        let mut bmp = std::fs::read(dir.join("rgb.bmp")).unwrap();
        bmp[18..22].copy_from_slice(&100_000i32.to_le_bytes());
        bmp[22..26].copy_from_slice(&100_000i32.to_le_bytes());
        too_large("bmp", &bmp);
        // WebP (VP8L): 16384x16384
        let mut webp = std::fs::read(dir.join("lossless_alpha.webp")).unwrap();
        let vp8l = webp.windows(4).position(|w| w == b"VP8L").unwrap();
        let bits: u32 = 16383 | (16383 << 14) | (1 << 28);
        webp[vp8l + 9..vp8l + 13].copy_from_slice(&bits.to_le_bytes());
        too_large("webp", &webp);
        // TIFF: ImageWidth and ImageLength tags set to 60000
        let mut tiff = std::fs::read(dir.join("rgb.tiff")).unwrap();
        assert_eq!(&tiff[..2], b"II");
        let ifd = u32::from_le_bytes(tiff[4..8].try_into().unwrap()) as usize;
        let count = u16::from_le_bytes([tiff[ifd], tiff[ifd + 1]]) as usize;
        for e in (0..count).map(|i| ifd + 2 + 12 * i) {
            let tag = u16::from_le_bytes([tiff[e], tiff[e + 1]]);
            if tag == 256 || tag == 257 {
                tiff[e + 8..e + 12].copy_from_slice(&60000u32.to_le_bytes());
            }
        }
        too_large("tiff", &tiff);
    }

    #[test]
    fn every_truncation_fails_cleanly() {
        // Every prefix of every valid fixture either decodes or returns a decode error:
        // never a panic, never another status.
        let dir = fixtures();
        for entry in manifest()["valid"].as_array().unwrap() {
            let name = entry["file"].as_str().unwrap();
            let data = std::fs::read(dir.join(name)).unwrap();
            let step = (data.len() / 97).max(1);
            for cut in (0..data.len()).step_by(step) {
                if let Err(e) = decode_to_rgb(&data[..cut], MAX_PIXELS) {
                    assert_eq!(e.status(), Status::ImageDecode, "{name}[..{cut}]: {e}");
                }
            }
        }
    }

    #[test]
    fn corrupted_bytes_never_panic() {
        let dir = fixtures();
        let mut state = 0x2545_f491_4f6c_dd1du64;
        for entry in manifest()["valid"].as_array().unwrap() {
            let name = entry["file"].as_str().unwrap();
            let data = std::fs::read(dir.join(name)).unwrap();
            for _ in 0..40 {
                let mut bad = data.clone();
                for _ in 0..4 {
                    state ^= state << 13;
                    state ^= state >> 7;
                    state ^= state << 17;
                    let i = (state % bad.len() as u64) as usize;
                    bad[i] = (state >> 32) as u8;
                }
                if let Err(e) = decode_to_rgb(&bad, MAX_PIXELS) {
                    assert!(
                        matches!(e.status(), Status::ImageDecode | Status::ImageTooLarge),
                        "{name}: {e}"
                    );
                }
            }
        }
    }

    #[test]
    fn jpeg_missing_eoi_is_truncated_but_trailing_junk_is_fine() {
        let data = std::fs::read(fixtures().join("jpeg444.jpg")).unwrap();
        let err = decode_to_rgb(&data[..data.len() - 2], MAX_PIXELS).unwrap_err();
        assert_eq!(err.status(), Status::ImageDecode);
        assert!(err.message().contains("truncated"), "{err}");
        let mut longer = data.clone();
        longer.extend_from_slice(b"trailing garbage");
        let a = decode_to_rgb(&data, MAX_PIXELS).unwrap();
        let b = decode_to_rgb(&longer, MAX_PIXELS).unwrap();
        assert_eq!(a, b);
        // extraneous bytes before the EOI marker: a libjpeg warning, accepted like Pillow
        let mut junk = data[..data.len() - 2].to_vec();
        junk.extend_from_slice(&[0x12, 0x34, 0xFF, 0xD9]);
        assert_eq!(decode_to_rgb(&junk, MAX_PIXELS).unwrap(), a);
    }

    /// PNGs whose ancillary chunks exercise Pillow's chunk rules
    /// (`scripts/gen_png_chunk_cases.py` records whether Pillow accepts each): vtower accepts
    /// exactly those Pillow accepts.
    #[test]
    fn png_chunk_rules_match_pillow() {
        let dir = fixtures().join("../png_chunks");
        let cases: serde_json::Value =
            serde_json::from_slice(&std::fs::read(dir.join("cases.json")).unwrap()).unwrap();
        let cases = cases["cases"].as_object().unwrap();
        assert!(cases.len() >= 10);
        for (name, verdict) in cases {
            let data = std::fs::read(dir.join(name)).unwrap();
            let got = decode_to_rgb(&data, 1 << 20);
            let pillow_ok = verdict["pillow_ok"].as_bool().unwrap();
            match got {
                Ok(_) => assert!(pillow_ok, "{name}: accepted, Pillow: {}", verdict["error"]),
                Err(e) => {
                    assert!(!pillow_ok, "{name}: {e}, Pillow accepts it");
                    assert_eq!(e.status(), Status::ImageDecode, "{name}: {e}");
                }
            }
            if let Ok(img) = decode_to_rgb(&data, 1 << 20) {
                assert_eq!((img.width, img.height), (4, 3), "{name}");
            }
        }
    }

    /// The two files of the reliability issue that Pillow 13 rejects.
    #[test]
    fn files_pillow_rejects_are_rejected() {
        let dir = fixtures().join("../hostile");
        for (name, what) in [
            (
                "parity_png_bad_trns_crc_pillow_rejects.png",
                "bad checksum in chunk tRNS",
            ),
            (
                "parity_webp_pillow_rejects.webp",
                "past the end of the RIFF data",
            ),
        ] {
            let e = decode_to_rgb(&std::fs::read(dir.join(name)).unwrap(), 1 << 30).unwrap_err();
            assert_eq!(e.status(), Status::ImageDecode, "{name}: {e}");
            assert!(e.message().contains(what), "{name}: {e}");
        }
    }

    #[test]
    fn messages_name_the_format() {
        let err = decode_to_rgb(b"", MAX_PIXELS).unwrap_err();
        assert!(err.message().contains("empty"), "{err}");
        let err = decode_to_rgb(b"not an image at all", MAX_PIXELS).unwrap_err();
        assert!(err.message().contains("unknown"), "{err}");
        let data = std::fs::read(fixtures().join("truncated.png")).unwrap();
        let err = decode_to_rgb(&data, MAX_PIXELS).unwrap_err();
        assert!(err.message().starts_with("PNG:"), "{err}");
    }
}
