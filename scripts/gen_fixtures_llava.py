#!/usr/bin/env python3
"""Generate the LLaVA reference fixtures of vtower with Hugging Face transformers.

Run from the repo root with the fixtures venv: ``python scripts/gen_fixtures_llava.py`` (scripts/gen_fixtures.sh
does). CI never runs this; the outputs are committed. Deterministic (fixed seeds, one CPU thread).

Fixtures (tiny LlavaForConditionalGeneration: vision tower + LlavaMultiModalProjector + a 1-layer Llama; vision tower
and projector with loud weights, see vlm_fixtures.loud_init):

* ``tests/fixtures/llava_clip_f32/``        CLIP tower (class embedding, pre_layrnorm, quick_gelu), 32 px, patch 8;
  vision_feature_layer -2, strategy "default" (CLS dropped -> 16 tokens), projector gelu with biases (the
  LLaVA-1.5 recipe). CLIPImageProcessor (shortest edge 32, center crop 32x32, BICUBIC, CLIP mean/std).
  transformers 5.23 save layout (``vision_tower.*`` without infix, ``language_model.model.*``,
  ``language_model.lm_head.weight``), f32.
* ``tests/fixtures/llava_clip_pad_hub/``    CLIP tower 30 px with patch 7 (4x4 patches; the conv drops the last 2
  pixel rows/columns); vision_feature_layer [-1, 1] (concatenated in that order), strategy "full" (CLS kept -> 17
  tokens), projector gelu_pytorch_tanh without biases. LlavaImageProcessor with do_pad (pad to a centered square
  filled with int(255 * mean) before the resize), shortest edge 30, crop 30. Hub layout
  (``vision_tower.vision_model.*``), f32.
* ``tests/fixtures/llava_siglip_m45_f16/``  SigLIP tower 32 px, patch 8; vision_feature_layer -1 (the last encoder
  layer, *before* post_layernorm), strategy "full" (16 tokens), projector gelu with biases. SiglipImageProcessor
  (stretch to 32x32, BICUBIC, mean/std 0.5). transformers 4.5x layout (``model.vision_tower.vision_model.*``,
  ``model.multi_modal_projector.*``, ``model.language_model.*``, ``lm_head.weight``), f16.

Rewritten layouts are checked to load into identical parameters. Per image: ``pixels/<key>`` = the PIL-backend
processor's pixel_values[0] ([3, S, S]); ``embeddings/<key>`` = ``model.model.get_image_features(pv)
.pooler_output[0]`` ([tokens, T], what LlavaModel scatters into the <image> positions) from the checkpoint as stored,
reloaded in f32 with eager attention. expected.json: the SigLIP fixtures' format plus ``special_tokens`` (image id
from config.json) and ``grid`` ([1, g, g] when the kept tokens are the g x g patches in raster order, else
[1, 1, tokens]).

Reference code (transformers 5.23): models/llava/modeling_llava.py (LlavaModel.get_image_features: hidden_states
[vision_feature_layer] or the concatenation over a list, ``[:, 1:]`` for "default"; LlavaMultiModalProjector
linear_1 -> ACT2FN[projector_hidden_act] -> linear_2); models/clip/modeling_clip.py (CLIPVisionEmbeddings,
pre_layrnorm; hidden_states[0] is the pre_layrnorm output, hidden_states[i] the output of layer i, no
post_layernorm); image_processing_pil_llava.py (pad_to_square with int(x * 255) per mean value), PilBackend resize
(shortest_edge: int(size * long / short)), image_transforms.center_crop.
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

import torch
from PIL import Image
from transformers import (
    AutoImageProcessor,
    CLIPImageProcessorPil,
    LlavaConfig,
    LlavaForConditionalGeneration,
    LlavaImageProcessorPil,
    SiglipImageProcessorPil,
)

sys.path.insert(0, str(Path(__file__).resolve().parent))
import gen_fixtures as common  # noqa: E402
import vlm_fixtures as vf  # noqa: E402

TEXT = dict(model_type="llama", vocab_size=300, hidden_size=32, intermediate_size=48, num_hidden_layers=1,
            num_attention_heads=2, num_key_value_heads=1)

CLIP_A = dict(model_type="clip_vision_model", image_size=32, patch_size=8, hidden_size=32, intermediate_size=48,
              num_hidden_layers=3, num_attention_heads=2)
CLIP_B = dict(model_type="clip_vision_model", image_size=30, patch_size=7, hidden_size=24, intermediate_size=40,
              num_hidden_layers=2, num_attention_heads=2)
SIGLIP_C = dict(model_type="siglip_vision_model", image_size=32, patch_size=8, hidden_size=32, intermediate_size=48,
                num_hidden_layers=2, num_attention_heads=2, vision_use_head=False)

IMAGES_A = ["rgb.png", "jpeg422.jpg", "rgba.png", "photo.jpg", "gray_alpha.png"]
IMAGES_B = ["rgba.png", "gray.png", "jpeg444.jpg", "photo.jpg", "rgb_trns.png"]
IMAGES_C = ["jpeg420.jpg", "palette.png", "lossy.webp", "rgba16.png"]


def log(*a):
    print("[gen_fixtures_llava]", *a, flush=True)


def build(vision: dict, seed: int, dtype: torch.dtype, **top) -> LlavaForConditionalGeneration:
    torch.manual_seed(seed)
    cfg = LlavaConfig(text_config=TEXT, vision_config=vision, **top)
    model = LlavaForConditionalGeneration(cfg).eval()
    vf.loud_vlm(model, seed)
    return model.to(dtype)


@torch.no_grad()
def features(model, pv: torch.Tensor) -> list[torch.Tensor]:
    """[B, 3, S, S] -> B tensors [tokens, T]: what LlavaModel hands the language model."""
    return list(model.model.get_image_features(pixel_values=pv).pooler_output)


def n_tokens(cfg) -> int:
    v = cfg.vision_config
    n = (v.image_size // v.patch_size) ** 2
    if v.model_type == "clip_vision_model":
        n += 1
    return n - 1 if cfg.vision_feature_select_strategy == "default" else n


def token_grid(cfg) -> list[int]:
    """[1, g, g] when the kept tokens are exactly the patch grid in raster order, else [1, 1, N]."""
    v = cfg.vision_config
    g = v.image_size // v.patch_size
    has_cls = v.model_type == "clip_vision_model"
    drops = cfg.vision_feature_select_strategy == "default"
    return [1, g, g] if has_cls == drops else [1, 1, n_tokens(cfg)]


def make(name: str, out: Path, images: list[dict], proc_cls, extra: dict):
    model = vf.load_f32(out, LlavaForConditionalGeneration)
    proc = AutoImageProcessor.from_pretrained(out, backend="pil")
    assert type(proc) is proc_cls, type(proc)
    cfg = model.config
    S, P = cfg.vision_config.image_size, cfg.vision_config.patch_size
    T = cfg.text_config.hidden_size
    N = n_tokens(cfg)
    tensors, entries, pvs, embs = {}, [], {}, {}
    for it in images:
        key = it["key"]
        img = Image.open(it["path"])
        pv = proc(images=img, return_tensors="pt")["pixel_values"]
        assert pv.dtype == torch.float32 and tuple(pv.shape) == (1, 3, S, S), pv.shape
        (e,) = features(model, pv)
        assert tuple(e.shape) == (N, T), e.shape
        tensors[f"pixels/{key}"], tensors[f"embeddings/{key}"] = pv[0], e
        pvs[key], embs[key] = pv, e
        w, h = img.size
        entries.append(vf.image_entry(it["path"], key, w, h, (w, h) != (S, S), N, T, grid=token_grid(cfg)))
    keys = list(pvs)
    batch = features(model, torch.cat([pvs[k] for k in keys]))
    diffs = {k: (b - embs[k]).abs().max().item() for k, b in zip(keys, batch)}
    worst = max(diffs.values())
    assert worst <= vf.BATCH_TOL, f"{name}: batch vs single max diff {worst}"
    log(f"{name}: batch of {len(keys)} images: max |batch - single| = {worst:.3g}")
    stats = vf.health(name, embs)
    vf.write_expected(out, tensors, {
        "family": "llava",
        "image_size": S,
        "patch_size": P,
        "tokens": N,
        "dim": T,
        "output": "model.model.get_image_features(pixel_values).pooler_output[0]; f32 eager, weights = stored "
                  "checkpoint upcast to f32",
        "special_tokens": {"image": cfg.image_token_index},
        "vision_model_type": cfg.vision_config.model_type,
        "vision_feature_layer": cfg.vision_feature_layer,
        "vision_feature_select_strategy": cfg.vision_feature_select_strategy,
        "projector_hidden_act": cfg.projector_hidden_act,
        "multimodal_projector_bias": cfg.multimodal_projector_bias,
        "preprocessing": {
            "class": type(proc).__name__,
            "loaded_with": 'AutoImageProcessor.from_pretrained(dir, backend="pil")',
            "resample": int(proc.resample),
            "image_mean": list(proc.image_mean),
            "image_std": list(proc.image_std),
            "size": dict(proc.size),
            "crop_size": dict(proc.crop_size) if getattr(proc, "crop_size", None) else None,
            "do_center_crop": getattr(proc, "do_center_crop", None),
            "do_pad": getattr(proc, "do_pad", None),
        },
        "images_root": "tests/fixtures/images",
        "images": entries,
        "batch_check": {"keys": keys, "max_abs_diff": worst, "per_image_max_abs_diff": diffs,
                        "tolerance": vf.BATCH_TOL, "passed": True},
        "stats": stats,
        **extra,
    })
    log(f"{name}: {vf.fixture_size(out) / 1024:.1f} KiB")


def pick(names: list[str]) -> list[dict]:
    return [{"key": n, "path": vf.IMAGES / n} for n in names]


def save_and_rename(model, out: Path, rename) -> None:
    with tempfile.TemporaryDirectory() as td:
        td = Path(td)
        model.save_pretrained(td, safe_serialization=True)
        names = vf.tensor_names(td)
        assert "vision_tower.embeddings.patch_embedding.weight" in names, names[:5]
        assert "language_model.lm_head.weight" in names
        vf.rewrite_layout(td, out, rename, LlavaForConditionalGeneration)


def gen_clip_f32():
    name = "llava_clip_f32"
    out = vf.fresh_dir(vf.FIXTURES / name)
    model = build(CLIP_A, seed=6006, dtype=torch.float32, image_token_index=299)
    model.save_pretrained(out, safe_serialization=True)
    CLIPImageProcessorPil(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}).save_pretrained(out)
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["vision_feature_layer"] == -2 and cfg["vision_feature_select_strategy"] == "default", cfg
    names = vf.tensor_names(out)
    assert "vision_tower.embeddings.class_embedding" in names and "vision_tower.pre_layrnorm.weight" in names
    assert not any(n.startswith(("model.", "vision_tower.vision_model.")) for n in names)
    vf.check_reload_matches(out, LlavaForConditionalGeneration, model)
    native = out / "native_32.png"
    common.write_native_image(native, 32, seed=66)
    make(name, out, pick(IMAGES_A) + [{"key": native.name, "path": native}], CLIPImageProcessorPil,
         {"checkpoint": {"class": "LlavaForConditionalGeneration", "model_type": "llava", "storage_dtype": "float32",
                         "layout": "transformers 5.23 save_pretrained (vision_tower.* without vision_model. infix)",
                         "files": ["model.safetensors"]}})


def gen_clip_pad_hub():
    name = "llava_clip_pad_hub"
    out = vf.fresh_dir(vf.FIXTURES / name)
    model = build(CLIP_B, seed=7007, dtype=torch.float32, image_token_index=296, vision_feature_layer=[-1, 1],
                  vision_feature_select_strategy="full", projector_hidden_act="gelu_pytorch_tanh",
                  multimodal_projector_bias=False)

    def hub(k: str) -> str:
        return "vision_tower.vision_model." + k[len("vision_tower."):] if k.startswith("vision_tower.") else k

    save_and_rename(model, out, hub)
    LlavaImageProcessorPil(size={"shortest_edge": 30}, crop_size={"height": 30, "width": 30},
                           do_pad=True).save_pretrained(out)
    pre = json.loads((out / "preprocessor_config.json").read_text())
    assert pre["do_pad"] is True and pre["image_processor_type"] == "LlavaImageProcessor", pre
    names = vf.tensor_names(out)
    assert "vision_tower.vision_model.embeddings.class_embedding" in names
    vf.check_reload_matches(out, LlavaForConditionalGeneration, model)
    native = out / "native_30.png"
    common.write_native_image(native, 30, seed=77)
    make(name, out, pick(IMAGES_B) + [{"key": native.name, "path": native}], LlavaImageProcessorPil,
         {"checkpoint": {"class": "LlavaForConditionalGeneration", "model_type": "llava", "storage_dtype": "float32",
                         "layout": "Hub (vision_tower.vision_model.*, multi_modal_projector.*, language_model.model.*,"
                                   " language_model.lm_head.weight), rewritten from a 5.23 save; transformers loads "
                                   "it into identical parameters",
                         "files": ["model.safetensors"]}})


def gen_siglip_m45_f16():
    name = "llava_siglip_m45_f16"
    out = vf.fresh_dir(vf.FIXTURES / name)
    model = build(SIGLIP_C, seed=8008, dtype=torch.float16, image_token_index=297, vision_feature_layer=-1,
                  vision_feature_select_strategy="full")

    def m45(k: str) -> str:
        if k.startswith("vision_tower."):
            return "model.vision_tower.vision_model." + k[len("vision_tower."):]
        if k.startswith("multi_modal_projector."):
            return "model." + k
        if k.startswith("language_model.model."):
            return "model.language_model." + k[len("language_model.model."):]
        if k == "language_model.lm_head.weight":
            return "lm_head.weight"
        raise AssertionError(k)

    save_and_rename(model, out, m45)
    SiglipImageProcessorPil(size={"height": 32, "width": 32}).save_pretrained(out)
    assert vf.stored_dtypes(out) == {"F16"}, vf.stored_dtypes(out)
    names = vf.tensor_names(out)
    assert "model.vision_tower.vision_model.post_layernorm.weight" in names and "lm_head.weight" in names
    vf.check_reload_matches(out, LlavaForConditionalGeneration, model)
    native = out / "native_32.png"
    common.write_native_image(native, 32, seed=88)
    make(name, out, pick(IMAGES_C) + [{"key": native.name, "path": native}], SiglipImageProcessorPil,
         {"checkpoint": {"class": "LlavaForConditionalGeneration", "model_type": "llava", "storage_dtype": "float16",
                         "layout": "transformers 4.5x (model.vision_tower.vision_model.*, model.multi_modal_projector.*"
                                   ", model.language_model.*, lm_head.weight), rewritten from a 5.23 save; "
                                   "transformers loads it into identical parameters",
                         "files": ["model.safetensors"]}})


def main():
    args = common.arg_parser(__doc__).parse_args()
    common.init_torch(args.allow_other_versions)
    gen_clip_f32()
    gen_clip_pad_hub()
    gen_siglip_m45_f16()


if __name__ == "__main__":
    main()
