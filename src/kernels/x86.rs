//! The x86-64 micro-kernels: `rows × 16·panels` tiles of `A · B` over the whole `k`, with
//! `B` packed in panels and `A` read at any row and slot stride (a packed tile or row-major
//! rows), both as bf16 pairs or f32 (see `mod.rs`). One function per level and element type;
//! the number of rows is a const parameter so that the accumulators stay in registers.
//!
//! The AMX part (`Tiles`, `amx_tile`) is inline assembly: tile configuration, tile loads
//! and stores, `tdpbf16ps`; the tile registers are never touched by compiled code, so they
//! keep their contents from one `asm!` block to the next on the same thread.
//!
//! The AVX-512 intrinsics are stable since Rust 1.89 (the crate's declared `rust-version` is
//! older; the toolchain used is 1.95).
#![allow(clippy::incompatible_msrv)]

use std::arch::asm;
use std::arch::x86_64::*;
use std::marker::PhantomData;

use super::{Call, Elem, Isa, PANEL, TILE_PAIRS};

/// Calls `$f::<R, TWO>` for the run-time `rows` (1..=12) and `two`.
macro_rules! by_shape {
    ($f:ident, $rows:expr, $two:expr, $($arg:expr),*) => {
        match ($rows, $two) {
            (1, false) => $f::<1, false>($($arg),*),
            (2, false) => $f::<2, false>($($arg),*),
            (3, false) => $f::<3, false>($($arg),*),
            (4, false) => $f::<4, false>($($arg),*),
            (5, false) => $f::<5, false>($($arg),*),
            (6, false) => $f::<6, false>($($arg),*),
            (7, false) => $f::<7, false>($($arg),*),
            (8, false) => $f::<8, false>($($arg),*),
            (9, false) => $f::<9, false>($($arg),*),
            (10, false) => $f::<10, false>($($arg),*),
            (11, false) => $f::<11, false>($($arg),*),
            (12, false) => $f::<12, false>($($arg),*),
            (1, true) => $f::<1, true>($($arg),*),
            (2, true) => $f::<2, true>($($arg),*),
            (3, true) => $f::<3, true>($($arg),*),
            (4, true) => $f::<4, true>($($arg),*),
            (5, true) => $f::<5, true>($($arg),*),
            (6, true) => $f::<6, true>($($arg),*),
            (7, true) => $f::<7, true>($($arg),*),
            (8, true) => $f::<8, true>($($arg),*),
            (9, true) => $f::<9, true>($($arg),*),
            (10, true) => $f::<10, true>($($arg),*),
            (11, true) => $f::<11, true>($($arg),*),
            (12, true) => $f::<12, true>($($arg),*),
            _ => unreachable!("micro-kernel rows out of range"),
        }
    };
}

/// One micro-kernel call (see `super::Call`): `out[r][0..16·panels] (+)= Σ_q a(r, q) ·
/// b_panels[q]` for `call.rows` rows, in bf16 pairs or f32 as `call.elem` says.
pub(super) fn tile(isa: Isa, call: Call<'_>, out: &mut [f32]) {
    let (elem, rows, slots, ldc, accumulate) =
        (call.elem, call.rows, call.slots, call.ldc, call.accumulate);
    let (a, b0, b1) = (call.a, call.b0, call.b1);
    // Every pointer access below stays inside these bounds (`Call::check`: the last element
    // of A, of each panel and of out are inside their slices).
    call.check(isa, out.len());
    assert!(
        isa.supported(),
        "micro-kernel level {isa:?} not supported by this CPU"
    );
    let (rs, ks) = (a.row_stride, a.slot_stride);
    let (a, b0p, out) = (a.data.as_ptr(), b0.as_ptr(), out.as_mut_ptr());
    let b1p = b1.map_or(b0p, |b| b.as_ptr());
    let two = b1.is_some();
    match (isa, elem) {
        // SAFETY: every x86 level here has AVX2 and FMA (`isa.supported()`, asserted);
        // `call.check` bounds every read (A at `r·rs + s·ks` for `s < 2·slots`, `slots × 16`
        // per panel) and write (`rows` ≤ 6 rows of 16 or 32 at stride `ldc`); the second
        // panel's 16 columns start at +16.
        (_, Elem::Bf16Wide) => unsafe {
            by_shape!(
                avx2_wide_tile,
                rows,
                false,
                a,
                rs,
                ks,
                slots,
                b0p,
                out,
                ldc,
                accumulate
            );
            if two {
                by_shape!(
                    avx2_wide_tile,
                    rows,
                    false,
                    a,
                    rs,
                    ks,
                    slots,
                    b1p,
                    out.add(PANEL),
                    ldc,
                    accumulate
                );
            }
        },
        // SAFETY: the CPU has AVX-512F and AVX512-BF16 (`isa.supported()`, asserted), and
        // `call.check` bounds every read (A at `r·rs + q·ks`, `slots × 16` per panel) and
        // write (`rows` rows of 16 or 32 at stride `ldc`).
        (Isa::Avx512Bf16, Elem::Bf16) => unsafe {
            by_shape!(bf16_tile, rows, two, a, rs, ks, slots, b0p, b1p, out, ldc, accumulate)
        },
        // SAFETY: as above, with AVX-512F.
        (Isa::Avx512, Elem::Bf16) => unsafe {
            by_shape!(
                avx512_tile,
                rows,
                two,
                a,
                rs,
                ks,
                slots,
                b0p,
                b1p,
                out,
                ldc,
                accumulate
            )
        },
        // SAFETY: as above, with AVX-512F (both AVX-512 levels have it).
        (Isa::Avx512Bf16 | Isa::Avx512, Elem::F32) => unsafe {
            by_shape!(
                avx512_f32_tile,
                rows,
                two,
                a,
                rs,
                ks,
                slots,
                b0p,
                b1p,
                out,
                ldc,
                accumulate
            )
        },
        (Isa::Avx2, _) => {
            // SAFETY: as above, with AVX2 and FMA; each call covers one panel and 16
            // columns of out (the second panel's start at +16), rows ≤ 6 (f32) or 4 (pairs).
            unsafe {
                let f = |b: *const u32, out: *mut f32| match elem {
                    Elem::Bf16Wide => unreachable!("widened A is matched above"),
                    Elem::Bf16 => {
                        by_shape!(avx2_tile, rows, false, a, rs, ks, slots, b, out, ldc, accumulate)
                    }
                    Elem::F32 => by_shape!(
                        avx2_f32_tile,
                        rows,
                        false,
                        a,
                        rs,
                        ks,
                        slots,
                        b,
                        out,
                        ldc,
                        accumulate
                    ),
                };
                f(b0p, out);
                if two {
                    f(b1p, out.add(PANEL));
                }
            }
        }
        (Isa::Scalar | Isa::Amx, _) => {
            unreachable!("the scalar and AMX levels have no micro-kernel here")
        }
    }
}

