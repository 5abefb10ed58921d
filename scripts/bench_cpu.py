#!/usr/bin/env python3
"""CPU benchmark: vtower (through its C API, via ctypes) vs Hugging Face transformers on the
same random-weight SigLIP vision tower of a real size, in one run, reporting the ratio.

    scripts/bench_cpu.py [--config base|so400m] [--threads N] [--iters K] [--batch B]
                         [--dtypes f32,bf16]

Needs the fixture venv (torch + transformers; scripts/gen_fixtures.sh creates it) and a
release build (`cargo build --release`). Both sides get the same number of threads, weights
and preprocessed pixels; HF runs eager attention and SDPA, in each dtype of --dtypes (bf16:
`model.to(torch.bfloat16)` with bf16 pixels, PyTorch's oneDNN kernels; vtower: VT_DTYPE_BF16,
its bf16 CPU kernels at the level `VTOWER_CPU_ISA` allows). Every report names the CPU, its
bf16-relevant flags and the vtower kernel level. Embedding errors are against HF f32.
"""
import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

CONFIGS = {
    # google/siglip-base-patch16-224 and google/siglip-so400m-patch14-384 vision shapes.
    "base": dict(hidden_size=768, intermediate_size=3072, num_hidden_layers=12,
                 num_attention_heads=12, patch_size=16, image_size=224),
    "so400m": dict(hidden_size=1152, intermediate_size=4304, num_hidden_layers=27,
                   num_attention_heads=16, patch_size=14, image_size=384),
}


def build_model(cfg_name: str, out: Path):
    import torch
    from transformers import SiglipImageProcessorPil, SiglipVisionConfig, SiglipVisionModel
    torch.manual_seed(0)
    cfg = SiglipVisionConfig(**CONFIGS[cfg_name])
    model = SiglipVisionModel(cfg).eval()
    model.save_pretrained(out)
    size = cfg.image_size
    SiglipImageProcessorPil(size={"height": size, "width": size}).save_pretrained(out)
    return model


def cpu_description():
    from machine_info import cpu
    return cpu()


def timeit(fn, iters):
    fn()  # warm-up
    times = []
    for _ in range(iters):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--config", choices=sorted(CONFIGS), default="base")
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--iters", type=int, default=5)
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--lib", type=Path, default=ROOT / "target/release/libvtower.so")
    ap.add_argument("--image", type=Path, default=ROOT / "tests/fixtures/images/photo.jpg")
    ap.add_argument("--dtypes", default="f32", help="comma-separated: f32, bf16")
    args = ap.parse_args()

    import numpy as np
    import torch
    from PIL import Image
    from transformers import AutoImageProcessor

    torch.set_num_threads(args.threads)
    sys.path.insert(0, str(ROOT / "scripts"))
    import vtower_ctypes
    vt = vtower_ctypes.Lib(args.lib)
    vt_dtypes = {"f32": vtower_ctypes.VT_DTYPE_F32, "bf16": vtower_ctypes.VT_DTYPE_BF16}
    torch_dtypes = {"f32": torch.float32, "bf16": torch.bfloat16}
    rows = {}
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        hf = build_model(args.config, d)
        proc = AutoImageProcessor.from_pretrained(d, backend="pil")
        data = args.image.read_bytes()
        pv = proc(images=[Image.open(args.image)] * args.batch, return_tensors="pt")["pixel_values"]
        with torch.inference_mode():
            ref = hf(pixel_values=pv).last_hidden_state[0].float().numpy()
        # f32 first: the HF model is converted in place, and back only at the end.
        for dtype in sorted(set(args.dtypes.split(",")), key=["f32", "bf16"].index):
            hf_d = hf.to(torch_dtypes[dtype])
            pv_d = pv.to(torch_dtypes[dtype])
            results = {}
            with torch.inference_mode():
                for attn in ["eager", "sdpa"]:
                    hf_d.set_attn_implementation(attn)
                    results[f"hf_{attn}"] = timeit(lambda: hf_d(pixel_values=pv_d), args.iters)
                hf_out = hf_d(pixel_values=pv_d).last_hidden_state[0].float().numpy()
            model = vt.load(d, dtype=vt_dtypes[dtype], n_threads=args.threads)
            images = [model.preprocess(data) for _ in range(args.batch)]
            results["vtower"] = timeit(lambda: model.forward(images), args.iters)
            ours = model.forward(images[:1])[0]
            model.close()
            rel = lambda x: float(np.linalg.norm(x - ref) / np.linalg.norm(ref))
            rows[dtype] = {
                "ms_per_image": {k: round(v * 1e3 / args.batch, 2) for k, v in results.items()},
                "ratio_vtower_over_hf_sdpa": round(results["vtower"] / results["hf_sdpa"], 3),
                "ratio_vtower_over_hf_eager": round(results["vtower"] / results["hf_eager"], 3),
                "vtower_rel_l2_vs_hf_f32": rel(ours),
                "hf_rel_l2_vs_hf_f32": rel(hf_out),
            }
        hf.to(torch.float32)

    report = {
        "config": args.config, "threads": args.threads, "batch": args.batch,
        "vtower_version": vt.version(), "torch": torch.__version__,
        "machine": cpu_description(),
        "rows": rows,
    }
    if "f32" in rows and "bf16" in rows:
        report["vtower_bf16_over_vtower_f32"] = round(
            rows["bf16"]["ms_per_image"]["vtower"] / rows["f32"]["ms_per_image"]["vtower"], 3)
    print(json.dumps(report, indent=2))
    print(f"\n{cpu_description()}")
    print("| dtype | vtower ms | HF sdpa ms | HF eager ms | vtower/HF sdpa | vtower/HF eager | vtower rel L2 |")
    print("|---|---|---|---|---|---|---|")
    for dtype, r in rows.items():
        ms = r["ms_per_image"]
        print(f"| {dtype} | {ms['vtower']} | {ms['hf_sdpa']} | {ms['hf_eager']} | "
              f"{r['ratio_vtower_over_hf_sdpa']} | {r['ratio_vtower_over_hf_eager']} | "
              f"{r['vtower_rel_l2_vs_hf_f32']:.2e} |")


if __name__ == "__main__":
    sys.exit(main())
