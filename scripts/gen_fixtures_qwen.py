#!/usr/bin/env python3
"""Generate the Qwen2-VL / Qwen2.5-VL reference fixtures of vtower with Hugging Face transformers.

Run from the repository root with the pinned venv (scripts/gen_fixtures.sh does it):

    python scripts/gen_fixtures_qwen.py

CI never runs this; the outputs are committed. Deterministic (fixed seeds, one CPU thread).

Produces:

* ``tests/fixtures/qwen2_vl_f32/``     Qwen2VLForConditionalGeneration (tiny LM + vision tower), f32, saved by
                                       transformers 5.23 ``save_pretrained``: tensors ``visual.*``, ``model.*``,
                                       ``lm_head.weight`` (= the Hub layout), config with ``text_config`` nested
                                       (5.x), ``preprocessor_config.json`` with ``size.{shortest_edge,longest_edge}``.
* ``tests/fixtures/qwen2_5_vl_bf16/``  Qwen2_5_VLForConditionalGeneration, bf16, tensors rewritten to the
                                       transformers 4.5x layout (``model.visual.*``, ``model.language_model.*``,
                                       ``lm_head.weight``), config rewritten to the Hub form (text params at the top
                                       level, ``rope_scaling`` type mrope, vision ``in_chans``, no vision
                                       ``rope_parameters``), ``preprocessor_config.json`` in the Hub form (top-level
                                       ``min_pixels``/``max_pixels``), special token ids that are not the defaults.
                                       The script asserts that transformers loads it with no missing/unexpected keys
                                       and gives the same parameters and outputs as the 5.23 save it came from.

Tiny towers: patch 8, merge 2, temporal patch 2 (pixels rows of 3*2*8*8 = 384 values), min/max pixels small so
that images give 4..48 patches; Qwen2.5-VL window_size 32 = 2x2 merged tokens per window, so most images have
partial last windows, fullatt_block_indexes = [1] of depth 3.

Images per fixture: a few from tests/fixtures/images plus images written into the fixture folder whose sizes hit
the interesting smart_resize branches (native size: no resize; below min_pixels; above max_pixels with the
``max(factor, ...)`` guard; a banker's-rounding tie; an odd aspect ratio).

expected.safetensors: f32 ``pixels/<key>`` = the PIL-backend processor's ``pixel_values`` for that image alone
([n_patches, 384]) and ``embeddings/<key>`` = ``model.model.get_image_features(pixel_values, image_grid_thw)
.pooler_output[0]`` (what the language model receives), f32 eager, weights = stored checkpoint upcast to f32.

expected.json: the siglip fixtures' format (family, images[{file, key, path, resized, tokens, dim, ...}], ...),
plus per image ``grid_thw`` (patch units, as the processor returns it) and ``resized_to`` [h, w], and ``mrope``:
a prompt of text, image A, text, image B, text with its ``input_ids``, ``mm_token_type_ids``, ``image_grid_thw``
and the ``position_ids`` [3][L] that ``Qwen2VLModel.get_rope_index`` (resp. Qwen2.5-VL's) assigns, and ``tokens``
(image_token_id, vision_start_token_id, vision_end_token_id of config.json).
"""

from __future__ import annotations

import json
import math
import os
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from safetensors.torch import load_file, save_file
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
import gen_fixtures as common  # noqa: E402

from transformers import (  # noqa: E402
    AutoImageProcessor,
    Qwen2_5_VLConfig,
    Qwen2_5_VLForConditionalGeneration,
    Qwen2VLConfig,
    Qwen2VLForConditionalGeneration,
    Qwen2VLImageProcessorPil,
)

FIXTURES = common.FIXTURES
IMAGES = FIXTURES / "images"
log = common.log

PATCH, MERGE, TEMPORAL = 8, 2, 2
FACTOR = PATCH * MERGE

TEXT = dict(vocab_size=16, hidden_size=24, intermediate_size=16, num_hidden_layers=1, num_attention_heads=2,
            num_key_value_heads=1, max_position_embeddings=64, bos_token_id=2, eos_token_id=3,
            rope_parameters={"rope_type": "default", "rope_theta": 10000.0, "mrope_section": [1, 1, 1]})

