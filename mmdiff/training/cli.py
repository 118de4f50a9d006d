"""Command-line plumbing shared by every trainer (`mmdiff.train`, `mmdiff.train_sr`): the run flags,
the TrainConfig they make, and the process set-up around `Trainer.run`."""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Callable

import torch

from mmdiff.cliargs import (float_in, non_negative_float, non_negative_int, positive_float, positive_int,
                            fail, seed_int)
from mmdiff.checkpoint import CheckpointError
from mmdiff.data.cache import INDEX_NAME, CacheError, CacheSpec
from mmdiff.device import resolve_device
from mmdiff.outdir import OutputDirError
from mmdiff.training import distributed
from mmdiff.training.loop import PRECISIONS, TrainConfig, Trainer


def add_run_args(p: argparse.ArgumentParser, preset_help: str = "model preset: tiny | paper") -> None:
    """Flags every trainer takes: schedule of the run, optimiser, EMA, precision, device, resume, logging."""
    p.add_argument("--data", required=True, help="cache folder from mmdiff.data.prepare or mmdiff.data.synthetic "
                   "--cache, or a folder of videos (prepared first into a cache folder beside it, "
                   "NAME-cache-<size>px-<fps>fps-<rate>hz; a rerun resumes it)")
    p.add_argument("--preset", default="tiny", help=f"{preset_help} (default: tiny)")
    p.add_argument("--out", required=True, help="run folder (checkpoint, logs, previews)")
    p.add_argument("--steps", type=positive_int, default=10_000, help="total optimisation steps (default: 10000)")
    p.add_argument("--batch-size", type=positive_int, default=8, help="samples per step per process (default: 8)")
    p.add_argument("--lr", type=positive_float, default=None,
                   help="AdamW learning rate (default: 1e-4 as the paper; with --resume, the run's own rate "
                        "unless given, and a given rate replaces it from the resumed step on)")
    p.add_argument("--weight-decay", type=non_negative_float, default=0.0, help="AdamW weight decay (paper: 0)")
    p.add_argument("--ema", type=float_in(0.0, 1.0, high_open=True), default=0.9999, help="EMA decay (paper: 0.9999; warmed up)")
    p.add_argument("--grad-clip", type=non_negative_float, default=1.0, help="max gradient norm, 0 to disable (default: 1)")
    p.add_argument("--dropout", type=float_in(0.0, 1.0, high_open=True), default=None, help="override the preset's dropout")
    p.add_argument("--precision", default="fp32", choices=PRECISIONS, help="fp32, or bf16 autocast")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N (default: auto)")
    p.add_argument("--resume", action="store_true", help="continue from RUN_DIR/last.pt")
    p.add_argument("--init-from", default=None,
                   help="start a new run from this checkpoint's EMA weights (same architecture; e.g. fine-tune "
                        "with --no-random-shift); ignored when --resume finds a checkpoint")
    p.add_argument("--save-every", type=positive_int, default=500, help="checkpoint every N steps (default: 500)")
    p.add_argument("--preview-every", type=non_negative_int, default=1000, help="preview samples every N steps, 0 = never")
    p.add_argument("--log-every", type=positive_int, default=10, help="log.csv row every N steps (default: 10)")
    p.add_argument("--seed", type=seed_int, default=0, help="seed for data order, noise and dropout (default: 0)")
    p.add_argument("--workers", type=non_negative_int, default=1, help="DataLoader worker processes (default: 1)")
    p.add_argument("--threads", type=positive_int, default=None, help="torch CPU threads (default: torch's choice)")


def train_config(args: argparse.Namespace) -> TrainConfig:
    return TrainConfig(steps=args.steps, batch_size=args.batch_size, lr=args.lr, weight_decay=args.weight_decay,
                       ema=args.ema, grad_clip=args.grad_clip, precision=args.precision,
                       save_every=args.save_every, preview_every=args.preview_every or 10 ** 12,
                       log_every=args.log_every, seed=args.seed, workers=args.workers,
                       init_from=args.init_from,
                       trainable="text" if getattr(args, "caption_branch_only", False) else "all")


