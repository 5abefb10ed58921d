//! Elementwise CPU kernels over `f32` slices, written so the compiler vectorizes them: a
//! polynomial `exp` (no libm call per element), the activations built on it, fused
//! "bias + activation + residual" epilogues for matmul outputs, `act(gate) * up` for gated
//! MLPs, and a row softmax with the score scale folded in.
//!
//! Each kernel is compiled for AVX-512, AVX2+FMA and the baseline target, and picks the best
//! one the CPU has at run time (`multiversion`). Callers split work across threads; these
//! functions are single-threaded.
//!
//! Accuracy: [`exp`] is within 2 ulp of the correctly rounded result on `[-87.3, 88.3]`
//! (tested below against `f64`); the activations are within a few ulp of the same formulas
//! evaluated in `f64`, which is as close as PyTorch's own vectorized kernels get.

use multiversion::multiversion;

use crate::models::activation::Activation;

/// `e^x` for `f32`: Cody–Waite reduction `x = n·ln2 + r`, `|r| ≤ ln2/2`, a degree-7 Taylor
/// polynomial for `e^r` (truncation error < 0.1 ulp) and `2^n` built from the exponent bits.
/// Below `-87.33` (where `e^x` turns subnormal) the result is 0, and above `88.3` it
/// saturates near `2.1e38` instead of overflowing to `inf`; every caller here adds 1 to the
/// result or normalizes by a sum of at least 1, where neither difference is visible.
#[inline(always)]
pub fn exp(x: f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    // ln 2 split so that `n * LN2_HI` is exact for |n| < 2^9.
    const LN2_HI: f32 = f32::from_bits(0x3f31_7200); // 0.693145751953125
    const LN2_LO: f32 = 1.428_606_8e-6;
    // Adding 1.5·2^23 rounds to an integer (round to nearest even) and leaves it in the
    // low mantissa bits.
    const SHIFTER: f32 = 12_582_912.0;
    const LOW: f32 = -87.336_54;
    let zero = x < LOW;
    let x = x.clamp(LOW, 88.3);
    let t = x * LOG2E + SHIFTER;
    let n = t - SHIFTER;
    let r = (x - n * LN2_HI) - n * LN2_LO;
    let p = 1.0 / 5040.0;
    let p = p * r + 1.0 / 720.0;
    let p = p * r + 1.0 / 120.0;
    let p = p * r + 1.0 / 24.0;
    let p = p * r + 1.0 / 6.0;
    let p = p * r + 0.5;
    let p = p * r + 1.0;
    let p = p * r + 1.0;
    let n_int = t.to_bits() as i32 - SHIFTER.to_bits() as i32;
    let scale = f32::from_bits(((n_int + 127) << 23) as u32);
    if zero {
        0.0
    } else {
        p * scale
    }
}

// Coefficients of `one_plus_erf`, derived (and its error checked) by `scripts/fit_erf.py`.
const ERF_SPLIT: f32 = 0.75;
const ERFC_A: f32 = 1.6285714;
const ERFC_B: f32 = -1.1714286;
const ERF_SMALL: [f32; 7] = [
    std::f32::consts::FRAC_2_SQRT_PI, // the fitted value, to the last bit
    -0.37612638,
    0.112837784,
    -0.02686478,
    0.005216817,
    -0.0008357358,
    9.473e-05,
];
const ERFC_LARGE: [f32; 13] = [
    0.4733877,
    -0.104477644,
    0.005784148,
    0.010852221,
    -0.008038285,
    0.003547654,
    -0.0009279444,
    1.4807939e-05,
    0.00024171533,
    -0.00042953703,
    0.00027673898,
    3.6880116e-05,
    -6.522502e-05,
];

#[inline(always)]
fn horner(coefficients: &[f32], x: f32) -> f32 {
    let (last, rest) = coefficients.split_last().expect("a polynomial");
    rest.iter().rev().fold(*last, |acc, c| acc * x + c)
}

