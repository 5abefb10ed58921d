#!/usr/bin/env python3
"""Generate the torch reference of `src/models/interpolate_aa.rs` (antialiased bilinear `F.interpolate`).

Writes `tests/fixtures/resample/interpolate_bilinear_aa.json`: per case a random table `[height, width, channels]`
(channels last, as vtower stores a position table), the output size, and the values
`F.interpolate(table.permute(2, 0, 1)[None], size=(out_height, out_width), mode="bilinear", align_corners=False,
antialias=True)` gives (`[out_height, out_width, channels]`, channels last), computed by torch on the CPU in float32
from the same permuted (channels-last strided) view `Siglip2VisionEmbeddings.resize_positional_embeddings` passes.

Cases: odd table and output sizes, up- and downsampling on each axis, one axis unchanged, extreme ratios (a 31x
downsample), one-column outputs (torch's CPU kernel then repeats output row 0 when the height changes: asserted here,
so that the cases pin that behaviour), and SigLIP2's 16x16 table to NaFlex patch grids.

Run with the fixtures venv (torch): `python scripts/gen_interpolate_aa_cases.py` (also run by
`python -m fixtures siglip2`). Deterministic (fixed seeds, one thread).
"""

import os

import numpy as np
import torch
import torch.nn.functional as F

import table_cases

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "tests", "fixtures", "resample", "interpolate_bilinear_aa.json")


def case(name, rng, shape, out_hw):
    oh, ow = out_hw
    table = table_cases.random_table(rng, shape)
    out = F.interpolate(table.permute(2, 0, 1).unsqueeze(0), size=(oh, ow), mode="bilinear", align_corners=False,
                        antialias=True)
    out = out[0].permute(1, 2, 0).contiguous()  # [oh, ow, C]
    assert out.dtype == torch.float32 and out.shape == (oh, ow, shape[2])
    return table_cases.record(name, table, out, {"out_height": oh, "out_width": ow})


def main() -> None:
    torch.set_num_threads(1)
    rng = np.random.default_rng(2026)
    specs = [
        ("up_5x7_to_9x11", (5, 7, 3), (9, 11)),
        ("down_13x11_to_5x3", (13, 11, 2), (5, 3)),
        ("down_up_7x9_to_3x17", (7, 9, 3), (3, 17)),
        ("up_down_9x7_to_19x5", (9, 7, 2), (19, 5)),
        ("width_only_5x9_to_5x4", (5, 9, 2), (5, 4)),
        ("height_only_9x5_to_13x5", (9, 5, 2), (13, 5)),
        ("identity_3x5", (3, 5, 2), (3, 5)),
        ("to_one_column_7x7_to_5x1", (7, 7, 3), (5, 1)),
        ("to_one_pixel_5x3_to_1x1", (5, 3, 2), (1, 1)),
        ("from_one_row_1x5_to_3x7", (1, 5, 2), (3, 7)),
        ("down_31x_62x3_to_2x3", (62, 3, 2), (2, 3)),
        ("siglip2_16x16_to_7x13", (16, 16, 2), (7, 13)),
        ("siglip2_16x16_to_3x85", (16, 16, 1), (3, 85)),
        ("siglip2_16x16_to_23x11", (16, 16, 1), (23, 11)),
        ("siglip2_4x4_to_5x7", (4, 4, 4), (5, 7)),
        ("siglip2_4x4_to_2x3", (4, 4, 4), (2, 3)),
        ("siglip2_16x16_to_9x1", (16, 16, 2), (9, 1)),
        ("column_5x1_to_3x1", (5, 1, 2), (3, 1)),
        ("column_height_kept_6x5_to_6x1", (6, 5, 2), (6, 1)),
    ]
    cases = [case(name, rng, shape, out) for name, shape, out in specs]
    for c in cases:
        if c["out_width"] == 1 and c["out_height"] != c["height"]:
            # torch's CPU quirk: every row of a one-column output equals row 0.
            row = c["channels"]
            assert c["expected"] == c["expected"][:row] * c["out_height"], c["name"]
    doc = {
        "torch_version": torch.__version__,
        "function": "F.interpolate(table.permute(2, 0, 1)[None] (NCHW view of a channels-last table), "
                    "size=(out_height, out_width), mode='bilinear', align_corners=False, antialias=True) on the CPU "
                    "in float32; table and expected are [H, W, C] row-major",
        "cases": cases,
    }
    table_cases.write(OUT, doc, len(cases))


if __name__ == "__main__":
    main()
