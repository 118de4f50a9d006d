"""What a checkpoint knows, read cheaply (config and training record only, weights memory-mapped, never loaded),
said in one plain-text scope line: what it makes, whether it takes a prompt, what it was trained on, and
what to expect from media unlike its training data. Front ends show it next to the model picker.

    card = read_card("runs/tiny/last.pt")        # or None: the shipped default
    card.takes_prompt, scope_line(card)
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from mmdiff.checkpoint import checkpoint_config, lineage_steps, load_checkpoint
from mmdiff.config import ModelConfig
from mmdiff.defaults import DEFAULT_CHECKPOINT

SYNTHETIC_CLI = "python -m mmdiff.data.synthetic"


@dataclass(frozen=True)
class ModelCard:
    name: str                        # file name
    config: ModelConfig
    step: int = 0                    # training steps done, with those of the runs it was --init-from
    run_step: int = 0                # of them, in its own run
    train_args: dict = field(default_factory=dict)
    shipped: bool = False            # the shipped default (mmdiff/assets/tiny-synthetic.pt)

    @property
    def takes_prompt(self) -> bool:
        return self.config.text_dim > 0

    @property
    def synthetic(self) -> bool:
        """Trained on the synthetic generator's clips: the shipped model is; a run's data folder says so."""
        return self.shipped or synthetic_folder(self.train_args.get("data"))


def read_card(path: str | os.PathLike | None = None) -> ModelCard:
    """The card of a joint checkpoint (None: the shipped default); CheckpointError as load_model would raise."""
    path = Path(path) if path is not None else DEFAULT_CHECKPOINT
    ckpt = load_checkpoint(path, mmap=True)           # the weights stay on disk
    return ModelCard(name=path.name, config=checkpoint_config(ckpt, path, "joint"), step=lineage_steps(ckpt),
                     run_step=int(ckpt.get("step") or 0),
                     train_args=dict(ckpt.get("train_args") or {}),
                     shipped=path.resolve() == DEFAULT_CHECKPOINT.resolve())


def synthetic_folder(data) -> bool:
    """A data folder written by mmdiff.data.synthetic (its events.jsonl, or a cache index naming it)."""
    if not data or not Path(str(data)).is_dir():
        return False
    folder = Path(str(data))
    if (folder / "events.jsonl").is_file():
        return True
    try:
        return "synthetic" in json.loads((folder / "index.json").read_text()).get("settings", {})
    except (OSError, ValueError, AttributeError):
        return False


def synthetic_scene() -> str:
    """The synthetic generator's clips in words, from its class table (mmdiff.data.synthetic.CLASSES)."""
    from mmdiff.data.synthetic import CLASSES

    balls = " or ".join(c.colour for c in CLASSES if c.kind == "ball")
    squares = " or ".join(c.colour for c in CLASSES if c.kind == "flash")
    return (f"one {balls} ball bouncing on a grey floor with a click at each bounce, or one {squares} square "
            "flashing with a beep at each flash, on a plain gradient background")


def output_words(cfg: ModelConfig) -> str:
    parts = []
    if "video" in cfg.modalities:
        parts.append(f"{cfg.video_frames} frames of {cfg.video_size}x{cfg.video_size} at {cfg.fps:g} fps")
    if "audio" in cfg.modalities:
        parts.append(f"{cfg.audio_rate} Hz audio")
    return " with ".join(parts) + f" ({cfg.duration:.1f} s)"


def training_words(card: ModelCard) -> str:
    steps = f"{card.step:,} training steps" if card.step else "training steps not recorded"
    if card.step and card.run_step < card.step:
        steps += f", the last {card.run_step:,} fine-tuning an earlier run"
    if card.synthetic:
        return (f"Trained ({steps}) only on the synthetic generator's clips ({SYNTHETIC_CLI}): "
                f"{synthetic_scene()}.")
    source = card.train_args.get("release") or card.train_args.get("data")
    return f"Trained ({steps}) on {source}." if source else f"Its training data is not recorded ({steps})."


def real_media_words(card: ModelCard) -> str:
    if card.synthetic:
        return ("Real media (your own videos and sounds) are out of distribution: the model has never seen "
                "anything like them, so what it makes for them is not meaningful.")
    return "Media unlike its training data are out of distribution: results on them are not meaningful."


def scope_line(card: ModelCard) -> str:
    """One paragraph of plain text (no markup) saying what the model can do."""
    who = f"{card.name} (the shipped default)" if card.shipped else card.name
    prompt = ("text-conditioned: it follows a prompt worded like its training captions" if card.takes_prompt
              else "unconditional: it takes no text prompt")
    return f"{who}: {prompt}; makes {output_words(card.config)}. {training_words(card)} {real_media_words(card)}"