/// `1 + erf(z)`, branch-free so that it vectorizes (both pieces are computed, one kept):
/// for `|z| < 0.75` as `1 + z·P(z²)`; above, from `erfc(|z|) = e^(−z²)·Q(1/|z|)/|z|`, as
/// `2 − erfc(z)` for positive `z` and as `erfc(−z)` itself for negative `z`, so the result
/// keeps its relative accuracy where it is tiny (no `1 + erf` cancellation). `z²` is carried
/// as an exact sum `s + s_lo` (one FMA) so that `e^(−z²)` does not inherit the rounding of
/// `z²`. Together with [`exp`], GELU-erf built on this is within 4e-7 relative of the exact
/// function of its (f32) input everywhere (tested below against `f64` erfc).
#[inline(always)]
fn one_plus_erf(z: f32) -> f32 {
    let small = 1.0 + z * horner(&ERF_SMALL, z * z);
    // Beyond |z| = 10, e^(−z²) is 0 in f32; clamping keeps the products finite for ±inf.
    let zc = z.clamp(-10.0, 10.0);
    let az = zc.abs().max(ERF_SPLIT);
    let s = zc * zc;
    let s_lo = zc.mul_add(zc, -s);
    let e = exp(-s);
    let e = e - e * s_lo;
    let t = 1.0 / az;
    let erfc = e * horner(&ERFC_LARGE, ERFC_A * t + ERFC_B) * t;
    let large = if z > 0.0 { 2.0 - erfc } else { erfc };
    if z.abs() < ERF_SPLIT {
        small
    } else {
        large
    }
}

/// `x · sigmoid(k·x)` as `x / (1 + e^(−k·x))`.
#[inline(always)]
fn x_sigmoid(x: f32, k: f32) -> f32 {
    x / (1.0 + exp(-k * x))
}

/// One activation applied to one value.
#[inline(always)]
pub fn activate(act: Activation, x: f32) -> f32 {
    match act {
        // 0.5·x·(1 + tanh(u)) = x·sigmoid(2u): the same function without the cancellation
        // in 1 + tanh(u) for very negative u.
        Activation::GeluTanh => {
            const SQRT_2_OVER_PI: f32 = 0.797_884_6;
            let u = SQRT_2_OVER_PI * (x + 0.044_715 * x * x * x);
            x / (1.0 + exp(-2.0 * u))
        }
        Activation::GeluErf => 0.5 * x * one_plus_erf(x * std::f32::consts::FRAC_1_SQRT_2),
        Activation::QuickGelu => x_sigmoid(x, 1.702),
        Activation::Silu => x_sigmoid(x, 1.0),
    }
}

/// `y[r][c] = act(y[r][c] + bias[c]) + residual[r][c]` over rows of `bias.len()` (or of
/// `width` when there is no bias) elements; `act` and the two operands are each optional.
/// `residual`, when given, has `y`'s length.
#[multiversion(targets("x86_64+avx512f+avx512vl+avx2+fma", "x86_64+avx2+fma", "aarch64+neon"))]
pub fn epilogue(
    y: &mut [f32],
    width: usize,
    bias: Option<&[f32]>,
    act: Option<Activation>,
    residual: Option<&[f32]>,
) {
    debug_assert!(width > 0 && y.len() % width == 0);
    if let Some(b) = bias {
        debug_assert_eq!(b.len(), width);
        for row in y.chunks_exact_mut(width) {
            for (v, b) in row.iter_mut().zip(b) {
                *v += *b;
            }
        }
    }
    match act {
        None => {}
        Some(Activation::GeluTanh) => y
            .iter_mut()
            .for_each(|v| *v = activate(Activation::GeluTanh, *v)),
        Some(Activation::QuickGelu) => y
            .iter_mut()
            .for_each(|v| *v = activate(Activation::QuickGelu, *v)),
        Some(Activation::Silu) => y
            .iter_mut()
            .for_each(|v| *v = activate(Activation::Silu, *v)),
        Some(Activation::GeluErf) => y
            .iter_mut()
            .for_each(|v| *v = activate(Activation::GeluErf, *v)),
    }
    if let Some(r) = residual {
        debug_assert_eq!(r.len(), y.len());
        for (v, r) in y.iter_mut().zip(r) {
            *v += *r;
        }
    }
}

