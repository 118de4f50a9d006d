"""The training loop shared by every mmdiff trainer: AdamW, gradient clipping, EMA, optional bf16 autocast,
DDP under torchrun, atomic checkpoints, exact resume, CSV log + loss curve, periodic previews.

Reproducibility: every step re-seeds torch's RNG (dropout, RS-MMA shifts) and the noise generator from
(seed, rank, step), and the batch at a step is a pure function of (seed, step, rank), so a run resumed from
a checkpoint continues exactly as if it had never stopped.
"""
from __future__ import annotations

import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import torch
from torch.utils.data import DataLoader, Dataset, Sampler
from tqdm.auto import tqdm

from mmdiff.checkpoint import (CheckpointError, checkpoint_config, lineage_steps, load_checkpoint, load_weights,
                               save_checkpoint)
from mmdiff.config import DiffusionConfig, ModelConfig, SRConfig
from mmdiff.outdir import FolderLock
from mmdiff.training.distributed import DistInfo, all_reduce_mean, batch_indices
from mmdiff.training.ema import EMA
from mmdiff.training.logs import CSVLog, plot_losses

LossFn = Callable[[torch.nn.Module, tuple, torch.Generator], dict]
DEFAULT_LR = 1e-4                                   # paper (Table A.1)
PRECISIONS = ("fp32", "bf16")
TRAINABLE = ("all", "text")


@dataclass(frozen=True)
class TrainConfig:
    steps: int = 10_000
    batch_size: int = 8
    lr: float | None = None                        # None: DEFAULT_LR for a new run, the run's own rate on resume
    weight_decay: float = 0.0
    ema: float = 0.9999
    grad_clip: float = 1.0
    precision: str = "fp32"
    save_every: int = 500
    preview_every: int = 1000
    log_every: int = 10
    seed: int = 0
    workers: int = 1
    init_from: str | None = None                   # a new run starts from this checkpoint's (EMA) weights
    trainable: str = "all"                         # "all", or "text": only the caption branch (text_mlp) learns

    def __post_init__(self) -> None:
        if self.precision not in PRECISIONS:
            raise ValueError(f"--precision must be one of {PRECISIONS}, got {self.precision!r}")
        if self.steps < 1 or self.batch_size < 1:
            raise ValueError("--steps and --batch-size must be positive")
        if self.trainable not in TRAINABLE:
            raise ValueError(f"trainable must be one of {TRAINABLE}, got {self.trainable!r}")


class _EpochIndexed(Dataset):
    """Items are requested as (epoch, index) so DataLoader workers need no shared epoch state."""

    def __init__(self, dataset):
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key):
        epoch, index = key
        self.dataset.set_epoch(epoch)
        return self.dataset[index]


class _StepBatches(Sampler):
    """Local batches of (epoch, index) for steps start, start+1, ... (see distributed.batch_indices)."""

    def __init__(self, n: int, batch: int, seed: int, start: int, stop: int, rank: int, world: int):
        self.args = (n, batch, seed)
        self.start, self.stop, self.rank, self.world = start, stop, rank, world

    def __len__(self) -> int:
        return self.stop - self.start

    def __iter__(self):
        n, batch, seed = self.args
        for step in range(self.start, self.stop):
            epoch, idx = batch_indices(n, batch, seed, step, self.rank, self.world)
            yield [(epoch, i) for i in idx]


def trainable_parameters(model: torch.nn.Module, trainable: str) -> list[torch.nn.Parameter]:
    """The parameters the optimiser updates: all, or ("text") only the caption branch's, the others frozen."""
    if trainable == "all":
        return list(model.parameters())
    if not hasattr(model, "text_mlp"):
        raise ValueError("--caption-branch-only: this model has no caption branch (train it with --text-cond)")
    for name, p in model.named_parameters():
        p.requires_grad_(name.startswith("text_mlp."))
    return list(model.text_mlp.parameters())


def step_seed(seed: int, rank: int, step: int) -> int:
    return (seed * 1_000_003 + rank * 7_919 + step) % (2 ** 63)


def _with_new_text_branch(ckpt: dict, source, target, model: torch.nn.Module) -> dict:
    """`ckpt` with the fresh caption branch (text_mlp.*) of `model` added to its weights when `target` adds text
    conditioning to a `source` config without it; unchanged otherwise."""
    if not (getattr(target, "text_dim", 0) and not getattr(source, "text_dim", 0)):
        return ckpt
    fresh = {k: v for k, v in model.state_dict().items() if k.startswith("text_mlp.")}
    out = dict(ckpt)
    for key in ("ema", "model"):
        if out.get(key) is not None:
            out[key] = {**out[key], **fresh}
    return out


