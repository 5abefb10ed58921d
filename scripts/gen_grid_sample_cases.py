#!/usr/bin/env python3
"""Generate the torch reference of `src/models/grid_sample.rs` (bicubic `F.grid_sample`).

Writes `tests/fixtures/resample/grid_sample_bicubic.json`: per case a random table
`[height, width, channels]` (channels last, as vtower stores a position table), sample points
`(x, y)` in grid_sample's normalized coordinates, `align_corners`, `padding_mode`, and the values
`F.grid_sample(table.permute(2, 0, 1)[None], grid, mode="bicubic", ...)` gives at each point
(`[points, channels]`), computed by torch on the CPU in float32.

Also `interpolate`: `F.interpolate(mode="bicubic", align_corners=False)` of odd-sized tables (Kimi K2.5's position
table resize, checked here against transformers' own tap gather for it) for `interpolate_bicubic`.

Cases: odd table sizes, GLM-4.xV's own sampling grid (`((i + 0.5) / n) * 2 - 1` in float32, the
one `Glm4vVisionEmbeddings` builds for an `n_h x n_w` patch grid; align_corners False, border
padding) for up- and downsampling, and random points inside and outside [-1, 1] for every
(align_corners, padding) pair the helper implements (zeros, border).

Run with the fixtures venv (torch): `python scripts/gen_grid_sample_cases.py` (also run by
`python -m fixtures glm4v` and `kimi_k25`). Deterministic (fixed seeds, one thread).
"""

import os

import numpy as np
import torch
import torch.nn.functional as F

import table_cases

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "tests", "fixtures", "resample", "grid_sample_bicubic.json")


def glm_points(n_h: int, n_w: int) -> torch.Tensor:
    """The grid of Glm4vVisionEmbeddings for an n_h x n_w patch grid, raster order, float32 as there."""
    h, w = torch.meshgrid(torch.arange(n_h), torch.arange(n_w), indexing="ij")
    h, w = h.flatten(), w.flatten()
    th = torch.full_like(h, n_h).to(torch.float32)
    tw = torch.full_like(w, n_w).to(torch.float32)
    norm_w = ((w + 0.5) / tw) * 2 - 1
    norm_h = ((h + 0.5) / th) * 2 - 1
    return torch.stack((norm_w, norm_h), dim=-1)


def case(name, rng, shape, points, align_corners, padding):
    table = table_cases.random_table(rng, shape)
    grid = points.to(torch.float32).reshape(1, -1, 1, 2)
    out = F.grid_sample(table.permute(2, 0, 1)[None], grid, mode="bicubic", align_corners=align_corners,
                        padding_mode=padding)
    out = out[0, :, :, 0].permute(1, 0).contiguous()  # [points, channels]
    assert out.dtype == torch.float32
    return table_cases.record(name, table, out, {"align_corners": align_corners, "padding_mode": padding},
                              {"points": [[float(x), float(y)] for x, y in points.tolist()]})


def interpolate_case(name, rng, shape, rows, cols):
    """F.interpolate(bicubic, align_corners=False) of a [h, w, c] table to rows x cols, checked against Kimi K2.5's
    own form of it (transformers' `get_vision_interpolation_indices_and_weights` taps through `F.embedding_bag`)."""
    from transformers.vision_utils import get_vision_interpolation_indices_and_weights

    hh, ww, cc = shape
    table = table_cases.random_table(rng, shape)
    out = F.interpolate(table.permute(2, 0, 1)[None], size=(rows, cols), mode="bicubic", align_corners=False)
    out = out[0].permute(1, 2, 0).reshape(rows * cols, cc).contiguous()
    if hh == ww:
        idx, wts = get_vision_interpolation_indices_and_weights(torch.tensor([[1, rows, cols]]), hh, mode="bicubic")
        moon = F.embedding_bag(idx, table.reshape(hh * ww, cc), per_sample_weights=wts, mode="sum")
        assert torch.allclose(moon, out, rtol=1e-5, atol=1e-5), (name, (moon - out).abs().max())
    return table_cases.record(name, table, out, {"rows": rows, "cols": cols})


def main() -> None:
    torch.set_num_threads(1)
    rng = np.random.default_rng(2020)
    cases = [
        case("glm_upsample_5x7_to_9x11", rng, (5, 7, 3), glm_points(9, 11), False, "border"),
        case("glm_downsample_7x7_to_3x5", rng, (7, 7, 4), glm_points(3, 5), False, "border"),
        case("glm_identity_5x5", rng, (5, 5, 2), glm_points(5, 5), False, "border"),
        case("glm_single_row_3x9_to_1x13", rng, (3, 9, 2), glm_points(1, 13), False, "border"),
    ]
    gen = torch.Generator().manual_seed(7)
    for ac in (False, True):
        for pad in ("border", "zeros"):
            pts = torch.rand((23, 2), generator=gen) * 2.6 - 1.3  # inside and outside [-1, 1]
            cases.append(case(f"random_{pad}_ac{int(ac)}_3x5", rng, (3, 5, 3), pts, ac, pad))
    interpolate = [
        interpolate_case("moonvit_up_5x5_to_7x9", rng, (5, 5, 3), 7, 9),
        interpolate_case("moonvit_down_7x7_to_3x5", rng, (7, 7, 2), 3, 5),
        interpolate_case("moonvit_identity_5x5", rng, (5, 5, 2), 5, 5),
        interpolate_case("moonvit_one_row_5x5_to_1x4", rng, (5, 5, 2), 1, 4),
        interpolate_case("moonvit_one_col_3x3_to_6x1", rng, (3, 3, 2), 6, 1),
        interpolate_case("odd_3x7_to_10x4", rng, (3, 7, 3), 10, 4),
    ]
    doc = {
        "torch_version": torch.__version__,
        "function": "F.grid_sample(table[None] (NCHW), grid [1, P, 1, 2] as (x, y), mode='bicubic', "
                    "align_corners, padding_mode) on the CPU in float32; expected is [P, C]",
        "cases": cases,
        "interpolate_function": "F.interpolate(table[None] (NCHW), size=(rows, cols), mode='bicubic', "
                                "align_corners=False) on the CPU in float32; expected is [rows * cols, C]",
        "interpolate": interpolate,
    }
    table_cases.write(OUT, doc, len(cases))


if __name__ == "__main__":
    main()
