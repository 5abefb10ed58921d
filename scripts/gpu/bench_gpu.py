#!/usr/bin/env python3
"""Side-by-side GPU benchmark, run on the device machine: Hugging Face transformers (PyTorch,
bf16, SDPA attention) vs vtower (bf16, CUDA) on the real-size configurations of
shared/gpu/gpu_anchor.py, random weights, batch 1 and 8, same card, same run. Prints ms per
image for both, their ratio and the achieved TFLOP/s; --json writes the rows.

Families are added here as vtower implements them (see CASES)."""
import argparse
import io
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "scripts"))
import vtower_ctypes as vc  # noqa: E402


def vit_flops(n_tok, d, ffn, layers, gated=False):
    proj = 2 * n_tok * 4 * d * d
    mlp = 2 * n_tok * d * ffn * (3 if gated else 2)
    attn = 2 * 2 * n_tok * n_tok * d
    return layers * (proj + mlp + attn)


LAYERS = 0  # --layers: a shallow stack, to smoke-test this script (e.g. on the CPU)


def siglip_so400m(size):
    from transformers import SiglipImageProcessorPil, SiglipVisionConfig, SiglipVisionModel
    cfg = SiglipVisionConfig(hidden_size=1152, intermediate_size=4304, num_hidden_layers=LAYERS or 27,
                             num_attention_heads=16, image_size=size, patch_size=14)
    model = SiglipVisionModel(cfg)
    proc = SiglipImageProcessorPil(size={"height": size, "width": size})
    n = (size // 14) ** 2

    def hf_call(m, pv):
        return m(pixel_values=pv).last_hidden_state
    return model, proc, size, hf_call, vit_flops(n, 1152, 4304, LAYERS or 27)


CASES = [("siglip-so400m-384", lambda: siglip_so400m(384))]


def cuda_ms(fn, iters, warm):
    for _ in range(warm):
        fn()
    torch.cuda.synchronize()
    out = []
    for _ in range(iters):
        s, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        s.record()
        fn()
        e.record()
        torch.cuda.synchronize()
        out.append(s.elapsed_time(e))
    return statistics.median(out)


def wall_ms(fn, iters, warm):
    for _ in range(warm):
        fn()
    out = []
    for _ in range(iters):
        t = time.perf_counter()
        fn()
        out.append((time.perf_counter() - t) * 1e3)
    return statistics.median(out)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--lib", type=Path, required=True)
    ap.add_argument("--iters", type=int, default=10)
    ap.add_argument("--warm", type=int, default=3)
    ap.add_argument("--only")
    ap.add_argument("--json", type=Path)
    ap.add_argument("--device", choices=["cuda", "cpu"], default="cuda",
                    help="cpu: smoke-test the script without a GPU (f32, wall-clock timing)")
    ap.add_argument("--layers", type=int, default=0, help="override the depth (smoke tests)")
    args = ap.parse_args()
    global LAYERS
    LAYERS = args.layers
    on_gpu = args.device == "cuda"
    tdtype = torch.bfloat16 if on_gpu else torch.float32
    vt_device = vc.VT_DEVICE_CUDA if on_gpu else vc.VT_DEVICE_CPU
    vt_dtype = vc.VT_DTYPE_BF16 if on_gpu else vc.VT_DTYPE_F32
    from PIL import Image
    import numpy as np
    vt = vc.Lib(args.lib)
    print(vt.version(), "| torch", torch.__version__, "|",
          torch.cuda.get_device_name() if on_gpu else "cpu")
    rows = []
    for name, make in CASES:
        if args.only and args.only not in name:
            continue
        torch.manual_seed(0)
        model, proc, size, hf_call, flops = make()
        with tempfile.TemporaryDirectory() as tmp:
            model.to(tdtype).save_pretrained(tmp)
            proc.save_pretrained(tmp)
            hf = model.to(args.device, tdtype).eval()
            hf.set_attn_implementation("sdpa")
            ours = vt.load(tmp, vt_device, vt_dtype)
            rgb = (np.random.default_rng(0).random((size, size, 3)) * 255).astype("uint8")
            buf = io.BytesIO()
            Image.fromarray(rgb).save(buf, format="PNG")
            for batch in (1, 8):
                imgs = [ours.preprocess(buf.getvalue()) for _ in range(batch)]
                pv = torch.tensor(np.stack([np.array(proc(images=[Image.fromarray(rgb)])["pixel_values"][0])] * batch),
                                  device=args.device, dtype=tdtype)
                timer = cuda_ms if on_gpu else wall_ms
                with torch.inference_mode():
                    hf_ms = timer(lambda: hf_call(hf, pv), args.iters, args.warm)
                vt_ms = wall_ms(lambda: ours.vt.lib.vt_embeddings_free(ours.forward_raw(imgs)),
                                args.iters, args.warm)
                row = {"case": name, "batch": batch,
                       "hf_ms_per_image": round(hf_ms / batch, 3),
                       "vtower_ms_per_image": round(vt_ms / batch, 3),
                       "ratio_vtower_over_hf": round(vt_ms / hf_ms, 3),
                       "hf_tflops": round(flops * batch / hf_ms / 1e9, 1),
                       "vtower_tflops": round(flops * batch / vt_ms / 1e9, 1)}
                rows.append(row)
                print(json.dumps(row))
            ours.close()
            del hf
            if on_gpu:
                torch.cuda.empty_cache()
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    sys.exit(main())
