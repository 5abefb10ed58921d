//! SIMD matrix kernels for the CPU: `C = A · B` with bf16 weights ([`gemm`]: `A` in f32
//! rounded to bf16 per call, round-to-nearest-even as PyTorch rounds, `B` in bf16 packed once
//! ([`PackedB`]), products of bf16 values accumulated in f32, `C` in f32), and a fused
//! ("flash") attention ([`attention`]) whose two products run on the same micro-kernels in
//! bf16 or in f32.
//!
//! The instruction set is chosen at run time, once per process, here and nowhere else
//! ([`isa`]): AMX (`tdpbf16ps` on 16×16 tiles of f32 accumulators; Linux grants the tile
//! state once per process through `arch_prctl(ARCH_REQ_XCOMP_PERM)`, and without that grant
//! the level is not used), AVX512-BF16 (`vdpbf16ps`, two products per lane and
//! instruction), AVX-512F (bf16 widened to f32, FMA), AVX2+FMA (8 lanes: the activations
//! rounded to bf16 and widened back to f32 once per call, the weights' pairs split into f32
//! halves in registers, 6 × 16 tiles, the inner loop in assembly), or portable scalar code. The environment variable `VTOWER_CPU_ISA` (`amx`, `avx512bf16`,
//! `avx512`, `avx2` or `scalar`) caps the level (a level the CPU lacks is never used; an
//! unknown value is ignored with a warning). At the AMX level the GEMM and the bf16
//! attention's two products run on tiles (the attention's softmax on AVX-512); f32 attention
//! stays on the AVX-512 micro-kernels. Packed operands start on a cache line (AMX tile loads
//! of split lines ran at 40% of the speed); the AMX GEMM packs `A` tile by tile (each tile
//! one contiguous KiB), per block of rows on the thread that uses it, into a buffer the
//! thread keeps, and runs the whole `k` per tile of `C`.
//!
//! Every level computes each output element as the same sequence of f32 operations: per
//! pair of `k`, the odd product then the even one is added to the accumulator (products of
//! two bf16 values are exact in f32, so FMA and multiply-then-add agree), in increasing `k`
//! (the order `vdpbf16ps` documents); f32 operands: one fused multiply-add per `k`, in
//! increasing `k`. The two bf16 instructions (`vdpbf16ps`, `tdpbf16ps`) sum in their own
//! order and rounding, within the same bound of the exact sum (tested). Results never depend
//! on how the work is split across threads. Subnormal values may differ between levels
//! (`vdpbf16ps` and `tdpbf16ps` flush them).
//!
//! Only safe functions leave this module; the intrinsics live in `x86.rs`.

use std::sync::OnceLock;

use half::bf16;
use rayon::prelude::*;

use crate::error::Result;

mod attention;
mod transpose;
#[cfg(target_arch = "x86_64")]
mod x86;

pub use attention::{attention, attention_at, check_segments, Heads, Precision};
pub use transpose::{transpose, Block};

/// Columns per packed panel of `B` (one 512-bit register of f32 accumulators).
pub const PANEL: usize = 16;

/// An instruction-set level of the bf16 matrix kernels, lowest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Isa {
    /// Portable Rust, no SIMD intrinsics.
    Scalar,
    /// AVX2 + FMA: bf16 widened to f32, 8 lanes (`A` widened when packed).
    Avx2,
    /// AVX-512F: bf16 widened to f32, 16 lanes.
    Avx512,
    /// AVX512-BF16: `vdpbf16ps`.
    Avx512Bf16,
    /// AMX-BF16 tiles (`tdpbf16ps`) for the GEMM, AVX512-BF16 for the rest.
    Amx,
}

impl Isa {
    /// Every level, lowest first.
    pub const ALL: [Isa; 5] = [
        Isa::Scalar,
        Isa::Avx2,
        Isa::Avx512,
        Isa::Avx512Bf16,
        Isa::Amx,
    ];

    /// The name `VTOWER_CPU_ISA` takes.
    pub fn name(self) -> &'static str {
        match self {
            Isa::Scalar => "scalar",
            Isa::Avx2 => "avx2",
            Isa::Avx512 => "avx512",
            Isa::Avx512Bf16 => "avx512bf16",
            Isa::Amx => "amx",
        }
    }

    /// The level named `name` (as [`Isa::name`] writes it, any case).
    pub fn parse(name: &str) -> Option<Isa> {
        let name = name.trim().to_ascii_lowercase();
        Isa::ALL.into_iter().find(|i| i.name() == name)
    }

    /// Whether this CPU can run the level.
    pub fn supported(self) -> bool {
        self <= detected()
    }

    /// Rows of `A` one micro-kernel call covers.
    fn rows(self) -> usize {
        match self {
            Isa::Amx | Isa::Avx512Bf16 | Isa::Avx512 => 12,
            Isa::Avx2 | Isa::Scalar => 4,
        }
    }

    /// Rows of `A` one micro-kernel call on operands of `elem` covers: AVX2 keeps 6 rows × 16
    /// columns of accumulators in its 16 registers when `A`'s values are broadcast straight
    /// from memory (f32, or bf16 widened), 4 when its pairs are split in registers.
    fn rows_for(self, elem: Elem) -> usize {
        match (self, elem) {
            (Isa::Avx2, Elem::Bf16Wide | Elem::F32) => 6,
            _ => self.rows(),
        }
    }
}

/// The best level this CPU has.
pub fn detected() -> Isa {
    static DETECTED: OnceLock<Isa> = OnceLock::new();
    *DETECTED.get_or_init(|| {
        #[cfg(target_arch = "x86_64")]
        {
            let avx512 = std::arch::is_x86_feature_detected!("avx512f")
                && std::arch::is_x86_feature_detected!("avx512bw");
            if avx512 && std::arch::is_x86_feature_detected!("avx512bf16") {
                if x86::amx_usable() {
                    return Isa::Amx;
                }
                return Isa::Avx512Bf16;
            }
            if avx512 {
                return Isa::Avx512;
            }
            if std::arch::is_x86_feature_detected!("avx2")
                && std::arch::is_x86_feature_detected!("fma")
            {
                return Isa::Avx2;
            }
        }
        Isa::Scalar
    })
}

/// The level the kernels run at: [`detected`], capped by `VTOWER_CPU_ISA` when set (read
/// once per process).
pub fn isa() -> Isa {
    static ISA: OnceLock<Isa> = OnceLock::new();
    *ISA.get_or_init(|| {
        let best = detected();
        match std::env::var("VTOWER_CPU_ISA") {
            Ok(v) if !v.trim().is_empty() => match Isa::parse(&v) {
                Some(cap) => cap.min(best),
                None => {
                    crate::log::warn(&format!(
                        "VTOWER_CPU_ISA={v:?} is not one of amx, avx512bf16, avx512, avx2, \
                         scalar; ignored"
                    ));
                    best
                }
            },
            _ => best,
        }
    })
}

/// The levels this CPU supports, lowest first.
pub fn supported_levels() -> Vec<Isa> {
    Isa::ALL.into_iter().filter(|i| i.supported()).collect()
}

