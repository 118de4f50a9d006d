"""Does each stream use the other, and when does generated audio commit to its events?

Default table: noise-prediction MSE of each stream given its true partner vs the partner of another clip
(same noise, same level), on fresh synthetic clips.

`--trajectory`: generate audio for real videos (video->audio, replacement conditioning, DDIM 50 steps,
eta 1 as the studio) and follow the audio x0 estimate along the sampler. Its loudness envelope (RMS per
half frame) is correlated with the final audio's (when is the layout decided?) and with the real audio of
the same video and of another video (is what it commits to the right layout?).

    python -m benchmarks.bench_crossmodal [--ckpt CKPT] [--num 24] [--seed 123] [--trajectory]
"""
from __future__ import annotations

import argparse

import numpy as np
import torch

from benchmarks.bench_frame_errors import clips
from mmdiff.checkpoint import load_model
from mmdiff.diffusion.guidance import Condition
from mmdiff.diffusion.joint import JointLayout
from mmdiff.generate import SamplerOptions, generate

LEVELS = (50, 100, 200, 300, 400, 700)


def envelope(audio: np.ndarray, segments: int) -> np.ndarray:
    """RMS of `segments` equal parts of each waveform: (N, T) -> (N, segments)."""
    n, t = audio.shape
    seg = t // segments
    return np.sqrt((audio[:, : seg * segments].reshape(n, segments, seg) ** 2).mean(axis=-1))


def row_corr(p: np.ndarray, q: np.ndarray) -> np.ndarray:
    """Pearson correlation of matching rows of (N, K) arrays -> (N,); a constant row gives 0."""
    p = p - p.mean(axis=1, keepdims=True)
    q = q - q.mean(axis=1, keepdims=True)
    return (p * q).sum(axis=1) / np.sqrt((p * p).sum(axis=1) * (q * q).sum(axis=1) + 1e-12)


def partner_table(model, schedule, video: torch.Tensor, audio: torch.Tensor) -> None:
    n = video.shape[0]
    gen = torch.Generator().manual_seed(0)
    mse = lambda p, e: float(((p - e) ** 2).mean())   # noqa: E731
    print("| t | video, true audio | video, other audio | audio, true video | audio, other video |\n|---|---|---|---|---|")
    for t in LEVELS:
        tt = torch.full((n,), t)
        ev, ea = torch.randn(video.shape, generator=gen), torch.randn(audio.shape, generator=gen)
        ab = schedule.alpha_bar(t).float()
        xv, xa = ab.sqrt() * video + (1 - ab).sqrt() * ev, ab.sqrt() * audio + (1 - ab).sqrt() * ea
        with torch.no_grad():
            pv, pa = model(xv, xa, tt)
            ov, _ = model(xv, xa.roll(1, 0), tt)
            _, oa = model(xv.roll(1, 0), xa, tt)
        print(f"| {t} | {mse(pv, ev):.5f} | {mse(ov, ev):.5f} | {mse(pa, ea):.5f} | {mse(oa, ea):.5f} |")


def trajectory_table(model, schedule, video: torch.Tensor, audio: torch.Tensor, seed: int) -> None:
    cfg = model.config
    layout = JointLayout.from_config(cfg)
    segments = 2 * cfg.video_frames
    estimates: list[tuple[int, np.ndarray]] = []                              # (t, audio x0 (N, T))
    record = lambda info: estimates.append((info["t"], layout.unpack(info["x0"])[1][:, 0].numpy().copy()))  # noqa: E731
    _, final = generate(model, video.shape[0], SamplerOptions("ddim", steps=50, eta=1.0), seed=seed,
                        schedule=schedule, condition=Condition("video", video, "replacement"), callback=record)
    final_env = envelope(final[:, 0].numpy(), segments)
    real_env = envelope(audio[:, 0].numpy(), segments)
    other_env = np.roll(real_env, 1, axis=0)
    print("| t | corr with the final audio | with the real audio of this video | of another video |\n|---|---|---|---|")
    for t, x0 in estimates[::5] + estimates[-1:]:
        e = envelope(x0, segments)
        print(f"| {t} | {row_corr(e, final_env).mean():.3f} | {row_corr(e, real_env).mean():.3f} "
              f"| {row_corr(e, other_env).mean():.3f} |")


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ckpt", default=None, help="checkpoint (default: the shipped tiny model)")
    ap.add_argument("--num", type=int, default=24, help="clips (default: 24)")
    ap.add_argument("--seed", type=int, default=123, help="seed of the synthetic draw (and of sampling)")
    ap.add_argument("--trajectory", action="store_true", help="follow the audio x0 estimate of video->audio sampling")
    args = ap.parse_args(argv)
    model, schedule = load_model(args.ckpt)
    video, audio = clips(model.config, args.num, args.seed)          # (N, F, 3, H, W), (N, 1, T) in [-1, 1]
    if args.trajectory:
        trajectory_table(model, schedule, video, audio, args.seed)
    else:
        partner_table(model, schedule, video, audio)


if __name__ == "__main__":
    torch.set_num_threads(2)
    main()