/// The accumulators of an AVX-512 tile of `R` rows × 16 (32 when `TWO`) columns: what `out`
/// holds when `accumulate`, else zeros (the second panel's zeros when not `TWO`).
///
/// # Safety
/// AVX-512F; `out` readable for 16 (32 when `TWO`) f32 at `r·ldc`, `r < R`.
#[inline]
#[target_feature(enable = "avx512f")]
unsafe fn avx512_rows_load<const R: usize, const TWO: bool>(
    out: *const f32,
    ldc: usize,
    accumulate: bool,
) -> ([__m512; R], [__m512; R]) {
    let mut acc0 = [_mm512_setzero_ps(); R];
    let mut acc1 = [_mm512_setzero_ps(); R];
    if accumulate {
        for r in 0..R {
            // SAFETY: row r of out has 16 (32 when TWO) f32 at r·ldc.
            unsafe {
                acc0[r] = _mm512_loadu_ps(out.add(r * ldc));
                if TWO {
                    acc1[r] = _mm512_loadu_ps(out.add(r * ldc + PANEL));
                }
            }
        }
    }
    (acc0, acc1)
}

/// Stores the accumulators of [`avx512_rows_load`] back (`acc1` only when `TWO`).
///
/// # Safety
/// AVX-512F; `out` writable for 16 (32 when `TWO`) f32 at `r·ldc`, `r < R`.
#[inline]
#[target_feature(enable = "avx512f")]
unsafe fn avx512_rows_store<const R: usize, const TWO: bool>(
    out: *mut f32,
    ldc: usize,
    acc0: &[__m512; R],
    acc1: &[__m512; R],
) {
    for r in 0..R {
        // SAFETY: row r of out has 16 (32 when TWO) f32 at r·ldc.
        unsafe {
            _mm512_storeu_ps(out.add(r * ldc), acc0[r]);
            if TWO {
                _mm512_storeu_ps(out.add(r * ldc + PANEL), acc1[r]);
            }
        }
    }
}

/// AVX512-BF16: one `vdpbf16ps` per 16 columns, row and pair of `k`.
///
/// # Safety
/// AVX-512F and AVX512-BF16; `a` readable at `r·rs + q·ks` for `r < R`, `q < kp`; `b0` (and
/// `b1` when `TWO`) for `kp × 16`; `out` writable for 16 (32 when `TWO`) f32 at `r·ldc`.
#[allow(clippy::too_many_arguments)]
#[target_feature(enable = "avx512f,avx512bf16")]
unsafe fn bf16_tile<const R: usize, const TWO: bool>(
    a: *const u32,
    rs: usize,
    ks: usize,
    kp: usize,
    b0: *const u32,
    b1: *const u32,
    out: *mut f32,
    ldc: usize,
    accumulate: bool,
) {
    // SAFETY: row r < R of out has 16 (32 when TWO) f32 at r·ldc (the caller's contract).
    let (mut acc0, mut acc1) = unsafe { avx512_rows_load::<R, TWO>(out, ldc, accumulate) };
    for q in 0..kp {
        // SAFETY: q < kp: inside each panel's kp × 16 pairs.
        let (v0, v1) = unsafe {
            let v0 = std::mem::transmute::<__m512i, __m512bh>(_mm512_loadu_si512(
                b0.add(q * PANEL).cast(),
            ));
            let v1: __m512bh = if TWO {
                std::mem::transmute::<__m512i, __m512bh>(_mm512_loadu_si512(
                    b1.add(q * PANEL).cast(),
                ))
            } else {
                v0
            };
            (v0, v1)
        };
        for r in 0..R {
            // SAFETY: r < R, q < kp: inside A (see the contract); the transmute reinterprets 16 lanes of
            // i32 as 32 lanes of bf16 (same size, any bits valid).
            let av = unsafe {
                std::mem::transmute::<__m512i, __m512bh>(_mm512_set1_epi32(
                    *a.add(q * ks + r * rs) as i32
                ))
            };
            acc0[r] = _mm512_dpbf16_ps(acc0[r], av, v0);
            if TWO {
                acc1[r] = _mm512_dpbf16_ps(acc1[r], av, v1);
            }
        }
    }
    // SAFETY: as for the load.
    unsafe { avx512_rows_store::<R, TWO>(out, ldc, &acc0, &acc1) };
}

/// AVX-512F: bf16 widened to f32 (a shift or a mask), two FMAs per pair (odd `k` first,
/// `vdpbf16ps`'s order).
///
/// # Safety
/// AVX-512F; bounds as [`bf16_tile`].
#[allow(clippy::too_many_arguments)]
#[target_feature(enable = "avx512f")]
unsafe fn avx512_tile<const R: usize, const TWO: bool>(
    a: *const u32,
    rs: usize,
    ks: usize,
    kp: usize,
    b0: *const u32,
    b1: *const u32,
    out: *mut f32,
    ldc: usize,
    accumulate: bool,
) {
    let high = _mm512_set1_epi32(0xffff_0000u32 as i32);
    // SAFETY: row r < R of out has 16 (32 when TWO) f32 at r·ldc (the caller's contract).
    let (mut acc0, mut acc1) = unsafe { avx512_rows_load::<R, TWO>(out, ldc, accumulate) };
    for q in 0..kp {
        // SAFETY: q < kp: inside each panel's kp × 16 pairs.
        let (v0, v1) = unsafe {
            let v0 = _mm512_loadu_si512(b0.add(q * PANEL).cast());
            let v1 = if TWO {
                _mm512_loadu_si512(b1.add(q * PANEL).cast())
            } else {
                v0
            };
            (v0, v1)
        };
        let b0h = _mm512_castsi512_ps(_mm512_and_si512(v0, high));
        let b0l = _mm512_castsi512_ps(_mm512_slli_epi32::<16>(v0));
        let b1h = _mm512_castsi512_ps(_mm512_and_si512(v1, high));
        let b1l = _mm512_castsi512_ps(_mm512_slli_epi32::<16>(v1));
        for r in 0..R {
            // SAFETY: r < R, q < kp: inside A (see the contract).
            let p = unsafe { *a.add(q * ks + r * rs) };
            let ah = _mm512_set1_ps(f32::from_bits(p & 0xffff_0000));
            let al = _mm512_set1_ps(f32::from_bits(p << 16));
            acc0[r] = _mm512_fmadd_ps(al, b0l, _mm512_fmadd_ps(ah, b0h, acc0[r]));
            if TWO {
                acc1[r] = _mm512_fmadd_ps(al, b1l, _mm512_fmadd_ps(ah, b1h, acc1[r]));
            }
        }
    }
    // SAFETY: as for the load.
    unsafe { avx512_rows_store::<R, TWO>(out, ldc, &acc0, &acc1) };
}

