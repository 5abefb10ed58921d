#!/usr/bin/env python3
"""Generate the Gemma3 reference fixtures of vtower with Hugging Face transformers.

Run from the repo root with the fixtures venv: ``python scripts/gen_fixtures_gemma3.py`` (scripts/gen_fixtures.sh
does). CI never runs this; the outputs are committed. Deterministic (fixed seeds, one CPU thread).

Fixtures (tiny Gemma3ForConditionalGeneration: SigLIP tower + Gemma3MultiModalProjector + a 1-layer Gemma3 text
model; vision tower and projector with loud weights, see vlm_fixtures.loud_init):

* ``tests/fixtures/gemma3_f32/``      f32, transformers 5.23 ``save_pretrained`` layout (``vision_tower.*`` without
  the ``vision_model.`` infix, ``multi_modal_projector.*``, ``language_model.model.*``). Tower 48 px, patch 8 (6x6
  patches), mm_tokens_per_image 9 (AvgPool2d kernel 2 -> 3x3). Gemma3ImageProcessor defaults (BILINEAR, mean/std
  0.5, pan-and-scan off). Extra reference: some images with pan-and-scan switched on in the call (``pas/*`` tensors,
  ``overrides`` in expected.json), which vtower offers through vt_preprocess_ex.
* ``tests/fixtures/gemma3_hub_pas_bf16/``  bf16, Hub layout (``vision_tower.vision_model.*``; the script checks that
  transformers loads it into identical parameters). Tower 30 px, patch 6 -> 5x5 patches with mm_tokens_per_image 4:
  the pooling kernel is 5 // 2 = 2, so AvgPool2d drops the last patch row and column (2x2 outputs) -- the reference
  geometry when the sizes do not divide. preprocessor_config.json switches pan-and-scan on (min crop 20 px, at most
  3 crops, ratio 1.2), so wide/tall images yield [1 + crops, 3, S, S] pixels and (1 + crops) * 4 embeddings.
  Extra reference: some images with pan-and-scan switched off in the call (``nopas/*``).

Per image: ``pixels/<key>`` = the PIL-backend processor's pixel_values for that image alone ([3, S, S] when it has
no crops, else [1 + crops, 3, S, S], original first), ``embeddings/<key>`` = ``model.model.get_image_features(pv)
.pooler_output`` flattened to [(1 + crops) * tokens, T] (what Gemma3Model scatters into the soft-token positions),
from the checkpoint as stored, reloaded in f32 with eager attention.

expected.json: the SigLIP fixtures' format (``images``: file, key, path, mode, width, height, has_alpha, resized,
tokens, dim) plus per image ``num_crops`` and ``grid`` [1 + crops, side, side]; ``tokens_per_crop``;
``special_tokens`` (boi/eoi/image ids from config.json); ``overrides`` (preprocess-call parameters and the images
they were applied to, tensors under ``<prefix>/pixels/<key>`` and ``<prefix>/embeddings/<key>``).

Reference code (transformers 5.23): models/gemma3/modeling_gemma3.py Gemma3MultiModalProjector (patches_per_image =
image_size // patch_size, tokens_per_side = int(mm_tokens_per_image ** 0.5), kernel = patches_per_image //
tokens_per_side, AvgPool2d(kernel, stride=kernel), Gemma3RMSNorm (1 + w) in f32 with vision_config.layer_norm_eps,
x @ mm_input_projection_weight [vision, text]); models/gemma3/image_processing_pil_gemma3.py (pan_and_scan crops
from the original image, then resize each to size with BILINEAR); models/gemma3/processing_gemma3.py
(full_image_sequence, pan-and-scan defaults False / 256 / 4 / 1.2 for null preprocessor values).
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

import torch
from PIL import Image
from transformers import AutoImageProcessor, Gemma3Config, Gemma3ForConditionalGeneration, Gemma3ImageProcessorPil

sys.path.insert(0, str(Path(__file__).resolve().parent))
import gen_fixtures as common  # noqa: E402
import vlm_fixtures as vf  # noqa: E402

TEXT = dict(vocab_size=300, hidden_size=32, intermediate_size=48, num_hidden_layers=1, num_attention_heads=2,
            num_key_value_heads=1, head_dim=16)
# Distinct from the Gemma3Config defaults (255999 / 256000 / 262144) so that a test can tell they were read.
TOKENS = dict(boi_token_index=290, eoi_token_index=291, image_token_index=292)

VISION_A = dict(image_size=48, patch_size=8, hidden_size=32, intermediate_size=48, num_hidden_layers=2,
                num_attention_heads=2, vision_use_head=False)
VISION_B = dict(image_size=30, patch_size=6, hidden_size=48, intermediate_size=64, num_hidden_layers=2,
                num_attention_heads=3, vision_use_head=False, layer_norm_eps=1e-5)

IMAGES_A = ["rgb.png", "jpeg420.jpg", "rgba.png", "gray.png", "palette_trns.png", "photo.jpg"]
IMAGES_B = ["photo.jpg", "gray.png", "lossy_alpha.webp", "rgba32.bmp"]
PAS = dict(do_pan_and_scan=True, pan_and_scan_min_crop_size=20, pan_and_scan_max_num_crops=3,
           pan_and_scan_min_ratio_to_activate=1.2)


def log(*a):
    print("[gen_fixtures_gemma3]", *a, flush=True)


def build(vision: dict, mm_tokens: int, seed: int, dtype: torch.dtype) -> Gemma3ForConditionalGeneration:
    torch.manual_seed(seed)
    cfg = Gemma3Config(text_config=TEXT, vision_config=vision, mm_tokens_per_image=mm_tokens, **TOKENS)
    model = Gemma3ForConditionalGeneration(cfg).eval()
    vf.loud_vlm(model, seed)
    return model.to(dtype)


@torch.no_grad()
def features(model, pv: torch.Tensor) -> torch.Tensor:
    """[F, 3, S, S] -> [F, tokens, T]: what Gemma3Model hands the language model."""
    return model.model.get_image_features(pixel_values=pv).pooler_output


def pooled_side(vision: dict, mm_tokens: int) -> int:
    ppi = vision["image_size"] // vision["patch_size"]
    k = ppi // int(mm_tokens ** 0.5)
    return (ppi - k) // k + 1


def run_images(model, proc, images: list[dict], S: int, side: int, T: int, prefix: str = "", **call_kw):
    """Preprocesses and embeds each image alone; returns (tensors, entries, pixel batches, embeddings)."""
    tensors, entries, pvs, embs = {}, [], {}, {}
    for it in images:
        key = it["key"]
        img = Image.open(it["path"])
        bf = proc(images=img, return_tensors="pt", **call_kw)
        pv = bf["pixel_values"]
        n = int(bf["num_crops"][0])
        assert pv.dtype == torch.float32 and tuple(pv.shape) == (1 + n, 3, S, S), (pv.shape, n)
        e = features(model, pv)
        assert tuple(e.shape) == (1 + n, side * side, T), e.shape
        e = e.reshape(-1, T)
        tensors[f"{prefix}pixels/{key}"] = pv[0] if n == 0 else pv
        tensors[f"{prefix}embeddings/{key}"] = e
        pvs[key], embs[key] = pv, e
        w, h = img.size
        entries.append(vf.image_entry(it["path"], key, w, h, (w, h) != (S, S) or n > 0, e.shape[0], T,
                                      num_crops=n, grid=[1 + n, side, side]))
    return tensors, entries, pvs, embs


def batch_check(name, model, pvs, embs, T) -> dict:
    keys = list(pvs)
    out = features(model, torch.cat([pvs[k] for k in keys])).reshape(-1, T)
    diffs, row = {}, 0
    for k in keys:
        n = embs[k].shape[0]
        diffs[k] = (out[row:row + n] - embs[k]).abs().max().item()
        row += n
    worst = max(diffs.values())
    assert worst <= vf.BATCH_TOL, f"{name}: batch vs single max diff {worst}"
    log(f"{name}: batch of {len(keys)} images: max |batch - single| = {worst:.3g}")
    return {"keys": keys, "max_abs_diff": worst, "per_image_max_abs_diff": diffs, "tolerance": vf.BATCH_TOL,
            "passed": True}


def make(name: str, out: Path, model_dir: Path, images: list[dict], overrides: list[dict], extra: dict):
    model = vf.load_f32(model_dir, Gemma3ForConditionalGeneration)
    proc = AutoImageProcessor.from_pretrained(out, backend="pil")
    assert type(proc) is Gemma3ImageProcessorPil, type(proc)
    cfg = model.config
    S, P = cfg.vision_config.image_size, cfg.vision_config.patch_size
    assert proc.size.height == S and proc.size.width == S
    side = pooled_side(cfg.vision_config.to_dict(), cfg.mm_tokens_per_image)
    T = cfg.text_config.hidden_size
    # the processor's null pan-and-scan settings get Gemma3Processor's defaults, as the full processor passes them
    defaults = {k: v for k, v in
                dict(do_pan_and_scan=False, pan_and_scan_min_crop_size=256, pan_and_scan_max_num_crops=4,
                     pan_and_scan_min_ratio_to_activate=1.2).items() if getattr(proc, k) is None}
    tensors, entries, pvs, embs = run_images(model, proc, images, S, side, T, **defaults)
    bc = batch_check(name, model, pvs, embs, T)
    stats = vf.health(name, embs)
    over_docs = []
    for ov in overrides:
        chosen = [it for it in images if it["key"] in ov["keys"]]
        t2, e2, _, _ = run_images(model, proc, chosen, S, side, T, prefix=ov["prefix"] + "/",
                                  **{**defaults, **ov["params"]})
        tensors.update(t2)
        over_docs.append({"prefix": ov["prefix"], "params": ov["params"], "images": e2})
    vf.write_expected(out, tensors, {
        "family": "gemma3",
        "image_size": S,
        "patch_size": P,
        "tokens": side * side,
        "tokens_per_crop": side * side,
        "dim": T,
        "output": "model.model.get_image_features(pixel_values).pooler_output for the image's pixel_values "
                  "(original + crops), flattened to [(1 + crops) * tokens, T]; f32 eager, weights = stored "
                  "checkpoint upcast to f32",
        "special_tokens": {"image_start": cfg.boi_token_index, "image_end": cfg.eoi_token_index,
                           "image": cfg.image_token_index},
        "preprocessing": {
            "class": type(proc).__name__,
            "loaded_with": 'AutoImageProcessor.from_pretrained(dir, backend="pil")',
            "call_defaults_from_Gemma3Processor": defaults,
            "resample": int(proc.resample),
            "image_mean": list(proc.image_mean),
            "image_std": list(proc.image_std),
            "do_pan_and_scan": proc.do_pan_and_scan,
        },
        "images_root": "tests/fixtures/images",
        "images": entries,
        "overrides": over_docs,
        "batch_check": bc,
        "stats": stats,
        **extra,
    })
    log(f"{name}: {vf.fixture_size(out) / 1024:.1f} KiB")


def pick(names: list[str]) -> list[dict]:
    return [{"key": n, "path": vf.IMAGES / n} for n in names]


def gen_f32():
    name = "gemma3_f32"
    out = vf.fresh_dir(vf.FIXTURES / name)
    model = build(VISION_A, 9, seed=4004, dtype=torch.float32)
    model.save_pretrained(out, safe_serialization=True)
    Gemma3ImageProcessorPil(size={"height": 48, "width": 48}).save_pretrained(out)
    pre = json.loads((out / "preprocessor_config.json").read_text())
    assert pre["resample"] == 2 and pre.get("do_pan_and_scan") is None, pre
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["model_type"] == "gemma3" and cfg["mm_tokens_per_image"] == 9, cfg
    names = vf.tensor_names(out)
    assert "vision_tower.embeddings.patch_embedding.weight" in names, names[:5]
    assert "multi_modal_projector.mm_input_projection_weight" in names
    assert not any(n.startswith(("model.", "vision_tower.vision_model.")) for n in names)
    vf.check_reload_matches(out, Gemma3ForConditionalGeneration, model)
    native = out / "native_48.png"
    common.write_native_image(native, 48, seed=44)
    images = pick(IMAGES_A) + [{"key": native.name, "path": native}]
    overrides = [{"prefix": "pas", "params": PAS, "keys": ["photo.jpg"]}]
    make(name, out, out, images, overrides,
         {"checkpoint": {"class": "Gemma3ForConditionalGeneration", "model_type": "gemma3", "storage_dtype": "float32",
                         "layout": "transformers 5.23 save_pretrained (vision_tower.* without vision_model. infix)",
                         "files": ["model.safetensors"]}})


def gen_hub_pas_bf16():
    name = "gemma3_hub_pas_bf16"
    out = vf.fresh_dir(vf.FIXTURES / name)
    model = build(VISION_B, 4, seed=5005, dtype=torch.bfloat16)
    assert pooled_side(VISION_B, 4) == 2
    with tempfile.TemporaryDirectory() as td:
        td = Path(td)
        model.save_pretrained(td, safe_serialization=True)

        def hub(k: str) -> str:
            assert not k.startswith("model."), k
            return "vision_tower.vision_model." + k[len("vision_tower."):] if k.startswith("vision_tower.") else k

        vf.rewrite_layout(td, out, hub, Gemma3ForConditionalGeneration)
    Gemma3ImageProcessorPil(size={"height": 30, "width": 30}, **PAS).save_pretrained(out)
    pre = json.loads((out / "preprocessor_config.json").read_text())
    assert pre["do_pan_and_scan"] is True and pre["pan_and_scan_min_crop_size"] == 20, pre
    assert vf.stored_dtypes(out) == {"BF16"}, vf.stored_dtypes(out)
    names = vf.tensor_names(out)
    assert "vision_tower.vision_model.embeddings.patch_embedding.weight" in names
    vf.check_reload_matches(out, Gemma3ForConditionalGeneration, model)
    native = out / "native_30.png"
    common.write_native_image(native, 30, seed=55)
    wide = out / "wide_120x30.png"
    vf.write_image(wide, 120, 30, seed=56)
    tall = out / "tall_30x100.png"  # 3 crops of ceil(100/3) = 34 rows: the last one is cut to 32
    vf.write_image(tall, 30, 100, seed=57)
    images = pick(IMAGES_B) + [{"key": p.name, "path": p} for p in (native, wide, tall)]
    overrides = [{"prefix": "nopas", "params": {"do_pan_and_scan": False}, "keys": ["photo.jpg", "tall_30x100.png"]}]
    make(name, out, out, images, overrides,
         {"checkpoint": {"class": "Gemma3ForConditionalGeneration", "model_type": "gemma3",
                         "storage_dtype": "bfloat16",
                         "layout": "Hub (vision_tower.vision_model.*, multi_modal_projector.*, language_model.model.*)"
                                   ", rewritten from a 5.23 save; transformers loads it into identical parameters",
                         "files": ["model.safetensors"]}})


def main():
    args = common.arg_parser(__doc__).parse_args()
    common.init_torch(args.allow_other_versions)
    gen_f32()
    gen_hub_pas_bf16()


if __name__ == "__main__":
    main()
