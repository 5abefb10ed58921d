#!/usr/bin/env python3
"""Config-variant parity sweep of vtower against Hugging Face transformers (a developer tool; CI never runs it).

For every family vtower loads, builds many tiny random-weight checkpoints with VARIED configs using transformers'
own classes + ``save_pretrained`` (loud init: biases / norm weights far from 0 / 1, see fixtures.common.loud_init), runs
the reference PIL-backend image processor and model on a few generated images (odd-size PNGs, a JPEG, tiny / wide /
extreme images where the family resizes by aspect), runs vtower through ctypes on the same image bytes, and prints per
case and image: token counts, max |diff| and relative L2 of the embeddings (pass: rel L2 <= 1e-4, f32).

"The embeddings" per family (what the language model receives):
* SigLIP (SiglipModel / SiglipVisionModel): the tower's ``last_hidden_state`` (post_layernorm).
* LLaVA (CLIP / SigLIP / Pixtral tower), Gemma3, Mistral3, Qwen2-VL, Qwen2.5-VL:
  ``model.model.get_image_features(...).pooler_output`` for the one image.
* bare PixtralVisionModel: ``last_hidden_state[0]``.
* GLM-4.xV (glm4v, glm_ocr, glm46v): ``get_image_features(...).pooler_output[0]``.
* Kimi K2.5: ``get_image_features(...).pooler_output[0]``, with its (torchvision) processor; both checkpoint layouts.
* PaddleOCR-VL: ``get_image_features(...).pooler_output[0]``, with the torchvision-backend processor (its default).
* Gemma 4: ``get_image_features(pixel_values, image_position_ids).pooler_output[0]``; bare Gemma4VisionModel: its
  ``last_hidden_state`` (the soft tokens of the one image).

A case either expects numbers (reference and vtower both succeed and agree), or expects an error: where the reference
raises, vtower must raise too (preprocess or forward); configs vtower deliberately refuses must fail at load with a
message (``load-err`` rows show it). Every case runs on its own: a failure prints its error and the sweep goes on.

Run from the repo root after ``cargo build --release``:

    /work/main/.venv/bin/python scripts/parity_sweep.py [--lib target/release/libvtower.so] [-k SUBSTRING] [-v]

Exit status 1 if any case failed.
"""

from __future__ import annotations

import argparse
import io
import json
import sys
import tempfile
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from PIL import Image

# scripts/ (this file's folder) is on sys.path: the fixtures package and vtower_ctypes import from there
from fixtures import common, llava, pixtral  # noqa: E402
from vtower_ctypes import VT_DTYPE_F32, Lib, VtError  # noqa: E402

pixtral.stub_torchvision()
import transformers  # noqa: E402

transformers.utils.logging.disable_progress_bar()
transformers.utils.logging.set_verbosity_error()

from transformers import (  # noqa: E402
    AutoImageProcessor,
    CLIPImageProcessorPil,
    Gemma3Config,
    Gemma3ForConditionalGeneration,
    Gemma3ImageProcessorPil,
    Gemma4Config,
    Gemma4ForConditionalGeneration,
    Gemma4ImageProcessorPil,
    Gemma4VisionModel,
    LlavaConfig,
    LlavaForConditionalGeneration,
    LlavaImageProcessorPil,
    Mistral3Config,
    Mistral3ForConditionalGeneration,
    PixtralImageProcessorPil,
    PixtralVisionConfig,
    PixtralVisionModel,
    Qwen2_5_VLConfig,
    Qwen2_5_VLForConditionalGeneration,
    Qwen2VLConfig,
    Qwen2VLForConditionalGeneration,
    Qwen2VLImageProcessorPil,
    SiglipConfig,
    SiglipImageProcessorPil,
    SiglipModel,
    SiglipVisionConfig,
    SiglipVisionModel,
)

REPO = common.REPO
TOL = 1e-4
CLIP_MEAN, CLIP_STD = common.OPENAI_CLIP_MEAN, common.OPENAI_CLIP_STD

# ----------------------------------------------------------------------------------------------------------
# images (bytes, generated once)


def _wave(w: int, h: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w].astype(np.float64)
    chans = []
    for c in range(3):
        a, b = rng.uniform(0.02, 0.25, 2)
        v = 127 + 90 * np.sin(a * x + 1.3 * c) * np.cos(b * y - 0.7 * c) + rng.normal(0, 18, (h, w))
        chans.append(v)
    return np.clip(np.stack(chans, -1), 0, 255).astype(np.uint8)


def _encode(arr: np.ndarray, fmt: str) -> bytes:
    buf = io.BytesIO()
    kw = {"quality": 90} if fmt == "JPEG" else {}
    Image.fromarray(arr).save(buf, format=fmt, **kw)
    return buf.getvalue()


IMAGES: dict[str, bytes] = {}


def make_images() -> None:
    specs = {
        "png300x217": (300, 217, "PNG"),
        "tall83x311": (83, 311, "PNG"),
        "jpg300x217": (300, 217, "JPEG"),
        "tiny5x7": (5, 7, "PNG"),
        "wide700x40": (700, 40, "PNG"),
        "extreme1000x4": (1000, 4, "PNG"),
        "sq64": (64, 64, "PNG"),
    }
    for i, (k, (w, h, fmt)) in enumerate(specs.items()):
        IMAGES[k] = _encode(_wave(w, h, 100 + i), fmt)
    # RGBA with varied alpha (composited on white by every processor here)
    rgb = _wave(61, 47, 200)
    alpha = np.clip(_wave(61, 47, 201)[..., 0].astype(int) * 2 - 60, 0, 255).astype(np.uint8)
    IMAGES["rgba61x47"] = _encode(np.dstack([rgb, alpha]), "PNG")
    # grayscale
    IMAGES["gray90x70"] = _encode(_wave(90, 70, 202)[..., 1], "PNG")
    # a JPEG with EXIF orientation 6: PIL-image inputs are never transposed by the processors
    buf = io.BytesIO()
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(_wave(120, 80, 203)).save(buf, format="JPEG", quality=92, exif=exif.tobytes())
    IMAGES["exif6_120x80"] = buf.getvalue()


BASIC = ["png300x217", "tall83x311", "jpg300x217", "rgba61x47", "gray90x70", "exif6_120x80"]
ASPECT = BASIC + ["tiny5x7", "wide700x40"]


def pil(data: bytes) -> Image.Image:
    return Image.open(io.BytesIO(data))


# ----------------------------------------------------------------------------------------------------------
# cases


@dataclass
class Case:
    family: str
    variant: str
    build: Callable[[Path], Callable[[bytes], np.ndarray]]  # saves the checkpoint, returns the reference
    images: list[str] = field(default_factory=lambda: list(BASIC))
    expect_load_error: bool = False  # vtower must refuse the checkpoint at load (with a message)


CASES: list[Case] = []


def case(family, variant, images=None, expect_load_error=False):
    def deco(fn):
        CASES.append(Case(family, variant, fn, list(images or BASIC), expect_load_error))
        return fn
    return deco


def save_model(m, d: Path, save: dict | None):
    """save_pretrained of `m` (or of its base model `m.model` with save["base"]), in save["dtype"] (default f32),
    sharded at save["shard"] if given."""
    save = save or {}
    if save.get("base"):
        m = m.model
    if save.get("dtype"):
        m = m.to(save["dtype"])
    m.save_pretrained(d, **({"max_shard_size": save["shard"]} if save.get("shard") else {}))
    return type(m)


def core(model):
    """The base model (the one with get_image_features) of a *ForConditionalGeneration or base-class model."""
    return model.model if hasattr(model, "lm_head") else model


def save_desc(save: dict | None) -> str:
    if not save:
        return ""
    parts = []
    if save.get("base"):
        parts.append("base class")
    if save.get("dtype"):
        parts.append(str(save["dtype"]).replace("torch.", ""))
    if save.get("shard"):
        parts.append("sharded")
    return " [" + ", ".join(parts) + "]"


