#!/usr/bin/env python3
"""Generate the SigLIP reference fixtures of vtower with Hugging Face transformers.

Run through ``scripts/gen_fixtures.sh`` (it creates/uses a venv with the pinned versions of
``scripts/requirements-fixtures.txt``).  CI never runs this; the outputs are committed.

Produces, deterministically (fixed seeds, single-threaded CPU torch):

* ``tests/fixtures/siglip_f32/``                  SiglipModel (text+vision, model_type "siglip"), f32, one
                                                  ``model.safetensors``; names ``vision_model.*``/``text_model.*``.
* ``tests/fixtures/siglip_vision_sharded_bf16/``  SiglipVisionModel (model_type "siglip_vision_model"), bf16,
                                                  sharded (shards split layers) + ``model.safetensors.index.json``;
                                                  transformers-5.x names (no prefix); CLIP mean/std, BILINEAR.
* ``tests/fixtures/siglip_vision_hub_f16/``       same architecture, other weights, f16, one file, names rewritten to
                                                  the Hub layout (``vision_model.`` prefix); the script asserts that
                                                  transformers loads it and gives identical outputs.

Each folder also gets ``preprocessor_config.json`` (written by ``SiglipImageProcessorPil.save_pretrained``),
``native_<S>.png`` (an image at exactly the native resolution, i.e. not resized), ``expected.safetensors``
(f32 ``pixels/<key>`` [3,S,S] = the PIL-backend processor's ``pixel_values[0]`` and ``embeddings/<key>`` [N,D] =
``last_hidden_state[0]`` after post_layernorm) and ``expected.json``.

Expected values come from the model *as reloaded from disk* with ``dtype=torch.float32`` and
``attn_implementation="eager"``, i.e. from the stored (bf16/f16) weights upcast to f32.

Images: siglip_f32 uses every "valid" entry of tests/fixtures/images/manifest.json (scripts/gen_images.py) plus
its native_48.png; to stay within the ~3 MB budget the two 56 px fixtures use two different 8-image subsets
(SUBSET_SHARDED / SUBSET_HUB, see below) plus their native_56.png (``--all-images`` uses all everywhere).

expected.json: {"family": "siglip", "image_size", "patch_size", "tokens", "dim", "preprocessing": {...},
  "images_root": "tests/fixtures/images",
  "images": [{"file": path relative to images_root (the native image: "../<fixture>/native_<S>.png"),
              "key": tensor-name suffix in expected.safetensors (= "file", or "native_<S>.png"),
              "path": path relative to the repo root, "mode"/"width"/"height": PIL as opened,
              "has_alpha": convert_to_rgb composites onto white, "resized": size != S x S,
              "tokens": N, "dim": D}],
  "skipped_images": invalid manifest entries, "batch_check": {...}, "stats": {...}, "checkpoint": {...},
  "generated_with": {"transformers", "torch", "pillow", "numpy", "safetensors", "python"}}
Tolerance hints for Rust: pixels are bit-exact (the arithmetic is spelled out below); embeddings are the CPU f32
torch result (single thread), the Rust f32 forward will differ by float rounding only.

--------------------------------------------------------------------------------------------------------------
Exact preprocessing arithmetic of ``SiglipImageProcessorPil`` in transformers 5.23.0 (installed source)
(paths relative to site-packages/transformers/; line numbers of 5.23.0). ``manual_preprocess`` below re-implements
it and the script asserts bit-equality with the processor for every image.

models/siglip/image_processing_pil_siglip.py
  26  class SiglipImageProcessorPil(PilBackend):
  27      resample = PILImageResampling.BICUBIC
  28      image_mean = IMAGENET_STANDARD_MEAN              # [0.5, 0.5, 0.5]
  29      image_std = IMAGENET_STANDARD_STD                # [0.5, 0.5, 0.5]
  30      size = {"height": 224, "width": 224}
  31      default_to_square = False
  32-35 do_resize = do_rescale = do_normalize = do_convert_rgb = True
image_processing_utils.py (BaseImageProcessor)
  192     rescale_factor = 1 / 255
  200-211 _set_attributes: for each valid kwarg, `kwarg = kwargs.pop(key, None)`; if None ->
          `deepcopy(getattr(self, key, None))`.  NOTE image_processing_base.py 69-82 (ImageProcessingMixin.__init__,
          called first) already did `setattr(self, key, value)` for every key of preprocessor_config.json, so:
            * key ABSENT from preprocessor_config.json  -> class default (table above);
            * key present with JSON null                -> stays None (class default NOT restored):
                resample/size/rescale_factor/image_mean/image_std null -> ValueError in
                validate_preprocess_arguments (image_utils.py ~625-640); do_convert_rgb null -> no RGB conversion
                (RGBA then fails in normalize: "mean must have 4 elements").
          A preprocessor_config.json without image_processor_type resolves through config.json model_type
          "siglip" (but NOT "siglip_vision_model": ValueError "Unrecognized image processor"); a missing
          preprocessor_config.json is an OSError.
  383-408 preprocess: kwargs default to instance attributes, then _preprocess_image_like_inputs ->
          process_image per image, then _preprocess.
image_processing_backends.py (PilBackend)
  462-497 process_image:
      478     if do_convert_rgb:
      479         image = self.convert_to_rgb(image, input_data_format=input_data_format)   # -> HWC uint8 numpy
      487-490 PIL input: image = np.moveaxis(image, -1, 0)                                # -> CHW
  499-505 convert_to_rgb -> image_transforms.convert_to_rgb(image, ..., return_numpy=True)
  558-607 resize: 573 `resample = resample if resample is not None else PILImageResampling.BILINEAR`;
          592-593 size.height and size.width -> new_size = (height, width)  (stretch, no aspect, no crop);
          600-607 np_resize(image, size=new_size, resample=resample, reducing_gap=reducing_gap, ...)
          where reducing_gap is None: _preprocess (678) calls `self.resize(image=image, size=size, resample=resample)`.
  609-621 rescale   -> image_transforms.rescale(image, scale=rescale_factor)
  623-637 normalize -> image_transforms.normalize(image, mean=image_mean, std=image_std)
  656-690 _preprocess: per image, in this order: 677-678 resize; 679-680 center_crop (off); 681-682 rescale;
          683-684 normalize; (687 pad, off).
image_transforms.py
  778-786 convert_to_rgb, PIL input:
      779  has_alpha = "A" in image.getbands() or image.info.get("transparency") is not None
      780  if has_alpha:
      781      image = image.convert("RGBA")
      782      background = PIL.Image.new("RGBA", image.size, (255, 255, 255, 255))
      783      image_rgb = PIL.Image.alpha_composite(background, image).convert("RGB")
      784  else:
      785      image_rgb = image.convert("RGB")
      786  return np.array(image_rgb) if return_numpy else image_rgb
      (checked below, exhaustively over all (c, a) in Pillow 13.0.0: composite onto opaque white ==
       (c*a + 255*(255-a) + 127) // 255.)
  316-384 resize:
      366-367 image = to_pil_image(image, do_rescale=False, input_data_format=CHW)
              (to_pil_image 194 -> HWC, 205 `image.astype(np.uint8)`, 206 `PIL.Image.fromarray(image, mode=None)`)
      368-370 height, width = size
              resized_image = image.resize((width, height), resample=resample, reducing_gap=reducing_gap)
              -> PIL Image.resize(..., reducing_gap=None); PIL/Image.py 2409-2410: if the size is unchanged it
                 returns self.copy() (no resampling at all).
      373     resized_image = np.array(resized_image)          # uint8 HWC
      378-380 to channels-first; 383 no rescale back (do_rescale was False for uint8).
   92-127 rescale:
      121  rescaled_image = image.astype(np.float64) * scale     # uint8 -> float64, times python float 1/255
      125  rescaled_image = rescaled_image.astype(dtype)         # dtype=np.float32 (round to nearest)
  387-445 normalize:
      422-423 (not hit: input is already float32)
      430  mean = np.array(mean, dtype=image.dtype)             # float32(mean)
      437  std = np.array(std, dtype=image.dtype)               # float32(std)
      442  image = ((image.T - mean) / std).T                   # float32 subtract, then float32 DIVIDE
  So per element: px = float32( (float32(float64(u8) * (1/255)) - float32(mean[c])) / float32(std[c]) ), both ops
  IEEE float32 round-to-nearest; u8 = PIL-resized (or untouched, if already S x S) RGB value.
  (Checked for all 256 u8 values: float32(u8*(1/255) in f64) == float32(u8/255 in f64) == u8/255 in f32, so the
  rescale form does not matter; but (x-m)/s != (x-m)*(1/s) in f32 for 73 of 256 values with the CLIP std[0] --
  divide, do not multiply by the reciprocal. With mean = std = 0.5 both are exact.)
Model side: SiglipVisionModel (models/siglip/modeling_siglip.py 553-619) has no inner `vision_model` module
(base_model_prefix = "vision_model", 557), so a 5.23-saved standalone tower has unprefixed names; SiglipModel keeps
`self.vision_model = SiglipVisionModel(...)` (658) -> `vision_model.*` names.
--------------------------------------------------------------------------------------------------------------
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np
import PIL
import safetensors
import torch
import transformers
from PIL import Image
from safetensors import safe_open
from safetensors.numpy import load_file as load_np
from safetensors.torch import load_file, save_file
from torch import nn
from transformers import (
    AutoImageProcessor,
    SiglipConfig,
    SiglipImageProcessorPil,
    SiglipModel,
    SiglipVisionConfig,
    SiglipVisionModel,
)

REPO = Path(__file__).resolve().parent.parent
FIXTURES = REPO / "tests" / "fixtures"

PINNED = {"transformers": "5.23.0", "torch": "2.15.0", "pillow": "13.0.0"}

OPENAI_CLIP_MEAN = [0.48145466, 0.4578275, 0.40821073]
OPENAI_CLIP_STD = [0.26862954, 0.26130258, 0.27577711]

IMAGE_EXTS = {".png", ".jpg", ".jpeg", ".webp", ".gif", ".bmp", ".tif", ".tiff"}

BATCH_TOL = 1e-5

# Sharded fixture: a shard limit of about one encoder layer (~34 KB in bf16), so that shard boundaries fall
# inside layers (asserted by check_shards_split_layers; gives 4 shards).
SHARD_SIZE = "40KB"


# ----------------------------------------------------------------------------------------------------------
# helpers


def log(*a):
    print("[gen_fixtures]", *a, flush=True)


def check_versions(allow_other: bool):
    have = {
        "transformers": transformers.__version__,
        "torch": torch.__version__.split("+")[0],
        "pillow": PIL.__version__,
    }
    bad = {k: (have[k], v) for k, v in PINNED.items() if have[k] != v}
    if bad:
        msg = "version mismatch (have, pinned): " + ", ".join(f"{k}={a} vs {b}" for k, (a, b) in bad.items())
        if not allow_other:
            sys.exit(msg + "  (use scripts/gen_fixtures.sh, or --allow-other-versions)")
        log("WARNING:", msg)


def rel_to_repo(p: Path) -> str:
    p = Path(p).resolve()
    return str(p.relative_to(REPO)) if p.is_relative_to(REPO) else str(p)


def versions() -> dict:
    return {
        "transformers": transformers.__version__,
        "torch": torch.__version__,
        "pillow": PIL.__version__,
        "numpy": np.__version__,
        "safetensors": safetensors.__version__,
        "python": ".".join(map(str, sys.version_info[:3])),
    }


def init_torch(allow_other_versions: bool) -> None:
    """Pinned versions, one CPU thread, deterministic algorithms: the start of every fixture script."""
    check_versions(allow_other_versions)
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)


class Loud:
    """The "loud" value draws shared by every fixture script's re-initialization: one torch.Generator seeded with
    `seed`, drawn from in call order (so the order of the calls fixes the weights), and the ids of the parameters
    set so far (`done`)."""

    def __init__(self, seed: int):
        self.g = torch.Generator().manual_seed(seed)
        self.done: set[int] = set()

    def normal_(self, p, std):
        """p <- N(0, std^2), drawn in f64, rounded to p's dtype."""
        with torch.no_grad():
            p.copy_(torch.randn(p.shape, generator=self.g, dtype=torch.float64).mul_(std).to(p.dtype))
        self.done.add(id(p))

    def uniform_(self, p, lo, hi):
        """p <- U(lo, hi), drawn in f64, rounded to p's dtype."""
        with torch.no_grad():
            p.copy_((torch.rand(p.shape, generator=self.g, dtype=torch.float64) * (hi - lo) + lo).to(p.dtype))
        self.done.add(id(p))

    def norm_weight_(self, w):
        """A norm weight: U(0.5, 1.5) with ~10% sign flips (at least one)."""
        self.uniform_(w, 0.5, 1.5)
        flip = torch.rand(w.shape, generator=self.g) < 0.1
        flip[torch.randint(0, w.numel(), (1,), generator=self.g)] = True
        with torch.no_grad():
            w[flip] *= -1

    def modules_(self, model: nn.Module) -> None:
        """Every module with its own parameters, in named_modules() order: LayerNorm weight as norm_weight_, bias
        N(0, 0.3); *RMSNorm weight as norm_weight_; Linear/Conv2d/Conv3d weight N(0, 1/fan_in), bias U(-0.5, 0.5);
        Embedding N(0, 0.5) for a position_embedding, else N(0, 1); MultiheadAttention in_proj weight N(0, 1/D),
        bias U(-0.5, 0.5) (its out_proj is a Linear submodule, handled by its own iteration). Parameters outside
        these modules are left to the caller (not in `done`)."""
        for name, mod in model.named_modules():
            if isinstance(mod, nn.LayerNorm):
                self.norm_weight_(mod.weight)
                self.normal_(mod.bias, 0.3)
            elif type(mod).__name__.endswith("RMSNorm"):
                self.norm_weight_(mod.weight)
            elif isinstance(mod, (nn.Linear, nn.Conv2d, nn.Conv3d)):
                self.normal_(mod.weight, 1.0 / np.sqrt(mod.weight[0].numel()))
                if mod.bias is not None:
                    self.uniform_(mod.bias, -0.5, 0.5)
            elif isinstance(mod, nn.Embedding):
                self.normal_(mod.weight, 0.5 if name.endswith("position_embedding") else 1.0)
            elif isinstance(mod, nn.MultiheadAttention):
                self.normal_(mod.in_proj_weight, 1.0 / np.sqrt(mod.in_proj_weight.shape[1]))
                self.uniform_(mod.in_proj_bias, -0.5, 0.5)


