//! Fused ("flash") attention on the CPU: `softmax(scale · q·kᵀ) · v` per head over the
//! segments of a packed sequence, without ever holding a full row of scores.
//!
//! Each task takes one block of [`QUERY_BLOCK`] queries of one (head, segment) and walks its
//! keys in blocks of [`KEY_BLOCK`]: the block's scores come from the micro-kernels (`q` tile
//! times the packed `kᵀ` panels), the softmax is kept *online* (a running row maximum `m` and
//! sum `l`; when `m` grows, what was accumulated is rescaled by `e^(m_old − m_new)`), and the
//! block's probabilities times `v` are added to the output tile by the same micro-kernels.
//! Scores, probabilities, `m`, `l` and the output are f32 at every step; only the operands of
//! the two products are bf16 when [`Precision::Bf16`] (as PyTorch's bf16 attention rounds
//! them). Everything a task touches — its queries, one key block of `k` and `v`, its output
//! tile — stays in the core's L2 cache, where the unfused computation wrote its scores out and
//! read them back twice.
//!
//! Block sizes are constants, and every task computes its rows in a fixed order, so results
//! do not depend on the number of threads. The instruction-set level is the crate's
//! ([`super::isa`]); every level computes the same sums in the same order (f32: one fused
//! multiply-add per product at every level; bf16: see the module above).

use multiversion::multiversion;
use rayon::prelude::*;

use super::{
    bf16_bits, bf16_elem, bf16_pairs, bf16_wide, detected, isa, pair, tile, Aligned, Call, Elem,
    Isa, Lhs, Slots, PANEL, TILE_PAIRS,
};
use crate::error::{Error, Result};
use crate::models::kernels::{exp, exp_shifted_sum};

/// The element type of the two products' operands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Precision {
    /// f32 operands.
    F32,
    /// Operands rounded to bf16 (round-to-nearest-even), products accumulated in f32.
    Bf16,
}

impl Precision {
    /// Packed slots for `k` values of the inner dimension (a bf16 slot holds a pair).
    fn slots(self, k: usize) -> usize {
        match self {
            Precision::F32 => k,
            Precision::Bf16 => k.div_ceil(2),
        }
    }

    /// The products' operand format at `level`.
    fn elem(self, level: Isa) -> Elem {
        match self {
            Precision::F32 => Elem::F32,
            Precision::Bf16 => bf16_elem(level),
        }
    }
}

/// Queries per task (a multiple of every level's tile rows: 12, 6 and 4).
const QUERY_BLOCK: usize = 96;

/// Keys per step of a task (a multiple of two panels).
const KEY_BLOCK: usize = 256;

/// A right operand `B` `[k, n]` in panels of [`PANEL`] columns: `[panels][slots][PANEL]`,
/// each slot one f32 (bits) or one pair of bf16 rows, zero past the edges; `slots` rounded
/// up to whole AMX tile rows ([`TILE_PAIRS`]), each panel starting a cache line.
struct Panels {
    slots: usize,
    data: Aligned,
}

impl Panels {
    fn build(
        precision: Precision,
        k: usize,
        n: usize,
        value: impl Fn(usize, usize) -> f32,
    ) -> Result<Panels> {
        let (Panels { slots, mut data }, used) = Panels::zeroed(precision, k, n)?;
        for p in 0..n.div_ceil(PANEL) {
            let n0 = p * PANEL;
            let cols = PANEL.min(n - n0);
            for q in 0..used {
                let row = &mut data[(p * slots + q) * PANEL..][..cols];
                for (j, slot) in row.iter_mut().enumerate() {
                    *slot = match precision {
                        Precision::F32 => value(q, n0 + j).to_bits(),
                        Precision::Bf16 => {
                            let lo = bf16_bits(value(2 * q, n0 + j));
                            let hi = if 2 * q + 1 < k {
                                bf16_bits(value(2 * q + 1, n0 + j))
                            } else {
                                0
                            };
                            pair(lo, hi)
                        }
                    };
                }
            }
        }
        Ok(Panels { slots, data })
    }

