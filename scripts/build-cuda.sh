#!/usr/bin/env bash
# Builds libvtower with the `cuda` feature on a machine without a GPU or CUDA toolkit, as
# ../shared/gpu/README.md describes, into target/cuda/release/libvtower.so.
#
#   scripts/build-cuda.sh [extra cargo args]
#
# - nvcc 13.0 comes from PyPI into a venv (VTOWER_CUDA_VENV, default <repo>/.venv-cuda),
#   every part pinned to 13.0 (the H100 driver cannot load PTX from a newer nvcc).
# - candle's crates are adjusted at build time, never copied into the repo: candle-core and
#   candle-kernels are copied from cargo's registry into target/cuda-patch/ and patched
#   there, and cargo is pointed at them with `--config patch.crates-io...`:
#   1. candle-core asks cudarc for `dynamic-linking` (needs libcuda.so at link time);
#      it becomes `dynamic-loading`, so the library dlopens the CUDA libraries at run time
#      and also loads on machines without CUDA (asking for the GPU there is VT_ERR_DEVICE).
#   2. candle-kernels' static GGUF/MoE kernels (15 min of nvcc, 33 MB, need libcudart) are
#      never used by a vision tower: they are replaced by trapping stand-in symbols.
# The CUDA libraries needed at run time: libcuda.so.1, libcublas.so.13, libcublasLt.so.13,
# libcurand.so.10 (set LD_LIBRARY_PATH to where they are, e.g. PyTorch's nvidia wheels).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
VENV="${VTOWER_CUDA_VENV:-$ROOT/.venv-cuda}"
PATCH="$ROOT/target/cuda-patch"

if [ ! -x "$VENV/bin/python" ]; then
    "${PYTHON:-python3}" -m venv "$VENV"
fi
"$VENV/bin/pip" install -q nvidia-cuda-nvcc==13.0.88 nvidia-cuda-runtime==13.0.88 \
    nvidia-cuda-crt==13.0.88 nvidia-nvvm==13.0.88 nvidia-cuda-cccl==13.0.85
NVBIN="$(echo "$VENV"/lib/python3*/site-packages/nvidia/cu13/bin)"
[ -x "$NVBIN/nvcc" ] || { echo "nvcc not found in $NVBIN" >&2; exit 1; }
export PATH="$NVBIN:$PATH"
nvcc --version | tail -2

cargo fetch -q
registry_dir() {
    cargo metadata --format-version 1 --features cuda 2>/dev/null | python3 -c '
import json, sys, os
meta = json.load(sys.stdin)
for p in meta["packages"]:
    if p["name"] == sys.argv[1]:
        print(os.path.dirname(p["manifest_path"])); break
' "$1"
}
rm -rf "$PATCH"
mkdir -p "$PATCH"
cp -r "$(registry_dir candle-core)" "$PATCH/candle-core"
cp -r "$(registry_dir candle-kernels)" "$PATCH/candle-kernels"
chmod -R u+w "$PATCH"

# 1. dynamic-loading instead of dynamic-linking.
sed -i 's/"dynamic-linking"/"dynamic-loading"/' "$PATCH/candle-core/Cargo.toml"
grep -q '"dynamic-loading"' "$PATCH/candle-core/Cargo.toml"

# 2. Stand-ins for the static MoE/GGUF kernels: every function candle-kernels declares in
#    src/ffi.rs becomes a symbol that traps if it is ever called.
python3 - "$PATCH/candle-kernels" <<'PY'
import re, sys, pathlib
root = pathlib.Path(sys.argv[1])
names = re.findall(r"pub fn (\w+)\s*\(", (root / "src/ffi.rs").read_text())
stubs = "\n".join(f"void {n}(void) {{ __builtin_trap(); }}" for n in names)
(root / "stubs.c").write_text("/* vtower: stand-ins for kernels a vision tower never calls */\n" + stubs + "\n")
build = (root / "build.rs").read_text()
start = build.index("    let mut moe_sources")
end = build.index('    println!("cargo:rustc-link-search={}", out_dir.display());')
build = build[:start] + '''    let status = std::process::Command::new("cc")
        .args(["-O2", "-fPIC", "-c", "stubs.c", "-o"])
        .arg(out_dir.join("stubs.o"))
        .status()
        .expect("cc");
    assert!(status.success());
    let status = std::process::Command::new("ar")
        .arg("rcs")
        .arg(out_dir.join("libmoe.a"))
        .arg(out_dir.join("stubs.o"))
        .status()
        .expect("ar");
    assert!(status.success());
''' + build[end:]
build = build.replace('    println!("cargo:rustc-link-lib=dylib=cudart");\n', "")
i = build.index("    if !is_target_msvc {", build.index("rustc-link-lib=moe"))
j = build.index("    }\n", i) + len("    }\n")
build = build[:i] + build[j:]
(root / "build.rs").write_text(build)
print(f"{len(names)} stand-in symbols")
PY

# The patches must not leak into the committed Cargo.lock: restore it afterwards.
cp Cargo.lock "$PATCH/Cargo.lock.orig"
trap 'cp "$PATCH/Cargo.lock.orig" "$ROOT/Cargo.lock"' EXIT

export CUDA_COMPUTE_CAP="${CUDA_COMPUTE_CAP:-90}"
export CUDARC_CUDA_VERSION="${CUDARC_CUDA_VERSION:-13000}"
export CUDAFORGE_THREADS="${CUDAFORGE_THREADS:-$(nproc)}"
cargo build --release --features cuda --target-dir "$ROOT/target/cuda" \
    --config "patch.crates-io.candle-core.path=\"$PATCH/candle-core\"" \
    --config "patch.crates-io.candle-kernels.path=\"$PATCH/candle-kernels\"" \
    "$@"
ln -sf libvtower.so "$ROOT/target/cuda/release/libvtower.so.0"
echo "built $ROOT/target/cuda/release/libvtower.so"
readelf -d "$ROOT/target/cuda/release/libvtower.so" | grep NEEDED
