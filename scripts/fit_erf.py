"""Derives the polynomial coefficients of `one_plus_erf` in src/models/kernels.rs (the
vectorized GELU-erf) and checks the f32 evaluation against math.erfc in double precision.

Two pieces, split at |z| = SPLIT:
  |z| <  SPLIT: erf(z) = z * PA(z^2)                      (Chebyshev fit of erf(z)/z in z^2)
  |z| >= SPLIT: erfc(|z|) = exp(-z^2) * PB(u) / |z|,      u = A / |z| + B maps [1/ZMAX, 1/SPLIT]
                onto [-1, 1]                            (Chebyshev fit of erfcx(z) * z in u)
Run: python3 scripts/fit_erf.py   (numpy only; prints Rust constants and the worst error)
"""
import math

import numpy as np
from numpy.polynomial import Polynomial
from numpy.polynomial import chebyshev as cheb

SPLIT, ZMAX, DEG_A, DEG_B = 0.75, 9.5, 6, 12
f32 = np.float32


def fit_small():
    s = (np.cos(np.linspace(0, np.pi, 4000)) * 0.5 + 0.5) * SPLIT**2
    f = np.array([math.erf(math.sqrt(v)) / math.sqrt(v) if v > 0 else 2 / math.sqrt(math.pi) for v in s])
    c = cheb.chebfit(2 * s / SPLIT**2 - 1, f, DEG_A)
    return Polynomial(cheb.cheb2poly(c))(Polynomial([-1, 2 / SPLIT**2])).coef


def fit_large():
    lo, hi = 1 / ZMAX, 1 / SPLIT
    a, b = 2 / (hi - lo), -(hi + lo) / (hi - lo)
    t = np.cos(np.linspace(0, np.pi, 6000)) * (hi - lo) / 2 + (hi + lo) / 2
    f = np.array([math.erfc(1 / v) * math.exp(1 / v**2) / v for v in t])
    return cheb.cheb2poly(cheb.chebfit(a * t + b, f, DEG_B)), a, b


def horner(c, x):
    r = f32(c[-1])
    for k in c[-2::-1]:
        r = f32(r * x + f32(k))
    return r


def main():
    pa = f32(fit_small())
    pb, a, b = fit_large()
    pb, a, b = f32(pb), f32(a), f32(b)

    def one_plus_erf(z):
        az, s = abs(z), f32(z * z)
        if az < SPLIT:
            return f32(1) + f32(z * horner(pa, s))
        s_lo = f32(float(z) * float(z) - float(s))
        e = f32(math.exp(-float(s)))
        e = f32(e - f32(e * s_lo))
        t = f32(f32(1) / az)
        erfc = f32(f32(e * horner(pb, f32(a * t + b))) * t)
        return f32(2) - erfc if z > 0 else erfc

    worst = 0.0
    for x in np.linspace(-13, 13, 200001, dtype=np.float32):
        z = f32(x * f32(1 / math.sqrt(2)))
        want = 0.5 * float(x) * math.erfc(-float(z))
        got = float(f32(f32(0.5) * x) * one_plus_erf(z))
        if abs(want) > 1e-30:
            worst = max(worst, abs(got - want) / abs(want))
    print(f"const ERF_SPLIT: f32 = {SPLIT};")
    print(f"const ERFC_A: f32 = {str(a)};\nconst ERFC_B: f32 = {str(b)};")
    print("const ERF_SMALL: [f32; %d] = [%s];" % (len(pa), ", ".join(str(v) for v in pa)))
    print("const ERFC_LARGE: [f32; %d] = [%s];" % (len(pb), ", ".join(str(v) for v in pb)))
    print(f"# worst relative error of 0.5*x*(1+erf(x/sqrt2)) on [-13, 13]: {worst:.3g}"
          f" ({worst / 2**-24:.2f} half-ulps), with a correctly rounded exp")


if __name__ == "__main__":
    main()