/// The accumulators of an AVX2 tile of `R` rows × 16 columns: what `out` holds when
/// `accumulate`, else zeros.
///
/// # Safety
/// AVX; `out` readable for 16 f32 at `r·ldc`, `r < R`.
#[inline]
#[target_feature(enable = "avx2,fma")]
unsafe fn avx2_rows_load<const R: usize>(
    out: *const f32,
    ldc: usize,
    accumulate: bool,
) -> ([__m256; R], [__m256; R]) {
    let mut acc0 = [_mm256_setzero_ps(); R];
    let mut acc1 = [_mm256_setzero_ps(); R];
    if accumulate {
        for r in 0..R {
            // SAFETY: row r of out has 16 f32 at r·ldc.
            unsafe {
                acc0[r] = _mm256_loadu_ps(out.add(r * ldc));
                acc1[r] = _mm256_loadu_ps(out.add(r * ldc + 8));
            }
        }
    }
    (acc0, acc1)
}

/// Stores the accumulators of [`avx2_rows_load`] back.
///
/// # Safety
/// AVX; `out` writable for 16 f32 at `r·ldc`, `r < R`.
#[inline]
#[target_feature(enable = "avx2,fma")]
unsafe fn avx2_rows_store<const R: usize>(
    out: *mut f32,
    ldc: usize,
    acc0: &[__m256; R],
    acc1: &[__m256; R],
) {
    for r in 0..R {
        // SAFETY: row r of out has 16 f32 at r·ldc.
        unsafe {
            _mm256_storeu_ps(out.add(r * ldc), acc0[r]);
            _mm256_storeu_ps(out.add(r * ldc + 8), acc1[r]);
        }
    }
}

/// AVX2 + FMA: one panel (two registers of 8 columns), bf16 widened to f32, odd `k` first.
///
/// # Safety
/// AVX2 and FMA; `a` readable at `r·rs + q·ks` for `r < R`, `q < kp`; `b` for `kp × 16`;
/// `out` writable for 16 f32 at `r·ldc`.
#[allow(clippy::too_many_arguments)]
#[target_feature(enable = "avx2,fma")]
unsafe fn avx2_tile<const R: usize, const TWO: bool>(
    a: *const u32,
    rs: usize,
    ks: usize,
    kp: usize,
    b: *const u32,
    out: *mut f32,
    ldc: usize,
    accumulate: bool,
) {
    let high = _mm256_set1_epi32(0xffff_0000u32 as i32);
    // SAFETY: row r < R of out has 16 f32 at r·ldc (the caller's contract).
    let (mut acc0, mut acc1) = unsafe { avx2_rows_load::<R>(out, ldc, accumulate) };
    for q in 0..kp {
        // SAFETY: q < kp: inside the panel's kp × 16 pairs.
        let (v0, v1) = unsafe {
            (
                _mm256_loadu_si256(b.add(q * PANEL).cast()),
                _mm256_loadu_si256(b.add(q * PANEL + 8).cast()),
            )
        };
        let b0h = _mm256_castsi256_ps(_mm256_and_si256(v0, high));
        let b0l = _mm256_castsi256_ps(_mm256_slli_epi32::<16>(v0));
        let b1h = _mm256_castsi256_ps(_mm256_and_si256(v1, high));
        let b1l = _mm256_castsi256_ps(_mm256_slli_epi32::<16>(v1));
        for r in 0..R {
            // SAFETY: r < R, q < kp: inside A (see the contract).
            let p = unsafe { *a.add(q * ks + r * rs) };
            let ah = _mm256_set1_ps(f32::from_bits(p & 0xffff_0000));
            let al = _mm256_set1_ps(f32::from_bits(p << 16));
            acc0[r] = _mm256_fmadd_ps(al, b0l, _mm256_fmadd_ps(ah, b0h, acc0[r]));
            acc1[r] = _mm256_fmadd_ps(al, b1l, _mm256_fmadd_ps(ah, b1h, acc1[r]));
        }
    }
    // SAFETY: as for the load.
    unsafe { avx2_rows_store::<R>(out, ldc, &acc0, &acc1) };
}

/// AVX2 + FMA, `A` widened ([`Elem::Bf16Wide`]): one panel (two registers of 8 columns),
/// `B`'s pairs split into their odd and even halves in registers (one `and`, one shift per 8
/// columns), `A`'s values broadcast from memory; 6 rows fill the 16 registers (12
/// accumulators, 2 of `B`, 1 of `A`, the mask).
///
/// # Safety
/// AVX2 and FMA; `a` readable at `r·rs + s·ks` for `r < R`, `s < 2·kp`; `b` for `kp × 16`;
/// `out` writable for 16 f32 at `r·ldc`.
#[allow(clippy::too_many_arguments)]
#[target_feature(enable = "avx2,fma")]
unsafe fn avx2_wide_tile<const R: usize, const TWO: bool>(
    a: *const u32,
    rs: usize,
    ks: usize,
    kp: usize,
    b: *const u32,
    out: *mut f32,
    ldc: usize,
    accumulate: bool,
) {
    let high = _mm256_set1_epi32(0xffff_0000u32 as i32);
    // SAFETY: row r < R of out has 16 f32 at r·ldc (the caller's contract).
    let (mut acc0, mut acc1) = unsafe { avx2_rows_load::<R>(out, ldc, accumulate) };
    let a = a.cast::<f32>();
    if R == 6 && ks == 1 {
        let mut acc = [[_mm256_setzero_ps(); 2]; 6];
        for r in 0..6 {
            acc[r] = [acc0[r], acc1[r]];
        }
        // SAFETY: as this function's contract, with R = 6 and ks = 1.
        unsafe { avx2_wide_6(a, rs, kp, b, high, &mut acc) };
        for r in 0..6 {
            [acc0[r], acc1[r]] = acc[r];
        }
    } else {
        for q in 0..kp {
            // SAFETY: as in the loop below.
            unsafe { avx2_wide_step::<R>(a, rs, ks, q, b, high, &mut acc0, &mut acc1) };
        }
    }
    // SAFETY: as for the load.
    unsafe { avx2_rows_store::<R>(out, ldc, &acc0, &acc1) };
}