/// Gated-MLP middle: `out[r][j] = act(gu[r][j]) · gu[r][hidden + j]` for rows of `gu` that
/// hold the gate projection then the up projection (`2 · hidden` values each).
#[multiversion(targets("x86_64+avx512f+avx512vl+avx2+fma", "x86_64+avx2+fma", "aarch64+neon"))]
pub fn act_mul(gu: &[f32], out: &mut [f32], hidden: usize, act: Activation) {
    debug_assert_eq!(gu.len(), 2 * out.len());
    for (g, o) in gu
        .chunks_exact(2 * hidden)
        .zip(out.chunks_exact_mut(hidden))
    {
        let (gate, up) = g.split_at(hidden);
        match act {
            Activation::GeluTanh => mul_rows(gate, up, o, |x| activate(Activation::GeluTanh, x)),
            Activation::QuickGelu => mul_rows(gate, up, o, |x| activate(Activation::QuickGelu, x)),
            Activation::Silu => mul_rows(gate, up, o, |x| activate(Activation::Silu, x)),
            Activation::GeluErf => mul_rows(gate, up, o, |x| activate(Activation::GeluErf, x)),
        }
    }
}

#[inline(always)]
fn mul_rows(gate: &[f32], up: &[f32], out: &mut [f32], f: impl Fn(f32) -> f32) {
    for ((o, g), u) in out.iter_mut().zip(gate).zip(up) {
        *o = f(*g) * *u;
    }
}

/// Lanes of the vectorized reductions (wide enough for AVX-512).
const LANES: usize = 16;

/// In place, `v = e^(v − shift)` for each value of `row`; returns their sum, reduced over 16
/// lanes and the tail (the order both softmaxes sum in). Inlined into its callers' compiled
/// variants.
#[inline(always)]
pub fn exp_shifted_sum(row: &mut [f32], shift: f32) -> f32 {
    let mut sums = [0f32; LANES];
    let mut chunks = row.chunks_exact_mut(LANES);
    for c in &mut chunks {
        for (s, v) in sums.iter_mut().zip(c.iter_mut()) {
            *v = exp(*v - shift);
            *s += *v;
        }
    }
    let mut tail = 0f32;
    for v in chunks.into_remainder() {
        *v = exp(*v - shift);
        tail += *v;
    }
    sums.iter().sum::<f32>() + tail
}

/// In place, for each row of `width` values: `softmax(scale · row)`, i.e. `y = scale·x`,
/// `e = exp(y − max y)`, `e / Σe`, as PyTorch's eager `softmax(scores * scale)`. The max
/// and the sum are reduced over 16 lanes (pairwise-like, more accurate than one running sum).
#[multiversion(targets("x86_64+avx512f+avx512vl+avx2+fma", "x86_64+avx2+fma", "aarch64+neon"))]
pub fn softmax_rows(x: &mut [f32], width: usize, scale: f32) {
    debug_assert!(width > 0 && x.len() % width == 0);
    for row in x.chunks_exact_mut(width) {
        if scale != 1.0 {
            row.iter_mut().for_each(|v| *v *= scale);
        }
        let mut lanes = [f32::NEG_INFINITY; LANES];
        let mut chunks = row.chunks_exact(LANES);
        for c in &mut chunks {
            for (m, v) in lanes.iter_mut().zip(c) {
                *m = if *v > *m { *v } else { *m };
            }
        }
        let mut max = lanes.iter().fold(f32::NEG_INFINITY, |a, &b| a.max(b));
        for v in chunks.remainder() {
            max = max.max(*v);
        }
        let sum = exp_shifted_sum(row, max);
        let inv = 1.0 / sum;
        row.iter_mut().for_each(|v| *v *= inv);
    }
}

