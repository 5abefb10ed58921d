#!/usr/bin/env python3
"""Generate the torchvision resize corpus for `src/preprocess/tv_resize.rs`.

Writes `tests/fixtures/tv_resize/cases.bin` (raw RGB bytes) and `cases.json` (manifest with byte offsets). Each case
is `torchvision.transforms.v2.functional.resize(frames, [h, w], interpolation, antialias=True)` of a uint8 CPU tensor
`[1, 3, H, W]`, as the Hugging Face video processors call it. Needs torch + torchvision (the fixtures venv plus
`torchvision`, see scripts/requirements-fixtures.txt). Deterministic (numpy RandomState).
"""

import json
import os

import numpy as np
import torch
import torchvision
import torchvision.transforms.v2.functional as F

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "tests", "fixtures", "tv_resize")


def image(w, h, seed):
    rng = np.random.RandomState(seed)
    y, x = np.mgrid[0:h, 0:w].astype(np.float64)
    base = np.stack([255 * x / max(w - 1, 1), 127 + 120 * np.sin(x / 3 + y / 5), 255 * y / max(h - 1, 1)], -1)
    base += rng.normal(0, 30, base.shape)
    base[:, w // 3 : w // 3 + max(1, w // 7)] = 255
    base[(2 * h) // 3 : (2 * h) // 3 + 1, :, 1] = 0
    return np.clip(np.rint(base), 0, 255).astype(np.uint8)


def main():
    cap = torch.backends.cpu.get_cpu_capability()
    interps = [("bicubic", F.InterpolationMode.BICUBIC)]
    if cap in ("AVX2", "AVX512"):  # bilinear is native uint8 only there (else torchvision goes through float)
        interps.append(("bilinear", F.InterpolationMode.BILINEAR))
    sizes = [
        ((37, 23), (56, 28)), ((37, 23), (16, 16)), ((53, 41), (32, 48)), ((64, 48), (48, 32)),
        ((101, 67), (32, 16)), ((9, 200), (16, 96)), ((200, 9), (112, 16)), ((5, 4), (48, 48)),
        ((31, 31), (31, 16)), ((31, 31), (16, 31)), ((80, 60), (400, 33)), ((17, 250), (3, 250)),
        ((1, 37), (5, 11)), ((37, 1), (9, 2)), ((160, 90), (112, 64)), ((333, 7), (32, 32)),
    ]
    blob = bytearray()
    cases = []
    for seed, ((iw, ih), (ow, oh)) in enumerate(sizes):
        src = image(iw, ih, seed)
        in_off = len(blob)
        blob += src.tobytes()
        t = torch.from_numpy(src).permute(2, 0, 1).unsqueeze(0).contiguous()
        for name, mode in interps:
            out = F.resize(t, [oh, ow], interpolation=mode, antialias=True)
            assert out.dtype == torch.uint8
            arr = out[0].permute(1, 2, 0).contiguous().numpy()
            out_off = len(blob)
            blob += arr.tobytes()
            cases.append(dict(interp=name, in_w=iw, in_h=ih, out_w=ow, out_h=oh, in_offset=in_off, out_offset=out_off))
    os.makedirs(OUT, exist_ok=True)
    with open(os.path.join(OUT, "cases.bin"), "wb") as f:
        f.write(bytes(blob))
    with open(os.path.join(OUT, "cases.json"), "w") as f:
        json.dump(dict(torch=torch.__version__, torchvision=torchvision.__version__, cpu_capability=cap, cases=cases), f, indent=1)
    print(len(cases), "cases,", len(blob), "bytes, cpu", cap)


if __name__ == "__main__":
    main()
