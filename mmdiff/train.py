"""Train the coupled U-Net on a prepared audio-video cache.

    python -m mmdiff.train --data DATA_DIR --preset tiny --out RUN_DIR [--steps --batch-size --lr 1e-4
        --ema 0.9999 --resume --device --precision fp32|bf16]
    torchrun --nproc_per_node N -m mmdiff.train ...      # DDP: NCCL on GPUs, gloo on CPU

RUN_DIR gets last.pt (checkpoint, rewritten atomically), log.csv, loss.png and previews/.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import mmdiff
from mmdiff.config import DiffusionConfig, resolve_config
from mmdiff.diffusion.joint import JointLayout, model_denoiser
from mmdiff.diffusion.loss import diffusion_loss
from mmdiff.diffusion.schedule import Schedule
from mmdiff.training.cli import add_run_args, run, train_config
from mmdiff.training.loop import Trainer


def joint_loss_fn(layout: JointLayout, schedule: Schedule):
    """Loss on a (video (B, F, 3, H, W), audio (B, 1, T)) batch: video MSE + audio MSE at one shared t."""

    def loss(model, batch, generator):
        video, audio = batch
        x0 = layout.pack(video if "video" in layout.slices else None, audio if "audio" in layout.slices else None)
        return diffusion_loss(model_denoiser(model, layout), layout, schedule, x0, generator)

    return loss


def write_previews(trainer: Trainer, step: int, num: int = 2) -> list[Path]:
    """Sample `num` clips from the EMA weights (DPM-Solver++, 20 steps) into RUN_DIR/previews/."""
    from mmdiff.data.av_io import write_clip
    from mmdiff.generate import SamplerOptions, generate

    cfg = trainer.model_config
    model = mmdiff.build_model(cfg).to(trainer.dist.device)
    model.load_state_dict(trainer.ema.state_dict())
    video, audio = generate(model, num, SamplerOptions("dpm-solver++", steps=20), seed=step,
                            schedule=Schedule(trainer.diffusion_config))
    out = []
    (trainer.run_dir / "previews").mkdir(parents=True, exist_ok=True)
    for k in range(num):
        path = trainer.run_dir / "previews" / f"step{step:07d}_{k}.mp4"
        write_clip(path, video[k].cpu().numpy() if video is not None else None,
                   audio[k, 0].cpu().numpy() if audio is not None else None, cfg.fps, cfg.audio_rate)
        out.append(path)
    return out


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m mmdiff.train", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    add_run_args(p)
    p.add_argument("--no-random-shift", action="store_true", help="train RS-MMA without the random shift (Table 4)")
    p.add_argument("--clips-per-item", type=int, default=4, help="random clips drawn per cached item per epoch")
    return p.parse_args(argv)


def model_config(args: argparse.Namespace):
    """The preset with the flags' changes."""
    changes = {}
    if args.dropout is not None:
        changes["dropout"] = args.dropout
    if args.no_random_shift:
        changes["random_shift"] = False
    cfg = resolve_config(args.preset)
    return cfg.replace(**changes) if changes else cfg


def main(argv=None) -> int:
    args = parse_args(argv)

    def make_trainer(info):
        from mmdiff.data.dataset import AVClipDataset

        cfg, dcfg = model_config(args), DiffusionConfig()
        dataset = AVClipDataset(args.data, model_config=cfg, seed=args.seed, clips_per_item=args.clips_per_item)
        trainer = Trainer(args.out, mmdiff.build_model(cfg), cfg, dcfg, dataset,
                          joint_loss_fn(JointLayout.from_config(cfg), Schedule(dcfg)), train_config(args), info,
                          resume=args.resume, preview_fn=write_previews if args.preview_every else None,
                          train_args={"data": str(args.data), "preset": args.preset})
        return trainer, args.preset

    return run(args, make_trainer)


if __name__ == "__main__":
    sys.exit(main())
