#!/usr/bin/env python3
"""Side-by-side GPU benchmark, run on the device machine: Hugging Face transformers (PyTorch,
bf16, SDPA attention) vs vtower (bf16, CUDA) on every real-size case of
shared/gpu/gpu_anchor.py, random weights, same card, same run. Prints ms per image for both,
their ratio and the achieved TFLOP/s; --json writes the rows.

Per case: the vision tower (+ projector) of the real shape is built inside the VLM class that
transformers uses for it (Gemma3ForConditionalGeneration, LlavaForConditionalGeneration with a
Pixtral tower, Qwen2VL/Qwen2_5_VL/Qwen3VLForConditionalGeneration, Gemma4ForConditionalGeneration,
InternVLForConditionalGeneration, LlavaOnevisionForConditionalGeneration; SigLIP as
SiglipVisionModel) with a
language model of the real hidden size but otherwise tiny (1 layer, tiny vocab / heads / FFN),
given seeded random weights, saved with `save_pretrained` into a temp dir (bf16 on cuda, f32 on
cpu) and the safetensors file rewritten to hold only the vision tower + projector tensors (the
names are the ones the full model's save_pretrained writes); config.json is the full VLM config
(model_type gemma3 / llava / qwen2_vl / qwen2_5_vl), preprocessor_config.json the image
processor's save. vtower loads that folder. The temp dir is deleted after the case.

What is timed (preprocessing excluded on both sides):
* HF: from already-preprocessed pixel tensors (the HF image processor's output for the same image,
  repeated `batch` times): SigLIP `SiglipVisionModel(...).last_hidden_state` (HF also runs the
  so400m attention-pool head, as in the anchor; vtower does not: ~0.6% of the FLOPs); Gemma3, Qwen2-VL, Qwen2.5-VL and Pixtral
  `model.model.get_image_features(...)`, i.e. tower + Gemma3 projector, the Qwen towers with their
  merger, and the Pixtral tower + the LLaVA projector (linear_1, gelu, linear_2 to 5120).
  The anchor times the Pixtral tower alone; here both sides include the LLaVA projector, since
  vtower returns projected embeddings for a llava checkpoint.
* vtower: wall clock around vt_forward on images already preprocessed by vt_preprocess (the
  same PNG, `batch` handles; batch 8 = 8 images in one call, packed for Pixtral and Qwen).
FLOPs follow gpu_anchor.py's formulas (tower only: projectors / the Qwen merger are not counted,
as in the anchor), with the depth actually run (--layers).

Checks per row: vtower's token count per image equals HF's (a WARN row when not), and the rel L2
between HF's and vtower's embeddings of every image (HF's Qwen output order equals vtower's).
With --device cpu (f32) rel L2 must be <= 1e-4 (else a MISMATCH row): the smoke test proving that
the checkpoints are built right. On cuda (bf16 on both sides) rel L2 is information only.

CPU table (#15): --device cpu --dtypes f32,bf16 times both dtypes side by side per case: HF f32
(MKL/oneDNN), vtower VT_DTYPE_F32, then HF `model.to(bfloat16)` (oneDNN's bf16 kernels: AMX or
AVX512-BF16 where the CPU has them) and vtower VT_DTYPE_BF16 (its CPU kernels at the level
VTOWER_CPU_ISA allows) on the same checkpoint. Every rel L2 is against HF f32; bf16 rows must stay
within 1e-2 (the row also gives HF bf16's own rel L2 to HF f32). On the CPU the first call of each
side is its first warm-up (with --warm 0, its first timed call): a full-depth 1344 px case costs one
forward per side and dtype with --iters 1 --warm 0. The header line names the CPU and its flags.
Every bf16 row also gives vtower bf16 / vtower f32. --no-hf-bf16 leaves PyTorch's bf16 run out (a
CPU without AVX512-BF16/AMX runs it several times slower than f32): the bf16 rows then time vtower
alone.

Smoke test without a GPU: --device cpu --layers 1 --iters 1 --warm 0 --batches 1,2; --small
shrinks every image size (384->224, 896->448, 448->224, 1344->448, 512->256, 1024->512; hidden
sizes, heads, patch and the projectors stay real) when the real sizes are too slow there.
"""
import argparse
import gc
import io
import json
import statistics
import sys
import tempfile
import time
import traceback
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "scripts"))
import vtower_ctypes as vc  # noqa: E402
from machine_info import median_wall_ms  # noqa: E402


def vit_flops(n_tok, d, ffn, layers, gated=False, windows=None):
    """gpu_anchor.py's count: forward FLOPs (multiply-add = 2) of a pre-norm ViT stack on n_tok
    tokens; with `windows`, each token attends to that many tokens."""
    proj = 2 * n_tok * 4 * d * d
    mlp = 2 * n_tok * d * ffn * (3 if gated else 2)
    attn = 2 * 2 * n_tok * (n_tok if windows is None else windows) * d
    return layers * (proj + mlp + attn)