/// The inner loop of [`avx2_wide_tile`] for 6 rows of `A` at slot stride 1, as assembly:
/// compiled code spilled and shuffled the 16 live registers (12 accumulators, 2 of `B`, 1
/// of `A`, the mask). Per pair: `B`'s odd halves (`vpand`), 6 broadcasts of the odd `k`'s
/// `A` values, 12 FMAs; then the even halves (`vpslld`), the even `k`'s values, 12 FMAs.
///
/// # Safety
/// AVX2 and FMA; `kp` ≥ 1; `a` readable at `r·rs + s` for `r < 6`, `s < 2·kp`; `b` for
/// `kp × 16` slots.
#[target_feature(enable = "avx2,fma")]
unsafe fn avx2_wide_6(
    a: *const f32,
    rs: usize,
    kp: usize,
    b: *const u32,
    high: __m256i,
    acc: &mut [[__m256; 2]; 6],
) {
    let [[mut c0, mut c1], [mut c2, mut c3], [mut c4, mut c5], [mut c6, mut c7], [mut c8, mut c9], [mut c10, mut c11]] =
        *acc;
    // SAFETY: every load is inside A's rows (`a`, `a + rs`, `a + 2·rs` and from `a + 3·rs`,
    // slots `2q`, `2q + 1` for q < kp) or B's kp × 16 slots (64 bytes a pair); kp ≥ 1, so
    // the loop (a count down to zero) runs kp times; nothing is written to memory.
    unsafe {
        asm!(
            "2:",
            "vpand ymm13, ymm12, ymmword ptr [{b}]",
            "vpand ymm14, ymm12, ymmword ptr [{b} + 32]",
            "vbroadcastss ymm15, dword ptr [{a0}]",
            "vfmadd231ps ymm0, ymm15, ymm13",
            "vfmadd231ps ymm1, ymm15, ymm14",
            "vbroadcastss ymm15, dword ptr [{a0} + {rs}]",
            "vfmadd231ps ymm2, ymm15, ymm13",
            "vfmadd231ps ymm3, ymm15, ymm14",
            "vbroadcastss ymm15, dword ptr [{a0} + 2*{rs}]",
            "vfmadd231ps ymm4, ymm15, ymm13",
            "vfmadd231ps ymm5, ymm15, ymm14",
            "vbroadcastss ymm15, dword ptr [{a3}]",
            "vfmadd231ps ymm6, ymm15, ymm13",
            "vfmadd231ps ymm7, ymm15, ymm14",
            "vbroadcastss ymm15, dword ptr [{a3} + {rs}]",
            "vfmadd231ps ymm8, ymm15, ymm13",
            "vfmadd231ps ymm9, ymm15, ymm14",
            "vbroadcastss ymm15, dword ptr [{a3} + 2*{rs}]",
            "vfmadd231ps ymm10, ymm15, ymm13",
            "vfmadd231ps ymm11, ymm15, ymm14",
            "vmovdqu ymm13, ymmword ptr [{b}]",
            "vpslld ymm13, ymm13, 16",
            "vmovdqu ymm14, ymmword ptr [{b} + 32]",
            "vpslld ymm14, ymm14, 16",
            "vbroadcastss ymm15, dword ptr [{a0} + 4]",
            "vfmadd231ps ymm0, ymm15, ymm13",
            "vfmadd231ps ymm1, ymm15, ymm14",
            "vbroadcastss ymm15, dword ptr [{a0} + {rs} + 4]",
            "vfmadd231ps ymm2, ymm15, ymm13",
            "vfmadd231ps ymm3, ymm15, ymm14",
            "vbroadcastss ymm15, dword ptr [{a0} + 2*{rs} + 4]",
            "vfmadd231ps ymm4, ymm15, ymm13",
            "vfmadd231ps ymm5, ymm15, ymm14",
            "vbroadcastss ymm15, dword ptr [{a3} + 4]",
            "vfmadd231ps ymm6, ymm15, ymm13",
            "vfmadd231ps ymm7, ymm15, ymm14",
            "vbroadcastss ymm15, dword ptr [{a3} + {rs} + 4]",
            "vfmadd231ps ymm8, ymm15, ymm13",
            "vfmadd231ps ymm9, ymm15, ymm14",
            "vbroadcastss ymm15, dword ptr [{a3} + 2*{rs} + 4]",
            "vfmadd231ps ymm10, ymm15, ymm13",
            "vfmadd231ps ymm11, ymm15, ymm14",
            "add {b}, 64",
            "add {a0}, 8",
            "add {a3}, 8",
            "dec {n}",
            "jnz 2b",
            b = inout(reg) b => _,
            a0 = inout(reg) a => _,
            a3 = inout(reg) a.add(3 * rs) => _,
            rs = in(reg) rs * 4,
            n = inout(reg) kp => _,
            in("ymm12") high,
            inout("ymm0") c0,
            inout("ymm1") c1,
            inout("ymm2") c2,
            inout("ymm3") c3,
            inout("ymm4") c4,
            inout("ymm5") c5,
            inout("ymm6") c6,
            inout("ymm7") c7,
            inout("ymm8") c8,
            inout("ymm9") c9,
            inout("ymm10") c10,
            inout("ymm11") c11,
            out("ymm13") _,
            out("ymm14") _,
            out("ymm15") _,
            options(nostack, readonly),
        );
    }
    *acc = [[c0, c1], [c2, c3], [c4, c5], [c6, c7], [c8, c9], [c10, c11]];
}

/// One pair of `k` of [`avx2_wide_tile`] in compiled code (the rows other than 6, or a slot
/// stride other than 1).
///
/// # Safety
/// As [`avx2_wide_tile`], for pair `q < kp`.
#[allow(clippy::too_many_arguments)]
#[inline]
#[target_feature(enable = "avx2,fma")]
unsafe fn avx2_wide_step<const R: usize>(
    a: *const f32,
    rs: usize,
    ks: usize,
    q: usize,
    b: *const u32,
    high: __m256i,
    acc0: &mut [__m256; R],
    acc1: &mut [__m256; R],
) {
    // SAFETY: q < kp: inside the panel's kp × 16 pairs; slots 2q and 2q + 1 of rows
    // r < R are inside A (see the contract).
    unsafe {
        let (p0, p1) = (b.add(q * PANEL).cast(), b.add(q * PANEL + 8).cast());
        let b0 = _mm256_castsi256_ps(_mm256_and_si256(_mm256_loadu_si256(p0), high));
        let b1 = _mm256_castsi256_ps(_mm256_and_si256(_mm256_loadu_si256(p1), high));
        for r in 0..R {
            let av = _mm256_broadcast_ss(&*a.add(r * rs + 2 * q * ks));
            acc0[r] = _mm256_fmadd_ps(av, b0, acc0[r]);
            acc1[r] = _mm256_fmadd_ps(av, b1, acc1[r]);
        }
        let b0 = _mm256_castsi256_ps(_mm256_slli_epi32::<16>(_mm256_loadu_si256(p0)));
        let b1 = _mm256_castsi256_ps(_mm256_slli_epi32::<16>(_mm256_loadu_si256(p1)));
        for r in 0..R {
            let av = _mm256_broadcast_ss(&*a.add(r * rs + (2 * q + 1) * ks));
            acc0[r] = _mm256_fmadd_ps(av, b0, acc0[r]);
            acc1[r] = _mm256_fmadd_ps(av, b1, acc1[r]);
        }
    }
}

