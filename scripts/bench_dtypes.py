#!/usr/bin/env python3
"""vtower bf16 against vtower f32 on the CPU, side by side in one process: a case of
scripts/gpu/bench_gpu.py (real depth and shapes, random weights, saved with save_pretrained) is
loaded twice (VT_DTYPE_F32 and VT_DTYPE_BF16) and the two forwards alternate, the order swapped
each round, so that a machine whose speed drifts (shared virtual CPUs) moves both alike.

    python scripts/bench_dtypes.py --lib target/release/libvtower.so --only gemma3-896 \\
        [--rounds 3] [--warm 1] [--threads 2] [--layers N]

Prints each round's times, the medians, their ratio and each round's ratio (bf16 / f32): the
figure #15 asks for on a machine without bf16 instructions ("bf16 never slower than f32").
--layers gives a shallow stack: for profiling only (the projector weighs more there).
"""
import argparse
import io
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT / "gpu"))
import bench_gpu as bg  # noqa: E402  (the cases, randomize, save_checkpoint)
import vtower_ctypes as vc  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--lib", type=Path, required=True)
    ap.add_argument("--only", required=True, help="the case whose name contains this")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--warm", type=int, default=1, help="rounds run first and not counted")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--layers", type=int, default=0, help="shallow stack (profiling only)")
    args = ap.parse_args()
    bg.LAYERS = args.layers
    import transformers
    transformers.utils.logging.disable_progress_bar()
    cases = [c for c in bg.CASES if args.only in c[0]]
    if len(cases) != 1:
        ap.error(f"--only {args.only!r} matches {[c[0] for c in cases]}, not one case")
    name, side, _, build = cases[0]
    spec = build(side)
    torch.manual_seed(0)
    hf = spec["cls"]._from_config(spec["cfg"], dtype=torch.float32)
    bg.randomize(hf, 0)
    vt = vc.Lib(args.lib)
    print(vt.version(), "|", bg.cpu_description(), "| threads", args.threads, flush=True)
    from PIL import Image
    rgb = (np.random.default_rng(0).random((side, side, 3)) * 255).astype("uint8")
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="PNG")
    with tempfile.TemporaryDirectory(prefix="vtower-dtypes-") as tmp:
        bg.save_checkpoint(hf, spec["proc"], spec["keep"], Path(tmp))
        del hf
        models = {dt: vt.load(tmp, vc.VT_DEVICE_CPU, code, args.threads)
                  for dt, code in (("f32", vc.VT_DTYPE_F32), ("bf16", vc.VT_DTYPE_BF16))}
    imgs = {dt: m.preprocess(buf.getvalue()) for dt, m in models.items()}
    ms = {"f32": [], "bf16": []}
    for r in range(args.warm + args.rounds):
        for dt in ("f32", "bf16") if r % 2 == 0 else ("bf16", "f32"):
            t = time.perf_counter()
            models[dt].forward([imgs[dt]])
            if r >= args.warm:
                ms[dt].append((time.perf_counter() - t) * 1000)
    for dt, m in models.items():
        bg.free_images(m, [imgs[dt]])
        m.close()
    depth = f"{args.layers} layers (profiling depth)" if args.layers else "full depth"
    print(f"{name}, {side}x{side}, {depth}, {args.rounds} rounds after {args.warm} warm-up")
    for dt, v in ms.items():
        print(f"  {dt:5} ms: " + " ".join(f"{x:.0f}" for x in v) + f"  (median {statistics.median(v):.0f})")
    print(f"  bf16/f32 of the medians: {statistics.median(ms['bf16']) / statistics.median(ms['f32']):.3f}")
    print("  bf16/f32 round by round: " + " ".join(f"{b / f:.3f}" for b, f in zip(ms["bf16"], ms["f32"])))


if __name__ == "__main__":
    main()