    /// [`Panels::build`] of `B` `[k, n]` whose column `c` is `col(c)` (`k` contiguous values:
    /// `Kᵀ` from the rows of `K`), in bf16: each column's pairs by [`bf16_pairs`] (one pass
    /// over contiguous values), then placed in its panel. The same slots as `build`.
    fn bf16_from_columns<'a>(
        k: usize,
        n: usize,
        col: impl Fn(usize) -> &'a [f32],
    ) -> Result<Panels> {
        let (mut panels, used) = Panels::zeroed(Precision::Bf16, k, n)?;
        let slots = panels.slots;
        let mut tmp = vec![0u32; used];
        for c in 0..n {
            bf16_pairs(&col(c)[..k], &mut tmp);
            let (p, j) = (c / PANEL, c % PANEL);
            for (q, &v) in tmp.iter().enumerate() {
                panels.data[(p * slots + q) * PANEL + j] = v;
            }
        }
        Ok(panels)
    }

    /// [`Panels::build`] of `B` `[k, n]` whose row `r` is `row(r)` (`n` contiguous values: `V`
    /// from its rows), in bf16: per pair of rows, the two rows' values paired column by
    /// column (an odd `k`'s last row pairs with zero). The same slots as `build`.
    fn bf16_from_rows<'a>(k: usize, n: usize, row: impl Fn(usize) -> &'a [f32]) -> Result<Panels> {
        let (mut panels, used) = Panels::zeroed(Precision::Bf16, k, n)?;
        let slots = panels.slots;
        for q in 0..used {
            let lo = &row(2 * q)[..n];
            let hi = (2 * q + 1 < k).then(|| &row(2 * q + 1)[..n]);
            for (p, lo) in lo.chunks(PANEL).enumerate() {
                let out = &mut panels.data[(p * slots + q) * PANEL..][..lo.len()];
                match hi {
                    Some(hi) => {
                        let hi = &hi[p * PANEL..][..lo.len()];
                        for ((o, &a), &b) in out.iter_mut().zip(lo).zip(hi) {
                            *o = pair(bf16_bits(a), bf16_bits(b));
                        }
                    }
                    None => {
                        for (o, &a) in out.iter_mut().zip(lo) {
                            *o = pair(bf16_bits(a), 0);
                        }
                    }
                }
            }
        }
        Ok(panels)
    }

    /// Zeroed panels for `B` `[k, n]` at `precision`, and the slots of `k` in use.
    fn zeroed(precision: Precision, k: usize, n: usize) -> Result<(Panels, usize)> {
        let used = precision.slots(k);
        let slots = used.div_ceil(TILE_PAIRS) * TILE_PAIRS;
        let len = n
            .div_ceil(PANEL)
            .checked_mul(slots)
            .and_then(|l| l.checked_mul(PANEL))
            .ok_or_else(|| Error::compute("attention operand too large"))?;
        let data = Aligned::zeroed(len, "attention operands")?;
        Ok((Panels { slots, data }, used))
    }

    /// Slots `s0..s1` of panel `p`.
    fn panel(&self, p: usize, s0: usize, s1: usize) -> &[u32] {
        &self.data[(p * self.slots + s0) * PANEL..(p * self.slots + s1) * PANEL]
    }
}

/// `x` as left-operand slots of `elem` (f32 bits, bf16 pairs of consecutive values, or
/// those pairs widened; an odd length's last value pairs with zero).
#[multiversion(targets("x86_64+avx512f+avx512vl+avx2+fma", "x86_64+avx2+fma", "aarch64+neon"))]
fn to_slots(elem: Elem, x: &[f32], out: &mut [u32]) {
    match elem {
        Elem::F32 => {
            for (o, v) in out.iter_mut().zip(x) {
                *o = v.to_bits();
            }
        }
        Elem::Bf16 => bf16_pairs(x, out),
        Elem::Bf16Wide => bf16_wide(x, out),
    }
}

/// One micro-kernel call in `precision` with a row-major left operand (`row_stride` slots per
/// row) writing rows of `out` at stride `ldc`.
#[allow(clippy::too_many_arguments)]
fn product(
    elem: Elem,
    level: Isa,
    a: Slots<'_>,
    row_stride: usize,
    rows: usize,
    slots: usize,
    b0: &[u32],
    b1: Option<&[u32]>,
    out: &mut [f32],
    ldc: usize,
    accumulate: bool,
) {
    let call = Call {
        elem,
        a: Lhs {
            data: a,
            row_stride,
            slot_stride: 1,
        },
        rows,
        slots,
        b0,
        b1,
        ldc,
        accumulate,
    };
    tile(level, call, out);
}