def edit_json(fname: str, **changes):
    """A post-save hook setting top-level keys of `fname` (e.g. Hub-style raw values the classes would normalize)."""
    def f(d: Path):
        path = d / fname
        obj = json.loads(path.read_text())
        if fname == "processor_config.json" and "image_processor" in obj:
            obj["image_processor"].update(changes)
        else:
            obj.update(changes)
        path.write_text(json.dumps(obj))
    return f


def pil_proc(d: Path):
    p = AutoImageProcessor.from_pretrained(d, backend="pil")
    assert p.backend == "pil", p
    return p


def default_proc(d: Path, cls):
    """The image processor of `d` as AutoImageProcessor loads it by default (the torchvision backend), which must be
    `cls`."""
    p = AutoImageProcessor.from_pretrained(d)
    assert type(p) is cls, type(p)
    return p


def grid_thw_ref(model, proc):
    """The reference of a grid_thw family (Qwen2-VL-style processor output): get_image_features(pixel_values,
    image_grid_thw).pooler_output[0] of the one image."""
    @torch.no_grad()
    def ref(data):
        bf = proc(images=pil(data), return_tensors="pt")
        return core(model).get_image_features(bf["pixel_values"], image_grid_thw=bf["image_grid_thw"])\
            .pooler_output[0].numpy()
    return ref


def visual(model):
    """The vision tower of a Qwen2-VL-style *ForConditionalGeneration model."""
    return model.model.visual


def loud_vlm(cls, cfg, seed: int):
    """A LLaVA-style *ForConditionalGeneration model (f32) with a loud vision tower and projector."""
    return common.loud_model(cls, cfg, seed, torch.float32, common.vision_tower, common.projector)


def reload(d: Path, cls, post=None):
    """Runs the post-save hook `post` (if any) on the checkpoint folder `d`, then loads what the reference runs: the
    model (f32, eager) and the PIL-backend image processor."""
    if post:
        post(d)
    return common.load_f32(d, cls), pil_proc(d)


# ---- SigLIP ----------------------------------------------------------------------------------------------

SIG = dict(image_size=64, patch_size=16, hidden_size=32, intermediate_size=48, num_hidden_layers=2,
           num_attention_heads=2)
TEXT_SIG = dict(vocab_size=64, hidden_size=32, intermediate_size=48, num_hidden_layers=1, num_attention_heads=2,
                max_position_embeddings=16)


def siglip_case(variant, vision: dict, proc_kw: dict | None = None, full_model=False, seed=1, images=None,
                expect_load_error=False, write_proc=None, save=None):
    @case("siglip", variant + save_desc(save), images, expect_load_error)
    def build(d: Path):
        if full_model:
            m = common.loud_model(SiglipModel, SiglipConfig(text_config=TEXT_SIG, vision_config=vision), seed,
                                  torch.float32, lambda m: m.vision_model)
        else:
            m = common.loud_model(SiglipVisionModel, SiglipVisionConfig(**vision), seed, torch.float32)
        save_model(m, d, save)
        S = vision.get("image_size", 224)
        kw = {"size": {"height": S, "width": S}, **(proc_kw or {})}
        SiglipImageProcessorPil(**kw).save_pretrained(d)
        if write_proc:
            write_proc(d)
        model, proc = reload(d, SiglipModel if full_model else SiglipVisionModel)
        tower = model.vision_model if full_model else model

        @torch.no_grad()
        def ref(data):
            pv = proc(images=pil(data), return_tensors="pt")["pixel_values"]
            return tower(pixel_values=pv).last_hidden_state[0].numpy()
        return ref


siglip_case("vision-model head=False 64/16", {**SIG, "vision_use_head": False})
siglip_case("vision-model head=True 64/16", {**SIG, "vision_use_head": True}, seed=2)
siglip_case("SiglipModel head=True 56/14 gelu eps1e-5", {**SIG, "image_size": 56, "patch_size": 14,
            "hidden_act": "gelu", "layer_norm_eps": 1e-5}, full_model=True, seed=3)
siglip_case("SiglipModel head=False 48/8 quick_gelu", {**SIG, "image_size": 48, "patch_size": 8,
            "hidden_act": "quick_gelu", "vision_use_head": False}, full_model=True, seed=4)
siglip_case("gelu_new + bilinear + CLIP mean/std", {**SIG, "hidden_act": "gelu_new"},
            {"resample": 2, "image_mean": CLIP_MEAN, "image_std": CLIP_STD}, seed=5)
siglip_case("gelu_fast + eps 0.3", {**SIG, "hidden_act": "gelu_fast", "layer_norm_eps": 0.3}, seed=6)
siglip_case("do_normalize=False", SIG, {"do_normalize": False}, seed=7)
siglip_case("do_rescale=False mean/std 127.5", SIG, {"do_rescale": False, "image_mean": [127.5] * 3,
            "image_std": [127.5] * 3}, seed=8)
siglip_case("rescale_factor 1/127.5", SIG, {"rescale_factor": 1 / 127.5, "image_mean": [1.0] * 3,
            "image_std": [1.0] * 3}, seed=8)
for r in (0, 1, 4, 5):
    siglip_case(f"resample={r}", SIG, {"resample": r}, seed=9 + r)
siglip_case("do_resize=False (native image only)", SIG, {"do_resize": False}, seed=15,
            images=["sq64", "png300x217"])
siglip_case("size 32x128 != image_size (HF: mismatched positions)", SIG, {"size": {"height": 32, "width": 128}},
            seed=16, expect_load_error=True)
siglip_case("raw size 64 int (= shortest_edge: only square images run)", SIG, seed=20,
            write_proc=edit_json("preprocessor_config.json", size=64), images=["sq64", "png300x217", "rgba61x47"])
siglip_case("size {shortest_edge: 64}", SIG, {"size": {"shortest_edge": 64}}, seed=21,
            images=["sq64", "tall83x311"])
siglip_case("hidden_act relu (unsupported)", {**SIG, "hidden_act": "relu"}, seed=17, expect_load_error=True)
siglip_case("num 5 layers 3 heads 72/12", {**SIG, "image_size": 72, "patch_size": 12, "hidden_size": 48,
            "num_attention_heads": 3, "num_hidden_layers": 5}, seed=18)


def _siglip_no_size(d: Path):
    p = json.loads((d / "preprocessor_config.json").read_text())
    del p["size"]
    (d / "preprocessor_config.json").write_text(json.dumps(p))


# the processor's class default size is 224: a tower of image_size 224 without `size` in the file
siglip_case("preprocessor without size (class default 224)", {**SIG, "image_size": 224, "patch_size": 32},
            seed=19, write_proc=_siglip_no_size)


# ---- LLaVA ------------------------------------------------------------------------------------------------

# the LLaVA fixtures' tiny configs (fixtures.llava) with a wider text model and deeper towers
TEXT_LLAMA = {**llava.TEXT, "hidden_size": 40}
CLIP = {**llava.CLIP_A, "num_hidden_layers": 5}
SIGV = {**llava.SIGLIP_C, "num_hidden_layers": 4}


def llava_case(variant, vision: dict, top: dict, proc_factory, seed=20, images=None, expect_load_error=False,
               family="llava-clip", save=None, text=None, post=None):
    @case(family, variant + save_desc(save), images, expect_load_error)
    def build(d: Path):
        cfg = LlavaConfig(text_config=text or TEXT_LLAMA, vision_config=vision, image_token_index=299, **top)
        m = loud_vlm(LlavaForConditionalGeneration, cfg, seed)
        cls = save_model(m, d, save)
        proc_factory().save_pretrained(d)
        model, proc = reload(d, cls, post)

        @torch.no_grad()
        def ref(data):
            pv = proc(images=pil(data), return_tensors="pt")["pixel_values"]
            return core(model).get_image_features(pixel_values=pv).pooler_output[0].numpy()
        return ref


def clip_proc(size=32, crop=32, **kw):
    return lambda: CLIPImageProcessorPil(size={"shortest_edge": size}, crop_size={"height": crop, "width": crop},
                                         **kw)


llava_case("layer -2 default", CLIP, {}, clip_proc())
llava_case("layer -1 full", CLIP, {"vision_feature_layer": -1, "vision_feature_select_strategy": "full"},
           clip_proc(), seed=21)
