#!/usr/bin/env python3
"""Writes the seed corpora (fuzz/seeds/<target>/) and the reproducers built from
/work/shared/repro-style raw files (fuzz/regressions/<target>/), in the input formats of
fuzz/src/harness.rs. Standard library only. Run from the repository root:

    python3 fuzz/tools/make_inputs.py [--repro DIR]

Seeds are a starting point; the committed corpora (fuzz/corpus/<target>/) are what
`cargo fuzz cmin` kept of seeds + fuzzing."""
import argparse, os, re, struct, zlib

ROOT = os.getcwd()


def harness_fixtures():
    """`FIXTURES` of fuzz/src/harness.rs, in order (the inputs pick fixtures by index)."""
    src = open(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "src", "harness.rs")).read()
    body = re.search(r"pub const FIXTURES: &\[&str\] = &\[(.*?)\];", src, re.S).group(1)
    return [m.group(1) for line in body.splitlines()
            if not line.strip().startswith("//") for m in re.finditer(r'"([^"]+)"', line)]


FIXTURES = harness_fixtures()
FIX = {n: i for i, n in enumerate(FIXTURES)}
SEP = b"\0--\0"


def write(path, data):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(data)


def png(w, h, color_type=2, bit_depth=8, seed=0, interlace=0):
    chans = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}[color_type]
    bpp = max(1, chans * bit_depth // 8)
    row_bytes = (w * chans * bit_depth + 7) // 8
    raw = b"".join(b"\0" + bytes((seed + x * 7 + y * 13) & 0xFF for x in range(row_bytes)) for y in range(h))
    def chunk(t, d):
        return struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d) & 0xFFFFFFFF)
    out = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, bit_depth, color_type, 0, 0, interlace))
    if color_type == 3:
        out += chunk(b"PLTE", bytes(range(48)))
    return out + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")


def bmp(w, h):
    row = (w * 3 + 3) & ~3
    pix = b"".join(bytes((x * 5 + y * 3) & 0xFF for x in range(w * 3)) + b"\0" * (row - w * 3) for y in range(h))
    hdr = struct.pack("<2sIHHI", b"BM", 54 + len(pix), 0, 0, 54)
    dib = struct.pack("<IiiHHIIiiII", 40, w, h, 1, 24, 0, len(pix), 2835, 2835, 0, 0)
    return hdr + dib + pix


# read_size_knobs of harness.rs: bit -> knob, each written as a u32 (mode byte 2).
KNOB_BITS = ["max_soft_tokens", "min_pixels", "max_pixels", "longest_edge", "max_tokens", "min_patches",
             "max_patches"]


def size_knobs(knobs):
    bits, tail = 0, b""
    for bit, name in enumerate(KNOB_BITS):
        if name in knobs:
            bits |= 1 << bit
            tail += bytes([2]) + struct.pack("<I", knobs[name])
    switches = 0
    for k, name in ((0, "crop_to_patches"), (2, "do_image_splitting")):
        if name in knobs:
            switches |= (1 << k) | ((2 << k) if knobs[name] else 0)
    if switches:
        bits |= 128
        tail += bytes([switches])
    return bytes([bits]) + tail


def pp_opts(pan=None, min_crop=None, max_crops=None, ratio=None, knobs=None):
    flags, tail = 0, b""
    if pan is not None:
        flags |= 1 | (2 if pan else 0)
    if min_crop is not None:
        flags |= 4; tail += struct.pack("<I", min_crop)
    if max_crops is not None:
        flags |= 8; tail += struct.pack("<I", max_crops)
    if ratio is not None:
        flags |= 16; tail += struct.pack("<d", ratio)
    if knobs:
        flags |= 32; tail += size_knobs(knobs)
    return bytes([flags]) + tail


def image_input(fixture, img, **opts):
    return bytes([FIX[fixture]]) + pp_opts(**opts) + img


def read(p):
    with open(p, "rb") as f:
        return f.read()


def fixture_files(name):
    d = os.path.join(ROOT, "tests/fixtures", name)
    files = sorted(os.listdir(d))
    def get(n):
        p = os.path.join(d, n)
        return read(p) if os.path.exists(p) else b""
    shards = [f for f in files if f.endswith(".safetensors") and not f.startswith("expected")]
    return d, files, get, shards


def model_input(fixture, mask, shard=0, parts=()):
    return bytes([FIX[fixture], mask, shard]) + SEP.join(parts)