/// `x` rounded to bf16, round-to-nearest-even (PyTorch's `c10::BFloat16` rounding; NaN stays
/// a quiet NaN), as raw bits.
#[inline(always)]
pub fn bf16_bits(x: f32) -> u16 {
    let b = x.to_bits();
    if x.is_nan() {
        return ((b >> 16) | 0x40) as u16;
    }
    (b.wrapping_add(0x7fff + ((b >> 16) & 1)) >> 16) as u16
}

/// A pair of bf16 bit patterns in one `u32`: `lo` (even `k`) in the low half.
#[inline(always)]
fn pair(lo: u16, hi: u16) -> u32 {
    lo as u32 | (hi as u32) << 16
}

/// Pairs of `k` one AMX tile holds per row (64 bytes).
const TILE_PAIRS: usize = 16;

/// One cache line of slots: what [`Aligned`] is made of.
#[derive(Clone, Copy)]
#[repr(C, align(64))]
struct Line([u32; 16]);

// SAFETY: `Line` is 16 `u32` (64 bytes, alignment 64, no padding): all-zero bits are a valid
// value, and so is every bit pattern; it has no interior mutability.
unsafe impl bytemuck::Zeroable for Line {}
// SAFETY: as above; `Copy`, `'static`, `repr(C)` without padding.
unsafe impl bytemuck::Pod for Line {}

/// Zeroed slots whose first one starts a cache line: packed operands whose rows are whole
/// lines then start on one (a tile row split across two lines costs a second access; AMX
/// tile loads ran at 40% of their speed on unaligned operands).
struct Aligned {
    lines: Vec<Line>,
    len: usize,
}

impl Aligned {
    /// `len` zero slots, or an out-of-memory error naming `what`.
    fn zeroed(len: usize, what: &str) -> Result<Aligned> {
        let lines = crate::preprocess::limits::try_zeroed(len.div_ceil(16), what)?;
        Ok(Aligned { lines, len })
    }

    /// `count` lines, line `i` = `line(&mut state, i)`, computed in parallel on the calling
    /// thread's pool (`state` from `init`, one per piece of work) and written once each,
    /// in place: no pass writing zeros first, and the pages are first touched by the threads
    /// that fill them.
    fn par_lines<I>(
        count: usize,
        what: &str,
        init: impl Fn() -> I + Sync + Send,
        line: impl Fn(&mut I, usize) -> Line + Sync + Send,
    ) -> Result<Aligned> {
        let mut lines = crate::preprocess::limits::try_with_capacity(count, what)?;
        (0..count)
            .into_par_iter()
            .map_init(init, line)
            .collect_into_vec(&mut lines);
        Ok(Aligned {
            lines,
            len: count * 16,
        })
    }
}

impl std::ops::Deref for Aligned {
    type Target = [u32];
    fn deref(&self) -> &[u32] {
        &bytemuck::cast_slice(&self.lines)[..self.len]
    }
}

impl std::ops::DerefMut for Aligned {
    fn deref_mut(&mut self) -> &mut [u32] {
        &mut bytemuck::cast_slice_mut(&mut self.lines)[..self.len]
    }
}

/// The working buffers of [`PackedB::from_nk_rows`] for one piece of work.
struct PanelBuffers<S> {
    /// The panel `panel` holds, if any.
    held: Option<usize>,
    /// A panel's rows of `W` as read (up to 16 rows of `k` values).
    rows: Vec<S>,
    /// The same rows as bf16 pairs: per row, `ceil(k / 2)` pairs (even `k` low).
    pairs: Vec<u32>,
    /// The packed panel: `[kp][PANEL]` pairs.
    panel: Vec<u32>,
}

impl<S> Default for PanelBuffers<S> {
    fn default() -> Self {
        PanelBuffers {
            held: None,
            rows: Vec::new(),
            pairs: Vec::new(),
            panel: Vec::new(),
        }
    }
}

impl<S: Copy + Default> PanelBuffers<S> {
    /// Reads and packs panel `p` of `W` `[n, k]`: the rows rounded to bf16 pairs, then the
    /// `rows × kp` matrix of pairs transposed into `kp` lines of [`PANEL`] (zero past the
    /// last row).
    fn pack(
        &mut self,
        p: usize,
        n: usize,
        k: usize,
        read: impl Fn(usize, &mut [S]) -> Result<()>,
        bits: impl Fn(S) -> u16,
    ) -> Result<()> {
        let (n0, kp) = (p * PANEL, k.div_ceil(2));
        let cols = PANEL.min(n - n0);
        self.rows.resize(cols * k, S::default());
        read(n0, &mut self.rows[..cols * k])?;
        self.pairs.resize(cols * kp, 0);
        for (row, out) in self.rows[..cols * k]
            .chunks_exact(k)
            .zip(self.pairs.chunks_exact_mut(kp))
        {
            let (even, tail) = row.split_at(k / 2 * 2);
            for (o, v) in out.iter_mut().zip(even.chunks_exact(2)) {
                *o = pair(bits(v[0]), bits(v[1]));
            }
            if let [last] = tail {
                out[kp - 1] = pair(bits(*last), 0);
            }
        }
        if cols < PANEL {
            // The slots past the last row stay zero.
            self.panel.clear();
        }
        self.panel.resize(kp * PANEL, 0);
        let block = Block {
            rows: cols,
            cols: kp,
            src_stride: kp,
            dst_stride: PANEL,
        };
        transpose(
            bytemuck::cast_slice(&self.pairs[..cols * kp]),
            bytemuck::cast_slice_mut(&mut self.panel),
            block,
        )?;
        self.held = Some(p);
        Ok(())
    }
}

/// The right operand `B` `[k, n]` of a product, in bf16, packed for the micro-kernels:
/// panels of [`PANEL`] columns, each holding for every pair of rows `(2q, 2q + 1)` the
/// 16 column values of both rows interleaved (the operand layout of `vdpbf16ps`, and of
/// `tdpbf16ps`, whose `B` tile is 16 such rows of a panel), zero past the edges; each panel
/// has a whole number of tile rows (`kp` rounded up to [`TILE_PAIRS`], zero pairs past
/// `kp`). Built once (weights at load), read by every call.
pub struct PackedB {
    k: usize,
    n: usize,
    /// Row pairs: `ceil(k / 2)`.
    kp: usize,
    /// Pair rows per panel: `kp` rounded up to [`TILE_PAIRS`].
    kstride: usize,
    /// `[panels][kstride][PANEL]` pairs, each panel starting a cache line.
    data: Aligned,
}

impl std::fmt::Debug for PackedB {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PackedB(bf16 [k {}, n {}])", self.k, self.n)
    }
}