llava_case("layers [-2,-5] default", CLIP, {"vision_feature_layer": [-2, -5]}, clip_proc(), seed=22)
llava_case("layers [-1,0,2] full", CLIP, {"vision_feature_layer": [-1, 0, 2],
           "vision_feature_select_strategy": "full"}, clip_proc(), seed=23)
llava_case("layer 3 (positive)", CLIP, {"vision_feature_layer": 3}, clip_proc(), seed=24)
llava_case("projector bias False + gelu_pytorch_tanh", CLIP, {"multimodal_projector_bias": False,
           "projector_hidden_act": "gelu_pytorch_tanh"}, clip_proc(), seed=25)
llava_case("projector quick_gelu", CLIP, {"projector_hidden_act": "quick_gelu"}, clip_proc(), seed=26)
llava_case("projector silu", CLIP, {"projector_hidden_act": "silu"}, clip_proc(), seed=27)
llava_case("crop 32 size 40 (crop != size)", CLIP, {}, clip_proc(size=40, crop=32), seed=28)
llava_case("do_center_crop False + size 32x32", CLIP, {},
           lambda: CLIPImageProcessorPil(size={"height": 32, "width": 32}, do_center_crop=False), seed=29)
llava_case("do_center_crop False + shortest_edge (HF fails)", CLIP, {},
           lambda: CLIPImageProcessorPil(size={"shortest_edge": 32}, do_center_crop=False), seed=30,
           images=["png300x217", "sq64"])
llava_case("clip gelu act + eps 1e-2 + 48/16", {**CLIP, "hidden_act": "gelu", "layer_norm_eps": 1e-2,
           "image_size": 48, "patch_size": 16}, {}, clip_proc(48, 48), seed=31)
llava_case("LlavaImageProcessor do_pad + bilinear", CLIP, {},
           lambda: LlavaImageProcessorPil(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32},
                                          do_pad=True, resample=2), seed=32)
llava_case("image_grid_pinpoints in config (ignored)", CLIP, {"image_grid_pinpoints": [[32, 64], [64, 32]]},
           clip_proc(), seed=33)
llava_case("CLIP proc do_normalize False, mean [0.2]", CLIP, {},
           lambda: CLIPImageProcessorPil(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32},
                                         image_mean=[0.2, 0.3, 0.4], image_std=[0.9, 0.8, 0.7]), seed=34)
llava_case("layer -2 default", CLIP, {}, clip_proc(), seed=35, save={"dtype": torch.bfloat16})
llava_case("layer -2 default", CLIP, {}, clip_proc(), seed=40, save={"dtype": torch.float16, "shard": "20KB"})
llava_case("layers [-2,-5] default", CLIP, {"vision_feature_layer": [-2, -5]}, clip_proc(), seed=41,
           save={"base": True})
llava_case("text_config without hidden_size (LlamaConfig default 4096)", {**CLIP, "num_hidden_layers": 2},
           {}, clip_proc(), seed=42, text={"model_type": "llama", "vocab_size": 300, "num_hidden_layers": 1,
                                           "intermediate_size": 16, "num_attention_heads": 32,
                                           "num_key_value_heads": 1})
llava_case("clip 36/8 (conv drops 4 px) + crop 36", {**CLIP, "image_size": 36}, {}, clip_proc(40, 36), seed=43)
llava_case("siglip tower full -1", SIGV, {"vision_feature_layer": -1, "vision_feature_select_strategy": "full"},
           lambda: SiglipImageProcessorPil(size={"height": 32, "width": 32}), seed=36, family="llava-siglip")
llava_case("siglip tower full [-1,-3]", SIGV, {"vision_feature_layer": [-1, -3],
           "vision_feature_select_strategy": "full"},
           lambda: SiglipImageProcessorPil(size={"height": 32, "width": 32}), seed=37, family="llava-siglip")
llava_case("siglip tower default -2 (drops a patch)", SIGV, {},
           lambda: SiglipImageProcessorPil(size={"height": 32, "width": 32}), seed=38, family="llava-siglip")
llava_case("raw size 40 / crop_size 32 ints (older Hub files)", CLIP, {}, clip_proc(), seed=45,
           post=edit_json("preprocessor_config.json", size=40, crop_size=32))
llava_case("siglip tower, raw size 32 int", SIGV, {"vision_feature_layer": -1, "vision_feature_select_strategy": "full"},
           lambda: SiglipImageProcessorPil(size={"height": 32, "width": 32}), seed=46, family="llava-siglip",
           post=edit_json("preprocessor_config.json", size=32), images=["sq64", "png300x217", "tall83x311"])
llava_case("siglip tower full -1", SIGV, {"vision_feature_layer": -1, "vision_feature_select_strategy": "full"},
           lambda: SiglipImageProcessorPil(size={"height": 32, "width": 32}), seed=44, family="llava-siglip",
           save={"base": True, "dtype": torch.bfloat16})
llava_case("siglip tower + CLIP processor", {**SIGV, "image_size": 32}, {"vision_feature_select_strategy": "full",
           "vision_feature_layer": -1}, clip_proc(40, 32), seed=39, family="llava-siglip")


@case("clip", "bare CLIPVisionModel (unsupported)", expect_load_error=True)
def _bare_clip(d: Path):
    from transformers import CLIPVisionConfig, CLIPVisionModel
    m = CLIPVisionModel(CLIPVisionConfig(**{k: v for k, v in CLIP.items() if k != "model_type"}))
    m.save_pretrained(d)
    clip_proc()().save_pretrained(d)
    return lambda data: None


# ---- Gemma3 -----------------------------------------------------------------------------------------------

TEXT_GEMMA = dict(vocab_size=300, hidden_size=40, intermediate_size=48, num_hidden_layers=1, num_attention_heads=2,
                  num_key_value_heads=1, head_dim=16)
GEMMA_TOKENS = dict(boi_token_index=290, eoi_token_index=291, image_token_index=292)
GV = dict(image_size=64, patch_size=8, hidden_size=32, intermediate_size=48, num_hidden_layers=2,
          num_attention_heads=2, vision_use_head=False)


def gemma3_case(variant, vision: dict, mm_tokens: int, proc_kw=None, seed=40, images=None, expect_load_error=False,
                save=None, post=None):
    @case("gemma3", variant + save_desc(save), images, expect_load_error)
    def build(d: Path):
        cfg = Gemma3Config(text_config=TEXT_GEMMA, vision_config=vision, mm_tokens_per_image=mm_tokens,
                           **GEMMA_TOKENS)
        m = loud_vlm(Gemma3ForConditionalGeneration, cfg, seed)
        cls = save_model(m, d, save)
        S = vision["image_size"]
        Gemma3ImageProcessorPil(**{"size": {"height": S, "width": S}, **(proc_kw or {})}).save_pretrained(d)
        model, proc = reload(d, cls, post)
        call = {} if proc.do_pan_and_scan is not None else {"do_pan_and_scan": False}

        @torch.no_grad()
        def ref(data):
            pv = proc(images=pil(data), return_tensors="pt", **call)["pixel_values"]
            # pan-and-scan: the original image first, then its crops, each mm_tokens_per_image tokens
            f = core(model).get_image_features(pixel_values=pv).pooler_output
            return f.reshape(-1, f.shape[-1]).numpy()
        return ref


gemma3_case("64/8 mm16 (pool 2)", GV, 16)
gemma3_case("64/8 mm4 (pool 4)", GV, 4, seed=41)
gemma3_case("64/8 mm64 (pool 1)", GV, 64, seed=42)
gemma3_case("56/14 mm4", {**GV, "image_size": 56, "patch_size": 14}, 4, seed=43)
gemma3_case("48/8 mm9 (3x3)", {**GV, "image_size": 48, "patch_size": 8}, 9, seed=44)
gemma3_case("48/8 mm16 (6 not divisible by 4: HF pools k=1 -> 36 != 16 soft tokens)",
            {**GV, "image_size": 48, "patch_size": 8}, 16, seed=45, expect_load_error=True)
gemma3_case("mm 8 not a square", GV, 8, seed=46, expect_load_error=True)
gemma3_case("vision gelu + eps 1e-2 + bicubic", {**GV, "hidden_act": "gelu", "layer_norm_eps": 1e-2}, 16,
            {"resample": 3}, seed=47)