def seeds(out):
    img_dir = os.path.join(ROOT, "tests/fixtures/images")
    n = 0
    for i, f in enumerate(sorted(os.listdir(img_dir))):
        if f in ("decoded.safetensors", "manifest.json"):
            continue
        write(f"{out}/image/img_{f}", bytes([i % len(FIXTURES), 0]) + read(os.path.join(img_dir, f)))
        n += 1
    for sub in ("png_chunks", "hostile"):
        sd = os.path.join(ROOT, "tests/fixtures", sub)
        if os.path.isdir(sd):
            for i, f in enumerate(sorted(os.listdir(sd))):
                if f.endswith((".json", ".md", ".safetensors")) or os.path.getsize(os.path.join(sd, f)) > 60000:
                    continue
                write(f"{out}/image/{sub}_{f}", bytes([i % len(FIXTURES), 0]) + read(os.path.join(sd, f)))
    for name in FIXTURES:
        d, files, get, _ = fixture_files(name)
        for f in files:
            if f.endswith(".png"):
                write(f"{out}/image/fx_{name}_{f}", image_input(name, read(os.path.join(d, f))))
    small = {
        "1x1": png(1, 1), "2x90": png(2, 90), "90x2": png(90, 2), "17x5_gray": png(17, 5, 0),
        "9x9_rgba": png(9, 9, 6), "8x8_pal": png(8, 8, 3), "7x7_gray16": png(7, 7, 0, 16),
        "6x6_ga": png(6, 6, 4), "12x12_interlaced": png(12, 12, 2, 8, 3, 1), "5x3_bmp": bmp(5, 3),
        "64x64": png(64, 64), "33x47": png(33, 47),
    }
    for k, (tag, img) in enumerate(small.items()):
        write(f"{out}/image/gen_{tag}", image_input(FIXTURES[k % len(FIXTURES)], img))
        write(f"{out}/image/gen_{tag}_qwen", image_input("qwen2_vl_f32", img))
    for fx in ("gemma3_f32", "gemma3_hub_pas_bf16"):
        write(f"{out}/image/pas_{fx}_90x2", image_input(fx, png(90, 6), pan=True, min_crop=2, max_crops=4, ratio=1.2))
        write(f"{out}/image/pas_{fx}_off", image_input(fx, png(30, 100), pan=False))
    write(f"{out}/image/pas_siglip_refused", image_input("siglip_f32", png(30, 10), pan=True))
    # Per-call size knobs, on the families that take them (and one that refuses them).
    for fx, knobs in [
        ("qwen2_vl_f32", {"min_pixels": 3136, "max_pixels": 12544}), ("qwen3_vl_f32", {"max_tokens": 4}),
        ("pixtral_llava_f32", {"longest_edge": 40, "max_tokens": 6}), ("gemma4_f32", {"max_soft_tokens": 70}),
        ("internvl_f32", {"crop_to_patches": True, "min_patches": 1, "max_patches": 3}),
        ("aya_vision_f32", {"crop_to_patches": False}),
        ("idefics3_f32", {"do_image_splitting": True, "longest_edge": 60}),
        ("llava_onevision_hub_bf16", {"do_image_splitting": False}), ("siglip2_f32", {"max_tokens": 9}),
        ("kimi_k25_f32", {"max_patches": 64}), ("lfm2_vl_f32", {"min_patches": 2, "max_patches": 4}),
        ("glm5_next_f32", {"max_tokens": 8}), ("siglip_f32", {"min_pixels": 100}),
    ]:
        write(f"{out}/image/knobs_{fx}", image_input(fx, png(70, 30), knobs=knobs))

    # model_folder: the real files as parts, all replaced (= unchanged), and one at a time.
    for name in FIXTURES:
        d, files, get, shards = fixture_files(name)
        for s, shard in enumerate(shards[:2]):
            raw = get(shard)
            hlen = struct.unpack("<Q", raw[:8])[0]
            header = raw[8:8 + hlen]
            pre = "preprocessor_config.json" if "preprocessor_config.json" in files else "processor_config.json"
            pbit = 0 if pre == "preprocessor_config.json" else 32
            parts = [get("config.json"), get(pre), header, get("model.safetensors.index.json"), get("tokenizer.json")]
            mask = 1 | 2 | 4 | pbit | (8 if parts[3] else 0) | (16 if parts[4] else 0)
            write(f"{out}/model_folder/{name}_all_{s}", model_input(name, mask, s, parts))
            if s == 0:
                for bit in range(5):
                    if parts[bit]:
                        keep = [p if j == bit else b"" for j, p in enumerate(parts)]
                        write(f"{out}/model_folder/{name}_part{bit}", model_input(name, (1 << bit) | pbit, 0, keep))
                write(f"{out}/model_folder/{name}_rawlen", model_input(name, 4 | 64, 0, [b"", b"", raw[:8 + hlen]]))

    # capi: short call sequences.
    sel = lambda i: bytes([0, i])
    pre = lambda img: bytes([2, 0]) + struct.pack("<H", len(img)) + img
    rgb = lambda w, h: bytes([3, 0, 0, w, h]) + bytes(range(64))
    fwd = lambda mask: bytes([5, mask])
    tiny = png(12, 10)
    for i, name in enumerate(FIXTURES):
        seq = sel(i) + pre(tiny) + rgb(20, 14) + bytes([4, 0]) + struct.pack("<Q", 5) + b"\x03" + fwd(3) + bytes([6, 0, 0, 1, 128]) + bytes([6, 0, 1, 2, 100]) + bytes([8]) + struct.pack("<I", i % 6) + bytes([7, 0, 7, 1])
        write(f"{out}/capi/seq_{name}", seq)
    write(f"{out}/capi/load_local", bytes([1, 0, 0, 5, 2]) + pre(tiny) + fwd(1) + bytes([6, 0, 0, 1, 128, 7, 2, 7, 2, 5, 1]))
    write(f"{out}/capi/load_bad", bytes([1, 3, 0x85, 0, 0, 0, 0, 4, 0, 1, 1, 0, 1, 1, 1, 0, 1, 1, 2]))
    write(f"{out}/capi/nulls", b"".join(bytes([9, k]) for k in range(10)) + bytes([10, 255, 255, 255, 127]))
    write(f"{out}/capi/foreign", sel(0) + pre(tiny) + sel(3) + pre(tiny) + fwd(3) + fwd(2))
    write(f"{out}/capi/pas", sel(1) + bytes([2, 0x1f, 2]) + struct.pack("<IId", 2, 3, 1.1) + struct.pack("<H", len(png(60, 10))) + png(60, 10) + bytes([4, 0]) + struct.pack("<Q", 0) + b"\x00" + fwd(1))
    write(f"{out}/capi/bad_stride", sel(2) + bytes([3, 0, 0x40 | 4, 5, 5]) + bytes([3, 0, 0, 0, 5]))
    # vt_preprocess_video (opcode 127) of 8 frames of 28x28: defaults, a source rate of 24,
    # sampling 1 fps of it, num_frames 4; then the image queries and a forward.
    video_params = [b"", bytes([2, 2, 2]), bytes([2 | 4, 2, 2, 1, 4]), bytes([8, 0, 4])]
    for name in ("qwen2_vl_f32", "qwen2_5_vl_bf16", "qwen3_vl_f32", "qwen3_5_f16", "gemma4_f32", "kimi_k25_f32",
                 "siglip_f32"):
        for k, params in enumerate(video_params):
            mode = 4 if params else 0
            seq = sel(FIX[name]) + bytes([127, mode, 8, 28, 28]) + params + bytes(range(64))
            seq += bytes([4, 0]) + struct.pack("<Q", 0) + b"\x03" + fwd(1)
            write(f"{out}/capi/video_{name}_{k}", seq)
    return n