impl PackedB {
    /// Packs `B[kk][nn] = value(kk, nn)` (bf16 bits).
    fn build(k: usize, n: usize, value: impl Fn(usize, usize) -> u16 + Sync) -> Result<PackedB> {
        let (kp, kstride, count) = PackedB::shape(k, n)?;
        let data = Aligned::par_lines(
            count,
            "a packed bf16 matrix",
            || (),
            |(), i| {
                let (p, q) = (i / kstride, i % kstride);
                let mut line = Line([0; PANEL]);
                if q < kp {
                    let (n0, k0) = (p * PANEL, 2 * q);
                    for (j, slot) in line.0[..PANEL.min(n - n0)].iter_mut().enumerate() {
                        let lo = value(k0, n0 + j);
                        let hi = if k0 + 1 < k { value(k0 + 1, n0 + j) } else { 0 };
                        *slot = pair(lo, hi);
                    }
                }
                line
            },
        )?;
        Ok(PackedB {
            k,
            n,
            kp,
            kstride,
            data,
        })
    }

    /// `(kp, kstride, lines)` of the packing of a `[k, n]` matrix (one line per pair row of a
    /// panel), or an error when it cannot be held.
    fn shape(k: usize, n: usize) -> Result<(usize, usize, usize)> {
        let kp = k.div_ceil(2);
        let kstride = kp.div_ceil(TILE_PAIRS) * TILE_PAIRS;
        let lines = n
            .div_ceil(PANEL)
            .checked_mul(kstride)
            .filter(|l| l.checked_mul(64).is_some())
            .ok_or_else(|| crate::error::Error::compute("packed bf16 matrix too large"))?;
        Ok((kp, kstride, lines))
    }

    /// Packs `B = Wᵀ` for a weight `W` `[n, k]` read a panel's rows at a time: `read(n0,
    /// rows)` fills `rows` (`rows.len() / k` rows of `k` values, from row `n0`: 16 rows, fewer
    /// for the last panel) and `bits` rounds a value to bf16 bits. Panels are read and packed
    /// in parallel on the calling thread's pool, each from a buffer of its own rows (no copy
    /// of the whole weight); the first error of `read` is returned.
    pub fn from_nk_rows<S: Copy + Default + Send>(
        n: usize,
        k: usize,
        read: impl Fn(usize, &mut [S]) -> Result<()> + Sync,
        bits: impl Fn(S) -> u16 + Sync,
    ) -> Result<PackedB> {
        let (kp, kstride, count) = PackedB::shape(k, n)?;
        let failed = std::sync::Mutex::new(None);
        // Per piece of work: which panel it holds, packed (`[kp][PANEL]` pairs), and the
        // buffers it is made from (lines come in order, so each panel is read and packed once
        // per piece that covers it).
        let data = Aligned::par_lines(
            count,
            "a packed bf16 matrix",
            PanelBuffers::<S>::default,
            |b: &mut PanelBuffers<S>, i| {
                let (p, q) = (i / kstride, i % kstride);
                let mut line = Line([0; PANEL]);
                if q >= kp {
                    return line;
                }
                if b.held != Some(p) {
                    if let Err(e) = b.pack(p, n, k, &read, &bits) {
                        let mut first = failed.lock().unwrap_or_else(|e| e.into_inner());
                        first.get_or_insert(e);
                        b.held = None;
                        return line;
                    }
                }
                line.0.copy_from_slice(&b.panel[q * PANEL..][..PANEL]);
                line
            },
        )?;
        if let Some(e) = failed.into_inner().unwrap_or_else(|e| e.into_inner()) {
            return Err(e);
        }
        Ok(PackedB {
            k,
            n,
            kp,
            kstride,
            data,
        })
    }

    pub fn from_nk_bf16(w: &[bf16], n: usize, k: usize) -> Result<PackedB> {
        assert_eq!(w.len(), n * k, "PackedB::from_nk_bf16: {n}x{k}");
        PackedB::build(k, n, |kk, nn| w[nn * k + kk].to_bits())
    }

    /// From `W` `[n, k]` in f32, rounded to bf16 (`B = Wᵀ`).
    pub fn from_nk_f32(w: &[f32], n: usize, k: usize) -> Result<PackedB> {
        assert_eq!(w.len(), n * k, "PackedB::from_nk_f32: {n}x{k}");
        PackedB::build(k, n, |kk, nn| bf16_bits(w[nn * k + kk]))
    }

    /// From `B` `[k, n]` in f32, rounded to bf16.
    pub fn from_kn_f32(b: &[f32], k: usize, n: usize) -> Result<PackedB> {
        assert_eq!(b.len(), k * n, "PackedB::from_kn_f32: {k}x{n}");
        PackedB::build(k, n, |kk, nn| bf16_bits(b[kk * n + nn]))
    }

    /// Several matrices with the same `k` side by side: `[k, n_1 + n_2 + ...]`.
    pub fn concat(parts: &[&PackedB]) -> Result<PackedB> {
        let k = parts.first().map_or(0, |p| p.k);
        if parts.iter().any(|p| p.k != k) {
            return Err(crate::error::Error::bad_weights(
                "fused projections have different input sizes",
            ));
        }
        let mut owner = Vec::new();
        for (i, p) in parts.iter().enumerate() {
            owner.extend((0..p.n).map(|nn| (i, nn)));
        }
        let n = owner.len();
        // Every part has the same `k`, hence the same pair rows per panel: slot (q, column)
        // is copied from the part's own slot (q, column) as it is.
        let (kp, kstride, count) = PackedB::shape(k, n)?;
        let data = Aligned::par_lines(
            count,
            "a packed bf16 matrix",
            || (),
            |(), i| {
                let (p, q) = (i / kstride, i % kstride);
                let mut line = Line([0; PANEL]);
                let n0 = p * PANEL;
                for (j, slot) in line.0[..PANEL.min(n - n0)].iter_mut().enumerate() {
                    let (part, c) = owner[n0 + j];
                    *slot = parts[part].padded_panel(c / PANEL)[q * PANEL + c % PANEL];
                }
                line
            },
        )?;
        Ok(PackedB {
            k,
            n,
            kp,
            kstride,
            data,
        })
    }

    /// Rows (the inner dimension of the product).
    pub fn k(&self) -> usize {
        self.k
    }

    /// Columns (outputs).
    pub fn n(&self) -> usize {
        self.n
    }

    /// `B[kk][nn]`.
    pub fn get(&self, kk: usize, nn: usize) -> bf16 {
        assert!(kk < self.k && nn < self.n, "PackedB::get out of range");
        let v = self.data[((nn / PANEL) * self.kstride + kk / 2) * PANEL + nn % PANEL];
        bf16::from_bits(if kk & 1 == 0 {
            v as u16
        } else {
            (v >> 16) as u16
        })
    }

    /// Whether `other` packs the same matrix the same way (every slot equal).
    #[cfg(test)]
    pub fn same_values(&self, other: &PackedB) -> bool {
        (self.k, self.n) == (other.k, other.n) && *self.data == *other.data
    }

    /// Bytes held.
    pub fn bytes(&self) -> usize {
        self.data.len() * 4
    }

    /// Panel `p`: `kp * PANEL` pairs.
    fn panel(&self, p: usize) -> &[u32] {
        &self.data[p * self.kstride * PANEL..][..self.kp * PANEL]
    }

