"""Read a training run folder (written by `python -m mmdiff.train`) for monitors: losses, checkpoint, previews.

A run folder holds log.csv (step, loss, video, audio, contrastive, lr, clips_per_s, elapsed_s), loss.png,
last.pt and previews/step<7 digits>_<k>.mp4. Everything here only reads.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from mmdiff.training.logs import plot_losses, read_log

PREVIEW_RE = re.compile(r"step(\d+)_(\d+)\.mp4$")


class RunFolderError(ValueError):
    """The folder is not (yet) a training run."""


@dataclass
class RunSummary:
    folder: Path
    rows: list[dict] = field(default_factory=list)      # log.csv rows (strings as written)
    checkpoint: Path | None = None
    previews: list[Path] = field(default_factory=list)  # of the latest preview step, by sample number
    preview_step: int | None = None

    @property
    def last(self) -> dict | None:
        return self.rows[-1] if self.rows else None

    def describe(self) -> str:
        if not self.rows:
            return f"{self.folder.name}: no logged steps yet"
        r = self.last
        parts = [f"step {r['step']}", f"loss {float(r['loss']):.4f}"]
        for k in ("video", "audio"):
            if r.get(k):
                parts.append(f"{k} {float(r[k]):.4f}")
        if r.get("clips_per_s"):
            parts.append(f"{float(r['clips_per_s']):.1f} clips/s")
        if r.get("elapsed_s"):
            parts.append(f"{float(r['elapsed_s']) / 60:.1f} min")
        return ", ".join(parts)


def read_run(folder: str | os.PathLike) -> RunSummary:
    """Losses, checkpoint and latest previews of a run folder; RunFolderError if it is not one."""
    f = Path(folder)
    if not f.is_dir():
        raise RunFolderError(f"{f}: not a folder")
    log = f / "log.csv"
    if not log.is_file() and not (f / "last.pt").is_file():
        raise RunFolderError(f"{f}: not a training run folder (no log.csv or last.pt; "
                             "expected the --out folder of python -m mmdiff.train)")
    rows = []
    if log.is_file():
        try:
            rows = [r for r in read_log(log) if r.get("step") and r.get("loss")]
        except (OSError, UnicodeDecodeError) as e:
            raise RunFolderError(f"{log}: cannot read ({e})") from e
    by_step: dict[int, list[tuple[int, Path]]] = {}
    prev_dir = f / "previews"
    if prev_dir.is_dir():
        for p in prev_dir.iterdir():
            m = PREVIEW_RE.search(p.name)
            if m and p.is_file():
                by_step.setdefault(int(m.group(1)), []).append((int(m.group(2)), p))
    step = max(by_step) if by_step else None
    previews = [p for _, p in sorted(by_step[step])] if step is not None else []
    ckpt = f / "last.pt"
    return RunSummary(f, rows, ckpt if ckpt.is_file() else None, previews, step)


def loss_curve(summary: RunSummary, png: str | os.PathLike) -> Path | None:
    """The run's loss curve drawn afresh into `png` (None when nothing is logged yet)."""
    if not summary.rows:
        return None
    return plot_losses(summary.folder / "log.csv", png)