def regressions(out, repro):
    R = lambda f: read(os.path.join(repro, f))
    img = f"{out}/image"
    write(f"{img}/strip_1000000x1_llava_clip_pad_hub", image_input("llava_clip_pad_hub", R("strip_1000000x1.png")))
    write(f"{img}/strip_1000000x1_llava_clip_f32", image_input("llava_clip_f32", R("strip_1000000x1.png")))
    write(f"{img}/strip_20000x1_llava_clip_pad_hub", image_input("llava_clip_pad_hub", R("strip_20000x1.png")))
    write(f"{img}/strip_20000x1_gemma3_pan_and_scan", image_input("gemma3_f32", R("strip_20000x1.png"), pan=True, min_crop=1, max_crops=0xFFFFFFFF, ratio=1e-9))
    write(f"{img}/gif_32859x24_llava_clip_pad_hub", image_input("llava_clip_pad_hub", R("gif_32859x24_pad_3GB.gif")))
    write(f"{img}/gif_65328x255_llava_clip_pad_hub", image_input("llava_clip_pad_hub", R("gif_65328x255_pad_12GB.gif")))
    write(f"{img}/png_80000000x1_siglip_f32", image_input("siglip_f32", R("png_80000000x1_resize_1500MB.png")))
    write(f"{img}/parity_png_bad_trns_crc_siglip_f32", image_input("siglip_f32", R("parity_png_bad_trns_crc_pillow_rejects.png")))
    write(f"{img}/parity_webp_siglip_f32", image_input("siglip_f32", R("parity_webp_pillow_rejects.webp")))
    write(f"{out}/model_folder/qwen2_vl_f32_min_pixels_1e8",
          model_input("qwen2_vl_f32", 2, 0, [b"", R("qwen2_vl_preprocessor_config_min_pixels_1e8.json")]))
    # pad_abort.c: select llava_clip_pad_hub, vt_preprocess_rgb8 1000000x1, stride 3000000.
    write(f"{out}/capi/pad_abort_rgb8_1000000x1",
          bytes([0, FIX["llava_clip_pad_hub"], 3, 0, 1]) + struct.pack("<II", 1000000, 1) + bytes([200]) * 64)


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--repro", default=None, help="folder of raw reproducers (writes fuzz/regressions)")
    ap.add_argument("--seeds", default="fuzz/seeds")
    a = ap.parse_args()
    seeds(a.seeds)
    if a.repro:
        regressions("fuzz/regressions", a.repro)
