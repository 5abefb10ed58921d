"""What the torch-reference case generators of position-table resampling share (gen_grid_sample_cases.py,
gen_interpolate_aa_cases.py): the random [height, width, channels] tables, the JSON record of a case and the writer
of the case file."""

from __future__ import annotations

import json
import os

import numpy as np
import torch


def random_table(rng: np.random.Generator, shape: tuple[int, int, int]) -> torch.Tensor:
    """A [height, width, channels] float32 table of N(0, 1) values drawn from `rng`."""
    return torch.from_numpy(rng.normal(0.0, 1.0, size=shape).astype(np.float32))


def record(name: str, table: torch.Tensor, expected: torch.Tensor, fields: dict,
           after_table: dict | None = None) -> dict:
    """One case: name, height, width, channels, `fields`, the table (row-major), `after_table`, the expected values
    (row-major)."""
    hh, ww, cc = table.shape
    return {
        "name": name,
        "height": hh,
        "width": ww,
        "channels": cc,
        **fields,
        "table": [float(v) for v in table.reshape(-1).tolist()],
        **(after_table or {}),
        "expected": [float(v) for v in expected.reshape(-1).tolist()],
    }


def write(path: str, doc: dict, n_cases: int) -> None:
    """`doc` as compact JSON (plus a newline) at `path`."""
    with open(path, "w") as f:
        json.dump(doc, f, separators=(",", ":"))
        f.write("\n")
    print(f"wrote {path}: {n_cases} cases, {os.path.getsize(path)} bytes")
