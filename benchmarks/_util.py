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


def cuda_sync(device) -> None:
    """Wait until `device` has run its queued work (nothing to do off CUDA), so host timers see it."""
    import torch

    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


def reset_peak_memory(device) -> None:
    """Start a new peak-memory measurement on a CUDA `device` (nothing to do off CUDA)."""
    import torch

    if torch.device(device).type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def peak_memory_gib(device) -> float | None:
    """Peak GPU memory allocated on `device` since the last reset, GiB (2 decimals); None off CUDA."""
    import torch

    if torch.device(device).type != "cuda":
        return None
    return round(torch.cuda.max_memory_allocated(device) / 2 ** 30, 2)


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