/// Rotary embedding with `rotate_half` (`x·cos + rotate_half(x)·sin`, `rotate_half(x) =
/// cat(−x₂, x₁)`) for `x`/`out` `[tokens, heads, head_dim]` and `cos`/`sin` `[tokens,
/// head_dim]`, in the reference's order of operations (two products, then their sum).
#[multiversion(targets("x86_64+avx512f+avx512vl+avx2+fma", "x86_64+avx2+fma", "aarch64+neon"))]
pub fn rotate_half_rotary(
    x: &[f32],
    cos: &[f32],
    sin: &[f32],
    out: &mut [f32],
    heads: usize,
    head_dim: usize,
) {
    let half = head_dim / 2;
    let token = heads * head_dim;
    for (t, (xt, ot)) in x
        .chunks_exact(token)
        .zip(out.chunks_exact_mut(token))
        .enumerate()
    {
        let c = &cos[t * head_dim..(t + 1) * head_dim];
        let s = &sin[t * head_dim..(t + 1) * head_dim];
        for (xh, oh) in xt.chunks_exact(head_dim).zip(ot.chunks_exact_mut(head_dim)) {
            let (x1, x2) = xh.split_at(half);
            let (o1, o2) = oh.split_at_mut(half);
            for j in 0..half {
                o1[j] = x1[j] * c[j] + (-x2[j]) * s[j];
                o2[j] = x2[j] * c[half + j] + x1[j] * s[half + j];
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Distance in units in the last place between an `f32` and an `f64` reference.
    fn ulps(got: f32, want: f64) -> f64 {
        let w = want as f32;
        if got == w {
            return 0.0;
        }
        let ulp = (f32::from_bits(w.abs().to_bits() + 1) - w.abs()) as f64;
        ((got as f64) - want).abs() / ulp
    }

    fn sweep(lo: f32, hi: f32, n: usize) -> impl Iterator<Item = f32> {
        (0..=n).map(move |i| lo + (hi - lo) * i as f32 / n as f32)
    }

    #[test]
    fn exp_is_within_two_ulp_over_its_range() {
        let mut worst = 0f64;
        for x in sweep(-87.0, 88.0, 2_000_000).chain([0.0, -0.0, 1e-30, -1e-30, 0.5, -0.5]) {
            worst = worst.max(ulps(exp(x), (x as f64).exp()));
        }
        assert!(worst <= 2.0, "exp: worst error {worst} ulp");
        assert_eq!(exp(0.0), 1.0);
        assert_eq!(exp(-1000.0), 0.0);
        assert_eq!(exp(f32::NEG_INFINITY), 0.0);
        assert!(exp(1000.0).is_finite());
    }

    fn reference(act: Activation, x: f64) -> f64 {
        match act {
            Activation::GeluTanh => {
                // Exponent arguments are rounded to f32 as the kernel (and PyTorch) rounds
                // them: that rounding (1e-7 of u) is amplified by |2u| in e^(-2u) far in the
                // negative tail; the test checks everything after it.
                let xf = x as f32;
                let u = (0.797_884_6f32 * (xf + 0.044_715 * xf * xf * xf)) as f64;
                0.5 * x * (1.0 + u.tanh())
            }
            Activation::QuickGelu => x / (1.0 + ((-1.702f32 * x as f32) as f64).exp()),
            Activation::Silu => x / (1.0 + (-x).exp()),
            Activation::GeluErf => unreachable!(),
        }
    }

    #[test]
    fn activations_match_their_f64_formulas() {
        for act in [
            Activation::GeluTanh,
            Activation::QuickGelu,
            Activation::Silu,
        ] {
            let mut worst_rel = 0f64;
            let mut worst_abs = 0f64;
            for x in sweep(-30.0, 30.0, 600_001) {
                let want = reference(act, x as f64);
                let got = activate(act, x) as f64;
                let err = (got - want).abs();
                // Relative where the value is not tiny; absolute near the zeros and in the
                // far negative tail, where the result is below 1e-6 and rounding `u` in f32
                // dominates (PyTorch's own f32 tanh returns exactly 0 there).
                if want.abs() > 1e-6 {
                    worst_rel = worst_rel.max(err / want.abs());
                } else {
                    worst_abs = worst_abs.max(err);
                }
            }
            assert!(worst_rel < 4e-7, "{act:?}: relative error {worst_rel}");
            assert!(worst_abs < 1e-12, "{act:?}: absolute error {worst_abs}");
        }
    }

    #[test]
    fn gelu_erf_matches_erfc_in_f64() {
        let gelu = |x: f32| {
            // erf's argument rounded to f32 as the kernel (and PyTorch) rounds it.
            let z = (x * std::f32::consts::FRAC_1_SQRT_2) as f64;
            0.5 * x as f64 * candle_core::cpu::erf::erfc_f64(-z)
        };
        let mut worst = 0f64;
        for x in sweep(-14.0, 14.0, 1_400_001).chain([0.0, -0.0, 1e-30, -1e-30, 1.0606601]) {
            let want = gelu(x);
            let got = activate(Activation::GeluErf, x) as f64;
            if want == 0.0 {
                assert!(got.abs() < 1e-37, "gelu_erf({x}) = {got}, want 0");
            } else if want.abs() > 1e-37 {
                worst = worst.max((got - want).abs() / want.abs());
            }
        }
        assert!(worst < 4e-7, "GELU-erf: relative error {worst}");
        // The dispatched (vectorized) epilogue computes the same values as the scalar path.
        let xs: Vec<f32> = sweep(-14.0, 14.0, 100_003).collect();
        let mut y = xs.clone();
        epilogue(&mut y, 1, None, Some(Activation::GeluErf), None);
        for (x, y) in xs.iter().zip(&y) {
            assert_eq!(
                y.to_bits(),
                activate(Activation::GeluErf, *x).to_bits(),
                "x = {x}"
            );
        }
        assert_eq!(activate(Activation::GeluErf, f32::INFINITY), f32::INFINITY);
        assert_eq!(activate(Activation::GeluErf, 30.0), 30.0);
        assert_eq!(activate(Activation::GeluErf, -30.0), 0.0);
        assert!(activate(Activation::GeluErf, f32::NAN).is_nan());
    }

    #[test]
    fn epilogue_applies_bias_then_activation_then_residual() {
        let width = 3;
        let mut y = vec![0.5f32, -1.0, 2.0, 0.0, 1.5, -2.5];
        let bias = [0.25f32, -0.5, 1.0];
        let residual = [1.0f32, 2.0, 3.0, 4.0, 5.0, 6.0];
        let mut want = y.clone();
        for (i, v) in want.iter_mut().enumerate() {
            *v = reference(Activation::Silu, (*v + bias[i % width]) as f64) as f32 + residual[i];
        }
        epilogue(
            &mut y,
            width,
            Some(&bias),
            Some(Activation::Silu),
            Some(&residual),
        );
        for (g, w) in y.iter().zip(&want) {
            assert!((g - w).abs() <= 2e-7 * w.abs().max(1.0), "{g} vs {w}");
        }
    }

    #[test]
    fn act_mul_multiplies_the_activated_gate_by_up() {
        let hidden = 5;
        let gu: Vec<f32> = (0..4 * hidden).map(|i| (i as f32 - 9.5) * 0.37).collect();
        let mut out = vec![0f32; 2 * hidden];
        act_mul(&gu, &mut out, hidden, Activation::GeluTanh);
        for r in 0..2 {
            for j in 0..hidden {
                let g = gu[r * 2 * hidden + j] as f64;
                let u = gu[r * 2 * hidden + hidden + j] as f64;
                let want = reference(Activation::GeluTanh, g) * u;
                let got = out[r * hidden + j] as f64;
                assert!(
                    (got - want).abs() <= 1e-6 * want.abs().max(1e-3),
                    "{got} vs {want}"
                );
            }
        }
    }

    #[test]
    fn softmax_rows_match_f64_and_sum_to_one() {
        // Widths around the lane count exercise the vector body and the tail.
        for width in [1, 7, 16, 33, 1029] {
            let rows = 3;
            let mut x: Vec<f32> = (0..rows * width)
                .map(|i| ((i * 7919 % 1000) as f32 - 500.0) * 0.031)
                .collect();
            let scale = 0.125f32;
            let input = x.clone();
            softmax_rows(&mut x, width, scale);
            for r in 0..rows {
                let row: Vec<f64> = input[r * width..(r + 1) * width]
                    .iter()
                    .map(|&v| (v * scale) as f64)
                    .collect();
                let m = row.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
                let s: f64 = row.iter().map(|v| (v - m).exp()).sum();
                for (j, v) in row.iter().enumerate() {
                    let want = (v - m).exp() / s;
                    let got = x[r * width + j] as f64;
                    assert!(
                        (got - want).abs() <= 1e-6 * want + 1e-12,
                        "w{width}: {got} vs {want}"
                    );
                }
                let total: f64 = x[r * width..(r + 1) * width]
                    .iter()
                    .map(|&v| v as f64)
                    .sum();
                assert!((total - 1.0).abs() < 1e-5);
            }
        }
        let mut masked = vec![0.0f32, f32::NEG_INFINITY, 0.0];
        softmax_rows(&mut masked, 3, 1.0);
        assert_eq!(masked, vec![0.5, 0.0, 0.5]);
    }
}