    /// Panel `p` with its zero rows up to `kstride`: `kstride * PANEL` pairs.
    fn padded_panel(&self, p: usize) -> &[u32] {
        &self.data[p * self.kstride * PANEL..][..self.kstride * PANEL]
    }
}

/// `x` rounded to bf16 pairs of consecutive values (`out[q]` = `(x[2q], x[2q + 1])`, the
/// last one zero-padded when `x` has an odd length).
#[multiversion::multiversion(targets(
    "x86_64+avx512f+avx512bw+avx512vl+avx2+fma",
    "x86_64+avx2+fma",
    "aarch64+neon"
))]
fn bf16_pairs(x: &[f32], out: &mut [u32]) {
    let pairs = x.chunks_exact(2);
    if let [last] = pairs.remainder() {
        out[x.len() / 2] = pair(bf16_bits(*last), 0);
    }
    for (o, p) in out.iter_mut().zip(pairs) {
        *o = pair(bf16_bits(p[0]), bf16_bits(p[1]));
    }
}

/// `A` `[m, k]` f32 rounded to bf16 as left-operand slots of `elem`, row-major, starting a
/// cache line: `rows` (≥ `m`) rows of `stride` (≥ the row's slots) slots, zero past `m` rows
/// and each row's slots; the kernels read it at a row stride. [`Elem::Bf16`]: pairs;
/// [`Elem::Bf16Wide`]: per pair of `k` the odd `k`'s value widened to f32, then the even one's.
fn pack_a(
    a: &[f32],
    m: usize,
    k: usize,
    stride: usize,
    rows: usize,
    elem: Elem,
) -> Result<Aligned> {
    let used = k.div_ceil(2) * elem.a_slots();
    debug_assert!(stride >= used && rows >= m && elem != Elem::F32);
    let len = rows
        .checked_mul(stride)
        .ok_or_else(|| crate::error::Error::compute("bf16 activations too large"))?;
    let mut out = Aligned::zeroed(len, "bf16 activations")?;
    if used == 0 {
        return Ok(out);
    }
    let rows_per_task = (16384 / stride).max(1);
    out.par_chunks_mut(rows_per_task * stride)
        .zip(a.par_chunks(rows_per_task * k))
        .for_each(|(o, x)| {
            for (orow, xrow) in o.chunks_exact_mut(stride).zip(x.chunks_exact(k)) {
                match elem {
                    Elem::Bf16Wide => bf16_wide(xrow, &mut orow[..used]),
                    _ => bf16_pairs(xrow, &mut orow[..used]),
                }
            }
        });
    Ok(out)
}

/// `x` rounded to bf16 and widened back, as the slots of [`Elem::Bf16Wide`]: per pair the
/// odd value's bits, then the even one's (an odd length's last value pairs with zero).
/// Branch-free per value (the NaN case selected, not branched to), so that it vectorizes.
#[multiversion::multiversion(targets(
    "x86_64+avx512f+avx512bw+avx512vl+avx2+fma",
    "x86_64+avx2+fma",
    "aarch64+neon"
))]
fn bf16_wide(x: &[f32], out: &mut [u32]) {
    #[inline(always)]
    fn widened(x: f32) -> u32 {
        // `bf16_bits(x) << 16`, without the branch.
        let b = x.to_bits();
        let rounded = b.wrapping_add(0x7fff + ((b >> 16) & 1)) & 0xffff_0000;
        let nan = (b | 0x0040_0000) & 0xffff_0000;
        if b & 0x7fff_ffff > 0x7f80_0000 {
            nan
        } else {
            rounded
        }
    }
    let full = x.len() / 8 * 8;
    let (x8, x) = x.split_at(full);
    let (out8, out) = out.split_at_mut(full);
    for (c, o) in x8.chunks_exact(8).zip(out8.chunks_exact_mut(8)) {
        for j in 0..8 {
            o[j] = widened(c[j ^ 1]);
        }
    }
    let pairs = x.chunks_exact(2);
    if let [last] = pairs.remainder() {
        let at = x.len() / 2 * 2;
        out[at] = 0;
        out[at + 1] = widened(*last);
    }
    for (o, p) in out.chunks_exact_mut(2).zip(pairs) {
        o[0] = widened(p[1]);
        o[1] = widened(p[0]);
    }
}

/// The operand format of the bf16 products at `level`: [`Elem::Bf16Wide`] where the level has
/// no bf16 dot product and its kernels widen (AVX2), pairs elsewhere.
fn bf16_elem(level: Isa) -> Elem {
    if level == Isa::Avx2 {
        Elem::Bf16Wide
    } else {
        Elem::Bf16
    }
}

/// What the slots of the operands hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Elem {
    /// A pair of bf16 values of consecutive `k` (even `k` in the low half).
    Bf16,
    /// One f32 value (its bits).
    F32,
    /// `B` as [`Elem::Bf16`]; `A` widened: each pair of `k` as two f32 slots holding the
    /// bf16-rounded values, the odd `k`'s first (the order the products are added in), so
    /// that a kernel broadcasts them straight from memory.
    Bf16Wide,
}

impl Elem {
    /// Slots of `A` per pair of `k` (per `k` for f32).
    fn a_slots(self) -> usize {
        match self {
            Elem::Bf16Wide => 2,
            Elem::Bf16 | Elem::F32 => 1,
        }
    }
}

/// The left operand of a micro-kernel call: slot `q` of row `r` at
/// `data[r * row_stride + q * slot_stride]` (a packed tile: `row_stride` 1, `slot_stride` the
/// tile's rows; a row-major matrix: `row_stride` its slots per row, `slot_stride` 1).
#[derive(Clone, Copy)]
struct Lhs<'a> {
    data: Slots<'a>,
    row_stride: usize,
    slot_stride: usize,
}

/// A left operand's slots: packed bits, or f32 values read as they are.
#[derive(Clone, Copy)]
enum Slots<'a> {
    Bits(&'a [u32]),
    F32(&'a [f32]),
}

impl Slots<'_> {
    fn len(&self) -> usize {
        match self {
            Slots::Bits(x) => x.len(),
            Slots::F32(x) => x.len(),
        }
    }

    fn get(&self, i: usize) -> u32 {
        match self {
            Slots::Bits(x) => x[i],
            Slots::F32(x) => x[i].to_bits(),
        }
    }

    /// The first slot's address as 32-bit words (both variants hold 4-byte elements).
    #[cfg(target_arch = "x86_64")]
    fn as_ptr(&self) -> *const u32 {
        match self {
            Slots::Bits(x) => x.as_ptr(),
            Slots::F32(x) => x.as_ptr().cast(),
        }
    }
}

/// One micro-kernel call: `out[r · ldc ..][..16 · panels] (+)= Σ_q a(r, q) · b_panels[q]` for
/// `rows` rows and `slots` slots of `k`, one or two panels of `B` (`[slots][PANEL]` each),
/// added to what `out` holds when `accumulate`. Every level computes each element as the
/// same sequence of f32 operations in increasing `k` (bf16 pairs: odd product, then even;
/// f32: one fused multiply-add).
#[derive(Clone, Copy)]
struct Call<'a> {
    elem: Elem,
    a: Lhs<'a>,
    rows: usize,
    slots: usize,
    b0: &'a [u32],
    b1: Option<&'a [u32]>,
    ldc: usize,
    accumulate: bool,
}

