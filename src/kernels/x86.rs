//! The x86-64 micro-kernels: `rows × 16·panels` tiles of `A · B` over the whole `k`, with
//! `B` packed in panels and `A` read at any row and slot stride (a packed tile or row-major
//! rows), both as bf16 pairs or f32 (see `mod.rs`). One function per level and element type;
//! the number of rows is a const parameter so that the accumulators stay in registers.
//!
//! The AVX-512 intrinsics are stable since Rust 1.89 (the crate's declared `rust-version` is
//! older; the toolchain used is 1.95).
#![allow(clippy::incompatible_msrv)]

use std::arch::x86_64::*;

use super::{Call, Elem, Isa, PANEL};

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
    let Call {
        elem,
        a,
        rows,
        slots,
        b0,
        b1,
        ldc,
        accumulate,
    } = call;
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
            // columns of out (the second panel's start at +16), rows ≤ 4.
            unsafe {
                let f = |b: *const u32, out: *mut f32| match elem {
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
        (Isa::Scalar, _) => unreachable!("the scalar level has no x86 kernel"),
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
    for r in 0..R {
        // SAFETY: row r of out has 16 f32 at r·ldc.
        unsafe {
            _mm256_storeu_ps(out.add(r * ldc), acc0[r]);
            _mm256_storeu_ps(out.add(r * ldc + 8), acc1[r]);
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
    for r in 0..R {
        // SAFETY: row r of out has 16 f32 at r·ldc.
        unsafe {
            _mm256_storeu_ps(out.add(r * ldc), acc0[r]);
            _mm256_storeu_ps(out.add(r * ldc + 8), acc1[r]);
        }
    }
}
