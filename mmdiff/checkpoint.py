"""Checkpoints: one torch file of plain tensors and primitives, written atomically, read with weights_only=True.

Layout (a dict):
    format: "mmdiff-checkpoint", version: 1
    kind: "joint" (coupled U-Net, ModelConfig) or "sr" (super-resolution U-Net, SRConfig); absent = "joint"
    model_config: the config's to_dict(), diffusion_config: DiffusionConfig.to_dict()
    model: state dict (None in an inference export), ema: state dict (or None)
    optimizer: optimizer state dict (training checkpoints only)
    step: int, rng: {"torch": uint8 tensor, "generator": uint8 tensor, "cuda": [uint8 tensors]}
    train_args: dict of the command-line settings, metrics: dict of floats
Every checkpoint rebuilds its own network: `load_model(path)`.
"""
from __future__ import annotations

import os
import zipfile
from pathlib import Path
from typing import Any

import torch

from mmdiff.atomic import atomic_path
from mmdiff.config import DiffusionConfig, ModelConfig, SRConfig
from mmdiff.defaults import DEFAULT_CHECKPOINT, DEFAULT_SR_CHECKPOINT  # re-exported: callers import both from here

FORMAT = "mmdiff-checkpoint"
VERSION = 1
CONFIG_KINDS = {"joint": ModelConfig, "sr": SRConfig}


class CheckpointError(ValueError):
    """A checkpoint file is missing, truncated, corrupt or not an mmdiff checkpoint."""


def default_checkpoint() -> Path:
    """The shipped default model (the `tiny` preset trained on the synthetic dataset)."""
    if not DEFAULT_CHECKPOINT.is_file():
        raise CheckpointError(
            f"the shipped default model {DEFAULT_CHECKPOINT} is missing; reinstall from a full clone, "
            "or pass a checkpoint with --ckpt")
    return DEFAULT_CHECKPOINT


def atomic_torch_save(obj: Any, path: str | os.PathLike) -> Path:
    """torch.save to a temporary file in the same folder, fsync, then rename over `path`."""
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
    return Path(path)


def checkpoint_dict(*, model_config: ModelConfig | SRConfig, diffusion_config: DiffusionConfig,
                    model: dict | None, ema: dict | None, optimizer: dict | None = None, step: int = 0,
                    rng: dict | None = None, train_args: dict | None = None, metrics: dict | None = None) -> dict:
    """The checkpoint layout above, in memory (`save_checkpoint` writes it; mmdiff.convert returns it)."""
    return {
        "format": FORMAT, "version": VERSION, "kind": model_config.KIND,
        "model_config": model_config.to_dict(), "diffusion_config": diffusion_config.to_dict(),
        "model": model, "ema": ema, "optimizer": optimizer, "step": int(step), "rng": rng or {},
        "train_args": train_args or {}, "metrics": metrics or {},
    }


def save_checkpoint(path: str | os.PathLike, **parts) -> Path:
    """Write `checkpoint_dict(**parts)` atomically."""
    return atomic_torch_save(checkpoint_dict(**parts), path)


def _refuse_foreign(path: Path, cause: Exception) -> None:
    """A file that does not start as torch.save's zip archive (a text file, a legacy pickle) is not a checkpoint;
    torch says 'mmap can only be used with files saved with torch.save' or 'invalid load key' for it."""
    with open(path, "rb") as f:
        if f.read(2) != b"PK":
            raise CheckpointError(f"{path} is not a checkpoint (not a file written by torch.save); expected "
                                  "a file written by mmdiff.train or mmdiff.checkpoint.export") from cause


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu", mmap: bool = False) -> dict:
    """Read and validate a checkpoint (weights_only=True: no code is unpickled). `mmap`: tensors stay on disk
    until used, so reading the config and training record of a large checkpoint is cheap."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True, mmap=mmap)
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError) as e:
        _refuse_foreign(path, e)
        raise CheckpointError(f"checkpoint {path} is truncated or corrupt ({e.__class__.__name__}: "
                              f"{str(e).splitlines()[0] if str(e) else ''}); use an earlier checkpoint") from e
    except Exception as e:  # weights_only refuses pickled code: a foreign or unsafe file
        _refuse_foreign(path, e)
        raise CheckpointError(f"{path} is not an mmdiff checkpoint (it holds objects beyond tensors: "
                              f"{str(e).splitlines()[0][:200]})") from e
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        keys = sorted(ckpt)[:6] if isinstance(ckpt, dict) else type(ckpt).__name__
        raise CheckpointError(f"{path} is not an mmdiff checkpoint (found {keys}); "
                              "expected a file written by mmdiff.train or mmdiff.checkpoint.export")
    if ckpt.get("version", 0) > VERSION:
        raise CheckpointError(f"{path} has checkpoint version {ckpt['version']}; this mmdiff reads up to {VERSION}")
    if ckpt.get("model") is None and ckpt.get("ema") is None:
        raise CheckpointError(f"{path} holds no weights (neither 'model' nor 'ema')")
    if checkpoint_kind(ckpt) not in CONFIG_KINDS:
        raise CheckpointError(f"{path} is a {checkpoint_kind(ckpt)!r} checkpoint; this mmdiff knows {sorted(CONFIG_KINDS)}")
    return ckpt


def checkpoint_kind(ckpt: dict) -> str:
    return ckpt.get("kind", "joint")


def lineage_steps(ckpt: dict) -> int:
    """Training steps behind a checkpoint: its own run's, plus those of the runs it was --init-from."""
    return int(ckpt.get("step") or 0) + int((ckpt.get("train_args") or {}).get("init_steps") or 0)