impl Call<'_> {
    /// Panics unless every element the call reads and writes is inside its slice (the
    /// x86 kernels rely on it).
    fn check(&self, isa: Isa, out_len: usize) {
        assert!(
            (1..=isa.rows_for(self.elem)).contains(&self.rows) && self.slots >= 1,
            "micro-kernel shape"
        );
        let last_a = (self.rows - 1) * self.a.row_stride
            + (self.slots * self.elem.a_slots() - 1) * self.a.slot_stride;
        assert!(last_a < self.a.data.len(), "micro-kernel A");
        assert_eq!(self.b0.len(), self.slots * PANEL, "micro-kernel B");
        assert!(
            self.b1.is_none_or(|b| b.len() == self.slots * PANEL),
            "micro-kernel B"
        );
        let width = if self.b1.is_some() { 2 * PANEL } else { PANEL };
        assert!(self.ldc >= width, "micro-kernel output stride");
        assert!(
            (self.rows - 1) * self.ldc + width <= out_len,
            "micro-kernel output"
        );
    }
}

/// Runs one micro-kernel call at level `isa`.
fn tile(isa: Isa, call: Call<'_>, out: &mut [f32]) {
    match isa {
        // The micro-kernel calls (attention's products) run on AVX512-BF16 at the AMX level.
        Isa::Amx => tile(Isa::Avx512Bf16, call, out),
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512Bf16 | Isa::Avx512 | Isa::Avx2 => x86::tile(isa, call, out),
        _ => tile_scalar(isa, call, out),
    }
}

/// The portable micro-kernel (and the reference order every level follows).
fn tile_scalar(isa: Isa, call: Call<'_>, out: &mut [f32]) {
    call.check(isa, out.len());
    let lo = |v: u32| f32::from_bits(v << 16);
    let hi = |v: u32| f32::from_bits(v & 0xffff_0000);
    let a = |r: usize, q: usize| {
        call.a
            .data
            .get(r * call.a.row_stride + q * call.a.slot_stride)
    };
    for (half, b) in [Some(call.b0), call.b1].into_iter().enumerate() {
        let Some(b) = b else { continue };
        for r in 0..call.rows {
            let slot = &mut out[r * call.ldc + half * PANEL..][..PANEL];
            let mut acc = [0f32; PANEL];
            if call.accumulate {
                acc.copy_from_slice(slot);
            }
            for q in 0..call.slots {
                let ap = a(r, q);
                match call.elem {
                    Elem::Bf16 => {
                        let (a_lo, a_hi) = (lo(ap), hi(ap));
                        for (j, s) in acc.iter_mut().enumerate() {
                            let bp = b[q * PANEL + j];
                            *s += a_hi * hi(bp);
                            *s += a_lo * lo(bp);
                        }
                    }
                    Elem::F32 => {
                        let av = f32::from_bits(ap);
                        for (j, s) in acc.iter_mut().enumerate() {
                            *s = av.mul_add(f32::from_bits(b[q * PANEL + j]), *s);
                        }
                    }
                    Elem::Bf16Wide => {
                        let (a_hi, a_lo) =
                            (f32::from_bits(a(r, 2 * q)), f32::from_bits(a(r, 2 * q + 1)));
                        for (j, s) in acc.iter_mut().enumerate() {
                            let bp = b[q * PANEL + j];
                            *s += a_hi * hi(bp);
                            *s += a_lo * lo(bp);
                        }
                    }
                }
            }
            slot.copy_from_slice(&acc);
        }
    }
}

/// Bytes of packed `A` rows (one `k` chunk) one task keeps in the cache while it sweeps all
/// panels.
const A_BLOCK_BYTES: usize = 192 << 10;

/// Pairs of `k` per chunk: a two-panel chunk of `B` is 32 KiB.
const KC_PAIRS: usize = 256;

/// `C = A · B` at the level [`isa`] picks: `a` `[m, k]` f32 row-major (rounded to bf16),
/// `c` `[m, b.n()]` f32 row-major, overwritten. Splits rows across the calling thread's rayon
/// pool.
pub fn gemm(a: &[f32], m: usize, b: &PackedB, c: &mut [f32]) -> Result<()> {
    gemm_at(isa(), a, m, b, c)
}

/// [`gemm`] at level `level` (capped to what this CPU supports).
pub fn gemm_at(level: Isa, a: &[f32], m: usize, b: &PackedB, c: &mut [f32]) -> Result<()> {
    let level = level.min(detected());
    let (k, n) = (b.k, b.n);
    assert_eq!(a.len(), m * k, "gemm: A is not {m}x{k}");
    assert_eq!(c.len(), m * n, "gemm: C is not {m}x{n}");
    if m == 0 || n == 0 {
        return Ok(());
    }
    if k == 0 {
        c.fill(0.0);
        return Ok(());
    }
    #[cfg(target_arch = "x86_64")]
    if level == Isa::Amx {
        return gemm_amx(a, m, b, c);
    }
    let kp = b.kp;
    // AVX2 has no bf16 dot product: `A` goes widened to f32 (see `Elem::Bf16Wide`), `B`
    // is widened in registers.
    let elem = bf16_elem(level);
    let per_pair = elem.a_slots();
    let mr = level.rows_for(elem);
    let lda = kp * per_pair;
    let packed = pack_a(a, m, k, lda, m, elem)?;
    // `k` in chunks of `KC_PAIRS` pairs (the partial sums go through `C`, exactly: f32 stored
    // and reloaded), so that a panel's chunk stays in L1 across a row block's tiles; row blocks
    // small enough to stay in the cache across all panels, and enough of them for every thread
    // to get several.
    let kc = kp.min(KC_PAIRS);
    let threads = rayon::current_num_threads().max(1);
    let by_cache = (A_BLOCK_BYTES / (kc * 4 * per_pair)).max(1);
    let by_threads = m.div_ceil(4 * threads);
    let block = by_cache.min(by_threads).max(1).div_ceil(mr) * mr;
    let panels = n.div_ceil(PANEL);
    c.par_chunks_mut(block * n)
        .zip(packed.par_chunks(block * lda))
        .for_each(|(cblock, ablock)| {
            let rows_here = cblock.len() / n;
            let mut buf = [0f32; 12 * 2 * PANEL];
            for q0 in (0..kp).step_by(kc) {
                let q1 = (q0 + kc).min(kp);
                let accumulate = q0 > 0;
                let mut p = 0;
                while p < panels {
                    let two = p + 1 < panels;
                    let b0 = &b.panel(p)[q0 * PANEL..q1 * PANEL];
                    let b1 = two.then(|| &b.panel(p + 1)[q0 * PANEL..q1 * PANEL]);
                    let n0 = p * PANEL;
                    let width = if two { 2 * PANEL } else { PANEL };
                    let mut r0 = 0;
                    while r0 < rows_here {
                        let rows = mr.min(rows_here - r0);
                        let call = Call {
                            elem,
                            a: Lhs {
                                data: Slots::Bits(&ablock[r0 * lda + q0 * per_pair..]),
                                row_stride: lda,
                                slot_stride: 1,
                            },
                            rows,
                            slots: q1 - q0,
                            b0,
                            b1,
                            ldc: n,
                            accumulate,
                        };
                        if n0 + width <= n {
                            // Whole panels inside the row: straight into (and from) C.
                            tile(level, call, &mut cblock[r0 * n + n0..]);
                        } else {
                            // The last columns: through a buffer (the kernel writes whole
                            // panels).
                            let edge = Edge {
                                at: r0 * n + n0,
                                ldc: n,
                                rows,
                                cols: n - n0,
                                accumulate,
                            };
                            edge.through(cblock, &mut buf, |buf| {
                                tile(
                                    level,
                                    Call {
                                        ldc: 2 * PANEL,
                                        ..call
                                    },
                                    buf,
                                )
                            });
                        }
                        r0 += rows;
                    }
                    p += if two { 2 } else { 1 };
                }
            }
        });
    Ok(())
}

