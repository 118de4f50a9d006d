"""Does a model generate aligned audio and video? AV-Align (the published metric, eval.av_align) and the
project's change-peak score (AV-Align-peaks, eval.change_peaks), no learned weights, on the synthetic data:
real pairs, mismatched real pairs (video of clip i with audio of clip i+1), generated samples, and
audio generated for the real videos (video->audio, `--v2a MODE`; "none" skips it), each generated set
also scored against the audio of the next clip as its own mismatched control.

    python -m benchmarks.bench_alignment [--ckpt CKPT] [--num 64] [--steps 20] [--seed 123] [--v2a replacement]
    python -m benchmarks.bench_alignment --real-only --num 256      # real and mismatched real pairs only

Without --ckpt the shipped default model is used. Real clips come from a fresh synthetic draw (a seed
the default model was not trained on).
"""
from __future__ import annotations

import argparse
import json

import numpy as np
import torch

from benchmarks._util import machine
from benchmarks.bench_variants import sample
from eval.av_align import av_align
from eval.change_peaks import change_peak_align
from mmdiff.checkpoint import load_model
from mmdiff.data.pixels import frames_to_model
from mmdiff.data.synthetic import make_clip
from mmdiff.diffusion.guidance import GUIDANCE_MODES
from mmdiff.generate import SamplerOptions


SCORES = {"published": av_align, "change": change_peak_align}     # av-align / av-align-peaks


def scores(videos, audios, fps: float, rate: int, score: str) -> np.ndarray:
    return np.array([SCORES[score](v, a, fps, rate) for v, a in zip(videos, audios)])


def summary(x: np.ndarray) -> dict:
    return {"mean": round(float(x.mean()), 4), "sem": round(float(x.std(ddof=1) / np.sqrt(len(x))), 4)}


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ckpt", default=None, help="checkpoint (default: the shipped tiny model)")
    ap.add_argument("--num", type=int, default=64, help="clips per set (default: 64)")
    ap.add_argument("--sampler", default="dpm-solver++", help="sampler (default: dpm-solver++)")
    ap.add_argument("--steps", type=int, default=20, help="sampler steps (default: 20)")
    ap.add_argument("--eta", type=float, default=0.0, help="DDIM eta (default: 0)")
    ap.add_argument("--seed", type=int, default=123, help="seed of the real draw and of sampling")
    ap.add_argument("--batch-size", type=int, default=16, help="generation batch size")
    ap.add_argument("--v2a", default="replacement", choices=("none", *GUIDANCE_MODES),
                    help="also generate audio for the real videos with this conditioning (default: replacement)")
    ap.add_argument("--real-only", action="store_true", help="score only the real and mismatched real pairs (no model)")
    args = ap.parse_args(argv)
    model, schedule = load_model(args.ckpt)
    cfg = model.config
    real = [make_clip(i, args.seed, cfg.video_frames, cfg.fps, cfg.video_size, cfg.audio_rate) for i in range(args.num)]
    rv = [c.video for c in real]
    ra = [c.audio for c in real]
    nxt = lambda xs: xs[1:] + xs[:1]   # noqa: E731 - the partner of the next clip
    sets = {"real pairs": (rv, ra), "mismatched real pairs": (rv, nxt(ra))}
    opts = SamplerOptions(args.sampler, steps=args.steps, eta=args.eta)
    if not args.real_only:
        gv, ga, _ = sample(model, schedule, args.num, args.seed, opts=opts, batch=args.batch_size)
        gv, ga = list(gv), list(ga)
        sets.update({"generated": (gv, ga), "generated, audio of the next sample": (gv, nxt(ga))})
    if args.v2a != "none" and not args.real_only:
        given = frames_to_model(np.stack(rv))                                    # (N, F, 3, H, W)
        _, va, _ = sample(model, schedule, args.num, args.seed, condition=("video", given, args.v2a), opts=opts,
                          batch=args.batch_size)
        va = list(va)
        sets[f"video->audio ({args.v2a}): real video, generated audio"] = (rv, va)
        sets["video->audio, audio generated for the next video"] = (rv, nxt(va))
    result = {det: {k: summary(scores(v, a, cfg.fps, cfg.audio_rate, det)) for k, (v, a) in sets.items()}
              for det in SCORES}
    how = "real pairs only" if args.real_only else f"{args.sampler} {args.steps} steps (eta {args.eta})"
    print(f"machine: {machine()}; num={args.num}, {how}, seed {args.seed}")
    print("| set | AV-Align (published) | AV-Align-peaks (change peaks) |\n|---|---|---|")
    for k in sets:
        p, c = result["published"][k], result["change"][k]
        print(f"| {k} | {p['mean']:.3f} ± {p['sem']:.3f} | {c['mean']:.3f} ± {c['sem']:.3f} |")
    print(json.dumps(result))


if __name__ == "__main__":
    torch.set_num_threads(2)
    main()