LAYERS = 0  # --layers: a shallow stack, to smoke-test this script (e.g. on the CPU)


def depth(real):
    return LAYERS or real


# ---------------------------------------------------------------------------------------------
# cases: each builder returns a dict with
#   model   the nn.Module to save and to time (a full VLM with a tiny LM, or the SigLIP tower)
#   proc    the HF image processor (saved next to the checkpoint, run for the HF pixels)
#   keep    tensor-name prefixes kept in the saved safetensors (None: all)
#   inputs  (processor output for one image, batch) -> kwargs of `call`
#   call    (model, **kwargs) -> list of per-image [tokens, dim] tensors
#   flops   per image (anchor formula, tower only)

SIGLIP_SO400M = dict(hidden_size=1152, intermediate_size=4304, num_attention_heads=16, patch_size=14,
                     hidden_act="gelu_pytorch_tanh", layer_norm_eps=1e-6)


def repeat_pixels(bf, batch):
    return {"pixel_values": bf["pixel_values"].repeat(batch, 1, 1, 1)}


def siglip_so400m(size):
    from transformers import SiglipImageProcessorPil, SiglipVisionConfig, SiglipVisionModel
    cfg = SiglipVisionConfig(num_hidden_layers=depth(27), image_size=size, **SIGLIP_SO400M)
    n = (size // 14) ** 2
    return dict(cls=SiglipVisionModel, cfg=cfg, keep=None,
                proc=SiglipImageProcessorPil(size={"height": size, "width": size}),
                inputs=repeat_pixels,
                call=lambda m, **kw: list(m(**kw).last_hidden_state),
                flops=vit_flops(n, 1152, 4304, depth(27)))


def gemma3_896(size):
    from transformers import Gemma3Config, Gemma3ForConditionalGeneration, Gemma3ImageProcessorPil
    vision = dict(num_hidden_layers=depth(27), image_size=size, vision_use_head=False, **SIGLIP_SO400M)
    # Gemma3-4B: text hidden 2560 (the projector's output); the rest of the LM is tiny
    text = dict(hidden_size=2560, vocab_size=300, intermediate_size=16, num_hidden_layers=1,
                num_attention_heads=1, num_key_value_heads=1, head_dim=16)
    cfg = Gemma3Config(vision_config=vision, text_config=text, mm_tokens_per_image=256,
                       boi_token_index=290, eoi_token_index=291, image_token_index=292)
    n = (size // 14) ** 2
    return dict(cls=Gemma3ForConditionalGeneration, cfg=cfg, keep=("vision_tower.", "multi_modal_projector."),
                proc=Gemma3ImageProcessorPil(size={"height": size, "width": size}),
                inputs=repeat_pixels,
                call=lambda m, **kw: list(m.model.get_image_features(**kw).pooler_output),
                flops=vit_flops(n, 1152, 4304, depth(27)))


def qwen_inputs(bf, batch):
    return {"pixel_values": bf["pixel_values"].repeat(batch, 1),
            "image_grid_thw": bf["image_grid_thw"].repeat(batch, 1)}


def qwen(size, v25):
    from transformers import Qwen2VLImageProcessorPil
    p, t = 14, 2
    n = (size // p) ** 2
    if v25:
        from transformers import Qwen2_5_VLConfig as C, Qwen2_5_VLForConditionalGeneration as M
        d = depth(32)
        full = [i for i in (7, 15, 23, 31) if i < d]
        if LAYERS and not full and d >= 2:
            full = [d - 1]  # a shallow stack still has one full-attention block
        vision = dict(depth=d, hidden_size=1280, intermediate_size=3420, num_heads=16, out_hidden_size=3584,
                      window_size=112, fullatt_block_indexes=full, patch_size=p, spatial_merge_size=2,
                      temporal_patch_size=t, in_channels=3, hidden_act="silu")
        hidden = 3584
        # 28 of 32 layers attend within 8x8-patch windows (112 px), 4 layers attend globally
        win = min(n, 64)
        flops = (vit_flops(n, 1280, 3420, d - len(full), gated=True, windows=win)
                 + vit_flops(n, 1280, 3420, len(full), gated=True))
    else:
        from transformers import Qwen2VLConfig as C, Qwen2VLForConditionalGeneration as M
        vision = dict(depth=depth(32), embed_dim=1280, hidden_size=1536, num_heads=16, mlp_ratio=4,
                      patch_size=p, spatial_merge_size=2, temporal_patch_size=t, in_channels=3)
        hidden = 1536
        flops = vit_flops(n, 1280, 5120, depth(32))
    # the LM's hidden size is real (= the merger's out_hidden_size), the rest tiny; head_dim 128 as real
    text = dict(hidden_size=hidden, vocab_size=16, intermediate_size=16, num_hidden_layers=1,
                num_attention_heads=hidden // 128, num_key_value_heads=1, max_position_embeddings=64,
                bos_token_id=0, eos_token_id=1,
                rope_parameters={"rope_type": "default", "rope_theta": 1e6, "mrope_section": [16, 24, 24]})
    cfg = C(vision_config=vision, text_config=text)
    # the released min/max pixels (3136 .. 12845056): 448x448 and 1344x1344 stay unchanged
    proc = Qwen2VLImageProcessorPil(size={"shortest_edge": 3136, "longest_edge": 12845056},
                                    patch_size=p, merge_size=2, temporal_patch_size=t)
    return dict(cls=M, cfg=cfg, keep=("visual.",), proc=proc, inputs=qwen_inputs,
                call=lambda m, **kw: list(m.model.get_image_features(**kw).pooler_output),
                flops=flops)


def glm4v_9b(size):
    """GLM-4.1V-9B's vision tower (the Glm4vVisionConfig defaults: 24 layers of 1536, 12 heads,
    patch 14, SwiGLU blocks out_hidden_size (4096) wide, a 24x24 position table resampled per
    image with bicubic grid_sample, 2x2 Conv2d downsample, merger with intermediate_size 13696)
    into the 4096-wide LM."""
    from transformers import Glm4vConfig, Glm4vForConditionalGeneration, Glm4vImageProcessorPil
    p, t = 14, 2
    n = (size // p) ** 2
    vision = dict(depth=depth(24), hidden_size=1536, num_heads=12, intermediate_size=13696, out_hidden_size=4096,
                  patch_size=p, spatial_merge_size=2, temporal_patch_size=t, image_size=336, hidden_act="silu")
    text = dict(hidden_size=4096, vocab_size=16, intermediate_size=16, num_hidden_layers=1,
                num_attention_heads=32, num_key_value_heads=1, max_position_embeddings=64,
                rope_parameters={"rope_type": "default", "rope_theta": 10000.0, "mrope_section": [8, 12, 12]})
    cfg = Glm4vConfig(vision_config=vision, text_config=text, image_token_id=13, video_token_id=14,
                      image_start_token_id=11, image_end_token_id=12, video_start_token_id=15,
                      video_end_token_id=3)
    # the class defaults (112x112 .. 28x28x15000 pixels): 448x448 and 1344x1344 stay unchanged
    proc = Glm4vImageProcessorPil(patch_size=p, merge_size=2, temporal_patch_size=t)
    return dict(cls=Glm4vForConditionalGeneration, cfg=cfg, keep=("model.visual.",), proc=proc,
                inputs=qwen_inputs, call=lambda m, **kw: list(m.model.get_image_features(**kw).pooler_output),
                flops=vit_flops(n, 1536, 4096, depth(24), gated=True))


def qwen3vl_8b(size):
    """Qwen3-VL-8B's vision tower (the Qwen3VLVisionConfig defaults: 27 layers of 1152, MLP 4304,
    16 heads, patch 16, learned 48x48 position table, deepstack after layers 8, 16, 24) and its
    merger into the 4096-wide LM. Timed and compared: the main embeddings (deepstack levels are
    computed on both sides; HF returns them beside pooler_output)."""
    from transformers import Qwen2VLImageProcessorPil, Qwen3VLConfig, Qwen3VLForConditionalGeneration
    p, t = 16, 2
    d = depth(27)
    stack = [i for i in (8, 16, 24) if i < d] or [d - 1]
    vision = dict(depth=d, hidden_size=1152, intermediate_size=4304, num_heads=16, out_hidden_size=4096,
                  patch_size=p, spatial_merge_size=2, temporal_patch_size=t, num_position_embeddings=2304,
                  deepstack_visual_indexes=stack, hidden_act="gelu_pytorch_tanh")
    text = dict(hidden_size=4096, vocab_size=16, intermediate_size=16, num_hidden_layers=1,
                num_attention_heads=32, num_key_value_heads=1, head_dim=128, max_position_embeddings=64,
                rope_parameters={"rope_type": "default", "rope_theta": 5e6, "mrope_section": [24, 20, 20],
                                 "mrope_interleaved": True})
    cfg = Qwen3VLConfig(vision_config=vision, text_config=text)
    # Qwen3-VL's released processor bounds (65536 .. 16777216 pixels): 448 and 1344 stay unchanged
    proc = Qwen2VLImageProcessorPil(size={"shortest_edge": 65536, "longest_edge": 16777216},
                                    patch_size=p, merge_size=2, temporal_patch_size=t)
    n = (size // p) ** 2
    return dict(cls=Qwen3VLForConditionalGeneration, cfg=cfg, keep=("model.visual.",), proc=proc,
                inputs=qwen_inputs,
                call=lambda m, **kw: list(m.model.get_image_features(**kw).pooler_output),
                flops=vit_flops(n, 1152, 4304, d))


def pixtral_inputs(bf, batch):
    return {"pixel_values": bf["pixel_values"].repeat(batch, 1, 1, 1),
            "image_sizes": bf["image_sizes"].repeat(batch, 1)}


def pixtral_12b(size):
    from transformers import LlavaConfig, LlavaForConditionalGeneration, PixtralImageProcessorPil
    vision = dict(model_type="pixtral", hidden_size=1024, intermediate_size=4096, num_hidden_layers=depth(24),
                  num_attention_heads=16, image_size=1024, patch_size=16, head_dim=64, hidden_act="silu",
                  rope_parameters={"rope_theta": 10000.0, "rope_type": "axial"})
    # Pixtral-12B: Mistral text hidden 5120 (the projector's output), the rest tiny
    text = dict(model_type="mistral", hidden_size=5120, vocab_size=16, intermediate_size=16, num_hidden_layers=1,
                num_attention_heads=1, num_key_value_heads=1, head_dim=16, max_position_embeddings=64,
                rms_norm_eps=1e-5)
    cfg = LlavaConfig(vision_config=vision, text_config=text, image_token_index=10, projector_hidden_act="gelu",
                      vision_feature_layer=-1, vision_feature_select_strategy="full",
                      multimodal_projector_bias=True)
    n = (size // 16) ** 2
    return dict(cls=LlavaForConditionalGeneration, cfg=cfg, keep=("vision_tower.", "multi_modal_projector."),
                proc=PixtralImageProcessorPil(size={"longest_edge": 1024}, patch_size=16),
                inputs=pixtral_inputs,
                call=lambda m, **kw: list(m.model.get_image_features(**kw).pooler_output),
                # images of one call are packed into one sequence with a block-diagonal mask
                flops=vit_flops(n, 1024, 4096, depth(24), gated=True))


def gemma4_inputs(bf, batch):
    return {"pixel_values": bf["pixel_values"].repeat(batch, 1, 1),
            "image_position_ids": bf["image_position_ids"].repeat(batch, 1, 1)}


def gemma4(side, budget):
    from transformers import Gemma4Config, Gemma4ForConditionalGeneration, Gemma4ImageProcessorPil
    # Gemma4VisionConfig's defaults (hidden 768, 16 layers, 12 heads of 64, patch 16, pooling 3)
    vision = dict(num_hidden_layers=depth(16))
    # text hidden 2560 (the embedder's output); the rest of the LM is tiny
    text = dict(hidden_size=2560, vocab_size=300, intermediate_size=16, num_hidden_layers=1, num_attention_heads=1,
                num_key_value_heads=1, head_dim=16, global_head_dim=16, hidden_size_per_layer_input=4,
                vocab_size_per_layer_input=300, layer_types=["full_attention"])
    cfg = Gemma4Config(vision_config=vision, text_config=text, audio_config=None, image_token_id=292,
                       boi_token_id=290, eoi_token_id=291, video_token_id=293, audio_token_id=294,
                       boa_token_id=295, eoa_token_index=296)
    proc = Gemma4ImageProcessorPil(max_soft_tokens=budget)
    # the processor's resize of a side x side image, in patches
    import math
    f = math.sqrt(budget * 9 * 256 / (side * side))
    n = (int(math.floor(f * side / 48)) * 3) ** 2
    return dict(cls=Gemma4ForConditionalGeneration, cfg=cfg, keep=("model.vision_tower.", "model.embed_vision."),
                proc=proc, inputs=gemma4_inputs,
                call=lambda m, **kw: list(m.model.get_image_features(**kw).pooler_output),
                flops=vit_flops(n, 768, 3072, depth(16), gated=True))


def internvl3_1b(size):
    """InternVL3-1B (OpenGVLab/InternVL3-1B-hf): InternViT-300M (24 layers of 1024, MLP 4096, 16
    heads, patch 14, 448 px tiles, layer norm, no q/k norm), pixel shuffle 0.5 and the MLP
    projector into the 896-wide Qwen2.5 LM. GotOcr2 tiling as InternVLProcessor runs it
    (crop_to_patches, max 12 tiles): a 448 px image is 1 tile, 896 px is 2x2 tiles + thumbnail
    = 5 tiles of 256 tokens. HF's per-tile output is regrouped per image."""
    from transformers import GotOcr2ImageProcessorPil, InternVLConfig, InternVLForConditionalGeneration
    d = depth(24)
    vision = dict(hidden_size=1024, intermediate_size=4096, num_hidden_layers=d, num_attention_heads=16,
                  image_size=448, patch_size=14)
    text = dict(model_type="qwen2", hidden_size=896, vocab_size=16, intermediate_size=16,
                num_hidden_layers=1, num_attention_heads=14, num_key_value_heads=2)
    cfg = InternVLConfig(vision_config=vision, text_config=text, image_token_id=10)
    proc = GotOcr2ImageProcessorPil(size={"height": 448, "width": 448}, crop_to_patches=True,
                                    max_patches=12, image_mean=[0.485, 0.456, 0.406],
                                    image_std=[0.229, 0.224, 0.225])
    tiles = proc.get_number_of_image_patches(size, size, {})
    per_image = tiles * 256

    def call(m, **kw):
        out = m.model.get_image_features(**kw).pooler_output
        return list(out.reshape(-1, per_image, out.shape[-1]))
    n = (448 // 14) ** 2 + 1
    return dict(cls=InternVLForConditionalGeneration, cfg=cfg,
                keep=("vision_tower.", "multi_modal_projector."), proc=proc,
                inputs=repeat_pixels, call=call, flops=tiles * vit_flops(n, 1024, 4096, d))


def llava_onevision_7b(size):
    """LLaVA-OneVision-Qwen2-7B (llava-hf/llava-onevision-qwen2-7b-ov-hf): SigLIP so400m-384 (26
    layers as released), strategy full, layer -1, the LLaVA MLP projector into the 3584-wide
    Qwen2 LM, anyres_max_9 and the class's 36 pinpoints. A 384 px image is the base image + 1
    tile (729 + 27 x 28 tokens), 768 px the base + 2x2 tiles (729 + 54 x 55 tokens)."""
    from transformers import (LlavaOnevisionConfig, LlavaOnevisionForConditionalGeneration,
                              LlavaOnevisionImageProcessorPil)
    d = depth(26)
    vision = dict(model_type="siglip_vision_model", num_hidden_layers=d, image_size=384, vision_use_head=False,
                  **SIGLIP_SO400M)
    text = dict(model_type="qwen2", hidden_size=3584, vocab_size=16, intermediate_size=16,
                num_hidden_layers=1, num_attention_heads=28, num_key_value_heads=4)
    cfg = LlavaOnevisionConfig(vision_config=vision, text_config=text, image_token_index=10, video_token_index=11)
    proc = LlavaOnevisionImageProcessorPil()
    tiles = 1 + (size // 384) ** 2

    def inputs(bf, batch):
        return {"pixel_values": bf["pixel_values"].repeat(batch, 1, 1, 1, 1),
                "image_sizes": bf["image_sizes"].repeat(batch, 1)}
    n = (384 // 14) ** 2
    return dict(cls=LlavaOnevisionForConditionalGeneration, cfg=cfg,
                keep=("vision_tower.", "multi_modal_projector.", "image_newline"), proc=proc,
                inputs=inputs, call=lambda m, **kw: list(m.model.get_image_features(**kw).pooler_output),
                flops=tiles * vit_flops(n, 1152, 4304, d))


# (name, real image side, --small image side, builder)
CASES = [
    ("siglip-so400m-384", 384, 224, siglip_so400m),
    ("gemma3-896+proj", 896, 448, gemma3_896),
    ("qwen2vl-2b-448", 448, 224, lambda s: qwen(s, v25=False)),
    ("qwen2vl-2b-1344", 1344, 448, lambda s: qwen(s, v25=False)),
    ("qwen25vl-7b-448", 448, 224, lambda s: qwen(s, v25=True)),
    ("qwen25vl-7b-1344", 1344, 448, lambda s: qwen(s, v25=True)),
    ("qwen3vl-8b-448", 448, 224, qwen3vl_8b),
    ("glm4v-9b-448", 448, 224, glm4v_9b),
    ("qwen3vl-8b-1344", 1344, 448, qwen3vl_8b),
    ("pixtral-12b-512", 512, 256, pixtral_12b),
    ("pixtral-12b-1024", 1024, 512, pixtral_12b),
    # 768x768 at 280 soft tokens and 1584x1584 at 1120 are the processor's own sizes (no resize)
    ("gemma4-280", 768, 384, lambda s: gemma4(s, 280)),
    ("gemma4-1120", 1584, 768, lambda s: gemma4(s, 1120)),
    # 448: one tile; 896: 2x2 tiles + thumbnail (5 tiles); --small keeps the tile size
    ("internvl3-1b-448", 448, 448, internvl3_1b),
    ("internvl3-1b-896", 896, 672, internvl3_1b),
    # base + 1 tile; base + 2x2 tiles (the unpadded 54x54 map stays under anyres_max_9)
    ("llava-ov-7b-384", 384, 384, llava_onevision_7b),
    ("llava-ov-7b-768", 768, 768, llava_onevision_7b),
]


# ---------------------------------------------------------------------------------------------
# weights and checkpoint


@torch.no_grad()
def randomize(model: torch.nn.Module, seed: int) -> None:
    """Seeded random weights with some spread (transformers' init leaves biases at 0, norms at 1
    and Gemma3's projection matrix at 0, which would make the numeric check weak): matrices and
    convolutions N(0, 1/fan_in), position embeddings N(0, 0.5), biases U(-0.5, 0.5), other 1-D
    weights (norms) U(0.5, 1.5) with ~10% sign flips. Only the vision tower + projector matter;
    the tiny LM gets the same treatment (it is not saved)."""
    g = {}
    for name, p in model.named_parameters():
        gen = g.setdefault(p.device, torch.Generator(device=p.device).manual_seed(seed))
        if p.dim() >= 2:
            if name.endswith(("position_embedding.weight", "position_embedding_table")):
                std = 0.5
            elif name.endswith("mm_input_projection_weight"):  # [vision, text]: x @ w
                std = p.shape[0] ** -0.5
            else:
                std = p[0].numel() ** -0.5
            p.normal_(0.0, std, generator=gen)
        elif name.endswith("bias"):
            p.uniform_(-0.5, 0.5, generator=gen)
        else:
            p.uniform_(0.5, 1.5, generator=gen)
            flip = torch.rand(p.shape, generator=gen, device=p.device) < 0.1
            p[flip] *= -1


def save_checkpoint(model, proc, keep, out: Path) -> list[str]:
    """save_pretrained (full config + weights), then rewrite the weights as one model.safetensors
    holding only the tensors whose saved name starts with one of `keep`."""
    from safetensors.torch import load_file, save_file
    model.save_pretrained(out)
    proc.save_pretrained(out)
    if keep is None:
        return []
    files = sorted(out.glob("*.safetensors"))
    kept, dropped = {}, []
    for f in files:
        for k, v in load_file(str(f)).items():
            if k.startswith(keep):
                kept[k] = v
            else:
                dropped.append(k)
        f.unlink()
    for idx in out.glob("*.safetensors.index.json"):
        idx.unlink()
    assert kept and all(any(k.startswith(p) for k in kept) for p in keep), (keep, sorted(kept)[:5])
    save_file(kept, str(out / "model.safetensors"), metadata={"format": "pt"})
    return dropped


# ---------------------------------------------------------------------------------------------
# timing


def cuda_ms(fn, iters, warm):
    for _ in range(warm):
        fn()
    torch.cuda.synchronize()
    out = []
    for _ in range(iters):
        s, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        s.record()
        fn()
        e.record()
        torch.cuda.synchronize()
        out.append(s.elapsed_time(e))
    return statistics.median(out)


def cpu_description():
    """The CPU, its SIMD flags that matter here, the vtower kernel cap and torch's threads."""
    from machine_info import describe
    return f"{describe()}, torch threads {torch.get_num_threads()}"


def rel_l2(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.astype(np.float64), b.astype(np.float64)
    return float(np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-30))


def to_device(kw, device, dtype):
    return {k: (v.to(device, dtype) if v.is_floating_point() else v.to(device)) for k, v in kw.items()}


def free_images(ours, imgs):
    for i in imgs:
        ours.vt.lib.vt_image_free(i)


def timed_first(fn, iters, warm):
    """CPU: runs fn warm + iters times (wall clock); returns (the first call's result, median
    ms of the last iters calls). The first call is the first warm-up, or with warm == 0 one of
    the timed calls, so that a slow full-depth case costs no extra call per side."""
    t = time.perf_counter()
    first = fn()
    times = [] if warm else [(time.perf_counter() - t) * 1e3]
    for _ in range(max(warm - 1, 0)):
        fn()
    while len(times) < max(iters, 1):
        t = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t) * 1e3)
    return first, statistics.median(times)


def run_case(args, vt, name, side, build, rows):
    from PIL import Image
    on_gpu = args.device == "cuda"
    dtypes = ["bf16"] if on_gpu else args.dtypes
    tdtype = torch.bfloat16 if on_gpu else torch.float32
    vt_device = vc.VT_DEVICE_CUDA if on_gpu else vc.VT_DEVICE_CPU
    timer = cuda_ms
    spec = build(side)
    t0 = time.perf_counter()
    torch.manual_seed(0)
    with torch.device(args.device):
        hf = spec["cls"]._from_config(spec["cfg"], attn_implementation="sdpa", dtype=tdtype)
    randomize(hf, 0)
    hf.eval()
    proc = spec["proc"]
    rgb = (np.random.default_rng(0).random((side, side, 3)) * 255).astype("uint8")
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="PNG")
    png = buf.getvalue()
    bf = proc(images=[Image.open(io.BytesIO(png))], return_tensors="pt")
    models = {}
    # On the CPU, every dtype's rel L2 is against HF f32 (computed once per batch size).
    f32_ref = {}
    # vtower's own f32 time per batch size (the bf16 rows' second ratio).
    vt_f32_ms = {}
    try:
        with tempfile.TemporaryDirectory(prefix="vtower-bench-") as tmp:
            dropped = save_checkpoint(hf, proc, spec["keep"], Path(tmp))
            n_bytes = sum(f.stat().st_size for f in Path(tmp).glob("*.safetensors"))
            for dt in dtypes:
                models[dt] = vt.load(tmp, vt_device, vc.VT_DTYPE_BF16 if dt == "bf16" else vc.VT_DTYPE_F32)
        print(f"[{name}] image {side}x{side}, built + saved + loaded in {time.perf_counter() - t0:.1f} s "
              f"({n_bytes / 2**20:.0f} MiB of vision/projector tensors, {len(dropped)} LM tensors dropped)",
              flush=True)
        for dt in dtypes:
            ours = models[dt]
            # --no-hf-bf16: the bf16 rows time vtower only (on a CPU without bf16 instructions
            # PyTorch's bf16 runs several times slower than its f32).
            hf_here = on_gpu or dt == "f32" or not args.no_hf_bf16
            if not on_gpu and dt == "bf16" and hf_here:
                hf = hf.to(torch.bfloat16)
            hdtype = torch.bfloat16 if (on_gpu or dt == "bf16") else torch.float32
            # CPU f32 must match HF f32 closely (the checkpoint-building smoke test); bf16 is
            # held to the 1e-2 against HF f32; on the GPU rel L2 is information only.
            tol = None if on_gpu else (1e-4 if dt == "f32" else 1e-2)
            for batch in args.batches:
                row = {"case": name, "dtype": dt, "batch": batch, "image": side}
                imgs = []
                try:
                    kw = to_device(spec["inputs"](bf, batch), args.device, hdtype)
                    imgs = [ours.preprocess(png) for _ in range(batch)]
                    if on_gpu:
                        # HF timed with CUDA events, vtower until the GPU has finished, with
                        # the embeddings left on the GPU as HF leaves them.
                        with torch.inference_mode():
                            ref = [o.float().cpu().numpy() for o in spec["call"](hf, **kw)]
                            hf_ms = timer(lambda: spec["call"](hf, **kw), args.iters, args.warm)
                        got = ours.forward(imgs)
                        vt_ms = median_wall_ms(
                            lambda: ours.vt.lib.vt_embeddings_free(ours.forward_raw(imgs)),
                            args.iters, args.warm)
                    elif hf_here:
                        with torch.inference_mode():
                            ref, hf_ms = timed_first(
                                lambda: [o.float().numpy() for o in spec["call"](hf, **kw)],
                                args.iters, args.warm)
                        got, vt_ms = timed_first(lambda: ours.forward(imgs), args.iters,
                                                 args.warm)
                    else:
                        ref, hf_ms = f32_ref[batch], None
                        got, vt_ms = timed_first(lambda: ours.forward(imgs), args.iters,
                                                 args.warm)
                    if dt == "f32" and not on_gpu:
                        vt_f32_ms[batch] = vt_ms
                    if dt == "f32" or on_gpu:
                        f32_ref[batch] = ref
                    base = f32_ref.get(batch)
                    hf_tok = [r.shape[0] for r in ref]
                    vt_tok = [g.shape[0] for g in got]
                    row["tokens_per_image"] = hf_tok[0]
                    if hf_tok != vt_tok or len(ref) != batch:
                        row["warn"] = f"token counts differ: HF {hf_tok} vtower {vt_tok}"
                    else:
                        row["rel_l2"] = max(rel_l2(g, r) for g, r in zip(got, base or ref))
                        if base is not None and dt == "bf16" and not on_gpu and hf_here:
                            row["hf_rel_l2"] = max(rel_l2(h, r) for h, r in zip(ref, base))
                        if tol is not None and row["rel_l2"] > tol:
                            row["warn"] = f"MISMATCH: rel L2 {row['rel_l2']:.3g} > {tol:g}"
                    del ref, got
                    flops = spec["flops"] * batch
                    row.update({"vtower_ms_per_image": round(vt_ms / batch, 3),
                                "gflop_per_image": round(spec["flops"] / 1e9, 1),
                                "vtower_tflops": round(flops / vt_ms / 1e9, 3)})
                    if hf_ms is not None:
                        row.update({"hf_ms_per_image": round(hf_ms / batch, 3),
                                    "ratio_vtower_over_hf": round(vt_ms / hf_ms, 3),
                                    "hf_tflops": round(flops / hf_ms / 1e9, 3)})
                    if dt == "bf16" and batch in vt_f32_ms:
                        row["ratio_vtower_bf16_over_f32"] = round(vt_ms / vt_f32_ms[batch], 3)
                except Exception as e:  # one batch size failing must not hide the others
                    traceback.print_exc()
                    row["error"] = f"{type(e).__name__}: {e}"[:300]
                finally:
                    free_images(ours, imgs)
                    kw = None
                    if on_gpu:
                        torch.cuda.empty_cache()
                rows.append(row)
                print(json.dumps(row), flush=True)
    finally:
        for ours in models.values():
            ours.close()
        del hf
        gc.collect()
        if on_gpu:
            torch.cuda.empty_cache()


def print_table(rows, gflops=False):
    unit, k = ("GFLOP/s", 1000.0) if gflops else ("TFLOP/s", 1.0)
    print(f"\ncase                 dtype batch  image  tok/img  HF ms/img  vt ms/img  vt/HF  HF {unit}  vt {unit}  rel L2")
    for r in rows:
        head = f"{r['case']:20s} {r.get('dtype', '-'):5s} {r['batch']:5d} {r.get('image', 0):6d}"
        if "error" in r:
            print(f"{head}  ERROR {r['error'][:100]}")
            continue
        rl = r.get("rel_l2")
        hf = "hf_ms_per_image" in r
        print(f"{head} {r.get('tokens_per_image', 0):8d}"
              f" {r['hf_ms_per_image'] if hf else float('nan'):10.2f} {r['vtower_ms_per_image']:10.2f}"
              f" {r['ratio_vtower_over_hf'] if hf else float('nan'):6.2f}"
              f" {r['hf_tflops'] * k if hf else float('nan'):11.2f} {r['vtower_tflops'] * k:11.2f}"
              f"  {'-' if rl is None else f'{rl:.2e}'}"
              + (f" (HF bf16 {r['hf_rel_l2']:.2e})" if "hf_rel_l2" in r else "")
              + (f"  vt bf16/f32 {r['ratio_vtower_bf16_over_f32']:.2f}"
                 if "ratio_vtower_bf16_over_f32" in r else "")
              + (f"  WARN {r['warn']}" if "warn" in r else ""))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--lib", type=Path, required=True)
    ap.add_argument("--iters", type=int, default=10)
    ap.add_argument("--warm", type=int, default=3)
    ap.add_argument("--batches", default="1,8", help="comma-separated batch sizes (default 1,8)")
    ap.add_argument("--only", help="run the cases whose name contains this")
    ap.add_argument("--json", type=Path)
    ap.add_argument("--device", choices=["cuda", "cpu"], default="cuda",
                    help="cpu: smoke-test the script without a GPU (f32, wall-clock timing, rel L2 <= 1e-4)")
    ap.add_argument("--dtypes", default="f32",
                    help="cpu only: comma-separated f32,bf16 (bf16: HF model.to(bfloat16) on "
                         "oneDNN, vtower VT_DTYPE_BF16 on its CPU kernels; rel L2 against HF f32)")
    ap.add_argument("--no-hf-bf16", action="store_true",
                    help="cpu only: skip PyTorch's bf16 run (bf16 rows then time vtower alone, "
                         "against HF f32 for rel L2 and vtower f32 for the bf16/f32 ratio)")
    ap.add_argument("--layers", type=int, default=0, help="override the depth (smoke tests)")
    ap.add_argument("--small", action="store_true",
                    help="smaller images (smoke tests; hidden sizes stay real): 384->224, 896->448, "
                         "448->224, 1344->448, 512->256, 1024->512")
    args = ap.parse_args()
    args.batches = [int(b) for b in args.batches.split(",") if b.strip()]
    args.dtypes = [d.strip() for d in args.dtypes.split(",") if d.strip()]
    if any(d not in ("f32", "bf16") for d in args.dtypes):
        ap.error("--dtypes takes f32 and/or bf16")
    if args.no_hf_bf16 and args.dtypes != ["f32", "bf16"] and args.dtypes != ["bf16", "f32"]:
        ap.error("--no-hf-bf16 needs --dtypes f32,bf16 (HF f32 is the bf16 rows' reference)")
    if "bf16" in args.dtypes and "f32" in args.dtypes and args.dtypes[0] != "f32":
        args.dtypes.sort(key=lambda d: d != "f32")  # f32 first: its output is the reference
    global LAYERS
    LAYERS = args.layers
    import transformers
    transformers.utils.logging.disable_progress_bar()
    vt = vc.Lib(args.lib)
    print(vt.version(), "| torch", torch.__version__, "| transformers", transformers.__version__, "|",
          torch.cuda.get_device_name() if args.device == "cuda" else cpu_description(), flush=True)
    rows = []
    for name, real, small, build in CASES:
        if args.only and args.only not in name:
            continue
        side = small if args.small else real
        try:
            run_case(args, vt, name, side, build, rows)
        except Exception as e:  # one family failing must not hide the others
            traceback.print_exc()
            for b in args.batches:
                row = {"case": name, "batch": b, "image": side, "error": f"{type(e).__name__}: {e}"[:300]}
                rows.append(row)
                print(json.dumps(row), flush=True)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))
    print_table(rows, gflops=args.device == "cpu")
    print("FLOPs: tower only, as gpu_anchor.py (projectors and the Qwen merger not counted); "
          "pixtral rows time tower + LLaVA projector on both sides.")
    bad = [r for r in rows if "error" in r or "warn" in r]
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