gemma3_case("CLIP mean/std", GV, 16, {"image_mean": CLIP_MEAN, "image_std": CLIP_STD}, seed=48)
gemma3_case("do_pan_and_scan False explicit", GV, 16, {"do_pan_and_scan": False}, seed=49)
gemma3_case("vision_use_head True", {**GV, "vision_use_head": True}, 16, seed=50)
gemma3_case("pan_and_scan on (min crop 16, ratio 1.2, 3 crops)", GV, 16,
            {"do_pan_and_scan": True, "pan_and_scan_min_crop_size": 16, "pan_and_scan_max_num_crops": 3,
             "pan_and_scan_min_ratio_to_activate": 1.2}, seed=55, images=BASIC + ["wide700x40"])
gemma3_case("72/8 mm9 (pool 3)", {**GV, "image_size": 72}, 9, seed=51)
gemma3_case("60/8 mm49 (conv drops 4 px)", {**GV, "image_size": 60}, 49, seed=52)
gemma3_case("64/8 mm16", GV, 16, seed=53, save={"base": True})
gemma3_case("64/8 mm16", GV, 16, seed=54, save={"dtype": torch.bfloat16, "shard": "30KB"})


# ---- Pixtral / Mistral3 -------------------------------------------------------------------------------------

PV = dict(model_type="pixtral", hidden_size=32, intermediate_size=48, num_hidden_layers=3, num_attention_heads=4,
          patch_size=8, image_size=64, hidden_act="silu")
TEXT_MISTRAL = dict(model_type="mistral", vocab_size=300, hidden_size=40, intermediate_size=48, num_hidden_layers=1,
                    num_attention_heads=2, num_key_value_heads=1, head_dim=16)


def pixtral_case(variant, vision: dict, top: dict, longest=64, mistral3=False, seed=60, images=None,
                 expect_load_error=False, proc_patch=None, legacy_files=False, save=None, text=None, post=None):
    @case("mistral3" if mistral3 else "pixtral-llava", variant + save_desc(save), images or ASPECT,
          expect_load_error)
    def build(d: Path):
        if mistral3:
            cfg = Mistral3Config(vision_config=vision, text_config=text or TEXT_MISTRAL, **top)
            cls = Mistral3ForConditionalGeneration
            merge = cfg.spatial_merge_size
        else:
            cfg = LlavaConfig(vision_config=vision, text_config=TEXT_MISTRAL, image_token_index=pixtral.IMG_ID,
                              **{"vision_feature_select_strategy": "full", **top})
            cls = LlavaForConditionalGeneration
            merge = 1
        m = loud_vlm(cls, cfg, seed)
        cls = save_model(m, d, save)
        P = vision["patch_size"]
        ip = PixtralImageProcessorPil(size={"longest_edge": longest}, patch_size=proc_patch or P)
        proc = pixtral.make_processor(ip, patch_size=P, merge=merge)
        if legacy_files:
            ip.save_pretrained(d)
            (d / "processor_config.json").write_text(json.dumps({
                "image_break_token": pixtral.BREAK_TOKEN, "image_end_token": pixtral.END_TOKEN,
                "image_token": pixtral.IMG_TOKEN,
                "patch_size": P, "processor_class": "PixtralProcessor", "spatial_merge_size": merge}))
            proc.tokenizer.save_pretrained(d)
        else:
            proc.save_pretrained(d)
        if post:
            post(d)
        if post or legacy_files:  # the reference runs what the files say
            from transformers.models.pixtral.processing_pixtral import PixtralProcessor
            proc = PixtralProcessor.from_pretrained(d, backend="pil")
            assert proc.image_processor.backend == "pil"
        model = common.load_f32(d, cls)
        layer = cfg.vision_feature_layer

        @torch.no_grad()
        def ref(data):
            bf = proc(text=pixtral.IMG_TOKEN, images=[pil(data)], return_tensors="pt")
            pv, sizes = bf["pixel_values"], bf["image_sizes"].tolist()
            if mistral3:
                mm = core(model)
                vout = mm.vision_tower(pv, image_sizes=sizes, output_hidden_states=True, return_dict=True)
                if isinstance(layer, int):
                    sel = vout.hidden_states[layer]
                else:
                    sel = torch.cat([vout.hidden_states[i] for i in layer], -1)
                return mm.multi_modal_projector(sel.squeeze(0), sizes).reshape(-1, cfg.text_config.hidden_size)\
                    .numpy()
            out = core(model).get_image_features(pixel_values=pv, image_sizes=sizes, return_dict=True)
            (e,) = out.pooler_output
            return e.numpy()
        return ref


pixtral_case("patch 8 layer -1 bias", PV, {"vision_feature_layer": -1})
pixtral_case("layer -2 no bias gelu_tanh", PV, {"vision_feature_layer": -2, "multimodal_projector_bias": False,
             "projector_hidden_act": "gelu_pytorch_tanh"}, seed=61)
pixtral_case("layers [-1,-3]", PV, {"vision_feature_layer": [-1, -3]}, seed=62)
pixtral_case("rope_theta 100 + patch 6 + longest 50", {**PV, "patch_size": 6,
             "rope_parameters": {"rope_theta": 100.0, "rope_type": "axial"}}, {"vision_feature_layer": -1},
             longest=50, seed=63)
pixtral_case("head_dim 16 with 4 heads of 8 (rope dim != attn dim)", {**PV, "head_dim": 16},
             {"vision_feature_layer": -1}, seed=64)
pixtral_case("longest 200 (image_size 64)", PV, {"vision_feature_layer": -1}, longest=200, seed=65)
pixtral_case("gelu tower act", {**PV, "hidden_act": "gelu"}, {"vision_feature_layer": -1}, seed=66)
pixtral_case("strategy default (drops first token)", PV, {"vision_feature_layer": -1,
             "vision_feature_select_strategy": "default"}, seed=67)
pixtral_case("legacy preprocessor_config.json", PV, {"vision_feature_layer": -1}, seed=68, legacy_files=True)
pixtral_case("raw patch_size {h,w} dict + size {height,width}", PV, {"vision_feature_layer": -1}, seed=59,
             legacy_files=True, post=edit_json("preprocessor_config.json", patch_size={"height": 8, "width": 8},
                                               size={"height": 48, "width": 72}))
pixtral_case("patch 8 layer -1 bias", PV, {"vision_feature_layer": -1}, seed=69,
             save={"base": True, "dtype": torch.bfloat16})

pixtral_case("merge 2 layer -1", PV, {"vision_feature_layer": -1}, mistral3=True, seed=70)
pixtral_case("merge 2 layer -2 bias True silu proj", PV, {"vision_feature_layer": -2,
             "multimodal_projector_bias": True, "projector_hidden_act": "silu"}, mistral3=True, seed=71)
pixtral_case("merge 1", PV, {"vision_feature_layer": -1, "spatial_merge_size": 1}, mistral3=True, seed=72)
pixtral_case("merge 3 patch 6 longest 100", {**PV, "patch_size": 6}, {"vision_feature_layer": -1,
             "spatial_merge_size": 3}, longest=100, mistral3=True, seed=73)
pixtral_case("text rms_norm_eps 0.5", PV, {"vision_feature_layer": -1}, text={**TEXT_MISTRAL, "rms_norm_eps": 0.5},
             mistral3=True, seed=74)
pixtral_case("rope_theta 500 legacy files", {**PV, "rope_parameters": {"rope_theta": 500.0, "rope_type": "axial"}},
             {"vision_feature_layer": -1}, mistral3=True, seed=75, legacy_files=True)
pixtral_case("layers [-1,-2] (HF fails in the norm)", PV, {"vision_feature_layer": [-1, -2]}, mistral3=True,
             seed=76, images=["png300x217"])
pixtral_case("merge 2 layer -1", PV, {"vision_feature_layer": -1}, mistral3=True, seed=77,
             save={"base": True, "shard": "20KB"})
pixtral_case("merge 2 layer -1", PV, {"vision_feature_layer": -1}, mistral3=True, seed=78,
             save={"dtype": torch.float16})


