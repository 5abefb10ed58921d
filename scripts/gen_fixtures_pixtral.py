#!/usr/bin/env python3
"""Generate the Pixtral / Mistral3 reference fixtures of vtower with Hugging Face transformers.

Run from the repo root (``scripts/gen_fixtures.sh`` does): ``python scripts/gen_fixtures_pixtral.py``.
CI never runs this; the outputs are committed. Helpers come from ``scripts/gen_fixtures.py``.

Produces, deterministically (fixed seeds, single-threaded CPU torch):

* ``tests/fixtures/pixtral_llava_f32/``  ``LlavaForConditionalGeneration`` with a ``pixtral`` vision config (pixtral-12b
      layout), f32, as transformers 5.23 saves it (``vision_tower.*``, ``multi_modal_projector.*``,
      ``language_model.*``); processor files as a 5.23 ``PixtralProcessor.save_pretrained`` writes them:
      ``processor_config.json`` with the image processor nested under ``image_processor`` (NO
      preprocessor_config.json), ``tokenizer.json`` (ids in ``added_tokens``), ``tokenizer_config.json`` (5.x: token
      strings only). Projector with biases, ``vision_feature_layer`` -1, strategy ``full``, patch 8, longest edge 64.
* ``tests/fixtures/mistral3_bf16/``  ``Mistral3ForConditionalGeneration``, bf16, tensor names rewritten to the
      transformers 4.5x layout (``model.vision_tower.*``, ``model.multi_modal_projector.*``, ``model.language_model.*``;
      lm_head tied so absent; the script asserts that 5.23 loads it with identical parameters); legacy processor files:
      ``preprocessor_config.json`` (the image processor's own ``patch_size`` = the tower's, as released Mistral3 repos
      have it), a flat ``processor_config.json`` (``patch_size``, ``spatial_merge_size`` 2, token strings) and a 4.x
      style ``tokenizer_config.json`` with ``added_tokens_decoder``. patch 8, merge 2 (resize rounds to 16), 3 layers,
      ``vision_feature_layer`` -2, ``text_config.rms_norm_eps`` 1e-5.
* ``tests/fixtures/pixtral_vision_f16/``  standalone ``PixtralVisionModel`` (model_type ``pixtral``), f16, 5.23 names
      (no prefix); config.json rewritten to the Hub style (top-level ``rope_theta`` 100 instead of ``rope_parameters``,
      no ``hidden_act`` so the class default ``gelu`` applies; asserted to load identically); only
      ``preprocessor_config.json`` (image processor alone, longest edge 48, patch 8).

Every fixture also has its own images (``native_<W>x<H>.png`` at a size needing no resize, ``wide_*``, ``tall_*``,
``tiny_*`` smaller than one patch window) besides a few of tests/fixtures/images, ``expected.safetensors``
(``pixels/<key>`` [3,H,W] = the processor's ``pixel_values`` for that image alone (unpadded) and ``embeddings/<key>``
[tokens, dim] = what the model hands the language model: ``get_image_features(...).pooler_output[0]`` for
LLaVA/Mistral3 (the same call ``forward`` makes), ``last_hidden_state[0]`` for the standalone tower) and
``expected.json`` in the siglip fixtures' format plus, per image, ``grid`` [1, rows, cols] and ``prompt_ids`` (the
processor's ``input_ids`` for the text "[IMG]": the image's full token sequence with [IMG_BREAK]/[IMG_END]), and at
the top ``token_ids`` (the processor's ids of [IMG], [IMG_BREAK], [IMG_END]), ``rejected`` (sizes the reference
processor refuses).

Reference processor: ``PixtralImageProcessorPil`` (PIL backend) driven by the real ``PixtralProcessor`` class, whose
``_process_images`` overrides the image processor's ``patch_size`` with ``patch_size * spatial_merge_size`` and whose
``replace_image_token`` lays out the tokens. transformers 5.23 marks PixtralProcessor as requiring torchvision (not in
the pinned environment): processing_pixtral.py imports the torchvision image processor module only for
``get_resize_output_image_size`` in ``_get_num_multimodal_tokens`` (unused here). ``stub_torchvision`` installs empty
torchvision modules so that import succeeds; nothing from them is ever called (the image processor is the PIL one).

5.23 arithmetic reproduced by vtower (paths relative to site-packages/transformers/):
models/pixtral/image_processing_pil_pixtral.py  get_resize_output_image_size: ratio = max(h/max_h, w/max_w); if > 1:
    h = floor(h/ratio), w = floor(w/ratio); then ((h-1)//p + 1)*p per side (p = patch_size*spatial_merge_size from the
    processor); PIL resize (BICUBIC default) unless unchanged; rescale; normalize (CLIP mean/std default).
models/pixtral/modeling_pixtral.py  patch_conv (no bias) per image, crop to image_sizes//patch, flatten row-major,
    concat, ln_pre RMSNorm(1e-5); axial RoPE: inv_freq = 1/theta^(arange(0,d,2)/d), split [0::2] rows / [1::2] cols;
    block-diagonal mask; layers: RMSNorm(1e-5) attention (no biases) + RMSNorm(1e-5) gated MLP; no final norm.
models/llava/modeling_llava.py  hidden_states[vision_feature_layer] -> linear_1 -> act -> linear_2, split per image.
models/mistral3/modeling_mistral3.py  RMSNorm(text rms_norm_eps) -> unfold merge (channel-major) -> merging_layer ->
    linear_1 -> act -> linear_2.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import sys
import tempfile
import types
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from safetensors.torch import load_file, save_file
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
import gen_fixtures as common  # noqa: E402

import transformers  # noqa: E402
from transformers import (  # noqa: E402
    AutoImageProcessor,
    LlavaConfig,
    LlavaForConditionalGeneration,
    Mistral3Config,
    Mistral3ForConditionalGeneration,
    PixtralImageProcessorPil,
    PixtralVisionConfig,
    PixtralVisionModel,
    PreTrainedTokenizerFast,
)

FIXTURES = common.FIXTURES
REPO = common.REPO
BATCH_TOL = 1e-5
log = common.log

IMG_TOKEN, BREAK_TOKEN, END_TOKEN = "[IMG]", "[IMG_BREAK]", "[IMG_END]"
# The ids of the released Mistral tokenizers.
IMG_ID, BREAK_ID, END_ID = 10, 12, 13


def stub_torchvision() -> None:
    """Lets ``transformers.models.pixtral.processing_pixtral`` import without torchvision (see module docstring)."""
    import transformers.utils.import_utils as iu

    if importlib.util.find_spec("torchvision") is not None:
        return  # the real thing is there
    for name in ["torchvision", "torchvision.transforms", "torchvision.transforms.v2",
                 "torchvision.transforms.v2.functional", "torchvision.transforms.functional", "torchvision.io"]:
        sys.modules.setdefault(name, types.ModuleType(name))
    sys.modules["torchvision.transforms.v2"].functional = sys.modules["torchvision.transforms.v2.functional"]
    iu.BACKENDS_MAPPING["torchvision"] = (lambda: True, iu.BACKENDS_MAPPING["torchvision"][1])


# ----------------------------------------------------------------------------------------------------------
# helpers


def reinit_loud(model: nn.Module, seed: int) -> None:
    """common.reinit_loud plus RMSNorm weights (U(0.5, 1.5), ~10% sign flips, at least one): every parameter of these
    models is a Linear/Conv2d weight or bias, an Embedding, or an RMSNorm weight."""
    g = torch.Generator().manual_seed(seed)
    done: set[int] = set()

    def set_(p, values):
        with torch.no_grad():
            p.copy_(values.to(p.dtype))
        done.add(id(p))

    for name, mod in model.named_modules():
        if hasattr(mod, "variance_epsilon") and isinstance(getattr(mod, "weight", None), nn.Parameter):
            w = torch.rand(mod.weight.shape, generator=g, dtype=torch.float64) + 0.5
            flip = torch.rand(mod.weight.shape, generator=g) < 0.1
            flip[torch.randint(0, mod.weight.numel(), (1,), generator=g)] = True
            w[flip] *= -1
            set_(mod.weight, w)
        elif isinstance(mod, (nn.Linear, nn.Conv2d)):
            fan_in = mod.weight[0].numel()
            set_(mod.weight, torch.randn(mod.weight.shape, generator=g, dtype=torch.float64) / np.sqrt(fan_in))
            if mod.bias is not None:
                set_(mod.bias, torch.rand(mod.bias.shape, generator=g, dtype=torch.float64) - 0.5)
        elif isinstance(mod, nn.Embedding):
            set_(mod.weight, torch.randn(mod.weight.shape, generator=g, dtype=torch.float64))
    missing = [n for n, p in model.named_parameters() if id(p) not in done]
    assert not missing, f"parameters not covered by reinit_loud: {missing}"


def write_image(path: Path, width: int, height: int, seed: int) -> None:
    """A deterministic RGB PNG of any size (smooth pattern + noise)."""
    common.write_wave_image(path, width, height, seed, (0.23, 0.05, 0.17, 0.04, 1.3))


def make_tokenizer() -> PreTrainedTokenizerFast:
    from tokenizers import Tokenizer, models, pre_tokenizers

    vocab = {"<unk>": 0, "<s>": 1, "</s>": 2, "[INST]": 3, "[/INST]": 4, "describe": 5, "the": 6, "image": 7,
             IMG_TOKEN: IMG_ID, BREAK_TOKEN: BREAK_ID, END_TOKEN: END_ID}
    tk = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tk.pre_tokenizer = pre_tokenizers.Whitespace()
    tok = PreTrainedTokenizerFast(tokenizer_object=tk, unk_token="<unk>", bos_token="<s>", eos_token="</s>")
    tok.add_special_tokens({"additional_special_tokens": [IMG_TOKEN, BREAK_TOKEN, END_TOKEN]})
    assert tok.convert_tokens_to_ids([IMG_TOKEN, BREAK_TOKEN, END_TOKEN]) == [IMG_ID, BREAK_ID, END_ID]
    return tok


def make_processor(image_processor, patch_size: int, merge: int):
    from transformers.models.pixtral.processing_pixtral import PixtralProcessor

    return PixtralProcessor(image_processor=image_processor, tokenizer=make_tokenizer(), patch_size=patch_size,
                            spatial_merge_size=merge)


def load_f32(d: Path, cls):
    return common.load_f32(d, cls, vision=None)


def vision_of(model):
    return model if isinstance(model, PixtralVisionModel) else model.model.vision_tower


@torch.no_grad()
def features(model, pv: torch.Tensor, image_sizes) -> list[torch.Tensor]:
    """What the model hands the language model, per image."""
    if isinstance(model, PixtralVisionModel):
        out = model(pixel_values=pv, image_sizes=image_sizes).last_hidden_state[0]
        p = model.config.patch_size
        return list(torch.split(out, [(h // p) * (w // p) for h, w in image_sizes]))
    if isinstance(model, Mistral3ForConditionalGeneration) and one_token(model, image_sizes):
        return [mistral3_features_unsplit(model, pv, image_sizes)]
    out = model.model.get_image_features(pixel_values=pv, image_sizes=image_sizes, return_dict=True)
    feats = list(out.pooler_output)
    if isinstance(model, Mistral3ForConditionalGeneration):
        # the workaround below must agree with the reference wherever the reference works
        alt = mistral3_features_unsplit(model, pv, image_sizes)
        assert torch.equal(torch.cat(feats), alt), "mistral3 workaround differs from get_image_features"
    return feats


def one_token(model, image_sizes) -> bool:
    window = model.config.vision_config.patch_size * model.config.spatial_merge_size
    return sum((h // window) * (w // window) for h, w in image_sizes) == 1


@torch.no_grad()
def mistral3_features_unsplit(model, pv, image_sizes) -> torch.Tensor:
    """Mistral3Model.get_image_features (5.23) without its final split: there,
    ``torch.split(image_features.squeeze(0), split_sizes)`` squeezes a [1, T] result (one image of exactly one
    merged token) to [T] and the split fails. Same calls, same order otherwise."""
    m = model.model
    vout = m.vision_tower(pv, image_sizes=image_sizes, output_hidden_states=True, return_dict=True)
    selected = vout.hidden_states[model.config.vision_feature_layer]
    return m.multi_modal_projector(selected.squeeze(0), image_sizes)


def check_reload_matches(out_dir: Path, cls, stored: nn.Module) -> None:
    common.check_reload_matches(out_dir, cls, stored, load=load_f32)


# ----------------------------------------------------------------------------------------------------------
# expectations


def make_expected(name: str, out_dir: Path, model_cls, proc, images: list[dict], images_dir: Path,
                  rejected_sizes: list[tuple[int, int]], extra: dict) -> None:
    """proc: a PixtralProcessor (LLaVA/Mistral3) or a bare PixtralImageProcessorPil (standalone tower)."""
    model = load_f32(out_dir, model_cls)
    vision = vision_of(model)
    vcfg = vision.config
    is_processor = not isinstance(proc, PixtralImageProcessorPil)
    ip = proc.image_processor if is_processor else proc
    assert ip.backend == "pil", ip.backend
    merge = model.config.spatial_merge_size if isinstance(model, Mistral3ForConditionalGeneration) else 1
    window = vcfg.patch_size * merge
    tensors, entries, embs = {}, [], {}
    for it in images:
        key = Path(it["file"]).name if it.get("own") else it["file"]
        img = Image.open(it["path"])  # no EXIF transpose, no conversion: the processor converts to RGB
        mode, (w, h) = img.mode, img.size
        if is_processor:
            bf = proc(text=IMG_TOKEN, images=[img], return_tensors="pt")
            prompt_ids = bf["input_ids"][0].tolist()
        else:
            bf = proc(images=[img], return_tensors="pt")
            prompt_ids = None
        pv, sizes = bf["pixel_values"], bf["image_sizes"].tolist()
        H, W = sizes[0]
        assert pv.dtype == torch.float32 and tuple(pv.shape) == (1, 3, H, W), (pv.shape, sizes)
        assert H % window == 0 and W % window == 0, (H, W, window)
        rows, cols = H // window, W // window
        if prompt_ids is not None:
            want = ([IMG_ID] * cols + [BREAK_ID]) * rows
            want[-1] = END_ID
            assert prompt_ids == want, f"{name}/{key}: unexpected token layout {prompt_ids}"
        e = features(model, pv, sizes)
        assert len(e) == 1 and tuple(e[0].shape) == (rows * cols, e[0].shape[-1]), (e[0].shape, rows, cols)
        dim = e[0].shape[-1]
        tensors[f"pixels/{key}"] = pv[0].contiguous()
        tensors[f"embeddings/{key}"] = e[0].contiguous()
        embs[key] = e[0]
        entries.append({
            "file": os.path.relpath(it["path"], images_dir),
            "key": key,
            "path": common.rel_to_repo(Path(it["path"])),
            "mode": mode,
            "width": w,
            "height": h,
            "has_alpha": "A" in img.getbands() or img.info.get("transparency") is not None,
            "resized": (w, h) != (W, H),
            "tokens": rows * cols,
            "dim": dim,
            "grid": [1, rows, cols],
            "prompt_ids": prompt_ids,
        })
        log(f"{name}/{key}: {w}x{h} -> {W}x{H}, grid {rows}x{cols}")

    # Batch check: all images in one call, padded by the processor, with the reference's block-diagonal mask.
    keys = list(embs)
    imgs = [Image.open(it["path"]) for it in images]
    bf = proc(text=IMG_TOKEN * len(imgs), images=imgs, return_tensors="pt") if is_processor else \
        proc(images=imgs, return_tensors="pt")
    eb = features(model, bf["pixel_values"], bf["image_sizes"].tolist())
    diffs = [(eb[i] - embs[k]).abs().max().item() for i, k in enumerate(keys)]
    assert max(diffs) <= BATCH_TOL, f"{name}: batch vs single max diff {max(diffs)}"
    log(f"{name}: batch of {len(keys)}: max |batch - single| = {max(diffs):.3g}")

    # Sizes the reference refuses (one side shrinks to 0 pixels).
    rejected = []
    for (w, h) in rejected_sizes:
        img = Image.new("RGB", (w, h), (10, 20, 30))
        try:
            (proc(text=IMG_TOKEN, images=[img]) if is_processor else proc(images=[img]))
        except Exception as e:  # noqa: BLE001
            rejected.append({"width": w, "height": h, "error": f"{type(e).__name__}: {e}"})
        else:
            raise AssertionError(f"{name}: the reference accepted {w}x{h}")

    stats = health_check(name, embs, model, images)
    save_file(tensors, str(out_dir / "expected.safetensors"), metadata={"format": "pt"})
    token_ids = ({"image": proc.image_token_id, "image_break": proc.image_break_token_id,
                  "image_end": proc.image_end_token_id} if is_processor else None)
    doc = {
        "family": "pixtral",
        "model_type": model.config.model_type,
        "patch_size": vcfg.patch_size,
        "spatial_merge_size": merge,
        "round_to": window,
        "longest_edge": ip.size.longest_edge,
        "dim": entries[0]["dim"],
        "output": ("PixtralVisionModel(pixel_values, image_sizes).last_hidden_state[0]"
                   if isinstance(model, PixtralVisionModel) else
                   "model.model.get_image_features(pixel_values, image_sizes).pooler_output[0]")
                  + ", f32 eager, weights = stored checkpoint upcast to f32",
        "preprocessing": {
            "class": type(ip).__name__,
            "driven_by": type(proc).__name__,
            "input": "PIL.Image.open(path), no EXIF transpose, no conversion",
            "resample": int(ip.resample),
            "image_mean": list(ip.image_mean),
            "image_std": list(ip.image_std),
            "rescale_factor": ip.rescale_factor,
        },
        "token_ids": token_ids,
        "images_root": common.rel_to_repo(images_dir),
        "images": entries,
        "rejected": rejected,
        "batch_check": {"keys": keys, "max_abs_diff": max(diffs),
                        "per_image_max_abs_diff": dict(zip(keys, diffs)), "tolerance": BATCH_TOL,
                        "what": "all images in one reference call (padded, image_sizes, block-diagonal mask)",
                        "passed": True},
        "stats": stats,
        **extra,
        "generated_with": common.versions(),
    }
    (out_dir / "expected.json").write_text(json.dumps(doc, indent=2) + "\n")


@torch.no_grad()
def health_check(name: str, embs: dict, model, images) -> dict:
    std, small, maxabs = common.value_stats(name, embs, (0.3, 10.0), 100.0)
    # content matters: the first token of different images differs
    firsts = [e[0] for e in embs.values()]
    rel = [((a - b).abs().mean() / a.abs().mean()).item() for i, a in enumerate(firsts) for b in firsts[i + 1:]]
    med = float(np.median(rel))
    assert med > 0.1, f"{name}: images give near-identical embeddings ({med})"
    # attention is neither uniform nor one-hot (on the largest image)
    vision = vision_of(model)
    big = max(images, key=lambda it: Image.open(it["path"]).size[0] * Image.open(it["path"]).size[1])
    x = torch.randn(1, 3, 4 * vision.config.patch_size, 6 * vision.config.patch_size,
                    generator=torch.Generator().manual_seed(7))
    out = vision(pixel_values=x, image_sizes=[tuple(x.shape[-2:])], output_attentions=True)
    att_max = [a.max(-1).values.mean().item() for a in out.attentions]
    for m in att_max:
        assert 1.5 / 24 < m < 0.97, f"{name}: attention saturation {att_max}"
    stats = {"std": std, "max_abs": maxabs, "frac_abs_below_1e-3": small, "median_rel_diff_first_token": med,
             "mean_max_attention_prob_per_layer": att_max, "largest_image": big["file"]}
    log(f"{name}: health {json.dumps(stats)}")
    return stats


# ----------------------------------------------------------------------------------------------------------
# fixtures


TEXT = dict(model_type="mistral", vocab_size=16, hidden_size=40, intermediate_size=16, num_hidden_layers=1,
            num_attention_heads=2, num_key_value_heads=1, head_dim=20, max_position_embeddings=64,
            rms_norm_eps=1e-5)


def own_images(out: Path, specs: list[tuple[str, int, int]], seed: int) -> list[dict]:
    imgs = []
    for i, (stem, w, h) in enumerate(specs):
        p = out / f"{stem}_{w}x{h}.png"
        write_image(p, w, h, seed + i)
        imgs.append({"file": p.name, "path": p, "own": True})
    return imgs


def gen_llava(images_dir: Path, all_images: list[dict]):
    name = "pixtral_llava_f32"
    out = common.fresh_dir(FIXTURES / name)
    torch.manual_seed(4004)
    vision = dict(model_type="pixtral", hidden_size=32, intermediate_size=48, num_hidden_layers=2,
                  num_attention_heads=4, patch_size=8, image_size=64, hidden_act="silu",
                  rope_parameters={"rope_theta": 10000.0, "rope_type": "axial"})
    cfg = LlavaConfig(vision_config=vision, text_config=TEXT, image_token_index=IMG_ID, projector_hidden_act="gelu",
                      vision_feature_layer=-1, vision_feature_select_strategy="full", multimodal_projector_bias=True)
    model = LlavaForConditionalGeneration(cfg).eval()
    reinit_loud(model, 4004)
    model.save_pretrained(out)
    proc = make_processor(PixtralImageProcessorPil(size={"longest_edge": 64}, patch_size=8), patch_size=8, merge=1)
    proc.save_pretrained(out)
    files = sorted(p.name for p in out.iterdir())
    assert "processor_config.json" in files and "preprocessor_config.json" not in files, files
    pc = json.loads((out / "processor_config.json").read_text())
    assert pc["image_processor"]["size"] == {"longest_edge": 64} and pc["patch_size"] == 8, pc
    added = {t["content"]: t["id"] for t in json.loads((out / "tokenizer.json").read_text())["added_tokens"]}
    assert added[BREAK_TOKEN] == BREAK_ID and added[END_TOKEN] == END_ID, added
    assert "added_tokens_decoder" not in json.loads((out / "tokenizer_config.json").read_text())
    c = json.loads((out / "config.json").read_text())
    assert c["model_type"] == "llava" and c["vision_config"]["model_type"] == "pixtral", c
    names = common.tensor_names(out)
    assert "vision_tower.patch_conv.weight" in names and "multi_modal_projector.linear_1.bias" in names, names[:8]
    check_reload_matches(out, LlavaForConditionalGeneration, model)
    # the processor as transformers loads it back (PIL backend) must be the one we saved
    ip = AutoImageProcessor.from_pretrained(out, backend="pil")
    assert type(ip) is PixtralImageProcessorPil and ip.size.longest_edge == 64, ip
    proc = make_processor(ip, patch_size=pc["patch_size"], merge=pc["spatial_merge_size"])
    imgs = own_images(out, [("native", 40, 24), ("wide", 256, 20), ("tall", 18, 200), ("tiny", 5, 3)], seed=40)
    imgs += common.pick(all_images, ["rgb.png", "rgba.png", "jpeg420.jpg", "photo.jpg", "gray.png",
                                     "palette_trns.png"], name)
    make_expected(name, out, LlavaForConditionalGeneration, proc, imgs, images_dir, [(400, 2), (3, 1000)],
                  {"checkpoint": {"class": "LlavaForConditionalGeneration", "model_type": "llava",
                                  "vision_model_type": "pixtral", "storage_dtype": "float32",
                                  "layout": "transformers 5.23 save (vision_tower.*, multi_modal_projector.*, "
                                            "language_model.*)",
                                  "processor_files": "5.23 PixtralProcessor.save_pretrained: processor_config.json "
                                                     "(image_processor nested), tokenizer.json, tokenizer_config.json",
                                  "files": files}})


def gen_mistral3(images_dir: Path, all_images: list[dict]):
    name = "mistral3_bf16"
    out = common.fresh_dir(FIXTURES / name)
    torch.manual_seed(5005)
    vision = dict(model_type="pixtral", hidden_size=48, intermediate_size=64, num_hidden_layers=3,
                  num_attention_heads=4, patch_size=8, image_size=64, hidden_act="silu",
                  rope_parameters={"rope_theta": 1000.0, "rope_type": "axial"})
    cfg = Mistral3Config(vision_config=vision, text_config=TEXT, vision_feature_layer=-2, spatial_merge_size=2)
    assert cfg.multimodal_projector_bias is False and cfg.projector_hidden_act == "gelu"
    model = Mistral3ForConditionalGeneration(cfg).eval()
    reinit_loud(model, 5005)
    model = model.to(torch.bfloat16)
    with tempfile.TemporaryDirectory() as td:
        td = Path(td)
        model.save_pretrained(td)
        sd = load_file(str(td / "model.safetensors"))
        legacy = {}
        for k, v in sd.items():
            if k.startswith("language_model.model."):
                legacy["model.language_model." + k[len("language_model.model."):]] = v
            elif k.startswith("language_model.lm_head."):
                legacy[k[len("language_model."):]] = v
            elif k.startswith(("vision_tower.", "multi_modal_projector.")):
                legacy["model." + k] = v
            else:
                raise AssertionError(k)
        save_file(legacy, str(out / "model.safetensors"), metadata={"format": "pt"})
        shutil.copy(td / "config.json", out / "config.json")
        a = load_f32(out, Mistral3ForConditionalGeneration)
        b = load_f32(td, Mistral3ForConditionalGeneration)
        common.assert_same_params(a, b)
        log(f"{name}: transformers loads the 4.5x-layout (model.*) checkpoint with identical parameters")
    check_reload_matches(out, Mistral3ForConditionalGeneration, model)
    names = common.tensor_names(out)
    assert "model.vision_tower.patch_conv.weight" in names and "model.multi_modal_projector.norm.weight" in names
    assert common.stored_dtypes(out) == {"BF16"}
    c = json.loads((out / "config.json").read_text())
    assert c["text_config"]["rms_norm_eps"] == 1e-5 and c["vision_feature_layer"] == -2, c
    # legacy processor files, as released Mistral3 repos have them
    ip = PixtralImageProcessorPil(size={"longest_edge": 64}, patch_size=8)
    ip.save_pretrained(out)
    proc = make_processor(ip, patch_size=8, merge=2)
    (out / "processor_config.json").write_text(json.dumps({
        "image_break_token": BREAK_TOKEN, "image_end_token": END_TOKEN, "image_token": IMG_TOKEN,
        "patch_size": 8, "processor_class": "PixtralProcessor", "spatial_merge_size": 2}, indent=2) + "\n")
    proc.tokenizer.save_pretrained(out)
    tc = json.loads((out / "tokenizer_config.json").read_text())
    tc["added_tokens_decoder"] = {str(i): {"content": t, "lstrip": False, "normalized": False, "rstrip": False,
                                           "single_word": False, "special": True}
                                  for t, i in [("<unk>", 0), ("<s>", 1), ("</s>", 2), (IMG_TOKEN, IMG_ID),
                                               (BREAK_TOKEN, BREAK_ID), (END_TOKEN, END_ID)]}
    (out / "tokenizer_config.json").write_text(json.dumps(tc, indent=2) + "\n")
    ip2 = AutoImageProcessor.from_pretrained(out, backend="pil")
    assert type(ip2) is PixtralImageProcessorPil and ip2.patch_size in (8, {"height": 8, "width": 8}), ip2
    proc = make_processor(ip2, patch_size=8, merge=2)
    files = sorted(p.name for p in out.iterdir())
    imgs = own_images(out, [("native", 48, 32), ("wide", 256, 20), ("tall", 18, 200), ("tiny", 5, 3)], seed=50)
    imgs += common.pick(all_images, ["jpeg444.jpg", "lossy_alpha.webp", "gray_alpha.png", "cmyk.jpg", "photo.jpg"],
                        name)
    make_expected(name, out, Mistral3ForConditionalGeneration, proc, imgs, images_dir, [(400, 2)],
                  {"checkpoint": {"class": "Mistral3ForConditionalGeneration", "model_type": "mistral3",
                                  "storage_dtype": "bfloat16",
                                  "layout": "transformers 4.5x (model.vision_tower.*, model.multi_modal_projector.*, "
                                            "model.language_model.*; lm_head tied, absent), rewritten from a 5.23 save",
                                  "hub_layout_load_check": "transformers 5.23 loads it with no missing/unexpected "
                                                           "keys; parameters identical to the 5.23-layout save",
                                  "processor_files": "preprocessor_config.json (patch_size 8 = the tower's), flat "
                                                     "processor_config.json (patch_size 8, spatial_merge_size 2), "
                                                     "tokenizer.json, 4.x-style tokenizer_config.json "
                                                     "(added_tokens_decoder)",
                                  "files": files}})


def gen_standalone(images_dir: Path, all_images: list[dict]):
    name = "pixtral_vision_f16"
    out = common.fresh_dir(FIXTURES / name)
    torch.manual_seed(6006)
    model = PixtralVisionModel(PixtralVisionConfig(hidden_size=32, intermediate_size=40, num_hidden_layers=2,
                                                   num_attention_heads=2, patch_size=8, image_size=48,
                                                   hidden_act="gelu",
                                                   rope_parameters={"rope_theta": 100.0, "rope_type": "axial"}))
    model.eval()
    reinit_loud(model, 6006)
    model = model.to(torch.float16)
    model.save_pretrained(out)
    c = json.loads((out / "config.json").read_text())
    assert c["rope_parameters"] == {"rope_theta": 100.0, "rope_type": "axial"}, c
    del c["rope_parameters"], c["hidden_act"]
    c["rope_theta"] = 100.0
    (out / "config.json").write_text(json.dumps(c, indent=2) + "\n")
    re = load_f32(out, PixtralVisionModel)
    assert re.config.rope_parameters["rope_theta"] == 100.0 and re.config.hidden_act == "gelu", re.config
    check_reload_matches(out, PixtralVisionModel, model)
    names = common.tensor_names(out)
    assert "patch_conv.weight" in names and "ln_pre.weight" in names, names[:5]
    assert common.stored_dtypes(out) == {"F16"}
    ip = PixtralImageProcessorPil(size={"longest_edge": 48}, patch_size=8)
    ip.save_pretrained(out)
    ip = AutoImageProcessor.from_pretrained(out, backend="pil")
    assert type(ip) is PixtralImageProcessorPil
    files = sorted(p.name for p in out.iterdir())
    imgs = own_images(out, [("native", 24, 40), ("wide", 200, 9)], seed=60)
    imgs += common.pick(all_images, ["rgb.png", "gray.png", "photo.jpg"], name)
    make_expected(name, out, PixtralVisionModel, ip, imgs, images_dir, [(400, 3)],
                  {"checkpoint": {"class": "PixtralVisionModel", "model_type": "pixtral", "storage_dtype": "float16",
                                  "layout": "transformers 5.23 save (no prefix)",
                                  "config": "Hub style: top-level rope_theta 100 (no rope_parameters), no hidden_act "
                                            "(class default gelu); asserted to load so",
                                  "processor_files": "preprocessor_config.json only (image processor alone)",
                                  "files": files}})


def main():
    args = common.arg_parser(__doc__, images_dir=True).parse_args()
    common.init_torch(args.allow_other_versions)
    stub_torchvision()
    images_dir = args.images_dir.resolve()
    images, _ = common.list_images(images_dir)
    gen_llava(images_dir, images)
    gen_mistral3(images_dir, images)
    gen_standalone(images_dir, images)
    total = 0
    for n in ["pixtral_llava_f32", "mistral3_bf16", "pixtral_vision_f16"]:
        size = sum(f.stat().st_size for f in (FIXTURES / n).iterdir())
        log(f"{n}: {size / 1024:.1f} KiB")
        total += size
    assert total < 2 * 1024 * 1024, "pixtral fixtures over 2 MB"


if __name__ == "__main__":
    main()
