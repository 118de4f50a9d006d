"""Training throughput on this machine: clips/s for a preset, model FLOPs utilisation against the measured
matmul peak, and data-loading time per batch against step time.

    python -m benchmarks.bench_train --preset tiny --batch-size 8 [--precision bf16] [--data CACHE_DIR]
    python -m benchmarks.bench_train --preset paper --batch-size 2 --device cuda    # + peak GPU memory
"""
from __future__ import annotations

import argparse
import json
import time

import torch
from torch.utils.flop_counter import FlopCounterMode

import mmdiff
from benchmarks._util import cuda_sync, machine, peak_memory_gib
from mmdiff.config import resolve_config
from mmdiff.diffusion import JointLayout, Schedule
from mmdiff.train import joint_loss_fn


def matmul_peak(dtype: torch.dtype, device: torch.device, n: int | None = None, repeat: int = 5) -> float:
    """Measured GFLOP/s of an n x n matmul in `dtype` (best of `repeat`); n defaults to 2048 on a CPU and
    8192 on a GPU (large enough to fill it)."""
    n = n or (8192 if device.type == "cuda" else 2048)
    a, b = torch.randn(n, n, dtype=dtype, device=device), torch.randn(n, n, dtype=dtype, device=device)

    def product():
        a @ b
        cuda_sync(device)

    product()
    best = min(_timed(product) for _ in range(repeat))
    return 2 * n ** 3 / best / 1e9


def _timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", default="tiny", help="model preset (default: tiny)")
    ap.add_argument("--batch-size", type=int, default=8, help="clips per step")
    ap.add_argument("--precision", default="fp32", choices=["fp32", "bf16"], help="autocast precision")
    ap.add_argument("--steps", type=int, default=3, help="timed steps after one warm-up")
    ap.add_argument("--data", default=None, help="a cache folder: also time loading batches from it")
    ap.add_argument("--threads", type=int, default=2, help="torch threads (default: 2)")
    ap.add_argument("--device", default="cpu", help="cpu (default), cuda, cuda:N or auto")
    args = ap.parse_args(argv)
    from mmdiff.device import resolve_device

    torch.set_num_threads(args.threads)
    dev = resolve_device(args.device)
    cfg = resolve_config(args.preset)
    model = mmdiff.build_model(cfg).to(dev)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    loss_fn = joint_loss_fn(JointLayout.from_config(cfg), Schedule())
    bs = args.batch_size
    batch = (torch.rand(bs, *cfg.video_shape, device=dev) * 2 - 1,          # (B, F, 3, H, W)
             torch.rand(bs, *cfg.audio_shape, device=dev) * 2 - 1)          # (B, 1, T)
    bf16 = args.precision == "bf16"

    def step(i: int) -> None:
        with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=bf16):
            out = loss_fn(model, batch, torch.Generator(dev).manual_seed(i))
        out["loss"].backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        cuda_sync(dev)

    with FlopCounterMode(display=False) as fc:
        step(0)
    flops = fc.get_total_flops()
    sec = min(_timed(lambda: step(i)) for i in range(1, args.steps + 1))
    peak = matmul_peak(torch.bfloat16 if bf16 else torch.float32, dev)
    result = {"preset": args.preset, "batch": bs, "precision": args.precision, "step_s": round(sec, 3),
              "clips_per_s": round(bs / sec, 3), "train_GFLOP_per_step": round(flops / 1e9, 1),
              "achieved_GFLOPs": round(flops / sec / 1e9, 1), "matmul_peak_GFLOPs": round(peak, 1),
              "MFU": round(flops / sec / 1e9 / peak, 3), "device": str(dev)}
    if dev.type == "cuda":
        result["peak_gpu_memory_GiB"] = peak_memory_gib(dev)
    if args.data:
        from mmdiff.data.dataset import AVClipDataset

        ds = AVClipDataset(args.data, model_config=cfg)
        load = min(_timed(lambda: [ds[j % len(ds)] for j in range(bs)]) for _ in range(3))
        result["data_load_s_per_batch"] = round(load, 4)
        result["data_fraction_of_step"] = round(load / sec, 4)
    print(f"machine: {machine()}")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
