//! `torch.nn.functional.grid_sample(..., mode="bicubic")` on a learned position table, as the
//! CPU kernel of PyTorch computes it (`GridSamplerKernel.cpp`, `ApplyGridSample<Bicubic>`):
//! the sample point is unnormalized without clipping (`align_corners` false:
//! `(x + 1) · size / 2 − 0.5`; true: `(x + 1) · (size − 1) / 2`), the 4×4 neighbours around
//! `floor` are read with the padding rule applied to each tap (`border`: clamped into the
//! table; `zeros`: 0 outside), and the cubic convolution weights (A = −0.75) are applied along
//! x for each of the 4 rows, then along y, in f32.
//!
//! GLM-4.xV resamples its position table this way for every image (`Glm4vVisionEmbeddings`:
//! align_corners false, border padding). Kimi K2.5's MoonViT resizes its table with
//! `F.interpolate(mode="bicubic", align_corners=False)` (written in transformers as a gather
//! of `get_vision_interpolation_indices_and_weights`' 16 taps): the same kernel sampled at the
//! target cells' centres, [`interpolate_bicubic`].

/// `padding_mode` of `grid_sample` (reflection is not implemented).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GridPadding {
    /// Taps outside the table read 0.
    #[allow(
        dead_code,
        reason = "checked against torch in the tests; no tower samples with zero padding yet"
    )]
    Zeros,
    /// Taps outside the table read the nearest edge value.
    Border,
}

/// A table `[height, width, channels]`, row-major with channels last (a position-embedding
/// table `[side * side, dim]` is one with `height = width = side`).
#[derive(Debug, Clone, Copy)]
pub struct GridTable<'a> {
    pub data: &'a [f32],
    pub height: usize,
    pub width: usize,
    pub channels: usize,
}

/// The source coordinate of normalized coordinate `x` on an axis of `size` (no clipping).
fn unnormalize(x: f32, size: usize, align_corners: bool) -> f32 {
    if align_corners {
        (x + 1.0) * ((size - 1) as f32 / 2.0)
    } else {
        (x + 1.0) * (size as f32 / 2.0) - 0.5
    }
}

/// The four cubic convolution weights of fractional offset `t` (torch's
/// `get_cubic_upsample_coefficients`, A = −0.75).
fn cubic_coefficients(t: f32) -> [f32; 4] {
    const A: f32 = -0.75;
    let far = |x: f32| ((A * x - 5.0 * A) * x + 8.0 * A) * x - 4.0 * A;
    let near = |x: f32| ((A + 2.0) * x - (A + 3.0)) * x * x + 1.0;
    [far(t + 1.0), near(t), near(1.0 - t), far(2.0 - t)]
}

/// The table index a tap at integer coordinate `i` reads on an axis of `size`, or `None`
/// (a zero) outside it under zero padding.
fn tap(i: f32, size: usize, padding: GridPadding) -> Option<usize> {
    let i = match padding {
        GridPadding::Border => i.max(0.0).min((size - 1) as f32),
        GridPadding::Zeros => i,
    };
    (i >= 0.0 && i < size as f32).then_some(i as usize)
}

/// Samples `table` bicubically at each of `points` (`[x, y]` in grid_sample's normalized
/// coordinates: −1 and 1 are the outer edges of the table when `align_corners` is false, the
/// centres of its corner cells when true). Returns `[points.len(), channels]` row-major.
pub fn grid_sample_bicubic(
    table: GridTable,
    points: &[[f32; 2]],
    align_corners: bool,
    padding: GridPadding,
) -> Vec<f32> {
    let GridTable {
        data,
        height,
        width,
        channels,
    } = table;
    assert_eq!(data.len(), height * width * channels, "grid_sample table");
    let mut out = vec![0f32; points.len() * channels];
    if height == 0 || width == 0 {
        return out;
    }
    for (&[x, y], dst) in points.iter().zip(out.chunks_exact_mut(channels.max(1))) {
        let (ix, iy) = (
            unnormalize(x, width, align_corners),
            unnormalize(y, height, align_corners),
        );
        let (fx, fy) = (ix.floor(), iy.floor());
        let (cx, cy) = (cubic_coefficients(ix - fx), cubic_coefficients(iy - fy));
        // The 16 taps: the table row each reads, or None (a zero).
        let mut rows: [[Option<&[f32]>; 4]; 4] = [[None; 4]; 4];
        for (i, row) in rows.iter_mut().enumerate() {
            let ty = tap(fy - 1.0 + i as f32, height, padding);
            for (j, slot) in row.iter_mut().enumerate() {
                let tx = tap(fx - 1.0 + j as f32, width, padding);
                if let (Some(ty), Some(tx)) = (ty, tx) {
                    let at = (ty * width + tx) * channels;
                    *slot = Some(&data[at..at + channels]);
                }
            }
        }
        let value = |r: Option<&[f32]>, c: usize| r.map_or(0.0, |r| r[c]);
        for (c, d) in dst.iter_mut().enumerate() {
            let mut along_x = [0f32; 4];
            for (i, ax) in along_x.iter_mut().enumerate() {
                let r = &rows[i];
                *ax = cx[0] * value(r[0], c)
                    + cx[1] * value(r[1], c)
                    + cx[2] * value(r[2], c)
                    + cx[3] * value(r[3], c);
            }
            *d = cy[0] * along_x[0] + cy[1] * along_x[1] + cy[2] * along_x[2] + cy[3] * along_x[3];
        }
    }
    out
}

