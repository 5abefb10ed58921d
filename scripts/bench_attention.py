#!/usr/bin/env python3
"""Attention core side by side: PyTorch's CPU SDPA (f32 and bf16 inputs) against vtower's fused
kernel (f32 and bf16 products) and its former unfused path, 16 heads, one long sequence, the
shapes of the so400m (729 x 72), Pixtral-1024 (4096 x 64), Gemma3-896 (4096 x 72) and
Qwen2-VL-1344 (9216 x 80) towers, in one run, same thread count.

    scripts/bench_attention.py [--threads N]

vtower's side is `cargo bench --bench cpu_ops -- attention` (release build of the bench).
Needs the fixture venv (torch).
"""
import argparse
import os
import subprocess
import sys
from pathlib import Path

import torch

from machine_info import describe, median_wall_ms

ROOT = Path(__file__).resolve().parent.parent
SHAPES = [(729, 72), (4096, 64), (4096, 72), (9216, 80)]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    sdpa = torch.nn.functional.scaled_dot_product_attention
    hf = {}
    for n, hd in SHAPES:
        g = torch.Generator().manual_seed(0)
        q, k, v = (torch.randn(1, 16, n, hd, generator=g) for _ in range(3))
        iters = 3 if n > 5000 else 5
        with torch.inference_mode():
            f32 = median_wall_ms(lambda: sdpa(q, k, v), iters)
            qb, kb, vb = q.bfloat16(), k.bfloat16(), v.bfloat16()
            bf16 = median_wall_ms(lambda: sdpa(qb, kb, vb), iters)
        hf[(n, hd)] = (f32, bf16)
    env = dict(os.environ, RAYON_NUM_THREADS=str(args.threads))
    out = subprocess.run(["cargo", "bench", "-q", "--bench", "cpu_ops", "--", "attention"], cwd=ROOT,
                         env=env, check=True, capture_output=True, text=True).stdout
    ours = {}
    for line in out.splitlines():
        line = line.strip()
        if line.startswith("(") and ")" in line:
            n, hd = (int(x) for x in line[1:line.index(")")].split(","))
            ours[(n, hd)] = [float(x) for x in line[line.index(")") + 1:].split()]
    print(f"{describe()}, {args.threads} threads")
    print("| tokens x head_dim (16 heads) | SDPA f32 ms | vtower unfused f32 ms | vtower fused f32 ms "
          "| f32 vtower/SDPA | SDPA bf16 ms | vtower fused bf16 ms | bf16 vtower/SDPA |")
    print("|---|---|---|---|---|---|---|---|")
    for n, hd in SHAPES:
        f32, bf16 = hf[(n, hd)]
        unfused, fused, fused_bf16 = ours[(n, hd)]
        print(f"| {n} x {hd} | {f32:.1f} | {unfused:.1f} | {fused:.1f} | {fused / f32:.2f} | {bf16:.1f} | "
              f"{fused_bf16:.1f} | {fused_bf16 / bf16:.2f} |")


if __name__ == "__main__":
    sys.exit(main())
