#!/usr/bin/env python3
"""GPU numerics check, run on the device machine: for every fixture under tests/fixtures,
GPU f32 vs CPU f32 (relative L2 ≤ 1e-4; TF32 stays off for f32) and GPU bf16/f16 vs the f32
reference (≤ 2e-2); then 8 threads forwarding on one GPU model must equal serial results,
and vt_embeddings_copy_to_cuda (into a torch CUDA buffer) must give the bytes that
vt_embeddings_copy gives on the host, for f32, bf16 and f16 output.
Prints a table; exits non-zero when a check fails."""
import argparse
import json
import sys
import threading
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "scripts"))
import vtower_ctypes as vc  # noqa: E402


def rel(a, b):
    return float(np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-30))


def load_expected(d: Path):
    from safetensors.numpy import load_file
    meta = json.loads((d / "expected.json").read_text())
    tensors = load_file(str(d / "expected.safetensors"))
    return [(c, tensors[f"embeddings/{c['key']}"]) for c in meta["images"]]


OUT_TYPES = [("f32", vc.VT_DTYPE_F32), ("bf16", vc.VT_DTYPE_BF16), ("f16", vc.VT_DTYPE_F16)]


def check_device_copies(vt, model, img, on_cuda: bool) -> list[str]:
    """Problems with the output copies of one image's embeddings (empty when all agree)."""
    problems = []
    emb = model.forward_raw([img])
    try:
        n = vt.lib.vt_embeddings_n_tokens(emb, 0) * vt.lib.vt_embeddings_dim(emb)
        for name, ty in OUT_TYPES:
            host = vc.copy_rows(vt, emb, 0, ty, n)
            if not on_cuda:
                try:
                    vc.copy_rows_to_cuda(vt, emb, 0, ty, 1 << 20, len(host))
                    problems.append(f"copy_to_cuda {name}: no error for a CPU model")
                except vc.VtError:
                    pass
                continue
            import torch
            buf = torch.empty(len(host), dtype=torch.uint8, device="cuda")
            vc.copy_rows_to_cuda(vt, emb, 0, ty, buf.data_ptr(), len(host))
            got = buf.cpu().numpy().tobytes()
            if got != host:
                diff = sum(a != b for a, b in zip(got, host))
                problems.append(f"copy_to_cuda {name}: {diff} of {len(host)} bytes differ from vt_embeddings_copy")
        try:
            vc.copy_rows(vt, emb, 0, vc.VT_DTYPE_F32, n - 1)
            problems.append("vt_embeddings_copy accepted a short buffer")
        except vc.VtError:
            pass
    finally:
        vt.lib.vt_embeddings_free(emb)
    return problems


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--lib", type=Path, required=True)
    ap.add_argument("--per-fixture", type=int, default=3)
    ap.add_argument("--device", choices=["cuda", "cpu"], default="cuda",
                    help="cpu: smoke-test this script without a GPU (the 'GPU' side runs on the CPU)")
    args = ap.parse_args()
    device = vc.VT_DEVICE_CUDA if args.device == "cuda" else vc.VT_DEVICE_CPU
    vt = vc.Lib(args.lib)
    print(vt.version())
    failures = 0
    rows = []
    for d in sorted(p.parent for p in (ROOT / "tests/fixtures").glob("*/expected.json")):
        cases = load_expected(d)[: args.per_fixture]
        data = [(ROOT / c["path"]).read_bytes() for c, _ in cases]
        cpu = vt.load(d, vc.VT_DEVICE_CPU, vc.VT_DTYPE_F32)
        cpu_out = cpu.forward([cpu.preprocess(b) for b in data])
        for name, dtype, tol, against in [("f32", vc.VT_DTYPE_F32, 1e-4, "cpu"),
                                          ("bf16", vc.VT_DTYPE_BF16, 2e-2, "ref"),
                                          ("f16", vc.VT_DTYPE_F16, 2e-2, "ref")]:
            try:
                gpu = vt.load(d, device, dtype)
                out = gpu.forward([gpu.preprocess(b) for b in data])
                errs = [rel(o, (c if against == "cpu" else e))
                        for o, c, (_, e) in zip(out, cpu_out, cases)]
                worst = max(errs)
                ok = worst <= tol
                if dtype == vc.VT_DTYPE_BF16:
                    # Concurrency: 8 threads on one GPU model equal the serial results.
                    imgs = [gpu.preprocess(b) for b in data]
                    # One image per call on both sides (a batch may pick other GEMM kernels).
                    serial = [gpu.forward([im])[0] for im in imgs]
                    bad = []

                    def work(t):
                        for r in range(4):
                            i = (t + r) % len(imgs)
                            if not np.array_equal(gpu.forward([imgs[i]])[0], serial[i]):
                                bad.append((t, r))
                    ths = [threading.Thread(target=work, args=(t,)) for t in range(8)]
                    [t.start() for t in ths]
                    [t.join() for t in ths]
                    if bad:
                        ok = False
                        print(f"{d.name} bf16: {len(bad)} concurrent results differ from serial")
                problems = check_device_copies(vt, gpu, gpu.preprocess(data[0]), args.device == "cuda")
                for p in problems:
                    print(f"{d.name} {name}: {p}")
                ok = ok and not problems
                gpu.close()
            except vc.VtError as e:
                worst, ok = float("nan"), False
                print(f"{d.name} {name}: {e}")
            failures += not ok
            rows.append((d.name, name, against, worst, tol, "ok" if ok else "FAIL"))
            # Each row as it is measured too: a run cut short by its time limit keeps them.
            print(f"row {d.name} {name} vs {against}: {worst:.2e} (tol {tol:.0e}) {rows[-1][5]}",
                  flush=True)
        cpu.close()
    print(f"\n{'fixture':34} {'dtype':5} {'vs':4} {'rel L2':>10} {'tol':>8}")
    for r in rows:
        print(f"{r[0]:34} {r[1]:5} {r[2]:4} {r[3]:10.2e} {r[4]:8.0e} {r[5]}")
    print(f"\n{failures} failing rows")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