@case("pixtral-bare", "PixtralVisionModel", ASPECT)
def _bare_pixtral(d: Path, seed=80):
    torch.manual_seed(seed)
    m = PixtralVisionModel(PixtralVisionConfig(**{k: v for k, v in PV.items() if k != "model_type"},
                                               rope_parameters={"rope_theta": 300.0, "rope_type": "axial"})).eval()
    common.loud_init(m, seed)
    m.save_pretrained(d)
    PixtralImageProcessorPil(size={"longest_edge": 48}, patch_size=8).save_pretrained(d)
    model, proc = reload(d, PixtralVisionModel)

    @torch.no_grad()
    def ref(data):
        bf = proc(images=[pil(data)], return_tensors="pt")
        return model(pixel_values=bf["pixel_values"], image_sizes=bf["image_sizes"].tolist()).last_hidden_state[0]\
            .numpy()
    return ref


# ---- Qwen2-VL / Qwen2.5-VL ---------------------------------------------------------------------------------

TEXT_QWEN = dict(vocab_size=16, hidden_size=24, intermediate_size=16, num_hidden_layers=1, num_attention_heads=2,
                 num_key_value_heads=1, max_position_embeddings=64, bos_token_id=2, eos_token_id=3,
                 rope_parameters={"rope_type": "default", "rope_theta": 10000.0, "mrope_section": [1, 1, 1]})
Q2V = dict(depth=2, embed_dim=32, hidden_size=24, mlp_ratio=2, num_heads=2, patch_size=8, spatial_merge_size=2,
           temporal_patch_size=2)
Q25V = dict(depth=4, hidden_size=32, intermediate_size=40, num_heads=2, out_hidden_size=24, patch_size=8,
            spatial_merge_size=2, temporal_patch_size=2, window_size=32, fullatt_block_indexes=[1],
            tokens_per_second=2)
QWEN_IMAGES = ASPECT + ["extreme1000x4"]


def qwen_case(variant, vision: dict, qwen25: bool, proc_kw=None, seed=90, images=None, expect_load_error=False,
              hub_pre=False, save=None, post=None):
    @case("qwen2.5-vl" if qwen25 else "qwen2-vl", variant + save_desc(save), images or QWEN_IMAGES,
          expect_load_error)
    def build(d: Path):
        if qwen25:
            cls, cfg = Qwen2_5_VLForConditionalGeneration, Qwen2_5_VLConfig(text_config=TEXT_QWEN,
                                                                            vision_config=vision)
        else:
            cls, cfg = Qwen2VLForConditionalGeneration, Qwen2VLConfig(text_config=TEXT_QWEN, vision_config=vision)
        m = common.loud_model(cls, cfg, seed, torch.float32, visual)
        cls = save_model(m, d, save)
        P, M, T = vision["patch_size"], vision["spatial_merge_size"], vision["temporal_patch_size"]
        kw = dict(size={"shortest_edge": 4 * (P * M) ** 2, "longest_edge": 64 * (P * M) ** 2}, patch_size=P,
                  merge_size=M, temporal_patch_size=T)
        kw.update(proc_kw or {})
        Qwen2VLImageProcessorPil(**kw).save_pretrained(d)
        if hub_pre:  # older Hub files: top-level min_pixels / max_pixels (override `size` when loading)
            edit_json("preprocessor_config.json", **hub_pre)(d)
        model, proc = reload(d, cls, post)
        return grid_thw_ref(model, proc)


qwen_case("default-ish p8 m2 t2", Q2V, False)
qwen_case("merge 1", {**Q2V, "spatial_merge_size": 1}, False, seed=91)
qwen_case("merge 3 temporal 1", {**Q2V, "spatial_merge_size": 3, "temporal_patch_size": 1}, False, seed=92)
qwen_case("temporal 3 + gelu act + mlp_ratio 3", {**Q2V, "temporal_patch_size": 3, "hidden_act": "gelu",
          "mlp_ratio": 3}, False, seed=93)
qwen_case("min_pixels big (tiny images upscale)", Q2V, False, {"size": {"shortest_edge": 40 * 256,
          "longest_edge": 80 * 256}}, seed=94)
qwen_case("max_pixels small (downscale)", Q2V, False, {"size": {"shortest_edge": 256, "longest_edge": 12 * 256}},
          seed=95)
qwen_case("hub top-level min/max_pixels", Q2V, False, hub_pre={"min_pixels": 2 * 256, "max_pixels": 20 * 256},
          seed=96)
qwen_case("bilinear + CLIP-less mean", Q2V, False, {"resample": 2, "image_mean": [0.5] * 3, "image_std": [0.25] * 3},
          seed=97)
qwen_case("patch 6 merge 2 (factor 12)", {**Q2V, "patch_size": 6}, False, seed=98)

qwen_case("window 32 full [1]", Q25V, True, seed=100)
qwen_case("window 16 (1 merged token) full []", {**Q25V, "window_size": 16, "fullatt_block_indexes": []}, True,
          seed=101)
qwen_case("window 64 full [0,3]", {**Q25V, "window_size": 64, "fullatt_block_indexes": [0, 3]}, True, seed=102)
qwen_case("window 48 (not a multiple of 16*2)", {**Q25V, "window_size": 48}, True, seed=103)
qwen_case("merge 1 window 24", {**Q25V, "spatial_merge_size": 1, "window_size": 24}, True, seed=104)
qwen_case("out_hidden 56 intermediate 24 gelu_tanh", {**Q25V, "out_hidden_size": 56, "intermediate_size": 24,
          "hidden_act": "gelu_pytorch_tanh"}, True, seed=105)
qwen_case("temporal 1 + hub min/max", {**Q25V, "temporal_patch_size": 1}, True,
          hub_pre={"min_pixels": 8 * 256, "max_pixels": 30 * 256}, seed=106)
qwen_case("window 8 (< merge unit)", {**Q25V, "window_size": 8}, True, seed=107)
qwen_case("fullatt index 9 beyond depth 4", {**Q25V, "fullatt_block_indexes": [2, 9]}, True, seed=114)
qwen_case("size {min_pixels,max_pixels} + top-level", Q2V, False, seed=115,
          hub_pre={"size": {"min_pixels": 3 * 256, "max_pixels": 25 * 256}, "min_pixels": 3 * 256,
                   "max_pixels": 25 * 256})
qwen_case("default-ish p8 m2 t2", Q2V, False, seed=108, save={"base": True, "dtype": torch.bfloat16})
qwen_case("window 32 full [1]", Q25V, True, seed=109, save={"base": True, "shard": "20KB"})
qwen_case("window 32 full [1]", Q25V, True, seed=110, save={"dtype": torch.float16})
qwen_case("do_resize False", Q2V, False, {"do_resize": False}, seed=111, images=["sq64", "png300x217"])
qwen_case("size only shortest_edge (HF fails)", Q2V, False, {"size": {"shortest_edge": 512}}, seed=112,
          images=["png300x217"])
qwen_case("hub min_pixels only (size keeps longest_edge)", Q2V, False, hub_pre={"min_pixels": 30 * 256}, seed=113)


def bare_qwen_case(qwen25: bool, vision: dict, seed: int, save=None):
    name = "Qwen2_5_VisionTransformerPretrainedModel" if qwen25 else "Qwen2VisionTransformerPretrainedModel"

    @case("qwen2.5-vl" if qwen25 else "qwen2-vl", "bare " + name + save_desc(save), QWEN_IMAGES)
    def build(d: Path):
        from transformers.models.qwen2_5_vl.modeling_qwen2_5_vl import Qwen2_5_VisionTransformerPretrainedModel
        from transformers.models.qwen2_vl.modeling_qwen2_vl import Qwen2VisionTransformerPretrainedModel
        torch.manual_seed(seed)
        if qwen25:
            m = Qwen2_5_VLForConditionalGeneration(Qwen2_5_VLConfig(text_config=TEXT_QWEN, vision_config=vision))
            cls = Qwen2_5_VisionTransformerPretrainedModel
        else:
            m = Qwen2VLForConditionalGeneration(Qwen2VLConfig(text_config=TEXT_QWEN, vision_config=vision))
            cls = Qwen2VisionTransformerPretrainedModel
        visual = m.model.visual.eval()
        common.loud_init(visual, seed)
        if save and save.get("dtype"):
            visual = visual.to(save["dtype"])
        visual.save_pretrained(d)
        Qwen2VLImageProcessorPil(size={"shortest_edge": 4 * 256, "longest_edge": 64 * 256}, patch_size=8,
                                 merge_size=2, temporal_patch_size=2).save_pretrained(d)
        model, proc = reload(d, cls)

        @torch.no_grad()
        def ref(data):
            bf = proc(images=pil(data), return_tensors="pt")
            return model(bf["pixel_values"], grid_thw=bf["image_grid_thw"]).pooler_output.numpy()
        return ref