/// AVX-512F, f32 operands: one FMA per 16 columns, row and `k`.
///
/// # Safety
/// AVX-512F; `a` readable at `r·rs + q·ks` for `r < R`, `q < k`; `b0` (and `b1` when `TWO`)
/// for `k × 16`; `out` writable for 16 (32 when `TWO`) f32 at `r·ldc`.
#[allow(clippy::too_many_arguments)]
#[target_feature(enable = "avx512f")]
unsafe fn avx512_f32_tile<const R: usize, const TWO: bool>(
    a: *const u32,
    rs: usize,
    ks: usize,
    k: usize,
    b0: *const u32,
    b1: *const u32,
    out: *mut f32,
    ldc: usize,
    accumulate: bool,
) {
    // SAFETY: row r < R of out has 16 (32 when TWO) f32 at r·ldc (the caller's contract).
    let (mut acc0, mut acc1) = unsafe { avx512_rows_load::<R, TWO>(out, ldc, accumulate) };
    let (a, b0, b1) = (a.cast::<f32>(), b0.cast::<f32>(), b1.cast::<f32>());
    for q in 0..k {
        // SAFETY: q < k: inside each panel's k × 16 values.
        let (v0, v1) = unsafe {
            let v0 = _mm512_loadu_ps(b0.add(q * PANEL));
            let v1 = if TWO {
                _mm512_loadu_ps(b1.add(q * PANEL))
            } else {
                v0
            };
            (v0, v1)
        };
        for r in 0..R {
            // SAFETY: r < R, q < k: inside A (see the contract).
            let av = _mm512_set1_ps(unsafe { *a.add(q * ks + r * rs) });
            acc0[r] = _mm512_fmadd_ps(av, v0, acc0[r]);
            if TWO {
                acc1[r] = _mm512_fmadd_ps(av, v1, acc1[r]);
            }
        }
    }
    // SAFETY: as for the load.
    unsafe { avx512_rows_store::<R, TWO>(out, ldc, &acc0, &acc1) };
}

/// AVX2 + FMA, f32 operands: one panel (two registers of 8 columns).
///
/// # Safety
/// AVX2 and FMA; `a` readable at `r·rs + q·ks` for `r < R`, `q < k`; `b` for `k × 16`;
/// `out` writable for 16 f32 at `r·ldc`.
#[allow(clippy::too_many_arguments)]
#[target_feature(enable = "avx2,fma")]
unsafe fn avx2_f32_tile<const R: usize, const TWO: bool>(
    a: *const u32,
    rs: usize,
    ks: usize,
    k: usize,
    b: *const u32,
    out: *mut f32,
    ldc: usize,
    accumulate: bool,
) {
    // SAFETY: row r < R of out has 16 f32 at r·ldc (the caller's contract).
    let (mut acc0, mut acc1) = unsafe { avx2_rows_load::<R>(out, ldc, accumulate) };
    let (a, b) = (a.cast::<f32>(), b.cast::<f32>());
    for q in 0..k {
        // SAFETY: q < k: inside the panel's k × 16 values.
        let (v0, v1) = unsafe {
            (
                _mm256_loadu_ps(b.add(q * PANEL)),
                _mm256_loadu_ps(b.add(q * PANEL + 8)),
            )
        };
        for r in 0..R {
            // SAFETY: r < R, q < k: inside A (see the contract).
            let av = _mm256_set1_ps(unsafe { *a.add(q * ks + r * rs) });
            acc0[r] = _mm256_fmadd_ps(av, v0, acc0[r]);
            acc1[r] = _mm256_fmadd_ps(av, v1, acc1[r]);
        }
    }
    // SAFETY: as for the load.
    unsafe { avx2_rows_store::<R>(out, ldc, &acc0, &acc1) };
}

/// Rows of an AMX tile (every tile is configured 16 rows × 64 bytes).
pub(super) const TILE_ROWS: usize = 16;

/// Whether the AMX level can run: the CPU has AMX-TILE and AMX-BF16 and Linux granted this
/// process the tile data state (`arch_prctl(ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA)`,
/// asked once; a kernel without AMX support refuses it).
pub(super) fn amx_usable() -> bool {
    static USABLE: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *USABLE.get_or_init(|| {
        // CPUID leaf 7 sub-leaf 0, EDX: bit 22 AMX-BF16, bit 24 AMX-TILE.
        let leaf7 = __cpuid_count(7, 0);
        let cpu = leaf7.edx & (1 << 22) != 0 && leaf7.edx & (1 << 24) != 0;
        cpu && request_tile_permission()
    })
}

#[cfg(target_os = "linux")]
fn request_tile_permission() -> bool {
    const ARCH_REQ_XCOMP_PERM: libc::c_long = 0x1023;
    const XFEATURE_XTILEDATA: libc::c_long = 18;
    // SAFETY: arch_prctl with ARCH_REQ_XCOMP_PERM takes two integers and touches no memory
    // of ours; it fails (non-zero) where the kernel does not support the feature.
    unsafe {
        libc::syscall(
            libc::SYS_arch_prctl,
            ARCH_REQ_XCOMP_PERM,
            XFEATURE_XTILEDATA,
        ) == 0
    }
}

#[cfg(not(target_os = "linux"))]
fn request_tile_permission() -> bool {
    false
}

/// The tile configuration (palette 1): eight tiles of 16 rows × 64 bytes.
#[repr(C, align(64))]
struct TileConfig([u8; 64]);

impl TileConfig {
    fn all_full() -> TileConfig {
        let mut c = [0u8; 64];
        c[0] = 1;
        for t in 0..8 {
            c[16 + 2 * t..18 + 2 * t].copy_from_slice(&64u16.to_le_bytes());
            c[48 + t] = TILE_ROWS as u8;
        }
        TileConfig(c)
    }
}

/// Proof that this thread's tile configuration is loaded: made by [`Tiles::configure`], the
/// configuration released when dropped. Not `Send`: the configuration belongs to the thread.
pub(super) struct Tiles {
    _thread: PhantomData<*const ()>,
}

impl Tiles {
    /// Loads the tile configuration on this thread. Panics unless [`amx_usable`].
    pub(super) fn configure() -> Tiles {
        assert!(amx_usable(), "AMX is not usable in this process");
        let cfg = TileConfig::all_full();
        // SAFETY: the CPU has AMX-TILE and the OS granted the tile state (`amx_usable`);
        // `ldtilecfg` reads the 64 bytes of `cfg`, a valid palette-1 configuration.
        unsafe {
            asm!("ldtilecfg [{}]", in(reg) cfg.0.as_ptr(), options(nostack, readonly, preserves_flags));
        }
        Tiles {
            _thread: PhantomData,
        }
    }
}

impl Drop for Tiles {
    fn drop(&mut self) {
        // SAFETY: AMX is usable (a `Tiles` exists); `tilerelease` returns the tile state to
        // its initial state and touches no memory.
        unsafe {
            asm!("tilerelease", options(nostack, nomem, preserves_flags));
        }
    }
}

