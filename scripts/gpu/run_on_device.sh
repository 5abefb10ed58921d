#!/usr/bin/env bash
# The one device run for the `device` tool (NVIDIA H100/H200 machine with PyTorch and
# transformers, no Rust): checks GPU numerics for every fixture and times vtower against
# Hugging Face transformers side by side. Build first, here: scripts/build-cuda.sh, then
# copy the library into the carried folder:
#   mkdir -p .gpu && cp target/cuda/release/libvtower.so .gpu/ && echo /.gpu/ >> .git/info/exclude
# and call the device with carry [".gpu"] and command `scripts/gpu/run_on_device.sh`.
set -uo pipefail
cd "$(dirname "$0")/../.."
LIB="${VTOWER_LIB:-.gpu/libvtower.so}"
# CUDA user-space libraries come from PyTorch's nvidia wheels there; the driver from /usr/local/nvidia.
NV_LIBS=$(python3 - <<'PY'
import glob, os
try:
    import nvidia
    paths = []
    for root in nvidia.__path__:
        paths += sorted(glob.glob(os.path.join(root, "cu13", "lib"))) + sorted(glob.glob(os.path.join(root, "*", "lib")))
    print(":".join(dict.fromkeys(paths)))
except ImportError:
    print("")
PY
)
export LD_LIBRARY_PATH="$NV_LIBS:/usr/local/nvidia/lib64:${LD_LIBRARY_PATH:-}"
OUT="${OUT:-/tmp/vtower-device}"
mkdir -p "$OUT"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv | tee "$OUT/gpu.txt"
python3 -c 'import torch, transformers; print("torch", torch.__version__, "transformers", transformers.__version__)' | tee -a "$OUT/gpu.txt"
export PYTHONUNBUFFERED=1
# Each stage has its own time limit (the device call allows 600 s in all); every result row is
# printed as it is measured, so a stage cut short still leaves its finished rows in $OUT.
CHECK_S="${VTOWER_CHECK_S:-150}"
BENCH_S="${VTOWER_BENCH_S:-380}"
timeout "$CHECK_S" python3 scripts/gpu/device_check.py --lib "$LIB" 2>&1 | tee "$OUT/check.txt"
timeout "$BENCH_S" python3 scripts/gpu/bench_gpu.py --lib "$LIB" --iters "${VTOWER_BENCH_ITERS:-5}" \
    --warm 2 --json "$OUT/bench.json" ${VTOWER_BENCH_ARGS:-} 2>&1 | tee "$OUT/bench.txt"