QWEN2_VISION = dict(depth=2, embed_dim=32, hidden_size=24, mlp_ratio=2, num_heads=2, patch_size=PATCH,
                    spatial_merge_size=MERGE, temporal_patch_size=TEMPORAL)
QWEN25_VISION = dict(depth=3, hidden_size=32, intermediate_size=40, num_heads=2, out_hidden_size=24,
                     patch_size=PATCH, spatial_merge_size=MERGE, temporal_patch_size=TEMPORAL, window_size=32,
                     fullatt_block_indexes=[1], tokens_per_second=2)
# Qwen2.5 fixture: token ids other than the class defaults, to prove they are read from config.json.
QWEN25_TOKENS = dict(image_token_id=13, video_token_id=14, vision_start_token_id=11, vision_end_token_id=12)


def reinit_loud(model: nn.Module, seed: int) -> None:
    """Loud values for every parameter (as gen_fixtures.reinit_loud, plus Conv3d and RMSNorm):
    Linear/Conv3d weights N(0, 1/fan_in), biases U(-0.5, 0.5); LayerNorm and RMSNorm weights U(0.5, 1.5) with ~10%
    sign flips (at least one), LayerNorm bias N(0, 0.3); embeddings N(0, 1)."""
    r = common.Loud(seed)
    r.modules_(model)  # Qwen2VLRMSNorm / Qwen2_5_VLRMSNorm by name; no position_embedding, Conv2d or MHA here
    missing = [n for n, p in model.named_parameters() if id(p) not in r.done]
    assert not missing, f"parameters not covered by reinit_loud: {missing}"


# ----------------------------------------------------------------------------------------------------------
# images


def write_image(path: Path, width: int, height: int, seed: int) -> None:
    """A deterministic RGB PNG (smooth waves plus noise)."""
    common.write_wave_image(path, width, height, seed, (0.23, 0.05, 0.17, 0.04, 1.3), noise=20)


# ----------------------------------------------------------------------------------------------------------
# independent re-implementation of the processor (asserted bit-equal)


def smart_resize(h: int, w: int, factor: int, min_pixels: int, max_pixels: int) -> tuple[int, int]:
    hb, wb = round(h / factor) * factor, round(w / factor) * factor
    if hb * wb > max_pixels:
        beta = math.sqrt(h * w / max_pixels)
        hb = max(factor, math.floor(h / beta / factor) * factor)
        wb = max(factor, math.floor(w / beta / factor) * factor)
    elif hb * wb < min_pixels:
        beta = math.sqrt(min_pixels / (h * w))
        hb, wb = math.ceil(h * beta / factor) * factor, math.ceil(w * beta / factor) * factor
    return hb, wb


