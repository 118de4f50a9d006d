"""How many of a model's samples are clean? Issue 20's check (eval.cleanliness) on fixed seeds, for one or
more checkpoints and sampler settings, against real clips of the synthetic generator (a held-out seed).

    python -m benchmarks.clean_samples [--ckpt A.pt B.pt] [--num 16] [--seed 0] \
        [--setting dpm-solver++:20 ddim:20:0 ddim:50:1] [--no-zero-mean] [--no-clip] [--raw]

A setting is SAMPLER:STEPS[:ETA]. Prints the criterion (thresholds from `--real` clips), then one JSON line
per (checkpoint, setting): how many of the `--num` clips are dirty, and the median of each score.
`--raw` uses the checkpoint's raw weights instead of its EMA (a training state such as last.pt holds both).
"""
from __future__ import annotations

import argparse
import json

import numpy as np

from benchmarks._util import machine
from eval.cleanliness import Criterion, from_generated, score_clips


def real_scores(num: int, seed: int, cfg):
    """Scores of `num` clips of the synthetic generator at the model's clip format."""
    from mmdiff.data.synthetic import make_clip

    clips = [make_clip(i, seed, cfg.video_frames, cfg.fps, cfg.video_size, cfg.audio_rate) for i in range(num)]
    return score_clips(np.stack([c.video for c in clips]), np.stack([c.audio for c in clips]), cfg.audio_rate)


def parse_setting(text: str, zero_mean: bool, clip: bool):
    from mmdiff.generate import SamplerOptions

    name, steps, *eta = text.split(":")
    return SamplerOptions(sampler=name, steps=int(steps), eta=float(eta[0]) if eta else 0.0,
                          clip_denoised=clip, zero_mean_audio=zero_mean)


def dirty_count(model, opts, num: int, seed: int, criterion: Criterion) -> dict:
    from mmdiff.generate import generate

    video, audio = generate(model, num=num, options=opts, seed=seed)
    s = score_clips(*from_generated(video, audio), model.config.audio_rate)
    return {"dirty": int((~criterion.clean(s)).sum()), "of": num,
            "median_pixel_hf": round(float(np.median(s.pixel_hf)), 5),
            "median_audio_rms": round(float(np.median(s.audio_rms)), 4),
            "median_floor_rms": round(float(np.median(s.floor_rms)), 5)}


def main(argv=None) -> int:
    from mmdiff.checkpoint import default_checkpoint, load_model

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--ckpt", nargs="+", default=None, help="checkpoints (default: the shipped model)")
    p.add_argument("--num", type=int, default=16)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--setting", nargs="+", default=["dpm-solver++:20", "ddim:20:0", "ddim:50:1"])
    p.add_argument("--real", type=int, default=256, help="real clips that set the thresholds")
    p.add_argument("--real-seed", type=int, default=99)
    p.add_argument("--no-zero-mean", action="store_true", help="sample without the audio zero-mean projection")
    p.add_argument("--no-clip", action="store_true", help="sample without clamping x0 estimates to [-1, 1]")
    p.add_argument("--raw", action="store_true", help="raw weights instead of the EMA")
    args = p.parse_args(argv)
    ckpts = args.ckpt or [str(default_checkpoint())]
    print(f"# {machine()}")
    criterion = None
    for ckpt in ckpts:
        model, _ = load_model(ckpt, use_ema=not args.raw)
        if criterion is None:
            real = real_scores(args.real, args.real_seed, model.config)
            criterion = Criterion.from_real(real)
            print(json.dumps({"criterion": criterion.describe(), "real_clips": args.real,
                              "real_dirty": int((~criterion.clean(real)).sum())}))
        for text in args.setting:
            opts = parse_setting(text, not args.no_zero_mean, not args.no_clip)
            row = {"ckpt": ckpt, "setting": text, "ema": not args.raw, "zero_mean_audio": opts.zero_mean_audio,
                   "clip_denoised": opts.clip_denoised}
            print(json.dumps(row | dirty_count(model, opts, args.num, args.seed, criterion)), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