/// One online-softmax step over the first `kb` raw scores of `rows` rows of `s` (rows
/// [`KEY_BLOCK`] apart), each replaced by `e^(scale·s − m_new)`: updates each row's running
/// maximum `m` and sum `l`, and sets `alpha` to the factor `e^(m_old − m_new)` that what was
/// accumulated for the row before must be multiplied by.
#[multiversion(targets("x86_64+avx512f+avx512vl+avx2+fma", "x86_64+avx2+fma", "aarch64+neon"))]
fn online_softmax(
    s: &mut [f32],
    kb: usize,
    scale: f32,
    m: &mut [f32],
    l: &mut [f32],
    alpha: &mut [f32],
) {
    const LANES: usize = 16;
    for (r, ((m, l), alpha)) in m.iter_mut().zip(l).zip(alpha).enumerate() {
        let row = &mut s[r * KEY_BLOCK..r * KEY_BLOCK + kb];
        let mut lanes = [f32::NEG_INFINITY; LANES];
        let mut chunks = row.chunks_exact_mut(LANES);
        for c in &mut chunks {
            for (mx, v) in lanes.iter_mut().zip(c.iter_mut()) {
                *v *= scale;
                *mx = if *v > *mx { *v } else { *mx };
            }
        }
        let mut max = lanes.iter().fold(f32::NEG_INFINITY, |a, &b| a.max(b));
        for v in chunks.into_remainder() {
            *v *= scale;
            max = max.max(*v);
        }
        let m_new = max.max(*m);
        *alpha = if *m == f32::NEG_INFINITY {
            0.0
        } else {
            exp(*m - m_new)
        };
        *l = *l * *alpha + exp_shifted_sum(row, m_new);
        *m = m_new;
    }
}

/// The operands of [`attention`]: `q`, `k` and `v` `[heads][tokens][head_dim]` row-major,
/// and the `(start, len)` segments that tile `0..tokens` in order (flash-attention's
/// `cu_seqlens`: tokens attend to the tokens of their own segment only).
#[derive(Debug, Clone, Copy)]
pub struct Heads<'a> {
    pub q: &'a [f32],
    pub k: &'a [f32],
    pub v: &'a [f32],
    pub heads: usize,
    pub head_dim: usize,
    pub segments: &'a [(usize, usize)],
}

/// Fused attention over the segments of a packed sequence: `out` (`[heads][tokens]
/// [head_dim]`) = `softmax(scale · q·kᵀ) · v` per head and segment. Runs on the calling
/// thread's rayon pool at the level [`isa`] picks.
pub fn attention(x: Heads<'_>, scale: f32, precision: Precision, out: &mut [f32]) -> Result<()> {
    attention_at(isa(), x, scale, precision, out)
}

/// Fails unless `segments` tile `0..tokens` in order, none empty.
pub fn check_segments(segments: &[(usize, usize)], tokens: usize) -> Result<()> {
    let mut next = 0;
    for &(start, len) in segments {
        if start != next || len == 0 {
            return Err(Error::compute(format!(
                "attention segments do not tile the sequence: segment ({start}, {len}) after {next}"
            )));
        }
        next = start + len;
    }
    if next != tokens {
        return Err(Error::compute(format!(
            "attention segments cover {next} of {tokens} tokens"
        )));
    }
    Ok(())
}