/// The normalized coordinate of the centre of cell `i` of `n` (`((i + 0.5) / n) · 2 − 1` in
/// f32): sampling there with `align_corners` false resizes a table like `F.interpolate`.
pub fn cell_centre(i: usize, n: usize) -> f32 {
    ((i as f32 + 0.5) / n as f32) * 2.0 - 1.0
}

/// `F.interpolate(table, size=(rows, cols), mode="bicubic", align_corners=False)` of a
/// `[height, width, channels]` table (taps clamped to the border, as `upsample_bicubic2d`
/// reads them): `[rows · cols, channels]` row-major.
pub fn interpolate_bicubic(table: GridTable, rows: usize, cols: usize) -> Vec<f32> {
    let points: Vec<[f32; 2]> = (0..rows * cols)
        .map(|k| [cell_centre(k % cols, cols), cell_centre(k / cols, rows)])
        .collect();
    grid_sample_bicubic(table, &points, false, GridPadding::Border)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(serde::Deserialize)]
    struct Case {
        name: String,
        height: usize,
        width: usize,
        channels: usize,
        align_corners: bool,
        padding_mode: String,
        table: Vec<f32>,
        points: Vec<[f32; 2]>,
        expected: Vec<f32>,
    }

    #[derive(serde::Deserialize)]
    struct InterpolateCase {
        name: String,
        height: usize,
        width: usize,
        channels: usize,
        rows: usize,
        cols: usize,
        table: Vec<f32>,
        expected: Vec<f32>,
    }

    #[derive(serde::Deserialize)]
    struct Cases {
        cases: Vec<Case>,
        interpolate: Vec<InterpolateCase>,
    }

    fn read_cases() -> Cases {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/resample/grid_sample_bicubic.json"
        );
        serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
    }

    /// The `interpolate` cases of the same file: torch's CPU `F.interpolate(mode="bicubic",
    /// align_corners=False)` (which the generator checks against MoonViT's own tap gather) on
    /// odd sizes, up, down, to one row and one column.
    #[test]
    fn matches_torch_interpolate_bicubic() {
        let cases = read_cases().interpolate;
        assert!(cases.len() >= 4);
        for c in &cases {
            let table = GridTable {
                data: &c.table,
                height: c.height,
                width: c.width,
                channels: c.channels,
            };
            let got = interpolate_bicubic(table, c.rows, c.cols);
            assert_eq!(got.len(), c.expected.len(), "{}", c.name);
            for (i, (g, w)) in got.iter().zip(&c.expected).enumerate() {
                assert!(
                    (g - w).abs() <= 1e-5 * (1.0 + w.abs()),
                    "{} value {i}: {g} vs torch {w}",
                    c.name
                );
            }
        }
    }

    /// Every case of `tests/fixtures/resample/grid_sample_bicubic.json` (torch's CPU
    /// `F.grid_sample`, made by `scripts/gen_grid_sample_cases.py`): odd table sizes, GLM's
    /// sampling grid up and down, random points in and outside [-1, 1] for both paddings and
    /// both `align_corners`.
    #[test]
    fn matches_torch_grid_sample() {
        let cases = read_cases();
        assert!(cases.cases.len() >= 8);
        let mut seen = std::collections::HashSet::new();
        for c in &cases.cases {
            let padding = match c.padding_mode.as_str() {
                "border" => GridPadding::Border,
                "zeros" => GridPadding::Zeros,
                other => panic!("{}: padding {other}", c.name),
            };
            seen.insert((c.align_corners, c.padding_mode.clone()));
            let table = GridTable {
                data: &c.table,
                height: c.height,
                width: c.width,
                channels: c.channels,
            };
            let got = grid_sample_bicubic(table, &c.points, c.align_corners, padding);
            assert_eq!(got.len(), c.expected.len(), "{}", c.name);
            for (i, (g, w)) in got.iter().zip(&c.expected).enumerate() {
                // torch's vectorized kernel may fuse multiply-adds: a few ulps apart.
                assert!(
                    (g - w).abs() <= 1e-5 * (1.0 + w.abs()),
                    "{} value {i}: {g} vs torch {w}",
                    c.name
                );
            }
        }
        assert_eq!(seen.len(), 4, "every (align_corners, padding) pair");
    }

    #[test]
    fn identity_grid_returns_the_table() {
        // Sampling an n x n table at its own cell centres (align_corners false) is exact:
        // t = 0 gives weights (0, 1, 0, 0).
        let data: Vec<f32> = (0..3 * 5 * 2).map(|v| v as f32 * 0.25 - 1.0).collect();
        let table = GridTable {
            data: &data,
            height: 3,
            width: 5,
            channels: 2,
        };
        let points: Vec<[f32; 2]> = (0..15)
            .map(|k| {
                let (r, c) = (k / 5, k % 5);
                [
                    ((c as f32 + 0.5) / 5.0) * 2.0 - 1.0,
                    ((r as f32 + 0.5) / 3.0) * 2.0 - 1.0,
                ]
            })
            .collect();
        let got = grid_sample_bicubic(table, &points, false, GridPadding::Border);
        for (g, w) in got.iter().zip(&data) {
            assert!((g - w).abs() < 1e-6, "{g} vs {w}");
        }
        assert_eq!(cubic_coefficients(0.0), [0.0, 1.0, 0.0, 0.0]);
    }
}
