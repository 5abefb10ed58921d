#!/usr/bin/env python3
"""Generate the image-decoding test corpus in tests/fixtures/images/.

Run with the project venv (Pillow 13 + numpy + safetensors):

    .venv/bin/python scripts/gen_images.py

Everything is deterministic (fixed seeds, fixed encoder settings). For every valid
image the expected decode is Pillow's `Image.open(BytesIO(data))` followed by
transformers' `convert_to_rgb` (composite alpha / tRNS transparency onto white, else
`.convert("RGB")`), stored as uint8 [H, W, 3] in `decoded.safetensors` under the file
name. `manifest.json` lists each file with its format and size, and for invalid inputs
the status the Rust decoder must return.

File names are stable: other fixtures (model tests) refer to them.
"""

from __future__ import annotations

import io
import json
import os
import struct
import sys
import zlib
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "tests" / "fixtures" / "images"


# ----------------------------------------------------------------------------------------
# Natural-looking content: smooth gradients + mild noise + sharp edges.
# ----------------------------------------------------------------------------------------


def scene(w: int, h: int, seed: int, channels: int = 3) -> np.ndarray:
    """A float image in [0, 255], shape (h, w, channels)."""
    rng = np.random.RandomState(seed)
    y, x = np.mgrid[0:h, 0:w].astype(np.float64)
    u, v = x / max(w - 1, 1), y / max(h - 1, 1)
    out = np.empty((h, w, channels))
    for c in range(channels):
        fx, fy, ph = rng.uniform(0.5, 2.5), rng.uniform(0.5, 2.5), rng.uniform(0, 6.28)
        base = 128 + 70 * np.sin(2 * np.pi * (fx * u + 0.3 * c) + ph) * np.cos(
            2 * np.pi * fy * v - ph
        )
        base += 40 * (u - v) * (1 if c % 2 else -1)
        out[..., c] = base
    # sharp edges: a disc and a rectangle with flat colours, a thin diagonal line
    cx, cy, r = rng.uniform(0.3, 0.7) * w, rng.uniform(0.3, 0.7) * h, 0.22 * min(w, h)
    disc = (x - cx) ** 2 + (y - cy) ** 2 < r * r
    out[disc] = rng.uniform(0, 255, size=channels)
    x0, y0 = int(0.1 * w), int(0.65 * h)
    out[y0 : y0 + max(2, h // 6), x0 : x0 + max(3, w // 3)] = rng.uniform(0, 255, size=channels)
    line = np.abs((x - 0.8 * y) - 0.5 * w) < 0.8
    out[line] = 250.0
    out += rng.normal(0, 4.0, size=out.shape)
    return np.clip(out, 0, 255)


def u8(a: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(a), 0, 255).astype(np.uint8)


def alpha_ramp(w: int, h: int, seed: int) -> np.ndarray:
    """Alpha plane with exact 0 and 255 regions and every value in between."""
    rng = np.random.RandomState(seed)
    y, x = np.mgrid[0:h, 0:w].astype(np.float64)
    a = (x / (w - 1)) * 300 - 20 + rng.normal(0, 3, size=(h, w))
    a[: h // 5, :] = 0  # fully transparent band
    a[-(h // 5) :, :] = 255  # fully opaque band
    return u8(a)


# ----------------------------------------------------------------------------------------
# Hand-written PNG (Pillow cannot write 16-bit RGB/RGBA/LA).
# ----------------------------------------------------------------------------------------


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return (
        struct.pack(">I", len(data))
        + kind
        + data
        + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
    )


def raw_png(w: int, h: int, bit_depth: int, color_type: int, rows: bytes | None, idat=None) -> bytes:
    ihdr = struct.pack(">IIBBBBB", w, h, bit_depth, color_type, 0, 0, 0)
    if idat is None:
        idat = zlib.compress(rows, 9)
    return b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", idat) + png_chunk(b"IEND", b"")


def png16(arr: np.ndarray, color_type: int) -> bytes:
    """arr: uint16 (h, w, c) -> 16-bit PNG bytes (big-endian samples, filter 0)."""
    h, w = arr.shape[:2]
    be = arr.astype(">u2").reshape(h, -1).tobytes()
    stride = len(be) // h
    rows = b"".join(b"\x00" + be[i * stride : (i + 1) * stride] for i in range(h))
    return raw_png(w, h, 16, color_type, rows)


def png_adam7(arr: np.ndarray) -> bytes:
    """arr: uint8 (h, w, 3) -> Adam7-interlaced 8-bit RGB PNG (filter 1 = Sub on every row)."""
    h, w = arr.shape[:2]
    passes = [(0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2)]
    out = bytearray()
    for x0, y0, dx, dy in passes:
        sub = arr[y0::dy, x0::dx]
        if sub.size == 0:
            continue
        for row in sub:
            raw = row.reshape(-1).astype(np.int16)
            filt = raw.copy()
            filt[3:] = (raw[3:] - raw[:-3]) % 256
            out += b"\x01" + filt.astype(np.uint8).tobytes()
    ihdr = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 1)
    return b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", zlib.compress(bytes(out), 9)) + png_chunk(b"IEND", b"")


# ----------------------------------------------------------------------------------------
# Reference decode: exactly what transformers' PIL backend does.
# ----------------------------------------------------------------------------------------


def reference(data: bytes) -> np.ndarray:
    img = Image.open(io.BytesIO(data))
    has_alpha = "A" in img.getbands() or img.info.get("transparency") is not None
    if has_alpha:
        img = img.convert("RGBA")
        bg = Image.new("RGBA", img.size, (255, 255, 255, 255))
        rgb = Image.alpha_composite(bg, img).convert("RGB")
    else:
        rgb = img.convert("RGB")
    arr = np.array(rgb)
    assert arr.dtype == np.uint8 and arr.ndim == 3 and arr.shape[2] == 3, arr.shape
    return np.ascontiguousarray(arr)


def cross_check_transformers(name: str, data: bytes, expected: np.ndarray) -> None:
    """When transformers is importable, make sure our reference equals its convert_to_rgb."""
    try:
        from transformers.image_transforms import convert_to_rgb  # type: ignore
    except Exception:
        return
    got = convert_to_rgb(Image.open(io.BytesIO(data)), return_numpy=True)
    if not np.array_equal(np.asarray(got), expected):
        raise SystemExit(f"{name}: reference differs from transformers.convert_to_rgb")


def save(im: Image.Image, fmt: str, **kw) -> bytes:
    b = io.BytesIO()
    im.save(b, fmt, **kw)
    return b.getvalue()


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    valid: dict[str, bytes] = {}
    fmt_of: dict[str, str] = {}
    notes: dict[str, str] = {}

    def add(name: str, fmt: str, data: bytes, note: str) -> None:
        valid[name] = data
        fmt_of[name] = fmt
        notes[name] = note

    # ---------------- PNG ----------------
    add("rgb.png", "png", save(Image.fromarray(u8(scene(48, 48, 1))), "PNG"), "8-bit RGB")
    rgba = np.dstack([u8(scene(37, 61, 2)), alpha_ramp(37, 61, 3)])
    add("rgba.png", "png", save(Image.fromarray(rgba, "RGBA"), "PNG"), "8-bit RGBA, alpha 0..255")
    add("gray.png", "png", save(Image.fromarray(u8(scene(61, 37, 4, 1))[..., 0], "L"), "PNG"), "8-bit L")
    la = np.dstack([u8(scene(48, 48, 5, 1)), alpha_ramp(48, 48, 6)])
    add("gray_alpha.png", "png", save(Image.fromarray(la, "LA"), "PNG"), "8-bit LA")

    # palette with per-entry alpha (tRNS with several entries, incl. 0 and partial)
    pal_src = Image.fromarray(u8(scene(37, 61, 7)))
    pal = pal_src.quantize(colors=32, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)
    trns = bytes([0, 40, 128, 200] + [255] * 28)
    add("palette_trns.png", "png", save(pal, "PNG", transparency=trns), "P, tRNS with 4 non-opaque entries")
    add("palette.png", "png", save(pal, "PNG"), "P, no transparency")
    pal4 = pal_src.quantize(colors=16, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)
    add("palette4bit.png", "png", save(pal4, "PNG", bits=4), "P, 4-bit")
    g = u8(scene(48, 48, 8, 1))[..., 0]
    g[10:20, 10:20] = 77
    add("gray_trns.png", "png", save(Image.fromarray(g, "L"), "PNG", transparency=77), "L with tRNS (value 77)")
    rgbt = u8(scene(48, 48, 9))
    rgbt[5:25, 30:40] = (10, 200, 30)
    add("rgb_trns.png", "png", save(Image.fromarray(rgbt), "PNG", transparency=(10, 200, 30)), "RGB with tRNS")
    add("interlaced.png", "png", png_adam7(u8(scene(61, 37, 10))), "8-bit RGB, Adam7 interlaced")
    rng = np.random.RandomState(11)
    rgb16 = (scene(48, 48, 12) * 257 + rng.randint(0, 8, size=(48, 48, 3))).clip(0, 65535).astype(np.uint16)
    add("rgb16.png", "png", png16(rgb16, 2), "16-bit RGB (Pillow keeps the high byte)")
    rgba16 = np.dstack([rgb16[:37, :37], (alpha_ramp(37, 37, 13).astype(np.uint16) * 257 + 128)[..., None]])
    add("rgba16.png", "png", png16(rgba16, 6), "16-bit RGBA (Pillow keeps the high byte)")
    g16 = np.zeros((37, 61), np.uint16)
    ramp = scene(61, 37, 14, 1)[..., 0]
    g16[:, :] = (ramp * 2.0).astype(np.uint16)  # 0..510: half clips at 255
    g16[:8, :] = (ramp[:8, :] * 257).astype(np.uint16)  # a full-range band
    add("gray16.png", "png", png16(g16[..., None], 0), "16-bit L (Pillow I;16 -> RGB clips at 255)")
    la16 = np.dstack([(scene(32, 32, 15, 1)[..., 0] * 257).astype(np.uint16), alpha_ramp(32, 32, 16).astype(np.uint16) * 257])
    add("gray_alpha16.png", "png", png16(la16, 4), "16-bit LA")
    # 16-bit RGB with tRNS: Pillow compares the 8-bit (high byte) pixel with the tRNS
    # value masked to its low byte, so the region whose high bytes are (0xAA,0xBB,0xCC)
    # becomes transparent even though no 16-bit sample equals the tRNS colour.
    rgb16t = rgb16[:32, :32].copy()
    rgb16t[4:20, 16:30] = (0xAA11, 0xBB22, 0xCC33)
    rgb16t[22:30, 4:14] = (0x00AA, 0x00BB, 0x00CC)
    d = png16(rgb16t, 2)
    trns_chunk = png_chunk(b"tRNS", struct.pack(">HHH", 0x00AA, 0x00BB, 0x00CC))
    add("rgb16_trns.png", "png", d[:33] + trns_chunk + d[33:], "16-bit RGB + tRNS (Pillow low-byte quirk)")
    # 2-bit gray with tRNS = 1: Pillow compares the raw tRNS value with the *scaled*
    # 8-bit pixel (0, 85, 170, 255), so nothing becomes transparent.
    g2 = (scene(37, 61, 18, 1)[..., 0] // 64).astype(np.uint8)
    packed = np.zeros((61, 10), np.uint8)
    for i in range(37):
        packed[:, i // 4] |= g2[:, i] << (6 - 2 * (i % 4))
    rows = b"".join(b"\x00" + packed[r].tobytes() for r in range(61))
    d = raw_png(37, 61, 2, 0, rows)
    add("gray2_trns.png", "png", d[:33] + png_chunk(b"tRNS", struct.pack(">H", 1)) + d[33:], "2-bit L + tRNS=1 (Pillow: no effect)")
    bw = Image.fromarray(u8(scene(37, 61, 17, 1))[..., 0] > 128)
    add("bilevel.png", "png", save(bw, "PNG"), "1-bit")

    # ---------------- JPEG ----------------
    jp = Image.fromarray(u8(scene(160, 120, 20)))
    add("jpeg420.jpg", "jpeg", save(jp, "JPEG", quality=90, subsampling=2), "baseline 4:2:0")
    jp2 = Image.fromarray(u8(scene(61, 37, 21)))
    add("jpeg422.jpg", "jpeg", save(jp2, "JPEG", quality=85, subsampling=1), "baseline 4:2:2, odd size")
    jp3 = Image.fromarray(u8(scene(37, 61, 22)))
    add("jpeg444.jpg", "jpeg", save(jp3, "JPEG", quality=92, subsampling=0), "baseline 4:4:4, odd size")
    jp4 = Image.fromarray(u8(scene(61, 37, 23)))
    add("progressive.jpg", "jpeg", save(jp4, "JPEG", quality=80, progressive=True), "progressive 4:2:0")
    add("gray.jpg", "jpeg", save(Image.fromarray(u8(scene(48, 48, 24, 1))[..., 0], "L"), "JPEG", quality=90), "grayscale")
    cm = Image.fromarray(u8(scene(48, 48, 25, 4)), "CMYK")
    add("cmyk.jpg", "jpeg", save(cm, "JPEG", quality=90), "CMYK with Adobe marker (Pillow inverts)")
    add("photo.jpg", "jpeg", save(Image.fromarray(u8(scene(300, 200, 26))), "JPEG", quality=88), "300x200 4:2:0")

    # ---------------- WebP ----------------
    add("lossy.webp", "webp", save(Image.fromarray(u8(scene(61, 37, 30))), "WEBP", quality=80, method=4), "lossy VP8")
    wa = np.dstack([u8(scene(48, 48, 31)), alpha_ramp(48, 48, 32)])
    add("lossless_alpha.webp", "webp", save(Image.fromarray(wa, "RGBA"), "WEBP", lossless=True), "lossless VP8L with alpha")
    wa2 = np.dstack([u8(scene(37, 61, 33)), alpha_ramp(37, 61, 34)])
    add("lossy_alpha.webp", "webp", save(Image.fromarray(wa2, "RGBA"), "WEBP", quality=75), "lossy VP8 + ALPH")

    # ---------------- GIF ----------------
    frames = []
    for i in range(3):
        f = Image.fromarray(u8(scene(48, 48, 40 + i))).quantize(colors=64, dither=Image.Dither.NONE)
        a = np.array(f)
        a[:12, :12] = 63  # transparent corner
        frames.append(Image.fromarray(a, "P"))
        frames[-1].putpalette(f.getpalette())
    add(
        "anim_trns.gif",
        "gif",
        save(frames[0], "GIF", save_all=True, append_images=frames[1:], transparency=63, duration=100, loop=0, disposal=2),
        "3 frames, transparency index 63; first frame is used",
    )
    # a first frame smaller than the logical screen, no transparency: Pillow fills the
    # rest with palette index 0
    small = Image.fromarray(u8(scene(20, 16, 44))).quantize(colors=16, dither=Image.Dither.NONE)
    gbytes = bytearray(save(small, "GIF"))
    assert gbytes[:6] == b"GIF89a" or gbytes[:6] == b"GIF87a"
    struct.pack_into("<HH", gbytes, 6, 32, 24)  # logical screen 32x24
    pos = gbytes.index(b"\x2c", 13 + 3 * (2 ** ((gbytes[10] & 7) + 1)) if gbytes[10] & 0x80 else 13)
    struct.pack_into("<HH", gbytes, pos + 1, 7, 5)  # frame at (7, 5)
    add("gif_offset.gif", "gif", bytes(gbytes), "20x16 frame at (7,5) in a 32x24 screen")

    # ---------------- BMP / TIFF ----------------
    add("rgb.bmp", "bmp", save(Image.fromarray(u8(scene(37, 61, 50))), "BMP"), "24-bit BMP")
    add("rgb.tiff", "tiff", save(Image.fromarray(u8(scene(61, 37, 51))), "TIFF"), "uncompressed RGB TIFF")
    bmp_rgba = np.dstack([u8(scene(32, 24, 53)), alpha_ramp(32, 24, 54)])
    add("rgba32.bmp", "bmp", save(Image.fromarray(bmp_rgba, "RGBA"), "BMP"), "32-bit BI_RGB BMP (Pillow ignores the 4th byte)")
    tif_rgba = np.dstack([u8(scene(37, 61, 55)), alpha_ramp(37, 61, 56)])
    add("rgba.tiff", "tiff", save(Image.fromarray(tif_rgba, "RGBA"), "TIFF", compression="tiff_deflate"), "RGBA TIFF, deflate, unassociated alpha")
    add(
        "rgb_lzw.tiff",
        "tiff",
        save(Image.fromarray(u8(scene(48, 48, 52))), "TIFF", compression="tiff_lzw"),
        "LZW RGB TIFF",
    )

    # ---------------- invalid inputs ----------------
    invalid: dict[str, tuple[bytes, str, str]] = {}
    jpg = valid["jpeg444.jpg"]
    invalid["truncated.jpg"] = (jpg[: len(jpg) * 2 // 3], "ImageDecode", "JPEG cut at 2/3 of its length")
    png = valid["rgb.png"]
    invalid["truncated.png"] = (png[: len(png) // 2], "ImageDecode", "PNG cut in the middle of IDAT")
    invalid["empty.bin"] = (b"", "ImageDecode", "zero bytes")
    invalid["garbage.bin"] = (bytes(np.random.RandomState(60).randint(0, 256, 512, dtype=np.uint8)), "ImageDecode", "random bytes")
    invalid["huge_header.png"] = (
        raw_png(20000, 20000, 8, 2, None, idat=zlib.compress(b"\x00" * 64)),
        "ImageTooLarge",
        "valid PNG header claiming 20000x20000 (400M pixels) with tiny data",
    )
    invalid["zero_size.png"] = (raw_png(0, 0, 8, 2, b""), "ImageDecode", "PNG header with width = height = 0")

    # sanity: Pillow must refuse the invalid ones too
    for name, (data, kind, _) in invalid.items():
        try:
            im = Image.open(io.BytesIO(data))
            im.load()
        except Exception:
            continue
        raise SystemExit(f"Pillow unexpectedly decoded invalid input {name}")

    # ---------------- write ----------------
    # remove only what a previous run of this script wrote (others may share the folder)
    old_manifest = OUT / "manifest.json"
    if old_manifest.exists():
        old = json.loads(old_manifest.read_text())
        for entry in old.get("valid", []) + old.get("invalid", []):
            (OUT / entry["file"]).unlink(missing_ok=True)
    decoded: dict[str, np.ndarray] = {}
    manifest = {"generator": "scripts/gen_images.py", "pillow": Image.__version__, "valid": [], "invalid": []}
    for name in sorted(valid):
        data = valid[name]
        (OUT / name).write_bytes(data)
        arr = reference(data)
        cross_check_transformers(name, data, arr)
        decoded[name] = arr
        im = Image.open(io.BytesIO(data))
        manifest["valid"].append(
            {
                "file": name,
                "format": fmt_of[name],
                "width": int(arr.shape[1]),
                "height": int(arr.shape[0]),
                "pil_mode": im.mode,
                "has_alpha": "A" in im.getbands() or im.info.get("transparency") is not None,
                "bytes": len(data),
                "note": notes[name],
            }
        )
    for name in sorted(invalid):
        data, kind, note = invalid[name]
        (OUT / name).write_bytes(data)
        manifest["invalid"].append({"file": name, "expected_status": kind, "bytes": len(data), "note": note})

    write_safetensors(OUT / "decoded.safetensors", decoded)
    os.chmod(OUT / "decoded.safetensors", 0o644)
    (OUT / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
    total = sum(p.stat().st_size for p in OUT.iterdir() if p.is_file())
    print(f"wrote {len(valid)} valid + {len(invalid)} invalid images to {OUT} ({total} bytes)")


def write_safetensors(path: Path, tensors: dict[str, np.ndarray]) -> None:
    try:
        from safetensors.numpy import save_file  # type: ignore

        save_file({k: np.ascontiguousarray(v) for k, v in tensors.items()}, str(path))
        return
    except ImportError:
        pass
    # minimal hand-written safetensors (header JSON + raw little-endian data)
    header, blobs, off = {}, [], 0
    for k in sorted(tensors):
        b = np.ascontiguousarray(tensors[k]).tobytes()
        header[k] = {"dtype": "U8", "shape": list(tensors[k].shape), "data_offsets": [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    path.write_bytes(struct.pack("<Q", len(h)) + h + b"".join(blobs))


if __name__ == "__main__":
    sys.exit(main())