/// [`attention`] at level `level` (capped to what this CPU supports).
pub fn attention_at(
    level: Isa,
    x: Heads<'_>,
    scale: f32,
    precision: Precision,
    out: &mut [f32],
) -> Result<()> {
    let level = level.min(detected());
    let Heads {
        q,
        k,
        v,
        heads,
        head_dim: d,
        segments,
    } = x;
    let tokens = segments.last().map_or(0, |&(s, l)| s + l);
    check_segments(segments, tokens)?;
    let size = heads
        .checked_mul(tokens)
        .and_then(|x| x.checked_mul(d))
        .ok_or_else(|| Error::compute("attention too large"))?;
    for (name, len) in [
        ("q", q.len()),
        ("k", k.len()),
        ("v", v.len()),
        ("out", out.len()),
    ] {
        if len != size {
            return Err(Error::compute(format!(
                "attention: {name} holds {len} values, not {heads} heads x {tokens} tokens x {d}"
            )));
        }
    }
    if size == 0 {
        return Ok(());
    }
    // Per (head, segment): kᵀ `[d, len]` and v `[len, d]`, packed once.
    let units: Vec<(usize, usize, usize)> = (0..heads)
        .flat_map(|h| segments.iter().map(move |&(s, l)| (h, s, l)))
        .collect();
    let operands: Vec<(Panels, Panels)> = units
        .par_iter()
        .map(|&(h, start, len)| {
            let base = (h * tokens + start) * d;
            let (kt, vp) = match precision {
                Precision::Bf16 => (
                    Panels::bf16_from_columns(d, len, |key| &k[base + key * d..][..d])?,
                    Panels::bf16_from_rows(len, d, |key| &v[base + key * d..][..d])?,
                ),
                Precision::F32 => (
                    Panels::build(precision, d, len, |dim, key| k[base + key * d + dim])?,
                    Panels::build(precision, len, d, |key, dim| v[base + key * d + dim])?,
                ),
            };
            Ok((kt, vp))
        })
        .collect::<Result<_>>()?;
    // Tasks: (unit, query block start, its rows of out).
    let mut tasks = Vec::new();
    let mut unit = 0;
    for oh in out.chunks_mut(tokens * d) {
        let mut rest = oh;
        for &(_, len) in segments {
            let (seg, tail) = rest.split_at_mut(len * d);
            rest = tail;
            for (b, block) in seg.chunks_mut(QUERY_BLOCK * d).enumerate() {
                tasks.push((unit, b * QUERY_BLOCK, block));
            }
            unit += 1;
        }
    }
    tasks.into_par_iter().try_for_each(|(unit, q0, block)| {
        let (h, start, len) = units[unit];
        let (kt, vp) = &operands[unit];
        let base = (h * tokens + start) * d;
        let queries = &q[base + q0 * d..base + (q0 + block.len() / d) * d];
        let task = Queries {
            q: queries,
            d,
            len,
            kt,
            vp,
            scale,
        };
        #[cfg(target_arch = "x86_64")]
        if level == Isa::Amx && precision == Precision::Bf16 {
            return query_block_amx(task, block);
        }
        query_block(level, precision, task, block)
    })
}

/// Rows of queries per step of [`query_block_amx`] (two AMX tiles).
#[cfg(target_arch = "x86_64")]
const AMX_QUERY_ROWS: usize = 32;

