"""Training logs: an append-only CSV of losses and a loss-curve PNG (like Fig. 5 of Paredes' paper)."""
from __future__ import annotations

import csv
import os
from pathlib import Path

from mmdiff.atomic import atomic_path
from mmdiff.csvsafe import safe_row

BOOKKEEPING = ("step", "lr", "clips_per_s", "elapsed_s")     # columns that are not loss terms
SMOOTH = 0.9                                                  # EMA factor of the smoothed loss curves


class CSVLog:
    """Rows are appended and flushed as they come; on resume, rows past the resumed step are dropped first.

    The columns are those of the first row written (step, loss, then each loss term of the objective:
    video/audio for the joint model, mse/vlb for the SR stage; then lr, clips_per_s, elapsed_s); a resumed
    log keeps its header.
    """

    def __init__(self, path: str | os.PathLike, resume_step: int | None = None):
        self.path, self.fields = Path(path), None
        if resume_step is not None and self.path.exists():
            with open(self.path, newline="") as f:
                reader = csv.DictReader(f)
                self.fields = reader.fieldnames
                rows = [r for r in reader if int(r["step"]) <= resume_step]
            with atomic_path(self.path) as tmp, open(tmp, "w", newline="") as f:
                if self.fields:
                    w = csv.DictWriter(f, self.fields)
                    w.writeheader()
                    w.writerows(rows)
        else:
            self.path.write_text("")

    def write(self, row: dict) -> None:
        with open(self.path, "a", newline="") as f:
            if not self.fields:
                self.fields = list(row)
                csv.DictWriter(f, self.fields).writeheader()
            csv.DictWriter(f, self.fields, extrasaction="ignore").writerow(safe_row(row))   # numbers pass unchanged


def read_log(path: str | os.PathLike) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def ema(values, smooth: float = SMOOTH) -> list[float]:
    """The exponential smoothing the loss curves draw: s_0 = v_0, s_k = smooth * s_(k-1) + (1 - smooth) * v_k."""
    import pandas as pd

    return pd.Series(values, dtype=float).ewm(alpha=1 - smooth, adjust=False).mean().tolist()


def loss_terms(rows: list[dict]) -> list[str]:
    """The loss columns of a log: "loss" first, then its terms (video/audio, or mse/vlb), in the header's order."""
    return ["loss", *[k for k in (rows[0] if rows else {}) if k not in BOOKKEEPING and k != "loss"]]


def plot_losses(log_path: str | os.PathLike, png_path: str | os.PathLike, smooth: float = SMOOTH) -> Path | None:
    """Every loss column against step (raw, faint, and exponentially smoothed); atomic PNG write."""
    rows = read_log(log_path)
    return plot_stages([("", 0, rows)], png_path, smooth) if rows else None


def plot_stages(stages: list[tuple[str, int, list[dict]]], png_path: str | os.PathLike,
                smooth: float = SMOOTH) -> Path | None:
    """The loss curves of consecutive training stages, each (name, step offset, log rows), on one step axis:
    stage k's logged steps are shifted by its offset and its start is marked with its name."""
    stages = [s for s in stages if s[2]]
    if not stages:
        return None
    from mmdiff.viz import _plt, save_png

    plt = _plt()
    fig, ax = plt.subplots(figsize=(7, 4), dpi=100)
    colors = dict(zip(loss_terms(stages[-1][2]), ["black", "tab:blue", "tab:orange", "tab:green", "tab:red"]))
    labelled = set()
    for k, (name, offset, rows) in enumerate(stages):
        steps = [offset + int(r["step"]) for r in rows]
        for key in loss_terms(rows):
            vals = [float(r[key]) for r in rows if r.get(key) not in ("", None)]
            if len(vals) != len(steps) or key not in colors:
                continue
            label = None if key in labelled else ("total" if key == "loss" else key)
            labelled.add(key)
            ax.plot(steps, vals, color=colors[key], alpha=0.2, linewidth=0.8)
            ax.plot(steps, ema(vals, smooth), color=colors[key], label=label)
        if name:
            if k:
                ax.axvline(offset, color="gray", linestyle="--", linewidth=1)
            ax.text(offset if k else steps[0], 0.98, f" {name}", transform=ax.get_xaxis_transform(), va="top",
                    fontsize=8, color="dimgray")
    ax.set_xlabel("step" if len(stages) == 1 else "step (stages one after another)")
    ax.set_ylabel("loss")
    ax.set_yscale("log")
    ax.grid(alpha=0.3)
    ax.legend()
    ax.set_title("training loss")
    fig.tight_layout()
    return save_png(fig, png_path)
