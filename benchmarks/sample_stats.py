"""Where a model's samples differ from real clips, in numbers a picture would show: colour saturation,
pixel contrast, audio loudness, event counts and change-peak alignment (issue 20: "its colours are washed
out"; what FVD and AV-Align-peaks summarise).

    python -m benchmarks.sample_stats [--ckpt A.pt B.pt] [--num 16] [--seed 0] [--setting dpm-solver++:20] [--raw]

Real clips come from the synthetic generator at a held-out seed (`--real-seed`, 99 as the protocol's
`syn-eval2048`). Per clip: mean chroma (max - min over RGB per pixel, data range [-1, 1], so a pure colour
is 2 and grey 0), the 99th percentile of chroma (the object's colour), pixel standard deviation, audio RMS,
the number of audio onset peaks and video change peaks (eval.change_peaks), and their peak IoU (the
per-clip AV-Align-peaks). Prints one JSON line per (checkpoint, setting) and one for the real clips: means
over clips.
"""
from __future__ import annotations

import argparse
import json
import sys

import numpy as np
import torch

from benchmarks._util import machine
from benchmarks.clean_samples import parse_setting


def clip_stats(video: torch.Tensor, audio: torch.Tensor, fps: float, rate: int) -> dict:
    """Means over clips of the statistics above. :param video: (N, F, 3, H, W) and :param audio: (N, 1, T),
    both in [-1, 1]."""
    from eval.change_peaks import audio_peak_times, change_peak_times, peak_iou

    chroma = (video.amax(2) - video.amin(2)).flatten(1).numpy()                    # (N, F*H*W)
    frames = ((video.permute(0, 1, 3, 4, 2).numpy() + 1) * 127.5).clip(0, 255).astype(np.uint8)  # (N, F, H, W, 3)
    sound = audio[:, 0].numpy()                                                      # (N, T)
    a_peaks = [audio_peak_times(s, rate) for s in sound]
    v_peaks = [change_peak_times(f, fps) for f in frames]
    return {
        "chroma_mean": float(chroma.mean()),
        "chroma_p99": float(np.percentile(chroma, 99, axis=1).mean()),
        "pixel_std": float(video.flatten(1).std(1, correction=0).mean()),
        "audio_rms": float(np.sqrt((sound ** 2).mean(1)).mean()),
        "audio_peaks": float(np.mean([len(p) for p in a_peaks])),
        "video_peaks": float(np.mean([len(p) for p in v_peaks])),
        "peak_iou": float(np.mean([peak_iou(a, v, 1 / fps) for a, v in zip(a_peaks, v_peaks)])),
    }


def real_clips(cfg, num: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(video (N, F, 3, H, W), audio (N, 1, T)) in [-1, 1]: `num` clips of the synthetic generator."""
    from benchmarks.bench_frame_errors import clips

    return clips(cfg, num, seed)


def _rounded(row: dict) -> dict:
    return {k: round(v, 4) if isinstance(v, float) else v for k, v in row.items()}


def main(argv=None) -> int:
    from mmdiff.checkpoint import CheckpointError, default_checkpoint, load_model
    from mmdiff.generate import generate

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--ckpt", nargs="+", default=None, help="checkpoints (default: the shipped model)")
    p.add_argument("--num", type=int, default=16)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--setting", nargs="+", default=["dpm-solver++:20"], help="SAMPLER:STEPS[:ETA]")
    p.add_argument("--real-seed", type=int, default=99)
    p.add_argument("--raw", action="store_true", help="raw weights instead of the EMA")
    args = p.parse_args(argv)
    if args.num < 1:
        p.error(f"--num must be >= 1, got {args.num}")
    print(f"# {machine()}")
    real_done = False
    for ckpt in args.ckpt or [str(default_checkpoint())]:
        try:
            model, schedule = load_model(ckpt, use_ema=not args.raw)
        except CheckpointError as e:                 # missing, truncated, or --raw on an EMA-only export
            print(f"error: {e}", file=sys.stderr)
            return 1
        cfg = model.config
        if not real_done:
            stats = clip_stats(*real_clips(cfg, args.num, args.real_seed), cfg.fps, cfg.audio_rate)
            print(json.dumps(_rounded({"real_seed": args.real_seed, "num": args.num} | stats)), flush=True)
            real_done = True
        for text in args.setting:
            video, audio = generate(model, args.num, parse_setting(text, True, True), seed=args.seed, schedule=schedule)
            stats = clip_stats(video, audio, cfg.fps, cfg.audio_rate)
            row = {"ckpt": ckpt, "ema": not args.raw, "setting": text, "num": args.num, "seed": args.seed}
            print(json.dumps(_rounded(row | stats)), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
