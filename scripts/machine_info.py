"""What the benchmark scripts record about the machine: the CPU model, its core count and the
SIMD flags that decide which kernels run (AVX2/FMA, AVX-512, AVX512-BF16, AMX), plus the
vtower kernel cap `VTOWER_CPU_ISA`; and the wall-clock timer they share (`median_wall_ms`)."""
import os
import statistics
import time


def cpu() -> dict:
    model, flags = "?", []
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name") and model == "?":
                model = line.split(":", 1)[1].strip()
            if line.startswith("flags") and not flags:
                flags = line.split(":", 1)[1].split()
    except OSError:
        pass
    keep = [f for f in flags if f.startswith(("avx512", "amx")) or f in ("avx2", "fma")]
    return {"cpu": model, "cores": os.cpu_count(), "flags": sorted(keep),
            "VTOWER_CPU_ISA": os.environ.get("VTOWER_CPU_ISA", "(unset)")}


def describe() -> str:
    """One line: `cpu <model>, <n> cores, flags ..., VTOWER_CPU_ISA=...`."""
    c = cpu()
    return (f"cpu {c['cpu']}, {c['cores']} cores, flags {' '.join(c['flags'])}, "
            f"VTOWER_CPU_ISA={c['VTOWER_CPU_ISA']}")


def median_wall_ms(fn, iters, warm=1):
    """Runs fn `warm` times untimed, then `iters` times; returns the median wall-clock ms of those."""
    for _ in range(warm):
        fn()
    out = []
    for _ in range(iters):
        t = time.perf_counter()
        fn()
        out.append((time.perf_counter() - t) * 1e3)
    return statistics.median(out)
