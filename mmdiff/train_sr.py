"""Train the super-resolution stage (paper Sec. 4.1, Table A.1 right) on frames of a prepared cache.

    python -m mmdiff.data.synthetic --out SR_DATA --num 300 --size 128 --cache     # or mmdiff.data.prepare --size 256
    python -m mmdiff.train_sr --data SR_DATA --preset tiny --out SR_RUN [--steps --batch-size --lr 1e-4
        --ema 0.9999 --resume --device --precision fp32|bf16]
    torchrun --nproc_per_node N -m mmdiff.train_sr ...      # DDP: NCCL on GPUs, gloo on CPU

The cache's frames must be `high_size` square (paper: 256, tiny: 128); low-resolution inputs are made
from them with Table A.1's degradations. Same run folder, checkpoints, resume, log and torchrun support
as `mmdiff.train` (one shared Trainer). The objective is Improved DDPM's hybrid loss (epsilon MSE + the
bound term for the learned variance); previews are PNG grids: bilinear | SR sample | ground truth.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

from mmdiff.cliargs import positive_int
from mmdiff.config import DiffusionConfig, resolve_sr_config
from mmdiff.data.pixels import model_to_frames
from mmdiff.diffusion.loss import hybrid_loss
from mmdiff.diffusion.schedule import Schedule
from mmdiff.training.cli import add_run_args, run, train_config
from mmdiff.training.loop import Trainer


def sr_loss_fn(schedule: Schedule):
    """Loss on a (high (B, 3, H, W), low (B, 3, h, w)) batch: hybrid loss of the SR U-Net given low."""
    from mmdiff.nn.sr_unet import to_diffusion_space, upsample_condition
    from mmdiff.upscale import sr_predictor

    def loss(model, batch, generator):
        high, low = batch
        cfg = getattr(model, "module", model).config                   # DDP wraps the U-Net
        low_up = upsample_condition(low, cfg.high_size)
        return hybrid_loss(sr_predictor(model, low_up), schedule, to_diffusion_space(cfg, high, low_up), generator)

    return loss


def write_sr_previews(trainer: Trainer, step: int, num: int = 4) -> Path:
    """Upscale `num` fixed training frames with the EMA weights (DDIM 25) into RUN_DIR/previews/stepN.png."""
    from PIL import Image

    from mmdiff.nn.sr_unet import SRUNet
    from mmdiff.upscale import bilinear_upscale, upscale

    cfg = trainer.model_config
    model = SRUNet(cfg).to(trainer.dist.device)
    model.load_state_dict(trainer.ema.state_dict())
    pairs = [trainer.dataset[i] for i in range(min(num, len(trainer.dataset)))]
    high = torch.stack([h for h, _ in pairs])                                  # (n, 3, H, W)
    low = torch.stack([lo for _, lo in pairs]).unsqueeze(1)                    # (n, 1, 3, h, w): 1-frame clips
    sr = upscale(model, low, seed=step, schedule=Schedule(trainer.diffusion_config))[:, 0].cpu()
    rows = torch.cat([bilinear_upscale(low, cfg.high_size)[:, 0], sr, high], dim=3)   # (n, 3, H, 3W)
    grid = model_to_frames(rows).reshape(-1, 3 * cfg.high_size, 3)             # (n * H, 3W, 3) uint8
    path = trainer.run_dir / "previews" / f"step{step:07d}.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.ascontiguousarray(grid)).save(path)
    return path


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m mmdiff.train_sr", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    add_run_args(p)
    p.add_argument("--frames-per-item", type=positive_int, default=8, help="random frames drawn per cached item per epoch")
    p.add_argument("--no-augment", action="store_true", help="no noise/JPEG/flip degradation of the inputs")
    args = p.parse_args(argv)
    try:
        resolve_sr_config(args.preset)
    except ValueError as e:
        p.error(str(e))
    return args


def main(argv=None) -> int:
    args = parse_args(argv)

    def make_trainer(info):
        from mmdiff.data.sr_data import NO_DEGRADATION, Degradation, SRFrameDataset
        from mmdiff.nn.sr_unet import SRUNet

        cfg = resolve_sr_config(args.preset)
        cfg = cfg.replace(dropout=args.dropout) if args.dropout is not None else cfg
        dcfg = DiffusionConfig()
        dataset = SRFrameDataset(args.data, cfg, seed=args.seed, frames_per_item=args.frames_per_item,
                                 degradation=NO_DEGRADATION if args.no_augment else Degradation())
        trainer = Trainer(args.out, SRUNet(cfg), cfg, dcfg, dataset, sr_loss_fn(Schedule(dcfg)), train_config(args),
                          info, resume=args.resume, preview_fn=write_sr_previews if args.preview_every else None,
                          train_args={"data": str(args.data), "preset": args.preset, "stage": "sr"})
        return trainer, f"SR {args.preset} ({cfg.low_size} -> {cfg.high_size})"

    def data_spec():
        from mmdiff.data.cache import CacheSpec

        high = resolve_sr_config(args.preset).high_size
        return CacheSpec(fps=10, video_size=(high, high), audio_rate=16_000)   # SR reads the frames only

    return run(args, make_trainer, data_spec)


if __name__ == "__main__":
    sys.exit(main())