/// One AMX kernel call: `C[r][0..16·panels] (+)= Σ_q A[r][q] · B_panel[q]` for
/// `16 · row_tiles` rows (`row_tiles` 1 or 2) and `pairs` pairs of `k` (a multiple of 16),
/// one or two panels of `B` (`[pairs][PANEL]` each), `C` rows `ldc` apart. `A` holds bf16
/// pairs; the tile of rows `16 t ..` and pairs `16 s ..` starts at slot
/// `t · a_tile + s · a_step`, its rows `lda` slots apart: row-major `A` is `a_step` = 16,
/// `a_tile` = 16 · `lda`; `A` packed tile by tile is `lda` = 16, `a_step` = 256.
#[derive(Clone, Copy)]
pub(super) struct AmxCall<'a> {
    pub a: &'a [u32],
    pub lda: usize,
    pub a_step: usize,
    pub a_tile: usize,
    pub row_tiles: usize,
    pub pairs: usize,
    pub b0: &'a [u32],
    pub b1: Option<&'a [u32]>,
    pub ldc: usize,
    pub accumulate: bool,
}

/// Loads tile `T` from `rows` of 64 bytes at `p`, `stride` bytes apart.
///
/// # Safety
/// AMX configured on this thread (16 rows × 64 bytes); 16 rows of 64 bytes readable.
#[inline(always)]
unsafe fn tile_load<const T: usize>(p: *const u32, stride: usize) {
    // SAFETY: the caller's contract.
    unsafe {
        asm!("tileloadd tmm{t}, [{p} + {s} * 1]", t = const T, p = in(reg) p, s = in(reg) stride,
             options(nostack, readonly, preserves_flags));
    }
}

/// Stores tile `T` to 16 rows of 64 bytes at `p`, `stride` bytes apart.
///
/// # Safety
/// AMX configured on this thread; 16 rows of 64 bytes writable.
#[inline(always)]
unsafe fn tile_store<const T: usize>(p: *mut f32, stride: usize) {
    // SAFETY: the caller's contract.
    unsafe {
        asm!("tilestored [{p} + {s} * 1], tmm{t}", t = const T, p = in(reg) p, s = in(reg) stride,
             options(nostack, preserves_flags));
    }
}

/// Zeroes tile `T`.
///
/// # Safety
/// AMX configured on this thread.
#[inline(always)]
unsafe fn tile_zero<const T: usize>() {
    // SAFETY: the caller's contract.
    unsafe {
        asm!("tilezero tmm{t}", t = const T, options(nostack, nomem, preserves_flags));
    }
}

/// `tmm C += tmm A · tmm B` in bf16 pairs with f32 accumulation.
///
/// # Safety
/// AMX configured on this thread.
#[inline(always)]
unsafe fn tile_dot<const C: usize, const A: usize, const B: usize>() {
    // SAFETY: the caller's contract.
    unsafe {
        asm!("tdpbf16ps tmm{c}, tmm{a}, tmm{b}", c = const C, a = const A, b = const B,
             options(nostack, nomem, preserves_flags));
    }
}

/// Runs one [`AmxCall`] on this thread's tiles, writing `out` at rows `call.ldc` apart.
/// Panics unless every element read and written is inside its slice.
pub(super) fn amx_tile(tiles: &Tiles, call: AmxCall<'_>, out: &mut [f32]) {
    let _ = tiles;
    let AmxCall {
        a,
        lda,
        a_step,
        a_tile,
        row_tiles,
        pairs,
        b0,
        b1,
        ldc,
        accumulate,
    } = call;
    let width = if b1.is_some() { 2 * PANEL } else { PANEL };
    let rows = row_tiles * TILE_ROWS;
    assert!(
        (1..=2).contains(&row_tiles) && pairs % TILE_PAIRS == 0 && pairs > 0,
        "AMX kernel shape"
    );
    let a_end =
        (row_tiles - 1) * a_tile + (pairs / TILE_PAIRS - 1) * a_step + (TILE_ROWS - 1) * lda;
    assert!(
        lda >= TILE_PAIRS && a_step >= TILE_PAIRS && a_end + TILE_PAIRS <= a.len(),
        "AMX kernel A"
    );
    assert!(b0.len() >= pairs * PANEL, "AMX kernel B");
    assert!(b1.is_none_or(|b| b.len() >= pairs * PANEL), "AMX kernel B");
    assert!(
        ldc >= width && (rows - 1) * ldc + width <= out.len(),
        "AMX kernel output"
    );
    let (ap, b0p, op) = (a.as_ptr(), b0.as_ptr(), out.as_mut_ptr());
    let b1p = b1.map_or(b0p, |b| b.as_ptr());
    let a = AmxA {
        p: ap,
        lda,
        step: a_step,
        tile: a_tile,
    };
    // SAFETY: `tiles` proves the configuration is loaded on this thread; the asserts above
    // bound every tile: A rows `t · a_tile + s · a_step + r · lda .. + 16` for tiles t <
    // row_tiles, steps s < pairs / 16 and r < 16 (the largest is `a_end`), B rows
    // `s · 16 + j` of each panel, C rows `r · ldc .. + width`.
    unsafe {
        match (row_tiles, b1.is_some()) {
            (1, false) => amx_kernel::<1, 1>(a, b0p, b1p, pairs, op, ldc, accumulate),
            (1, true) => amx_kernel::<1, 2>(a, b0p, b1p, pairs, op, ldc, accumulate),
            (2, false) => amx_kernel::<2, 1>(a, b0p, b1p, pairs, op, ldc, accumulate),
            _ => amx_kernel::<2, 2>(a, b0p, b1p, pairs, op, ldc, accumulate),
        }
    }
}

/// Where [`amx_kernel`] finds `A`'s tiles (see [`AmxCall`]).
#[derive(Clone, Copy)]
struct AmxA {
    p: *const u32,
    lda: usize,
    step: usize,
    tile: usize,
}