/// [`query_block`] in bf16 on AMX tiles: the same blocks, online softmax and f32 state, both
/// products as `32 × 32` tiles of `tdpbf16ps` (queries and probabilities as bf16 pairs in
/// whole tiles, zero past the edges).
#[cfg(target_arch = "x86_64")]
fn query_block_amx(task: Queries<'_>, out: &mut [f32]) -> Result<()> {
    let Queries {
        q,
        d,
        len,
        kt,
        vp,
        scale,
    } = task;
    use super::x86::{amx_tile, softmax_row_bf16, AmxCall, Tiles, TILE_ROWS};
    const MR: usize = AMX_QUERY_ROWS;
    let rows = q.len() / d;
    let steps = rows.div_ceil(MR);
    let (used, dslots) = (d.div_ceil(2), kt.slots);
    let dpanels = d.div_ceil(PANEL);
    let dpad = dpanels.div_ceil(2) * 2 * PANEL;
    let mut o = Aligned::zeroed(steps * MR * dpad, "attention")?;
    let o: &mut [f32] = bytemuck::cast_slice_mut(&mut o[..]);
    let mut qs = Aligned::zeroed(steps * MR * dslots, "attention")?;
    for (row, slots) in q.chunks_exact(d).zip(qs.chunks_exact_mut(dslots)) {
        bf16_pairs(row, &mut slots[..used]);
    }
    let mut m = vec![f32::NEG_INFINITY; rows];
    let mut l = vec![0f32; rows];
    let mut s = Aligned::zeroed(MR * KEY_BLOCK, "attention")?;
    let s: &mut [f32] = bytemuck::cast_slice_mut(&mut s[..]);
    let pstride = KEY_BLOCK / 2;
    let mut ps = Aligned::zeroed(MR * pstride, "attention")?;
    let tiles = Tiles::configure();
    for j0 in (0..len).step_by(KEY_BLOCK) {
        let kb = KEY_BLOCK.min(len - j0);
        let (p0, p1) = (j0 / PANEL, (j0 + kb).div_ceil(PANEL));
        let kslots = kb.div_ceil(2);
        let kpad = kslots.div_ceil(TILE_PAIRS) * TILE_PAIRS;
        let s0 = j0 / 2;
        for t in 0..steps {
            let r0 = t * MR;
            let nr = MR.min(rows - r0);
            let row_tiles = nr.div_ceil(TILE_ROWS);
            let mut p = p0;
            while p < p1 {
                let two = p + 1 < p1;
                let call = AmxCall {
                    a: &qs[r0 * dslots..],
                    lda: dslots,
                    a_step: TILE_PAIRS,
                    a_tile: TILE_ROWS * dslots,
                    row_tiles,
                    pairs: dslots,
                    b0: kt.panel(p, 0, dslots),
                    b1: two.then(|| kt.panel(p + 1, 0, dslots)),
                    ldc: KEY_BLOCK,
                    accumulate: false,
                };
                amx_tile(&tiles, call, &mut s[(p * PANEL - j0)..]);
                p += if two { 2 } else { 1 };
            }
            // Online softmax straight into bf16 probabilities; rescale what the output rows
            // hold.
            for r in 0..nr {
                let prow = &mut ps[r * pstride..][..kpad];
                let (mr, lr) = (&mut m[r0 + r], &mut l[r0 + r]);
                let (m_new, sum) = softmax_row_bf16(
                    &s[r * KEY_BLOCK..r * KEY_BLOCK + kb],
                    scale,
                    *mr,
                    &mut prow[..kslots],
                );
                prow[kslots..].fill(0);
                let alpha = if *mr == f32::NEG_INFINITY {
                    0.0
                } else {
                    exp(*mr - m_new)
                };
                *lr = *lr * alpha + sum;
                *mr = m_new;
                if alpha != 1.0 {
                    o[(r0 + r) * dpad..][..dpad]
                        .iter_mut()
                        .for_each(|x| *x *= alpha);
                }
            }
            let mut pd = 0;
            while pd < dpanels {
                let two = pd + 1 < dpanels;
                let call = AmxCall {
                    a: &ps,
                    lda: pstride,
                    a_step: TILE_PAIRS,
                    a_tile: TILE_ROWS * pstride,
                    row_tiles,
                    pairs: kpad,
                    b0: vp.panel(pd, s0, s0 + kpad),
                    b1: two.then(|| vp.panel(pd + 1, s0, s0 + kpad)),
                    ldc: dpad,
                    accumulate: true,
                };
                amx_tile(&tiles, call, &mut o[r0 * dpad + pd * PANEL..]);
                pd += 2;
            }
        }
    }
    for (r, row) in out.chunks_exact_mut(d).enumerate() {
        let inv = 1.0 / l[r];
        for (x, y) in row.iter_mut().zip(&o[r * dpad..]) {
            *x = y * inv;
        }
    }
    Ok(())
}

/// One task of [`attention`]: the queries `q` `[rows, d]` of one head and segment against
/// its `len` keys (`kᵀ` and `v` packed), scores scaled by `scale`.
#[derive(Clone, Copy)]
struct Queries<'a> {
    q: &'a [f32],
    d: usize,
    len: usize,
    kt: &'a Panels,
    vp: &'a Panels,
    scale: f32,
}

