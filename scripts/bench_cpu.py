#!/usr/bin/env python3
"""CPU benchmark: vtower (through its C API, via ctypes) vs Hugging Face transformers on the
same random-weight SigLIP vision tower of a real size, in one run, reporting the ratio.

    scripts/bench_cpu.py [--config base|so400m] [--threads N] [--iters K] [--batch B]

Needs the fixture venv (torch + transformers; scripts/gen_fixtures.sh creates it) and a
release build (`cargo build --release`). Both sides get the same number of threads, f32
weights, and the same preprocessed pixels; HF runs eager attention and SDPA.
"""
import argparse
import ctypes
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


class VtLib:
    def __init__(self, path: Path):
        lib = ctypes.CDLL(str(path))
        lib.vt_load_params_default.restype = LoadParams
        lib.vt_load.argtypes = [ctypes.c_char_p, ctypes.POINTER(LoadParams),
                                ctypes.POINTER(ctypes.c_void_p), ctypes.POINTER(ctypes.c_void_p)]
        lib.vt_preprocess.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_size_t,
                                      ctypes.POINTER(ctypes.c_void_p), ctypes.POINTER(ctypes.c_void_p)]
        lib.vt_forward.argtypes = [ctypes.c_void_p, ctypes.POINTER(ctypes.c_void_p), ctypes.c_size_t,
                                   ctypes.POINTER(ctypes.c_void_p), ctypes.POINTER(ctypes.c_void_p)]
        lib.vt_image_pixels.argtypes = [ctypes.c_void_p, ctypes.POINTER(ctypes.POINTER(ctypes.c_float)),
                                        ctypes.POINTER(ctypes.c_size_t), ctypes.POINTER(ctypes.c_void_p)]
        lib.vt_embeddings_data.restype = ctypes.POINTER(ctypes.c_float)
        lib.vt_embeddings_data.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
        lib.vt_embeddings_free.argtypes = [ctypes.c_void_p]
        lib.vt_error_message.restype = ctypes.c_char_p
        lib.vt_error_message.argtypes = [ctypes.c_void_p]
        lib.vt_version.restype = ctypes.c_char_p
        self.lib = lib

    def check(self, status, err):
        if status != 0:
            raise RuntimeError(self.lib.vt_error_message(err).decode())


class LoadParams(ctypes.Structure):
    _fields_ = [("struct_size", ctypes.c_uint32), ("device", ctypes.c_uint32),
                ("device_ordinal", ctypes.c_int32), ("n_threads", ctypes.c_uint32),
                ("max_image_pixels", ctypes.c_uint64)]


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
    vt = VtLib(args.lib)
    lib = vt.lib
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        hf = build_model(args.config, d)
        proc = AutoImageProcessor.from_pretrained(d, backend="pil")
        data = args.image.read_bytes()

        params = lib.vt_load_params_default()
        params.n_threads = args.threads
        model, err = ctypes.c_void_p(), ctypes.c_void_p()
        vt.check(lib.vt_load(str(d).encode(), ctypes.byref(params), ctypes.byref(model), ctypes.byref(err)), err)
        images = (ctypes.c_void_p * args.batch)()
        for i in range(args.batch):
            img = ctypes.c_void_p()
            vt.check(lib.vt_preprocess(model, data, len(data), ctypes.byref(img), ctypes.byref(err)), err)
            images[i] = img.value

        pv = proc(images=[Image.open(args.image)] * args.batch, return_tensors="pt")["pixel_values"]
        px_ptr, px_len = ctypes.POINTER(ctypes.c_float)(), ctypes.c_size_t()
        vt.check(lib.vt_image_pixels(images[0], ctypes.byref(px_ptr), ctypes.byref(px_len), ctypes.byref(err)), err)
        ours_px = np.ctypeslib.as_array(px_ptr, shape=(px_len.value,))
        px_diff = float(np.abs(ours_px - pv[0].numpy().ravel()).max())

        def run_vt():
            emb, e = ctypes.c_void_p(), ctypes.c_void_p()
            vt.check(lib.vt_forward(model, images, args.batch, ctypes.byref(emb), ctypes.byref(e)), e)
            return emb

        results = {}
        with torch.inference_mode():
            for attn in ["eager", "sdpa"]:
                hf.set_attn_implementation(attn)
                results[f"hf_{attn}"] = timeit(lambda: hf(pixel_values=pv), args.iters)
            ref = hf(pixel_values=pv).last_hidden_state[0].numpy()
        results["vtower"] = timeit(lambda: lib.vt_embeddings_free(run_vt()), args.iters)
        emb = run_vt()
        n, dim = ref.shape
        ours = np.ctypeslib.as_array(lib.vt_embeddings_data(emb, 0), shape=(n * dim,)).reshape(n, dim)
        rel = float(np.linalg.norm(ours - ref) / np.linalg.norm(ref))
        lib.vt_embeddings_free(emb)

    report = {
        "config": args.config, "threads": args.threads, "batch": args.batch,
        "vtower_version": lib.vt_version().decode(), "torch": torch.__version__,
        "ms_per_image": {k: round(v * 1e3 / args.batch, 2) for k, v in results.items()},
        "ratio_vtower_over_hf_sdpa": round(results["vtower"] / results["hf_sdpa"], 3),
        "ratio_vtower_over_hf_eager": round(results["vtower"] / results["hf_eager"], 3),
        "pixels_max_abs_diff": px_diff, "embeddings_rel_l2": rel,
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    sys.exit(main())
