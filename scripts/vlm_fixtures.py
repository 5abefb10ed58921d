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
from safetensors import safe_open
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
    g = torch.Generator().manual_seed(seed)
    done: set[int] = set()

    def normal_(p, std):
        with torch.no_grad():
            p.copy_(torch.randn(p.shape, generator=g, dtype=torch.float64).mul_(std).to(p.dtype))
        done.add(id(p))

    def uniform_(p, lo, hi):
        with torch.no_grad():
            p.copy_((torch.rand(p.shape, generator=g, dtype=torch.float64) * (hi - lo) + lo).to(p.dtype))
        done.add(id(p))

    def flip_some_(p):
        flip = torch.rand(p.shape, generator=g) < 0.1
        flip[torch.randint(0, p.numel(), (1,), generator=g)] = True
        with torch.no_grad():
            p[flip] *= -1

    for name, mod in module.named_modules():
        if isinstance(mod, nn.LayerNorm):
            uniform_(mod.weight, 0.5, 1.5)
            flip_some_(mod.weight)
            normal_(mod.bias, 0.3)
        elif type(mod).__name__.endswith("RMSNorm"):
            uniform_(mod.weight, 0.5, 1.5)
            flip_some_(mod.weight)
        elif isinstance(mod, (nn.Linear, nn.Conv2d)):
            normal_(mod.weight, 1.0 / np.sqrt(mod.weight[0].numel()))
            if mod.bias is not None:
                uniform_(mod.bias, -0.5, 0.5)
        elif isinstance(mod, nn.Embedding):
            normal_(mod.weight, 0.5 if name.endswith("position_embedding") else 1.0)
        elif isinstance(mod, nn.MultiheadAttention):
            normal_(mod.in_proj_weight, 1.0 / np.sqrt(mod.in_proj_weight.shape[1]))
            uniform_(mod.in_proj_bias, -0.5, 0.5)
    for name, p in module.named_parameters():
        if id(p) in done:
            continue
        if name.endswith("class_embedding") or name.endswith("head.probe"):
            normal_(p, 1.0)
        elif name.endswith("mm_input_projection_weight"):
            normal_(p, 1.0 / np.sqrt(p.shape[0]))
        else:
            raise RuntimeError(f"parameter {name} not covered by loud_init")
    assert all(id(p) in done for p in module.parameters())


def loud_vlm(model: nn.Module, seed: int) -> None:
    """Loud values for the vision tower and the projector of a *ForConditionalGeneration model."""
    loud_init(model.model.vision_tower, seed)
    loud_init(model.model.multi_modal_projector, seed + 1)


def load_f32(d: Path, cls) -> nn.Module:
    model, info = cls.from_pretrained(d, dtype=torch.float32, attn_implementation="eager", output_loading_info=True)
    bad = {k: v for k, v in info.items() if v}
    assert not bad, f"loading {d}: {bad}"
    model.eval()
    assert model.model.vision_tower.config._attn_implementation == "eager"
    assert all(p.dtype == torch.float32 for p in model.parameters())
    return model


def tensor_names(d: Path) -> list[str]:
    names = []
    for f in sorted(d.glob("model*.safetensors")):
        with safe_open(f, "pt") as h:
            names += list(h.keys())
    return sorted(names)


def stored_dtypes(d: Path) -> set[str]:
    out = set()
    for f in sorted(d.glob("model*.safetensors")):
        with safe_open(f, "pt") as h:
            for k in h.keys():
                out.add(str(h.get_slice(k).get_dtype()))
    return out


def fresh_dir(d: Path) -> Path:
    if d.exists():
        shutil.rmtree(d)
    d.mkdir(parents=True)
    return d


def check_reload_matches(out_dir: Path, cls, stored: nn.Module) -> None:
    """The f32 reload equals the in-memory (stored-dtype) model upcast to f32, tensor by tensor."""
    re = load_f32(out_dir, cls)
    sd_re, sd_st = re.state_dict(), stored.state_dict()
    assert set(sd_re) == set(sd_st), set(sd_re) ^ set(sd_st)
    for k, v in sd_st.items():
        if v.is_floating_point():
            assert torch.equal(sd_re[k], v.float()), k


def rewrite_layout(src: Path, dst: Path, rename, cls) -> None:
    """Copies the checkpoint in `src` (a 5.23 save, one model.safetensors) to `dst` with every tensor name passed
    through `rename`, and checks that transformers loads the copy into exactly the same parameters."""
    sd = load_file(str(src / "model.safetensors"))
    renamed = {rename(k): v for k, v in sd.items()}
    assert len(renamed) == len(sd)
    save_file(renamed, str(dst / "model.safetensors"), metadata={"format": "pt"})
    shutil.copy(src / "config.json", dst / "config.json")
    a, b = load_f32(dst, cls), load_f32(src, cls)
    sa, sb = a.state_dict(), b.state_dict()
    assert set(sa) == set(sb)
    for k in sa:
        assert torch.equal(sa[k], sb[k]), k
    log(f"{dst.name}: transformers loads the renamed layout into identical parameters")


def write_image(path: Path, width: int, height: int, seed: int) -> None:
    """A deterministic RGB PNG of the given size (smooth waves plus noise)."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width].astype(np.float64)
    chans = [255.0 * (0.5 + 0.5 * np.sin(x * (0.17 + 0.04 * c) + y * (0.11 - 0.02 * c) + 1.3 * c)) for c in range(3)]
    img = np.stack(chans, -1) + rng.normal(0, 18, (height, width, 3))
    Image.fromarray(np.clip(np.rint(img), 0, 255).astype(np.uint8), "RGB").save(path, optimize=False)


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
    allv = torch.cat([e.reshape(-1) for e in embs.values()])
    assert torch.isfinite(allv).all(), f"{name}: non-finite embeddings"
    std = allv.std().item()
    small = (allv.abs() < 1e-3).double().mean().item()
    maxabs = allv.abs().max().item()
    assert 0.1 < std < 20.0, f"{name}: embedding std {std}"
    assert small < 0.02, f"{name}: {small:.3%} of values ~0"
    assert maxabs < 200.0, f"{name}: max |x| {maxabs}"
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
