"""Shared helpers for benchmark scripts: machine description, timing, peak memory in a fresh process."""
from __future__ import annotations

import json
import os
import platform
import resource
import subprocess
import sys
import time


def machine() -> str:
    import torch

    cpu = "unknown CPU"
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    gpu = f", {torch.cuda.get_device_name()}" if torch.cuda.is_available() else ""
    return (f"{cpu}, {os.cpu_count()} cores{gpu}, torch {torch.__version__} ({torch.get_num_threads()} threads), "
            f"{platform.python_version()}")


def best_of(fn, repeat: int = 3, warmup: int = 1) -> float:
    """Minimum wall time of `fn()` over `repeat` runs after `warmup` runs (seconds)."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_isolated(module: str, *args: str) -> dict:
    """Run `python -m module args` in a fresh process (so its peak RSS is its own); parse its last JSON line."""
    out = subprocess.run([sys.executable, "-m", module, *args], check=True, capture_output=True, text=True,
                         env={**os.environ, "PYTHONPATH": os.getcwd()})
    return json.loads(out.stdout.strip().splitlines()[-1])
