#!/usr/bin/env python3
"""Load benchmark: how long `vt_load` takes against reading the same vision tensors' bytes,
warm (page cache) and cold (the files' pages dropped with posix_fadvise), and peak RSS against
the bytes of the weights the model keeps.

    .venv/bin/python scripts/bench_load.py [--work DIR] [--threads N] [--cases a,b]
                                          [--repeat K] [--libs a.so,b.so]

Builds real-shape random-weight checkpoints with transformers once (into --work, default
target/bench-load), then runs each measurement in a fresh child process so that peak RSS is the
load's own. "read" = reading the bytes of every vision tensor (each into a freshly allocated
buffer: what any loader must at least do; the language model's tensors in the same files are
not read, as vtower does not read them); "load" = `vt_load` through the C API.
Needs a release build (`cargo build --release`) and the fixture venv for building checkpoints.
"""
import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))

MIB = 1 << 20


def build(case: str, out: Path):
    """A real-shape checkpoint for `case` in `out` (skipped when present)."""
    if (out / "config.json").exists():
        return
    import torch
    torch.manual_seed(0)
    if case.startswith("siglip-so400m"):
        from transformers import SiglipVisionConfig, SiglipVisionModel
        cfg = SiglipVisionConfig(hidden_size=1152, intermediate_size=4304, num_hidden_layers=27,
                                 num_attention_heads=16, patch_size=14, image_size=384)
        model = SiglipVisionModel(cfg).eval()
    elif case.startswith("qwen25vl-7b"):
        from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration
        # Qwen2.5-VL-7B's vision tower; a 2-layer language model (its tensors are skipped).
        cfg = Qwen2_5_VLConfig(
            vision_config=dict(depth=32, hidden_size=1280, intermediate_size=3420, num_heads=16,
                               out_hidden_size=3584, fullatt_block_indexes=[7, 15, 23, 31]),
            text_config=dict(hidden_size=3584, intermediate_size=256, num_hidden_layers=2,
                             num_attention_heads=28, num_key_value_heads=4, vocab_size=1024))
        model = Qwen2_5_VLForConditionalGeneration(cfg).eval()
    elif case.startswith("pixtral-12b"):
        from transformers import LlavaConfig, LlavaForConditionalGeneration, PixtralVisionConfig
        cfg = LlavaConfig(
            vision_config=PixtralVisionConfig(hidden_size=1024, intermediate_size=4096,
                                              num_hidden_layers=24, num_attention_heads=16,
                                              image_size=1024, patch_size=16),
            text_config=dict(model_type="mistral", hidden_size=5120, intermediate_size=256,
                             num_hidden_layers=2, num_attention_heads=32, num_key_value_heads=8,
                             head_dim=128, vocab_size=1024),
            projector_hidden_act="gelu", vision_feature_layer=-1, image_token_index=10,
            vision_feature_select_strategy="full")
        model = LlavaForConditionalGeneration(cfg).eval()
    else:
        raise SystemExit(f"unknown case {case}")
    if case.endswith("-bf16"):
        model = model.to(torch.bfloat16)
    shard = "300MB" if "sharded" in case else "50GB"
    model.save_pretrained(out, max_shard_size=shard)


CASES = {
    "siglip-so400m-f32": "f32",
    # The same tower saved in bf16: its peak RSS against the f32 row's (bf16 weights are kept
    # once, packed for the CPU bf16 kernels; no f32 copy).
    "siglip-so400m-bf16": "bf16",
    # The f32 checkpoint loaded as bf16 (VT_DTYPE_BF16): converted while loading, against the
    # f32 load of the same files.
    "siglip-so400m-f32-as-bf16": "bf16",
    "siglip-so400m-sharded-bf16": "bf16",
    "qwen25vl-7b-sharded-bf16": "bf16",
    "qwen25vl-7b-f32": "f32",
    "pixtral-12b-f32": "f32",
    "pixtral-12b-sharded-bf16": "bf16",
}


def is_vision(name: str) -> bool:
    """Whether a tensor belongs to the image path (not the language model)."""
    return not any(p in name for p in ("language_model", "lm_head", "model.norm", "embed_tokens"))


def vision_ranges(f: Path):
    """(offset, length) in file `f` of each vision tensor's data (the safetensors header read
    with the standard library, so that the timed read loads nothing else)."""
    with open(f, "rb") as fh:
        n = int.from_bytes(fh.read(8), "little")
        header = json.loads(fh.read(n))
    base = 8 + n
    return [(base + v["data_offsets"][0], v["data_offsets"][1] - v["data_offsets"][0])
            for k, v in header.items() if k != "__metadata__" and is_vision(k)]


# Cases that load another case's checkpoint.
SAME_FILES = {"siglip-so400m-f32-as-bf16": "siglip-so400m-f32"}