def reinit_loud(model: nn.Module, seed: int) -> None:
    """Re-initialize EVERY parameter with "loud" values (random init of transformers is too quiet: zero biases,
    unit LayerNorms would hide bugs):
    Linear/Conv weights N(0, 1/fan_in); biases U(-0.5, 0.5); LayerNorm weight U(0.5, 1.5) with ~10% sign flips
    (at least one), LayerNorm bias N(0, 0.3); position embeddings N(0, 0.5); other embeddings N(0, 1);
    MultiheadAttention in_proj weight N(0, 1/D), bias U(-0.5, 0.5); SigLIP head probe N(0, 1)."""
    r = Loud(seed)
    r.modules_(model)
    for name, p in model.named_parameters():
        if id(p) in r.done:
            continue
        if name.endswith("head.probe"):
            r.normal_(p, 1.0)
        elif name == "logit_scale":
            with torch.no_grad():
                p.fill_(float(np.log(10.0)))
            r.done.add(id(p))
        elif name == "logit_bias":
            with torch.no_grad():
                p.fill_(-10.0)
            r.done.add(id(p))
        else:
            raise RuntimeError(f"parameter {name} not covered by reinit_loud")
    assert all(id(p) in r.done for p in model.parameters())


def write_wave_image(path: Path, width: int, height: int, seed: int, waves: tuple, noise=18) -> None:
    """A deterministic RGB PNG (smooth waves plus noise): channel c is
    255 * (0.5 + 0.5 * sin(x * (fx + dfx * c) + y * (fy - dfy * c) + phase * c)) + N(0, noise^2), with
    waves = (fx, dfx, fy, dfy, phase) and the noise drawn from np.random.default_rng(seed)."""
    fx, dfx, fy, dfy, phase = waves
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width].astype(np.float64)
    chans = [255.0 * (0.5 + 0.5 * np.sin(x * (fx + dfx * c) + y * (fy - dfy * c) + phase * c)) for c in range(3)]
    img = np.stack(chans, -1) + rng.normal(0, noise, (height, width, 3))
    Image.fromarray(np.clip(np.rint(img), 0, 255).astype(np.uint8), "RGB").save(path, optimize=False)