bare_qwen_case(False, Q2V, 120)
bare_qwen_case(True, Q25V, 121, save={"dtype": torch.bfloat16})


# ---- GLM-4.xV ---------------------------------------------------------------------------------------------

GLM_TEXT = dict(vocab_size=16, hidden_size=24, intermediate_size=16, num_hidden_layers=1, num_attention_heads=2,
                num_key_value_heads=1, max_position_embeddings=64,
                rope_parameters={"rope_type": "default", "rope_theta": 10000.0, "mrope_section": [2, 2, 2]})
GLMV = dict(depth=2, hidden_size=32, num_heads=2, intermediate_size=40, out_hidden_size=24, patch_size=8,
            spatial_merge_size=2, temporal_patch_size=2, image_size=40)


def glm_case(variant, vision: dict, kind="glm4v", proc_kw=None, seed=140, images=None, expect_load_error=False,
             hub_pre=None, save=None):
    """A GLM-4.xV checkpoint: kind glm4v (Glm4vForConditionalGeneration), glm_ocr, or glm46v (the tower by
    vision_config.model_type). Bounds count 2 frames: the default size is 4..64 tokens."""
    from transformers import (Glm4vConfig, Glm4vForConditionalGeneration, Glm4vImageProcessorPil, Glm46VConfig,
                              Glm46VForConditionalGeneration, GlmOcrConfig, GlmOcrForConditionalGeneration)

    @case("glm4v", f"{kind} {variant}" + save_desc(save), images or QWEN_IMAGES, expect_load_error)
    def build(d: Path):
        cfg_cls, cls = {"glm4v": (Glm4vConfig, Glm4vForConditionalGeneration),
                        "glm_ocr": (GlmOcrConfig, GlmOcrForConditionalGeneration),
                        "glm46v": (Glm46VConfig, Glm46VForConditionalGeneration)}[kind]
        text = dict(GLM_TEXT, model_type="glm4v_text") if kind == "glm46v" else GLM_TEXT
        m = common.loud_model(cls, cfg_cls(text_config=text, vision_config=vision), seed, torch.float32, visual)
        cls = save_model(m, d, save)
        P, M, T = vision["patch_size"], vision["spatial_merge_size"], vision["temporal_patch_size"]
        kw = dict(size={"shortest_edge": 4 * T * (P * M) ** 2, "longest_edge": 64 * T * (P * M) ** 2},
                  patch_size=P, merge_size=M, temporal_patch_size=T)
        kw.update(proc_kw or {})
        Glm4vImageProcessorPil(**kw).save_pretrained(d)
        if hub_pre:
            edit_json("preprocessor_config.json", **hub_pre)(d)
        model, proc = reload(d, cls)
        return grid_thw_ref(model, proc)


glm_case("p8 m2 t2, 5x5 table", GLMV)
glm_case("attention_bias + gelu", {**GLMV, "attention_bias": True, "hidden_act": "gelu"}, seed=141)
glm_case("merge 1 (1x1 downsample)", {**GLMV, "spatial_merge_size": 1}, seed=142)
glm_case("merge 3 temporal 1", {**GLMV, "spatial_merge_size": 3, "temporal_patch_size": 1}, seed=143)
glm_case("3x3 table (image_size 24)", {**GLMV, "image_size": 24}, seed=144)
glm_case("9x9 table, patch 6", {**GLMV, "patch_size": 6, "image_size": 54}, seed=145)
glm_case("rms_norm_eps 1e-3, rope_theta 100", {**GLMV, "rms_norm_eps": 1e-3,
         "rope_parameters": {"rope_type": "axial", "rope_theta": 100.0}}, seed=146)
glm_case("min_pixels big (tiny images upscale)", GLMV, proc_kw={"size": {"shortest_edge": 2 * 40 * 256,
         "longest_edge": 2 * 80 * 256}}, seed=147)
glm_case("max_pixels small (downscale)", GLMV, proc_kw={"size": {"shortest_edge": 2 * 256,
         "longest_edge": 2 * 6 * 256}}, seed=148)
glm_case("hub top-level min/max_pixels (ignored)", GLMV, hub_pre={"min_pixels": 50 * 256, "max_pixels": 60 * 256},
         seed=149)
glm_case("bilinear + 0.5 mean/std", GLMV, proc_kw={"resample": 2, "image_mean": [0.5] * 3,
         "image_std": [0.5] * 3}, seed=150)
glm_case("size only shortest_edge (HF fails)", GLMV, proc_kw={"size": {"shortest_edge": 512}}, seed=151,
         images=["png300x217"], expect_load_error=True)
glm_case("default", GLMV, kind="glm_ocr", seed=152)
glm_case("attention_bias false, silu", {**GLMV, "attention_bias": False, "hidden_act": "silu"}, kind="glm_ocr",
         seed=153)
glm_case("glm4v_moe_vision tower", {**GLMV, "model_type": "glm4v_moe_vision"}, kind="glm46v", seed=154)
glm_case("glm_ocr_vision tower", {**GLMV, "model_type": "glm_ocr_vision"}, kind="glm46v", seed=155)
glm_case("p8 m2 t2, 5x5 table", GLMV, seed=156, save={"dtype": torch.bfloat16, "shard": "20KB"})
glm_case("p8 m2 t2, 5x5 table", GLMV, kind="glm_ocr", seed=157, save={"dtype": torch.float16})


POCR_TEXT = dict(vocab_size=16, hidden_size=24, intermediate_size=16, num_hidden_layers=1, num_attention_heads=2,
                 num_key_value_heads=1, head_dim=12,
                 rope_parameters={"rope_type": "default", "rope_theta": 500000.0, "mrope_section": [2, 2, 2]})
POCRV = dict(hidden_size=32, intermediate_size=48, num_hidden_layers=2, num_attention_heads=2, patch_size=8,
             spatial_merge_size=2, image_size=40)


def paddleocr_case(variant, vision: dict, proc_kw=None, seed=170, images=None, expect_load_error=False,
                   hub_pre=None, save=None):
    """A PaddleOCRVLForConditionalGeneration checkpoint; its processor is the torchvision one
    (AutoImageProcessor's default, which vtower follows). Default size: 2..64 tokens."""
    from transformers import PaddleOCRVLConfig, PaddleOCRVLForConditionalGeneration, PaddleOCRVLImageProcessor

    @case("paddleocr_vl", variant + save_desc(save), images or ASPECT, expect_load_error)
    def build(d: Path):
        m = common.loud_model(PaddleOCRVLForConditionalGeneration,
                              PaddleOCRVLConfig(text_config=POCR_TEXT, vision_config=vision), seed, torch.float32,
                              lambda m: m.model.visual, lambda m: m.model.projector)
        cls = save_model(m, d, save)
        F = vision["patch_size"] * vision["spatial_merge_size"]
        kw = dict(size={"shortest_edge": 2 * F * F, "longest_edge": 64 * F * F}, patch_size=vision["patch_size"],
                  merge_size=vision["spatial_merge_size"])
        kw.update(proc_kw or {})
        PaddleOCRVLImageProcessor(**kw).save_pretrained(d)
        if hub_pre:
            edit_json("preprocessor_config.json", **hub_pre)(d)
        model, proc = common.load_f32(d, cls), default_proc(d, PaddleOCRVLImageProcessor)
        return grid_thw_ref(model, proc)


