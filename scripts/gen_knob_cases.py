#!/usr/bin/env python3
"""Reference outputs of the per-call size knobs of vt_preprocess_params (min_pixels,
max_pixels, longest_edge, max_tokens), computed by transformers' own processors called with
the same kwargs.

Qwen2-VL: writes tests/fixtures/qwen2_vl_f32/knobs.json (cases: vtower knobs, the
transformers kwargs, image_grid_thw) and knobs.safetensors (each case's pixel_values).
max_tokens = T has no transformers kwarg: its reference is the call with
max_pixels = T * (patch * merge)^2, the largest size smart_resize allows within T tokens.

Pixtral / Mistral3: writes knobs.json (cases: vtower knobs, kwargs, n_tokens = the number of
image tokens in the processor's input_ids) and knobs.safetensors in
tests/fixtures/{pixtral_llava_f32,mistral3_bf16}, from the real PixtralProcessor called with
size={"longest_edge": e}. max_tokens = T: the largest longest edge e (at most the given or
configured one) whose processor output has at most T image tokens, found by calling the
processor for every e from the top down.

Run with the fixture venv: /work/.../.venv/bin/python scripts/gen_knob_cases.py
"""
import json
import warnings
from pathlib import Path

import torch
from PIL import Image
from safetensors.torch import save_file
from transformers import AutoImageProcessor, AutoProcessor

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


# (fixture, image, vtower knobs) for the Pixtral-style processors (longest edge 64 in both).
PIXTRAL_CASES = {
    "pixtral_llava_f32": [
        ("photo.jpg", {"longest_edge": 40}),
        ("photo.jpg", {"longest_edge": 200}),
        ("jpeg420.jpg", {"max_tokens": 20}),
        ("rgba.png", {"longest_edge": 30, "max_tokens": 8}),
    ],
    "mistral3_bf16": [
        ("photo.jpg", {"longest_edge": 40}),
        ("photo.jpg", {"max_tokens": 5}),
        ("rgb.png", {"max_tokens": 7}),
        ("jpeg420.jpg", {"longest_edge": 100, "max_tokens": 11}),
    ],
}


def pixtral_call(proc, image, edge):
    kwargs = {} if edge is None else {"size": {"longest_edge": edge}}
    out = proc(text="[IMG]", images=[image], return_tensors="pt", **kwargs)
    n = int((out["input_ids"][0] == proc.image_token_id).sum())
    return out, n, kwargs


def pixtral_cases(name):
    fixture = ROOT / "tests/fixtures" / name
    proc = AutoProcessor.from_pretrained(fixture, backend="pil")
    cases, tensors = [], {}
    for i, (image_name, knobs) in enumerate(PIXTRAL_CASES[name]):
        # The processor converts (do_convert_rgb: RGBA composited on white), as vtower does.
        image = Image.open(IMAGES / image_name)
        image.load()
        top = knobs.get("longest_edge", proc.image_processor.size.longest_edge)
        edge = knobs.get("longest_edge")
        if "max_tokens" in knobs:
            edge = next(e for e in range(top, 0, -1)
                        if pixtral_call(proc, image, e)[1] <= knobs["max_tokens"])
        out, n, kwargs = pixtral_call(proc, image, edge)
        key = f"case{i}"
        tensors[key] = out["pixel_values"][0].to(torch.float32).contiguous()
        cases.append({"key": key, "image": image_name, "knobs": knobs, "kwargs": kwargs,
                      "image_size": out["image_sizes"][0].tolist(), "n_tokens": n})
    save_file(tensors, fixture / "knobs.safetensors")
    (fixture / "knobs.json").write_text(json.dumps({"cases": cases}, indent=1) + "\n")
    print(name, json.dumps(cases))


def main():
    warnings.simplefilter("ignore", FutureWarning)
    warnings.simplefilter("ignore", UserWarning)
    for name in PIXTRAL_CASES:
        pixtral_cases(name)
    qwen_cases()


def qwen_cases():
    """Writes knobs.json / knobs.safetensors of tests/fixtures/qwen2_vl_f32 (see the top)."""
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
