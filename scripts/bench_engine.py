#!/usr/bin/env python3
"""Engine benchmark: the embedding cache (a hit vs a forward pass of the same image) and
cancellation latency (vs one encoder layer), on a real-size random-weight SigLIP tower.

    scripts/bench_engine.py [--config base|so400m] [--threads N]

Needs the fixture venv's python (torch + transformers, to write the random checkpoint with
transformers' own classes) and cargo; runs examples/engine_bench.rs in release mode.
"""
import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))
from bench_cpu import CONFIGS, build_model  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--config", choices=sorted(CONFIGS), default="base")
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--image", type=Path, default=ROOT / "tests/fixtures/images/photo.jpg")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        build_model(args.config, Path(tmp))
        layers = CONFIGS[args.config]["num_hidden_layers"]
        subprocess.run(["cargo", "run", "--quiet", "--release", "--example", "engine_bench", "--",
                        tmp, str(args.image), str(args.threads), str(layers)],
                       cwd=ROOT, check=True)


if __name__ == "__main__":
    main()
