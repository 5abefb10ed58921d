"""Builds PNG files whose ancillary chunks test Pillow's chunk rules (CRCs before the image
data, the 1 MiB inflate limit of iCCP / zTXt / iTXt, the 64 MiB text budget, compression
methods) and records, for each, whether Pillow opens and converts it.

Writes tests/fixtures/png_chunks/*.png and cases.json ({file: {"pillow_ok": bool, "error":
str}}). Run with the fixtures venv: .venv/bin/python scripts/gen_png_chunk_cases.py
"""

import io
import json
import os
import struct
import zlib

import PIL
from PIL import Image

OUT = os.path.join(os.path.dirname(__file__), "..", "tests", "fixtures", "png_chunks")
MIB = 1 << 20


def chunk(kind: bytes, body: bytes, crc_ok: bool = True) -> bytes:
    crc = zlib.crc32(kind + body) & 0xFFFFFFFF
    if not crc_ok:
        crc ^= 0xFFFF
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", crc)


def png(before: list, after: list = ()) -> bytes:
    """A 4x3 RGB PNG with extra chunks before and after its IDAT."""
    ihdr = struct.pack(">IIBBBBB", 4, 3, 8, 2, 0, 0, 0)
    raw = b"".join(b"\0" + bytes((x * 60 + y * 20 + c * 7) % 256 for x in range(4) for c in range(3)) for y in range(3))
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + b"".join(before)
        + chunk(b"IDAT", zlib.compress(raw))
        + b"".join(after)
        + chunk(b"IEND", b"")
    )


def ztxt(n: int, method: int = 0) -> bytes:
    return chunk(b"zTXt", b"Comment\0" + bytes([method]) + zlib.compress(b"a" * n, 9))


def itxt(n: int, compressed: bool = True) -> bytes:
    text = zlib.compress(b"b" * n, 9) if compressed else b"b" * n
    return chunk(b"iTXt", b"Comment\0" + bytes([int(compressed), 0]) + b"en\0Kommentar\0" + text)


def iccp(n: int) -> bytes:
    return chunk(b"iCCP", b"icc\0\0" + zlib.compress(b"\0" * n, 9))


CASES = {
    "plain.png": png([]),
    "text_bad_crc_before_idat.png": png([chunk(b"tEXt", b"Title\0x", crc_ok=False)]),
    "text_bad_crc_after_idat.png": png([], [chunk(b"tEXt", b"Title\0x", crc_ok=False)]),
    "ztxt_1mib.png": png([ztxt(MIB)]),
    "ztxt_1mib_plus_1.png": png([ztxt(MIB + 1)]),
    "ztxt_bomb_after_idat.png": png([], [ztxt(64 * MIB)]),
    "ztxt_method_1.png": png([ztxt(10, method=1)]),
    "ztxt_corrupt_stream.png": png([chunk(b"zTXt", b"Comment\0\0" + b"\x78\x9c\xff\xff\xff")]),
    "itxt_bomb.png": png([itxt(8 * MIB)]),
    "itxt_uncompressed_2mib.png": png([itxt(2 * MIB, compressed=False)]),
    "iccp_bomb.png": png([iccp(16 * MIB)]),
    "iccp_small.png": png([iccp(1000)]),
    "text_over_64mib.png": png([ztxt(MIB - 16) for _ in range(65)]),
}


def main() -> None:
    os.makedirs(OUT, exist_ok=True)
    verdicts = {"pillow_version": PIL.__version__, "cases": {}}
    for name, data in CASES.items():
        with open(os.path.join(OUT, name), "wb") as f:
            f.write(data)
        try:
            Image.open(io.BytesIO(data)).convert("RGB")
            verdicts["cases"][name] = {"pillow_ok": True, "error": ""}
        except Exception as e:  # noqa: BLE001 - any failure is Pillow's rejection
            verdicts["cases"][name] = {"pillow_ok": False, "error": f"{type(e).__name__}: {e}"}
    with open(os.path.join(OUT, "cases.json"), "w") as f:
        json.dump(verdicts, f, indent=1, sort_keys=True)
        f.write("\n")
    for name, v in verdicts["cases"].items():
        print(f"{name:34} {'ok' if v['pillow_ok'] else v['error']}")


if __name__ == "__main__":
    main()