def checkpoint_config(ckpt: dict, path: str | os.PathLike = "checkpoint", kind: str | None = None):
    """The ModelConfig or SRConfig a loaded checkpoint describes; with `kind`, insist on that kind."""
    found = checkpoint_kind(ckpt)
    if kind is not None and found != kind:
        hint = {"sr": "it is a super-resolution model: pass it with --upscale",
                "joint": "it is a joint audio-video model: pass it with --ckpt"}[found]
        raise CheckpointError(f"{path} is a {found!r} checkpoint where a {kind!r} one is needed; {hint}")
    return CONFIG_KINDS[found].from_dict(ckpt["model_config"])


def load_weights(model: torch.nn.Module, ckpt: dict, path, use_ema: bool, device) -> torch.nn.Module:
    """Load a checkpoint's EMA weights (or its raw ones: use_ema False, or none saved) into `model`."""
    if use_ema and ckpt.get("ema") is not None:
        weights = ckpt["ema"]
    elif ckpt.get("model") is not None:
        weights = ckpt["model"]
    else:
        raise CheckpointError(f"{path} holds only EMA weights (an inference export); load it with use_ema=True")
    try:
        missing, unexpected = model.load_state_dict(weights, strict=False)
    except RuntimeError as e:          # a tensor of another shape than the config builds
        raise CheckpointError(f"{path}: weights do not match its config ({str(e).splitlines()[-1].strip()})") from e
    if missing or unexpected:
        raise CheckpointError(f"{path}: weights do not match its config (missing {missing[:3]}, "
                              f"unexpected {unexpected[:3]})")
    return model.to(device).eval()


def load_model(path: str | os.PathLike | None = None, device: str | torch.device = "cpu", use_ema: bool = True):
    """Rebuild the network a checkpoint describes and load its (EMA) weights; returns (model, schedule).

    `model.trained_with` holds the checkpoint's train_args (e.g. cond_prob, which decides how the two-step
    pipeline conditions on its video, mmdiff.generate.two_step_mode).
    """
    from mmdiff import build_model
    from mmdiff.diffusion.schedule import Schedule

    path = path if path is not None else default_checkpoint()
    ckpt = load_checkpoint(path)
    model = load_weights(build_model(checkpoint_config(ckpt, path, "joint")), ckpt, path, use_ema, device)
    model.trained_with = dict(ckpt.get("train_args") or {})
    return model, Schedule(DiffusionConfig.from_dict(ckpt["diffusion_config"]))


def load_sr_model(path: str | os.PathLike, device: str | torch.device = "cpu", use_ema: bool = True):
    """Rebuild a super-resolution U-Net from its checkpoint; returns (model, schedule)."""
    from mmdiff.diffusion.schedule import Schedule
    from mmdiff.nn.sr_unet import SRUNet

    ckpt = load_checkpoint(path)
    model = load_weights(SRUNet(checkpoint_config(ckpt, path, "sr")), ckpt, path, use_ema, device)
    return model, Schedule(DiffusionConfig.from_dict(ckpt["diffusion_config"]))


def inference_weights(ckpt: dict) -> dict:
    """The weights a checkpoint samples with: its EMA when it has one, else its raw weights."""
    return ckpt["ema"] if ckpt.get("ema") is not None else ckpt["model"]


def without_text(src: str | os.PathLike, dst: str | os.PathLike) -> Path:
    """Write `src` (a text-conditioned joint checkpoint) as the unconditional model it is with the null caption:
    the caption branch's output for the null (all-zero) caption is a constant, added to the step embedding,
    so it folds into the bias of the step MLP's last layer; config text_dim 0, EMA weights only. Its output
    equals `src`'s with text=None (up to float rounding). For a text run whose prompts are not followed."""
    ckpt = load_checkpoint(src)
    cfg = checkpoint_config(ckpt, src, "joint")
    if not cfg.text_dim:
        raise CheckpointError(f"{src} has no text branch (text_dim 0)")
    weights = dict(inference_weights(ckpt))
    w1, b1 = weights.pop("text_mlp.0.weight"), weights.pop("text_mlp.0.bias")
    w2, b2 = weights.pop("text_mlp.2.weight"), weights.pop("text_mlp.2.bias")
    null = torch.nn.functional.linear(torch.nn.functional.silu(b1), w2, b2)      # text_mlp(0): W1 @ 0 = 0
    weights["time_mlp.2.bias"] = weights["time_mlp.2.bias"] + null
    plain = cfg.replace(text_dim=0, text_encoder="", text_scale=1.0)
    train_args = dict(ckpt.get("train_args") or {}, folded_null_caption=True)
    return save_checkpoint(dst, model_config=plain, diffusion_config=DiffusionConfig.from_dict(ckpt["diffusion_config"]),
                           model=None, ema=weights, step=ckpt["step"], train_args=train_args,
                           metrics=ckpt.get("metrics"))


def export_inference(src: str | os.PathLike, dst: str | os.PathLike, dtype: torch.dtype = torch.float32) -> Path:
    """Write a small inference checkpoint: config + EMA weights only (no optimizer, no raw weights)."""
    ckpt = load_checkpoint(src)
    weights = {k: v.to(dtype) if v.is_floating_point() else v for k, v in inference_weights(ckpt).items()}
    return save_checkpoint(dst, model_config=checkpoint_config(ckpt, src),
                           diffusion_config=DiffusionConfig.from_dict(ckpt["diffusion_config"]),
                           model=None, ema=weights, step=ckpt["step"], train_args=ckpt.get("train_args"),
                           metrics=ckpt.get("metrics"))

