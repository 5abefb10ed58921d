#!/usr/bin/env python3
"""CPU benchmark: vtower (through its C API, via ctypes) vs Hugging Face transformers on the
same random-weight SigLIP vision tower of a real size, in one run, reporting the ratio.

    scripts/bench_cpu.py [--config base|so400m] [--threads N] [--iters K] [--batch B]

Needs the fixture venv (torch + transformers; scripts/gen_fixtures.sh creates it) and a
release build (`cargo build --release`). Both sides get the same number of threads, f32
weights, and the same preprocessed pixels; HF runs eager attention and SDPA.
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
    args = ap.parse_args()

    import numpy as np
    import torch
    from PIL import Image
    from transformers import AutoImageProcessor

    torch.set_num_threads(args.threads)
    sys.path.insert(0, str(ROOT / "scripts"))
    import vtower_ctypes
    vt = vtower_ctypes.Lib(args.lib)
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        hf = build_model(args.config, d)
        proc = AutoImageProcessor.from_pretrained(d, backend="pil")
        data = args.image.read_bytes()

        model = vt.load(d, n_threads=args.threads)
        images = [model.preprocess(data) for _ in range(args.batch)]
        pv = proc(images=[Image.open(args.image)] * args.batch, return_tensors="pt")["pixel_values"]

        results = {}
        with torch.inference_mode():
            for attn in ["eager", "sdpa"]:
                hf.set_attn_implementation(attn)
                results[f"hf_{attn}"] = timeit(lambda: hf(pixel_values=pv), args.iters)
            ref = hf(pixel_values=pv).last_hidden_state[0].numpy()
        results["vtower"] = timeit(lambda: model.forward(images), args.iters)
        ours = model.forward(images[:1])[0]
        rel = float(np.linalg.norm(ours - ref) / np.linalg.norm(ref))
        model.close()

    report = {
        "config": args.config, "threads": args.threads, "batch": args.batch,
        "vtower_version": vt.version(), "torch": torch.__version__,
        "ms_per_image": {k: round(v * 1e3 / args.batch, 2) for k, v in results.items()},
        "ratio_vtower_over_hf_sdpa": round(results["vtower"] / results["hf_sdpa"], 3),
        "ratio_vtower_over_hf_eager": round(results["vtower"] / results["hf_eager"], 3),
        "embeddings_rel_l2": rel,
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    sys.exit(main())