/// `MT × NT` tiles of C (tiles 0, 1: rows 0-15; 2, 3: rows 16-31), A in tiles 4 and 5, B in
/// 6 and 7.
///
/// # Safety
/// AMX configured on this thread; A readable for `MT` row tiles of `pairs / 16` steps (see
/// [`AmxA`]);
/// `b0` (and `b1` when `NT` = 2) for `pairs × 16` slots; `out` writable for `16 · MT` rows
/// of `16 · NT` f32 at `ldc`; `pairs` a multiple of 16.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
unsafe fn amx_kernel<const MT: usize, const NT: usize>(
    a: AmxA,
    b0: *const u32,
    b1: *const u32,
    pairs: usize,
    out: *mut f32,
    ldc: usize,
    accumulate: bool,
) {
    let (sa, sc, astep) = (a.lda * 4, ldc * 4, a.step);
    // SAFETY: the caller's contract bounds every pointer below.
    unsafe {
        let c1 = out.add(TILE_ROWS * ldc);
        if accumulate {
            tile_load::<0>(out.cast(), sc);
            if NT == 2 {
                tile_load::<1>(out.add(PANEL).cast(), sc);
            }
            if MT == 2 {
                tile_load::<2>(c1.cast(), sc);
                if NT == 2 {
                    tile_load::<3>(c1.add(PANEL).cast(), sc);
                }
            }
        } else {
            tile_zero::<0>();
            tile_zero::<1>();
            tile_zero::<2>();
            tile_zero::<3>();
        }
        let (a, a1) = (a.p, a.p.add(a.tile));
        if MT == 2 && NT == 2 {
            // Each operand tile of the next step is loaded as soon as this step's last
            // product that reads it is issued, so that the loads overlap the products.
            let sb = PANEL * 4;
            tile_load::<4>(a, sa);
            tile_load::<6>(b0, sb);
            tile_load::<5>(a1, sa);
            tile_load::<7>(b1, sb);
            let mut s = 0;
            loop {
                let next = s + TILE_PAIRS;
                tile_dot::<0, 4, 6>();
                tile_dot::<1, 4, 7>();
                if next == pairs {
                    tile_dot::<2, 5, 6>();
                    tile_dot::<3, 5, 7>();
                    break;
                }
                let at = next / TILE_PAIRS * astep;
                tile_load::<4>(a.add(at), sa);
                tile_dot::<2, 5, 6>();
                tile_load::<6>(b0.add(next * PANEL), sb);
                tile_dot::<3, 5, 7>();
                tile_load::<5>(a1.add(at), sa);
                tile_load::<7>(b1.add(next * PANEL), sb);
                s = next;
            }
        } else {
            for s in (0..pairs).step_by(TILE_PAIRS) {
                let at = s / TILE_PAIRS * astep;
                tile_load::<4>(a.add(at), sa);
                tile_load::<6>(b0.add(s * PANEL), PANEL * 4);
                tile_dot::<0, 4, 6>();
                if MT == 2 {
                    tile_load::<5>(a1.add(at), sa);
                    tile_dot::<2, 5, 6>();
                }
                if NT == 2 {
                    tile_load::<7>(b1.add(s * PANEL), PANEL * 4);
                    tile_dot::<1, 4, 7>();
                    if MT == 2 {
                        tile_dot::<3, 5, 7>();
                    }
                }
            }
        }
        tile_store::<0>(out, sc);
        if NT == 2 {
            tile_store::<1>(out.add(PANEL), sc);
        }
        if MT == 2 {
            tile_store::<2>(c1, sc);
            if NT == 2 {
                tile_store::<3>(c1.add(PANEL), sc);
            }
        }
    }
}

/// One online-softmax step of a row on AVX-512 (the AMX attention's): over the raw scores
/// `row`, the new running maximum `m_new = max(m, scale · max(row))`, `e^(scale·s − m_new)`
/// for every score rounded to bf16 pairs into `pairs` (`ceil(row.len() / 2)` slots, the last
/// one zero-padded), and their sum. Returns `(m_new, sum)`. `exp` within about one f32 ulp
/// of `models::kernels::exp` (see `exp16_scalef`); the bf16 rounding is `vcvtneps2bf16`'s
/// (round to nearest even, subnormal inputs as zero).
pub(super) fn softmax_row_bf16(row: &[f32], scale: f32, m: f32, pairs: &mut [u32]) -> (f32, f32) {
    assert!(
        super::Isa::Avx512Bf16.supported(),
        "softmax_row_bf16 needs AVX512-BF16"
    );
    assert_eq!(
        pairs.len(),
        row.len().div_ceil(2),
        "softmax_row_bf16: pairs"
    );
    // SAFETY: the CPU has AVX-512F/BW/VL and AVX512-BF16 (asserted); every access below is
    // masked to `row.len()` values of `row` and `ceil(row.len() / 2)` slots of `pairs`.
    unsafe { softmax_row_bf16_avx512(row, scale, m, pairs) }
}

/// `e^x` on 16 lanes for the bf16 softmax: `2^n · p(r)` with `n = round(x · log2 e)`,
/// `r = x − n ln 2` (two-part ln 2) and `p` a degree-5 polynomial fitted to `e^r` on
/// `|r| ≤ ln 2 / 2` (relative error 1.1e-7, about one f32 ulp, far below the bf16 rounding
/// that follows), scaled by `vscalefps`, which gives 0 (or a subnormal) for large negative
/// `x` and infinity for large positive `x` without clamps or masks; NaN stays NaN. Ten
/// instructions against [`exp16`]'s eighteen.
#[inline]
#[target_feature(enable = "avx512f")]
fn exp16_scalef(x: __m512) -> __m512 {
    const LN2_HI: f32 = f32::from_bits(0x3f31_7200);
    const LN2_LO: f32 = 1.428_606_8e-6;
    // Round to nearest, exceptions suppressed.
    const NEAREST: i32 = _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC;
    let n =
        _mm512_roundscale_ps::<NEAREST>(_mm512_mul_ps(x, _mm512_set1_ps(std::f32::consts::LOG2_E)));
    let r = _mm512_fnmadd_ps(n, _mm512_set1_ps(LN2_HI), x);
    let r = _mm512_fnmadd_ps(n, _mm512_set1_ps(LN2_LO), r);
    let mut p = _mm512_set1_ps(0.008_261_531);
    for c in [0.041_898_73, 0.166_681_14, 0.499_991_42, 0.999_999_5, 1.0] {
        p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(c));
    }
    _mm512_scalef_ps(p, n)
}