paddleocr_case("p8 m2, 5x5 table", POCRV)
paddleocr_case("gelu + eps 1e-5 + rope_theta 100", {**POCRV, "hidden_act": "gelu", "layer_norm_eps": 1e-5,
               "rope_parameters": {"rope_type": "axial", "rope_theta": 100.0}}, seed=171)
paddleocr_case("merge 1", {**POCRV, "spatial_merge_size": 1}, seed=172)
paddleocr_case("merge 3, 9x9 table, patch 6", {**POCRV, "spatial_merge_size": 3, "patch_size": 6, "image_size": 54},
               seed=173)
paddleocr_case("4 heads (head_dim 8)", {**POCRV, "num_attention_heads": 4}, seed=174)
paddleocr_case("min_pixels big (upscale)", POCRV, proc_kw={"size": {"shortest_edge": 40 * 256,
               "longest_edge": 80 * 256}}, seed=175)
paddleocr_case("max_pixels small (downscale)", POCRV, proc_kw={"size": {"shortest_edge": 256,
               "longest_edge": 6 * 256}}, seed=176)
paddleocr_case("hub top-level min/max_pixels (win)", POCRV, hub_pre={"min_pixels": 10 * 256, "max_pixels": 20 * 256},
               seed=177)
paddleocr_case("bilinear + 0.5 mean/std", POCRV, proc_kw={"resample": 2, "image_mean": [0.5] * 3,
               "image_std": [0.5] * 3}, seed=178)
paddleocr_case("temporal_patch_size 2 (HF conv fails)", POCRV, proc_kw={"temporal_patch_size": 2}, seed=179,
               images=["png300x217"], expect_load_error=True)
paddleocr_case("p8 m2, 5x5 table", POCRV, seed=180, save={"dtype": torch.bfloat16, "shard": "20KB"})
paddleocr_case("p8 m2, 5x5 table", POCRV, seed=181, save={"dtype": torch.float16})

KIMI_TEXT = dict(vocab_size=16, hidden_size=24, intermediate_size=32, moe_intermediate_size=16, num_hidden_layers=1,
                 num_attention_heads=2, num_key_value_heads=2, n_routed_experts=4, num_experts_per_tok=2,
                 n_shared_experts=1, first_k_dense_replace=0, kv_lora_rank=8, q_lora_rank=8, qk_rope_head_dim=4,
                 qk_nope_head_dim=8, v_head_dim=8, max_position_embeddings=64, n_group=1, topk_group=1)
KIMIV = dict(patch_size=8, pos_emb_height=5, pos_emb_width=5, hidden_size=32, intermediate_size=48,
             num_hidden_layers=2, num_attention_heads=2)


def kimi_case(variant, vision: dict, proc_kw=None, seed=190, images=None, expect_load_error=False, save=None):
    """A Kimi_K25ForConditionalGeneration checkpoint (save_pretrained writes the original layout: fused wqkv;
    save={"internal": True} the internal one); its processor is the torchvision one (the only one). Default
    budget: 24 patches, 6 a side."""
    from transformers import Kimi_K25Config, Kimi_K25ForConditionalGeneration, Kimi_K25ImageProcessor

    save = dict(save or {})
    internal = save.pop("internal", False)
    name = variant + save_desc(save) + (" [internal layout]" if internal else "")

    @case("kimi_k25", name, images or ASPECT, expect_load_error)
    def build(d: Path):
        cfg = Kimi_K25Config(text_config=KIMI_TEXT, vision_config=vision, projection_hidden_size=vision["hidden_size"])
        m = common.loud_model(Kimi_K25ForConditionalGeneration, cfg, seed, torch.float32,
                              lambda m: m.model.vision_tower, lambda m: m.model.mm_projector)
        if save.get("dtype"):
            m = m.to(save["dtype"])
        kw = {"max_shard_size": save["shard"]} if save.get("shard") else {}
        m.save_pretrained(d, save_original_format=not internal, **kw)
        merge = (vision.get("merge_kernel_size") or [2, 2])[0]
        pkw = dict(patch_size=vision["patch_size"], merge_size=merge, max_patches=24,
                   size={"max_height": 6, "max_width": 6})
        pkw.update(proc_kw or {})
        Kimi_K25ImageProcessor(**pkw).save_pretrained(d)
        model, proc = common.load_f32(d, Kimi_K25ForConditionalGeneration), default_proc(d, Kimi_K25ImageProcessor)
        return grid_thw_ref(model, proc)


kimi_case("p8, 5x5 table, 24 patches, 6 a side", KIMIV)
kimi_case("gelu + 7x7 table + rope_theta 100", {**KIMIV, "hidden_act": "gelu", "pos_emb_height": 7,
          "pos_emb_width": 7, "rope_parameters": {"rope_type": "axial", "rope_theta": 100.0}}, seed=191)
kimi_case("merge 1", {**KIMIV, "merge_kernel_size": [1, 1]}, seed=192)
kimi_case("merge 3, patch 6, 3x3 table", {**KIMIV, "merge_kernel_size": [3, 3], "patch_size": 6, "pos_emb_height": 3,
          "pos_emb_width": 3}, seed=193)
kimi_case("4 heads (head_dim 8)", {**KIMIV, "num_attention_heads": 4}, seed=194)
kimi_case("patch 14, class-default processor (16384, 512)", {**KIMIV, "patch_size": 14},
          proc_kw={"max_patches": 16384, "size": {"max_height": 512, "max_width": 512}}, seed=195)
kimi_case("budget 200, 20 a side", KIMIV, proc_kw={"max_patches": 200, "size": {"max_height": 20, "max_width": 20}},
          seed=196)
kimi_case("bilinear + CLIP mean/std", KIMIV, proc_kw={"resample": 2, "image_mean": common.OPENAI_CLIP_MEAN,
          "image_std": common.OPENAI_CLIP_STD}, seed=197)
kimi_case("5x7 table (HF misreads it)", {**KIMIV, "pos_emb_width": 7}, seed=198, images=["png300x217"],
          expect_load_error=True)
kimi_case("p8, 5x5 table", KIMIV, seed=199, save={"dtype": torch.bfloat16, "shard": "20KB"})
kimi_case("p8, 5x5 table", KIMIV, seed=200, save={"dtype": torch.bfloat16, "shard": "20KB", "internal": True})
kimi_case("p8, 5x5 table", KIMIV, seed=201, save={"dtype": torch.float16, "internal": True})


@case("llava-next", "LlavaNextForConditionalGeneration (unsupported)", expect_load_error=True)
def _llava_next(d: Path, seed=121):
    from transformers import LlavaNextConfig, LlavaNextForConditionalGeneration
    torch.manual_seed(seed)
    m = LlavaNextForConditionalGeneration(LlavaNextConfig(text_config=TEXT_LLAMA, vision_config=CLIP,
                                                          image_grid_pinpoints=[[32, 32], [32, 64]]))
    m.save_pretrained(d)
    clip_proc()().save_pretrained(d)
    return lambda data: None


# ----------------------------------------------------------------------------------------------------------
# driver


@dataclass
class Row:
    family: str
    variant: str
    image: str
    status: str  # ok / FAIL / load-err / both-err
    ref_tokens: str = ""
    vt_tokens: str = ""
    max_abs: float = float("nan")
    rel_l2: float = float("nan")
    note: str = ""


# ---- Gemma 4 -----------------------------------------------------------------------------------------------

G4V = dict(hidden_size=32, intermediate_size=40, num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=2,
           head_dim=16, patch_size=4, pooling_kernel_size=2, position_embedding_size=256)
TEXT_G4 = dict(vocab_size=64, hidden_size=24, intermediate_size=16, num_hidden_layers=2, num_attention_heads=2,
               num_key_value_heads=1, head_dim=8, global_head_dim=8, hidden_size_per_layer_input=4,
               vocab_size_per_layer_input=64, layer_types=["sliding_attention", "full_attention"])
G4_IMAGES = ASPECT + ["extreme1000x4", "sq64"]


