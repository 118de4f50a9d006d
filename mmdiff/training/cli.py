"""Command-line plumbing shared by every trainer (`mmdiff.train`, `mmdiff.train_sr`): the run flags,
the TrainConfig they make, and the process set-up around `Trainer.run`."""
from __future__ import annotations

import argparse
import sys
from typing import Callable

import torch

from mmdiff.training import distributed
from mmdiff.training.loop import PRECISIONS, TrainConfig, Trainer


def add_run_args(p: argparse.ArgumentParser, preset_help: str = "model preset: tiny | paper") -> None:
    """Flags every trainer takes: schedule of the run, optimiser, EMA, precision, device, resume, logging."""
    p.add_argument("--data", required=True, help="cache folder from mmdiff.data.prepare or mmdiff.data.synthetic --cache")
    p.add_argument("--preset", default="tiny", help=f"{preset_help} (default: tiny)")
    p.add_argument("--out", required=True, help="run folder (checkpoint, logs, previews)")
    p.add_argument("--steps", type=int, default=10_000, help="total optimisation steps (default: 10000)")
    p.add_argument("--batch-size", type=int, default=8, help="samples per step per process (default: 8)")
    p.add_argument("--lr", type=float, default=None,
                   help="AdamW learning rate (default: 1e-4 as the paper; with --resume, the run's own rate "
                        "unless given, and a given rate replaces it from the resumed step on)")
    p.add_argument("--weight-decay", type=float, default=0.0, help="AdamW weight decay (paper: 0)")
    p.add_argument("--ema", type=float, default=0.9999, help="EMA decay (paper: 0.9999; warmed up)")
    p.add_argument("--grad-clip", type=float, default=1.0, help="max gradient norm, 0 to disable (default: 1)")
    p.add_argument("--dropout", type=float, default=None, help="override the preset's dropout")
    p.add_argument("--precision", default="fp32", choices=PRECISIONS, help="fp32, or bf16 autocast")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N (default: auto)")
    p.add_argument("--resume", action="store_true", help="continue from RUN_DIR/last.pt")
    p.add_argument("--init-from", default=None,
                   help="start a new run from this checkpoint's EMA weights (same architecture; e.g. fine-tune "
                        "with --no-random-shift); ignored when --resume finds a checkpoint")
    p.add_argument("--save-every", type=int, default=500, help="checkpoint every N steps (default: 500)")
    p.add_argument("--preview-every", type=int, default=1000, help="preview samples every N steps, 0 = never")
    p.add_argument("--log-every", type=int, default=10, help="log.csv row every N steps (default: 10)")
    p.add_argument("--seed", type=int, default=0, help="seed for data order, noise and dropout (default: 0)")
    p.add_argument("--workers", type=int, default=1, help="DataLoader worker processes (default: 1)")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")


def train_config(args: argparse.Namespace) -> TrainConfig:
    return TrainConfig(steps=args.steps, batch_size=args.batch_size, lr=args.lr, weight_decay=args.weight_decay,
                       ema=args.ema, grad_clip=args.grad_clip, precision=args.precision,
                       save_every=args.save_every, preview_every=args.preview_every or 10 ** 12,
                       log_every=args.log_every, seed=args.seed, workers=args.workers,
                       init_from=args.init_from)


def run(args: argparse.Namespace, make_trainer: Callable[[distributed.DistInfo], tuple[Trainer, str]]) -> int:
    """Set threads and (torchrun) process group, build the trainer on this rank, train, report, tear down.

    :param make_trainer: dist info -> (trainer, what is being trained, for the start line).
    """
    if args.threads:
        torch.set_num_threads(args.threads)
    info = distributed.setup(args.device)
    try:
        torch.manual_seed(args.seed)                       # identical initial weights on every rank
        trainer, what = make_trainer(info)
        if info.is_main:
            n = sum(p.numel() for p in trainer.model.parameters())
            print(f"training {what} ({n / 1e6:.2f}M params) on {len(trainer.dataset)} samples/epoch, "
                  f"{info.world} process(es) on {info.device}, from step {trainer.step} to {args.steps}",
                  file=sys.stderr)
        metrics = trainer.run()
        if info.is_main:
            print(f"done at step {trainer.step}: " + ", ".join(f"{k} {v:.4f}" for k, v in metrics.items()),
                  file=sys.stderr)
    finally:
        distributed.teardown()
    return 0
