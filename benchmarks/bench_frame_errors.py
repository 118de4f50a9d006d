"""Per-frame (and audio) noise-prediction error of a joint model on held-out synthetic clips.

    python -m benchmarks.bench_frame_errors [--ckpt CKPT] [--num 8] [--levels 20,200,500,900]

For each level t: the video eps MSE of every frame and the audio eps MSE, with fixed noise. A frame
that stands out (this found the tiny model's lost frame 0: see mmdiff/nn/layers.py VideoConv) means
the network cannot predict it, whatever the training loss says on average.
"""
from __future__ import annotations

import argparse
import json

import numpy as np
import torch

from benchmarks._util import machine
from mmdiff.checkpoint import load_model
from mmdiff.data.pixels import frames_to_model
from mmdiff.data.synthetic import make_clip


def clips(cfg, num: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(video (N, F, 3, H, W), audio (N, 1, T)) in [-1, 1] from a fresh synthetic draw."""
    cs = [make_clip(i, seed, cfg.video_frames, cfg.fps, cfg.video_size, cfg.audio_rate) for i in range(num)]
    video = frames_to_model(np.stack([c.video for c in cs]))                  # (N, F, 3, H, W)
    audio = torch.from_numpy(np.stack([c.audio for c in cs]).astype(np.float32))[:, None]
    return video, audio


@torch.no_grad()
def frame_errors(model, schedule, video, audio, level: int, seed: int = 0) -> tuple[list[float], float]:
    g = torch.Generator().manual_seed(seed)
    nv, na = torch.randn(video.shape, generator=g), torch.randn(audio.shape, generator=g)
    t = torch.full((video.shape[0],), level)
    ev, ea = model(schedule.q_sample(video, t, nv), schedule.q_sample(audio, t, na), t)
    return ((ev - nv) ** 2).mean(dim=(0, 2, 3, 4)).tolist(), float(((ea - na) ** 2).mean())


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ckpt", default=None, help="checkpoint (default: the shipped tiny model)")
    ap.add_argument("--num", type=int, default=8, help="held-out clips (default: 8)")
    ap.add_argument("--levels", default="20,200,500,900", help="diffusion levels t (default: 20,200,500,900)")
    ap.add_argument("--seed", type=int, default=321, help="seed of the held-out draw")
    args = ap.parse_args(argv)
    model, schedule = load_model(args.ckpt)
    video, audio = clips(model.config, args.num, args.seed)
    print(f"machine: {machine()}; ckpt {args.ckpt or 'default'}; {args.num} held-out clips")
    print("| t | video eps MSE per frame (0 .. F-1) | audio eps MSE |\n|---|---|---|")
    out = {}
    for level in (int(x) for x in args.levels.split(",")):
        per_frame, aud = frame_errors(model, schedule, video, audio, level)
        out[level] = {"frames": [round(e, 4) for e in per_frame], "audio": round(aud, 4)}
        print(f"| {level} | {' '.join(f'{e:.3f}' for e in per_frame)} | {aud:.4f} |")
    print(json.dumps(out))


if __name__ == "__main__":
    main()