def gemma4_case(variant, vision: dict, proc_kw=None, seed=130, images=None, expect_load_error=False, save=None,
                post=None, bare=False):
    @case("gemma4", variant + save_desc(save) + (" [bare tower]" if bare else ""), images or G4_IMAGES,
          expect_load_error)
    def build(d: Path):
        from fixtures.gemma4 import loud_vision
        torch.manual_seed(seed)
        m = Gemma4ForConditionalGeneration(Gemma4Config(text_config=TEXT_G4, vision_config=vision,
                                                        audio_config=None)).eval()
        loud_vision(m.model.vision_tower, m.model.embed_vision, seed, vision.get("use_clipped_linears", False))
        if bare:
            m.model.vision_tower.save_pretrained(d)
            cls = Gemma4VisionModel
        else:
            cls = save_model(m, d, save)
        kw = dict(patch_size=vision["patch_size"], pooling_kernel_size=vision["pooling_kernel_size"],
                  max_soft_tokens=70)
        kw.update(proc_kw or {})
        Gemma4ImageProcessorPil(**kw).save_pretrained(d)
        model, proc = reload(d, cls, post)
        k = vision["pooling_kernel_size"]

        @torch.no_grad()
        def ref(data):
            bf = proc(images=pil(data), return_tensors="pt")
            pv, pos = bf["pixel_values"], bf["image_position_ids"]
            if bare:
                return model(pixel_values=pv, pixel_position_ids=pos).last_hidden_state.numpy()
            return core(model).get_image_features(pv, pos).pooler_output[0].numpy()
        return ref


gemma4_case("p4 k2 70 tokens", G4V)
gemma4_case("140 tokens", G4V, {"max_soft_tokens": 140}, seed=131)
gemma4_case("pooling 3 GQA 4/2 head_dim 8", {**G4V, "pooling_kernel_size": 3, "num_attention_heads": 4,
            "num_key_value_heads": 2, "head_dim": 8}, seed=132)
gemma4_case("silu + rope theta 1000 + eps 1e-5", {**G4V, "hidden_activation": "silu",
            "rope_parameters": {"rope_type": "axial", "rope_theta": 1000.0}, "rms_norm_eps": 1e-5}, seed=133)
gemma4_case("clipped linears + standardize", {**G4V, "use_clipped_linears": True, "standardize": True}, seed=134)
gemma4_case("patch 8 k2 bilinear", {**G4V, "patch_size": 8}, {"resample": 2}, seed=135)
gemma4_case("head_dim 24 (hidden / heads = 16)", {**G4V, "head_dim": 24}, seed=136)
gemma4_case("p4 k2 70 tokens", G4V, seed=137, save={"base": True, "dtype": torch.bfloat16})
gemma4_case("clipped linears", {**G4V, "use_clipped_linears": True}, seed=138, save={"shard": "20KB"})
gemma4_case("standardize", {**G4V, "standardize": True}, seed=139, bare=True)
gemma4_case("do_resize False", G4V, {"do_resize": False}, seed=140, images=["sq64", "png300x217", "tiny5x7"])
gemma4_case("pooling 1 (HF pooler cannot split)", {**G4V, "pooling_kernel_size": 1}, seed=141,
            images=["sq64"], expect_load_error=True)
gemma4_case("head_dim 18 (not a multiple of 4)", {**G4V, "head_dim": 18}, seed=142, images=["sq64"])


def short(e: BaseException) -> str:
    s = f"{type(e).__name__}: {e}".replace("\n", " ")
    return s[:160]


def run_case(lib: Lib, c: Case, verbose: bool) -> list[Row]:
    rows = []
    with tempfile.TemporaryDirectory(prefix="vtsweep_") as td:
        d = Path(td)
        try:
            ref = c.build(d)
        except Exception as e:  # noqa: BLE001
            if verbose:
                traceback.print_exc()
            return [Row(c.family, c.variant, "-", "FAIL", note="build/reference load: " + short(e))]
        try:
            model = lib.load(d, dtype=VT_DTYPE_F32)
        except VtError as e:
            # does the reference run this checkpoint at all?
            try:
                ref(IMAGES[c.images[0]])
                ref_err = None
            except Exception as re_:  # noqa: BLE001
                ref_err = re_
            if ref_err is not None:
                return [Row(c.family, c.variant, "-", "both-err",
                            note=f"ref: {short(ref_err)[:70]} | vt load: {short(e)[:90]}")]
            ok = c.expect_load_error
            return [Row(c.family, c.variant, "-", "load-err" if ok else "FAIL",
                        note=("deliberately unsupported (reference runs it); " if ok
                              else "unexpected load error (reference runs it): ") + short(e))]
        if c.expect_load_error:
            model.close()
            return [Row(c.family, c.variant, "-", "FAIL", note="vtower loaded a config it should refuse")]
        try:
            for name in c.images:
                data = IMAGES[name]
                r = Row(c.family, c.variant, name, "FAIL")
                rows.append(r)
                ref_err = vt_err = None
                try:
                    want = np.asarray(ref(data), dtype=np.float64)
                    r.ref_tokens = str(want.shape[0])
                except Exception as e:  # noqa: BLE001
                    ref_err = e
                    if verbose:
                        traceback.print_exc()
                try:
                    img = model.preprocess(data)
                    try:
                        (got,) = model.forward([img])
                    finally:
                        lib.lib.vt_image_free(img)
                    got = got.astype(np.float64)
                    r.vt_tokens = str(got.shape[0])
                except VtError as e:
                    vt_err = e
                if ref_err and vt_err:
                    r.status, r.note = "both-err", f"ref: {short(ref_err)[:70]} | vt: {short(vt_err)[:80]}"
                elif ref_err:
                    r.note = "reference raised, vtower did not: " + short(ref_err)
                elif vt_err:
                    r.note = "vtower error: " + short(vt_err)
                elif want.shape != got.shape:
                    r.note = f"shape ref {want.shape} vs vt {got.shape}"
                else:
                    diff = got - want
                    r.max_abs = float(np.abs(diff).max())
                    r.rel_l2 = float(np.linalg.norm(diff) / max(np.linalg.norm(want), 1e-30))
                    r.status = "ok" if r.rel_l2 <= TOL else "FAIL"
        finally:
            model.close()
    return rows


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--lib", default=str(REPO / "target" / "release" / "libvtower.so"))
    ap.add_argument("-k", default="", help="only cases whose 'family variant' contains this substring")
    ap.add_argument("-v", action="store_true", help="print reference tracebacks")
    args = ap.parse_args()
    torch.manual_seed(0)
    torch.set_num_threads(2)
    make_images()
    lib = Lib(Path(args.lib))
    t0 = time.time()
    rows: list[Row] = []
    for c in CASES:
        if args.k and args.k not in f"{c.family} {c.variant}":
            continue
        t = time.time()
        try:
            got = run_case(lib, c, args.v)
        except Exception as e:  # noqa: BLE001
            got = [Row(c.family, c.variant, "-", "FAIL", note="driver: " + short(e))]
        rows += got
        bad = [r for r in got if r.status == "FAIL"]
        print(f"[{time.time() - t:5.1f}s] {c.family:14s} {c.variant:55s} "
              f"{'FAIL' if bad else 'ok'}", flush=True)
        for r in bad:
            print(f"      {r.image}: {r.note or f'rel L2 {r.rel_l2:.3g}'}", flush=True)
    print()
    hdr = f"{'family':14s} {'variant':55s} {'image':14s} {'tok ref/vt':>11s} {'max|d|':>9s} {'rel L2':>9s} status"
    print(hdr)
    print("-" * len(hdr))
    for r in rows:
        tok = f"{r.ref_tokens}/{r.vt_tokens}" if r.ref_tokens or r.vt_tokens else ""
        print(f"{r.family:14s} {r.variant[:55]:55s} {r.image:14s} {tok:>11s} {r.max_abs:9.2e} {r.rel_l2:9.2e} "
              f"{r.status}" + (f"  ({r.note})" if r.note and r.status != "ok" else ""))
    n_fail = sum(r.status == "FAIL" for r in rows)
    print(f"\n{len(rows)} rows, {n_fail} FAIL, {time.time() - t0:.0f}s")
    sys.exit(1 if n_fail else 0)


if __name__ == "__main__":
    main()
