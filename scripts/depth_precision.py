#!/usr/bin/env python3
"""How far HF's own f32 output is from float64 on a real-shape random-weight Gemma 4 tower at
full depth (the `gemma4-280` case of scripts/gpu/bench_gpu.py, same weights initialization):
prints rel L2 of HF eager vs HF SDPA, and of each vs the same model in float64. Used to read
the rel L2 column of BENCHMARKS.md's full-depth rows (a random deep tower amplifies rounding).

    .venv/bin/python scripts/depth_precision.py
"""
import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent / "gpu"))
import bench_gpu as b  # noqa: E402


def main():
    torch.manual_seed(0)
    case = b.gemma4(768, 280)
    m = case["cls"](case["cfg"]).eval()
    b.randomize(m, 1234)
    img = Image.fromarray((np.random.RandomState(0).rand(768, 768, 3) * 255).astype(np.uint8))
    kw = case["inputs"](case["proc"](images=img, return_tensors="pt"), 1)
    outs = {}
    with torch.no_grad():
        for impl in ["eager", "sdpa"]:
            m.model.vision_tower.config._attn_implementation = impl
            outs[impl] = case["call"](m, **kw)[0].float()
        m64 = m.double()
        kw64 = {k: (v.double() if v.is_floating_point() else v) for k, v in kw.items()}
        m64.model.vision_tower.config._attn_implementation = "eager"
        outs["f64"] = case["call"](m64, **kw64)[0].float()

    def rel(a, c):
        return float((a - c).norm() / c.norm())

    print(f"eager vs sdpa {rel(outs['eager'], outs['sdpa']):.2e}; "
          f"eager vs f64 {rel(outs['eager'], outs['f64']):.2e}; "
          f"sdpa vs f64 {rel(outs['sdpa'], outs['f64']):.2e}")


if __name__ == "__main__":
    main()