def manual_preprocess(img: Image.Image, proc) -> tuple[np.ndarray, tuple[int, int]]:
    has_alpha = "A" in img.getbands() or img.info.get("transparency") is not None
    if has_alpha:
        rgb = common.composite_white_formula(np.array(img.convert("RGBA")))
    else:
        rgb = np.array(img.convert("RGB"))
    h, w = rgb.shape[:2]
    hb, wb = smart_resize(h, w, proc.patch_size * proc.merge_size, proc.size.shortest_edge, proc.size.longest_edge)
    pil = Image.fromarray(rgb)
    if (wb, hb) != (w, h):
        pil = pil.resize((wb, hb), resample=int(proc.resample), reducing_gap=None)
    u8 = np.array(pil).transpose(2, 0, 1)
    x = (u8.astype(np.float64) * proc.rescale_factor).astype(np.float32)
    x = (x - np.array(proc.image_mean, np.float32)[:, None, None]) / np.array(proc.image_std, np.float32)[:, None, None]
    p, m, t = proc.patch_size, proc.merge_size, proc.temporal_patch_size
    gh, gw = hb // p, wb // p
    rows = []
    # token order (block row, block col, row in block, col in block); columns (channel, frame, y, x)
    for bh in range(gh // m):
        for bw in range(gw // m):
            for mh in range(m):
                for mw in range(m):
                    r, c = bh * m + mh, bw * m + mw
                    patch = x[:, r * p:(r + 1) * p, c * p:(c + 1) * p]  # [C, p, p]
                    rows.append(np.stack([patch] * t, 1).reshape(-1))  # [C, t, p, p]
    return np.stack(rows), (hb, wb)


# ----------------------------------------------------------------------------------------------------------
# models


def build(kind: str, seed: int, dtype: torch.dtype) -> nn.Module:
    torch.manual_seed(seed)
    if kind == "qwen2_vl":
        model = Qwen2VLForConditionalGeneration(Qwen2VLConfig(text_config=TEXT, vision_config=QWEN2_VISION))
    else:
        model = Qwen2_5_VLForConditionalGeneration(
            Qwen2_5_VLConfig(text_config=TEXT, vision_config=QWEN25_VISION, **QWEN25_TOKENS))
    model.eval()
    reinit_loud(model, seed)
    return model.to(dtype)


def load_f32(d: Path, cls) -> nn.Module:
    return common.load_f32(d, cls, vision=lambda m: m.model.visual)


@torch.no_grad()
def features(model: nn.Module, pv: torch.Tensor, grid: torch.Tensor) -> list[torch.Tensor]:
    return list(model.model.get_image_features(pv, image_grid_thw=grid).pooler_output)


def check_reload_matches(out_dir: Path, cls, stored: nn.Module) -> nn.Module:
    return common.check_reload_matches(out_dir, cls, stored, load=load_f32)


def save_processor(out_dir: Path, min_pixels: int, max_pixels: int) -> None:
    proc = Qwen2VLImageProcessorPil(size={"shortest_edge": min_pixels, "longest_edge": max_pixels},
                                    patch_size=PATCH, merge_size=MERGE, temporal_patch_size=TEMPORAL)
    proc.save_pretrained(out_dir)


# ----------------------------------------------------------------------------------------------------------
# expectations


def health_check(name: str, embs: dict[str, torch.Tensor]) -> dict:
    std, small, maxabs = common.value_stats(name, embs, (0.3, 20.0), None)
    # image content must matter: mean token of different images must differ
    means = [e.mean(0) for e in embs.values()]
    rel = [((a - b).abs().mean() / a.abs().mean()).item() for i, a in enumerate(means) for b in means[i + 1:]]
    med = float(np.median(rel))
    assert med > 0.05, f"{name}: images give near-identical embeddings ({med})"
    # tokens of one image must differ from each other (positions and content matter)
    tok_rel = [(e.std(0).mean() / e.abs().mean()).item() for e in embs.values() if e.shape[0] > 1]
    assert min(tok_rel) > 0.05, f"{name}: tokens of an image are near-identical {tok_rel}"
    stats = {"std": std, "max_abs": maxabs, "frac_abs_below_1e-3": small, "median_rel_diff_between_images": med,
             "min_token_spread": min(tok_rel)}
    log(f"{name}: health {json.dumps(stats)}")
    return stats


def mrope_reference(model: nn.Module, cfg: dict, grids: torch.Tensor) -> dict:
    """get_rope_index on: 3 text tokens, <vision_start>, image A pads, <vision_end>, 2 text tokens,
    <vision_start>, image B pads, <vision_end>, 1 text token."""
    merge = model.config.vision_config.spatial_merge_size
    img, vs, ve = cfg["image_token_id"], cfg["vision_start_token_id"], cfg["vision_end_token_id"]
    n = [int(g.prod().item()) // (merge * merge) for g in grids]
    ids = [4, 5, 6, vs] + [img] * n[0] + [ve, 7, 8, vs] + [img] * n[1] + [ve, 9]
    types = [1 if t == img else 0 for t in ids]
    input_ids = torch.tensor([ids])
    tt = torch.tensor([types])
    with torch.no_grad():
        pos, delta = model.model.get_rope_index(input_ids, mm_token_type_ids=tt, image_grid_thw=grids)
    assert pos.shape == (3, 1, len(ids))
    return {"input_ids": ids, "mm_token_type_ids": types, "image_grid_thw": grids.tolist(),
            "position_ids": pos[:, 0].tolist(), "rope_delta": int(delta.item()),
            "function": f"{type(model.model).__name__}.get_rope_index(input_ids, mm_token_type_ids, image_grid_thw)"}


def make_expected(name: str, out: Path, cls, images: list[dict], mrope_keys: tuple[str, str], extra: dict) -> None:
    model = load_f32(out, cls)
    proc = AutoImageProcessor.from_pretrained(out, backend="pil")
    assert type(proc) is Qwen2VLImageProcessorPil, type(proc)
    vcfg = model.config.vision_config
    assert (proc.patch_size, proc.merge_size, proc.temporal_patch_size) == (
        vcfg.patch_size, vcfg.spatial_merge_size, vcfg.temporal_patch_size)
    cfg = json.loads((out / "config.json").read_text())
    merge = vcfg.spatial_merge_size
    dim = model.config.text_config.hidden_size

    tensors, entries, pixels, embs, grids = {}, [], {}, {}, {}
    branches = set()
    for it in images:
        key = Path(it["path"]).name
        img = Image.open(it["path"])
        mode, (w, h) = img.mode, img.size
        bf = proc(images=img, return_tensors="pt")
        pv, grid = bf["pixel_values"], bf["image_grid_thw"]
        ref, (hb, wb) = manual_preprocess(Image.open(it["path"]), proc)
        assert np.array_equal(ref, pv.numpy()), f"{name}/{key}: manual preprocessing != processor"
        assert grid.tolist() == [[1, hb // PATCH, wb // PATCH]], (grid, hb, wb)
        (e,) = features(model, pv, grid)
        ntok = hb // PATCH * (wb // PATCH) // (merge * merge)
        assert e.shape == (ntok, dim), e.shape
        pixels[key], embs[key], grids[key] = pv.contiguous(), e.contiguous(), grid
        tensors[f"pixels/{key}"] = pixels[key]
        tensors[f"embeddings/{key}"] = embs[key]
        hr, wr = round(h / FACTOR) * FACTOR, round(w / FACTOR) * FACTOR
        branch = ("max_pixels" if hr * wr > proc.size.longest_edge else
                  "min_pixels" if hr * wr < proc.size.shortest_edge else "round")
        branches.add(branch)
        entries.append({
            "file": os.path.relpath(it["path"], IMAGES),
            "key": key,
            "path": common.rel_to_repo(Path(it["path"])),
            "mode": mode, "width": w, "height": h,
            "has_alpha": "A" in img.getbands() or img.info.get("transparency") is not None,
            "resized": (hb, wb) != (h, w),
            "resized_to": [hb, wb],
            "smart_resize_branch": branch,
            "grid_thw": grid[0].tolist(),
            "tokens": ntok, "dim": dim,
        })
    assert branches == {"max_pixels", "min_pixels", "round"}, branches
    assert any(not e["resized"] for e in entries), "no native-size image"

    # batch: all images through the processor and the model at once equal the single runs
    keys = list(pixels)
    bf = proc(images=[Image.open(it["path"]) for it in images], return_tensors="pt")
    assert torch.equal(bf["pixel_values"], torch.cat([pixels[k] for k in keys]))
    assert torch.equal(bf["image_grid_thw"], torch.cat([grids[k] for k in keys]))
    eb = features(model, bf["pixel_values"], bf["image_grid_thw"])
    diffs = [(eb[i] - embs[k]).abs().max().item() for i, k in enumerate(keys)]
    assert max(diffs) <= common.BATCH_TOL, f"{name}: batch vs single {max(diffs)}"
    log(f"{name}: batch of {len(keys)}: max |batch - single| = {max(diffs):.3g}")

    mrope = mrope_reference(model, cfg, torch.cat([grids[k] for k in mrope_keys]))
    mrope["images"] = list(mrope_keys)
    stats = health_check(name, embs)
    save_file(tensors, str(out / "expected.safetensors"), metadata={"format": "pt"})
    doc = {
        "family": cfg["model_type"],
        "patch_size": vcfg.patch_size,
        "merge_size": merge,
        "temporal_patch_size": vcfg.temporal_patch_size,
        "dim": dim,
        "output": "model.model.get_image_features(pixel_values, image_grid_thw).pooler_output[0], f32 eager, "
                  "weights = stored checkpoint upcast to f32",
        "preprocessing": {
            "class": type(proc).__name__,
            "loaded_with": 'AutoImageProcessor.from_pretrained(dir, backend="pil")',
            "input": "PIL.Image.open(path), no EXIF transpose, no conversion",
            "min_pixels": proc.size.shortest_edge, "max_pixels": proc.size.longest_edge,
            "resample": int(proc.resample), "image_mean": list(proc.image_mean), "image_std": list(proc.image_std),
            "rescale_factor": proc.rescale_factor,
            "pixel_values": "[grid_h*grid_w, 3*temporal*patch*patch]: rows (block row, block col, row in block, "
                            "col in block), columns (channel, frame, y, x); the frame is duplicated",
        },
        "tokens": {k: cfg[k] for k in ("image_token_id", "vision_start_token_id", "vision_end_token_id")},
        "images_root": common.rel_to_repo(IMAGES),
        "images": entries,
        "batch_check": {"keys": keys, "max_abs_diff": max(diffs), "tolerance": common.BATCH_TOL, "passed": True},
        "mrope": mrope,
        "stats": stats,
        **extra,
        "generated_with": common.versions(),
    }
    (out / "expected.json").write_text(json.dumps(doc, indent=2) + "\n")


# ----------------------------------------------------------------------------------------------------------
# fixtures


def shared_images(names: list[str]) -> list[dict]:
    return [{"path": IMAGES / n} for n in names]


def own_images(out: Path, specs: list[tuple[str, int, int]], seed: int) -> list[dict]:
    items = []
    for i, (stem, w, h) in enumerate(specs):
        p = out / f"{stem}_{w}x{h}.png"
        write_image(p, w, h, seed + i)
        items.append({"path": p})
    return items


def gen_qwen2_vl():
    name = "qwen2_vl_f32"
    out = common.fresh_dir(FIXTURES / name)
    model = build("qwen2_vl", seed=5005, dtype=torch.float32)
    model.save_pretrained(out, safe_serialization=True)
    # factor 16: min 512 = 2 blocks of 2x2 patches, max 2048 = 32 patches
    save_processor(out, min_pixels=512, max_pixels=2048)
    names = common.tensor_names(out)
    assert "visual.patch_embed.proj.weight" in names and not any(n.startswith("model.visual.") for n in names)
    cfg = json.loads((out / "config.json").read_text())
    assert "text_config" in cfg and "hidden_size" not in cfg and cfg["vision_config"]["hidden_size"] == 24, cfg
    check_reload_matches(out, Qwen2VLForConditionalGeneration, model)
    imgs = own_images(out, [("native", 48, 32),     # no resize (2x3 blocks)
                            ("tiny", 20, 12),       # below min_pixels
                            ("wide", 180, 20),      # above max_pixels, height lifted by max(factor, ...)
                            ("tie", 40, 56)], 51)   # 40/16 = 2.5 rounds to 2 (banker's)
    imgs += shared_images(["rgb.png", "jpeg444.jpg", "photo.jpg", "gif_offset.gif"])
    make_expected(name, out, Qwen2VLForConditionalGeneration, imgs, ("jpeg444.jpg", "wide_180x20.png"),
                  {"checkpoint": {"class": "Qwen2VLForConditionalGeneration", "model_type": "qwen2_vl",
                                  "storage_dtype": "float32",
                                  "layout": "transformers 5.23 save = Hub (visual.*, model.*, lm_head.weight); "
                                            "config with text_config",
                                  "files": ["model.safetensors"]}})


def hub_config(cfg: dict) -> dict:
    """The config in the form of the released Qwen2/2.5-VL checkpoints: text params at the top level,
    rope_scaling {type: mrope}, vision `in_chans`, no vision rope_parameters."""
    text = dict(cfg.pop("text_config"))
    for k in ("model_type", "layer_types", "dtype"):
        text.pop(k, None)
    rope = text.pop("rope_parameters")
    hub = {**cfg, **text}
    hub["rope_theta"] = rope["rope_theta"]
    hub["rope_scaling"] = {"type": "mrope", "mrope_section": rope["mrope_section"]}
    v = dict(hub["vision_config"])
    v.pop("rope_parameters")
    v["in_chans"] = v.pop("in_channels")
    v["spatial_patch_size"] = v["patch_size"]
    hub["vision_config"] = v
    return hub


def gen_qwen2_5_vl():
    name = "qwen2_5_vl_bf16"
    out = common.fresh_dir(FIXTURES / name)
    model = build("qwen2_5_vl", seed=6006, dtype=torch.bfloat16)
    with tempfile.TemporaryDirectory() as td:
        td = Path(td)
        model.save_pretrained(td, safe_serialization=True)
        sd = load_file(str(td / "model.safetensors"))
        assert "visual.patch_embed.proj.weight" in sd and "model.embed_tokens.weight" in sd

        def legacy(k: str) -> str:
            if k.startswith("visual."):
                return "model." + k
            if k.startswith("model."):
                return "model.language_model." + k[len("model."):]
            return k

        save_file({legacy(k): v for k, v in sd.items()}, str(out / "model.safetensors"), metadata={"format": "pt"})
        cfg = json.loads((td / "config.json").read_text())
        (out / "config.json").write_text(json.dumps(hub_config(cfg), indent=2) + "\n")
        # Hub-form preprocessor_config.json: top-level min_pixels / max_pixels (override `size` when loading)
        save_processor(out, min_pixels=512, max_pixels=3072)
        pp = json.loads((out / "preprocessor_config.json").read_text())
        pp.pop("size")
        pp["min_pixels"], pp["max_pixels"] = 512, 3072
        (out / "preprocessor_config.json").write_text(json.dumps(pp, indent=2) + "\n")
        assert common.stored_dtypes(out) == {"BF16"}
        names = common.tensor_names(out)
        assert "model.visual.patch_embed.proj.weight" in names and not any(n.startswith("visual.") for n in names)

        a = load_f32(out, Qwen2_5_VLForConditionalGeneration)
        b = load_f32(td, Qwen2_5_VLForConditionalGeneration)
        common.assert_same_params(a, b)
        assert a.config.image_token_id == 13 and a.config.vision_start_token_id == 11
        assert a.config.vision_config.in_channels == 3 and a.config.text_config.hidden_size == 24
        g = torch.Generator().manual_seed(7)
        grid = torch.tensor([[1, 6, 4]])
        x = torch.randn(24, 3 * TEMPORAL * PATCH * PATCH, generator=g)
        assert torch.equal(features(a, x, grid)[0], features(b, x, grid)[0]), "legacy-layout load differs"
        check_reload_matches(out, Qwen2_5_VLForConditionalGeneration, model)
        log(f"{name}: transformers loads the model.visual.* / Hub-config checkpoint; outputs identical")

    imgs = own_images(out, [("native", 48, 48),     # no resize; 3x3 merged tokens: partial windows
                            ("tiny", 12, 20),       # below min_pixels
                            ("tall", 24, 150),      # above max_pixels, width lifted by max(factor, ...)
                            ("wide", 80, 40)], 61)  # 5x2 blocks: partial last window column
    imgs += shared_images(["jpeg420.jpg", "lossy_alpha.webp", "gray.png"])
    make_expected(name, out, Qwen2_5_VLForConditionalGeneration, imgs, ("native_48x48.png", "jpeg420.jpg"),
                  {"checkpoint": {"class": "Qwen2_5_VLForConditionalGeneration", "model_type": "qwen2_5_vl",
                                  "storage_dtype": "bfloat16",
                                  "layout": "transformers 4.5x (model.visual.*, model.language_model.*, "
                                            "lm_head.weight), rewritten from a 5.23 save; Hub-form config.json "
                                            "and preprocessor_config.json",
                                  "legacy_layout_load_check": "transformers loads it with no missing/unexpected "
                                                              "keys; parameters and outputs identical to the 5.23 "
                                                              "save",
                                  "files": ["model.safetensors"]}})


def main():
    common.init_torch(False)
    gen_qwen2_vl()
    gen_qwen2_5_vl()
    total = sum(f.stat().st_size for d in FIXTURES.glob("qwen2*") for f in d.iterdir())
    log(f"total size of tests/fixtures/qwen2*: {total / 1024:.1f} KiB")
    assert total < 1536 * 1024, "qwen fixtures over 1.5 MB"


if __name__ == "__main__":
    main()