/// A part of `C` a kernel cannot write in place (whole panels or tiles would stick out of
/// it): `rows × cols` values from `at`, rows `ldc` apart.
struct Edge {
    at: usize,
    ldc: usize,
    rows: usize,
    cols: usize,
    accumulate: bool,
}

impl Edge {
    /// Runs `kernel` on `buf` (rows of two panels) in place of `c`'s part: the part copied in
    /// first when the kernel accumulates, copied back after.
    fn through(&self, c: &mut [f32], buf: &mut [f32], kernel: impl FnOnce(&mut [f32])) {
        let (at, ldc, cols) = (self.at, self.ldc, self.cols);
        if self.accumulate {
            for r in 0..self.rows {
                buf[r * 2 * PANEL..][..cols].copy_from_slice(&c[at + r * ldc..][..cols]);
            }
        }
        kernel(buf);
        for r in 0..self.rows {
            c[at + r * ldc..][..cols].copy_from_slice(&buf[r * 2 * PANEL..][..cols]);
        }
    }
}

/// Pairs of `k` per chunk of the AMX GEMM (a multiple of [`TILE_PAIRS`]): the towers' whole
/// `k`, so that each tile of `C` is loaded and stored once. Chunks of 256 pairs (two panels
/// of `B` in L1) sent `C` through the caches once per chunk and ran at 0.6-0.9x the speed
/// (`cargo bench --bench cpu_ops -- bf16`, AMX machine, stop 34).
#[cfg(target_arch = "x86_64")]
const AMX_KC_PAIRS: usize = 4096;

/// Bytes of packed `A` rows (one `k` chunk) one AMX task keeps in the L2 cache.
#[cfg(target_arch = "x86_64")]
const AMX_A_BLOCK_BYTES: usize = 1 << 20;

/// Rows of `C` one AMX kernel call covers at most (two tiles of 16).
#[cfg(target_arch = "x86_64")]
const AMX_ROWS: usize = 32;

