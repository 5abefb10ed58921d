"""Helpers shared by the fixture scripts of the projector families (Gemma3, LLaVA).

Imported by ``scripts/gen_fixtures_gemma3.py`` and ``scripts/gen_fixtures_llava.py`` (run from the repo root); builds on
``scripts/gen_fixtures.py`` (imported as ``common``) for versions, image lists and native images.

What the helpers guarantee:
* ``loud_init``: every parameter of the vision tower and projector gets "loud" values (as ``common.reinit_loud``, plus
  RMSNorm weights, CLIP's class embedding and Gemma3's raw projection matrix); the language model keeps transformers'
  init (it never influences the image features).
* ``load_f32``: the checkpoint as stored, reloaded in f32 with eager attention, with no missing/unexpected tensors.
* ``rewrite_layout``: a copy of a checkpoint with renamed tensors (Hub / 4.5x layouts), asserted to load into exactly
  the same parameters as the 5.23 save.
* ``write_expected``: expected.safetensors (``pixels/<key>``, ``embeddings/<key>`` and extra f32 tensors) and an
  expected.json in the format of the SigLIP fixtures (``images`` entries with file, key, path, resized, tokens, dim).
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from safetensors.torch import load_file, save_file
from torch import nn

import gen_fixtures as common

REPO = common.REPO
FIXTURES = common.FIXTURES
IMAGES = FIXTURES / "images"
BATCH_TOL = 1e-5


def log(*a):
    print("[vlm_fixtures]", *a, flush=True)


def loud_init(module: nn.Module, seed: int) -> None:
    """Re-initializes every parameter of `module` with loud values: Linear/Conv weights N(0, 1/fan_in), biases
    U(-0.5, 0.5); LayerNorm weight U(0.5, 1.5) with ~10% sign flips, bias N(0, 0.3); RMSNorm weight (Gemma's is used
    as 1 + w) U(0.5, 1.5) with sign flips; position embeddings N(0, 0.5), other embeddings and CLIP's class
    embedding N(0, 1); Gemma3's `mm_input_projection_weight` [in, out] N(0, 1/in). Unknown parameters are an error."""
    r = common.Loud(seed)
    r.modules_(module)
    for name, p in module.named_parameters():
        if id(p) in r.done:
            continue
        if name.endswith("class_embedding") or name.endswith("head.probe"):
            r.normal_(p, 1.0)
        elif name.endswith("mm_input_projection_weight"):
            r.normal_(p, 1.0 / np.sqrt(p.shape[0]))
        else:
            raise RuntimeError(f"parameter {name} not covered by loud_init")
    assert all(id(p) in r.done for p in module.parameters())


def loud_vlm(model: nn.Module, seed: int) -> None:
    """Loud values for the vision tower and the projector of a *ForConditionalGeneration model."""
    loud_init(model.model.vision_tower, seed)
    loud_init(model.model.multi_modal_projector, seed + 1)


def load_f32(d: Path, cls) -> nn.Module:
    return common.load_f32(d, cls, vision=lambda m: m.model.vision_tower)


tensor_names = common.tensor_names
stored_dtypes = common.stored_dtypes
fresh_dir = common.fresh_dir


def check_reload_matches(out_dir: Path, cls, stored: nn.Module) -> None:
    """The f32 reload equals the in-memory (stored-dtype) model upcast to f32, tensor by tensor."""
    common.check_reload_matches(out_dir, cls, stored, load=load_f32)


def rewrite_layout(src: Path, dst: Path, rename, cls) -> None:
    """Copies the checkpoint in `src` (a 5.23 save, one model.safetensors) to `dst` with every tensor name passed
    through `rename`, and checks that transformers loads the copy into exactly the same parameters."""
    sd = load_file(str(src / "model.safetensors"))
    renamed = {rename(k): v for k, v in sd.items()}
    assert len(renamed) == len(sd)
    save_file(renamed, str(dst / "model.safetensors"), metadata={"format": "pt"})
    shutil.copy(src / "config.json", dst / "config.json")
    common.assert_same_params(load_f32(dst, cls), load_f32(src, cls))
    log(f"{dst.name}: transformers loads the renamed layout into identical parameters")


def write_image(path: Path, width: int, height: int, seed: int) -> None:
    """A deterministic RGB PNG of the given size (smooth waves plus noise)."""
    common.write_wave_image(path, width, height, seed, (0.17, 0.04, 0.11, 0.02, 1.3))


def image_entry(path: Path, key: str, width: int, height: int, resized: bool, tokens: int, dim: int,
                **extra) -> dict:
    img = Image.open(path)
    return {
        "file": os.path.relpath(path, IMAGES),
        "key": key,
        "path": common.rel_to_repo(path),
        "mode": img.mode,
        "width": width,
        "height": height,
        "has_alpha": "A" in img.getbands() or img.info.get("transparency") is not None,
        "resized": resized,
        "tokens": tokens,
        "dim": dim,
        **extra,
    }


def health(name: str, embs: dict[str, torch.Tensor]) -> dict:
    """The embeddings are finite, spread out, and depend on the image."""
    std, small, maxabs = common.value_stats(name, embs, (0.1, 20.0), 200.0)
    keys = list(embs)
    rel = []
    for i in range(len(keys)):
        for j in range(i + 1, len(keys)):
            a, b = embs[keys[i]], embs[keys[j]]
            n = min(a.shape[0], b.shape[0])
            rel.append(((a[:n] - b[:n]).abs().mean() / a[:n].abs().mean()).item())
    med = float(np.median(rel)) if rel else float("nan")
    assert not rel or med > 0.05, f"{name}: images give near-identical embeddings (median {med})"
    tok = torch.cat([e for e in embs.values()])
    tok_rel = ((tok - tok.mean(0)).abs().mean() / tok.abs().mean()).item()
    assert tok_rel > 0.05, f"{name}: all tokens alike ({tok_rel})"
    stats = {"std": std, "max_abs": maxabs, "frac_abs_below_1e-3": small, "median_rel_diff_between_images": med,
             "token_spread": tok_rel}
    log(f"{name}: health {json.dumps(stats)}")
    return stats


def write_expected(out_dir: Path, tensors: dict[str, torch.Tensor], doc: dict) -> None:
    save_file({k: v.contiguous().float() for k, v in tensors.items()}, str(out_dir / "expected.safetensors"),
              metadata={"format": "pt"})
    (out_dir / "expected.json").write_text(json.dumps({**doc, "generated_with": common.versions()}, indent=2) + "\n")


def fixture_size(out_dir: Path) -> int:
    return sum(f.stat().st_size for f in out_dir.iterdir())