# Errors a user can cause while a run is set up (bad data folder, checkpoint, flags that do not fit the model):
# one line, exit status 2. During training only data and checkpoint errors are expected ones.
SETUP_ERRORS = (CacheError, CheckpointError, FileExistsError, FileNotFoundError, ValueError)
RUN_ERRORS = (CacheError, CheckpointError, OutputDirError)   # OutputDirError: the run folder is in use


def raw_cache_dir(raw: Path, spec: CacheSpec) -> Path:
    """Where a raw video folder is prepared for `spec`: beside it, named by what the cache holds."""
    fps = f"{spec.fps:g}".replace(".", "_")
    return raw.parent / f"{raw.name}-cache-{spec.video_size[0]}px-{fps}fps-{spec.audio_rate}hz"


def prepared_data(data: str, spec: CacheSpec, world: int = 1) -> str:
    """`data` when it is a cache; a folder of raw videos is prepared (mmdiff.data.prepare, progress bar,
    resumable: a rerun continues) into raw_cache_dir beside it, and that folder is returned."""
    from mmdiff.data import prepare as prep
    from mmdiff.data.av_io import list_videos

    path = Path(data)
    if not path.is_dir():
        raise FileNotFoundError(f"--data {data} does not exist or is not a folder")
    if (path / INDEX_NAME).exists() or not list_videos(path, recursive=True):
        return data                                   # a cache (or nothing usable: the dataset says why)
    out = raw_cache_dir(path, spec)
    command = (f"python -m mmdiff.data.prepare --src {path} --out {out} --fps {spec.fps:g} "
               f"--size {spec.video_size[0]} --audio-rate {spec.audio_rate}")
    if world > 1:
        raise CacheError(f"--data {data} holds raw videos, not a prepared cache; prepare it once first: {command}")
    print(f"--data {data} holds raw videos: preparing them into {out} (interrupt and rerun to resume; "
          f"the same as {command})", file=sys.stderr)
    index = prep.prepare(path, out, spec, prep.PrepareSettings(), owned=True)   # one item per source, >= 1.6 s
    print(prep.summarize(index), file=sys.stderr)
    return str(out)


def run(args: argparse.Namespace, make_trainer: Callable[[distributed.DistInfo], tuple[Trainer, str]],
        data_spec: Callable[[], CacheSpec] | None = None) -> int:
    """Set threads and (torchrun) process group, build the trainer on this rank, train, report, tear down.
    Expected errors end as one line `error: ...` and exit status 2 (mmdiff.cliargs.fail).

    :param make_trainer: dist info -> (trainer, what is being trained, for the start line).
    :param data_spec: what a raw video folder given as --data is prepared to (None: --data must be a cache).
    """
    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        resolve_device(args.device)                        # a bad --device before minutes of preparing
        if data_spec is not None:
            args.data = prepared_data(args.data, data_spec(), int(os.environ.get("WORLD_SIZE", "1")))
        info = distributed.setup(args.device)
    except SETUP_ERRORS as e:
        return fail(e)
    try:
        torch.manual_seed(args.seed)                       # identical initial weights on every rank
        try:
            trainer, what = make_trainer(info)
        except SETUP_ERRORS as e:
            return fail(e)
        if info.is_main:
            n = sum(p.numel() for p in trainer.model.parameters())
            learn = sum(p.numel() for p in trainer.model.parameters() if p.requires_grad)
            what += f" ({n / 1e6:.2f}M params" + (f", of which {learn:,} learn)" if learn < n else ")")
            print(f"training {what} on {len(trainer.dataset)} samples/epoch, "
                  f"{info.world} process(es) on {info.device}, from step {trainer.step} to {args.steps}",
                  file=sys.stderr)
        try:
            metrics = trainer.run()
        except RUN_ERRORS as e:
            return fail(e)
        if info.is_main:
            print(f"done at step {trainer.step}: " + ", ".join(f"{k} {v:.4f}" for k, v in metrics.items()),
                  file=sys.stderr)
    finally:
        distributed.teardown()
    return 0