def vision_files(d: Path):
    idx = d / "model.safetensors.index.json"
    if idx.exists():
        weight_map = json.loads(idx.read_text())["weight_map"]
        return sorted({d / f for k, f in weight_map.items() if is_vision(k)})
    return [d / "model.safetensors"]


def drop(files):
    for f in files:
        fd = os.open(f, os.O_RDONLY)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        os.close(fd)


def hwm_bytes() -> int:
    """This process's peak resident set (VmHWM). Not `ru_maxrss`: Linux keeps that across
    exec, so a child started by a parent that built multi-GB checkpoints with torch would
    report the parent's peak."""
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmHWM in /proc/self/status")


def child(mode: str, d: Path, dtype: str, threads: int, cold: bool, lib: str):
    files = vision_files(d)
    if cold:
        drop(files)
    base = hwm_bytes()
    t = time.perf_counter()
    if mode == "read":
        keep = []
        for f in files:
            with open(f, "rb") as fh:
                for off, length in vision_ranges(f):
                    fh.seek(off)
                    buf = fh.read(length)  # a fresh, unzeroed buffer (bytearray(n) zero-fills)
                    if len(buf) != length:
                        raise SystemExit(f"{f}: short read")
                    keep.append(buf)
        n = sum(len(b) for b in keep)
    else:
        from vtower_ctypes import Lib, VT_DTYPE_BF16, VT_DTYPE_F32
        model = Lib(lib).load(d, dtype={"f32": VT_DTYPE_F32, "bf16": VT_DTYPE_BF16}[dtype],
                         n_threads=threads)
        n = 0
    dt = time.perf_counter() - t
    peak = hwm_bytes()
    print(json.dumps({"seconds": dt, "bytes": n, "peak_rss": peak, "base_rss": base}))


def run_child(*args):
    out = subprocess.run([sys.executable, __file__, "--child", *map(str, args)], check=True,
                         capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def kept_bytes(d: Path, dtype: str) -> int:
    """Bytes of the tensors vtower keeps: every vision-path tensor in the compute dtype."""
    from safetensors import safe_open
    size = {"f32": 4, "bf16": 2}[dtype]
    total = 0
    for f in vision_files(d):
        with safe_open(f, "np") as st:
            for k in st.keys():
                if not is_vision(k):
                    continue
                shape = st.get_slice(k).get_shape()
                n = 1
                for s in shape:
                    n *= s
                total += n * size
    return total


def main():
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        mode, d, dtype, threads, cold, lib = sys.argv[2:8]
        child(mode, Path(d), dtype, int(threads), cold == "1", lib)
        return
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--work", type=Path, default=ROOT / "target/bench-load")
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--cases", default=",".join(CASES))
    ap.add_argument("--repeat", type=int, default=3, help="runs per row (median)")
    ap.add_argument("--libs", default=str(ROOT / "target/release/libvtower.so"),
                    help="comma-separated libvtower builds to compare: each round reads the bytes, then "
                         "loads with each build in turn (one row per build)")
    args = ap.parse_args()
    cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if "model name" in l),
               platform.processor())
    print(f"CPU: {cpu}, {os.cpu_count()} cores, {args.threads} threads")
    print("| case | dtype | cache | read s | vt_load s | load/read | peak RSS MiB | kept MiB | RSS/kept |")
    print("|---|---|---|---|---|---|---|---|---|")
    for case in args.cases.split(","):
        d = args.work / SAME_FILES.get(case, case)
        build(SAME_FILES.get(case, case), d)
        dtype = CASES[case]
        kept = kept_bytes(d, dtype)
        libs = args.libs.split(",")
        for cold in (False, True):
            reads, loads, peaks = [], {l: [] for l in libs}, {l: [] for l in libs}
            for _ in range(args.repeat):
                for lib in libs:
                    if not cold:  # warm the page cache
                        run_child("read", d, dtype, args.threads, 0, lib)
                    if lib == libs[0]:
                        reads.append(run_child("read", d, dtype, args.threads, int(cold), lib)["seconds"])
                    l = run_child("load", d, dtype, args.threads, int(cold), lib)
                    loads[lib].append(l["seconds"])
                    peaks[lib].append(l["peak_rss"] - l["base_rss"])
            med = lambda v: sorted(v)[len(v) // 2]
            r = med(reads)
            for lib in libs:
                l, p = med(loads[lib]), max(peaks[lib])
                name = case if len(libs) == 1 else f"{case} ({Path(lib).name})"
                print(f"| {name} | {dtype} | {'cold' if cold else 'warm'} | {r:.2f} | {l:.2f} | "
                      f"{l / r:.2f} | {p / MIB:.0f} | {kept / MIB:.0f} | {p / kept:.2f} |", flush=True)


if __name__ == "__main__":
    main()
