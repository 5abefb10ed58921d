#!/usr/bin/env python3
"""Generate the Pillow parity corpus for `src/preprocess/resample.rs`.

Writes `tests/fixtures/resample/cases.bin` (raw bytes) and `cases.json` (a manifest whose
entries point into the .bin with byte offsets). Every input is a tightly packed 8-bit RGB
image; every case is `Image.resize((width, height), resample=filter, reducing_gap=None)` of
one input, as Hugging Face transformers' PIL backend calls it.

Run with the project's venv (Pillow and numpy): `.venv/bin/python scripts/gen_resample_cases.py`.
The corpus is deterministic (fixed seeds, numpy's legacy RandomState).
"""

import json
import os
import sys

import numpy as np
import PIL
from PIL import Image

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT_DIR = os.path.join(ROOT, "tests", "fixtures", "resample")

FILTERS = [
    ("nearest", Image.Resampling.NEAREST),
    ("lanczos", Image.Resampling.LANCZOS),
    ("bilinear", Image.Resampling.BILINEAR),
    ("bicubic", Image.Resampling.BICUBIC),
    ("box", Image.Resampling.BOX),
    ("hamming", Image.Resampling.HAMMING),
]


def mixed(width, height, seed):
    """Smooth gradients + noise + hard edges + saturated blocks (to provoke overshoot)."""
    rng = np.random.RandomState(seed)
    y, x = np.mgrid[0:height, 0:width].astype(np.float64)
    fx = x / max(width - 1, 1)
    fy = y / max(height - 1, 1)
    r = 255.0 * fx
    g = 127.5 + 127.5 * np.sin(2.0 * np.pi * (fx * 1.5 + fy * 0.7))
    b = 255.0 * fy * (1.0 - fx)
    img = np.stack([r, g, b], axis=-1)
    img += rng.normal(0.0, 12.0, size=img.shape)
    # A hard vertical edge, a hard horizontal edge and a black/white checker block.
    img[:, width // 3 : width // 3 + max(1, width // 8), :] = 255.0
    img[(2 * height) // 3 : (2 * height) // 3 + max(1, height // 10), :, 1] = 0.0
    cx0, cy0 = (3 * width) // 5, height // 5
    for yy in range(cy0, min(height, cy0 + max(2, height // 4))):
        for xx in range(cx0, min(width, cx0 + max(2, width // 4))):
            img[yy, xx, :] = 255.0 if (xx + yy) % 2 else 0.0
    return np.clip(np.rint(img), 0, 255).astype(np.uint8)


def noise(width, height, seed):
    rng = np.random.RandomState(seed)
    return rng.randint(0, 256, size=(height, width, 3)).astype(np.uint8)


def checker(width, height, cell):
    y, x = np.mgrid[0:height, 0:width]
    v = (((x // cell) + (y // cell)) % 2 * 255).astype(np.uint8)
    img = np.stack([v, 255 - v, v // 2 + 64], axis=-1)
    return img.astype(np.uint8)


def main():
    inputs = {
        "mixed_64x48": mixed(64, 48, 1),
        "mixed_87x61": mixed(87, 61, 2),
        "mixed_160x60": mixed(160, 60, 3),
        "mixed_200x9": mixed(200, 9, 4),
        "noise_5x4": noise(5, 4, 5),
        "checker_16x16": checker(16, 16, 1),
        "checker_24x20": checker(24, 20, 3),
        "col_1x37": mixed(1, 37, 6),
        "row_37x1": mixed(37, 1, 7),
        "row_97x1": mixed(97, 1, 8),
        "col_1x89": mixed(1, 89, 9),
        "single_1x1": noise(1, 1, 10),
        # Red 0 -> 54: at 2 -> 179 pixels, output 52's red channel depends on Pillow's Hamming
        # window using float (f32) constants 0.54f / 0.46f rather than doubles.
        "hamming_2x1": np.array([[[0, 200, 17], [54, 3, 250]]], dtype=np.uint8),
    }
    # (input, [(width, height), ...]) run with every filter. Since Pillow 13 the vertical pass
    # runs first when the height shrinks by more than twice as many pixels as the width
    # (python-pillow/Pillow#9549): 64x48->60x9, 24x20->31x11 and 16x16->14x11 take that order,
    # 16x16->14x12 sits on the boundary and does not.
    targets = [
        ("mixed_64x48", [(31, 23), (7, 5), (60, 9), (13, 48), (35, 22), (1, 1), (3, 70)]),
        ("mixed_87x61", [(31, 20), (11, 52), (33, 19)]),
        ("mixed_160x60", [(7, 4), (24, 15)]),
        ("mixed_200x9", [(7, 9), (7, 3), (13, 2), (200, 2)]),
        ("noise_5x4", [(27, 23), (33, 4), (1, 1), (2, 7), (5, 13)]),
        ("checker_16x16", [(21, 19), (9, 9), (16, 16), (15, 17), (14, 12), (14, 11)]),
        ("checker_24x20", [(7, 6), (31, 11)]),
        ("col_1x37", [(1, 5), (3, 11), (1, 80)]),
        ("row_37x1", [(5, 1), (40, 2), (37, 3)]),
        ("single_1x1", [(1, 1), (4, 3)]),
        ("hamming_2x1", [(179, 1)]),
    ]
    # 1-D sweeps: many scale factors cheaply (coefficient tables of both axes).
    rng = np.random.RandomState(1234)
    row_widths = sorted(set([1, 2, 3, 48, 49, 95, 96, 98, 99]
                            + list(rng.randint(1, 97, size=18)) + list(rng.randint(97, 200, size=3))))
    col_heights = sorted(set([1, 2, 44, 45, 88, 90]
                             + list(rng.randint(1, 89, size=16)) + list(rng.randint(89, 180, size=3))))
    targets.append(("row_97x1", [(int(w), 1) for w in row_widths]))
    targets.append(("col_1x89", [(1, int(h)) for h in col_heights]))

    blob = bytearray()
    manifest_inputs = []
    index = {}
    for name, arr in inputs.items():
        h, w, _ = arr.shape
        data = np.ascontiguousarray(arr).tobytes()
        index[name] = len(manifest_inputs)
        manifest_inputs.append([name, w, h, len(blob)])
        blob += data

    cases = []
    for input_name, sizes in targets:
        arr = inputs[input_name]
        im = Image.fromarray(arr, mode="RGB")
        for fname, fcode in FILTERS:
            for (w, h) in sizes:
                out = im.resize((w, h), resample=fcode, reducing_gap=None)
                assert out.mode == "RGB" and out.size == (w, h)
                data = np.asarray(out, dtype=np.uint8).tobytes()
                assert len(data) == w * h * 3
                cases.append([f"{input_name}->{w}x{h}/{fname}", index[input_name], int(fcode), w, h, len(blob)])
                blob += data

    manifest = {
        "description": "Pillow Image.resize(size, filter, reducing_gap=None) parity corpus. "
        "inputs: [name, width, height, offset]; cases: [name, input index, PIL filter code, "
        "width, height, offset]; offsets are bytes into cases.bin; every image is packed "
        "8-bit RGB, row-major, width*height*3 bytes",
        "pillow_version": PIL.__version__,
        "numpy_version": np.__version__,
        "bin_len": len(blob),
        "inputs": manifest_inputs,
        "cases": cases,
    }
    os.makedirs(OUT_DIR, exist_ok=True)
    with open(os.path.join(OUT_DIR, "cases.bin"), "wb") as f:
        f.write(bytes(blob))
    with open(os.path.join(OUT_DIR, "cases.json"), "w") as f:
        json.dump(manifest, f, separators=(",", ":"))
        f.write("\n")
    json_len = os.path.getsize(os.path.join(OUT_DIR, "cases.json"))
    print(
        f"{len(cases)} cases, {len(manifest_inputs)} inputs, bin {len(blob)} bytes, "
        f"json {json_len} bytes (Pillow {PIL.__version__})",
        file=sys.stderr,
    )


if __name__ == "__main__":
    main()
