//! Block transposes of 32-bit values: the one-time `W → Wᵀ` of f32 weights at load, where a
//! strided scalar scatter was the largest item of an f32 load's profile. 8 × 8 blocks go
//! through AVX registers (`x86.rs`) when the level allows it; the edges and other CPUs use the
//! scalar loop. Every level writes the same values (a transpose moves bits; nothing is
//! computed).

use crate::error::{Error, Result};

use super::Isa;

/// The shape of a transposed block: `rows × cols` values of a source whose rows start
/// `src_stride` apart, written to a destination whose rows start `dst_stride` apart.
#[derive(Debug, Clone, Copy)]
pub struct Block {
    pub rows: usize,
    pub cols: usize,
    pub src_stride: usize,
    pub dst_stride: usize,
}

/// Writes the transpose of a `rows × cols` block of `src` (row `r` starts at
/// `r * src_stride`) into `dst`, whose rows start `dst_stride` apart:
/// `dst[c * dst_stride + r] = src[r * src_stride + c]` for every `r < rows`, `c < cols`.
/// Nothing else of `dst` is written. Errors when a slice is too short for the block or a
/// block row is longer than its stride.
pub fn transpose(src: &[f32], dst: &mut [f32], block: Block) -> Result<()> {
    transpose_at(super::isa(), src, dst, block)
}

/// [`transpose`] at `level` (capped at what this CPU supports).
pub(super) fn transpose_at(level: Isa, src: &[f32], dst: &mut [f32], block: Block) -> Result<()> {
    let Block {
        rows,
        cols,
        src_stride,
        dst_stride,
    } = block;
    if rows == 0 || cols == 0 {
        return Ok(());
    }
    let needed = |n: usize, stride: usize, len: usize| {
        (n - 1).checked_mul(stride).and_then(|x| x.checked_add(len))
    };
    let fits = cols <= src_stride
        && rows <= dst_stride
        && needed(rows, src_stride, cols).is_some_and(|n| n <= src.len())
        && needed(cols, dst_stride, rows).is_some_and(|n| n <= dst.len());
    if !fits {
        return Err(Error::compute(format!(
            "transpose of a {rows}x{cols} block (strides {src_stride}, {dst_stride}) does not \
             fit slices of {} and {} values",
            src.len(),
            dst.len()
        )));
    }
    let (rows8, cols8) = if level.min(super::detected()) >= Isa::Avx2 {
        (rows / 8 * 8, cols / 8 * 8)
    } else {
        (0, 0)
    };
    #[cfg(target_arch = "x86_64")]
    if rows8 > 0 && cols8 > 0 {
        let whole = Block {
            rows: rows8,
            cols: cols8,
            ..block
        };
        super::x86::transpose_8x8_blocks(src, dst, whole);
    }
    // What the 8 × 8 blocks left: the last columns of every row, the last rows.
    for r in 0..rows {
        let from = if r < rows8 { cols8 } else { 0 };
        for c in from..cols {
            dst[c * dst_stride + r] = src[r * src_stride + c];
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::supported_levels;

    /// An `n × n` block with both strides `stride`.
    fn square(n: usize, stride: usize) -> Block {
        Block {
            rows: n,
            cols: n,
            src_stride: stride,
            dst_stride: stride,
        }
    }

    #[test]
    fn every_level_transposes_odd_blocks_exactly() {
        for (rows, cols) in [
            (1, 1),
            (8, 8),
            (7, 9),
            (9, 7),
            (16, 24),
            (17, 33),
            (64, 5),
            (3, 130),
        ] {
            let (ss, ds) = (cols + 3, rows + 5);
            let src: Vec<f32> = (0..rows * ss).map(|i| i as f32 + 0.5).collect();
            for level in supported_levels() {
                let mut dst = vec![-1f32; cols * ds];
                let block = Block {
                    rows,
                    cols,
                    src_stride: ss,
                    dst_stride: ds,
                };
                transpose_at(level, &src, &mut dst, block).unwrap();
                for c in 0..cols {
                    for r in 0..ds {
                        let want = if r < rows { src[r * ss + c] } else { -1.0 };
                        assert_eq!(
                            dst[c * ds + r].to_bits(),
                            want.to_bits(),
                            "{} {rows}x{cols} at ({r}, {c})",
                            level.name()
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn nan_payloads_and_signs_are_moved_unchanged() {
        let bits = [
            0x7fc0_0001u32,
            0xffc0_1234,
            0x8000_0000,
            0x0000_0001,
            0x7f80_0000,
        ];
        let src: Vec<f32> = (0..64)
            .map(|i| f32::from_bits(bits[i % bits.len()]))
            .collect();
        for level in supported_levels() {
            let mut dst = vec![0f32; 64];
            transpose_at(level, &src, &mut dst, square(8, 8)).unwrap();
            for r in 0..8 {
                for c in 0..8 {
                    assert_eq!(dst[c * 8 + r].to_bits(), src[r * 8 + c].to_bits());
                }
            }
        }
    }

    #[test]
    fn short_slices_are_errors() {
        let src = vec![0f32; 63];
        let mut dst = vec![0f32; 64];
        assert!(transpose(&src, &mut dst, square(8, 8)).is_err());
        let src = vec![0f32; 64];
        let mut short = vec![0f32; 63];
        assert!(transpose(&src, &mut short, square(8, 8)).is_err());
        let narrow_src = Block {
            src_stride: 4,
            ..square(8, 8)
        };
        assert!(transpose(&src, &mut dst, narrow_src).is_err());
        let narrow_dst = Block {
            dst_stride: 4,
            ..square(8, 8)
        };
        assert!(transpose(&src, &mut dst, narrow_dst).is_err());
        let empty = Block {
            rows: 0,
            ..square(8, 8)
        };
        assert!(transpose(&src, &mut dst, empty).is_ok());
    }
}