def write_native_image(path: Path, size: int, seed: int) -> None:
    """A deterministic RGB PNG at exactly the native resolution (processor does not resample it)."""
    write_wave_image(path, size, size, seed, (0.21, 0.05, 0.13, 0.03, 1.7))


# ----------------------------------------------------------------------------------------------------------
# independent re-implementation of the PIL backend (asserted bit-equal to the processor)


def composite_white_formula(rgba: np.ndarray) -> np.ndarray:
    c = rgba[..., :3].astype(np.int64)
    a = rgba[..., 3:4].astype(np.int64)
    return ((c * a + 255 * (255 - a) + 127) // 255).astype(np.uint8)


def manual_preprocess(img: Image.Image, size: int, resample: int, mean, std,
                      rescale_factor: float) -> tuple[np.ndarray, np.ndarray]:
    """Returns (rgb uint8 HWC after convert_to_rgb, pixel_values float32 CHW)."""
    has_alpha = "A" in img.getbands() or img.info.get("transparency") is not None
    if has_alpha:
        rgba = np.array(img.convert("RGBA"))
        rgb = composite_white_formula(rgba)
    else:
        rgb = np.array(img.convert("RGB"))
    pil = Image.fromarray(rgb)
    if pil.size != (size, size):
        pil = pil.resize((size, size), resample=resample, reducing_gap=None)
    u8 = np.array(pil).transpose(2, 0, 1)  # CHW uint8
    x = (u8.astype(np.float64) * rescale_factor).astype(np.float32)
    m = np.array(mean, dtype=np.float32)[:, None, None]
    s = np.array(std, dtype=np.float32)[:, None, None]
    return rgb, (x - m) / s


def selfcheck_alpha_formula() -> None:
    c, a = np.meshgrid(np.arange(256, dtype=np.uint8), np.arange(256, dtype=np.uint8), indexing="ij")
    rgba = np.stack([c, c, c, a], -1)
    img = Image.fromarray(rgba, "RGBA")
    bg = Image.new("RGBA", img.size, (255, 255, 255, 255))
    pil = np.array(Image.alpha_composite(bg, img).convert("RGB"))
    assert np.array_equal(pil, composite_white_formula(rgba)), "alpha composite formula mismatch"


# ----------------------------------------------------------------------------------------------------------
# images


def list_images(images_dir: Path) -> tuple[list[dict], list[dict]]:
    """Returns (usable, skipped). Each usable item: {"file": rel-to-images-dir, "path": Path}.

    tests/fixtures/images/manifest.json (scripts/gen_images.py) is {"valid": [{"file": ...}, ...],
    "invalid": [{"file": ..., "expected_status": ...}, ...]}; only "valid" entries are used. Without a manifest,
    every image file of the folder is used."""
    manifest = images_dir / "manifest.json"
    entries: list[str] = []
    skipped: list[dict] = []
    if manifest.is_file():
        m = json.loads(manifest.read_text())
        entries = [it["file"] for it in m["valid"]]
        skipped = [{"file": it["file"], "reason": f"manifest: invalid input ({it.get('expected_status')})"}
                   for it in m.get("invalid", [])]
        log(f"manifest: {len(entries)} valid, {len(skipped)} invalid entries")
    else:
        log(f"no manifest.json in {images_dir}; using every image file there")
        for p in sorted(images_dir.iterdir()) if images_dir.is_dir() else []:
            if p.suffix.lower() in IMAGE_EXTS:
                entries.append(p.name)
    usable = []
    for f in entries:
        p = images_dir / f
        try:
            with Image.open(p) as im:
                im.load()
        except Exception as e:  # noqa: BLE001
            raise RuntimeError(f"valid test image {p} cannot be opened by PIL: {e}") from e
        usable.append({"file": f, "path": p})
    return usable, skipped


def pick(images: list[dict], wanted: list[str] | None, name: str) -> list[dict]:
    """The subset `wanted` of `images` (all of them if wanted is None or --all-images). Names missing from the
    image folder are skipped with a warning (e.g. while developing against another image folder)."""
    if wanted is None:
        return images
    by = {it["file"]: it for it in images}
    missing = [w for w in wanted if w not in by]
    if missing:
        log(f"WARNING: {name}: images not found, skipped: {missing}")
    out = [by[w] for w in wanted if w in by]
    return out if out else images


# Size budget (all fixtures ~3 MB): siglip_f32 covers EVERY valid test image; the two 56 px fixtures (whose
# purpose is config reading / sharding / dtypes / name layouts, plus BILINEAR + CLIP normalization) each cover a
# different representative subset (modes RGB/RGBA/L/LA/P+tRNS/CMYK/1/16-bit, up- and down-scaling, all codecs).
SUBSET_SHARDED = ["rgb.png", "rgba.png", "gray.png", "palette_trns.png", "jpeg420.jpg", "photo.jpg",
                  "lossy_alpha.webp", "gray_alpha.png"]
SUBSET_HUB = ["jpeg444.jpg", "lossy.webp", "anim_trns.gif", "rgb16.png", "gray16.png", "cmyk.jpg", "rgba16.png",
              "bilevel.png"]


# ----------------------------------------------------------------------------------------------------------
# models


def tiny_text_config() -> dict:
    return dict(
        vocab_size=16,
        hidden_size=16,
        intermediate_size=16,
        num_hidden_layers=1,
        num_attention_heads=1,
        max_position_embeddings=4,
        pad_token_id=1,
        bos_token_id=2,
        eos_token_id=3,
    )


VISION_A = dict(image_size=48, patch_size=8, hidden_size=64, num_attention_heads=4, intermediate_size=96,
                num_hidden_layers=2)
VISION_B = dict(image_size=56, patch_size=14, hidden_size=48, num_attention_heads=3, intermediate_size=80,
                num_hidden_layers=3, hidden_act="gelu_pytorch_tanh", layer_norm_eps=1e-6)


def build(kind: str, seed: int, dtype: torch.dtype, **vision_overrides) -> nn.Module:
    torch.manual_seed(seed)
    if kind == "siglip":
        model = SiglipModel(SiglipConfig(text_config=tiny_text_config(), vision_config=VISION_A))
    else:
        model = SiglipVisionModel(SiglipVisionConfig(**VISION_B, **vision_overrides))
    model.eval()
    reinit_loud(model, seed)
    return model.to(dtype)


def vision_of(model: nn.Module) -> nn.Module:
    return model.vision_model if isinstance(model, SiglipModel) else model


def load_f32(d: Path, cls, vision=vision_of):
    """The checkpoint in `d` as stored, reloaded in f32 with eager attention, with no missing/unexpected tensors.
    `vision(model)` (if given) is the tower whose config must say eager."""
    model, info = cls.from_pretrained(d, dtype=torch.float32, attn_implementation="eager", output_loading_info=True)
    bad = {k: v for k, v in info.items() if v}
    assert not bad, f"loading {d}: {bad}"
    model.eval()
    if vision is not None:
        v = vision(model)
        assert v.config._attn_implementation == "eager", v.config._attn_implementation
    assert all(p.dtype == torch.float32 for p in model.parameters())
    return model


def assert_same_params(a: nn.Module, b: nn.Module) -> None:
    """Two loaded models have exactly the same parameter names and values."""
    sa, sb = a.state_dict(), b.state_dict()
    assert set(sa) == set(sb)
    for k in sa:
        assert torch.equal(sa[k], sb[k]), k


def check_reload_matches(out_dir: Path, cls, stored: nn.Module, load=load_f32) -> nn.Module:
    """The f32 reload (by `load`) equals the in-memory stored-dtype model upcast to f32, tensor by tensor; returns
    the reload."""
    re = load(out_dir, cls)
    sd_re, sd_st = re.state_dict(), stored.state_dict()
    assert set(sd_re) == set(sd_st), set(sd_re) ^ set(sd_st)
    for k, v in sd_st.items():
        if v.is_floating_point():
            assert torch.equal(sd_re[k], v.float()), k
    return re


def fresh_dir(d: Path) -> Path:
    if d.exists():
        shutil.rmtree(d)
    d.mkdir(parents=True)
    return d


def tensor_names(d: Path) -> list[str]:
    names = []
    for f in sorted(d.glob("*.safetensors")):
        if f.name == "expected.safetensors":
            continue
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


def check_shards_split_layers(d: Path) -> dict:
    idx = json.loads((d / "model.safetensors.index.json").read_text())
    wm = idx["weight_map"]
    files = set(wm.values())
    per_layer: dict[str, set] = {}
    for k, f in wm.items():
        if k.startswith("encoder.layers."):
            per_layer.setdefault(".".join(k.split(".")[:3]), set()).add(f)
    split = sorted(l for l, fs in per_layer.items() if len(fs) > 1)
    assert len(files) > 1, "not sharded"
    assert split, "no layer is split across shards"
    for f in files:
        assert (d / f).is_file(), f
    return {"shards": len(files), "layers_split_across_shards": split}


# ----------------------------------------------------------------------------------------------------------
# expectations


@torch.no_grad()
def embed(model: nn.Module, pixel_values: torch.Tensor) -> torch.Tensor:
    out = vision_of(model)(pixel_values=pixel_values)
    return out.last_hidden_state


def value_stats(name: str, embs: dict[str, torch.Tensor], std_range: tuple[float, float],
                max_abs: float | None) -> tuple[float, float, float]:
    """All embedding values together: finite, std inside `std_range`, under 2% of them ~0 (|x| < 1e-3) and (if
    `max_abs` is given) every |x| below it. Returns (std, fraction ~0, max |x|)."""
    allv = torch.cat([e.reshape(-1) for e in embs.values()])
    assert torch.isfinite(allv).all(), f"{name}: non-finite embeddings"
    std = allv.std().item()
    small = (allv.abs() < 1e-3).double().mean().item()
    maxabs = allv.abs().max().item()
    assert std_range[0] < std < std_range[1], f"{name}: embedding std {std}"
    assert small < 0.02, f"{name}: {small:.3%} of values ~0"
    assert max_abs is None or maxabs < max_abs, f"{name}: max |x| {maxabs}"
    return std, small, maxabs


def health_check(name: str, embs: dict[str, torch.Tensor], model: nn.Module, pv: torch.Tensor) -> dict:
    std, small, maxabs = value_stats(name, embs, (0.3, 10.0), 100.0)
    # image content must matter: the tokens of different images must differ substantially
    keys = list(embs)
    rel = []
    for i in range(len(keys)):
        for j in range(i + 1, len(keys)):
            a, b = embs[keys[i]], embs[keys[j]]
            rel.append(((a - b).abs().mean() / a.abs().mean()).item())
    min_rel = min(rel) if rel else float("nan")
    med_rel = float(np.median(rel)) if rel else float("nan")
    assert not rel or med_rel > 0.1, f"{name}: images give near-identical embeddings (median {med_rel})"
    # attention is neither uniform nor one-hot
    out = vision_of(model)(pixel_values=pv, output_attentions=True)
    att_max = [a.max(-1).values.mean().item() for a in out.attentions]
    n = pv.shape[-1] // vision_of(model).config.patch_size
    for m in att_max:
        assert 1.5 / (n * n) < m < 0.97, f"{name}: attention saturation {att_max}"
    # post-layernorm output per token: spread across tokens too
    tok_std = torch.stack([e.std(-1) for e in embs.values()]).mean().item()
    stats = {"std": std, "max_abs": maxabs, "frac_abs_below_1e-3": small, "min_rel_diff_between_images": min_rel,
             "median_rel_diff_between_images": med_rel,
             "mean_max_attention_prob_per_layer": att_max, "mean_token_std": tok_std}
    log(f"{name}: health {json.dumps(stats)}")
    return stats


def make_expected(name: str, out_dir: Path, model_cls, images: list[dict], skipped: list[dict],
                  images_dir: Path, extra: dict) -> None:
    model = load_f32(out_dir, model_cls)
    proc = AutoImageProcessor.from_pretrained(out_dir, backend="pil")
    assert type(proc) is SiglipImageProcessorPil, type(proc)
    assert proc.backend == "pil"
    S = proc.size.height
    assert proc.size.width == S
    vcfg = vision_of(model).config
    assert vcfg.image_size == S
    ntok = (S // vcfg.patch_size) ** 2
    dim = vcfg.hidden_size

    dec_path = images_dir / "decoded.safetensors"
    decoded = load_np(str(dec_path)) if dec_path.is_file() else None
    n_decoded_checked = 0
    tensors: dict[str, torch.Tensor] = {}
    entries = []
    pixels: dict[str, torch.Tensor] = {}
    embs: dict[str, torch.Tensor] = {}
    for it in images:
        key = Path(it["file"]).name if it.get("native") else it["file"]
        img = Image.open(it["path"])  # no EXIF transpose, no conversion: the processor does convert_to_rgb
        mode, (w, h) = img.mode, img.size
        bf = proc(images=img, return_tensors="pt")
        pv = bf["pixel_values"]
        assert pv.dtype == torch.float32 and tuple(pv.shape) == (1, 3, S, S), (pv.dtype, pv.shape)
        rgb, ref = manual_preprocess(Image.open(it["path"]), S, int(proc.resample), proc.image_mean, proc.image_std,
                                     proc.rescale_factor)
        assert np.array_equal(ref, pv[0].numpy()), f"{name}/{key}: manual preprocessing != processor"
        if decoded is not None and it["file"] in decoded:
            # cross-check with tests/fixtures/images/decoded.safetensors (scripts/gen_images.py)
            assert np.array_equal(decoded[it["file"]], rgb), f"{name}/{key}: convert_to_rgb != decoded.safetensors"
            n_decoded_checked += 1
        e = embed(model, pv)
        assert tuple(e.shape) == (1, ntok, dim), e.shape
        pixels[key] = pv[0].contiguous()
        embs[key] = e[0].contiguous()
        tensors[f"pixels/{key}"] = pixels[key]
        tensors[f"embeddings/{key}"] = embs[key]
        rel_file = os.path.relpath(it["path"], images_dir)
        entries.append({
            "file": rel_file,
            "key": key,
            "path": rel_to_repo(Path(it["path"])),
            "mode": mode,
            "width": w,
            "height": h,
            "has_alpha": "A" in img.getbands() or img.info.get("transparency") is not None,
            "resized": (w, h) != (S, S),
            "tokens": ntok,
            "dim": dim,
        })

    # batch check: all images as one batch through the processor and the model
    batch_imgs = [Image.open(it["path"]) for it in images]
    pvb = proc(images=batch_imgs, return_tensors="pt")["pixel_values"]
    keys = list(pixels)
    assert torch.equal(pvb, torch.stack([pixels[k] for k in keys])), f"{name}: batched pixels differ"
    eb = embed(model, pvb)
    diffs = [(eb[i] - embs[k]).abs().max().item() for i, k in enumerate(keys)]
    assert max(diffs) <= BATCH_TOL, f"{name}: batch vs single max diff {max(diffs)}"
    log(f"{name}: batch of {len(keys)}: max |batch - single| = {max(diffs):.3g}")

    stats = health_check(name, embs, model, pvb[:2])
    log(f"{name}: {n_decoded_checked} images cross-checked against decoded.safetensors")

    save_file(tensors, str(out_dir / "expected.safetensors"), metadata={"format": "pt"})
    doc = {
        "family": "siglip",
        "image_size": S,
        "patch_size": vcfg.patch_size,
        "tokens": ntok,
        "dim": dim,
        "output": "vision_model(pixel_values).last_hidden_state[0] (after post_layernorm), f32 eager, "
                  "weights = stored checkpoint upcast to f32",
        "preprocessing": {
            "class": type(proc).__name__,
            "loaded_with": 'AutoImageProcessor.from_pretrained(dir, backend="pil")',
            "input": "PIL.Image.open(path), no EXIF transpose, no conversion",
            "resample": int(proc.resample),
            "image_mean": list(proc.image_mean),
            "image_std": list(proc.image_std),
            "rescale_factor": proc.rescale_factor,
        },
        "images_root": rel_to_repo(images_dir),
        "images": entries,
        "skipped_images": skipped,
        "batch_check": {
            "keys": keys,
            "max_abs_diff": max(diffs),
            "per_image_max_abs_diff": dict(zip(keys, diffs)),
            "tolerance": BATCH_TOL,
            "batched_pixels_identical": True,
            "passed": True,
        },
        "stats": stats,
        **extra,
        "generated_with": versions(),
    }
    (out_dir / "expected.json").write_text(json.dumps(doc, indent=2) + "\n")


# ----------------------------------------------------------------------------------------------------------
# fixtures


def save_processor(out_dir: Path, size: int, **kw) -> None:
    proc = SiglipImageProcessorPil(size={"height": size, "width": size}, **kw)
    proc.save_pretrained(out_dir)


def gen_siglip_f32(images, skipped, images_dir):
    name = "siglip_f32"
    out = fresh_dir(FIXTURES / name)
    model = build("siglip", seed=1001, dtype=torch.float32)
    model.save_pretrained(out, safe_serialization=True)
    save_processor(out, VISION_A["image_size"])  # defaults: BICUBIC (3), mean/std 0.5
    assert (out / "model.safetensors").is_file() and not (out / "model.safetensors.index.json").exists()
    assert json.loads((out / "config.json").read_text())["model_type"] == "siglip"
    assert stored_dtypes(out) == {"F32"}, stored_dtypes(out)
    names = tensor_names(out)
    assert all(n.startswith(("vision_model.", "text_model.")) or n in ("logit_scale", "logit_bias") for n in names)
    assert "vision_model.embeddings.patch_embedding.weight" in names
    check_reload_matches(out, SiglipModel, model)
    native = out / f"native_{VISION_A['image_size']}.png"
    write_native_image(native, VISION_A["image_size"], seed=11)
    imgs = images + [{"file": native.name, "path": native, "native": True}]
    make_expected(name, out, SiglipModel, imgs, skipped, images_dir,
                  {"checkpoint": {"class": "SiglipModel", "model_type": "siglip", "storage_dtype": "float32",
                                  "layout": "SiglipModel (vision_model.*, text_model.*, logit_scale, logit_bias)",
                                  "files": ["model.safetensors"]}})


def gen_sharded_bf16(images, skipped, images_dir):
    name = "siglip_vision_sharded_bf16"
    out = fresh_dir(FIXTURES / name)
    # vision_use_head=False (as in the towers embedded in Gemma3/PaliGemma): no head.* tensors, config says so.
    model = build("vision", seed=2002, dtype=torch.bfloat16, vision_use_head=False)
    model.save_pretrained(out, safe_serialization=True, max_shard_size=SHARD_SIZE)
    save_processor(out, VISION_B["image_size"], resample=PIL.Image.Resampling.BILINEAR,
                   image_mean=OPENAI_CLIP_MEAN, image_std=OPENAI_CLIP_STD)
    pp = json.loads((out / "preprocessor_config.json").read_text())
    assert pp["resample"] == 2 and pp["image_mean"] == OPENAI_CLIP_MEAN and pp["image_std"] == OPENAI_CLIP_STD, pp
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["model_type"] == "siglip_vision_model" and cfg["dtype"] == "bfloat16", cfg
    assert cfg["vision_use_head"] is False, cfg
    assert not (out / "model.safetensors").exists()
    shard_info = check_shards_split_layers(out)
    assert stored_dtypes(out) == {"BF16"}, stored_dtypes(out)
    names = tensor_names(out)
    assert not any(n.startswith("vision_model.") for n in names), names[:5]
    assert "embeddings.patch_embedding.weight" in names
    assert not any(n.startswith("head.") for n in names)
    check_reload_matches(out, SiglipVisionModel, model)
    native = out / f"native_{VISION_B['image_size']}.png"
    write_native_image(native, VISION_B["image_size"], seed=22)
    imgs = images + [{"file": native.name, "path": native, "native": True}]
    make_expected(name, out, SiglipVisionModel, imgs, skipped, images_dir,
                  {"checkpoint": {"class": "SiglipVisionModel", "model_type": "siglip_vision_model",
                                  "storage_dtype": "bfloat16", "layout": "transformers 5.x (no prefix)",
                                  "max_shard_size": SHARD_SIZE, **shard_info}})


def gen_hub_f16(images, skipped, images_dir):
    name = "siglip_vision_hub_f16"
    out = fresh_dir(FIXTURES / name)
    model = build("vision", seed=3003, dtype=torch.float16)
    with tempfile.TemporaryDirectory() as td:
        td = Path(td)
        model.save_pretrained(td, safe_serialization=True)
        sd = load_file(str(td / "model.safetensors"))
        assert not any(k.startswith("vision_model.") for k in sd)
        hub = {"vision_model." + k: v for k, v in sd.items()}
        save_file(hub, str(out / "model.safetensors"), metadata={"format": "pt"})
        shutil.copy(td / "config.json", out / "config.json")
        save_processor(out, VISION_B["image_size"], resample=PIL.Image.Resampling.BILINEAR,
                       image_mean=OPENAI_CLIP_MEAN, image_std=OPENAI_CLIP_STD)
        assert stored_dtypes(out) == {"F16"}, stored_dtypes(out)
        names = tensor_names(out)
        assert names and all(n.startswith("vision_model.") for n in names)

        # transformers 5.23 must load the Hub-layout checkpoint (no missing/unexpected keys) and give
        # exactly the same parameters and outputs as the unrenamed 5.x-layout save.
        a = load_f32(out, SiglipVisionModel)
        b = load_f32(td, SiglipVisionModel)
        assert_same_params(a, b)
        check_reload_matches(out, SiglipVisionModel, model)
        x = torch.randn(2, 3, VISION_B["image_size"], VISION_B["image_size"], generator=torch.Generator().manual_seed(5))
        assert torch.equal(embed(a, x), embed(b, x)), "hub-layout load differs"
        log(f"{name}: transformers loads the vision_model.-prefixed checkpoint; outputs identical")

    native = out / f"native_{VISION_B['image_size']}.png"
    write_native_image(native, VISION_B["image_size"], seed=33)
    imgs = images + [{"file": native.name, "path": native, "native": True}]
    make_expected(name, out, SiglipVisionModel, imgs, skipped, images_dir,
                  {"checkpoint": {"class": "SiglipVisionModel", "model_type": "siglip_vision_model",
                                  "storage_dtype": "float16",
                                  "layout": "Hub (vision_model.* prefix), rewritten from a 5.x save",
                                  "hub_layout_load_check": "transformers loads it with no missing/unexpected keys; "
                                                           "parameters and outputs identical to the 5.x-layout save",
                                  "files": ["model.safetensors"]}})


def arg_parser(doc: str, images_dir: bool = False) -> argparse.ArgumentParser:
    """The command line every fixture script takes: --allow-other-versions (and --images-dir if `images_dir`)."""
    ap = argparse.ArgumentParser(description=doc.split("\n")[0])
    if images_dir:
        ap.add_argument("--images-dir", type=Path, default=FIXTURES / "images")
    ap.add_argument("--allow-other-versions", action="store_true")
    return ap


def main():
    ap = arg_parser(__doc__, images_dir=True)
    ap.add_argument("--all-images", action="store_true",
                    help="use every test image in every fixture (exceeds the ~3 MB budget)")
    args = ap.parse_args()

    init_torch(args.allow_other_versions)
    selfcheck_alpha_formula()

    images_dir = args.images_dir.resolve()
    images, skipped = list_images(images_dir)
    log(f"{len(images)} images from {images_dir}" + (f", skipped {skipped}" if skipped else ""))
    if not images:
        log("WARNING: no test images found; fixtures will only contain the native-size image")

    sub = (lambda w, n: images) if args.all_images else (lambda w, n: pick(images, w, n))
    gen_siglip_f32(images, skipped, images_dir)
    gen_sharded_bf16(sub(SUBSET_SHARDED, "sharded"), skipped, images_dir)
    gen_hub_f16(sub(SUBSET_HUB, "hub"), skipped, images_dir)

    total = 0
    for d in sorted(FIXTURES.glob("siglip_*")):
        for f in sorted(d.iterdir()):
            total += f.stat().st_size
    log(f"total size of tests/fixtures/siglip_*: {total / 1024:.1f} KiB")
    if not args.all_images:
        assert total < 3 * 1024 * 1024, "fixtures over 3 MB"


if __name__ == "__main__":
    main()
