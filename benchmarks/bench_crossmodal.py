"""Does each stream use the other? Noise-prediction MSE of each stream given its true partner vs the
partner of another clip (same noise, same level), on fresh synthetic clips.

    python -m benchmarks.bench_crossmodal [--ckpt CKPT] [--num 24] [--seed 123]
"""
from __future__ import annotations

import argparse

import numpy as np
import torch

from mmdiff.checkpoint import load_model
from mmdiff.data.synthetic import make_clip


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ckpt", default=None, help="checkpoint (default: the shipped tiny model)")
    ap.add_argument("--num", type=int, default=24, help="clips (default: 24)")
    ap.add_argument("--seed", type=int, default=123, help="seed of the synthetic draw")
    args = ap.parse_args(argv)
    model, schedule = load_model(args.ckpt)
    cfg = model.config
    clips = [make_clip(i, args.seed, cfg.video_frames, cfg.fps, cfg.video_size, cfg.audio_rate) for i in range(args.num)]
    video = torch.from_numpy(np.stack([c.video for c in clips])).float().div(127.5).sub(1).permute(0, 1, 4, 2, 3)
    audio = torch.from_numpy(np.stack([c.audio for c in clips])).float()[:, None]          # (N, 1, T)
    gen = torch.Generator().manual_seed(0)
    mse = lambda p, e: float(((p - e) ** 2).mean())   # noqa: E731
    print("| t | video, true audio | video, other audio | audio, true video | audio, other video |\n|---|---|---|---|---|")
    for t in (50, 200, 400, 700):
        tt = torch.full((args.num,), t)
        ev, ea = torch.randn(video.shape, generator=gen), torch.randn(audio.shape, generator=gen)
        ab = schedule.alpha_bar(t).float()
        xv, xa = ab.sqrt() * video + (1 - ab).sqrt() * ev, ab.sqrt() * audio + (1 - ab).sqrt() * ea
        with torch.no_grad():
            pv, pa = model(xv, xa, tt)
            ov, _ = model(xv, xa.roll(1, 0), tt)
            _, oa = model(xv.roll(1, 0), xa, tt)
        print(f"| {t} | {mse(pv, ev):.5f} | {mse(ov, ev):.5f} | {mse(pa, ea):.5f} | {mse(oa, ea):.5f} |")


if __name__ == "__main__":
    torch.set_num_threads(2)
    main()