/// Rows of `A` `[m, k]` f32 (`a`: a block of whole rows, at the end of `A` fewer than a
/// whole number of row tiles) rounded to bf16 pairs and packed tile by tile for the AMX kernel into
/// `out` (whose first slot starts a cache line): per 16 rows (a row tile, zero rows past the
/// data) and per 16 pairs of `k` (a step, zero pairs past `k`), the tile's 16 rows of 16
/// pairs, 1 KiB contiguous; a row tile's `stride / 16` steps one after another. A tile load
/// then reads one contiguous KiB whatever `k` is (row-major `A` at a row stride of a
/// multiple of 4 KiB put a tile's 16 lines in one L1 set).
#[cfg(target_arch = "x86_64")]
fn pack_a_tiles(a: &[f32], k: usize, stride: usize, row: &mut [u32], out: &mut [u32]) {
    const T: usize = TILE_PAIRS;
    let tr = x86::TILE_ROWS;
    let used = k.div_ceil(2);
    debug_assert!(stride >= used && stride % T == 0 && row.len() == stride);
    let mut rows = a.chunks_exact(k.max(1)).fuse();
    for o in out.chunks_exact_mut(tr * stride) {
        for r in 0..tr {
            match rows.next() {
                Some(x) if k > 0 => {
                    bf16_pairs(x, &mut row[..used]);
                    row[used..].fill(0);
                }
                _ => row.fill(0),
            }
            for (s, src) in row.chunks_exact(T).enumerate() {
                o[s * T * tr + r * T..][..T].copy_from_slice(src);
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
thread_local! {
    /// The AMX GEMM's packed `A` block of this thread, kept between calls: a fresh buffer per
    /// call cost page faults and a zeroing pass (with the packing, about a third of the AMX
    /// GEMM's samples in a profile of `cpu_ops -- bf16 amx`). At most [`AMX_A_BLOCK_BYTES`] per chunk of `k` times the chunks.
    static AMX_A: std::cell::RefCell<Vec<Line>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// [`gemm`] on AMX tiles: per task a block of rows (its tile configuration loaded once, its
/// rows of `A` packed tile by tile into the thread's buffer), `k` in chunks of
/// [`AMX_KC_PAIRS`] (partial sums through `C`, exact f32), per chunk every pair of panels
/// against the block's 32-row slices, `2 × 2` tiles of `C` at a time; tiles that stick out
/// of `C` go through a buffer.
#[cfg(target_arch = "x86_64")]
fn gemm_amx(a: &[f32], m: usize, b: &PackedB, c: &mut [f32]) -> Result<()> {
    gemm_amx_with(a, m, b, c, AMX_KC_PAIRS, AMX_A_BLOCK_BYTES)
}

/// [`gemm_amx`] with `k` in chunks of `kc_pairs` (a multiple of [`TILE_PAIRS`]) and blocks
/// of rows whose packed `A` chunk takes about `a_block_bytes` (the tests make both small).
#[cfg(target_arch = "x86_64")]
fn gemm_amx_with(
    a: &[f32],
    m: usize,
    b: &PackedB,
    c: &mut [f32],
    kc_pairs: usize,
    a_block_bytes: usize,
) -> Result<()> {
    let (k, n, ks) = (b.k, b.n, b.kstride);
    let tile_rows = x86::TILE_ROWS;
    debug_assert!(kc_pairs % TILE_PAIRS == 0 && kc_pairs > 0);
    let kc = ks.min(kc_pairs);
    let threads = rayon::current_num_threads().max(1);
    // One block per thread unless the block's `A` would outgrow L2: each block streams all
    // of `B` once per chunk, so fewer blocks read less of it (measured: 4 blocks per thread
    // ran at 0.8x the speed of 1).
    let by_cache = (a_block_bytes / (kc * 4)).max(1);
    let by_threads = m.div_ceil(threads);
    let block = by_cache.min(by_threads).max(1).div_ceil(AMX_ROWS) * AMX_ROWS;
    c.par_chunks_mut(block * n)
        .zip(a.par_chunks(block * k.max(1)))
        .try_for_each(|(cblock, ablock)| {
            let rows_here = cblock.len() / n;
            let lines = rows_here.div_ceil(tile_rows) * tile_rows * ks / 16;
            let mut held = AMX_A.take();
            if held.len() < lines {
                held.clear();
                held.try_reserve_exact(lines).map_err(|_| {
                    crate::preprocess::limits::oom::<Line>(lines, "bf16 activations")
                })?;
                held.resize(lines, Line([0; 16]));
            }
            let packed: &mut [u32] = bytemuck::cast_slice_mut(&mut held[..lines]);
            let mut row = vec![0u32; ks];
            pack_a_tiles(ablock, k, ks, &mut row, packed);
            amx_block(packed, rows_here, b, kc, cblock);
            AMX_A.set(held);
            Ok(())
        })
}

/// One task of [`gemm_amx`]: `C` rows `cblock` (`rows` rows of `b.n()`) from the block's
/// packed `A`, `k` in chunks of `kc` pairs.
#[cfg(target_arch = "x86_64")]
fn amx_block(ablock: &[u32], rows_here: usize, b: &PackedB, kc: usize, cblock: &mut [f32]) {
    let (n, ks) = (b.n, b.kstride);
    let tile_rows = x86::TILE_ROWS;
    let panels = n.div_ceil(PANEL);
    let tiles = x86::Tiles::configure();
    let mut buf = [0f32; AMX_ROWS * 2 * PANEL];
    for q0 in (0..ks).step_by(kc) {
        let q1 = (q0 + kc).min(ks);
        let accumulate = q0 > 0;
        for p in (0..panels).step_by(2) {
            let two = p + 1 < panels;
            let b0 = &b.padded_panel(p)[q0 * PANEL..q1 * PANEL];
            let b1 = two.then(|| &b.padded_panel(p + 1)[q0 * PANEL..q1 * PANEL]);
            let n0 = p * PANEL;
            let width = if two { 2 * PANEL } else { PANEL };
            for r0 in (0..rows_here).step_by(AMX_ROWS) {
                let rows = AMX_ROWS.min(rows_here - r0);
                let row_tiles = rows.div_ceil(tile_rows);
                let call = x86::AmxCall {
                    a: &ablock[r0 * ks + q0 * tile_rows..],
                    lda: TILE_PAIRS,
                    a_step: TILE_PAIRS * tile_rows,
                    a_tile: tile_rows * ks,
                    row_tiles,
                    pairs: q1 - q0,
                    b0,
                    b1,
                    ldc: n,
                    accumulate,
                };
                if rows == row_tiles * tile_rows && n0 + width <= n {
                    // Whole tiles inside C: straight into (and from) C.
                    x86::amx_tile(&tiles, call, &mut cblock[r0 * n + n0..]);
                } else {
                    let edge = Edge {
                        at: r0 * n + n0,
                        ldc: n,
                        rows,
                        cols: width.min(n - n0),
                        accumulate,
                    };
                    edge.through(cblock, &mut buf, |buf| {
                        let call = x86::AmxCall {
                            ldc: 2 * PANEL,
                            ..call
                        };
                        x86::amx_tile(&tiles, call, buf)
                    });
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Deterministic pseudo-random values in [-3, 3) (xorshift), shared by the kernel tests.
    pub(super) fn values(len: usize, seed: u64) -> Vec<f32> {
        let mut s = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
        (0..len)
            .map(|_| {
                s ^= s << 13;
                s ^= s >> 7;
                s ^= s << 17;
                ((s >> 40) as f32 / (1u64 << 24) as f32 - 0.5) * 6.0
            })
            .collect()
    }

    /// The plain reference: bf16-rounded operands, products summed in f64.
    fn reference(a: &[f32], b: &[f32], m: usize, k: usize, n: usize) -> (Vec<f64>, Vec<f64>) {
        let r = |x: f32| bf16::from_bits(bf16_bits(x)).to_f64();
        let mut c = vec![0f64; m * n];
        let mut mag = vec![0f64; m * n];
        for i in 0..m {
            for j in 0..n {
                for kk in 0..k {
                    let p = r(a[i * k + kk]) * r(b[kk * n + j]);
                    c[i * n + j] += p;
                    mag[i * n + j] += p.abs();
                }
            }
        }
        (c, mag)
    }

    /// Asserts every value of `c` within the kernels' bound of the reference sum `want`
    /// (`k` products whose magnitudes sum to `mag`).
    fn assert_within_bound(c: &[f32], want: &[f64], mag: &[f64], k: usize, what: &str) {
        for i in 0..c.len() {
            let err = (c[i] as f64 - want[i]).abs();
            assert!(
                err <= k as f64 * 6e-8 * mag[i] + 1e-30,
                "{what} [{i}]: {} vs {}",
                c[i],
                want[i]
            );
        }
    }

    /// Odd sizes, tiles and panels with tails, `k` = 1, empty sides, several `k` chunks.
    const SHAPES: [(usize, usize, usize); 18] = [
        (0, 5, 3),
        (3, 0, 4),
        (4, 5, 0),
        (1, 1, 1),
        (13, 17, 1),
        (1, 33, 2),
        (5, 3, 7),
        (12, 32, 64),
        (25, 47, 33),
        (37, 70, 129),
        (11, 16, 16),
        (24, 48, 100),
        (50, 15, 9),
        (7, 100, 301),
        (29, 40, 2 * KC_PAIRS * 2 + 77),
        // Several AMX row blocks and 2 x 2 tiles, with row, column and k tails.
        (100, 70, 64),
        (33, 48, 66),
        (131, 96, 1100),
    ];

    #[test]
    fn every_level_matches_the_scalar_reference_on_odd_shapes() {
        let levels = supported_levels();
        println!("levels: {levels:?} (detected {:?})", detected());
        for (m, n, k) in SHAPES {
            let a = values(m * k, 1 + m as u64);
            let b = values(k * n, 2 + n as u64);
            let (want, mag) = reference(&a, &b, m, k, n);
            let packed = PackedB::from_kn_f32(&b, k, n).unwrap();
            let mut results = Vec::new();
            for &level in &levels {
                let mut c = vec![f32::NAN; m * n];
                gemm_at(level, &a, m, &packed, &mut c).unwrap();
                assert_within_bound(&c, &want, &mag, k, &format!("{level:?} {m}x{n}x{k}"));
                results.push((level, c));
            }
            // The widened-f32 levels follow the scalar order exactly (the bf16 dot-product
            // instructions sum in their own order).
            let scalar = &results[0].1;
            for (level, c) in &results {
                if *level < Isa::Avx512Bf16 {
                    let same = c
                        .iter()
                        .zip(scalar)
                        .all(|(x, y)| x.to_bits() == y.to_bits());
                    assert!(same, "{level:?} {m}x{n}x{k} differs from scalar");
                }
            }
        }
    }

    #[test]
    fn results_do_not_depend_on_the_thread_count() {
        let (m, n, k) = (203, 77, 150);
        let a = values(m * k, 5);
        let w = values(n * k, 6);
        let packed = PackedB::from_nk_f32(&w, n, k).unwrap();
        for level in supported_levels() {
            let run = |threads: usize| {
                let pool = rayon::ThreadPoolBuilder::new()
                    .num_threads(threads)
                    .build()
                    .unwrap();
                let mut c = vec![0f32; m * n];
                pool.install(|| gemm_at(level, &a, m, &packed, &mut c))
                    .unwrap();
                c
            };
            let one = run(1);
            for threads in [2, 3, 7] {
                assert_eq!(one, run(threads), "{level:?}, {threads} threads");
            }
        }
    }

    /// The AMX GEMM in many `k` chunks and row blocks (its defaults make one chunk for the
    /// towers' shapes): each tile's sums go through `C` exactly, so every chunking and
    /// blocking gives the same bits, and they match the reference.
    #[cfg(target_arch = "x86_64")]
    #[test]
    fn amx_chunks_and_row_blocks_give_the_same_bits() {
        if !Isa::Amx.supported() {
            eprintln!(
                "NOT RUN: this CPU (or kernel) has no usable AMX; the AMX GEMM is untested here"
            );
            return;
        }
        for (m, n, k) in [(70, 50, 300), (33, 96, 33), (16, 32, 64), (129, 17, 1)] {
            let a = values(m * k, 31 + m as u64);
            let b = values(k * n, 32 + n as u64);
            let (want, mag) = reference(&a, &b, m, k, n);
            let packed = PackedB::from_kn_f32(&b, k, n).unwrap();
            let mut first: Option<Vec<f32>> = None;
            for (kc, block_bytes) in [(4096, 1 << 20), (16, 1 << 20), (32, 16 * 32 * 4), (16, 1)] {
                let mut c = vec![f32::NAN; m * n];
                gemm_amx_with(&a, m, &packed, &mut c, kc, block_bytes).unwrap();
                assert_within_bound(&c, &want, &mag, k, &format!("{m}x{n}x{k} kc {kc}"));
                match &first {
                    None => first = Some(c),
                    Some(f) => assert!(
                        f.iter().zip(&c).all(|(x, y)| x.to_bits() == y.to_bits()),
                        "{m}x{n}x{k}: kc {kc}, blocks of {block_bytes} bytes differ"
                    ),
                }
            }
        }
    }

    #[test]
    fn packing_layouts_agree() {
        let (n, k) = (37, 19);
        let w = values(n * k, 9);
        let wt: Vec<f32> = (0..k * n).map(|i| w[(i % n) * k + i / n]).collect();
        let wb: Vec<bf16> = w.iter().map(|&x| bf16::from_bits(bf16_bits(x))).collect();
        let from_nk = PackedB::from_nk_f32(&w, n, k).unwrap();
        let from_kn = PackedB::from_kn_f32(&wt, k, n).unwrap();
        let from_bf16 = PackedB::from_nk_bf16(&wb, n, k).unwrap();
        assert_eq!(*from_nk.data, *from_kn.data);
        assert_eq!(*from_nk.data, *from_bf16.data);
        for kk in 0..k {
            for nn in 0..n {
                assert_eq!(from_nk.get(kk, nn), wb[nn * k + kk]);
            }
        }
        // Side by side equals packing the concatenated matrix.
        let (w1, w2) = (values(5 * k, 10), values(20 * k, 11));
        let both: Vec<f32> = w1.iter().chain(&w2).copied().collect();
        let parts = [
            &PackedB::from_nk_f32(&w1, 5, k).unwrap(),
            &PackedB::from_nk_f32(&w2, 20, k).unwrap(),
        ];
        let cat = PackedB::concat(&parts).unwrap();
        assert_eq!(*cat.data, *PackedB::from_nk_f32(&both, 25, k).unwrap().data);
        // Read a panel's rows at a time: the same packing, and read errors come back.
        let rows = PackedB::from_nk_rows(
            n,
            k,
            |n0, out: &mut [bf16]| {
                out.copy_from_slice(&wb[n0 * k..][..out.len()]);
                Ok(())
            },
            |v| v.to_bits(),
        )
        .unwrap();
        assert_eq!(*from_nk.data, *rows.data);
        let failing = PackedB::from_nk_rows(
            n,
            k,
            |n0, _: &mut [bf16]| match n0 {
                32 => Err(crate::error::Error::compute("read failed")),
                _ => Ok(()),
            },
            |v| v.to_bits(),
        );
        assert!(failing.unwrap_err().message().contains("read failed"));
        let short = PackedB::from_nk_f32(&values(5 * (k - 1), 12), 5, k - 1).unwrap();
        assert!(PackedB::concat(&[&from_nk, &short]).is_err());
    }

    #[test]
    fn rounding_is_round_to_nearest_even_like_pytorch() {
        for x in [
            1.0f32,
            1.0 + 1.0 / 256.0,
            1.0 + 3.0 / 256.0,
            -3.3,
            65504.0,
            1e-40,
            f32::MAX,
            -0.0,
        ] {
            assert_eq!(bf16_bits(x), bf16::from_f32(x).to_bits(), "{x}");
        }
        // Ties go to even: 1 + 2^-8 is halfway between 1 and 1 + 2^-7.
        assert_eq!(bf16_bits(1.0 + 1.0 / 256.0), bf16::from_f32(1.0).to_bits());
        assert!(bf16::from_bits(bf16_bits(f32::NAN)).is_nan());
        assert_eq!(bf16_bits(f32::INFINITY), 0x7f80);
    }

    #[test]
    fn widened_slots_are_the_rounded_pairs_swapped() {
        let mut x = values(53, 21);
        x.extend([
            f32::NAN,
            -f32::NAN,
            f32::INFINITY,
            1.0 + 1.0 / 256.0,
            -0.0,
            1e-40,
            f32::MAX,
        ]);
        for len in [0, 1, 2, 7, 8, 9, 16, 17, x.len()] {
            let x = &x[..len];
            let mut got = vec![7u32; 2 * len.div_ceil(2)];
            bf16_wide(x, &mut got);
            let mut pairs = vec![0u32; len.div_ceil(2)];
            bf16_pairs(x, &mut pairs);
            for (q, &p) in pairs.iter().enumerate() {
                assert_eq!(got[2 * q], p & 0xffff_0000, "len {len} pair {q} odd");
                assert_eq!(got[2 * q + 1], p << 16, "len {len} pair {q} even");
            }
        }
    }

    #[test]
    fn level_names_parse() {
        for level in Isa::ALL {
            assert_eq!(Isa::parse(level.name()), Some(level));
        }
        assert_eq!(Isa::parse(" AVX512BF16 "), Some(Isa::Avx512Bf16));
        assert_eq!(Isa::parse("amx"), Some(Isa::Amx));
        assert_eq!(Isa::parse("amx-int8"), None);
        assert!(Isa::Scalar.supported());
        assert!(isa() <= detected());
    }
}