/// One task: `out` `[rows, d]` for its queries.
fn query_block(level: Isa, precision: Precision, task: Queries<'_>, out: &mut [f32]) -> Result<()> {
    let Queries {
        q,
        d,
        len,
        kt,
        vp,
        scale,
    } = task;
    let rows = q.len() / d;
    let elem = precision.elem(level);
    let mr = level.rows_for(elem);
    let tiles = rows.div_ceil(mr);
    let dslots = precision.slots(d);
    // Left-operand slots per row of the queries and of the probabilities.
    let (qstride, pstride) = (
        dslots * elem.a_slots(),
        precision.slots(KEY_BLOCK) * elem.a_slots(),
    );
    let dpanels = d.div_ceil(PANEL);
    // The output rows, `dpad` wide (whole pairs of panels).
    let dpad = dpanels.div_ceil(2) * 2 * PANEL;
    let mut o = crate::preprocess::limits::try_zeroed(tiles * mr * dpad, "attention")?;
    // bf16: the queries and each block's probabilities rounded to pairs (widened on AVX2);
    // f32: read as they are.
    let bf16 = precision == Precision::Bf16;
    let mut qs = Vec::new();
    if bf16 {
        qs = crate::preprocess::limits::try_zeroed(rows * qstride, "attention")?;
        for (row, slots) in q.chunks_exact(d).zip(qs.chunks_exact_mut(qstride)) {
            to_slots(elem, row, slots);
        }
    }
    let mut m = vec![f32::NEG_INFINITY; rows];
    let mut l = vec![0f32; rows];
    let mut alpha = vec![0f32; mr];
    // Scores of one row tile and key block, rows `KEY_BLOCK` apart; then the probabilities.
    let mut s = vec![0f32; mr * KEY_BLOCK];
    let mut ps = vec![0u32; if bf16 { mr * pstride } else { 0 }];
    for j0 in (0..len).step_by(KEY_BLOCK) {
        let kb = KEY_BLOCK.min(len - j0);
        let (p0, p1) = (j0 / PANEL, (j0 + kb).div_ceil(PANEL));
        let kslots = precision.slots(kb);
        // KEY_BLOCK is even, so the block starts on a bf16 pair.
        let s0 = precision.slots(j0);
        for t in 0..tiles {
            let r0 = t * mr;
            let nr = mr.min(rows - r0);
            let a = if bf16 {
                Slots::Bits(&qs[r0 * qstride..(r0 + nr) * qstride])
            } else {
                Slots::F32(&q[r0 * d..(r0 + nr) * d])
            };
            // Scores of the block: s[r][0..kb] (the panels past `kb` are zero columns of kᵀ;
            // at most up to KEY_BLOCK).
            let mut p = p0;
            while p < p1 {
                let two = p + 1 < p1;
                let b0 = kt.panel(p, 0, dslots);
                let b1 = two.then(|| kt.panel(p + 1, 0, dslots));
                let c0 = p * PANEL - j0;
                let sc = &mut s[c0..];
                product(
                    elem, level, a, qstride, nr, dslots, b0, b1, sc, KEY_BLOCK, false,
                );
                p += if two { 2 } else { 1 };
            }
            // Online softmax; rescale what the output rows hold.
            online_softmax(
                &mut s,
                kb,
                scale,
                &mut m[r0..r0 + nr],
                &mut l[r0..r0 + nr],
                &mut alpha[..nr],
            );
            for (r, &alpha) in alpha[..nr].iter().enumerate() {
                if alpha != 1.0 {
                    o[(r0 + r) * dpad..][..dpad]
                        .iter_mut()
                        .for_each(|x| *x *= alpha);
                }
            }
            let pa = if bf16 {
                for r in 0..nr {
                    let row = &s[r * KEY_BLOCK..r * KEY_BLOCK + kb];
                    to_slots(elem, row, &mut ps[r * pstride..][..kslots * elem.a_slots()]);
                }
                Slots::Bits(&ps)
            } else {
                Slots::F32(&s)
            };
            // Output rows += probabilities · v's rows of the block.
            let mut pd = 0;
            while pd < dpanels {
                let two = pd + 1 < dpanels;
                let b0 = vp.panel(pd, s0, s0 + kslots);
                let b1 = two.then(|| vp.panel(pd + 1, s0, s0 + kslots));
                let acc = &mut o[r0 * dpad + pd * PANEL..];
                product(
                    elem, level, pa, pstride, nr, kslots, b0, b1, acc, dpad, true,
                );
                pd += 2;
            }
        }
    }
    for (r, row) in out.chunks_exact_mut(d).enumerate() {
        let inv = 1.0 / l[r];
        for (x, y) in row.iter_mut().zip(&o[r * dpad..]) {
            *x = y * inv;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::supported_levels;
    use super::super::tests::values;
    use super::*;

    fn round(x: f32, precision: Precision) -> f64 {
        match precision {
            Precision::F32 => x as f64,
            Precision::Bf16 => half::bf16::from_bits(bf16_bits(x)).to_f64(),
        }
    }

    /// The plain reference in f64: scores from the (rounded) operands, a full-row softmax,
    /// then the probabilities (rounded as the kernel rounds them) times v.
    #[allow(clippy::too_many_arguments)]
    fn reference(
        q: &[f32],
        k: &[f32],
        v: &[f32],
        heads: usize,
        d: usize,
        segments: &[(usize, usize)],
        scale: f32,
        precision: Precision,
    ) -> Vec<f64> {
        let tokens = q.len() / heads / d;
        let mut out = vec![0f64; q.len()];
        for h in 0..heads {
            for &(start, len) in segments {
                let at = |t: &[f32], i: usize, c: usize| {
                    round(t[(h * tokens + start + i) * d + c], precision)
                };
                for i in 0..len {
                    let s: Vec<f64> = (0..len)
                        .map(|j| {
                            (0..d).map(|c| at(q, i, c) * at(k, j, c)).sum::<f64>() * scale as f64
                        })
                        .collect();
                    let mx = s.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
                    let e: Vec<f64> = s.iter().map(|x| (x - mx).exp()).collect();
                    let sum: f64 = e.iter().sum();
                    for c in 0..d {
                        out[(h * tokens + start + i) * d + c] =
                            (0..len).map(|j| e[j] / sum * at(v, j, c)).sum();
                    }
                }
            }
        }
        out
    }

    fn run(level: Isa, x: Heads<'_>, precision: Precision) -> Vec<f32> {
        let mut out = vec![f32::NAN; x.q.len()];
        attention_at(level, x, 0.37, precision, &mut out).unwrap();
        out
    }

    /// Odd head sizes (a lone panel, two panels, pairs with a tail), segments shorter than a
    /// key block, across several key and query blocks, of length 1, and several in a row.
    /// (heads, head_dim, segments)
    type Case = (usize, usize, &'static [(usize, usize)]);

    const CASES: [Case; 8] = [
        (1, 1, &[(0, 1)]),
        (2, 3, &[(0, 5)]),
        (1, 16, &[(0, 33)]),
        (3, 17, &[(0, 7), (7, 1), (8, 20)]),
        (1, 80, &[(0, 131)]),
        (2, 35, &[(0, 100), (100, 290)]),
        (1, 72, &[(0, 97)]),
        (2, 64, &[(0, 300), (300, 33)]),
    ];

    #[test]
    fn every_level_matches_the_reference_on_odd_shapes() {
        for precision in [Precision::F32, Precision::Bf16] {
            for (heads, d, segments) in CASES {
                let tokens = segments.last().map_or(0, |&(s, l)| s + l);
                let n = heads * tokens * d;
                let (q, k, v) = (values(n, 1), values(n, 2), values(n, 3));
                let want = reference(&q, &k, &v, heads, d, segments, 0.37, precision);
                let x = Heads {
                    q: &q,
                    k: &k,
                    v: &v,
                    heads,
                    head_dim: d,
                    segments,
                };
                let scalar = run(Isa::Scalar, x, precision);
                for level in supported_levels() {
                    let got = run(level, x, precision);
                    // bf16: the probabilities are rounded to bf16 before the product with v.
                    let tol = match precision {
                        Precision::F32 => 2e-5,
                        Precision::Bf16 => 2e-2,
                    };
                    let vmax = v.iter().fold(0f32, |a, &b| a.max(b.abs())) as f64;
                    for i in 0..n {
                        let err = (got[i] as f64 - want[i]).abs();
                        assert!(
                            err <= tol * vmax,
                            "{precision:?} {level:?} heads {heads} d {d} {segments:?} [{i}]: \
                             {} vs {}",
                            got[i],
                            want[i]
                        );
                    }
                    // f32: every level does the same operations in the same order.
                    if precision == Precision::F32 || level < Isa::Avx512Bf16 {
                        let same = got
                            .iter()
                            .zip(&scalar)
                            .all(|(x, y)| x.to_bits() == y.to_bits());
                        assert!(
                            same,
                            "{precision:?} {level:?} differs from the scalar level"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn results_do_not_depend_on_the_thread_count() {
        let (heads, d, segments) = (3, 24, [(0, 150), (150, 301)]);
        let n = heads * 451 * d;
        let (q, k, v) = (values(n, 4), values(n, 5), values(n, 6));
        for precision in [Precision::F32, Precision::Bf16] {
            for level in supported_levels() {
                let on = |threads: usize| {
                    let pool = rayon::ThreadPoolBuilder::new()
                        .num_threads(threads)
                        .build()
                        .unwrap();
                    let x = Heads {
                        q: &q,
                        k: &k,
                        v: &v,
                        heads,
                        head_dim: d,
                        segments: &segments,
                    };
                    pool.install(|| run(level, x, precision))
                };
                let one = on(1);
                for threads in [2, 5] {
                    assert_eq!(
                        one,
                        on(threads),
                        "{precision:?} {level:?} {threads} threads"
                    );
                }
            }
        }
    }

    /// The bf16 operands packed from contiguous rows (`Kᵀ` by columns, `V` by rows) equal
    /// the element-by-element packing, odd sizes and an odd number of rows included.
    #[test]
    fn bf16_panels_from_rows_equal_the_generic_packing() {
        for (rows, d) in [(1, 1), (5, 3), (33, 17), (64, 72), (7, 80)] {
            let x = values(rows * d, 40 + rows as u64);
            let want_kt =
                Panels::build(Precision::Bf16, d, rows, |dim, key| x[key * d + dim]).unwrap();
            let kt = Panels::bf16_from_columns(d, rows, |key| &x[key * d..][..d]).unwrap();
            assert_eq!(
                (kt.slots, &*kt.data),
                (want_kt.slots, &*want_kt.data),
                "kt {rows}x{d}"
            );
            let want_v =
                Panels::build(Precision::Bf16, rows, d, |key, dim| x[key * d + dim]).unwrap();
            let vp = Panels::bf16_from_rows(rows, d, |key| &x[key * d..][..d]).unwrap();
            assert_eq!(
                (vp.slots, &*vp.data),
                (want_v.slots, &*want_v.data),
                "v {rows}x{d}"
            );
        }
    }

    /// The AMX attention's AVX-512 softmax step against the scalar one (`exp`, `bf16_bits`).
    #[cfg(target_arch = "x86_64")]
    #[test]
    fn avx512_softmax_row_matches_the_scalar_step() {
        if !Isa::Avx512Bf16.supported() {
            println!("no AVX512-BF16 on this CPU: the AMX softmax step cannot run here");
            return;
        }
        for (len, m_old) in [
            (1, f32::NEG_INFINITY),
            (15, 2.0),
            (16, -1.0),
            (33, 40.0),
            (256, 0.5),
            (100, 1.0),
            // Every exponent below e^-87: zeros, as the scalar exp gives.
            (17, 200.0),
        ] {
            let row: Vec<f32> = values(len, len as u64).iter().map(|x| x * 9.0).collect();
            let scale = 0.37;
            let mut pairs = vec![u32::MAX; len.div_ceil(2)];
            let (m_new, sum) = super::super::x86::softmax_row_bf16(&row, scale, m_old, &mut pairs);
            let want_m = row.iter().fold(m_old, |a, &x| a.max(x * scale));
            assert_eq!(m_new, want_m, "{len}");
            let e: Vec<f32> = row.iter().map(|&x| exp(x * scale - want_m)).collect();
            let want_sum: f64 = e.iter().map(|&x| x as f64).sum();
            assert!(
                (sum as f64 - want_sum).abs() <= 1e-6 * want_sum,
                "{len}: {sum} vs {want_sum}"
            );
            for (i, &x) in e.iter().enumerate() {
                let got = pairs[i / 2] >> (16 * (i % 2)) & 0xffff;
                let got = f32::from_bits(got << 16);
                let want = f32::from_bits((bf16_bits(x) as u32) << 16);
                // One bf16 ulp: the two exps may differ in the last f32 bits.
                assert!(
                    (got - want).abs() <= want * 2f32.powi(-7) + 1e-30,
                    "{len} [{i}]"
                );
            }
            if len % 2 == 1 {
                assert_eq!(pairs[len / 2] >> 16, 0, "{len}: the padding half");
            }
        }
    }

    #[test]
    fn bad_shapes_are_errors() {
        let x = values(2 * 10 * 4, 1);
        let mut out = vec![0f32; x.len()];
        let mut on = |v: &[f32], segments: &[(usize, usize)]| {
            let heads = Heads {
                q: &x,
                k: &x,
                v,
                heads: 2,
                head_dim: 4,
                segments,
            };
            attention(heads, 1.0, Precision::F32, &mut out).is_ok()
        };
        assert!(!on(&x, &[(0, 4), (5, 5)]));
        assert!(!on(&x, &[(0, 4), (4, 0), (4, 6)]));
        assert!(!on(&x, &[(0, 9)]));
        assert!(!on(&x[1..], &[(0, 10)]));
        assert!(on(&x, &[(0, 10)]));
        let none = Heads {
            q: &[],
            k: &[],
            v: &[],
            heads: 2,
            head_dim: 4,
            segments: &[],
        };
        assert!(attention(none, 1.0, Precision::F32, &mut []).is_ok());
    }
}
