#!/usr/bin/env python3
"""Matmul probe: this machine's practical f32 and bf16 peak, as PyTorch and as vtower reach it,
in one run: a 2048 x 2048 x 2048 product, GFLOP/s, same thread count.

    scripts/bench_peak.py [--threads N] [--shapes]

PyTorch: `torch.mm` in f32 (MKL) and bf16 (oneDNN: AMX or AVX512-BF16 where the CPU has them).
vtower: `cargo bench --bench cpu_ops -- peak` (candle's f32 gemm, which vtower's f32 layers run,
and vtower's bf16 kernels at the level VTOWER_CPU_ISA allows). BENCHMARKS.md's full-depth table
divides each side's GFLOP/s by these figures. Needs the fixture venv (torch).

--shapes: instead, the bf16 GEMM on the towers' linear shapes (those of `cargo bench --bench
cpu_ops -- bf16`): PyTorch's `F.linear(x, W)` with bf16 `x` and `W` (oneDNN reads bf16 and writes
bf16) against vtower's kernels at the level this process runs at (f32 `x` rounded per call, f32
out), median of 7 each, and the ratio.
"""
import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--shapes", action="store_true", help="the towers' linear shapes in bf16")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    if args.shapes:
        return shapes(args.threads)
    n = 2048
    flop = 2.0 * n ** 3
    rows = []
    for name, dt in [("f32", torch.float32), ("bf16", torch.bfloat16)]:
        a, b = torch.randn(n, n, dtype=dt), torch.randn(n, n, dtype=dt)
        torch.mm(a, b)
        times = []
        for _ in range(5):
            t = time.perf_counter()
            torch.mm(a, b)
            times.append(time.perf_counter() - t)
        rows.append((name, flop / sorted(times)[2] / 1e9))
    env = dict(os.environ, RAYON_NUM_THREADS=str(args.threads))
    out = subprocess.run(["cargo", "bench", "-q", "--bench", "cpu_ops", "--", "peak"], cwd=ROOT,
                         env=env, check=True, capture_output=True, text=True).stdout
    ours = {}
    for line in out.splitlines():
        if line.startswith("peak "):
            _, dt, g, *rest = line.split()
            ours[dt] = (float(g), " ".join(rest))
    from machine_info import describe
    print(f"{describe()}, {args.threads} threads")
    print("| dtype | PyTorch GFLOP/s | vtower GFLOP/s | vtower / PyTorch |")
    print("|---|---|---|---|")
    for name, g in rows:
        v, note = ours.get(name, (float("nan"), ""))
        print(f"| {name} | {g:.0f} | {v:.0f} {note} | {v / g:.2f} |")


def shapes(threads):
    """--shapes: PyTorch bf16 linear against vtower's bf16 GEMM, shape by shape."""
    import re
    from machine_info import describe
    env = dict(os.environ, RAYON_NUM_THREADS=str(threads))
    level = os.environ.get("VTOWER_CPU_ISA", "").strip().lower() or None
    cmd = ["cargo", "bench", "-q", "--bench", "cpu_ops", "--", "bf16"]
    out = subprocess.run(cmd, cwd=ROOT, env=env, check=True, capture_output=True, text=True).stdout
    print(f"{describe()}, {threads} threads")
    print("| m x k x n | PyTorch bf16 GFLOP/s | vtower GFLOP/s (level) | vtower / PyTorch |")
    print("|---|---|---|---|")
    for line in out.splitlines():
        m = re.match(r"\s*(\d+) x\s+(\d+) x\s+(\d+)\s+f32\s+\S+\s+(.*)", line)
        if not m:
            continue
        mm, k, n = (int(g) for g in m.groups()[:3])
        levels = dict(zip(*[iter(m.group(4).split())] * 2))
        name = level if level in levels else list(levels)[-1]
        ours = float(levels[name])
        x = torch.randn(mm, k).bfloat16()
        w = torch.randn(n, k).bfloat16()
        for _ in range(3):
            torch.nn.functional.linear(x, w)
        times = []
        for _ in range(7):
            t = time.perf_counter()
            torch.nn.functional.linear(x, w)
            times.append(time.perf_counter() - t)
        theirs = 2.0 * mm * k * n / sorted(times)[3] / 1e9
        print(f"| {mm} x {k} x {n} | {theirs:.0f} | {ours:.0f} ({name}) | {ours / theirs:.2f} |")


if __name__ == "__main__":
    sys.exit(main())