/// See [`softmax_row_bf16`].
///
/// # Safety
/// AVX-512F/BW/VL and AVX512-BF16; `pairs.len() == ceil(row.len() / 2)`.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512bf16")]
unsafe fn softmax_row_bf16_avx512(
    row: &[f32],
    scale: f32,
    m: f32,
    pairs: &mut [u32],
) -> (f32, f32) {
    let n = row.len();
    let full = n / 64 * 64;
    let vs = _mm512_set1_ps(scale);
    let ninf = _mm512_set1_ps(f32::NEG_INFINITY);
    // Four independent chains per pass over whole blocks of 64 scores (no masks), then the
    // rest 16 at a time, masked.
    let mut mx = [ninf; 4];
    let mut i = 0;
    while i < full {
        for (j, mx) in mx.iter_mut().enumerate() {
            // SAFETY: i + 16 j + 16 <= full <= n: inside row.
            let v = unsafe { _mm512_loadu_ps(row.as_ptr().add(i + 16 * j)) };
            *mx = _mm512_max_ps(*mx, _mm512_mul_ps(v, vs));
        }
        i += 64;
    }
    while i < n {
        let k = (n - i).min(16);
        let mask: __mmask16 = if k == 16 { !0 } else { (1u16 << k) - 1 };
        // SAFETY: lanes i..i + k of row, masked.
        let v = unsafe { _mm512_mask_loadu_ps(ninf, mask, row.as_ptr().add(i)) };
        // −inf · scale stays −inf (scale > 0) and masked lanes keep −inf through the max.
        mx[0] = _mm512_mask_max_ps(mx[0], mask, mx[0], _mm512_mul_ps(v, vs));
        i += 16;
    }
    let mx = _mm512_max_ps(_mm512_max_ps(mx[0], mx[1]), _mm512_max_ps(mx[2], mx[3]));
    let m_new = _mm512_reduce_max_ps(mx).max(m);
    let neg_m = _mm512_set1_ps(-m_new);
    let mut sum = [_mm512_setzero_ps(); 4];
    let mut i = 0;
    while i < full {
        for (j, sum) in sum.iter_mut().enumerate() {
            let at = i + 16 * j;
            // SAFETY: at + 16 <= full <= n: inside row.
            let v = unsafe { _mm512_loadu_ps(row.as_ptr().add(at)) };
            let e = exp16_scalef(_mm512_fmadd_ps(v, vs, neg_m));
            *sum = _mm512_add_ps(*sum, e);
            let b: __m256i = std::mem::transmute::<__m256bh, __m256i>(_mm512_cvtneps_pbh(e));
            // SAFETY: slots at / 2 .. at / 2 + 8 <= ceil(n / 2) = pairs.len().
            unsafe { _mm256_storeu_si256(pairs.as_mut_ptr().add(at / 2).cast(), b) };
        }
        i += 64;
    }
    while i < n {
        let k = (n - i).min(16);
        let mask: __mmask16 = if k == 16 { !0 } else { (1u16 << k) - 1 };
        // SAFETY: lanes i..i + k of row, masked.
        let v = unsafe { _mm512_maskz_loadu_ps(mask, row.as_ptr().add(i)) };
        let e = _mm512_maskz_mov_ps(mask, exp16_scalef(_mm512_fmadd_ps(v, vs, neg_m)));
        sum[0] = _mm512_add_ps(sum[0], e);
        let b: __m256i = std::mem::transmute::<__m256bh, __m256i>(_mm512_cvtneps_pbh(e));
        // Slots i / 2 .. i / 2 + ceil(k / 2); the masked-off lanes are zero, so an odd
        // tail's last pair holds a zero high half.
        let slots = k.div_ceil(2);
        let smask: __mmask8 = if slots == 8 { !0 } else { (1u8 << slots) - 1 };
        // SAFETY: slots i / 2 .. i / 2 + slots of pairs, masked.
        unsafe { _mm256_mask_storeu_epi32(pairs.as_mut_ptr().add(i / 2).cast(), smask, b) };
        i += 16;
    }
    let sum = _mm512_add_ps(_mm512_add_ps(sum[0], sum[1]), _mm512_add_ps(sum[2], sum[3]));
    (m_new, _mm512_reduce_add_ps(sum))
}

/// The 8 × 8 blocks of a transpose (see `transpose::transpose`): `dst[c * dst_stride + r] =
/// src[r * src_stride + c]` for `r < rows`, `c < cols`, both multiples of 8.
pub(super) fn transpose_8x8_blocks(src: &[f32], dst: &mut [f32], block: super::Block) {
    let super::Block {
        rows,
        cols,
        src_stride,
        dst_stride,
    } = block;
    assert!(Isa::Avx2.supported(), "transpose_8x8_blocks needs AVX");
    assert!(rows % 8 == 0 && cols % 8 == 0 && rows > 0 && cols > 0);
    assert!(cols <= src_stride && rows <= dst_stride);
    assert!((rows - 1) * src_stride + cols <= src.len());
    assert!((cols - 1) * dst_stride + rows <= dst.len());
    // SAFETY: the CPU has AVX (asserted through the AVX2 level); every row read is
    // `src[r * src_stride + c .. + 8]` with `r < rows`, `c + 8 <= cols <= src_stride`, inside
    // `src` by the bound asserted above, and every row written is `dst[c * dst_stride + r ..
    // + 8]` with `c < cols`, `r + 8 <= rows <= dst_stride`, inside `dst` likewise.
    unsafe { transpose_8x8_avx(src.as_ptr(), dst.as_mut_ptr(), block) }
}

/// See [`transpose_8x8_blocks`].
///
/// # Safety
/// AVX; the bounds asserted by [`transpose_8x8_blocks`].
#[target_feature(enable = "avx")]
unsafe fn transpose_8x8_avx(src: *const f32, dst: *mut f32, block: super::Block) {
    let super::Block {
        rows,
        cols,
        src_stride,
        dst_stride,
    } = block;
    for c in (0..cols).step_by(8) {
        for r in (0..rows).step_by(8) {
            // SAFETY: rows r..r + 8, values c..c + 8 of each (see the caller).
            let row = |i: usize| unsafe { _mm256_loadu_ps(src.add((r + i) * src_stride + c)) };
            let (r0, r1, r2, r3) = (row(0), row(1), row(2), row(3));
            let (r4, r5, r6, r7) = (row(4), row(5), row(6), row(7));
            // Pairs, then quads within each 128-bit half, then the halves.
            let t0 = _mm256_unpacklo_ps(r0, r1);
            let t1 = _mm256_unpackhi_ps(r0, r1);
            let t2 = _mm256_unpacklo_ps(r2, r3);
            let t3 = _mm256_unpackhi_ps(r2, r3);
            let t4 = _mm256_unpacklo_ps(r4, r5);
            let t5 = _mm256_unpackhi_ps(r4, r5);
            let t6 = _mm256_unpacklo_ps(r6, r7);
            let t7 = _mm256_unpackhi_ps(r6, r7);
            let u0 = _mm256_shuffle_ps::<0x44>(t0, t2);
            let u1 = _mm256_shuffle_ps::<0xee>(t0, t2);
            let u2 = _mm256_shuffle_ps::<0x44>(t1, t3);
            let u3 = _mm256_shuffle_ps::<0xee>(t1, t3);
            let u4 = _mm256_shuffle_ps::<0x44>(t4, t6);
            let u5 = _mm256_shuffle_ps::<0xee>(t4, t6);
            let u6 = _mm256_shuffle_ps::<0x44>(t5, t7);
            let u7 = _mm256_shuffle_ps::<0xee>(t5, t7);
            let cols8 = [
                _mm256_permute2f128_ps::<0x20>(u0, u4),
                _mm256_permute2f128_ps::<0x20>(u1, u5),
                _mm256_permute2f128_ps::<0x20>(u2, u6),
                _mm256_permute2f128_ps::<0x20>(u3, u7),
                _mm256_permute2f128_ps::<0x31>(u0, u4),
                _mm256_permute2f128_ps::<0x31>(u1, u5),
                _mm256_permute2f128_ps::<0x31>(u2, u6),
                _mm256_permute2f128_ps::<0x31>(u3, u7),
            ];
            for (i, v) in cols8.into_iter().enumerate() {
                // SAFETY: output row c + i, values r..r + 8 (see the caller).
                unsafe { _mm256_storeu_ps(dst.add((c + i) * dst_stride + r), v) };
            }
        }
    }
}
