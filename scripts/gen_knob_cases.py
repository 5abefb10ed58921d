#!/usr/bin/env python3
"""Reference outputs of the per-call size knobs of vt_preprocess_params (min_pixels,
max_pixels, max_tokens) for the Qwen2-VL fixture, computed by transformers' own image
processor called with the same kwargs.

Writes tests/fixtures/qwen2_vl_f32/knobs.json (cases: vtower knobs, the transformers kwargs,
image_grid_thw) and knobs.safetensors (each case's pixel_values). max_tokens = T has no
transformers kwarg: its reference is the call with max_pixels = T * (patch * merge)^2, the
largest size smart_resize allows within T tokens.

Run with the fixture venv: /work/.../.venv/bin/python scripts/gen_knob_cases.py
"""
import json
import warnings
from pathlib import Path

import torch
from PIL import Image
from safetensors.torch import save_file
from transformers import AutoImageProcessor

ROOT = Path(__file__).resolve().parent.parent
FIXTURE = ROOT / "tests/fixtures/qwen2_vl_f32"
IMAGES = ROOT / "tests/fixtures/images"

# (image, vtower knobs); the transformers kwargs follow from them.
CASES = [
    ("photo.jpg", {"max_pixels": 1024}),
    ("photo.jpg", {"min_pixels": 4096, "max_pixels": 8192}),
    ("photo.jpg", {"min_pixels": 600}),
    ("photo.jpg", {"max_tokens": 2}),
    ("rgb.png", {"max_tokens": 3}),
    ("jpeg420.jpg", {"min_pixels": 3000, "max_tokens": 12}),
]


def main():
    warnings.simplefilter("ignore", FutureWarning)
    proc = AutoImageProcessor.from_pretrained(FIXTURE, backend="pil")
    factor = proc.patch_size * proc.merge_size
    cases, tensors = [], {}
    for i, (name, knobs) in enumerate(CASES):
        kwargs = {k: v for k, v in knobs.items() if k != "max_tokens"}
        if "max_tokens" in knobs:
            cap = knobs["max_tokens"] * factor * factor
            kwargs["max_pixels"] = min(kwargs.get("max_pixels", proc.size["longest_edge"]), cap)
        image = Image.open(IMAGES / name).convert("RGB")
        out = proc(images=image, return_tensors="pt", **kwargs)
        key = f"case{i}"
        tensors[key] = out["pixel_values"].to(torch.float32).contiguous()
        cases.append({"key": key, "image": name, "knobs": knobs, "kwargs": kwargs,
                      "grid_thw": out["image_grid_thw"][0].tolist()})
    save_file(tensors, FIXTURE / "knobs.safetensors")
    (FIXTURE / "knobs.json").write_text(json.dumps({"cases": cases}, indent=1) + "\n")
    print(json.dumps(cases))


if __name__ == "__main__":
    main()