def _rng_state(device: torch.device) -> dict:
    state = {"torch": torch.get_rng_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


# What a run writes into its folder besides last.pt: a new run (not --resume) refuses a folder holding any of
# them, since it would replace them (a user's own log.csv, or the logs of a run stopped before its first save).
RUN_OUTPUTS = ("log.csv", "loss.png", "previews")


def refuse_run_outputs(run_dir: Path) -> None:
    """FileExistsError when `run_dir` holds a file a new run would overwrite (RUN_OUTPUTS; last.pt is checked
    by the caller with its own message)."""
    def holds(path: Path) -> bool:                # an empty previews/ folder or empty file is nothing to lose
        return any(path.iterdir()) if path.is_dir() else path.exists() and path.stat().st_size > 0

    found = [name for name in RUN_OUTPUTS if holds(run_dir / name)]
    if found and not (run_dir / "last.pt").exists():
        raise FileExistsError(f"--out {run_dir} already holds {', '.join(found)} (and no last.pt to resume): a new "
                              "run would overwrite them; choose a new --out, or move them away first")


class Trainer:
    """Owns the model, optimizer, EMA and run folder of one training run."""

    def __init__(self, run_dir: str | Path, model: torch.nn.Module, model_config: ModelConfig | SRConfig,
                 diffusion_config: DiffusionConfig, dataset, loss_fn: LossFn, cfg: TrainConfig, dist: DistInfo,
                 resume: bool = False, preview_fn: Callable | None = None, train_args: dict | None = None):
        self.run_dir = Path(run_dir)
        self.cfg, self.dist, self.loss_fn, self.preview_fn = cfg, dist, loss_fn, preview_fn
        self.model_config, self.diffusion_config = model_config, diffusion_config
        self.train_args = dict(train_args or {}, **{f"train.{k}": v for k, v in asdict(cfg).items()})
        self.dataset = dataset
        self.model = model.to(dist.device)
        self.opt = torch.optim.AdamW(trainable_parameters(self.model, cfg.trainable),
                                     lr=DEFAULT_LR if cfg.lr is None else cfg.lr, weight_decay=cfg.weight_decay)
        self.ema = EMA(self.model, cfg.ema)
        self.step = 0
        self.ckpt_path = self.run_dir / "last.pt"
        if self.run_dir.exists() and not self.run_dir.is_dir():
            raise FileExistsError(f"--out {self.run_dir} is a file, not a folder; choose a folder for the run")
        if not resume:
            refuse_run_outputs(self.run_dir)
        if self.ckpt_path.exists() and not resume:
            raise FileExistsError(f"{self.ckpt_path} exists; pass --resume to continue that run, or choose a new --out")
        if resume and not self.ckpt_path.exists():
            raise FileNotFoundError(f"--resume: {self.ckpt_path} does not exist, so there is no run to continue; "
                                    "drop --resume to start a new run there, or give the --out of the run")
        self.resumed = resume
        if resume:
            self._load()
            if self.step >= cfg.steps:
                raise ValueError(f"--resume: {self.ckpt_path} is already at step {self.step}, and --steps {cfg.steps} "
                                 "asks for no more; give a larger --steps to train on")
        elif cfg.init_from:
            self._init_from(cfg.init_from)
        self.train_args["train.lr"] = self.lr
        self.ddp = self.model
        if dist.world > 1:
            self.ddp = torch.nn.parallel.DistributedDataParallel(
                self.model, device_ids=[dist.device.index] if dist.device.type == "cuda" else None)

    # ---------------------------------------------------------------------------------------------
    def _load(self) -> None:
        ckpt = load_checkpoint(self.ckpt_path, map_location=self.dist.device)
        if checkpoint_config(ckpt, self.ckpt_path, self.model_config.KIND) != self.model_config:
            raise CheckpointError(f"{self.ckpt_path} was trained with a different model config; "
                                  "resume with the same --preset, or choose a new --out")
        if ckpt.get("optimizer") is None or ckpt.get("model") is None:
            raise CheckpointError(f"{self.ckpt_path} is an inference export; it cannot resume training")
        self.model.load_state_dict(ckpt["model"])
        self.opt.load_state_dict(ckpt["optimizer"])        # restores the run's learning rate too
        if self.cfg.lr is not None and self.cfg.lr != self.lr:
            if self.dist.is_main:
                print(f"resume: learning rate {self.lr:g} -> {self.cfg.lr:g} (--lr)", file=sys.stderr)
            for group in self.opt.param_groups:
                group["lr"] = self.cfg.lr
        self.ema.load_state_dict(ckpt["ema"], ckpt["step"])
        self.step = int(ckpt["step"])
        if (ckpt.get("train_args") or {}).get("init_steps"):            # the steps of the run it started from
            self.train_args["init_steps"] = int(ckpt["train_args"]["init_steps"])

    def _init_from(self, path: str | Path) -> None:
        """Start from another checkpoint's weights (its EMA when it has one): same architecture, any flags
        that leave the parameters alone (e.g. --no-random-shift, --prediction); optimizer and step start afresh.
        An unconditional checkpoint may start a --text-cond run: the caption branch keeps its fresh init, whose
        zero last layer makes the new model equal to the one it extends."""
        ckpt = load_checkpoint(path, map_location=self.dist.device)
        source = checkpoint_config(ckpt, path, self.model_config.KIND)
        self.train_args["init_steps"] = lineage_steps(ckpt)
        ckpt = _with_new_text_branch(ckpt, source, self.model_config, self.model)
        try:
            load_weights(self.model, ckpt, path, use_ema=True, device=self.dist.device)
        except CheckpointError as e:                           # missing keys or shapes of another size
            cause = e.__cause__ or e
            first = str(cause).strip().splitlines()[-1].strip() if str(cause).strip() else type(cause).__name__
            raise CheckpointError(f"--init-from {path}: its weights do not fit this model ({first}); "
                                  "it needs the same architecture") from e
        self.ema = EMA(self.model, self.cfg.ema)

    @property
    def lr(self) -> float:
        """The learning rate the optimiser uses now."""
        return float(self.opt.param_groups[0]["lr"])

    def save(self, metrics: dict | None = None) -> Path:
        return save_checkpoint(self.ckpt_path, model_config=self.model_config,
                               diffusion_config=self.diffusion_config, model=self.model.state_dict(),
                               ema=self.ema.state_dict(), optimizer=self.opt.state_dict(), step=self.step,
                               rng=_rng_state(self.dist.device), train_args=self.train_args, metrics=metrics)

    def _loader(self) -> DataLoader:
        sampler = _StepBatches(len(self.dataset), self.cfg.batch_size, self.cfg.seed, self.step, self.cfg.steps,
                               self.dist.rank, self.dist.world)
        return DataLoader(_EpochIndexed(self.dataset), batch_sampler=sampler, num_workers=self.cfg.workers,
                          pin_memory=self.dist.device.type == "cuda")

    def _train_step(self, batch) -> dict:
        cfg, dev = self.cfg, self.dist.device
        seed = step_seed(cfg.seed, self.dist.rank, self.step)
        torch.manual_seed(seed)
        gen = torch.Generator(dev).manual_seed(seed)
        batch = tuple(b.to(dev, non_blocking=True) for b in batch)
        with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=cfg.precision == "bf16"):
            terms = self.loss_fn(self.ddp, batch, gen)
        terms["loss"].backward()
        if cfg.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), cfg.grad_clip)
        self.opt.step()
        self.opt.zero_grad(set_to_none=True)
        self.ema.update(self.model)
        self.step += 1
        return {k: float(all_reduce_mean(v.detach().float())) for k, v in terms.items()}

    def run(self) -> dict:
        """Train to cfg.steps; the run folder is locked meanwhile (a second run into it is refused)."""
        if not self.dist.is_main:
            return self._run()
        self.run_dir.mkdir(parents=True, exist_ok=True)
        with FolderLock(self.run_dir):
            return self._run()

    def _run(self) -> dict:
        cfg, main = self.cfg, self.dist.is_main
        log = CSVLog(self.run_dir / "log.csv", resume_step=self.step if self.resumed else None) if main else None
        self.model.train()
        bar = tqdm(total=cfg.steps, initial=self.step, disable=not main, desc="train", dynamic_ncols=True)
        t0, last_t, last_step, metrics = time.time(), time.time(), self.step, {}
        for batch in self._loader():
            metrics = self._train_step(batch)
            bar.update(1)
            bar.set_postfix(loss=f"{metrics['loss']:.4f}", **{k: f"{v:.4f}" for k, v in metrics.items() if k != "loss"})
            done = self.step == cfg.steps
            if main and (self.step % cfg.log_every == 0 or done):
                now = time.time()
                rate = (self.step - last_step) * cfg.batch_size * self.dist.world / max(now - last_t, 1e-9)
                log.write({"step": self.step, "loss": metrics["loss"], **metrics, "lr": self.lr, "clips_per_s": round(rate, 3),
                           "elapsed_s": round(now - t0, 1)})
                last_t, last_step = now, self.step
            if main and (self.step % cfg.save_every == 0 or done):
                self.save(metrics)
                plot_losses(self.run_dir / "log.csv", self.run_dir / "loss.png")
            if main and self.preview_fn is not None and (self.step % cfg.preview_every == 0 or done):
                try:
                    self.preview_fn(self, self.step)
                except Exception as e:  # noqa: BLE001 - a failed preview must not end a long run
                    tqdm.write(f"warning: preview at step {self.step} failed: {e}")
        bar.close()
        return metrics
