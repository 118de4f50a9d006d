"""The super-resolution stage: speed per upscaled 16-frame clip, and quality against bilinear upsampling.

    python -m benchmarks.bench_sr [--ckpt SR_CKPT] [--clips 4] [--steps 25] [--threads 1] [--paper] [--device cuda]

- speed: seconds to upscale one 16-frame clip with DDIM (Table A.1: 25 steps), all frames in one batch.
- quality, on held-out synthetic clips (a seed the shipped SR model was not trained on), low-resolution
  input = the area-downsampled ground truth: PSNR of the SR output and of bilinear upsampling against the
  ground truth, and temporal flicker (mean |frame t+1 - frame t| of the output minus that of the ground
  truth) with the initial noise shared across frames (default) or drawn per frame.
- --paper: one forward pass of the paper-size SR U-Net (311M) at 256x256 on this machine, and the clip time
  that implies (16 frames x 25 steps); an extrapolation, labelled as such. On a GPU (--device cuda) the
  forward takes all 16 frames of a clip in one batch, fp32 and bf16 autocast, with peak GPU memory.
"""
from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch

from benchmarks._util import best_of, cuda_sync, machine, peak_memory_gib, reset_peak_memory
from mmdiff.checkpoint import DEFAULT_SR_CHECKPOINT, load_sr_model
from mmdiff.config import SR_PAPER
from mmdiff.data.pixels import frames_to_model
from mmdiff.data.sr_data import downsample
from mmdiff.data.synthetic import make_clip
from mmdiff.generate import SamplerOptions
from mmdiff.upscale import bilinear_upscale, upscale


def psnr(x: torch.Tensor, ref: torch.Tensor) -> float:
    """PSNR in dB of [-1, 1] images (peak-to-peak 2)."""
    mse = float(((x - ref) ** 2).mean())
    return 10 * np.log10(4.0 / max(mse, 1e-12))


def flicker(video: torch.Tensor) -> float:
    """Mean absolute change between consecutive frames of (B, F, 3, H, W), in 8-bit levels."""
    return float((video[:, 1:] - video[:, :-1]).abs().mean()) * 127.5


def heldout(num: int, size: int, low: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(ground truth (N, F, 3, size, size), low (N, F, 3, low, low)) in [-1, 1] from fresh synthetic clips."""
    highs, lows = [], []
    for i in range(num):
        frames = make_clip(i, seed, frames=16, fps=10, size=size, rate=8000).video        # (F, H, W, 3) uint8
        highs.append(frames)
        lows.append(np.stack([downsample(f, low) for f in frames]))
    return frames_to_model(np.stack(highs)), frames_to_model(np.stack(lows))      # (N, F, 3, H, W) each


def paper_forward_seconds(device: torch.device, batch: int = 1, bf16: bool = False) -> tuple[float, float]:
    """(seconds of one forward of the paper-size SR U-Net on `batch` 256x256 frames, peak GPU GiB or 0)."""
    from mmdiff.nn.sr_unet import SRUNet

    model = SRUNet(SR_PAPER).to(device).eval()
    x = torch.randn(batch, 3, 256, 256, device=device)                   # (B, 3, 256, 256)
    t = torch.full((batch,), 500, device=device)

    def forward():
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            model(x, x, t)
        cuda_sync(device)

    reset_peak_memory(device)
    with torch.inference_mode():
        sec = best_of(forward, repeat=3 if device.type == "cuda" else 1, warmup=1)
    return sec, peak_memory_gib(device) or 0.0


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ckpt", default=str(DEFAULT_SR_CHECKPOINT), help="SR checkpoint (default: the shipped one)")
    ap.add_argument("--clips", type=int, default=4, help="held-out clips for quality (default: 4)")
    ap.add_argument("--steps", type=int, default=25, help="DDIM steps (default: 25, as the paper)")
    ap.add_argument("--seed", type=int, default=999, help="seed of the held-out synthetic draw")
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    ap.add_argument("--paper", action="store_true", help="also time one forward of the paper-size SR U-Net")
    ap.add_argument("--device", default="cpu", help="cpu (default), cuda, cuda:N or auto")
    args = ap.parse_args(argv)
    from mmdiff.device import resolve_device

    if args.threads:
        torch.set_num_threads(args.threads)
    dev = resolve_device(args.device)
    model, schedule = load_sr_model(args.ckpt, device=dev)
    cfg = model.config
    gt, low = heldout(args.clips, cfg.high_size, cfg.low_size, args.seed)
    if dev.type == "cuda":                                               # warm-up: kernels, cuDNN plans
        upscale(model, low[:1], SamplerOptions("ddim", steps=2), seed=0, schedule=schedule)
        cuda_sync(dev)
    opts = SamplerOptions("ddim", steps=args.steps)
    t0 = time.perf_counter()
    shared = upscale(model, low, opts, seed=0, noise="shared", schedule=schedule).cpu()
    per_clip = (time.perf_counter() - t0) / args.clips
    indep = upscale(model, low, opts, seed=0, noise="independent", schedule=schedule).cpu()
    bil = bilinear_upscale(low, cfg.high_size)
    result = {
        "machine": machine(), "ckpt": args.ckpt, "config": f"{cfg.low_size}->{cfg.high_size}",
        "ddim_steps": args.steps, "clips": args.clips,
        "s_per_16_frame_clip": round(per_clip, 2),
        "psnr_db": {"sr_shared_noise": round(psnr(shared, gt), 2), "sr_independent_noise": round(psnr(indep, gt), 2),
                    "bilinear": round(psnr(bil, gt), 2)},
        "flicker_minus_truth_8bit": {"sr_shared_noise": round(flicker(shared) - flicker(gt), 3),
                                     "sr_independent_noise": round(flicker(indep) - flicker(gt), 3),
                                     "bilinear": round(flicker(bil) - flicker(gt), 3)},
    }
    if args.paper and dev.type == "cuda":
        for precision in ("fp32", "bf16"):
            fwd, peak = paper_forward_seconds(dev, batch=16, bf16=precision == "bf16")
            result[f"paper_{precision}_forward_s_256px_batch16"] = round(fwd, 3)
            result[f"paper_{precision}_clip_s_16x25"] = round(fwd * 25, 2)
            result[f"paper_{precision}_peak_GiB"] = peak
    elif args.paper:
        fwd, _ = paper_forward_seconds(dev)
        result["paper_forward_s_256px_batch1"] = round(fwd, 2)
        result["paper_clip_s_extrapolated_16x25"] = round(fwd * 16 * 25, 0)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
