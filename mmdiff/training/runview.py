"""Read a training run folder (written by `python -m mmdiff.train`) for monitors: losses, checkpoint, previews.

A run folder holds log.csv (step, loss, the loss terms, lr, clips_per_s, elapsed_s), loss.png,
last.pt and previews/step<7 digits>_<k>.mp4. A run trained in stages (e.g. from scratch, then fine-tuned from
that run's EMA with `--init-from`, whose steps count from 0 again) keeps the logs of its earlier stages beside
log.csv as stage1-log.csv, stage2-log.csv, ...; log.csv is the current stage. The shipped default model's run
(assets/tiny-synthetic-run, SHIPPED_RUN) is such a run. Everything here only reads.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from mmdiff.training.logs import SMOOTH, ema, loss_terms, plot_stages, read_log

PREVIEW_RE = re.compile(r"step(\d+)_(\d+)\.mp4$")
STAGE_LOG_RE = re.compile(r"stage(\d+)-log\.csv$")
# the default model's staged run (stageN-log.csv per earlier stage, log.csv of the last), in a clone of the
# repository (not in an installed package)
SHIPPED_RUN = Path(__file__).resolve().parents[2] / "assets" / "tiny-synthetic-run"


class RunFolderError(ValueError):
    """The folder is not (yet) a training run."""


@dataclass
class Stage:
    """One training stage's log: its rows, and the offset that places its steps on the run's one step axis."""

    name: str                    # "stage 1", "stage 2", ...; "" when the run has one stage
    log: Path
    rows: list[dict]
    offset: int = 0              # the previous stages' last logged steps, summed

    @property
    def last_step(self) -> int:
        return int(self.rows[-1]["step"]) if self.rows else 0


@dataclass
class RunSummary:
    folder: Path
    rows: list[dict] = field(default_factory=list)      # log.csv rows (strings as written): the current stage
    checkpoint: Path | None = None
    previews: list[Path] = field(default_factory=list)  # of the latest preview step, by sample number
    preview_step: int | None = None
    stages: list[Stage] = field(default_factory=list)   # earlier stages' logs, then log.csv

    @property
    def last(self) -> dict | None:
        return self.rows[-1] if self.rows else None

    def smoothed(self, key: str = "loss", smooth: float = SMOOTH) -> float | None:
        """The current stage's `key` column as the curve's smoothed line ends (None when it is not logged)."""
        vals = [float(r[key]) for r in self.rows if r.get(key) not in ("", None)]
        return ema(vals, smooth)[-1] if vals else None

    def smoothing_steps(self, smooth: float = SMOOTH) -> int:
        """About how many training steps the smoothing averages: its time constant, 1 / (1 - smooth) logged rows."""
        steps = [int(r["step"]) for r in self.rows]
        every = (steps[-1] - steps[0]) / (len(steps) - 1) if len(steps) > 1 else steps[-1]
        return max(1, round(every / (1 - smooth)))

    def describe(self) -> str:
        """The current stage's last step with its smoothed losses as the headline (a single logged batch's
        loss swings by 10x with its timesteps), the raw last logged loss beside it, speed and time."""
        if not self.rows:
            return f"{self.folder.name}: no logged steps yet"
        r = self.last
        where = f"{self.stages[-1].name} of {len(self.stages)}, " if len(self.stages) > 1 else ""
        parts = [f"{where}step {r['step']}", f"loss {self.smoothed():.4f} (smoothed over about "
                 f"{self.smoothing_steps()} steps; last logged {float(r['loss']):.4f})"]
        for k in loss_terms(self.rows)[1:]:
            if r.get(k):
                parts.append(f"{k} {self.smoothed(k):.4f}")
        if r.get("clips_per_s"):
            parts.append(f"{float(r['clips_per_s']):.1f} clips/s")
        if r.get("elapsed_s"):
            parts.append(f"{float(r['elapsed_s']) / 60:.1f} min")
        return ", ".join(parts)


def read_stages(folder: Path) -> list[Stage]:
    """stage<k>-log.csv in order of k, then log.csv, each placed after the previous one's last logged step."""
    logs = sorted((int(m.group(1)), p) for p in folder.glob("stage*-log.csv") if (m := STAGE_LOG_RE.match(p.name)))
    paths = [p for _, p in logs] + ([folder / "log.csv"] if (folder / "log.csv").is_file() else [])
    stages, offset = [], 0
    for k, path in enumerate(paths):
        try:
            rows = [r for r in read_log(path) if r.get("step") and r.get("loss")]
        except (OSError, UnicodeDecodeError) as e:
            raise RunFolderError(f"{path}: cannot read ({e})") from e
        stages.append(Stage(f"stage {k + 1}" if len(paths) > 1 else "", path, rows, offset))
        offset += stages[-1].last_step
    return stages


def read_run(folder: str | os.PathLike) -> RunSummary:
    """Losses, checkpoint and latest previews of a run folder; RunFolderError if it is not one."""
    f = Path(folder)
    if not f.is_dir():
        raise RunFolderError(f"{f}: not a folder")
    log = f / "log.csv"
    if not log.is_file() and not (f / "last.pt").is_file():
        raise RunFolderError(f"{f}: not a training run folder (no log.csv or last.pt; "
                             "expected the --out folder of python -m mmdiff.train)")
    stages = read_stages(f)
    rows = stages[-1].rows if log.is_file() else []
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
    return RunSummary(f, rows, ckpt if ckpt.is_file() else None, previews, step, stages)


def loss_curve(summary: RunSummary, png: str | os.PathLike) -> Path | None:
    """The run's loss curves, every stage on one step axis, drawn afresh into `png` (None when nothing is logged)."""
    return plot_stages([(s.name, s.offset, s.rows) for s in summary.stages], png)
