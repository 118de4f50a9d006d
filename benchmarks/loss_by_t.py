"""Denoising loss of trained checkpoints by noise level: the eps MSE of each stream in t-buckets, on the same
clips, levels and noise for every checkpoint, so that models are compared where their losses differ.

    python -m benchmarks.loss_by_t --data DATA_DIR --ckpt A/last.pt [B/last.pt ...] [--clips 64 --buckets 5]

Prints one JSON line per checkpoint: {"ckpt", "video": [eps MSE per bucket], "audio": [...]} (streams the model
has), "video_x0" / "audio_x0": the MSE of the data prediction x0 = (x_t - sqrt(1 - abar) eps) / sqrt(abar) per
bucket, and "video_var" / "audio_var": the clips' per-coordinate variance, the x0 MSE of the best constant guess
(what an exact denoiser's x0 MSE tends to as t -> T); buckets of equal width over [0, T), EMA weights,
clips 0..N-1 of the folder in order.
"""
from __future__ import annotations

import argparse
import json

import torch


def loss_by_t(model, schedule, video: torch.Tensor, audio: torch.Tensor, buckets: int, seed: int = 0) -> dict:
    """{stream: [mean eps MSE in bucket k]} for clean clips video (N, F, 3, H, W), audio (N, 1, T)."""
    from mmdiff.diffusion.joint import JointLayout, model_denoiser

    layout = JointLayout.from_config(model.config)
    x0 = layout.pack(video if "video" in layout.slices else None, audio if "audio" in layout.slices else None)
    denoise = model_denoiser(model, layout, schedule=schedule)
    width = schedule.num_timesteps // buckets
    out = {k: [] for m in layout.slices for k in (m, f"{m}_x0")}
    g = torch.Generator(x0.device).manual_seed(seed)
    for k in range(buckets):
        t = torch.randint(k * width, (k + 1) * width, (x0.shape[0],), generator=g, device=x0.device)   # (N,)
        noise = torch.randn(x0.shape, generator=g, device=x0.device)                                   # (N, D)
        with torch.no_grad():
            xt = schedule.q_sample(x0, t, noise)
            eps = denoise(xt, t)
            x0_hat = schedule.predict_x0(xt, t, eps)                                                  # (N, D)
        for m, s in layout.slices.items():
            out[m].append(round(float(((eps[:, s] - noise[:, s]) ** 2).mean()), 5))
            out[f"{m}_x0"].append(round(float(((x0_hat[:, s] - x0[:, s]) ** 2).mean()), 4))
    for m, s in layout.slices.items():      # x0 MSE of the best constant guess (the clips' mean): the t -> T limit
        out[f"{m}_var"] = round(float(x0[:, s].var(0, unbiased=False).mean()), 4)
    return out


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", required=True, help="a prepared data folder (mmdiff.data.prepare / synthetic)")
    ap.add_argument("--ckpt", nargs="+", required=True, help="checkpoints to compare")
    ap.add_argument("--clips", type=int, default=64, help="clips 0..N-1 of the folder (default: 64)")
    ap.add_argument("--buckets", type=int, default=5, help="equal-width t buckets (default: 5)")
    ap.add_argument("--device", default="auto", help="auto (CUDA when available), cpu, cuda")
    args = ap.parse_args(argv)
    from mmdiff.checkpoint import load_model
    from mmdiff.data.dataset import AVClipDataset
    from mmdiff.device import resolve_device

    dev = resolve_device(args.device)
    for path in args.ckpt:
        model, schedule = load_model(path, device=dev)
        data = AVClipDataset(args.data, model_config=model.config.replace(modalities=("video", "audio")), seed=0)
        clips = [data[i] for i in range(min(args.clips, len(data)))]
        video = torch.stack([v for v, _ in clips]).to(dev)                  # (N, F, 3, H, W)
        audio = torch.stack([a for _, a in clips]).to(dev)                  # (N, 1, T)
        print(json.dumps({"ckpt": str(path), **loss_by_t(model, schedule, video, audio, args.buckets)}), flush=True)


if __name__ == "__main__":
    main()
